-- Schema changes of distributed tables (ALTER TABLE, CREATE INDEX, DROP ...) made on the
-- coordinator wake every proxy too. Event triggers need superuser; without them a proxy
-- still reloads after the DDL it relays itself. The functions run as their owner (the
-- superuser who installed them), so that DDL by roles that may not read the metadata
-- schema still works.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.notify_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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

-- Views, rules, policies and functions that read or write a distributed table would run
-- inside the coordinator, against its empty prototype: refuse to create them, whoever
-- creates them (through pgshard or not).
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.refuse_prototype_users() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	obj text;
	rel oid;
BEGIN
	SELECT pg_catalog.pg_describe_object(c.classid, c.objid, 0), pgs_distribution_metadata.prototype_reader(c.classid, c.objid)
	INTO obj, rel
	FROM pg_catalog.pg_event_trigger_ddl_commands() c
	WHERE pgs_distribution_metadata.prototype_reader(c.classid, c.objid) IS NOT NULL
	LIMIT 1;
	IF rel IS NOT NULL THEN
		RAISE EXCEPTION 'pgshard does not support %, which refers to distributed table %', obj, rel::pg_catalog.regclass
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'Functions, views, rules and policies run inside the coordinator, which holds only an empty prototype of a distributed table; its rows live on the shards.',
			      HINT = 'Query and write distributed tables with statements of their own, sent through pgshard.';
	END IF;
END
$$;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_refuse_prototype_users') THEN
		CREATE EVENT TRIGGER pgshard_refuse_prototype_users ON ddl_command_end
			WHEN TAG IN ('CREATE FUNCTION', 'CREATE PROCEDURE', 'CREATE VIEW', 'CREATE MATERIALIZED VIEW',
			             'CREATE RULE', 'CREATE POLICY', 'ALTER POLICY')
			EXECUTE FUNCTION pgs_distribution_metadata.refuse_prototype_users();
	END IF;
END
$$;

-- A shard table is named <table>_<shard id>; a distributed table renamed (in a function or
-- straight on the coordinator: pgshard refuses ALTER TABLE ... RENAME itself) to a name
-- that makes those names longer than PostgreSQL's 63 bytes would have them truncated on
-- the workers, where they could name another table's shards (which the proxy would then
-- write, truncate or drop for whoever uses the renamed table): refused.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.refuse_long_shard_names() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rel oid;
BEGIN
	SELECT r.oid INTO rel
	FROM pg_event_trigger_ddl_commands() c
	JOIN pg_class r ON r.oid = c.objid
	JOIN pgs_distribution_metadata.shard s ON s.relation_id = r.oid
	WHERE c.classid = 'pg_catalog.pg_class'::regclass
	  AND octet_length(r.relname::text) + 1 + octet_length(s.id::text) > 63
	LIMIT 1;
	IF rel IS NOT NULL THEN
		RAISE EXCEPTION 'the shard names of distributed table % would be longer than 63 bytes', rel::regclass
			USING ERRCODE = 'name_too_long',
			      DETAIL = 'Shard tables are named <table>_<shard id>; PostgreSQL would truncate longer names, which could then name other tables.';
	END IF;
END
$$;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_refuse_long_shard_names') THEN
		CREATE EVENT TRIGGER pgshard_refuse_long_shard_names ON ddl_command_end
			WHEN TAG IN ('ALTER TABLE', 'ALTER INDEX') -- ALTER INDEX ... RENAME renames tables too
			EXECUTE FUNCTION pgs_distribution_metadata.refuse_long_shard_names();
	END IF;
END
$$;
