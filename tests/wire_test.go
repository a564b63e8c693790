package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// wireConn is a raw protocol connection (a pgproto3 frontend) for message-exact tests.
type wireConn struct {
	t    testing.TB
	nc   net.Conn
	fe   *pgproto3.Frontend
	addr string
	key  *pgproto3.BackendKeyData
}

func dialWire(t testing.TB, addr string) *wireConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	w := &wireConn{t: t, nc: nc, fe: pgproto3.NewFrontend(nc, nc), addr: addr}
	w.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "postgres", "database": "postgres"}})
	w.flush()
	for {
		m := w.receive()
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup: %s", m.Message)
		case *pgproto3.BackendKeyData:
			w.key = &pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: append([]byte(nil), m.SecretKey...)}
		case *pgproto3.ReadyForQuery:
			return w
		}
	}
}

// cancel sends a CancelRequest for the connection and waits until the server has handled
// it (it closes the cancel connection then).
func (w *wireConn) cancel() {
	nc, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
	if err != nil {
		w.t.Fatal(err)
	}
	defer nc.Close()
	buf, err := (&pgproto3.CancelRequest{ProcessID: w.key.ProcessID, SecretKey: w.key.SecretKey}).Encode(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := nc.Write(buf); err != nil {
		w.t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, nc)
}

func (w *wireConn) send(msgs ...pgproto3.FrontendMessage) {
	for _, m := range msgs {
		w.fe.Send(m)
	}
	w.flush()
}

func (w *wireConn) flush() {
	if err := w.fe.Flush(); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wireConn) receive() pgproto3.BackendMessage {
	w.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	m, err := w.fe.Receive()
	if err != nil {
		w.t.Fatalf("receive: %v", err)
	}
	return m
}

// summary is a message as the tests compare it.
func summary(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.ParseComplete:
		return "1"
	case *pgproto3.BindComplete:
		return "2"
	case *pgproto3.CloseComplete:
		return "3"
	case *pgproto3.NoData:
		return "n"
	case *pgproto3.PortalSuspended:
		return "s"
	case *pgproto3.EmptyQueryResponse:
		return "I"
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("t%v", m.ParameterOIDs)
	case *pgproto3.RowDescription:
		var names []string
		for _, f := range m.Fields {
			names = append(names, fmt.Sprintf("%s:%d:%d", f.Name, f.DataTypeOID, f.Format))
		}
		return "T[" + strings.Join(names, ",") + "]"
	case *pgproto3.DataRow:
		var vals []string
		for _, v := range m.Values {
			if v == nil {
				vals = append(vals, "NULL")
			} else {
				vals = append(vals, string(v))
			}
		}
		return "D[" + strings.Join(vals, "|") + "]"
	case *pgproto3.CommandComplete:
		return "C[" + string(m.CommandTag) + "]"
	case *pgproto3.ErrorResponse:
		return "E[" + m.Code + "]"
	case *pgproto3.NoticeResponse:
		return "N[" + m.Code + "]"
	case *pgproto3.ReadyForQuery:
		return "Z" + string(m.TxStatus)
	case *pgproto3.ParameterStatus:
		return "S[" + m.Name + "]"
	}
	return fmt.Sprintf("%T", m)
}

// until reads messages up to and including the n-th ReadyForQuery.
func (w *wireConn) until(n int) []string {
	var out []string
	for n > 0 {
		m := w.receive()
		s := summary(m)
		if strings.HasPrefix(s, "S[") || strings.HasPrefix(s, "N[") {
			continue // settings and notices are not compared
		}
		out = append(out, s)
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			n--
		}
	}
	return out
}

// wireTarget is a server the same script runs against.
type wireTarget struct {
	name string
	addr string
}

// wireTargets returns plain PostgreSQL (a worker, holding a plain table wt) and the
// proxy (where wt is distributed, 4 shards, 2 placements), both with the same rows.
func wireTargets(t *testing.T) (table string, targets []wireTarget) {
	t.Helper()
	table = uniqueName("wt")
	ddl := fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table)
	rows := fmt.Sprintf("INSERT INTO %s VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')", table)
	plain := env.C.Workers[0]
	if _, err := plain.Exec(context.Background(), "postgres", ddl+"; "+rows); err != nil {
		t.Fatal(err)
	}
	conn := connect(t)
	distribute(t, conn, ddl, table, "k", 4, 2)
	mustExec(t, conn, rows)
	return table, []wireTarget{{"postgres", plain.Addr()}, {"pgshard", env.P.Addr}}
}

// TestWireScripts runs message sequences against PostgreSQL and the proxy and demands
// the same answers: the pitfalls every proxy got wrong.
func TestWireScripts(t *testing.T) {
	table, targets := wireTargets(t)
	q := func(format string) string { return fmt.Sprintf(format, table) }
	scripts := []struct {
		name string
		run  func(w *wireConn) []string
	}{
		{"error discards up to Sync", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{},
				&pgproto3.Parse{Query: q("SELECT v FROM %s WHERE k = 2")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			return w.until(2)
		}},
		{"error is sent before Sync", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Query: q("SELECT nope FROM %s")}, &pgproto3.Bind{})
			first := summary(w.receive()) // must come without a Sync
			w.send(&pgproto3.Sync{})
			return append([]string{first}, w.until(1)...)
		}},
		{"flush without sync, row limits", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Query: q("SELECT k, generate_series(1, 3) AS g FROM %s WHERE k = 1")}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Flush{})
			var out []string
			for len(out) < 3 {
				out = append(out, summary(w.receive()))
			}
			w.send(&pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Flush{})
			for len(out) < 6 {
				out = append(out, summary(w.receive()))
			}
			w.send(&pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{MaxRows: 5}, &pgproto3.Sync{})
			return append(out, w.until(1)...)
		}},
		{"cursor over every shard: parts, exact end, finished portal", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Query: q("SELECT k, v FROM %s ORDER BY k")}, &pgproto3.Bind{DestinationPortal: "c"},
				&pgproto3.Execute{Portal: "c", MaxRows: 2}, &pgproto3.Execute{Portal: "c", MaxRows: 3},
				&pgproto3.Execute{Portal: "c", MaxRows: 1}, &pgproto3.Execute{Portal: "c", MaxRows: 1}, &pgproto3.Sync{})
			return w.until(1)
		}},
		{"cursor in a transaction block across Syncs, other statements between", func(w *wireConn) []string {
			w.send(&pgproto3.Query{String: "BEGIN"})
			out := w.until(1)
			w.send(&pgproto3.Parse{Name: "cs", Query: q("SELECT k FROM %s ORDER BY k")}, &pgproto3.Bind{PreparedStatement: "cs", DestinationPortal: "c"},
				&pgproto3.Execute{Portal: "c", MaxRows: 2}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Execute{Portal: "c", MaxRows: 1}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Parse{Query: q("SELECT v FROM %s WHERE k = 5")}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Bind{PreparedStatement: "cs", DestinationPortal: "d"}, &pgproto3.Execute{Portal: "d", MaxRows: 1},
				&pgproto3.Execute{Portal: "c", MaxRows: 5}, &pgproto3.Execute{Portal: "d", MaxRows: 1}, &pgproto3.Close{ObjectType: 'P', Name: "d"},
				&pgproto3.Execute{Portal: "d"}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: q("SELECT count(*) FROM %s")}, &pgproto3.Query{String: "COMMIT"})
			return append(out, w.until(2)...)
		}},
		{"cursor read twice in a transaction block, as JDBC does with a fetch size", func(w *wireConn) []string {
			var out []string
			for i := 0; i < 2; i++ {
				if i == 0 {
					w.send(&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{})
				}
				w.send(&pgproto3.Parse{Query: q("SELECT k FROM %s ORDER BY k")}, &pgproto3.Bind{DestinationPortal: "c"}, &pgproto3.Describe{ObjectType: 'P', Name: "c"},
					&pgproto3.Execute{Portal: "c", MaxRows: 2}, &pgproto3.Sync{})
				out = append(out, w.until(1)...)
				w.send(&pgproto3.Parse{Query: q("SELECT v FROM %s WHERE k = 3")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
				out = append(out, w.until(1)...)
				w.send(&pgproto3.Execute{Portal: "c", MaxRows: 2}, &pgproto3.Sync{})
				out = append(out, w.until(1)...)
				w.send(&pgproto3.Close{ObjectType: 'P', Name: "c"}, &pgproto3.Sync{})
				out = append(out, w.until(1)...)
			}
			w.send(&pgproto3.Query{String: "COMMIT"})
			return append(out, w.until(1)...)
		}},
		{"cursor dropped by Sync, by Close and by a new Bind", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Name: "cs", Query: q("SELECT k FROM %s ORDER BY k")}, &pgproto3.Bind{PreparedStatement: "cs"},
				&pgproto3.Execute{MaxRows: 2}, &pgproto3.Sync{})
			out := w.until(1)
			w.send(&pgproto3.Execute{MaxRows: 2}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Bind{PreparedStatement: "cs", DestinationPortal: "c"}, &pgproto3.Execute{Portal: "c", MaxRows: 1},
				&pgproto3.Close{ObjectType: 'P', Name: "c"}, &pgproto3.Execute{Portal: "c", MaxRows: 1}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Bind{PreparedStatement: "cs"}, &pgproto3.Execute{MaxRows: 1},
				&pgproto3.Parse{Query: q("SELECT v FROM %s WHERE k = 2")}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: q("SELECT count(*) FROM %s")})
			return append(out, w.until(1)...)
		}},
		{"cursor over a gathered query and a coordinator query", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Query: q("SELECT k, rank() OVER (ORDER BY v DESC) FROM %s ORDER BY k")}, &pgproto3.Bind{},
				&pgproto3.Execute{MaxRows: 2}, &pgproto3.Execute{MaxRows: 2}, &pgproto3.Execute{MaxRows: 2}, &pgproto3.Sync{})
			out := w.until(1)
			w.send(&pgproto3.Parse{Query: "SELECT g FROM generate_series(1, 5) g"}, &pgproto3.Bind{},
				&pgproto3.Execute{MaxRows: 4}, &pgproto3.Execute{MaxRows: 4}, &pgproto3.Sync{})
			return append(out, w.until(1)...)
		}},
		{"unnamed statement survives Sync", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Query: q("SELECT v FROM %s WHERE k = $1"), ParameterOIDs: []uint32{23}}, &pgproto3.Sync{})
			out := w.until(1)
			w.send(&pgproto3.Bind{Parameters: [][]byte{[]byte("4")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
			return append(out, w.until(1)...)
		}},
		{"describe of a replicated write", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Name: "w", Query: q("UPDATE %s SET v = v WHERE k = $1")}, &pgproto3.Describe{ObjectType: 'S', Name: "w"}, &pgproto3.Sync{})
			return w.until(1)
		}},
		{"write tags count rows once", func(w *wireConn) []string {
			w.send(&pgproto3.Query{String: q("UPDATE %s SET v = v || '' WHERE k IN (1, 2, 3)")})
			out := w.until(1)
			w.send(&pgproto3.Query{String: q("UPDATE %s SET v = v WHERE k = 3 RETURNING k, v")})
			return append(out, w.until(1)...)
		}},
		{"failed transaction block", func(w *wireConn) []string {
			w.send(&pgproto3.Query{String: q("BEGIN; INSERT INTO %s VALUES (100, 'x'); INSERT INTO %s VALUES (1, 'dup')")})
			out := w.until(1)
			w.send(&pgproto3.Query{String: "SELECT 1"})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: "COMMIT"})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: q("SELECT count(*) FROM %s WHERE k = 100")})
			return append(out, w.until(1)...)
		}},
		{"multi-statement transaction", func(w *wireConn) []string {
			w.send(&pgproto3.Query{String: q("BEGIN; INSERT INTO %s VALUES (201, 'x'); INSERT INTO %s VALUES (202, 'y'); COMMIT")})
			out := w.until(1)
			w.send(&pgproto3.Query{String: q("SELECT count(*) FROM %s WHERE k IN (201, 202)")})
			return append(out, w.until(1)...)
		}},
		{"empty query", func(w *wireConn) []string {
			w.send(&pgproto3.Query{String: ""})
			out := w.until(1)
			w.send(&pgproto3.Query{String: ";"})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Parse{Query: ""}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
			return append(out, w.until(1)...)
		}},
		{"pipelined statements", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Name: "a", Query: q("SELECT v FROM %s WHERE k = $1")}, &pgproto3.Parse{Name: "b", Query: q("SELECT count(*) FROM %s")},
				&pgproto3.Bind{PreparedStatement: "a", Parameters: [][]byte{[]byte("5")}}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
				&pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{},
				&pgproto3.Bind{PreparedStatement: "a", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{0}}, &pgproto3.Execute{},
				&pgproto3.Close{ObjectType: 'S', Name: "a"}, &pgproto3.Sync{})
			return w.until(1)
		}},
		{"binary parameters and results", func(w *wireConn) []string {
			w.send(&pgproto3.Parse{Query: q("SELECT k, v FROM %s WHERE k = $1"), ParameterOIDs: []uint32{20}},
				&pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 0, 0, 0, 0, 3}}, ResultFormatCodes: []int16{1, 0}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
			return w.until(1)
		}},
		{"errors in Bind", func(w *wireConn) []string {
			w.send(&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: "two", Query: q("SELECT v FROM %s WHERE k = $1")}, &pgproto3.Bind{PreparedStatement: "two"}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: "two", Query: "SELECT 1"}, &pgproto3.Sync{},
				&pgproto3.Execute{Portal: "nope"}, &pgproto3.Sync{})
			return w.until(4)
		}},
	}
	for _, sc := range scripts {
		t.Run(sc.name, func(t *testing.T) {
			var results [][]string
			for _, tg := range targets {
				w := dialWire(t, tg.addr)
				results = append(results, sc.run(w))
			}
			if strings.Join(results[0], " ") != strings.Join(results[1], " ") {
				t.Errorf("PostgreSQL: %v\npgshard:    %v", results[0], results[1])
			}
		})
	}
}

// TestPipelineIsOneTransaction checks, against PostgreSQL, that the statements an
// extended-protocol client sends before one Sync are one implicit transaction: a write is
// invisible to others until Sync, and an error later in the pipeline undoes it.
func TestPipelineIsOneTransaction(t *testing.T) {
	ctx := context.Background()
	table, targets := wireTargets(t)
	q := func(format string) string { return fmt.Sprintf(format, table) }
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			check, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", tg.addr))
			if err != nil {
				t.Fatal(err)
			}
			defer check.Close(ctx)
			count := func(where string) string {
				t.Helper()
				var n string
				if err := check.QueryRow(ctx, q("SELECT count(*)::text FROM %s WHERE ")+where).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			w := dialWire(t, tg.addr)
			// A write, then Flush: the client has its answer, the transaction is open.
			w.send(&pgproto3.Parse{Query: q("INSERT INTO %s VALUES (300, 'p')")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			var out []string
			for len(out) < 3 {
				out = append(out, summary(w.receive()))
			}
			if strings.Join(out, " ") != "1 2 C[INSERT 0 1]" {
				t.Fatalf("before Sync: %v", out)
			}
			if n := count("k = 300"); n != "0" {
				t.Errorf("before Sync another session sees %s rows, want 0", n)
			}
			w.send(&pgproto3.Sync{})
			w.until(1)
			if n := count("k = 300"); n != "1" {
				t.Errorf("after Sync another session sees %s rows, want 1", n)
			}
			// Two writes and an error before Sync: nothing stays.
			w.send(&pgproto3.Parse{Query: q("INSERT INTO %s VALUES (301, 'a')")}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: q("UPDATE %s SET v = 'changed' WHERE k = 300")}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: q("INSERT INTO %s VALUES (1, 'dup')")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			if got := strings.Join(w.until(1), " "); got != "1 2 C[INSERT 0 1] 1 2 C[UPDATE 1] 1 2 E[23505] ZI" {
				t.Errorf("failed pipeline: %s", got)
			}
			if n := count("k = 301 OR v = 'changed'"); n != "0" {
				t.Errorf("after the failed pipeline %s rows of it remain, want 0", n)
			}
			// Two writes before Sync that succeed both stay.
			w.send(&pgproto3.Parse{Query: q("INSERT INTO %s VALUES (302, 'a')")}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: q("DELETE FROM %s WHERE k = 300")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			w.until(1)
			if n := count("k IN (300, 302)"); n != "1" {
				t.Errorf("after the pipeline %s rows, want 1", n)
			}
		})
	}
}
