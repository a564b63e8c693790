-- Schema changes of distributed tables (ALTER TABLE, CREATE INDEX, DROP ...) made on the
-- coordinator wake every proxy too. Event triggers need superuser; without them a proxy
-- still reloads after the DDL it relays itself.
-- They run as their owner (SECURITY DEFINER): an event trigger fires for every user's DDL,
-- including the temporary tables pgshard creates for a session of a user who may not read
-- the metadata schema.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.notify_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c
	           WHERE c.objid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)
	              OR c.objid IN (SELECT indexrelid FROM pg_index
	                             WHERE indrelid IN (SELECT relation_id FROM pgs_distribution_metadata.partition))) THEN
		PERFORM pg_notify('pgshard_metadata', 'ddl');
	-- A relation named like a distributed table created, renamed or moved (outside
	-- temporary schemas): an unqualified name may now reach another relation, and
	-- proxies resolve names again (schemas renamed, too).
	ELSIF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c
	              WHERE (c.classid = 'pg_catalog.pg_class'::regclass AND c.schema_name NOT LIKE 'pg\_temp%'
	                     AND (c.command_tag LIKE 'ALTER %'
	                          OR (SELECT relname FROM pg_class WHERE oid = c.objid) IN
	                             (SELECT relname FROM pg_class WHERE oid IN (SELECT relation_id FROM pgs_distribution_metadata.partition))))
	                 OR c.command_tag = 'ALTER SCHEMA') THEN
		PERFORM pg_notify('pgshard_metadata', 'names');
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgs_distribution_metadata.notify_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
	           WHERE d.objid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)) THEN
		PERFORM pg_notify('pgshard_metadata', 'drop');
	ELSIF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
	              WHERE NOT d.is_temporary AND d.classid = 'pg_catalog.pg_class'::regclass
	                AND d.object_name IN (SELECT relname FROM pg_class WHERE oid IN (SELECT relation_id FROM pgs_distribution_metadata.partition))) THEN
		PERFORM pg_notify('pgshard_metadata', 'names');
	END IF;
END
$$;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_notify_ddl') THEN
		CREATE EVENT TRIGGER pgshard_notify_ddl ON ddl_command_end
			EXECUTE FUNCTION pgs_distribution_metadata.notify_ddl();
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_notify_drop') THEN
		CREATE EVENT TRIGGER pgshard_notify_drop ON sql_drop
			EXECUTE FUNCTION pgs_distribution_metadata.notify_drop();
	END IF;
END
$$;
