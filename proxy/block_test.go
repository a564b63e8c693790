package proxy

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// fakeHost is a txnHost that records what the transaction layer asked of its session.
// With no backend connection in the block, the layer's bookkeeping (states, savepoints,
// replay, shard locks) runs without a server.
type fakeHost struct {
	tags     []string
	notices  []pgerr.Code
	more     bool
	settings bool
	undone   []bool // blockUndone's ended, in order
	marked   []metadata.Placement
}

func (h *fakeHost) commandComplete(tag string) { h.tags = append(h.tags, tag) }
func (h *fakeHost) sendNotice(e *pgerr.Error)  { h.notices = append(h.notices, e.Code) }
func (h *fakeHost) moreBeforeSync() bool       { return h.more }
func (h *fakeHost) settingsChanged() bool      { return h.settings }
func (h *fakeHost) blockUndone(_ context.Context, ended bool) {
	h.undone = append(h.undone, ended)
}
func (h *fakeHost) markMissed(_ context.Context, ps []metadata.Placement) error {
	h.marked = append(h.marked, ps...)
	return nil
}

func (h *fakeHost) finishPrepared(context.Context, metadata.Node, string) error {
	return errors.New("fakeHost: no prepared transactions")
}

// fakeLocker is a shardLocker with no epoch and no metadata to reload.
type fakeLocker struct{}

func (l *fakeLocker) epochOID() uint32                               { return 0 }
func (l *fakeLocker) placementsCurrent(context.Context, int64) error { return nil }

var errNoBackend = errors.New("no backend in a unit test")

func (h *fakeHost) acquireCoord(context.Context) (*puddle.Resource[*backend.Conn], error) {
	return nil, errNoBackend
}
func (h *fakeHost) acquireWorker(context.Context, metadata.Node) (*puddle.Resource[*backend.Conn], error) {
	return nil, errNoBackend
}
func (h *fakeHost) applySettingsFor(context.Context, *backend.Conn, bool) error { return nil }

func newTestTxn() (*txnState, *fakeHost) {
	b, h, _ := newTestTxnLocks()
	return b, h
}

func newTestTxnLocks() (*txnState, *fakeHost, *fakeLocker) {
	h := &fakeHost{}
	l := &fakeLocker{}
	t := newTxnState(h, l, 0, nil)
	return &t, h, l
}

// holdLock records locks as a write of the block does once the coordinator granted them.
func holdLock(t *txnState, ids ...int64) {
	reqs := make([]lockReq, len(ids))
	for i, id := range ids {
		reqs[i] = lockReq{key: id, exclusive: true}
	}
	t.noteTxLocks(reqs)
}

func sp(kind router.Kind, name, tag string) *router.Statement {
	return &router.Statement{Kind: kind, Name: name, Tag: tag}
}

func TestBlockSavepointReplay(t *testing.T) {
	ctx := context.Background()
	b, h := newTestTxn()
	if err := b.savepoint(ctx, sp(router.Savepoint, "a", "SAVEPOINT"), "SAVEPOINT a"); pgerr.From(err).Code != pgerr.NoActiveSQLTransaction {
		t.Fatalf("SAVEPOINT outside a block: %v", err)
	}
	b.beginBlock("BEGIN")
	for _, s := range []struct{ name, sql string }{{"a", "SAVEPOINT a"}, {"", "SET LOCAL x = 1"}, {"b", "SAVEPOINT b"}, {"", "SET LOCAL y = 2"}} {
		if s.name == "" {
			b.txReplay = append(b.txReplay, s.sql) // as setStatement does
			continue
		}
		if err := b.savepoint(ctx, sp(router.Savepoint, s.name, "SAVEPOINT"), s.sql); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(b.txSavepoints, []string{"a", "b"}) || !slices.Equal(b.txSavepointAt, []int{1, 3}) {
		t.Fatalf("savepoints %q at %v", b.txSavepoints, b.txSavepointAt)
	}
	if err := b.savepoint(ctx, sp(router.RollbackTo, "c", "ROLLBACK"), "ROLLBACK TO c"); pgerr.From(err).Code != "3B001" {
		t.Fatalf("ROLLBACK TO an unknown savepoint: %v", err)
	}
	// ROLLBACK TO b undoes what followed b: the replay keeps b itself, which the
	// statement does not release.
	b.failBlock()
	if err := b.savepoint(ctx, sp(router.RollbackTo, "b", "ROLLBACK"), "ROLLBACK TO b"); err != nil {
		t.Fatal(err)
	}
	if b.tx != txBlock || !slices.Equal(b.txReplay, []string{"BEGIN", "SAVEPOINT a", "SET LOCAL x = 1", "SAVEPOINT b"}) {
		t.Fatalf("after ROLLBACK TO b: %v %q", b.tx, b.txReplay)
	}
	// RELEASE a drops a and b from the replay, keeping what ran between them.
	if err := b.savepoint(ctx, sp(router.Release, "a", "RELEASE"), "RELEASE a"); err != nil {
		t.Fatal(err)
	}
	if len(b.txSavepoints) != 0 || len(b.txSavepointAt) != 0 || !slices.Equal(b.txReplay, []string{"BEGIN", "SET LOCAL x = 1"}) {
		t.Fatalf("after RELEASE a: %q at %v, replay %q", b.txSavepoints, b.txSavepointAt, b.txReplay)
	}
	if !slices.Equal(h.tags, []string{"SAVEPOINT", "SAVEPOINT", "ROLLBACK", "RELEASE"}) || !slices.Equal(h.undone, []bool{false}) {
		t.Fatalf("tags %q, undone %v", h.tags, h.undone)
	}
}

func TestNormalizeLocks(t *testing.T) {
	got := normalizeLocks([]lockReq{{5, false}, {3, true}, {5, true}, {1, false}, {3, false}})
	want := []lockReq{{1, false}, {3, true}, {5, true}}
	if !slices.Equal(got, want) {
		t.Fatalf("normalizeLocks: %v, want %v", got, want)
	}
	// Beyond maxKeyLocks keys, the shard lock exclusively instead.
	many := make([]int32, maxKeyLocks+1)
	if r := shardLockReqs(nil, 7, many, true); len(r) != 1 || !r[0].exclusive {
		t.Fatalf("too many keys: %v", r)
	}
	if r := shardLockReqs(nil, 7, []int32{1, 2}, true); len(r) != 3 || r[0].exclusive || !r[1].exclusive {
		t.Fatalf("pinned keys: %v", r)
	}
}

func TestBlockSavepointLocks(t *testing.T) {
	ctx := context.Background()
	b, _, _ := newTestTxnLocks()
	b.beginBlock("BEGIN")
	holdLock(b, 1)
	b.savepoint(ctx, sp(router.Savepoint, "a", "SAVEPOINT"), "SAVEPOINT a")
	holdLock(b, 2)
	b.savepoint(ctx, sp(router.Savepoint, "b", "SAVEPOINT"), "SAVEPOINT b")
	holdLock(b, 3)
	// RELEASE b merges b's locks into a's level.
	b.savepoint(ctx, sp(router.Release, "b", "RELEASE"), "RELEASE b")
	if !b.txHeld[3] || b.txLocks[2].level != 1 {
		t.Fatalf("RELEASE b: held %v, level %d", b.txHeld, b.txLocks[2].level)
	}
	// ROLLBACK TO a releases (in PostgreSQL) the locks taken after a.
	b.savepoint(ctx, sp(router.RollbackTo, "a", "ROLLBACK"), "ROLLBACK TO a")
	if len(b.txLocks) != 1 || !b.txHeld[1] || b.txHeld[2] || b.txHeld[3] {
		t.Fatalf("ROLLBACK TO a: held %v", b.txHeld)
	}
	holdLock(b, 2)
	// A failed block forgets at once the locks of what can only be undone: here, what
	// followed the innermost savepoint.
	b.releaseFailedLocks()
	if !b.txHeld[2] {
		t.Fatal("a block that goes on forgot its locks")
	}
	b.failBlock()
	b.releaseFailedLocks()
	if b.txHeld[2] || !b.txHeld[1] {
		t.Fatalf("failed block: held %v", b.txHeld)
	}
	// Without savepoints, all of them.
	b.endTx(ctx, false)
	b.beginBlock("BEGIN")
	holdLock(b, 5, 6)
	b.failBlock()
	b.endStatement(context.Background())
	if b.holdsShardLocks() || len(b.txHeld) != 0 {
		t.Fatalf("failed block without savepoints kept its locks: %v", b.txHeld)
	}
}

func TestBlockEnd(t *testing.T) {
	ctx := context.Background()
	b, h, _ := newTestTxnLocks()
	if err := b.commit(ctx); err != nil || !slices.Equal(h.notices, []pgerr.Code{pgerr.NoActiveSQLTransaction}) || h.tags[0] != "COMMIT" {
		t.Fatalf("COMMIT outside a block: %v %v %q", err, h.notices, h.tags)
	}
	b.beginBlock("BEGIN")
	holdLock(b, 7)
	b.coordInTx = true // no connection: nothing to run, but forgotten at the end
	b.txRowLocks = true
	b.failBlock()
	if err := b.commit(ctx); err != nil || h.tags[1] != "ROLLBACK" {
		t.Fatalf("COMMIT of a failed block: %v %q", err, h.tags)
	}
	if b.tx != txIdle || b.txLocks != nil || b.txHeld != nil || b.txReplay != nil || b.coordInTx || b.txRowLocks || b.holdsShardLocks() {
		t.Fatalf("the ended block still holds something: %+v", b)
	}
	if !slices.Equal(h.undone, []bool{true}) {
		t.Fatalf("blockUndone: %v", h.undone)
	}
	b.beginBlock("BEGIN")
	if err := b.commit(ctx); err != nil || h.tags[2] != "COMMIT" || b.tx != txIdle {
		t.Fatalf("COMMIT: %v %q %v", err, h.tags, b.tx)
	}
	if missed, err := b.endTx(ctx, true); missed != nil || err != nil {
		t.Fatal("endTx outside a block did something")
	}
}

func TestBlockInBlock(t *testing.T) {
	ctx := context.Background()
	b, _ := newTestTxn()
	var during txStatus
	boom := errors.New("boom")
	if err := b.inBlock(ctx, func() error { during = b.tx; return boom }); err != boom || during != txBlock || b.tx != txIdle {
		t.Fatalf("inBlock outside a block: %v, %v during, %v after", err, during, b.tx)
	}
	b.beginBlock("BEGIN")
	if err := b.inBlock(ctx, func() error { return boom }); err != boom || b.tx != txFailed {
		t.Fatalf("inBlock inside a block: %v %v", err, b.tx)
	}
}

func TestBlockPipeline(t *testing.T) {
	ctx := context.Background()
	b, h := newTestTxn()
	ins := &router.Statement{Kind: router.Insert}
	b.pipelineBlock(ctx, ins)
	if b.tx != txIdle {
		t.Fatal("a pipeline's last statement opened a block")
	}
	h.more = true
	b.pipelineBlock(ctx, &router.Statement{Kind: router.Select})
	if b.tx != txIdle {
		t.Fatal("a SELECT opened a pipeline block")
	}
	b.pipelineBlock(ctx, ins)
	if b.tx != txBlock || !b.pipelineTx {
		t.Fatalf("pipeline block: %v %v", b.tx, b.pipelineTx)
	}
	// BEGIN takes the pipeline's block over (the Begin statement ends pipelineTx).
	b.pipelineBlock(ctx, &router.Statement{Kind: router.Begin})
	if b.tx != txBlock || !b.pipelineTx {
		t.Fatalf("after BEGIN in a pipeline: %v %v", b.tx, b.pipelineTx)
	}
	// A statement that cannot run in a block ends the pipeline's first.
	b.pipelineBlock(ctx, &router.Statement{Kind: router.Truncate})
	if b.tx != txIdle || b.pipelineTx {
		t.Fatalf("after TRUNCATE in a pipeline: %v %v", b.tx, b.pipelineTx)
	}
}

func TestBlockIdleDeadline(t *testing.T) {
	b, _, _ := newTestTxnLocks()
	b.idleInTx, b.idleSession, b.idleTxLimit = time.Hour, 2*time.Hour, time.Minute
	if d, _ := b.idleDeadline(); !d.IsZero() {
		t.Fatal("a session not waiting for its client has an idle deadline")
	}
	b.waitingClient = true
	if d, e := b.idleDeadline(); e != errIdleSession || time.Until(d) < time.Hour {
		t.Fatalf("idle session: %v %v", d, e)
	}
	b.beginBlock("BEGIN")
	if d, e := b.idleDeadline(); e != errIdleInTransaction || time.Until(d) > time.Hour {
		t.Fatalf("idle in a block: %v %v", d, e)
	}
	holdLock(b, 1)
	if d, _ := b.idleDeadline(); time.Until(d) > time.Minute {
		t.Fatal("IdleTransactionTimeout does not bound a block holding shard locks")
	}
	b.waitingClient = false
	if d, e := b.idleDeadline(); e != errIdleInTransaction || time.Until(d) > time.Minute || d.IsZero() {
		t.Fatal("IdleTransactionTimeout does not bound a block holding shard locks between messages")
	}
}

func TestBlockConnsFromHost(t *testing.T) {
	ctx := context.Background()
	b, _ := newTestTxn()
	b.beginBlock("BEGIN")
	if _, err := b.coordConn(ctx); err != errNoBackend || b.coord != nil || b.coordInTx {
		t.Fatalf("coordConn without a backend: %v", err)
	}
	if _, err := b.workerConn(ctx, metadata.Node{Name: "w1", Port: 5432}); err != errNoBackend || len(b.txConns) != 0 {
		t.Fatalf("workerConn without a backend: %v", err)
	}
	b.release(workerConn{}) // nothing taken, nothing to give back
}
