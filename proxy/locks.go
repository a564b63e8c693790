package proxy

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// shardLocks are the proxy's shard write locks: shared for writes that commute (INSERTs
// into a table without unique indexes), exclusive for the others and for repair, so that
// the placements of a replicated shard apply non-commuting writes in one order. Waiters
// are served first come, first served.
//
// Transaction blocks hold their locks until they end and take them statement by
// statement, so two blocks writing two shards in opposite orders wait for each other
// forever. As PostgreSQL's lock manager does, a waiter that has waited deadlock_timeout
// looks for a cycle in the wait-for graph (who holds, or queues ahead for, the shard it
// waits for, and what they wait for in turn) and, finding one, gives up with 40P01, which
// frees the others. The graph knows this proxy's locks only: a cycle through another
// proxy's lease is not seen (it ends at the lock timeout).
type shardLocks struct {
	mu sync.Mutex
	m  map[int64]*shardLock
	// waiting is what each owner (a session's lockWait) waits for, while it waits.
	waiting map[*lockWait]*lockWaiter
}

type shardLock struct {
	readers int
	writer  bool
	queue   []*lockWaiter
	// holders are the owners holding the lock, with how many times they took it (nil
	// for those without an owner: repair).
	holders map[*lockWait]int
}

type lockWaiter struct {
	shard     int64
	owner     *lockWait
	exclusive bool
	granted   bool
	ready     chan struct{}
}

func newShardLocks() *shardLocks {
	return &shardLocks{m: map[int64]*shardLock{}, waiting: map[*lockWait]*lockWaiter{}}
}

// lockOwnerKey is the context key of the lockWait on whose behalf locks are taken.
type lockOwnerKey struct{}

// lockOwner is the owner of the locks taken with ctx, nil for none.
func lockOwner(ctx context.Context) *lockWait {
	w, _ := ctx.Value(lockOwnerKey{}).(*lockWait)
	return w
}

// lock takes the locks of the given shards, in shard order (so that statements locking
// several shards cannot deadlock each other), and returns the function that releases them.
func (l *shardLocks) lock(ctx context.Context, ids []int64, exclusive bool) (func(), error) {
	owner := lockOwner(ctx)
	ids = append([]int64(nil), ids...)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	held := make([]int64, 0, len(ids))
	for i, id := range ids {
		if i > 0 && id == ids[i-1] {
			continue
		}
		if err := l.acquire(ctx, id, exclusive, owner); err != nil {
			for _, h := range held {
				l.release(h, exclusive, owner)
			}
			return nil, err
		}
		held = append(held, id)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, h := range held {
				l.release(h, exclusive, owner)
			}
		})
	}, nil
}

func (l *shardLocks) acquire(ctx context.Context, id int64, exclusive bool, owner *lockWait) error {
	l.mu.Lock()
	s := l.m[id]
	if s == nil {
		s = &shardLock{holders: map[*lockWait]int{}}
		l.m[id] = s
	}
	if len(s.queue) == 0 && s.compatible(exclusive) {
		s.grant(exclusive, owner)
		l.mu.Unlock()
		return nil
	}
	w := &lockWaiter{shard: id, owner: owner, exclusive: exclusive, ready: make(chan struct{})}
	s.queue = append(s.queue, w)
	if owner != nil {
		l.waiting[owner] = w
	}
	l.mu.Unlock()
	var check <-chan time.Time
	if owner != nil {
		t := time.NewTimer(owner.deadlockWait())
		defer t.Stop()
		check = t.C
	}
	for {
		select {
		case <-w.ready:
			return nil
		case <-check:
			check = nil
			l.mu.Lock()
			if w.granted || !l.deadlocked(owner) {
				l.mu.Unlock()
				continue
			}
			l.dequeue(s, w)
			l.mu.Unlock()
			return errDeadlock()
		case <-ctx.Done():
			l.mu.Lock()
			if w.granted {
				l.mu.Unlock()
				l.release(id, exclusive, owner)
				return context.Cause(ctx)
			}
			l.dequeue(s, w)
			l.mu.Unlock()
			return context.Cause(ctx)
		}
	}
}

// dequeue takes a waiter that gives up out of its queue (l.mu held).
func (l *shardLocks) dequeue(s *shardLock, w *lockWaiter) {
	for i, q := range s.queue {
		if q == w {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
	l.unwait(w)
	s.wake(l)
}

// unwait forgets what w's owner waited for (l.mu held).
func (l *shardLocks) unwait(w *lockWaiter) {
	if w.owner != nil && l.waiting[w.owner] == w {
		delete(l.waiting, w.owner)
	}
}

// deadlocked reports whether me waits, through the locks of this proxy, for itself
// (l.mu held): a waiter waits for the holders of its shard's lock and for the waiters
// queued ahead of it that it cannot share with (first come, first served).
func (l *shardLocks) deadlocked(me *lockWait) bool {
	seen := map[*lockWait]bool{}
	var waitsFor func(o *lockWait) bool
	waitsFor = func(o *lockWait) bool {
		w := l.waiting[o]
		if w == nil {
			return false
		}
		s := l.m[w.shard]
		var blockers []*lockWait
		for h := range s.holders {
			if h != o && (w.exclusive || s.writer) {
				blockers = append(blockers, h)
			}
		}
		for _, q := range s.queue {
			if q == w {
				break
			}
			if q.owner != o && (q.exclusive || w.exclusive) {
				blockers = append(blockers, q.owner)
			}
		}
		for _, b := range blockers {
			if b == me {
				return true
			}
			if b != nil && !seen[b] {
				seen[b] = true
				if waitsFor(b) {
					return true
				}
			}
		}
		return false
	}
	return waitsFor(me)
}

func (l *shardLocks) release(id int64, exclusive bool, owner *lockWait) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.m[id]
	if exclusive {
		s.writer = false
	} else {
		s.readers--
	}
	if s.holders[owner]--; s.holders[owner] <= 0 {
		delete(s.holders, owner)
	}
	s.wake(l)
}

func (s *shardLock) compatible(exclusive bool) bool {
	if exclusive {
		return !s.writer && s.readers == 0
	}
	return !s.writer
}

func (s *shardLock) grant(exclusive bool, owner *lockWait) {
	if exclusive {
		s.writer = true
	} else {
		s.readers++
	}
	s.holders[owner]++
}

// wake grants the lock to waiters at the head of the queue while they are compatible
// (l.mu held).
func (s *shardLock) wake(l *shardLocks) {
	for len(s.queue) > 0 && s.compatible(s.queue[0].exclusive) {
		w := s.queue[0]
		s.queue = s.queue[1:]
		s.grant(w.exclusive, w.owner)
		l.unwait(w)
		w.granted = true
		close(w.ready)
	}
}

// lockWait bounds a statement's waits for shard write locks as PostgreSQL bounds its own
// lock waits: by the session's lock_timeout (each wait anew), its statement_timeout (from
// the start of the statement) and cancel requests, with PostgreSQL's SQLSTATEs and
// messages, so that a client's retry logic and its own timeouts work through pgshard as
// on one server. The proxy's LockTimeout stays the outer bound (Server.lockShards).
// The timeouts are the session's as its coordinator connection has them (with SET LOCAL
// inside a block: idle.go reads them with the idle timeouts). A cancel request arrives on
// another goroutine (Server.cancel), hence the mutex around cancelled and stop.
type lockWait struct {
	lockTimeout, stmtTimeout time.Duration
	// deadlockTimeout is the session's deadlock_timeout: how long a wait goes before
	// looking for a deadlock (shardLocks).
	deadlockTimeout time.Duration
	// stmtStart is when the client's statement (Query or Execute message) started.
	stmtStart time.Time

	mu sync.Mutex
	// cancelled is set by a cancel request until the next statement starts: a cancel
	// that arrives before the statement waits still ends it, as in PostgreSQL.
	cancelled bool
	// stop ends the wait under way, if any.
	stop context.CancelCauseFunc
}

// startStatement is called when a client's Query or Execute starts.
func (w *lockWait) startStatement() {
	w.stmtStart = time.Now()
	w.mu.Lock()
	w.cancelled = false
	w.mu.Unlock()
}

// cancel ends the statement's lock wait, now or when it starts. Safe from any goroutine.
func (w *lockWait) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancelled = true
	if w.stop != nil {
		w.stop(errUserCancel())
	}
}

// bound is ctx ended as the session's settings end a lock wait, with the error the client
// is to hear as its cause (context.Cause); stop releases it.
func (w *lockWait) bound(ctx context.Context) (context.Context, func(), error) {
	var deadline time.Time
	var cause error
	if w.lockTimeout > 0 {
		deadline, cause = time.Now().Add(w.lockTimeout), errLockTimeout()
	}
	if w.stmtTimeout > 0 && !w.stmtStart.IsZero() {
		if d := w.stmtStart.Add(w.stmtTimeout); deadline.IsZero() || d.Before(deadline) {
			deadline, cause = d, errStatementTimeout()
		}
	}
	ctx, stopCancel := context.WithCancelCause(context.WithValue(ctx, lockOwnerKey{}, w))
	w.mu.Lock()
	if w.cancelled {
		w.mu.Unlock()
		stopCancel(nil)
		return nil, nil, errUserCancel()
	}
	w.stop = stopCancel
	w.mu.Unlock()
	stopTimer := context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, stopTimer = context.WithDeadlineCause(ctx, deadline, cause)
	}
	return ctx, func() {
		stopTimer()
		w.mu.Lock()
		w.stop = nil
		w.mu.Unlock()
		stopCancel(nil)
	}, nil
}

// deadlockWait is how long a wait goes before looking for a deadlock: deadlock_timeout,
// PostgreSQL's default (1s) when unknown.
func (w *lockWait) deadlockWait() time.Duration {
	if w.deadlockTimeout > 0 {
		return w.deadlockTimeout
	}
	return time.Second
}

// errDeadlock is PostgreSQL's error for the waiter that found a deadlock.
func errDeadlock() error {
	return pgerr.New(pgerr.DeadlockDetected, "deadlock detected").
		WithDetail("Two or more pgshard transaction blocks wait for each other's shard write locks.")
}

// PostgreSQL's errors for a statement whose lock wait ended (ProcessInterrupts).
func errLockTimeout() error {
	return pgerr.New(pgerr.LockNotAvailable, "canceling statement due to lock timeout")
}

func errStatementTimeout() error {
	return pgerr.New(pgerr.QueryCanceled, "canceling statement due to statement timeout")
}

func errUserCancel() error {
	return pgerr.New(pgerr.QueryCanceled, "canceling statement due to user request")
}

// txLock is a set of shard locks a transaction block took in one statement. level is the
// number of savepoints the block had then: ROLLBACK TO the savepoint at index i undoes
// the writes of every level above i, and with them the need for their locks.
type txLock struct {
	ids    []int64
	level  int
	unlock func()
}

// lockShardIDs takes shard write locks until the end of the statement, or, inside a
// transaction block, exclusively until the end of the block (a block takes each shard's
// lock once, so later statements of the block never wait for it).
func (t *txnState) lockShardIDs(ctx context.Context, ids []int64, exclusive bool) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, stop, err := t.waits.bound(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if t.tx == txIdle {
		unlock, err := t.locker.lockShards(ctx, ids, exclusive)
		if err != nil {
			return err
		}
		t.stmtUnlock = append(t.stmtUnlock, unlock)
		return nil
	}
	var need []int64
	for _, id := range ids {
		if !t.txHeld[id] {
			need = append(need, id)
		}
	}
	if len(need) == 0 {
		return nil
	}
	unlock, err := t.locker.lockShards(ctx, need, true)
	if err != nil {
		return err
	}
	t.txLocks = append(t.txLocks, txLock{ids: need, level: len(t.txSavepoints), unlock: unlock})
	if t.txHeld == nil {
		t.txHeld = map[int64]bool{}
	}
	for _, id := range need {
		t.txHeld[id] = true
	}
	return nil
}

// endStatement releases what a statement held until its end: its shard locks, and,
// outside a transaction block, the coordinator transaction the statement opened
// (coordTx), which is committed if the statement left it open (it held only locks: a
// statement that records a commit decision in it commits it itself).
func (t *txnState) endStatement(ctx context.Context) {
	for _, u := range t.stmtUnlock {
		u()
	}
	t.stmtUnlock = t.stmtUnlock[:0]
	t.endStmtCoordTx(ctx)
	t.releaseFailedLocks()
}

// releaseTxLocks lets go of the block's locks taken above the given savepoint level (all of
// them for -1), which no write the block may still commit needs: the writes they ordered
// are undone, or can only be undone. Those shards' locks are taken again if the block
// writes to them again.
func (t *txnState) releaseTxLocks(above int) {
	kept := t.txLocks[:0]
	for _, l := range t.txLocks {
		if l.level <= above {
			kept = append(kept, l)
			continue
		}
		l.unlock()
		for _, id := range l.ids {
			delete(t.txHeld, id)
		}
	}
	clear(t.txLocks[len(kept):])
	t.txLocks = kept
}

// releaseSavepointLocks brings the block's locks in line with RELEASE or ROLLBACK TO of
// the savepoint at index i.
func (t *txnState) releaseSavepointLocks(i int, rollback bool) {
	if rollback {
		t.releaseTxLocks(i)
		return
	}
	// RELEASE merges the writes after the savepoint into the enclosing level.
	for k := range t.txLocks {
		if t.txLocks[k].level > i {
			t.txLocks[k].level = i
		}
	}
}

// releaseFailedLocks lets go of the locks a failed transaction block no longer needs. A
// block in the failed state ('E') can only end with ROLLBACK or ROLLBACK TO a savepoint it
// holds, so whatever it wrote after its innermost savepoint (all of it, without
// savepoints) will be undone and can never commit: the locks taken for those writes go at
// once, as PostgreSQL releases an aborted (sub)transaction's locks when it fails, not when
// the client ends it. Those writes never commit, so they cannot make the placements of a
// shard apply other writes in different orders, which is all the shard lock is for; and
// they do not even hold row locks on the workers for long: undoFailed rolls them back
// there before the client hears ReadyForQuery (until then, or if that fails, another
// writer of those rows waits for them inside PostgreSQL, under its lock_timeout).
func (t *txnState) releaseFailedLocks() {
	if t.tx == txFailed && len(t.txLocks) > 0 {
		t.releaseTxLocks(len(t.txSavepoints) - 1)
	}
}

// undoFailed rolls back at once, on the backends of a failed transaction block, the part
// of the block that can now only be undone (all of it without savepoints, else what
// followed the innermost savepoint), as PostgreSQL aborts a transaction when a statement
// fails rather than when the client says ROLLBACK: the rows it wrote or locked there are
// free for other writers while the client has not rolled back yet. The client's ROLLBACK
// or ROLLBACK TO then finds nothing more to undo there. A backend where the statement
// failed, whose part is aborted already, is left to them.
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
