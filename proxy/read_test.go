package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/router"
)

// The read path's failover rule (README, "Failures and repair"): a read goes to the
// shard's first finalized placement and fails over to the next one when the first cannot
// be reached or its connection breaks, as long as nothing of the result has reached the
// client. A placement that answers with an error answered: the error is the client's.

var (
	nodeA = metadata.Node{Name: "worker-a", Port: 5432}
	nodeB = metadata.Node{Name: "worker-b", Port: 5432}
)

// readFixture is a session and a read execution over scripted backends, for one shard
// of table "items" with a placement on nodeA and one on nodeB (in that order).
type readFixture struct {
	x     *execution
	be    *scriptedBackends
	out   *bytes.Buffer
	shard *metadata.Shard
}

func newReadFixture(t *testing.T) *readFixture {
	shard := &metadata.Shard{ID: 102008, TableID: 16400, Storage: 't', Min: -1 << 31, Max: 1<<31 - 1,
		Placements: []metadata.Placement{
			{ID: 1, ShardID: 102008, State: metadata.StateFinalized, Node: nodeA},
			{ID: 2, ShardID: 102008, State: metadata.StateFinalized, Node: nodeB},
		}}
	table := &metadata.Table{OID: 16400, Schema: "public", Name: "items", Method: 'h', Key: "id",
		Shards: []*metadata.Shard{shard}}
	srv := &Server{cache: &metadata.Cache{}}
	srv.cache.Replace(metadata.NewSnapshot([]metadata.Node{nodeA, nodeB}, []*metadata.Table{table}))
	out := &bytes.Buffer{}
	ss := &session{srv: srv, w: pgwire.NewWriter(out), txn: txnState{tx: txIdle},
		params: map[string]string{}, running: map[*backend.Conn]struct{}{}}
	be := &scriptedBackends{t: t, workers: map[metadata.Node][]*backend.Conn{}}
	x := &execution{ss: ss, snap: srv.cache.Load(), out: protocol.NewResults(ss.w), be: be}
	return &readFixture{x: x, be: be, out: out, shard: shard}
}

// read runs the single-shard read of the fixture's shard and returns its error and the
// frames the client got.
func (f *readFixture) read(t *testing.T) (error, []frame) {
	t.Helper()
	err := f.x.readShard(context.Background(), readTask{shard: f.shard}, []byte("SELECT v FROM items_102008"), nil)
	if ferr := f.x.ss.w.Flush(); ferr != nil {
		t.Fatal(ferr)
	}
	return err, frames(t, f.out.Bytes())
}

// frame is one message the client received: its type and, for a DataRow, its first
// value, for an ErrorResponse its message.
type frame struct {
	typ  byte
	text string
}

func frames(t *testing.T, b []byte) []frame {
	t.Helper()
	var out []frame
	for len(b) >= 5 {
		typ, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
		body := b[5 : 1+n]
		b = b[1+n:]
		f := frame{typ: typ}
		switch typ {
		case 'D':
			var d pgproto3.DataRow
			if err := d.Decode(body); err != nil {
				t.Fatal(err)
			}
			f.text = string(d.Values[0])
		case 'E':
			f.text = backend.DecodeError(body).Message
		}
		out = append(out, f)
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left over in the client's output", len(b))
	}
	return out
}

// rowsOf are the DataRow values among frames.
func rowsOf(fs []frame) []string {
	var out []string
	for _, f := range fs {
		if f.typ == 'D' {
			out = append(out, f.text)
		}
	}
	return out
}

// frameTypes are the frames' types, in order.
func frameTypes(fs []frame) string {
	var b []byte
	for _, f := range fs {
		b = append(b, f.typ)
	}
	return string(b)
}

func sameStrings(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestReadFailsOverWhenFirstPlacementRefuses(t *testing.T) {
	f := newReadFixture(t)
	var gotB []string
	// nodeA has no connection to give: it refuses, as a node that is down does.
	f.be.workers[nodeB] = []*backend.Conn{scripted(t, nodeB.Addr(), &gotB, rows("b1", "b2"))}
	err, fs := f.read(t)
	if err != nil {
		t.Fatalf("read failed: %v", err)
	}
	if got := rowsOf(fs); !sameStrings(got, []string{"b1", "b2"}) {
		t.Errorf("client got rows %q, want the sibling placement's", got)
	}
	if len(gotB) != 1 || gotB[0] != "SELECT v FROM items_102008" {
		t.Errorf("sibling placement ran %q", gotB)
	}
	if len(f.be.released) != 1 {
		t.Errorf("%d connections given back, want 1", len(f.be.released))
	}
}

func TestReadFailsOverWhenConnectionBreaksBeforeAnyRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    reply
	}{
		{"before answering", reply{hangUp: true}},
		// Rows buffered for the client but not flushed yet: none reached it, so they are
		// taken back and the sibling's answer goes instead.
		{"after rows not yet flushed", func() reply { r := rows("a1"); r.msgs = r.msgs[:2]; r.hangUp = true; return r }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newReadFixture(t)
			var gotA, gotB []string
			connA := scripted(t, nodeA.Addr(), &gotA, tc.a)
			f.be.workers[nodeA] = []*backend.Conn{connA}
			f.be.workers[nodeB] = []*backend.Conn{scripted(t, nodeB.Addr(), &gotB, rows("b1"))}
			err, fs := f.read(t)
			if err != nil {
				t.Fatalf("read failed: %v", err)
			}
			if got := rowsOf(fs); !sameStrings(got, []string{"b1"}) {
				t.Errorf("client got rows %q, want only the sibling placement's", got)
			}
			if len(gotA) != 1 || len(gotB) != 1 {
				t.Errorf("placements ran %q and %q, want the read on each", gotA, gotB)
			}
			if !connA.Broken() {
				t.Error("the broken connection is not marked broken (it would go back to the pool)")
			}
			if types := frameTypes(fs); types != "TDC" {
				t.Errorf("client got frames %q, want one RowDescription, DataRow, CommandComplete", types)
			}
		})
	}
}

func TestReadDoesNotFailOverOnceRowsReachedTheClient(t *testing.T) {
	f := newReadFixture(t)
	f.x.ss.w.AutoFlush = 1 // every frame goes to the client at once
	var gotA, gotB []string
	r := rows("a1")
	r.msgs, r.hangUp = r.msgs[:2], true
	f.be.workers[nodeA] = []*backend.Conn{scripted(t, nodeA.Addr(), &gotA, r)}
	f.be.workers[nodeB] = []*backend.Conn{scripted(t, nodeB.Addr(), &gotB, rows("b1"))}
	err, fs := f.read(t)
	if err == nil || !backend.Unavailable(err) {
		t.Fatalf("read returned %v, want the broken connection's error", err)
	}
	if got := rowsOf(fs); !sameStrings(got, []string{"a1"}) {
		t.Errorf("client got rows %q", got)
	}
	if len(gotB) != 0 {
		t.Errorf("sibling placement ran %q after part of the result reached the client", gotB)
	}
}

func TestReadDoesNotFailOverOnServerError(t *testing.T) {
	f := newReadFixture(t)
	f.x.ss.txn.tx = txBlock
	var gotA, gotB []string
	f.be.workers[nodeA] = []*backend.Conn{scripted(t, nodeA.Addr(), &gotA, serverError("22012", "division by zero"))}
	f.be.workers[nodeB] = []*backend.Conn{scripted(t, nodeB.Addr(), &gotB, rows("b1"))}
	err, fs := f.read(t)
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != "22012" || !errorSent(err) {
		t.Fatalf("read returned %v, want the placement's error, already sent", err)
	}
	if len(fs) != 1 || fs[0].typ != 'E' || fs[0].text != "division by zero" {
		t.Errorf("client got %v, want the error", fs)
	}
	if len(gotB) != 0 {
		t.Errorf("sibling placement ran %q after the first answered an error", gotB)
	}
	if f.x.ss.txn.tx != txFailed {
		t.Errorf("transaction block is %v after the read failed, want failed", f.x.ss.txn.tx)
	}
}

func TestReadUnreachableWhenEveryPlacementRefuses(t *testing.T) {
	f := newReadFixture(t)
	err, fs := f.read(t)
	if err == nil || !backend.Unavailable(err) || errorSent(err) {
		t.Fatalf("read returned %v, want an unsent error wrapping the placements' failure", err)
	}
	if !strings.Contains(pgerr.From(err).Detail, `"items"`) {
		t.Errorf("error %q does not name the table", pgerr.From(err).Detail)
	}
	if len(fs) != 0 {
		t.Errorf("client got %v", fs)
	}
}

// concatFixture is readFixture with a second shard of "items", placed on the same nodes,
// and a statement that concatenates the shards' rows.
func concatFixture(t *testing.T) (*readFixture, []readTask) {
	f := newReadFixture(t)
	second := &metadata.Shard{ID: 102009, TableID: 16400, Storage: 't', Placements: []metadata.Placement{
		{ID: 3, ShardID: 102009, State: metadata.StateFinalized, Node: nodeA},
		{ID: 4, ShardID: 102009, State: metadata.StateFinalized, Node: nodeB},
	}}
	f.x.st = &router.Statement{Kind: router.Select, Merge: &router.Merge{Kind: router.Concat},
		Shard: router.Template{{Kind: router.SegText, Text: "SELECT v FROM ", Anchor: -1}, {Kind: router.SegTable, Anchor: -1}}}
	return f, []readTask{
		{shard: f.shard, names: []string{"items_102008"}},
		{shard: second, names: []string{"items_102009"}},
	}
}

func TestConcatFailsOverPerShard(t *testing.T) {
	f, tasks := concatFixture(t)
	var gotB1, gotB2 []string
	f.be.workers[nodeB] = []*backend.Conn{
		scripted(t, nodeB.Addr(), &gotB1, rows("1", "2")),
		scripted(t, nodeB.Addr(), &gotB2, rows("3")),
	}
	if err := f.x.concat(context.Background(), tasks); err != nil {
		t.Fatalf("concat failed: %v", err)
	}
	f.x.ss.w.Flush()
	fs := frames(t, f.out.Bytes())
	if types, got := frameTypes(fs), rowsOf(fs); types != "TDDDC" || !sameStrings(got, []string{"1", "2", "3"}) {
		t.Errorf("client got frames %q, rows %q", types, got)
	}
	if !sameStrings(append(gotB1, gotB2...), []string{"SELECT v FROM items_102008", "SELECT v FROM items_102009"}) {
		t.Errorf("placements on %s ran %q and %q", nodeB, gotB1, gotB2)
	}
	if len(f.be.released) != 2 {
		t.Errorf("%d connections given back, want 2", len(f.be.released))
	}
}

func TestConcatShardErrorEndsTheStatement(t *testing.T) {
	f, tasks := concatFixture(t)
	f.x.ss.txn.tx = txBlock
	var gotA1, gotA2 []string
	f.be.workers[nodeA] = []*backend.Conn{
		scripted(t, nodeA.Addr(), &gotA1, rows("1")),
		scripted(t, nodeA.Addr(), &gotA2, serverError("57014", "canceling statement due to user request")),
	}
	err := f.x.concat(context.Background(), tasks)
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != "57014" || errorSent(err) {
		t.Fatalf("concat returned %v, want the shard's error, not sent yet", err)
	}
	if f.x.ss.txn.tx != txFailed {
		t.Errorf("transaction block is %v after a shard's error, want failed", f.x.ss.txn.tx)
	}
	if len(f.be.released) != 2 {
		t.Errorf("%d connections given back, want both", len(f.be.released))
	}
	f.x.ss.w.Flush()
	if types := frameTypes(frames(t, f.out.Bytes())); types != "TD" {
		t.Errorf("client got frames %q, want the first shard's rows only (no CommandComplete)", types)
	}
}

func TestReadInBlockGoesWhereTheBlockWrote(t *testing.T) {
	f := newReadFixture(t)
	// The block wrote the shard on nodeB only (nodeA's placement missed the write and
	// is marked at COMMIT): reading nodeA's would not see the block's own write.
	f.x.ss.txn.tx = txBlock
	f.x.ss.txn.txWrites = map[metadata.Node][]metadata.Placement{nodeB: {f.shard.Placements[1]}}
	var gotA, gotB []string
	f.be.workers[nodeA] = []*backend.Conn{scripted(t, nodeA.Addr(), &gotA, rows("stale"))}
	f.be.workers[nodeB] = []*backend.Conn{scripted(t, nodeB.Addr(), &gotB, rows("written"))}
	err, fs := f.read(t)
	if err != nil {
		t.Fatalf("read failed: %v", err)
	}
	if got := rowsOf(fs); !sameStrings(got, []string{"written"}) || len(gotA) != 0 {
		t.Errorf("client got rows %q; placement on %s ran %q", got, nodeA, gotA)
	}
}
