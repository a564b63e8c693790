-- pgshard's two-phase commit records. A transaction that wrote through several backend
-- connections prepares its part on each worker (PREPARE TRANSACTION 'pgshard_<xid>_<n>',
-- <xid> being the coordinator transaction's txid_current()), then records one row per
-- prepared part here, in that same coordinator transaction, and commits it: that commit
-- is the decision. Recovery commits a prepared part whose record exists and rolls back
-- one whose coordinator transaction ended without one. Idempotent: run at each start.
CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.transaction (
	gid text PRIMARY KEY,
	node_name text NOT NULL,
	node_port integer NOT NULL,
	created timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON pgs_distribution_metadata.transaction FROM PUBLIC;

-- Sessions reach the coordinator as the client's role, which has no access to the
-- metadata schema: the record is written through this function alone, in a schema of
-- its own that every role may use. It accepts only gids that carry the calling
-- transaction's own txid_current(), so no role can forge (or pre-empt) another
-- transaction's decision.
CREATE SCHEMA IF NOT EXISTS pgs_commit;
GRANT USAGE ON SCHEMA pgs_commit TO PUBLIC;

CREATE OR REPLACE FUNCTION pgs_commit.record(gids text[], node_names text[], node_ports integer[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	prefix text := 'pgshard_' || pg_catalog.txid_current()::text || '_';
	g text;
BEGIN
	IF pg_catalog.cardinality(gids) IS DISTINCT FROM pg_catalog.cardinality(node_names)
		OR pg_catalog.cardinality(gids) IS DISTINCT FROM pg_catalog.cardinality(node_ports) THEN
		RAISE EXCEPTION 'pgs_commit.record: the arrays differ in length' USING ERRCODE = '22023';
	END IF;
	FOREACH g IN ARRAY gids LOOP
		IF g IS NULL OR pg_catalog.left(g, pg_catalog.length(prefix)) OPERATOR(pg_catalog.<>) prefix
			OR pg_catalog.substr(g, pg_catalog.length(prefix) + 1) OPERATOR(pg_catalog.!~) '^[0-9]{1,9}$' THEN
			RAISE EXCEPTION 'pgs_commit.record: % is not a gid of the calling transaction', g USING ERRCODE = '42501';
		END IF;
	END LOOP;
	INSERT INTO pgs_distribution_metadata.transaction (gid, node_name, node_port)
		SELECT * FROM unnest(gids, node_names, node_ports); -- ROWS FROM syntax: not schema-qualified (search_path is pg_catalog, pg_temp)
END $$;
REVOKE ALL ON FUNCTION pgs_commit.record(text[], text[], integer[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgs_commit.record(text[], text[], integer[]) TO PUBLIC;
