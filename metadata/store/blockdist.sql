-- Distributing a table inside a client's transaction block (master_create_distributed_table
-- and master_create_worker_shards after BEGIN). The metadata rows are then written in the
-- block's own coordinator transaction, so that they commit or roll back with the block
-- (and with the CREATE TABLE before them, which another transaction could not even see).
-- That transaction is the client's role's, which has no access to the metadata schema: the
-- rows are written through these functions alone, in a schema of their own that every role
-- may use (as pgs_commit.record). Each one checks that the login role of the calling
-- session (session_user: a SECURITY DEFINER function cannot see the caller's current role;
-- pgshard checks that one, too, before it calls them) owns the table, as PostgreSQL checks
-- ownership (pg_has_role ... USAGE: the owner, a role with its privileges, a superuser),
-- and touches nothing but that table's metadata. Idempotent: run at each start.
CREATE SCHEMA IF NOT EXISTS pgs_distribute;
GRANT USAGE ON SCHEMA pgs_distribute TO PUBLIC;

-- check_owner refuses a table the session's login role does not own (42501).
CREATE OR REPLACE FUNCTION pgs_distribute.check_owner(rel oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) rel
	               AND pg_catalog.pg_has_role(session_user, c.relowner, 'USAGE')) THEN
		RAISE EXCEPTION 'must be owner of table %', rel::pg_catalog.regclass USING ERRCODE = 'insufficient_privilege';
	END IF;
END
$$;

-- add_partition records a table as distributed (AddPartition's work, in the caller's
-- transaction): the triggers that make its prototype refuse writes are added before the
-- partition row, so that no guard of DDL on distributed tables sees them. It returns ''
-- when the table was recorded, 'exists' when it was already, 'users:<objects>' when
-- functions, views, rules or policies refer to it, 'notempty' when its files hold rows
-- (in the last two cases nothing is recorded; the caller fails the block).
CREATE OR REPLACE FUNCTION pgs_distribute.add_partition(rel oid, method text, key text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	users text;
	found boolean;
BEGIN
	PERFORM pgs_distribute.check_owner(rel);
	IF method IS DISTINCT FROM 'h' OR key IS NULL THEN
		RAISE EXCEPTION 'pgshard only supports hash partitioning' USING ERRCODE = 'feature_not_supported';
	END IF;
	IF EXISTS (SELECT 1 FROM pgs_distribution_metadata.partition p WHERE p.relation_id OPERATOR(pg_catalog.=) rel) THEN
		RETURN 'exists';
	END IF;
	SELECT pg_catalog.string_agg(u, ', ') INTO users FROM pgs_distribution_metadata.prototype_users(rel) u;
	IF users IS NOT NULL THEN
		RETURN 'users:' OPERATOR(pg_catalog.||) users;
	END IF;
	BEGIN
		found := pgs_distribution_metadata.guard_prototype(rel);
	EXCEPTION WHEN insufficient_privilege THEN
		-- pgshard's role neither owns the table nor is a superuser (as AddPartition).
		RAISE WARNING 'the prototype of distributed table % has no triggers refusing writes from inside the coordinator', rel::pg_catalog.regclass;
		found := false;
	END;
	IF found THEN
		RETURN 'notempty';
	END IF;
	INSERT INTO pgs_distribution_metadata.partition (relation_id, partition_method, key)
		VALUES (rel, method::"char", key);
	RETURN '';
END
$$;
REVOKE ALL ON FUNCTION pgs_distribute.add_partition(oid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgs_distribute.add_partition(oid, text, text) TO PUBLIC;

-- add_shards inserts the shard rows of a distributed table that has none, with the given
-- hash ranges, and returns their ids in order. The table's partition row stays locked
-- until the caller's transaction ends: no other session creates its shards meanwhile
-- (55P03, not waited for).
CREATE OR REPLACE FUNCTION pgs_distribute.add_shards(rel oid, mins integer[], maxs integer[]) RETURNS bigint[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	ids bigint[] := '{}';
	id bigint;
	i integer;
BEGIN
	PERFORM pgs_distribute.check_owner(rel);
	IF pg_catalog.cardinality(mins) IS DISTINCT FROM pg_catalog.cardinality(maxs) THEN
		RAISE EXCEPTION 'pgs_distribute.add_shards: the arrays differ in length' USING ERRCODE = '22023';
	END IF;
	BEGIN
		PERFORM FROM pgs_distribution_metadata.partition p WHERE p.relation_id OPERATOR(pg_catalog.=) rel FOR UPDATE NOWAIT;
	EXCEPTION WHEN lock_not_available THEN
		RAISE EXCEPTION 'the shards of table % are being created by another session', rel::pg_catalog.regclass USING ERRCODE = 'lock_not_available';
	END;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no partition column is defined for relation %', rel::pg_catalog.regclass USING ERRCODE = 'undefined_object';
	END IF;
	IF EXISTS (SELECT 1 FROM pgs_distribution_metadata.shard s WHERE s.relation_id OPERATOR(pg_catalog.=) rel) THEN
		RAISE EXCEPTION 'table % has already had shards created for it', rel::pg_catalog.regclass USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	FOR i IN 1 .. COALESCE(pg_catalog.cardinality(mins), 0) LOOP
		INSERT INTO pgs_distribution_metadata.shard (relation_id, storage, min_value, max_value)
			VALUES (rel, 't', mins[i]::text, maxs[i]::text) RETURNING shard.id INTO id;
		ids := ids OPERATOR(pg_catalog.||) id;
	END LOOP;
	RETURN ids;
END
$$;
REVOKE ALL ON FUNCTION pgs_distribute.add_shards(oid, integer[], integer[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgs_distribute.add_shards(oid, integer[], integer[]) TO PUBLIC;

-- add_placements records finalized placements of shards of a distributed table, on
-- registered nodes, for shards that have none yet (those add_shards just made), and
-- returns their ids in order.
CREATE OR REPLACE FUNCTION pgs_distribute.add_placements(rel oid, shard_ids bigint[], node_names text[], node_ports integer[]) RETURNS bigint[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	ids bigint[] := '{}';
	id bigint;
	i integer;
BEGIN
	PERFORM pgs_distribute.check_owner(rel);
	IF pg_catalog.cardinality(shard_ids) IS DISTINCT FROM pg_catalog.cardinality(node_names)
		OR pg_catalog.cardinality(shard_ids) IS DISTINCT FROM pg_catalog.cardinality(node_ports) THEN
		RAISE EXCEPTION 'pgs_distribute.add_placements: the arrays differ in length' USING ERRCODE = '22023';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_catalog.unnest(shard_ids) u(sid)
	           WHERE NOT EXISTS (SELECT 1 FROM pgs_distribution_metadata.shard s
	                             WHERE s.id OPERATOR(pg_catalog.=) u.sid AND s.relation_id OPERATOR(pg_catalog.=) rel)
	              OR EXISTS (SELECT 1 FROM pgs_distribution_metadata.shard_placement p WHERE p.shard_id OPERATOR(pg_catalog.=) u.sid)) THEN
		RAISE EXCEPTION 'pgs_distribute.add_placements: a shard is not a new shard of table %', rel::pg_catalog.regclass USING ERRCODE = '42501';
	END IF;
	IF EXISTS (SELECT 1 FROM unnest(node_names, node_ports) u(n, p)
	           WHERE NOT EXISTS (SELECT 1 FROM pgs_distribution_metadata.node d
	                             WHERE d.node_name OPERATOR(pg_catalog.=) u.n AND d.node_port OPERATOR(pg_catalog.=) u.p)) THEN
		RAISE EXCEPTION 'pgs_distribute.add_placements: a node is not registered' USING ERRCODE = '22023';
	END IF;
	FOR i IN 1 .. COALESCE(pg_catalog.cardinality(shard_ids), 0) LOOP
		INSERT INTO pgs_distribution_metadata.shard_placement (shard_id, shard_state, node_name, node_port)
			VALUES (shard_ids[i], 1, node_names[i], node_ports[i]) RETURNING shard_placement.id INTO id;
		ids := ids OPERATOR(pg_catalog.||) id;
	END LOOP;
	RETURN ids;
END
$$;
REVOKE ALL ON FUNCTION pgs_distribute.add_placements(oid, bigint[], text[], integer[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgs_distribute.add_placements(oid, bigint[], text[], integer[]) TO PUBLIC;

-- The generation's bump is a deferred trigger: it fires when the client's block commits,
-- as the client's role, which may not write the generation row.
ALTER FUNCTION pgs_distribution_metadata.bump_generation() SECURITY DEFINER;

-- state says how far a table is distributed, as the calling transaction sees it: 'shards',
-- 'partition' (no shards yet) or '' (a proxy's session asks after ROLLBACK TO a savepoint).
-- Which tables are distributed is no secret (SHOW SHARDS is for everyone).
CREATE OR REPLACE FUNCTION pgs_distribute.state(rel oid) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE
		WHEN EXISTS (SELECT 1 FROM pgs_distribution_metadata.shard s WHERE s.relation_id OPERATOR(pg_catalog.=) rel) THEN 'shards'
		WHEN EXISTS (SELECT 1 FROM pgs_distribution_metadata.partition p WHERE p.relation_id OPERATOR(pg_catalog.=) rel) THEN 'partition'
		ELSE '' END
$$;

-- drop_partitions removes the metadata of distributed tables that the calling transaction
-- dropped (DROP TABLE inside a client's transaction block): only of relations that no
-- longer exist as the transaction sees the catalog, so it removes nothing but what a drop
-- left behind, and commits or rolls back with the drop.
CREATE OR REPLACE FUNCTION pgs_distribute.drop_partitions(rels oid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ANY (rels)) THEN
		RAISE EXCEPTION 'pgs_distribute.drop_partitions: the relations must be dropped first' USING ERRCODE = 'object_in_use';
	END IF;
	DELETE FROM pgs_distribution_metadata.shard_placement
		WHERE shard_id OPERATOR(pg_catalog.=) ANY (SELECT s.id FROM pgs_distribution_metadata.shard s WHERE s.relation_id OPERATOR(pg_catalog.=) ANY (rels));
	DELETE FROM pgs_distribution_metadata.shard WHERE relation_id OPERATOR(pg_catalog.=) ANY (rels);
	DELETE FROM pgs_distribution_metadata.partition WHERE relation_id OPERATOR(pg_catalog.=) ANY (rels);
END
$$;
REVOKE ALL ON FUNCTION pgs_distribute.drop_partitions(oid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgs_distribute.drop_partitions(oid[]) TO PUBLIC;
