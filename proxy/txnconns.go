package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// The backend connections the session holds: its coordinator connection, kept from
// first use to the end of the session, and, inside a transaction block, one connection
// per worker node, which joins the block on first use and is kept until it ends. These
// are the block's participants (coordInTx, txConns), which endTx commits. The session
// provides the connections from its pools, with its settings applied (txnHost). They are
// the executor's backends (conns.go).

var _ backends = (*txnState)(nil)

// coordConn returns the session's coordinator connection, taking one from the pool on
// first use, with the session's settings applied and, inside a transaction block, joined
// to the block.
func (t *txnState) coordConn(ctx context.Context) (*backend.Conn, error) {
	return t.coordConnFor(ctx, true)
}

// coordConnFor is coordConn; work says the use may change something on the coordinator
// (anything but taking locks), which makes the coordinator's part of the block (or of
// the statement's own coordinator transaction) one that may have written: coordWork.
func (t *txnState) coordConnFor(ctx context.Context, work bool) (*backend.Conn, error) {
	if work && (t.tx != txIdle || t.stmtCoordTx) {
		t.coordWork = true
	}
	if t.coord == nil {
		res, err := t.host.acquireCoord(ctx)
		if res == nil {
			return nil, err
		}
		t.coord = res
		if err != nil {
			return nil, err
		}
	}
	c := t.coord.Value()
	// The answer to the release of a commit's session-level lock copies (twoPhase's
	// releaseSQL) may still be on its way: read it before the connection runs anything
	// else, so that a cancel request meant for what comes next (a lock wait, the
	// client's statement) cannot cancel the release instead; a release that failed is
	// run again (settleRelease). A lost connection released them.
	settleRelease(ctx, c, t.txLog)
	if c.Broken() {
		if t.tx != txIdle && t.coordInTx {
			// The block's coordinator transaction is gone, and with it the write locks
			// it held: the block can only fail. The broken connection stays the block's
			// until it ends, so that no ROLLBACK TO brings the block back on a new
			// coordinator transaction that holds none of its earlier locks.
			return nil, pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator was lost during the transaction")
		}
		backend.Release(t.coord)
		t.coord = nil
		t.coordInTx = false
		if t.tx != txIdle {
			return nil, pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator was lost during the transaction")
		}
		return t.coordConnFor(ctx, work)
	}
	if err := t.host.applySettingsFor(ctx, c, false); err != nil {
		return nil, err
	}
	if t.tx != txIdle && !t.coordInTx {
		if err := t.joinTx(ctx, c); err != nil {
			return nil, err
		}
		t.coordInTx = true
	}
	return c, nil
}

// coordTx returns the session's coordinator connection inside a transaction: the
// block's, which it joins, or, outside a block, a transaction of the statement's own
// (stmtCoordTx), opened on first use and ended by endStatement unless the statement ends
// it first. This is where a write takes its locks (lockConn) and where the commit
// decision of a write through several connections is recorded.
func (t *txnState) coordTx(ctx context.Context) (*backend.Conn, error) {
	return t.coordTxFor(ctx, true)
}

// lockConn is coordTx for taking locks only: unlike every other use of the coordinator
// connection, it does not make the coordinator's part of the block one that may have
// written (coordWork), so a block whose only other participant is one worker still
// commits in one phase.
func (t *txnState) lockConn(ctx context.Context) (*backend.Conn, error) {
	return t.coordTxFor(ctx, false)
}

func (t *txnState) coordTxFor(ctx context.Context, work bool) (*backend.Conn, error) {
	c, err := t.coordConnFor(ctx, work)
	if err != nil || t.tx != txIdle || t.stmtCoordTx {
		return c, err
	}
	if err := c.Exec(ctx, "BEGIN"); err != nil {
		return nil, err
	}
	t.stmtCoordTx = true
	t.coordWork = work
	return c, nil
}

// endStmtCoordTx ends the coordinator transaction a statement outside a block opened
// (coordTx) and left open: COMMIT (a failed one answers ROLLBACK).
func (t *txnState) endStmtCoordTx(ctx context.Context) {
	if !t.stmtCoordTx {
		return
	}
	t.stmtCoordTx = false
	t.coordWork = false
	if t.coord == nil {
		return
	}
	if c := t.coord.Value(); !c.Broken() && c.TxStatus != 'I' {
		c.Exec(ctx, "COMMIT") // a failure breaks the connection, which ends it too
	}
}

// abortStmtCoordTx rolls back the coordinator transaction a failing statement outside a
// block opened (coordTx) when an error aborted it: what the statement still asks of the
// coordinator (to word its error) then runs outside it. The statement commits nothing.
func (t *txnState) abortStmtCoordTx(ctx context.Context) {
	if !t.stmtCoordTx || t.coord == nil {
		return
	}
	if c := t.coord.Value(); !c.Broken() && c.TxStatus == 'E' {
		t.stmtCoordTx, t.coordWork = false, false
		c.Exec(ctx, "ROLLBACK") // a failure breaks the connection, which ends it too
	}
}

// acquireCoord takes a coordinator connection from the session's pool (txnHost): the
// connection, once taken, is returned even when setting it up failed.
func (ss *session) acquireCoord(ctx context.Context) (*puddle.Resource[*backend.Conn], error) {
	pool, err := ss.srv.pools.Get(ss.srv.coordKey(ss.user))
	if err != nil {
		return nil, err
	}
	res, err := acquirePooled(ctx, pool)
	if err != nil {
		return nil, coordUnavailable(err)
	}
	res.Value().Unnamed = true
	if ss.appName != "" {
		c := res.Value()
		if err := c.Exec(ctx, "SELECT pg_catalog.set_config('application_name', "+router.QuoteLiteral(ss.appName)+", false)"); err != nil {
			return res, err
		}
	}
	return res, nil
}

func coordUnavailable(err error) error {
	if backend.Unavailable(err) {
		// The cause names the coordinator's address: the log has it (pgerr.Wrap keeps
		// it for errors.Is and logs), the client hears what happened.
		return pgerr.Wrap(err, pgerr.ConnectionFailure, "could not connect to the coordinator")
	}
	return err
}

// workerConn is a worker connection used by one statement.
type workerConn struct {
	res    *puddle.Resource[*backend.Conn]
	pinned bool // part of the transaction block: not released after the statement
}

func (w workerConn) conn() *backend.Conn { return w.res.Value() }

// workerConn returns a connection to node for the current statement: the block's
// connection inside a transaction block (joining the block on first use), else a pooled
// connection that release gives back.
func (t *txnState) workerConn(ctx context.Context, node metadata.Node) (workerConn, error) {
	if t.tx != txIdle {
		if res := t.txConns[node]; res != nil {
			if res.Value().Broken() {
				return workerConn{}, &backend.UnavailableError{Addr: node.Addr(), Err: errors.New("connection lost earlier in the transaction")}
			}
			if partAborted(t.tx, res.Value()) {
				return workerConn{}, &backend.UnavailableError{Addr: node.Addr(), Err: errPartAborted}
			}
			return workerConn{res: res, pinned: true}, nil
		}
	}
	res, err := t.host.acquireWorker(ctx, node)
	if err != nil {
		return workerConn{}, err
	}
	c := res.Value()
	if err := t.host.applySettingsFor(ctx, c, true); err != nil {
		backend.Release(res)
		return workerConn{}, err
	}
	if t.tx == txIdle {
		return workerConn{res: res}, nil
	}
	if err := t.joinTx(ctx, c); err != nil {
		backend.Release(res)
		return workerConn{}, err
	}
	if t.txConns == nil {
		t.txConns = map[metadata.Node]*puddle.Resource[*backend.Conn]{}
	}
	t.txConns[node] = res
	return workerConn{res: res, pinned: true}, nil
}

// acquireWorker takes a connection to node from the session's pool (txnHost).
func (ss *session) acquireWorker(ctx context.Context, node metadata.Node) (*puddle.Resource[*backend.Conn], error) {
	pool, err := ss.srv.pools.Get(ss.srv.workerKey(node, ss.user))
	if err != nil {
		return nil, err
	}
	res, err := acquirePooled(ctx, pool)
	if err != nil {
		return nil, err
	}
	if c := res.Value(); c.MapError == nil {
		c.MapError = ss.srv.unshardNames
	}
	return res, nil
}

// release returns a statement's worker connection unless it belongs to the block.
func (t *txnState) release(w workerConn) {
	if w.res != nil && !w.pinned {
		backend.Release(w.res)
	}
}

// Waiting for a backend connection. A pool holds at most --pool-size connections per
// server and user; a statement that needs one while all are taken (by transaction blocks
// that keep theirs, or by other statements) waits for one to come back. PostgreSQL has no
// such wait, but a statement waiting for anything there ends at the session's
// statement_timeout (from the start of the statement) and on a cancel request, with 57014
// and the message of the one that ended it: so does this wait. It is not a lock wait, so
// lock_timeout does not end it. The bound is the session's (statementWaits), which the
// session puts in the context its messages are handled with (serveConn).

// statementWaitsKey is the context key of the session's statementWaits.
type statementWaitsKey struct{}

// withStatementWaits returns ctx carrying w: the session's statement_timeout, the start
// of its current statement and its cancel requests, which bound its waits for a backend
// connection (acquirePooled).
func withStatementWaits(ctx context.Context, w *lockWait) context.Context {
	return context.WithValue(ctx, statementWaitsKey{}, w)
}

// acquirePooled takes a connection from pool, waiting for one, if all are taken, until
// the statement's statement_timeout or a cancel request ends the wait (boundStatement); a
// context without a session's statementWaits waits as long as ctx lets it.
func acquirePooled(ctx context.Context, pool *backend.Pool) (*puddle.Resource[*backend.Conn], error) {
	w, _ := ctx.Value(statementWaitsKey{}).(*lockWait)
	if w == nil {
		return pool.Acquire(ctx)
	}
	bounded, stop, err := boundStatement(ctx, w)
	if err != nil {
		return nil, err
	}
	defer stop()
	res, err := pool.Acquire(bounded)
	if err != nil && bounded.Err() != nil {
		// The statement's bound (this one, or that of the wait this one is part of)
		// ended the wait: the client hears why, as in PostgreSQL.
		var pe *pgerr.Error
		if cause := context.Cause(bounded); errors.As(cause, &pe) {
			return nil, cause
		}
	}
	return res, err
}

// statementOver is called when the session waits for its client's next message: its
// statement, if any, is over. Until a Query or Execute starts the next (startStatement),
// a wait for a connection (a Parse's, say) is bounded by cancel requests only, not by a
// statement_timeout counted from a statement that ended long ago; and a cancel request
// that came too late to stop the statement is dropped, as PostgreSQL drops one that
// arrives while it reads the next command.
func statementOver(w *lockWait) {
	w.stmtStart = time.Time{}
	w.mu.Lock()
	w.cancelled = false
	w.mu.Unlock()
}

// boundStatement is ctx ended at the statement's statement_timeout (counted from the
// start of the statement: of each statement of a query string, Query) or by a cancel
// request, with PostgreSQL's error as its cause; stop releases it. A cancel request that
// came before the wait ends it at once, as PostgreSQL acts on a pending cancel at its next
// wait. Inside a wait that w already bounds (a lock wait that needs a connection), ctx is
// bounded already and is returned as it is.
func boundStatement(ctx context.Context, w *lockWait) (context.Context, func(), error) {
	w.mu.Lock()
	if w.cancelled {
		w.mu.Unlock()
		return nil, nil, errUserCancel()
	}
	if w.stop != nil {
		w.mu.Unlock()
		return ctx, func() {}, nil
	}
	bounded, stopCancel := context.WithCancelCause(ctx)
	w.stop = stopCancel
	w.mu.Unlock()
	stopTimer := context.CancelFunc(func() {})
	if w.stmtTimeout > 0 && !w.stmtStart.IsZero() {
		bounded, stopTimer = context.WithDeadlineCause(bounded, w.stmtStart.Add(w.stmtTimeout), errStatementTimeout())
	}
	return bounded, func() {
		stopTimer()
		w.mu.Lock()
		w.stop = nil
		w.mu.Unlock()
		stopCancel(nil)
	}, nil
}
