package proxy

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// Write locks. A write that needs ordering against other writes (lockShards in write.go
// says which) takes PostgreSQL advisory transaction locks on the coordinator, through
// the session's coordinator connection, inside a transaction (lockConn): the block's
// coordinator transaction inside a block, else one of the statement's own that
// endStatement commits. The locks live exactly as long as the statement or block, and
// PostgreSQL's lock manager does all the rest: it releases them at COMMIT, ROLLBACK and
// ROLLBACK TO a savepoint taken before them, and when the transaction aborts; its
// deadlock detector sees every cycle among pgshard transactions of every proxy (40P01);
// the session's lock_timeout (55P03) and statement_timeout (57014), which its
// coordinator connection has, bound the waits; a client's cancel request reaches the
// waiting coordinator backend (lockWait). A lost coordinator connection loses the locks,
// and with them the statement or block (its commit goes through that transaction).
//
// The locks form a hierarchy per shard: a shard lock (store.LockShard), shared by writes
// that pin their rows to partition-key values, which also take an exclusive key lock
// per value (store.KeyLock, by the value's hash), and exclusive for every other write
// (a predicate without partition-key equality, INSERT ... SELECT, COPY, TRUNCATE, more
// than maxKeyLocks values) and for repair. Writes of different rows of one shard run at
// once; writes of the same rows, or writes that cannot say which rows they touch, run one
// after the other, in the same order on every placement. A statement takes all its locks
// in one round trip, in key order, and reads the placements' epoch there (see schema.sql)
// after they are granted: when it moved, a placement may have changed (a repair, holding
// the shard's lock, finalized one), and the metadata is read again before writing.

// lockReq is one advisory lock a statement asks for.
type lockReq struct {
	key       int64
	exclusive bool
}

// maxKeyLocks is the most key locks a statement takes in one shard: beyond, it takes the
// shard lock exclusively instead.
const maxKeyLocks = 32

// shardLockReqs appends the locks a write to one shard takes: with pinned set, the shard
// lock shared and the key lock of each hash (at most maxKeyLocks, else the shard lock
// exclusively); without, the shard lock exclusively.
func shardLockReqs(dst []lockReq, shardID int64, hashes []int32, pinned bool) []lockReq {
	shardKey := store.LockKey(store.LockShard, shardID)
	if !pinned || len(hashes) > maxKeyLocks {
		return append(dst, lockReq{key: shardKey, exclusive: true})
	}
	dst = append(dst, lockReq{key: shardKey})
	for _, h := range hashes {
		dst = append(dst, lockReq{key: store.KeyLock(shardID, h), exclusive: true})
	}
	return dst
}

// normalizeLocks sorts lock requests by key (the global order every statement takes them
// in) and merges duplicates (exclusive wins).
func normalizeLocks(reqs []lockReq) []lockReq {
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].key < reqs[j].key })
	out := reqs[:0]
	for _, r := range reqs {
		if n := len(out); n > 0 && out[n-1].key == r.key {
			out[n-1].exclusive = out[n-1].exclusive || r.exclusive
			continue
		}
		out = append(out, r)
	}
	return out
}

// lockSQL is the one query that takes reqs (in their order) and then reads the
// placements' epoch (the sequence with OID epochOID; 0: none known) and, with xid set,
// the transaction's txid_current() (coordXid).
func lockSQL(reqs []lockReq, epochOID uint32, xid bool) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for _, r := range reqs {
		if r.exclusive {
			b.WriteString("pg_catalog.pg_advisory_xact_lock(")
		} else {
			b.WriteString("pg_catalog.pg_advisory_xact_lock_shared(")
		}
		b.WriteString(strconv.FormatInt(r.key, 10))
		b.WriteString("::pg_catalog.int8), ")
	}
	if epochOID == 0 {
		b.WriteString("NULL::pg_catalog.int8")
	} else {
		b.WriteString("pg_catalog.pg_sequence_last_value(")
		b.WriteString(strconv.FormatUint(uint64(epochOID), 10))
		b.WriteString("::pg_catalog.oid::pg_catalog.regclass)")
	}
	if xid {
		b.WriteString(", pg_catalog.txid_current()")
	}
	return b.String()
}

// lockWait is what bounds the session's waits as PostgreSQL bounds its own. Waits for
// locks happen in PostgreSQL, on the session's coordinator connection, which has the
// session's lock_timeout and statement_timeout: a client's cancel request must reach the
// coordinator backend waiting there (conn, from Server.cancel on another goroutine).
// Waits in the proxy itself (for a pooled connection: acquirePooled) are bounded by the
// statement's statement_timeout (from stmtStart) and by cancel requests (cancelled, stop).
// It also keeps the locks a statement outside a block holds (stmt: key -> exclusive).
type lockWait struct {
	// stmtTimeout is the session's statement_timeout (readIdleTimeouts); stmtStart is
	// when the client's statement (Query or Execute message, or a statement of a query
	// string) started.
	stmtTimeout time.Duration
	stmtStart   time.Time
	// lockTimeout is the session's lock_timeout, for the waits PostgreSQL does not make
	// for it (a client's repair: control.go).
	lockTimeout time.Duration
	stmt        map[int64]bool

	mu sync.Mutex
	// conn is the coordinator connection waiting for locks, if any.
	conn *backend.Conn
	// cancelled is set by a cancel request until the next statement starts: a cancel
	// that arrives before the statement waits still ends it, as in PostgreSQL.
	cancelled bool
	// stop ends the proxy's own wait under way, if any.
	stop context.CancelCauseFunc
}

// startStatement is called when a client's Query or Execute starts.
func (w *lockWait) startStatement() {
	w.stmtStart = time.Now()
	w.mu.Lock()
	w.cancelled = false
	w.mu.Unlock()
}

// waitOn registers c as the connection waiting for locks (nil: none). It reports false
// when a cancel request came before the wait: the statement is to end at once.
func (w *lockWait) waitOn(c *backend.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.conn = c
	return c == nil || !w.cancelled
}

// cancel ends the statement's wait, now or when it starts: it sends a cancel request to
// the coordinator backend waiting for locks, if any, and ends the proxy's own wait. Safe
// from any goroutine.
func (w *lockWait) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancelled = true
	if w.conn != nil {
		// In flight before the wait ends, so that the connection sends nothing more
		// until the backend got it (backend.Conn.Cancel).
		w.conn.CancelAsync()
	}
	if w.stop != nil {
		w.stop(errUserCancel())
	}
}

// PostgreSQL's errors for a statement whose wait ended (ProcessInterrupts).
func errStatementTimeout() error {
	return pgerr.New(pgerr.QueryCanceled, "canceling statement due to statement timeout")
}

func errUserCancel() error {
	return pgerr.New(pgerr.QueryCanceled, "canceling statement due to user request")
}

// txLock are the locks a transaction block took in one statement. level is the number of
// savepoints the block had then: ROLLBACK TO the savepoint at index i releases, in
// PostgreSQL, the locks taken above level i. unlock does nothing (PostgreSQL releases
// them); it is kept for the block's end (releaseBlock).
type txLock struct {
	ids    []int64
	level  int
	unlock func()
}

// lockShardIDs takes the shard locks of ids, exclusively or shared, until the end of the
// statement or block.
func (t *txnState) lockShardIDs(ctx context.Context, ids []int64, exclusive bool) error {
	reqs := make([]lockReq, 0, len(ids))
	for _, id := range ids {
		reqs = append(reqs, lockReq{key: store.LockKey(store.LockShard, id), exclusive: exclusive})
	}
	return t.takeLocks(ctx, reqs)
}

// takeLocks takes the advisory locks reqs on the session's coordinator connection, in one
// round trip and in key order, until the end of the statement or block (a block asks only
// for the locks it does not hold yet), and brings the placements up to date when they
// changed (shardLocker.placementsCurrent).
func (t *txnState) takeLocks(ctx context.Context, reqs []lockReq) error {
	wantXid := t.wantXid
	t.wantXid = false
	if len(reqs) == 0 {
		return nil
	}
	reqs = normalizeLocks(reqs)
	if t.tx != txIdle {
		need := reqs[:0]
		for _, r := range reqs {
			if excl, held := t.txHeld[r.key]; !held || r.exclusive && !excl {
				need = append(need, r)
			}
		}
		if reqs = need; len(reqs) == 0 {
			return nil
		}
	}
	c, sql, err := t.lockConnSQL(ctx, lockSQL(reqs, t.locker.epochOID(), wantXid))
	if err != nil {
		return err
	}
	if !t.waits.waitOn(c) {
		t.waits.waitOn(nil)
		return errUserCancel()
	}
	rows, err := c.ExecRows(ctx, sql)
	t.waits.waitOn(nil)
	if err != nil {
		var pe *pgerr.Error
		if errors.As(err, &pe) && pe.Code == pgerr.DeadlockDetected {
			// PostgreSQL's detail names the coordinator's processes and the advisory
			// lock keys, which hold shard ids: the client hears what waited for what.
			e := *pe
			e.Detail = "Two or more transactions wait for each other's write locks on distributed tables."
			e.Hint = ""
			return &e
		}
		return coordLost(err)
	}
	if t.tx != txIdle {
		t.noteTxLocks(reqs)
	} else {
		// The statement holds locks until its end (the session's client writes are then
		// bounded: clientWriter).
		t.stmtUnlock = append(t.stmtUnlock, func() {})
		if t.waits.stmt == nil {
			t.waits.stmt = map[int64]bool{}
		}
		for _, r := range reqs {
			t.waits.stmt[r.key] = t.waits.stmt[r.key] || r.exclusive
		}
	}
	if wantXid && len(rows) == 1 && len(rows[0]) > 1 {
		row := rows[0]
		if xid, err := strconv.ParseInt(string(row[len(row)-1]), 10, 64); err == nil {
			t.coordXid = txXid{xid: xid, conn: c, idles: c.Idles}
		}
		rows[0] = row[:len(row)-1]
	}
	if len(rows) == 1 && len(rows[0]) > 0 && rows[0][len(rows[0])-1] != nil {
		epoch, _ := strconv.ParseInt(string(rows[0][len(rows[0])-1]), 10, 64)
		return t.locker.placementsCurrent(ctx, epoch)
	}
	return nil
}

// coordLost words a failure of the session's coordinator connection that PostgreSQL did
// not report itself (the connection broke: its backend was terminated, the network
// failed) as a lost connection, 08006, rather than as the proxy's internal error naming
// its sockets.
func coordLost(err error) error {
	var pe *pgerr.Error
	if err == nil || errors.As(err, &pe) {
		return err
	}
	return pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator was lost during the transaction")
}

// txXid is the txid_current() of the coordinator transaction that took a statement's
// locks (takeLocks, when asked: wantXid), kept for the two-phase commit that will record
// its decision in that transaction, which then needs no round trip of its own for it.
type txXid struct {
	xid   int64
	conn  *backend.Conn
	idles uint64 // conn.Idles then: the transaction is the same while it is
}

// knownXid is the txid_current() of c's transaction, when takeLocks fetched it in that
// very transaction (0: not known).
func (t *txnState) knownXid(c *backend.Conn) int64 {
	x := t.coordXid
	if x.xid == 0 || x.conn != c || c.Idles != x.idles || c.TxStatus != 'T' {
		return 0
	}
	return x.xid
}

// needXid asks the next takeLocks for the coordinator transaction's txid_current() (the
// caller knows the statement or block will commit with two-phase commit), unless the
// transaction's is known already.
func (t *txnState) needXid() {
	t.wantXid = t.coord == nil || t.knownXid(t.coord.Value()) == 0
}

// twoPhaseAhead reports whether a write of tasks makes the statement (outside a block)
// or the block commit with two-phase commit: outside a block, it writes more than one
// placement (each through a connection of its own: implicitWrite); in a block, its
// placements, with the block's earlier writes, are on more than one node.
func (t *txnState) twoPhaseAhead(tasks []writeTask) bool {
	if t.tx == txIdle {
		n := 0
		for _, task := range tasks {
			n += len(task.shard.Finalized())
		}
		return n > 1
	}
	var first metadata.Node
	seen := false
	same := func(n metadata.Node) bool {
		if !seen {
			first, seen = n, true
		}
		return n == first
	}
	for n := range t.txWrites {
		if !same(n) {
			return true
		}
	}
	for _, task := range tasks {
		for _, p := range task.shard.Finalized() {
			if !same(p.Node) {
				return true
			}
		}
	}
	return false
}

// lockConnSQL is lockConn, with the query that takes the locks: outside a block, when the
// statement has no coordinator transaction yet, the BEGIN that opens it goes in the same
// round trip (a failed lock leaves it aborted: endStatement's COMMIT then rolls it back).
func (t *txnState) lockConnSQL(ctx context.Context, sql string) (*backend.Conn, string, error) {
	if t.tx != txIdle || t.stmtCoordTx {
		c, err := t.lockConn(ctx)
		return c, sql, err
	}
	c, err := t.coordConnFor(ctx, false)
	if err != nil {
		return nil, "", err
	}
	t.stmtCoordTx = true
	t.coordWork = false
	return c, "BEGIN; " + sql, nil
}

// noteTxLocks records the locks the block now holds, at its current savepoint level.
func (t *txnState) noteTxLocks(reqs []lockReq) {
	if t.txHeld == nil {
		t.txHeld = map[int64]bool{}
	}
	ids := make([]int64, len(reqs))
	for i, r := range reqs {
		ids[i] = r.key
		t.txHeld[r.key] = t.txHeld[r.key] || r.exclusive
	}
	t.txLocks = append(t.txLocks, txLock{ids: ids, level: len(t.txSavepoints), unlock: func() {}})
}

// endStatement releases what a statement held until its end: outside a transaction
// block, the coordinator transaction the statement opened (coordTx) and with it the
// statement's locks, which is committed if the statement left it open (a statement that
// records a commit decision in it commits it itself).
func (t *txnState) endStatement(ctx context.Context) {
	t.stmtUnlock = t.stmtUnlock[:0]
	clear(t.waits.stmt)
	t.endStmtCoordTx(ctx)
	t.releaseFailedLocks()
}

// releaseTxLocks forgets the block's locks taken above the given savepoint level (all of
// them for -1): PostgreSQL released them (ROLLBACK TO, an aborted subtransaction), or
// may have; a later statement that needs them asks again, which costs nothing when the
// coordinator transaction still holds them.
func (t *txnState) releaseTxLocks(above int) {
	kept := t.txLocks[:0]
	for _, l := range t.txLocks {
		if l.level <= above {
			kept = append(kept, l)
			continue
		}
		for _, id := range l.ids {
			delete(t.txHeld, id)
		}
	}
	clear(t.txLocks[len(kept):])
	t.txLocks = kept
}

// releaseSavepointLocks brings the block's record of its locks in line with RELEASE or
// ROLLBACK TO of the savepoint at index i.
func (t *txnState) releaseSavepointLocks(i int, rollback bool) {
	if rollback {
		t.releaseTxLocks(i)
		return
	}
	// RELEASE merges the subtransaction into the enclosing level, locks and all.
	for k := range t.txLocks {
		if t.txLocks[k].level > i {
			t.txLocks[k].level = i
		}
	}
}

// releaseFailedLocks forgets the locks of the part of a failed block that can only be
// undone (after its innermost savepoint, all of it without): undoFailed rolls that part
// back on the coordinator too, which releases them, as PostgreSQL releases an aborted
// (sub)transaction's locks when it fails, not when the client ends it.
func (t *txnState) releaseFailedLocks() {
	if t.tx == txFailed && len(t.txLocks) > 0 {
		t.releaseTxLocks(len(t.txSavepoints) - 1)
	}
}

// undoFailed rolls back at once, on the backends of a failed transaction block, the part
// of the block that can now only be undone (all of it without savepoints, else what
// followed the innermost savepoint), as PostgreSQL aborts a transaction when a statement
// fails rather than when the client says ROLLBACK: the rows it wrote or locked there, and
// the coordinator's locks it took, are free for other writers while the client has not
// rolled back yet. The client's ROLLBACK or ROLLBACK TO then finds nothing more to undo
// there. A backend where the statement failed, whose part is aborted already, is left to
// them.
func (t *txnState) undoFailed(ctx context.Context) {
	if t.tx != txFailed || t.failedUndone {
		return
	}
	t.failedUndone = true
	sql := "ROLLBACK"
	if n := len(t.txSavepoints); n > 0 {
		sql = "ROLLBACK TO SAVEPOINT " + router.QuoteIdent(t.txSavepoints[n-1])
	}
	var conns []*backend.Conn
	live := func(c *backend.Conn) bool { return !c.Broken() && !c.Busy() && c.TxStatus == 'T' }
	for _, res := range t.txConns {
		if c := res.Value(); live(c) {
			conns = append(conns, c)
		}
	}
	if t.coordInTx && t.coord != nil {
		if c := t.coord.Value(); live(c) {
			conns = append(conns, c)
		}
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Exec(ctx, sql) // a failure leaves the rollback to the client's
		}()
	}
	wg.Wait()
}

// checkLocksHeld makes sure, before a block that holds write locks commits its workers
// (commit set), that the coordinator transaction holding them is still there: its
// connection answers, in the transaction. The locks last until it commits after the
// workers (finishOnNodes). A lost connection took the locks with it, and the block is
// rolled back instead, with the error returned.
func (t *txnState) checkLocksHeld(ctx context.Context, commit bool) error {
	if !commit || len(t.txLocks) == 0 {
		return nil
	}
	lost := pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator holding the transaction's write locks was lost").
		WithDetail("The transaction was rolled back.")
	if !t.coordInTx || t.coord == nil {
		return lost
	}
	c := t.coord.Value()
	if c.Broken() || c.Exec(ctx, "SELECT 1") != nil || c.TxStatus != 'T' {
		return lost
	}
	return nil
}

// Locks past the coordinator's COMMIT. The write locks must outlast the commit of the
// writes on every placement: a writer that takes them next and finds a placement that has
// committed and a sibling that has not yet sees the rows differently on each (a predicate
// DELETE deletes the committed INSERT's rows on one only). A commit that ends the
// coordinator's transaction first (two-phase commit records its decision there, then
// sends COMMIT PREPARED) runs holdLocksSQL in that transaction just before its COMMIT:
// session-level copies of the locks, granted at once since the transaction holds them;
// and releaseHeldLocksSQL once every placement has committed. A lost connection releases
// them too. (One-phase commit ends the coordinator's part after the workers' instead:
// finishOnNodes, commitImplicit before endStatement.)

// heldLocks are the write locks the session holds: its block's, else its statement's
// (key -> exclusive).
func (t *txnState) heldLocks() map[int64]bool {
	if t.tx != txIdle {
		return t.txHeld
	}
	return t.waits.stmt
}

// holdLocksSQL is the statement that takes session-level copies of the locks held (""
// for none), in key order.
func holdLocksSQL(held map[int64]bool) string {
	if len(held) == 0 {
		return ""
	}
	keys := make([]int64, 0, len(held))
	for k := range held {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if held[k] {
			b.WriteString("pg_catalog.pg_advisory_lock(")
		} else {
			b.WriteString("pg_catalog.pg_advisory_lock_shared(")
		}
		b.WriteString(strconv.FormatInt(k, 10))
		b.WriteString("::pg_catalog.int8)")
	}
	return b.String()
}

// releaseHeldLocksSQL lets go of the session-level locks holdLocksSQL(held) took ("" for
// none), one level of each: not pg_advisory_unlock_all, which would release the
// client's own session-level advisory locks on the coordinator too.
func releaseHeldLocksSQL(held map[int64]bool) string {
	return strings.NewReplacer("pg_advisory_lock(", "pg_advisory_unlock(", "pg_advisory_lock_shared(", "pg_advisory_unlock_shared(").
		Replace(holdLocksSQL(held))
}
