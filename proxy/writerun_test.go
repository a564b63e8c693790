package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/router"
)

// The write executor's unit tests: a replicated write to the two placements of one
// shard, each placement a scripted PostgreSQL server at the other end of a net.Pipe,
// reached through the execution's backends (conns.go); marks go to a recorder. They check what
// the client hears (the tag or the error, the warnings), which placements are marked,
// and how each placement's part ends (COMMIT or ROLLBACK), outside and inside a
// transaction block. outcome_test.go tests the decisions alone.

// scriptAnswer is how a scripted server answers the write statement.
type scriptAnswer int

const (
	answerOK           scriptAnswer = iota // UPDATE 1
	answerLost                             // the connection breaks once the statement arrived
	answerUnique                           // 23505, a constraint violation: divergence of data
	answerError                            // 22012, an error of the statement's values
	answerSerial                           // 40001, an error one placement may give alone
	answerZero                             // UPDATE 0: a different row count
	answerShutdown                         // FATAL 57P01, then the connection closes
	answerLostAtCommit                     // UPDATE 1, then the connection breaks at COMMIT
)

// scriptedServer plays a worker at the other end of a net.Pipe: it answers BEGIN,
// COMMIT and ROLLBACK as PostgreSQL does, and the write statement as its script says,
// and records the statements it received.
type scriptedServer struct {
	answer scriptAnswer
	mu     sync.Mutex
	got    []string
}

// serve answers simple queries on nc until the connection closes. tx is the transaction
// status it starts in ('T': the connection joined the client's block already).
func (s *scriptedServer) serve(nc net.Conn, tx byte) {
	defer nc.Close()
	be := pgproto3.NewBackend(nc, nc)
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok {
			return // Terminate, or what the script does not know
		}
		failed := false
		for _, stmt := range strings.Split(q.String, ";") {
			stmt = strings.TrimSpace(stmt)
			s.mu.Lock()
			s.got = append(s.got, stmt)
			s.mu.Unlock()
			if failed {
				continue // PostgreSQL skips the rest of a query string after an error
			}
			switch stmt {
			case "BEGIN":
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")})
				tx = 'T'
			case "COMMIT":
				if s.answer == answerLostAtCommit {
					return
				}
				tag := "COMMIT"
				if tx == 'E' {
					tag = "ROLLBACK"
				}
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
				tx = 'I'
			case "ROLLBACK":
				be.Send(&pgproto3.CommandComplete{CommandTag: []byte("ROLLBACK")})
				tx = 'I'
			default:
				code := ""
				switch s.answer {
				case answerOK, answerLostAtCommit:
					be.Send(&pgproto3.CommandComplete{CommandTag: []byte("UPDATE 1")})
				case answerZero:
					be.Send(&pgproto3.CommandComplete{CommandTag: []byte("UPDATE 0")})
				case answerLost:
					return
				case answerShutdown:
					be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"})
					be.Flush()
					return
				case answerUnique:
					code = "23505"
				case answerError:
					code = "22012"
				case answerSerial:
					code = "40001"
				}
				if code != "" {
					be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: "scripted " + code})
					failed = true
					if tx == 'T' {
						tx = 'E'
					}
				}
			}
		}
		be.Send(&pgproto3.ReadyForQuery{TxStatus: tx})
		if be.Flush() != nil {
			return
		}
	}
}

// received returns the statements the server received.
func (s *scriptedServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// scriptedConns are the executor's backends (conns.go) over scripted servers, one per node:
// connections from a puddle pool per node whose constructor starts a server goroutine on
// a net.Pipe. Inside a block, as the session's, a node's connection is taken once and
// kept (pinned). close ends every connection and waits for the servers' goroutines.
type scriptedConns struct {
	inBlock bool
	servers map[metadata.Node]*scriptedServer
	pools   map[metadata.Node]*puddle.Pool[*backend.Conn]
	held    map[metadata.Node]*puddle.Resource[*backend.Conn]
	wg      sync.WaitGroup
}

func newScriptedConns(t *testing.T, inBlock bool, servers map[metadata.Node]*scriptedServer) *scriptedConns {
	sc := &scriptedConns{inBlock: inBlock, servers: servers,
		pools: map[metadata.Node]*puddle.Pool[*backend.Conn]{}, held: map[metadata.Node]*puddle.Resource[*backend.Conn]{}}
	for node, srv := range servers {
		tx := byte('I')
		if inBlock {
			tx = 'T'
		}
		pool, err := puddle.NewPool(&puddle.Config[*backend.Conn]{
			Constructor: func(context.Context) (*backend.Conn, error) {
				client, server := net.Pipe()
				sc.wg.Add(1)
				go func() {
					defer sc.wg.Done()
					srv.serve(server, tx)
				}()
				c := backend.NewConn(client, node.Addr())
				c.TxStatus = tx
				return c, nil
			},
			Destructor: func(c *backend.Conn) { c.Close() },
			MaxSize:    4,
		})
		if err != nil {
			t.Fatal(err)
		}
		sc.pools[node] = pool
	}
	t.Cleanup(sc.close)
	return sc
}

func (sc *scriptedConns) coordConn(context.Context) (*backend.Conn, error) {
	return nil, &backend.UnavailableError{Addr: "coordinator", Err: errors.New("not scripted")}
}

func (sc *scriptedConns) workerConn(ctx context.Context, node metadata.Node) (workerConn, error) {
	if res := sc.held[node]; res != nil {
		return workerConn{res: res, pinned: true}, nil
	}
	pool := sc.pools[node]
	if pool == nil {
		return workerConn{}, &backend.UnavailableError{Addr: node.Addr(), Err: errors.New("connection refused")}
	}
	res, err := pool.Acquire(ctx)
	if err != nil {
		return workerConn{}, err
	}
	if sc.inBlock {
		sc.held[node] = res
		return workerConn{res: res, pinned: true}, nil
	}
	return workerConn{res: res}, nil
}

func (sc *scriptedConns) release(w workerConn) {
	if w.res != nil && !w.pinned {
		backend.Release(w.res)
	}
}

func (sc *scriptedConns) close() {
	for _, res := range sc.held {
		res.Destroy()
	}
	for _, pool := range sc.pools {
		pool.Close()
	}
	sc.held, sc.pools = nil, nil
	sc.wg.Wait()
}

// markRecorder is the executor's placementMarker in tests: it records the placements
// it is asked to mark, and fails with err (the coordinator refusing a mark).
type markRecorder struct {
	marked []metadata.Placement
	err    error
}

func (m *markRecorder) markInactive(_ context.Context, ps []metadata.Placement) error {
	m.marked = append(m.marked, ps...)
	return m.err
}

// clientFrames decodes what the session wrote for its client: the warnings' messages
// and the command tags.
func clientFrames(t *testing.T, b []byte) (warnings, tags []string) {
	r := pgwire.NewReader(bytes.NewReader(b), 1<<10)
	for {
		typ, body, err := r.Next()
		if err == io.EOF {
			return warnings, tags
		}
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case 'N':
			warnings = append(warnings, backend.DecodeError(body).Message)
		case 'C':
			tags = append(tags, string(trimZero(body)))
		default:
			t.Errorf("unexpected frame %q to the client", typ)
		}
	}
}

// writeFixture is one shard (id 10, table "t") with two finalized placements, on
// w1:5001 and w2:5002, and a session whose client output is a buffer.
type writeFixture struct {
	snap   *metadata.Snapshot
	nodes  []metadata.Node
	ss     *session
	client *bytes.Buffer
}

func newWriteFixture(inBlock bool) *writeFixture {
	nodes := []metadata.Node{{Name: "w1", Port: 5001}, {Name: "w2", Port: 5002}}
	sh := &metadata.Shard{ID: 10, TableID: 16384, Min: -1 << 31, Max: 1<<31 - 1}
	for i, n := range nodes {
		sh.Placements = append(sh.Placements, metadata.Placement{ID: int64(100 + i), ShardID: 10, State: metadata.StateFinalized, Node: n})
	}
	tbl := &metadata.Table{OID: 16384, Schema: "public", Name: "t", Method: 'h', Key: "k",
		Columns: []metadata.Column{{Name: "k", TypeName: "integer"}}, Shards: []*metadata.Shard{sh}}
	snap := metadata.NewSnapshot(append([]metadata.Node(nil), nodes...), []*metadata.Table{tbl})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &Server{cache: &metadata.Cache{}, log: log}
	srv.cache.Replace(snap)
	client := &bytes.Buffer{}
	ss := &session{srv: srv, log: log, txn: txnState{tx: txIdle}, running: map[*backend.Conn]struct{}{}, params: map[string]string{}}
	ss.w = pgwire.NewWriter(client)
	if inBlock {
		ss.txn.beginBlock("BEGIN")
	}
	return &writeFixture{snap: snap, nodes: nodes, ss: ss, client: client}
}

func TestWriteRunReplicated(t *testing.T) {
	const (
		commit   = "COMMIT"
		rollback = "ROLLBACK"
		none     = "" // the write's own statement was the last the placement received
	)
	type want struct {
		tag      string     // the client's CommandComplete, or
		code     pgerr.Code // the statement's error
		marks    []int64    // placement ids asked to be marked
		warnings []string   // prefixes of the client's warnings, in order
		ends     [2]string  // how each placement's part ended
		tx       txStatus   // the session's transaction state after
	}
	for _, tc := range []struct {
		name    string
		answers [2]scriptAnswer
		inBlock bool
		markErr error
		want    want
	}{
		{"ok ok", [2]scriptAnswer{answerOK, answerOK}, false, nil,
			want{tag: "UPDATE 1", ends: [2]string{commit, commit}, tx: txIdle}},
		{"ok lost", [2]scriptAnswer{answerOK, answerLost}, false, nil,
			want{tag: "UPDATE 1", marks: []int64{101}, warnings: []string{"Connection failed to w2:5002"}, ends: [2]string{commit, none}, tx: txIdle}},
		{"ok shutting down", [2]scriptAnswer{answerOK, answerShutdown}, false, nil,
			want{tag: "UPDATE 1", marks: []int64{101}, warnings: []string{"Connection failed to w2:5002"}, ends: [2]string{commit, none}, tx: txIdle}},
		{"lost ok", [2]scriptAnswer{answerLost, answerOK}, false, nil,
			want{tag: "UPDATE 1", marks: []int64{100}, warnings: []string{"Connection failed to w1:5001"}, ends: [2]string{none, commit}, tx: txIdle}},
		{"ok unique violation", [2]scriptAnswer{answerOK, answerUnique}, false, nil,
			want{tag: "UPDATE 1", marks: []int64{101}, warnings: []string{"Bad result from w2:5002"}, ends: [2]string{commit, rollback}, tx: txIdle}},
		{"error error", [2]scriptAnswer{answerError, answerError}, false, nil,
			want{code: "22012", ends: [2]string{rollback, rollback}, tx: txIdle}},
		{"unique violation everywhere", [2]scriptAnswer{answerUnique, answerUnique}, false, nil,
			want{code: "23505", ends: [2]string{rollback, rollback}, tx: txIdle}},
		{"ok serialization failure", [2]scriptAnswer{answerOK, answerSerial}, false, nil,
			want{code: "40001", ends: [2]string{rollback, rollback}, tx: txIdle}},
		{"ok different row count", [2]scriptAnswer{answerOK, answerZero}, false, nil,
			want{tag: "UPDATE 1", marks: []int64{101}, warnings: []string{"modified 0 tuples, but expected 1 tuple"}, ends: [2]string{commit, commit}, tx: txIdle}},
		// The statement's own transaction: a placement lost at COMMIT while its sibling
		// committed missed the write; when none is known to have committed, the first
		// that may have is kept and the client hears the outcome is unknown.
		{"ok, lost at commit", [2]scriptAnswer{answerOK, answerLostAtCommit}, false, nil,
			want{tag: "UPDATE 1", marks: []int64{101}, warnings: []string{"Connection failed to w2:5002"}, ends: [2]string{commit, commit}, tx: txIdle}},
		{"both lost at commit", [2]scriptAnswer{answerLostAtCommit, answerLostAtCommit}, false, nil,
			want{code: "08006", marks: []int64{101}, warnings: []string{"Connection failed to w2:5002"}, ends: [2]string{commit, commit}, tx: txIdle}},
		{"lost lost", [2]scriptAnswer{answerLost, answerLost}, false, nil,
			want{code: "XX000", ends: [2]string{none, none}, tx: txIdle}},
		// The coordinator refuses to mark the last finalized placement: the write is
		// undone with the coordinator's error, after the warning.
		{"ok lost, mark refused", [2]scriptAnswer{answerOK, answerLost}, false, pgerr.New(pgerr.InternalError, "could not mark a placement inactive: no other placement of its rows is finalized"),
			want{code: "XX000", marks: []int64{101}, warnings: []string{"Connection failed to w2:5002"}, ends: [2]string{rollback, none}, tx: txIdle}},

		{"ok ok in a block", [2]scriptAnswer{answerOK, answerOK}, true, nil,
			want{tag: "UPDATE 1", ends: [2]string{none, none}, tx: txBlock}},
		{"ok lost in a block", [2]scriptAnswer{answerOK, answerLost}, true, nil,
			want{tag: "UPDATE 1", marks: []int64{101}, warnings: []string{"Connection failed to w2:5002"}, ends: [2]string{none, none}, tx: txBlock}},
		{"ok unique violation in a block", [2]scriptAnswer{answerOK, answerUnique}, true, nil,
			want{tag: "UPDATE 1", marks: []int64{101}, warnings: []string{"Bad result from w2:5002"}, ends: [2]string{none, none}, tx: txBlock}},
		{"error error in a block", [2]scriptAnswer{answerError, answerError}, true, nil,
			want{code: "22012", ends: [2]string{none, none}, tx: txFailed}},
		{"ok serialization failure in a block", [2]scriptAnswer{answerOK, answerSerial}, true, nil,
			want{code: "40001", ends: [2]string{none, none}, tx: txFailed}},
		{"ok different row count in a block", [2]scriptAnswer{answerOK, answerZero}, true, nil,
			want{code: "40001", ends: [2]string{none, none}, tx: txFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			f := newWriteFixture(tc.inBlock)
			servers := map[metadata.Node]*scriptedServer{}
			for i, n := range f.nodes {
				servers[n] = &scriptedServer{answer: tc.answers[i]}
			}
			conns := newScriptedConns(t, tc.inBlock, servers)
			marks := &markRecorder{err: tc.markErr}
			st := &router.Statement{Kind: router.Update, Tag: "UPDATE"}
			x := &execution{ss: f.ss, snap: f.snap, st: st, out: protocol.NewResults(f.ss.w), be: conns}
			tasks := []writeTask{{shard: f.snap.Shard(10), sql: []byte("UPDATE public.t_10 SET k = 1")}}
			wr := &writeRun{x: x, marker: marks, tasks: tasks, implicit: implicitWrite(f.ss.txn.tx, st, tasks)}
			sentDesc := false
			n, err := wr.apply(ctx, &sentDesc)
			if err == nil {
				x.writeComplete(n)
			}
			if ferr := f.ss.w.Flush(); ferr != nil {
				t.Fatal(ferr)
			}
			conns.close()

			var got want
			warnings, tags := clientFrames(t, f.client.Bytes())
			if len(tags) > 1 {
				t.Errorf("tags %q", tags)
			} else if len(tags) == 1 {
				got.tag = tags[0]
			}
			if err != nil {
				got.code = pgerr.CodeOf(err)
			}
			for _, p := range marks.marked {
				got.marks = append(got.marks, p.ID)
			}
			for i, w := range warnings {
				if i < len(tc.want.warnings) && strings.HasPrefix(w, tc.want.warnings[i]) {
					w = tc.want.warnings[i]
				}
				got.warnings = append(got.warnings, w)
			}
			for i, n := range f.nodes {
				stmts := servers[n].received()
				if len(stmts) > 0 && (stmts[len(stmts)-1] == commit || stmts[len(stmts)-1] == rollback) {
					got.ends[i] = stmts[len(stmts)-1]
				}
				if tc.inBlock && len(stmts) > 0 && stmts[0] == "BEGIN" {
					t.Errorf("placement %d: a write in a block sent its own BEGIN: %q", i, stmts)
				}
			}
			got.tx = f.ss.txn.tx
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v (err %v)\nwant %+v", got, err, tc.want)
			}
			// A block remembers the placements it wrote, for COMMIT's decision: those
			// that took the write, and not those that missed it.
			if tc.inBlock {
				var wrote []int64
				for _, n := range f.nodes {
					for _, p := range f.ss.txn.txWrites[n] {
						wrote = append(wrote, p.ID)
					}
				}
				for _, id := range wrote {
					for _, m := range got.marks {
						if id == m {
							t.Errorf("placement %d is both marked and noted as written in the block", id)
						}
					}
				}
			}
		})
	}
}
