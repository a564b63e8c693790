package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router/sqllex"
)

// testNames returns name resolution for a session without a coordinator connection of
// its own; asking the coordinator fails the test (every case here must be answered
// without it).
func testNames(t *testing.T, srv *Server, tx *txStatus) *sessionNames {
	var coord *puddle.Resource[*backend.Conn]
	user, inTx := "alice", false
	st := testSettings(map[string]string{"search_path": "app"})
	return &sessionNames{nameDeps: namesDeps{srv: srv, user: &user, settings: st, tx: tx, coord: &coord, coordInTx: &inTx,
		coordConn: func(context.Context) (*backend.Conn, error) {
			t.Fatal("resolution asked for the coordinator connection")
			return nil, nil
		},
		startRunning: func(*backend.Conn) {}, stopRunning: func(*backend.Conn) {},
		lexMode: func() sqllex.Mode { return 0 }}}
}

// A statement that may change names marks the session's answer out of date; one that
// others can see advances the server's epoch, and inside a block the block remembers
// which kind it ran (its end advances the epoch again, or only marks this session).
func TestSessionNamesChanged(t *testing.T) {
	srv := &Server{}
	tx := txIdle
	n := testNames(t, srv, &tx)
	n.namesChanged(true)
	if !n.namesDirty || n.txNamesOwn || srv.namesEpoch.Load() != 0 {
		t.Fatalf("temporary DDL outside a block: dirty %v, txNamesOwn %v, epoch %d", n.namesDirty, n.txNamesOwn, srv.namesEpoch.Load())
	}
	n.namesChanged(false)
	if n.txNames || srv.namesEpoch.Load() != 1 {
		t.Fatalf("DDL outside a block: txNames %v, epoch %d", n.txNames, srv.namesEpoch.Load())
	}
	tx = txBlock
	n.namesChanged(true)
	n.namesChanged(false)
	if !n.txNamesOwn || !n.txNames || srv.namesEpoch.Load() != 2 {
		t.Fatalf("DDL in a block: txNamesOwn %v, txNames %v, epoch %d", n.txNamesOwn, n.txNames, srv.namesEpoch.Load())
	}
}

// An answer is kept while it is valid for the snapshot, the epoch and the session's
// settings; a failed block, or a coordinator that did not answer a moment ago, plans
// with the last answer rather than ask.
func TestSessionNamesResolve(t *testing.T) {
	srv := &Server{}
	tx := txIdle
	n := testNames(t, srv, &tx)
	snap := metadata.NewSnapshot(nil, nil)
	last := &namesState{names: map[string]string{"t": "app"}, key: "k", snap: snap}
	n.names = last
	if got := n.resolveNames(context.Background(), snap); got != last {
		t.Fatalf("a valid answer was not kept: %v", got)
	}
	n.namesDirty = true
	tx = txFailed
	if got := n.resolveNames(context.Background(), snap); got != last {
		t.Fatalf("in a failed block: %v, want the last answer", got)
	}
	tx = txIdle
	n.namesRetry = time.Now().Add(time.Minute)
	if got := n.resolveNames(context.Background(), snap); got != last {
		t.Fatalf("before the retry time: %v, want the last answer", got)
	}
	// Past it, a session without a coordinator connection of its own takes the answer
	// of sessions alike (same user and settings) when there is one.
	n.namesRetry = time.Time{}
	shared := &namesState{names: map[string]string{"t": "public"}, key: "s", snap: snap}
	srv.names.put("alice\x00"+n.nameDeps.settings.settings.key, shared)
	if got := n.resolveNames(context.Background(), snap); got != shared || n.names != shared || n.namesDirty {
		t.Fatalf("with a shared answer: %v (kept %v, dirty %v), want the shared one", got, n.names, n.namesDirty)
	}
	if rs := n.routerSession(context.Background(), snap, "SELECT 1"); rs.User != "alice" || rs.SearchPath != "app" || rs.Names != nil {
		t.Fatalf("router session of a snapshot without tables: %+v", rs)
	}
}
