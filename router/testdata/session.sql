SET search_path = app, public

SET LOCAL statement_timeout = '5s'

RESET search_path

RESET ALL

SET work_mem TO DEFAULT

SET SESSION work_mem = DEFAULT

SET LOCAL work_mem TO DEFAULT

SET "TimeZone" TO DEFAULT

SET TIME ZONE DEFAULT

SET idle_session_timeout = 0

RESET SESSION AUTHORIZATION

SET TRANSACTION ISOLATION LEVEL SERIALIZABLE

DISCARD ALL

DISCARD PLANS

DISCARD TEMP

SELECT set_config('search_path', 'app', false)

PREPARE q (bigint) AS SELECT * FROM customers WHERE id = $1

EXECUTE q (42)

DEALLOCATE q

DEALLOCATE ALL
