package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
)

// The proxy's side of the coordinator's DDL guard (metadata/store/events.sql): event
// triggers refuse (0A000) any DDL that changes a distributed table, one of its indexes,
// triggers, policies or constraints, or a schema holding one, and any drop of such a table
// or index, unless the coordinator transaction running it was authorized by pgshard. That
// keeps DDL that would reach the coordinator's table alone (a DO block or function, a
// direct connection to the coordinator, DROP SCHEMA ... CASCADE) from making the shards
// drift from it.
//
// The authorization is a row "coordinator transaction <txid> may change distributed table
// <oid>" in pgs_distribution_metadata.ddl_authorization, which only the role owning the
// metadata schema (pgshard's own metadata connections) may read or write: a client cannot
// forge it, by SQL or by setting anything in its session. The event triggers look it up by
// txid_current().

// authorizeDDL lets the coordinator transaction open on coord (the session's coordinator
// connection, as the client's role) change the distributed tables oids: it reads the
// transaction's txid on coord and records it with each OID over the proxy's own metadata
// connection, committed before it returns. Call it just before sending the client's DDL on
// coord, in the transaction that runs the DDL, with the OIDs of every distributed table the
// DDL changes (for an index, its table; for ALTER/DROP SCHEMA, every distributed table in
// the schema; for DROP TABLE, every table dropped; for a foreign key between distributed
// tables, both tables: to be safe, every distributed table the statement names). The
// guard checks by OID, so a RENAME or SET SCHEMA in the same transaction keeps the
// authorization; the triggers it does not let through without one are listed in
// metadata/store/events.sql (ALTER TABLE, CREATE/ALTER/DROP INDEX, CREATE TRIGGER,
// CREATE/ALTER POLICY, ALTER SCHEMA, and any drop of a distributed table or its index). The DDL's own privilege checks are PostgreSQL's, on
// coord, as the client's role: the authorization only lets pgshard's propagated DDL past
// the guard.
//
// coord must be inside a transaction block ('T'): the txid is the block's, and outside one
// every statement would be a transaction of its own. The block must be READ COMMITTED: the
// row is committed by another connection after the block's first statement (this one) and
// a REPEATABLE READ or SERIALIZABLE block's snapshot, taken then, would never see it, so
// such a block gets a clear 0A000 here rather than the guard's refusal later. A caller that
// opens the block itself should open it with BEGIN ISOLATION LEVEL READ COMMITTED.
//
// CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY run in several transactions, so no
// txid authorizes them: the guard refuses them on a distributed table before they start.
// Propagation runs them CONCURRENTLY on the workers only, and a plain CREATE/DROP INDEX
// (authorized) on the coordinator's prototype, which is empty and so quick to index.
// (ddlconcurrent.go; REINDEX and CLUSTER likewise, maint.go: coordAuthorized.)
//
// The authorization lasts until the transaction ends (txids never repeat, so a row left
// behind authorizes nothing); rows of transactions that ended are deleted by the next
// authorization. Several calls in one transaction add up. A coordinator without the guard
// (pgshard's coordinator user was not a superuser when it installed the metadata schema,
// so there is neither the table nor the event triggers) needs no authorization: nil.
func (ss *session) authorizeDDL(ctx context.Context, coord *backend.Conn, oids []uint32) error {
	if len(oids) == 0 {
		return nil
	}
	if coord.TxStatus != 'T' {
		return fmt.Errorf("proxy: authorizeDDL outside a coordinator transaction (status %q)", coord.TxStatus)
	}
	rows, err := coord.ExecRows(ctx, "SELECT pg_catalog.txid_current(), pg_catalog.current_setting('transaction_isolation')")
	if err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 2 {
		return fmt.Errorf("proxy: authorizeDDL: unexpected answer to txid_current()")
	}
	txid, err := strconv.ParseInt(string(rows[0][0]), 10, 64)
	if err != nil {
		return fmt.Errorf("proxy: authorizeDDL: txid %q: %w", rows[0][0], err)
	}
	if iso := string(rows[0][1]); iso != "read committed" {
		return pgerr.New(pgerr.FeatureNotSupported, "schema changes of distributed tables cannot run in a %s transaction", iso).
			WithHint("Run them in a READ COMMITTED transaction block, or outside a transaction block.")
	}
	return ss.srv.recordDDLAuthorization(ctx, txid, oids)
}

// recordDDLAuthorization records that coordinator transaction txid may change the
// distributed tables oids, over the metadata store's connection (committed when it
// returns), and deletes the rows of transactions that ended.
func (s *Server) recordDDLAuthorization(ctx context.Context, txid int64, oids []uint32) error {
	_, err := s.store.Pool().Exec(ctx, `
		WITH ended AS (
			DELETE FROM pgs_distribution_metadata.ddl_authorization
			WHERE txid OPERATOR(pg_catalog.<) pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot()))
		INSERT INTO pgs_distribution_metadata.ddl_authorization (txid, relation_id)
		SELECT $1::pg_catalog.int8, o FROM pg_catalog.unnest($2::pg_catalog.oid[]) o
		ON CONFLICT DO NOTHING`, txid, oids)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == string(pgerr.UndefinedTable) {
		// No guard on this coordinator (installed without a superuser).
		return nil
	}
	if err != nil {
		return fmt.Errorf("proxy: record DDL authorization: %w", err)
	}
	return nil
}
