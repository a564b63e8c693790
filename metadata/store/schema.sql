-- pgshard metadata schema. pg_shard's three tables keep their exact names, columns and
-- meanings; everything else pgshard needs lives in further tables of the same schema.
-- Every statement is idempotent: the proxy runs this file at each start.
CREATE SCHEMA IF NOT EXISTS pgs_distribution_metadata;

CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.partition (
	relation_id oid UNIQUE NOT NULL,
	partition_method "char" NOT NULL,
	key text NOT NULL
);

CREATE SEQUENCE IF NOT EXISTS pgs_distribution_metadata.shard_id_sequence MINVALUE 10000 NO CYCLE;

CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.shard (
	id bigint PRIMARY KEY DEFAULT nextval('pgs_distribution_metadata.shard_id_sequence'),
	relation_id oid NOT NULL,
	storage "char" NOT NULL,
	min_value text NOT NULL,
	max_value text NOT NULL
);
ALTER SEQUENCE pgs_distribution_metadata.shard_id_sequence OWNED BY pgs_distribution_metadata.shard.id;
CREATE INDEX IF NOT EXISTS shard_relation_index ON pgs_distribution_metadata.shard (relation_id);

CREATE SEQUENCE IF NOT EXISTS pgs_distribution_metadata.shard_placement_id_sequence NO CYCLE;

CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.shard_placement (
	id bigint PRIMARY KEY DEFAULT nextval('pgs_distribution_metadata.shard_placement_id_sequence'),
	shard_id bigint NOT NULL REFERENCES pgs_distribution_metadata.shard (id),
	shard_state integer NOT NULL,
	node_name text NOT NULL,
	node_port integer NOT NULL
);
ALTER SEQUENCE pgs_distribution_metadata.shard_placement_id_sequence OWNED BY pgs_distribution_metadata.shard_placement.id;
CREATE INDEX IF NOT EXISTS shard_placement_shard_index ON pgs_distribution_metadata.shard_placement (shard_id);
CREATE INDEX IF NOT EXISTS shard_placement_node_name_node_port_index ON pgs_distribution_metadata.shard_placement (node_name, node_port);

-- The worker list (pg_shard read it from pg_worker_list.conf).
CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.node (
	node_name text NOT NULL,
	node_port integer NOT NULL,
	added_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (node_name, node_port)
);

-- Repairs, running and finished, for SHOW REPAIRS.
CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.repair (
	id bigserial PRIMARY KEY,
	shard_id bigint NOT NULL,
	placement_id bigint NOT NULL,
	source_node_name text NOT NULL,
	source_node_port integer NOT NULL,
	target_node_name text NOT NULL,
	target_node_port integer NOT NULL,
	started_at timestamptz NOT NULL DEFAULT now(),
	finished_at timestamptz,
	state text NOT NULL DEFAULT 'running',
	rows_copied bigint NOT NULL DEFAULT 0,
	bytes_copied bigint NOT NULL DEFAULT 0,
	source_bytes bigint NOT NULL DEFAULT 0,
	trigger text NOT NULL DEFAULT '',
	error text
);

-- Every function below runs with search_path pg_catalog, pg_temp: triggers fire in any
-- session that writes (a client's, through pgshard's DROP TABLE, with the client's
-- search_path), and no operator or function of a schema on that path may stand in for
-- pg_catalog's.

-- The metadata's generation: every transaction that changes the metadata tables bumps it
-- when it commits (the row lock orders the bumps as the commits), so that a proxy knows
-- how new a snapshot is and never lets an older one replace a newer one.
CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.generation (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	value bigint NOT NULL
);
INSERT INTO pgs_distribution_metadata.generation VALUES (true, 0) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION pgs_distribution_metadata.bump_generation() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE pgs_distribution_metadata.generation SET value = value + 1;
	RETURN NULL;
END
$$;

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['partition', 'shard', 'shard_placement', 'node'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pgshard_generation'
		               AND tgrelid = ('pgs_distribution_metadata.' || t)::regclass) THEN
			-- Deferred to the commit, so that a long transaction (creating shards) holds
			-- the generation's row lock only while it commits.
			EXECUTE format('CREATE CONSTRAINT TRIGGER pgshard_generation AFTER INSERT OR UPDATE OR DELETE
			                ON pgs_distribution_metadata.%I DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
			                EXECUTE FUNCTION pgs_distribution_metadata.bump_generation()', t);
		END IF;
	END LOOP;
END
$$;

-- Any change to the metadata wakes every proxy, which then reloads its snapshot.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.notify_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM pg_notify('pgshard_metadata', TG_TABLE_NAME);
	RETURN NULL;
END
$$;

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['partition', 'shard', 'shard_placement', 'node'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pgshard_notify'
		               AND tgrelid = ('pgs_distribution_metadata.' || t)::regclass) THEN
			EXECUTE format('CREATE TRIGGER pgshard_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
			                ON pgs_distribution_metadata.%I FOR EACH STATEMENT
			                EXECUTE FUNCTION pgs_distribution_metadata.notify_change()', t);
		END IF;
	END LOOP;
END
$$;

-- The coordinator holds only an empty prototype of each distributed table; its rows live
-- on the shards. Code running inside the coordinator (functions, triggers, rules, views,
-- DO blocks) would read that empty table, or write rows nobody sees through pgshard. So
-- every prototype refuses writes, with triggers pgshard adds when it distributes a table:
-- a statement-level trigger refuses every INSERT, UPDATE, DELETE and TRUNCATE but
-- pgshard's own (TRUNCATE of the distributed table, writes no shard can match, which run
-- on the prototype to get PostgreSQL's answer), and a row-level trigger refuses every row,
-- whoever writes it. pgshard marks its own statements with a comment that it refuses in
-- any client's statement, so that no client can pass for it; only the statement sent by
-- the client (not one that a trigger runs) counts.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.refuse_prototype_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_LEVEL = 'STATEMENT' AND pg_catalog.pg_trigger_depth() = 1
	   AND pg_catalog.strpos(pg_catalog.current_query(), '/* pgshard-internal-statement */') > 0 THEN
		RETURN NULL;
	END IF;
	RAISE EXCEPTION 'pgshard does not support % of distributed table %.% inside the coordinator',
		TG_OP, pg_catalog.quote_ident(TG_TABLE_SCHEMA), pg_catalog.quote_ident(TG_TABLE_NAME)
		USING ERRCODE = 'feature_not_supported',
		      DETAIL = 'The statement ran on the coordinator (in a function, trigger, rule or view, or sent there directly), which holds only an empty prototype of a distributed table; its rows live on the shards.',
		      HINT = 'Write the table with a statement of its own, sent through pgshard.';
END
$$;

-- guard_prototype adds the refusing triggers to a distributed table (if missing) and
-- reports whether the table holds rows (which would be invisible through pgshard).
-- It runs with pgshard's own rights, so it reads no rows (see below) and only of an
-- ordinary table, locked first, so that nobody turns it into a view in between
-- (PostgreSQL 15 does so for an empty table with CREATE RULE "_RETURN").
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.guard_prototype(rel oid) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	found boolean;
BEGIN
	-- The lock CREATE TRIGGER takes, not waited for: the owner could hold it for as long
	-- as it likes, and with it this connection of pgshard's.
	EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE NOWAIT', rel::pg_catalog.regclass);
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) rel AND c.relkind OPERATOR(pg_catalog.=) 'r') THEN
		RAISE EXCEPTION 'cannot distribute relation: %', rel::pg_catalog.regclass
			USING ERRCODE = 'wrong_object_type', DETAIL = 'Distributed relations must be regular tables.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = rel AND tgname = 'pgshard_refuse_writes') THEN
		EXECUTE pg_catalog.format('CREATE TRIGGER pgshard_refuse_writes BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
			FOR EACH STATEMENT EXECUTE FUNCTION pgs_distribution_metadata.refuse_prototype_write()', rel::pg_catalog.regclass);
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = rel AND tgname = 'pgshard_refuse_rows') THEN
		EXECUTE pg_catalog.format('CREATE TRIGGER pgshard_refuse_rows BEFORE INSERT OR UPDATE OR DELETE ON %s
			FOR EACH ROW EXECUTE FUNCTION pgs_distribution_metadata.refuse_prototype_write()', rel::pg_catalog.regclass);
	END IF;
	-- Whether the table (or an inheritance child) may hold rows, from the size of its
	-- files, not with a query over it: planning one evaluates the constant parts of its
	-- index expressions and predicates (its owner's functions), with pgshard's rights. A
	-- table whose rows were all deleted counts until VACUUM or TRUNCATE empties its files.
	WITH RECURSIVE tree(rel) AS (
		SELECT rel
		UNION
		SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent OPERATOR(pg_catalog.=) tree.rel)
	SELECT pg_catalog.bool_or(pg_catalog.pg_relation_size(tree.rel) OPERATOR(pg_catalog.>) 0) INTO found FROM tree;
	RETURN found;
END
$$;

-- Functions of pgshard's own schemas are never a table's users (a table named like one
-- of their aliases, "t" say, would otherwise be taken for one).
-- names_relation reports whether a function body names a relation: the name as a word,
-- in any case, quoted or not (in code, comments or strings alike: dynamic SQL included).
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.names_relation(body text, relname name) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT body ~* ('(^|[^[:alnum:]_$])' || pg_catalog.regexp_replace(relname, '([^[:alnum:]_])', E'\\\\\\1', 'g') || '($|[^[:alnum:]_$])')
$$;

-- prototype_reader returns a distributed table that an object (a function or procedure,
-- a view or materialized view, a rule or a policy) reads or writes, or NULL: from the
-- dependencies PostgreSQL records, and for functions with a body in a string, from the
-- body's text.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.prototype_reader(cls oid, obj oid) RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT d.refobjid FROM pg_catalog.pg_depend d
	WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
	  AND d.refobjid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)
	  AND ((d.classid = cls AND d.objid = obj
	        AND cls IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_rewrite'::pg_catalog.regclass, 'pg_catalog.pg_policy'::pg_catalog.regclass))
	    OR (cls = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
	        AND d.objid IN (SELECT r.oid FROM pg_catalog.pg_rewrite r WHERE r.ev_class = obj)))
	UNION ALL
	SELECT c.oid FROM pg_catalog.pg_proc f, pgs_distribution_metadata.partition p
	  JOIN pg_catalog.pg_class c ON c.oid = p.relation_id
	WHERE cls = 'pg_catalog.pg_proc'::pg_catalog.regclass AND f.oid = obj AND f.prosqlbody IS NULL
	  AND f.prolang NOT IN (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname IN ('internal', 'c'))
	  AND f.pronamespace NOT IN (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname IN ('pgs_distribution_metadata', 'pgs_distribute', 'pgs_commit'))
	  -- strpos first: a regular expression per distributed table and function is slow.
	  AND CASE WHEN pg_catalog.strpos(pg_catalog.lower(f.prosrc), pg_catalog.lower(c.relname::pg_catalog.text)) > 0
	           THEN pgs_distribution_metadata.names_relation(f.prosrc, c.relname) ELSE false END
	LIMIT 1
$$;

-- prototype_users lists the objects that read or write a table, as prototype_reader finds
-- them: a table is only distributed when there are none.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.prototype_users(rel oid) RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) FROM pg_catalog.pg_depend d
	WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = rel
	  AND d.classid IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_policy'::pg_catalog.regclass)
	UNION
	SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, r.ev_class, 0)
	FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
	WHERE d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = rel
	  AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND r.ev_class <> rel
	UNION
	SELECT pg_catalog.pg_describe_object('pg_catalog.pg_proc'::pg_catalog.regclass, f.oid, 0)
	FROM pg_catalog.pg_proc f, pg_catalog.pg_class c
	WHERE c.oid = rel AND f.oid >= 16384 AND f.prosqlbody IS NULL
	  AND f.prolang NOT IN (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname IN ('internal', 'c'))
	  AND f.pronamespace NOT IN (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname IN ('pgs_distribution_metadata', 'pgs_distribute', 'pgs_commit'))
	  -- strpos first: a regular expression per distributed table and function is slow.
	  AND CASE WHEN pg_catalog.strpos(pg_catalog.lower(f.prosrc), pg_catalog.lower(c.relname::pg_catalog.text)) > 0
	           THEN pgs_distribution_metadata.names_relation(f.prosrc, c.relname) ELSE false END
	ORDER BY 1
$$;

-- Tables distributed before the triggers existed get them now.
DO $$
DECLARE
	rel oid;
BEGIN
	FOR rel IN SELECT p.relation_id FROM pgs_distribution_metadata.partition p
	           JOIN pg_catalog.pg_class c ON c.oid = p.relation_id LOOP
		BEGIN
			IF pgs_distribution_metadata.guard_prototype(rel) THEN
				RAISE WARNING 'the coordinator''s prototype of distributed table % holds rows, which pgshard does not see', rel::regclass;
			END IF;
		EXCEPTION WHEN insufficient_privilege OR wrong_object_type OR lock_not_available THEN
			RAISE WARNING 'pgshard could not guard the prototype of distributed table %: %', rel::regclass, SQLERRM;
		END;
	END LOOP;
END
$$;

-- The placements' epoch: a sequence every transaction that changes placements advances
-- as it commits. Being a sequence, it is read outside any snapshot: a proxy reads it in
-- the round trip that takes a write's shard locks (after they are granted) and reloads
-- its metadata when it moved, so that a write never misses a placement a repair, which
-- held the shard's lock exclusively, finalized just before. Any role reads it (the locks
-- are taken on the client's session), by OID (no schema privilege needed).
CREATE SEQUENCE IF NOT EXISTS pgs_distribution_metadata.placement_epoch;
GRANT SELECT ON SEQUENCE pgs_distribution_metadata.placement_epoch TO PUBLIC;

CREATE OR REPLACE FUNCTION pgs_distribution_metadata.bump_placement_epoch() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM pg_catalog.nextval('pgs_distribution_metadata.placement_epoch'::pg_catalog.regclass);
	RETURN NULL;
END
$$;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pgshard_placement_epoch'
	               AND tgrelid = 'pgs_distribution_metadata.shard_placement'::regclass) THEN
		CREATE CONSTRAINT TRIGGER pgshard_placement_epoch AFTER INSERT OR UPDATE OR DELETE
		ON pgs_distribution_metadata.shard_placement DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
		EXECUTE FUNCTION pgs_distribution_metadata.bump_placement_epoch();
	END IF;
END
$$;
