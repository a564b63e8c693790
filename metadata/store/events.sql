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
	  -- A policy of a distributed table that reads no other distributed table is the
	  -- shards' (pgshard propagates it; refuse_unpropagated_ddl refuses it otherwise).
	  AND NOT (c.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
	           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_policy po ON po.oid = d.objid
	                           WHERE d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = c.objid
	                             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
	                             AND d.refobjid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)
	                             AND d.refobjid <> po.polrelid))
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

-- No drift, by any route. A distributed table's definition lives on the coordinator and,
-- once per shard, on the workers: DDL that reaches the coordinator's table without pgshard
-- propagating it (in a DO block or a function, on a direct connection to the coordinator,
-- through a DROP SCHEMA ... CASCADE or a renamed schema) would leave the shards different
-- from it. Such DDL is refused, whoever runs it, unless pgshard itself authorized it:
-- before running DDL on a distributed table in a coordinator transaction, the proxy records
-- "coordinator transaction <txid> may change distributed table <oid>" in ddl_authorization
-- over its own metadata connection, as the role that owns this schema (no other role may
-- read or write the table: a client cannot forge the authorization, nor set a GUC that
-- stands for it). The event triggers look the row up by txid_current(). Rows of ended
-- transactions are swept by the next authorization (txids never repeat).
--
-- Not covered here: GRANT and REVOKE (event triggers see their command tag, not the
-- objects), COMMENT and SECURITY LABEL (no effect on the shards).
CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.ddl_authorization (
	txid bigint NOT NULL,
	relation_id oid NOT NULL,
	PRIMARY KEY (txid, relation_id)
);
REVOKE ALL ON pgs_distribution_metadata.ddl_authorization FROM PUBLIC;

-- ddl_authorized reports whether the current transaction may change distributed table rel.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.ddl_authorized(rel oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT EXISTS (SELECT 1 FROM pgs_distribution_metadata.ddl_authorization a
	               WHERE a.txid OPERATOR(pg_catalog.=) pg_catalog.txid_current()
	                 AND a.relation_id OPERATOR(pg_catalog.=) rel)
$$;
REVOKE ALL ON FUNCTION pgs_distribution_metadata.ddl_authorized(oid) FROM PUBLIC;

-- refuse_unpropagated_ddl (ddl_command_end): a command that changed a distributed table,
-- one of its indexes, triggers, policies or constraints, or a schema holding one.
-- pgshard's own triggers on the prototypes (pgshard_refuse_writes, pgshard_refuse_rows)
-- are let through: they are the coordinator's alone.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.refuse_unpropagated_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rel oid;
	tag text;
	what text;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pgs_distribution_metadata.partition) THEN
		RETURN;
	END IF;
	SELECT t.rel, c.command_tag, c.object_type INTO rel, tag, what
	FROM pg_catalog.pg_event_trigger_ddl_commands() c
	CROSS JOIN LATERAL (SELECT CASE
		WHEN c.classid = 'pg_catalog.pg_class'::pg_catalog.regclass THEN
			coalesce((SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = c.objid), c.objid)
		WHEN c.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN
			(SELECT tg.tgrelid FROM pg_catalog.pg_trigger tg WHERE tg.oid = c.objid
			   AND tg.tgfoid <> 'pgs_distribution_metadata.refuse_prototype_write()'::pg_catalog.regprocedure)
		WHEN c.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass THEN
			(SELECT po.polrelid FROM pg_catalog.pg_policy po WHERE po.oid = c.objid)
		WHEN c.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN
			(SELECT co.conrelid FROM pg_catalog.pg_constraint co WHERE co.oid = c.objid)
		WHEN c.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN
			(SELECT p.relation_id FROM pgs_distribution_metadata.partition p
			 JOIN pg_catalog.pg_class r ON r.oid = p.relation_id
			 WHERE r.relnamespace = c.objid AND NOT pgs_distribution_metadata.ddl_authorized(p.relation_id)
			 LIMIT 1)
		END AS rel) t
	WHERE c.command_tag NOT IN ('COMMENT', 'SECURITY LABEL')
	  AND t.rel IN (SELECT p.relation_id FROM pgs_distribution_metadata.partition p)
	  AND NOT pgs_distribution_metadata.ddl_authorized(t.rel)
	LIMIT 1;
	IF rel IS NOT NULL THEN
		RAISE EXCEPTION '% of distributed table % must run through pgshard', tag, rel::pg_catalog.regclass
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = pg_catalog.format('The command (on a %s) would change the coordinator''s table alone: its shards on the workers would no longer match it. pgshard did not apply it to the shards: it ran in a function or DO block or on a direct connection to the coordinator, or pgshard does not propagate it.', what),
			      HINT = 'Send the command to pgshard as a statement of its own, which applies it to every shard or refuses it.';
	END IF;
END
$$;

-- remember_distributed_indexes (ddl_command_start): the indexes of distributed tables, as
-- index:table OIDs, in a setting of the session, for refuse_unpropagated_drop: once an
-- index is dropped its catalog rows, and so its table, are gone. Set before every command
-- (a client's value is overwritten; a forged one could only stand for indexes that are not
-- there), for the session rather than the transaction: DROP INDEX CONCURRENTLY commits
-- before its sql_drop.
--
-- It also refuses CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY whose text names a
-- distributed table or one of its indexes (as a word: names_relation), before they start:
-- refused at their end, they would leave an invalid index behind, built or half dropped in
-- transactions of their own that already committed. (They cannot be authorized either: they
-- run in several transactions. pgshard runs plain CREATE/DROP INDEX on the coordinator's
-- empty prototype.)
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.remember_distributed_indexes() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	q text;
	rel oid;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pgs_distribution_metadata.partition) THEN
		PERFORM pg_catalog.set_config('pgshard.distributed_indexes', '', false);
		RETURN;
	END IF;
	PERFORM pg_catalog.set_config('pgshard.distributed_indexes',
		coalesce((SELECT pg_catalog.string_agg(i.indexrelid::text || ':' || i.indrelid::text, ',')
		          FROM pg_catalog.pg_index i
		          WHERE i.indrelid IN (SELECT p.relation_id FROM pgs_distribution_metadata.partition p)), ''),
		false);
	IF TG_TAG IN ('CREATE INDEX', 'DROP INDEX') THEN
		q := pg_catalog.current_query();
		IF q ~* '(^|[^[:alnum:]_$])concurrently($|[^[:alnum:]_$])' THEN
			SELECT c.oid INTO rel
			FROM pgs_distribution_metadata.partition p JOIN pg_catalog.pg_class c ON c.oid = p.relation_id
			WHERE pgs_distribution_metadata.names_relation(q, c.relname)
			   OR EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
			              WHERE i.indrelid = c.oid AND pgs_distribution_metadata.names_relation(q, ic.relname))
			LIMIT 1;
			IF rel IS NOT NULL THEN
				RAISE EXCEPTION '% CONCURRENTLY of distributed table % must run through pgshard', TG_TAG, rel::pg_catalog.regclass
					USING ERRCODE = 'feature_not_supported',
					      DETAIL = 'The command would change the coordinator''s table alone: its shards on the workers would no longer match it. pgshard did not apply it to the shards: it ran on a direct connection to the coordinator, or pgshard does not propagate it.',
					      HINT = 'Send the command to pgshard as a statement of its own, which applies it to every shard or refuses it.';
			END IF;
		END IF;
	END IF;
END
$$;

-- refuse_unpropagated_drop (sql_drop): a distributed table or one of its indexes, triggers,
-- policies or constraints dropped (DROP TABLE, DROP INDEX, DROP TRIGGER, DROP POLICY, DROP SCHEMA ...
-- CASCADE, DROP OWNED ...) without pgshard, which would leave the table's metadata and
-- shard tables (or the shards' index, trigger or policy) behind.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.refuse_unpropagated_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	indexes text := coalesce(pg_catalog.current_setting('pgshard.distributed_indexes', true), '');
	rel oid;
	obj text;
	kind text;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pgs_distribution_metadata.partition) THEN
		RETURN;
	END IF;
	SELECT x.rel, d.object_identity, d.object_type INTO rel, obj, kind
	FROM pg_catalog.pg_event_trigger_dropped_objects() d
	CROSS JOIN LATERAL (SELECT CASE
		WHEN d.objid IN (SELECT p.relation_id FROM pgs_distribution_metadata.partition p) THEN d.objid
		ELSE (SELECT pg_catalog.split_part(e, ':', 2)::pg_catalog.oid
		      FROM pg_catalog.unnest(pg_catalog.string_to_array(indexes, ',')) e
		      WHERE pg_catalog.split_part(e, ':', 1)::pg_catalog.oid = d.objid LIMIT 1)
		END AS rel) x
	WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
	  AND x.rel IS NOT NULL
	  AND NOT pgs_distribution_metadata.ddl_authorized(x.rel)
	LIMIT 1;
	IF rel IS NULL THEN
		-- A trigger, policy or constraint of a distributed table (its table is still there):
		-- a constraint also goes with a function, type or table it depends on (DROP
		-- FUNCTION ... CASCADE of a CHECK's function, DROP TABLE ... CASCADE of a table a
		-- foreign key refers to).
		SELECT x.rel, d.object_identity, d.object_type INTO rel, obj, kind
		FROM pg_catalog.pg_event_trigger_dropped_objects() d
		CROSS JOIN LATERAL (SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(d.address_names[1]) OPERATOR(pg_catalog.||) '.'
		                                                  OPERATOR(pg_catalog.||) pg_catalog.quote_ident(d.address_names[2])) AS rel) x
		WHERE d.classid IN ('pg_catalog.pg_trigger'::pg_catalog.regclass, 'pg_catalog.pg_policy'::pg_catalog.regclass,
		                    'pg_catalog.pg_constraint'::pg_catalog.regclass)
		  AND pg_catalog.array_length(d.address_names, 1) = 3
		  -- pgshard's own triggers on the prototypes are the coordinator's alone (a proxy
		  -- adds them again when it starts).
		  AND NOT (d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.address_names[3] LIKE 'pgshard\_%')
		  -- Triggers that are an internal part of something else dropped (the RI triggers
		  -- of a foreign key, on both tables) go with it: the constraint is what counts.
		  AND NOT (d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND NOT d.original AND NOT d.normal)
		  AND x.rel IN (SELECT p.relation_id FROM pgs_distribution_metadata.partition p)
		  AND NOT pgs_distribution_metadata.ddl_authorized(x.rel)
		LIMIT 1;
	END IF;
	IF rel IS NOT NULL THEN
		IF kind = 'table' THEN
			RAISE EXCEPTION 'DROP of distributed table % must run through pgshard', obj
				USING ERRCODE = 'feature_not_supported',
				      DETAIL = 'Dropping it on the coordinator alone (in a function or DO block, through DROP SCHEMA ... CASCADE or DROP OWNED, or on a direct connection to the coordinator) would leave its metadata and its shard tables on the workers behind.',
				      HINT = 'Drop the table with DROP TABLE, sent to pgshard as a statement of its own.';
		END IF;
		RAISE EXCEPTION 'DROP of % % of distributed table % must run through pgshard', kind, obj, rel::pg_catalog.regclass
			USING ERRCODE = 'feature_not_supported',
			      DETAIL = 'Dropping it on the coordinator alone would leave it on the shards. pgshard did not apply the command to the shards: it ran in a function or DO block or on a direct connection to the coordinator, or pgshard does not propagate it.',
			      HINT = 'Send the command to pgshard as a statement of its own, which applies it to every shard or refuses it.';
	END IF;
END
$$;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_remember_distributed_indexes') THEN
		CREATE EVENT TRIGGER pgshard_remember_distributed_indexes ON ddl_command_start
			EXECUTE FUNCTION pgs_distribution_metadata.remember_distributed_indexes();
	END IF;
	-- Named to fire after pgshard_refuse_long_shard_names (event triggers of one event fire
	-- in name order), whose more precise error a too long name keeps.
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_refuse_unpropagated_ddl') THEN
		CREATE EVENT TRIGGER pgshard_refuse_unpropagated_ddl ON ddl_command_end
			EXECUTE FUNCTION pgs_distribution_metadata.refuse_unpropagated_ddl();
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgshard_refuse_unpropagated_drop') THEN
		CREATE EVENT TRIGGER pgshard_refuse_unpropagated_drop ON sql_drop
			EXECUTE FUNCTION pgs_distribution_metadata.refuse_unpropagated_drop();
	END IF;
END
$$;
