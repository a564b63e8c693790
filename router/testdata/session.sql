SET search_path = app, public

SET LOCAL statement_timeout = '5s'

RESET search_path

RESET ALL

SET work_mem TO DEFAULT

DISCARD ALL

SELECT set_config('search_path', 'app', false)

PREPARE q (bigint) AS SELECT * FROM customers WHERE id = $1

EXECUTE q (42)

DEALLOCATE q

DEALLOCATE ALL
