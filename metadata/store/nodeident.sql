-- What each worker last said about itself (issue 12): its system identifier, timeline and
-- the highest WAL position any proxy saw on it. A worker whose data went back in time (a
-- restored older copy, a re-initdb'd data directory, a fail-over to a lagging standby)
-- shows another system identifier, a lower timeline or a lower WAL position; its
-- placements may lack acknowledged writes and are marked inactive (see proxy/nodeident.go).
-- held is set when some of them are the last finalized placements of their shards: the
-- proxies then refuse the node (and repair refuses it as a source) until an operator
-- deletes the row, which accepts the node's current data as it is.
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
