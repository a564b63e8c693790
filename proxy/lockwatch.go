package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
)

// Watching the write locks while a write waits on its placements. The locks live in the
// session's coordinator transaction (locks.go); when its connection dies (its backend
// terminated, the coordinator restarted), PostgreSQL releases them at once, and another
// writer, of this proxy or another, takes them and writes the same rows. Two writers
// then wait for each other's row locks on two workers (one holds a placement's row, the
// other the sibling's), which no server's deadlock detector sees, and neither ever ends.
// So while a write waits for its placements' answers, the coordinator connection is
// watched; when it is lost, the placements' statements are cancelled (their backends
// answer 57014 and stay in step) and the write fails with 08006, undone everywhere.

// lockWatchInterval is how often the coordinator connection is looked at meanwhile.
const lockWatchInterval = 100 * time.Millisecond

// errLocksLost is the error of a write whose coordinator connection, holding its write
// locks, was lost while it waited for its placements.
func errLocksLost() error {
	return pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator holding the write locks was lost").
		WithDetail("The statement was rolled back on every placement.")
}

// watchLocks starts watching, while the write's answers are collected, the coordinator
// connection that holds the session's write locks, if any, and cancels the write's
// placement statements when it is lost. The returned function stops the watch and
// reports whether the connection was lost (it is then marked broken). It must be called
// on the session's goroutine before the coordinator connection is used again.
func (wr *writeRun) watchLocks() (stop func() (lost bool)) {
	t := &wr.x.ss.txn
	nothing := func() bool { return false }
	if len(t.heldLocks()) == 0 || t.coord == nil || !(t.coordInTx || t.stmtCoordTx) {
		return nothing
	}
	if wr.tp != nil && wr.tp.xidPending {
		// Step 1 of two-phase commit is under way on it: its answer is not a loss.
		return nothing
	}
	c := t.coord.Value()
	if c.Broken() || c.Busy() || c.Discarding() || c.TxStatus != 'T' {
		return nothing
	}
	var conns []*backend.Conn
	for _, w := range wr.writes {
		if w.sent && w.err == nil && w.wc.res != nil {
			if w.wc.conn() == c {
				return nothing // read by the write itself
			}
			conns = append(conns, w.wc.conn())
		}
	}
	if len(conns) == 0 {
		return nothing
	}
	// A timer, not a goroutine: most writes are answered before it first fires, and
	// then the watch costs no more than the timer.
	var mu sync.Mutex
	var tm *time.Timer
	stopped, lost := false, false
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		// In its transaction, with nothing asked of it, the connection has nothing to
		// say: anything it sends is the FATAL before it closes, or the close.
		if !c.Pending() {
			tm.Reset(lockWatchInterval)
			return
		}
		lost = true
		cancelConns(conns)
	}
	mu.Lock()
	tm = time.AfterFunc(lockWatchInterval, check)
	mu.Unlock()
	return func() bool {
		tm.Stop()
		// A check under way finishes first (its cancel requests delivered).
		mu.Lock()
		stopped = true
		l := lost
		mu.Unlock()
		if l {
			c.MarkBroken()
		}
		return l
	}
}

// cancelConns sends a cancel request to the backend of each of conns and waits until
// each was delivered (or failed).
func cancelConns(conns []*backend.Conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.Cancel(ctx)
		}()
	}
	wg.Wait()
}
