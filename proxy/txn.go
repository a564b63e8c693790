package proxy

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
)

// The transaction layer: the state of the session's transaction block and its
// transitions, the block's backends (joinTx, blockExec, endTx, inBlock), and where a
// statement fails (statementFailed, sentError). Every change of the state goes through
// beginBlock, failBlock, resumeBlock and endBlock (grep for them). Still elsewhere: the
// block's connections are taken in session.go (coordConn, workerConn), savepoints and
// COMMIT are run in exec.go, shard locks are in locks.go.
//
//	          beginBlock                failBlock
//	txIdle ───────────────▶ txBlock ─────────────▶ txFailed
//	   ▲                      ▲  │                    │
//	   │                      │  └── resumeBlock ◀────┘ (ROLLBACK TO)
//	   └──────── endBlock (COMMIT, ROLLBACK, endTx) ───┘

// txStatus is the state of the session's transaction block, as ReadyForQuery reports it.
type txStatus byte

const (
	txIdle   txStatus = 'I' // no transaction block
	txBlock  txStatus = 'T' // in a transaction block
	txFailed txStatus = 'E' // in a failed transaction block: only ROLLBACK (TO) runs
)

func (s txStatus) String() string {
	switch s {
	case txIdle:
		return "idle"
	case txBlock:
		return "in transaction block"
	case txFailed:
		return "in failed transaction block"
	}
	return "txStatus(" + string(rune(s)) + ")"
}

// wire is the status byte of ReadyForQuery.
func (s txStatus) wire() byte { return byte(s) }

// beginBlock opens a transaction block; replay are the statements that start it on each
// backend that joins it (BEGIN with its options, SET TRANSACTION ...).
func (ss *session) beginBlock(replay ...string) {
	ss.tx = txBlock
	ss.txReplay = replay
}

// failBlock fails the transaction block, if one is open and has not failed yet: until
// ROLLBACK (or ROLLBACK TO a savepoint) every statement is refused.
func (ss *session) failBlock() {
	if ss.tx == txBlock {
		ss.tx = txFailed
	}
}

// resumeBlock brings the block back after ROLLBACK TO a savepoint.
func (ss *session) resumeBlock() {
	ss.tx = txBlock
	ss.failedUndone = false
}

// endBlock returns to the idle state (endTx releases what the block held first).
func (ss *session) endBlock() {
	ss.tx = txIdle
	ss.failedUndone = false
}

// inBlock runs fn inside a transaction block: the session's, or, outside one, a block
// opened for fn and committed when it succeeds (rolled back when it fails). Placements
// that could not commit are marked inactive, as at COMMIT.
func (ss *session) inBlock(ctx context.Context, fn func() error) error {
	if ss.tx != txIdle {
		err := fn()
		if err != nil {
			ss.failBlock()
		}
		return err
	}
	ss.beginBlock("BEGIN")
	err := fn()
	missed, endErr := ss.endTx(ctx, err == nil)
	if err != nil {
		return err
	}
	if len(missed) > 0 {
		if err := ss.srv.markInactive(ctx, missed, ss.conn.Results()); err != nil {
			return err
		}
	}
	return endErr
}

// joinTx starts the session's transaction block on a backend.
func (ss *session) joinTx(ctx context.Context, c *backend.Conn) error {
	return c.Exec(ctx, strings.Join(ss.txReplay, "; "))
}

// endTx commits or rolls back the block on every backend that joined it, releases the
// block's connections and locks, and returns to the idle state. After a COMMIT it
// returns the placements that missed the block's writes (the caller marks them) and an
// error when some shard the block wrote to was committed on none of its placements
// (decideBlockCommit); after a ROLLBACK, the first failure.
func (ss *session) endTx(ctx context.Context, commit bool) (missed []metadata.Placement, err error) {
	if ss.tx == txIdle {
		return nil, nil
	}
	cmd := "ROLLBACK"
	if commit && ss.tx == txBlock {
		cmd = "COMMIT"
	}
	type outcome struct {
		node metadata.Node
		err  error
	}
	nodes := make([]metadata.Node, 0, len(ss.txConns))
	for n := range ss.txConns {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Less(nodes[j]) })
	outcomes := make([]outcome, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ss.txConns[n].Value()
			if c.Broken() {
				outcomes[i] = outcome{n, &backend.UnavailableError{Addr: n.Addr(), Err: errors.New("connection lost")}}
				return
			}
			if cmd == "COMMIT" && partAborted(ss.tx, c) {
				// COMMIT would answer ROLLBACK there: the node's writes are lost, for
				// certain (not an unknown outcome: its placements are never kept as the
				// only copy that may hold them).
				c.Exec(ctx, "ROLLBACK")
				outcomes[i] = outcome{n, pgerr.Wrap(errPartAborted, pgerr.InFailedSQLTransaction, "the transaction block's part on %s was aborted by an earlier error", n.Addr())}
				return
			}
			outcomes[i] = outcome{n, c.Exec(ctx, cmd)}
		}()
	}
	var coordErr error
	if ss.coordInTx && ss.coord != nil {
		coordErr = ss.coord.Value().Exec(ctx, cmd)
	}
	wg.Wait()
	results := make(map[metadata.Node]error, len(outcomes))
	for _, o := range outcomes {
		results[o.node] = o.err
		if o.err != nil && err == nil {
			err = o.err
		}
	}
	if commit && ss.tx == txBlock {
		// Nodes that committed are what counts: a failure elsewhere marks the placements
		// that missed the writes, or, when a shard is left with none that has them, is
		// the client's error (never success, and never a mark on its last placement).
		d := decideBlockCommit(ss.txWrites, results, backend.Unavailable)
		missed, err = d.marks, d.err
	}
	if coordErr != nil && err == nil {
		err = coordErr
	}
	for _, res := range ss.txConns {
		if ss.settingsDirty {
			// The block's SETs committed or rolled back there: what the connection holds
			// now is known only to the session's next refresh.
			res.Value().Settings = staleSettings
		}
		backend.Release(res)
	}
	for _, l := range ss.txLocks {
		l.unlock()
	}
	if ss.settingsDirty || ss.txNames || ss.txNamesOwn {
		// SET LOCAL ended, SETs or DDL of the block committed or were undone.
		ss.namesDirty = true
	}
	if ss.txNames {
		ss.srv.namesEpoch.Add(1)
	}
	ss.txNames, ss.txNamesOwn = false, false
	ss.txConns, ss.txWrites, ss.txLocks, ss.txReplay, ss.txHeld, ss.txSavepoints = nil, nil, nil, nil, nil, nil
	ss.txRowLocks = false
	ss.txSavepointAt = nil
	ss.coordInTx = false
	ss.endBlock()
	if ss.settingsDirty {
		// SET LOCAL and rolled-back SETs end with the block (and a SET ROLE with them).
		ss.privOK = nil
		ss.refreshSettings(ctx)
	}
	ss.idleAfterBlock(ctx)
	return missed, err
}

// errPartAborted is why a node can no longer serve a transaction block that goes on: a
// statement failed on a placement there while a sibling placement took it, which aborted
// the node's part of the block, and with it every write the block made on that node.
var errPartAborted = errors.New("its part of the transaction block was aborted by an earlier error")

// partAborted reports whether c, a connection of the session's block, is in a failed
// transaction while the block itself goes on (the session's block state is tx).
func partAborted(tx txStatus, c *backend.Conn) bool {
	return tx == txBlock && c.TxStatus == 'E'
}

// blockExec runs a statement that every worker connection of the block must run (SET,
// SAVEPOINT, RELEASE, ROLLBACK TO). A node the block lost (its connection broke, or its
// part of the block aborted) is skipped and loses nothing more: its writes are marked at
// COMMIT. rejoin lets an aborted part run the statement anyway: ROLLBACK TO a savepoint
// taken before the abort brings it back in step with the others.
func (ss *session) blockExec(ctx context.Context, c *backend.Conn, sql string, rejoin bool) error {
	if c.Broken() {
		return nil
	}
	if partAborted(ss.tx, c) {
		if rejoin {
			c.Exec(ctx, sql)
		}
		return nil
	}
	if err := c.Exec(ctx, sql); err != nil && !backend.Unavailable(err) {
		return err
	}
	return nil
}

// sentError is a statement's error whose ErrorResponse already reached the client (a
// backend's error relayed as it came): the statement failed, and the rest of its query
// string or pipeline must not run, but the error is not to be sent again.
type sentError struct{ err error }

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// markSent says that err (if any) already reached the client.
func markSent(err error) error {
	if err == nil || errorSent(err) {
		return err
	}
	return &sentError{err}
}

// errorSent reports whether err already reached the client.
func errorSent(err error) bool {
	var se *sentError
	return errors.As(err, &se)
}

// statementFailed is where a statement fails: its error reaches the client (unless it
// did already) and the transaction block, if any, fails. It returns the error marked as
// sent.
func (ss *session) statementFailed(err error) error {
	if !errorSent(err) {
		ss.sendError(err)
	}
	ss.failBlock()
	return markSent(err)
}
