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

-- The metadata's generation: every transaction that changes the metadata tables bumps it
-- when it commits (the row lock orders the bumps as the commits), so that a proxy knows
-- how new a snapshot is and never lets an older one replace a newer one.
CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.generation (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	value bigint NOT NULL
);
INSERT INTO pgs_distribution_metadata.generation VALUES (true, 0) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION pgs_distribution_metadata.bump_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
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
LANGUAGE plpgsql AS $$
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
