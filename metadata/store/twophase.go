package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/metadata"
)

// Two-phase commit records (twophase.sql): what recovery reads and clears.

// RecordFunction is the SQL function with which a session records its commit decision,
// in its own coordinator transaction: pgs_commit.record(gids, node_names, node_ports).
const RecordFunction = "pgs_commit.record"

// TxRecord is a commit record: the prepared part gid on node is to be committed.
type TxRecord struct {
	GID     string
	Node    metadata.Node
	Created time.Time
}

// TxRecords lists the commit records, oldest first (at most limit; 0: all).
func (s *Store) TxRecords(ctx context.Context, limit int) ([]TxRecord, error) {
	q := `SELECT gid, node_name, node_port, created FROM pgs_distribution_metadata.transaction ORDER BY created, gid`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.pool.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("store: list commit records: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TxRecord, error) {
		var t TxRecord
		var port int32
		err := r.Scan(&t.GID, &t.Node.Name, &port, &t.Created)
		t.Node.Port = int(port)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list commit records: %w", err)
	}
	return out, nil
}

// RecoveryPass is one pass of transaction recovery on the coordinator: a transaction
// that holds the lock serializing passes across proxies (SHARE UPDATE EXCLUSIVE on the
// records' table, which only pgshard's own role may take, and which sessions' INSERTs
// do not wait for). Each of its queries
// reads what is committed when it runs (READ COMMITTED); the records it deletes go when
// it commits (End).
type RecoveryPass struct{ tx pgx.Tx }

// BeginRecovery starts a recovery pass; ok is false (and the pass nil) when another
// proxy's pass holds the lock.
func (s *Store) BeginRecovery(ctx context.Context) (p *RecoveryPass, ok bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("store: begin recovery: %w", err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE pgs_distribution_metadata.transaction IN SHARE UPDATE EXCLUSIVE MODE NOWAIT`); err != nil {
		tx.Rollback(ctx)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55P03" {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("store: begin recovery: %w", err)
	}
	return &RecoveryPass{tx: tx}, true, nil
}

// TxStatuses returns txid_status of each coordinator transaction id (for SHOW
// TRANSACTIONS): "in progress", "committed", "aborted", "" when the coordinator no longer
// knows it, or "future" for an id it has not assigned yet (a gid that is not this
// coordinator's: txid_status would fail; the query's own txid_current() is above every id
// assigned before it). Recovery does not decide from it (RecoveryPass.Decide).
func (s *Store) TxStatuses(ctx context.Context, xids []int64) (map[int64]string, error) {
	return statuses(ctx, s.pool, xids)
}

func statuses(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, xids []int64) (map[int64]string, error) {
	rows, err := q.Query(ctx, `SELECT x, CASE WHEN x >= pg_catalog.txid_current() THEN 'future'
		ELSE coalesce(pg_catalog.txid_status(x), '') END FROM pg_catalog.unnest($1::pg_catalog.int8[]) x`, xids)
	if err != nil {
		return nil, fmt.Errorf("store: transaction statuses: %w", err)
	}
	out := map[int64]string{}
	var x int64
	var st string
	_, err = pgx.ForEachRow(rows, []any{&x, &st}, func() error {
		out[x] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: transaction statuses: %w", err)
	}
	return out, nil
}

// Decision is what recovery does with a prepared part (RecoveryPass.Decide).
type Decision uint8

const (
	// DecisionPending: the part's coordinator transaction is in progress (or its xid is
	// not this coordinator's yet): its session is deciding.
	DecisionPending Decision = iota
	// DecisionCommit: the coordinator transaction ended with the part's commit record.
	DecisionCommit
	// DecisionRollback: it ended without one.
	DecisionRollback
)

// Decide decides each prepared part (gids[i], named after the coordinator transaction
// xids[i]) in one statement, so under one snapshot: a transaction that snapshot still
// sees in progress is pending; for one it sees finished, the commit record is there in
// that same snapshot exactly when it committed. (Asking txid_status first and reading
// the records after does not hold: PostgreSQL reports a transaction committed once its
// commit is in the commit log, a moment before new snapshots see its changes, and a
// record read in that moment is missing: the part of an acknowledged commit would be
// rolled back.)
//
// The record must be the part's node's: a gid does not name its node, and a
// coordinator that crashed before any WAL named a transaction's xid hands the xid out
// again, so a later transaction's part on another node may carry the gid of a part
// left prepared here, whose transaction never committed.
func (p *RecoveryPass) Decide(ctx context.Context, n metadata.Node, gids []string, xids []int64) (map[string]Decision, error) {
	rows, err := p.tx.Query(ctx, `SELECT u.g, pg_catalog.txid_visible_in_snapshot(u.x, pg_catalog.txid_current_snapshot()),
		EXISTS (SELECT FROM pgs_distribution_metadata.transaction t WHERE t.gid OPERATOR(pg_catalog.=) u.g
			AND t.node_name OPERATOR(pg_catalog.=) $3 AND t.node_port OPERATOR(pg_catalog.=) $4)
		FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int8[])) AS u(g, x)`, gids, xids, n.Name, int32(n.Port))
	if err != nil {
		return nil, fmt.Errorf("store: decide prepared transactions: %w", err)
	}
	out := make(map[string]Decision, len(gids))
	var g string
	var finished, recorded bool
	_, err = pgx.ForEachRow(rows, []any{&g, &finished, &recorded}, func() error {
		switch {
		case !finished:
			out[g] = DecisionPending
		case recorded:
			out[g] = DecisionCommit
		default:
			out[g] = DecisionRollback
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: decide prepared transactions: %w", err)
	}
	return out, nil
}

// NodeRecords returns the gids of the commit records of prepared parts on node.
func (p *RecoveryPass) NodeRecords(ctx context.Context, n metadata.Node) ([]string, error) {
	rows, err := p.tx.Query(ctx, `SELECT gid FROM pgs_distribution_metadata.transaction WHERE node_name = $1 AND node_port = $2`, n.Name, int32(n.Port))
	if err != nil {
		return nil, fmt.Errorf("store: read commit records: %w", err)
	}
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: read commit records: %w", err)
	}
	return gids, nil
}

// Delete deletes commit records (when the pass ends).
func (p *RecoveryPass) Delete(ctx context.Context, gids []string) error {
	if len(gids) == 0 {
		return nil
	}
	if _, err := p.tx.Exec(ctx, `DELETE FROM pgs_distribution_metadata.transaction WHERE gid = ANY($1)`, gids); err != nil {
		return fmt.Errorf("store: delete commit records: %w", err)
	}
	return nil
}

// End commits the pass (its deletions) and releases its lock.
func (p *RecoveryPass) End(ctx context.Context) error {
	if err := p.tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: end recovery: %w", err)
	}
	return nil
}

// Abort ends the pass without its deletions.
func (p *RecoveryPass) Abort(ctx context.Context) { p.tx.Rollback(ctx) }
