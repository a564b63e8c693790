-- What each worker last said about itself (issue 12): its system identifier, timeline and
-- the highest WAL position any proxy saw on it. A worker whose data went back in time (a
-- restored older copy, a re-initdb'd data directory, a fail-over to a lagging standby)
-- shows another system identifier, a lower timeline or a lower WAL position; its
-- placements may lack acknowledged writes and are marked inactive (see proxy/nodeident.go).
-- held is set when some of them are the last finalized placements of their shards: the
-- proxies then refuse the node (and repair refuses it as a source) until an operator
-- deletes the row, which accepts the node's current data as it is where it is the only
-- copy (the trigger below).
CREATE TABLE IF NOT EXISTS pgs_distribution_metadata.node_identity (
	node_name text NOT NULL,
	node_port integer NOT NULL,
	system_identifier bigint NOT NULL,
	timeline bigint NOT NULL,
	wal_lsn pg_lsn NOT NULL,
	held boolean NOT NULL DEFAULT false,
	went_back text,
	went_back_at timestamptz,
	reset_generation bigint NOT NULL DEFAULT 0,
	checked_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (node_name, node_port)
);

-- Deleting a held node's row accepts its data as it is — but only where it is the sole
-- copy. A shard whose only finalized placement is the held node's stale one while it has
-- other (inactive) placements must not be served, nor repaired, from the stale copy:
-- in the same transaction as the DELETE, another placement of the shard (one on a node
-- that is not held, the lowest id first) is finalized and the held node's is marked
-- inactive, to be repaired from it. The other placement missed only the writes made
-- since it was marked inactive; the restored copy lacks every write since it was taken.
CREATE OR REPLACE FUNCTION pgs_distribution_metadata.accept_held_node() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s bigint;
	other bigint;
BEGIN
	-- Lock the placements of the node's shards in id order, as the proxies do when they
	-- change placement states (store.SetPlacementStates).
	PERFORM 1 FROM pgs_distribution_metadata.shard_placement
		WHERE shard_id IN (SELECT shard_id FROM pgs_distribution_metadata.shard_placement
		                   WHERE node_name = OLD.node_name AND node_port = OLD.node_port)
		ORDER BY id FOR UPDATE;
	FOR s IN SELECT p.shard_id FROM pgs_distribution_metadata.shard_placement p
		WHERE p.node_name = OLD.node_name AND p.node_port = OLD.node_port AND p.shard_state = 1
		  AND NOT EXISTS (SELECT 1 FROM pgs_distribution_metadata.shard_placement o
		                  WHERE o.shard_id = p.shard_id AND o.shard_state = 1
		                    AND (o.node_name, o.node_port) IS DISTINCT FROM (OLD.node_name, OLD.node_port))
		ORDER BY 1
	LOOP
		SELECT o.id INTO other FROM pgs_distribution_metadata.shard_placement o
			WHERE o.shard_id = s AND o.shard_state = 3
			  AND (o.node_name, o.node_port) IS DISTINCT FROM (OLD.node_name, OLD.node_port)
			ORDER BY EXISTS (SELECT 1 FROM pgs_distribution_metadata.node_identity i
			                 WHERE i.node_name = o.node_name AND i.node_port = o.node_port AND i.held), o.id
			LIMIT 1;
		IF other IS NULL THEN
			CONTINUE; -- the node's copy is the only one: accepted as it is
		END IF;
		UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 1 WHERE id = other;
		UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3
			WHERE shard_id = s AND node_name = OLD.node_name AND node_port = OLD.node_port;
		RAISE NOTICE 'shard %: placement % finalized in place of the stale copy on %:%, which is now inactive', s, other, OLD.node_name, OLD.node_port;
	END LOOP;
	RETURN NULL;
END
$$;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pgshard_accept_held'
	               AND tgrelid = 'pgs_distribution_metadata.node_identity'::regclass) THEN
		CREATE TRIGGER pgshard_accept_held AFTER DELETE ON pgs_distribution_metadata.node_identity
		FOR EACH ROW WHEN (OLD.held) EXECUTE FUNCTION pgs_distribution_metadata.accept_held_node();
	END IF;
END
$$;
