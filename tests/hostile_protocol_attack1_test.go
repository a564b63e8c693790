package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Second-wave attack on the protocol layer (proxy/protocol and the session's extended
// protocol): the same raw message sequences against plain PostgreSQL and the proxy, over
// a distributed and a coordinator table, and the frames each client receives compared.

// attack1Targets is wireTargets plus a coordinator table (plain on both sides) with the
// same rows: its name is returned as local.
func attack1Targets(t *testing.T) (dist, local string, targets []wireTarget) {
	t.Helper()
	dist, targets = wireTargets(t)
	local = uniqueName("wl")
	ddl := fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text); INSERT INTO %s VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')", local, local)
	if _, err := env.C.Workers[0].Exec(context.Background(), "postgres", ddl); err != nil {
		t.Fatal(err)
	}
	mustExec(t, connect(t), ddl)
	return dist, local, targets
}

// probe sends a simple query and returns the frames up to its ReadyForQuery: whatever
// the script left unread (an extra ReadyForQuery, an error) shows up before them.
func (w *wireConn) probe() []string {
	w.send(&pgproto3.Query{String: "SELECT 'probe'"})
	return w.until(1)
}

// raw sends bytes as they are.
func (w *wireConn) raw(b []byte) {
	if _, err := w.nc.Write(b); err != nil {
		w.t.Fatal(err)
	}
}

// toEnd reads frames until the server closes the connection.
func (w *wireConn) toEnd() []string {
	var out []string
	for {
		m, err := w.fe.Receive()
		if err != nil {
			return append(out, "EOF")
		}
		s := summary(m)
		if strings.HasPrefix(s, "S[") || strings.HasPrefix(s, "N[") {
			continue
		}
		out = append(out, s)
	}
}

// attack1Script is one message sequence, run on a table (distributed or coordinator).
type attack1Script struct {
	name string
	run  func(w *wireConn, table string) []string
}

func attack1Compare(t *testing.T, targets []wireTarget, tables []string, scripts []attack1Script) {
	for _, sc := range scripts {
		for i, table := range tables {
			t.Run(fmt.Sprintf("%s/%d", sc.name, i), func(t *testing.T) {
				var results [][]string
				for _, tg := range targets {
					w := dialWire(t, tg.addr)
					results = append(results, sc.run(w, table))
				}
				if strings.Join(results[0], " ") != strings.Join(results[1], " ") {
					t.Errorf("PostgreSQL: %v\npgshard:    %v", results[0], results[1])
				}
				// The proxy keeps serving other sessions.
				w := dialWire(t, env.P.Addr)
				if got := strings.Join(w.probe(), " "); got != "T[?column?:25:0] D[probe] C[SELECT 1] ZI" {
					t.Errorf("after the script, another session: %s", got)
				}
			})
		}
	}
}

func TestAttack1ProtocolScripts(t *testing.T) {
	dist, local, targets := attack1Targets(t)
	f := func(format, table string) string { return strings.ReplaceAll(format, "%s", table) }
	scripts := []attack1Script{
		{"error mid pipeline, several Syncs", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (300, 'x')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Name: "dup", Query: f("INSERT INTO %s VALUES (1, 'dup')", tb)}, &pgproto3.Bind{PreparedStatement: "dup"}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Parse{Query: f("SELECT count(*) FROM %s WHERE k = 300", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "dup"}, &pgproto3.Execute{}, &pgproto3.Sync{}, &pgproto3.Sync{})
			return append(w.until(4), w.probe()...)
		}},
		{"row limit, again, Close, Sync", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Execute{Portal: "p", MaxRows: 2},
				&pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Sync{},
				&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{},
				&pgproto3.Close{ObjectType: 'P', Name: "nope"}, &pgproto3.Close{ObjectType: 'S', Name: "nope"}, &pgproto3.Sync{})
			return append(w.until(3), w.probe()...)
		}},
		{"suspended portal, other Bind, Execute again", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Name: "a", Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{PreparedStatement: "a", DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2},
				&pgproto3.Parse{Name: "b", Query: f("UPDATE %s SET v = v WHERE k = $1", tb)}, &pgproto3.Bind{PreparedStatement: "b", Parameters: [][]byte{[]byte("4")}},
				&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Execute{}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
			return append(w.until(1), w.probe()...)
		}},
		{"suspended portal, other Bind with Flushes", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Name: "a", Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{PreparedStatement: "a", DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Flush{})
			var out []string
			for len(out) < 5 {
				out = append(out, summary(w.receive()))
			}
			w.send(&pgproto3.Bind{PreparedStatement: "a", DestinationPortal: "q"}, &pgproto3.Execute{Portal: "q", MaxRows: 1}, &pgproto3.Flush{})
			for len(out) < 8 {
				out = append(out, summary(w.receive()))
			}
			w.send(&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Execute{Portal: "q"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
			return append(append(out, w.until(1)...), w.probe()...)
		}},
		{"describe unknown", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Describe{ObjectType: 'S', Name: "nope"}, &pgproto3.Sync{},
				&pgproto3.Describe{ObjectType: 'P', Name: "nope"}, &pgproto3.Sync{},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Sync{})
			return append(w.until(3), w.probe()...)
		}},
		{"bind with wrong counts", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Name: "one", Query: f("SELECT k, v FROM %s WHERE k = $1", tb), ParameterOIDs: []uint32{23}}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "one", Parameters: [][]byte{[]byte("1"), []byte("2")}}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "one"}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "one", ParameterFormatCodes: []int16{0, 0, 0}, Parameters: [][]byte{[]byte("1")}}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "one", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{0, 0, 0}}, &pgproto3.Execute{}, &pgproto3.Sync{})
			return append(w.until(5), w.probe()...)
		}},
		{"terminate mid pipeline", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (380, 'x')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			out := []string{summary(w.receive()), summary(w.receive()), summary(w.receive())}
			w.send(&pgproto3.Terminate{})
			out = append(out, w.toEnd()...)
			time.Sleep(200 * time.Millisecond)
			c := dialWire(w.t, w.addr)
			c.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k = 380", tb)})
			return append(out, c.until(1)...)
		}},
		{"cancel while a portal is suspended", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Flush{})
			var out []string
			for len(out) < 5 {
				out = append(out, summary(w.receive()))
			}
			w.cancel()
			w.send(&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{})
			out = append(out, w.until(2)...)
			w.cancel()
			w.send(&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{}, &pgproto3.Query{String: "COMMIT"})
			return append(append(out, w.until(2)...), w.probe()...)
		}},
		{"query between extended messages", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Parse{Query: f("INSERT INTO %s VALUES (390, 'x')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{})
			out := w.until(2)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k = 390", tb)})
			return append(out, w.until(1)...)
		}},
		{"returning with a row limit, then Sync", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (391, 'x'), (392, 'y'), (393, 'z') RETURNING k", tb)}, &pgproto3.Bind{},
				&pgproto3.Execute{MaxRows: 1}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Sync{},
				&pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
			out := w.until(2)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k IN (391, 392, 393)", tb)})
			return append(out, w.until(1)...)
		}},
		{"close a statement under a suspended portal", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Name: "s", Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{PreparedStatement: "s", DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Describe{ObjectType: 'P', Name: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{},
				&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
			return append(w.until(2), w.probe()...)
		}},
		{"pipeline error in a block with a savepoint", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (394, 'x')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "SAVEPOINT s"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (1, 'dup')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Parse{Query: "ROLLBACK TO s"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (395, 'x')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "COMMIT"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			out := w.until(2)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k IN (394, 395)", tb)})
			return append(out, w.until(1)...)
		}},
		{"parse with more types than parameters, bind to a failed parse", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Name: "x", Query: f("SELECT v FROM %s WHERE k = $1", tb), ParameterOIDs: []uint32{23, 25}}, &pgproto3.Describe{ObjectType: 'S', Name: "x"}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: "bad", Query: f("SELECT nope FROM %s", tb)}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "bad"}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "x", Parameters: [][]byte{[]byte("1"), []byte("z")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
			return append(w.until(4), w.probe()...)
		}},
		{"failing query between extended messages", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (396, 'x')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Query{String: f("INSERT INTO %s VALUES (397, 'x'); SELECT 1/0", tb)}, &pgproto3.Sync{})
			out := w.until(2)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k IN (396, 397)", tb)})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{},
				&pgproto3.Query{String: "COMMIT"})
			return append(out, w.until(4)...)
		}},
		{"odd codes and subtypes", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Name: "one", Query: f("SELECT k, v FROM %s WHERE k = $1", tb), ParameterOIDs: []uint32{23}}, &pgproto3.Sync{},
				&pgproto3.Parse{Query: "SELECT $1", ParameterOIDs: []uint32{999999}}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "one", ParameterFormatCodes: []int16{2}, Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "one", Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{2}}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Describe{ObjectType: 'X', Name: "one"}, &pgproto3.Sync{},
				&pgproto3.Close{ObjectType: 'X', Name: "one"}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "one", Parameters: [][]byte{[]byte("2")}}, &pgproto3.Execute{MaxRows: 0xFFFFFFFF}, &pgproto3.Sync{})
			return append(w.until(7), w.probe()...)
		}},
		{"flush with a body", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: "SELECT 1"})
			w.raw([]byte{'H', 0, 0, 0, 5, 'x'})
			w.send(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			return append(w.until(1), w.probe()...)
		}},
		{"unnamed portal after a simple query in a block", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: f("SELECT k FROM %s ORDER BY k", tb)}, &pgproto3.Bind{},
				&pgproto3.Execute{MaxRows: 2}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"},
				&pgproto3.Execute{MaxRows: 2}, &pgproto3.Sync{}, &pgproto3.Query{String: "ROLLBACK"})
			return append(w.until(5), w.probe()...)
		}},
		{"cancel a running statement in a pipeline", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("SELECT pg_sleep(10) FROM %s WHERE k = 1", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			time.Sleep(500 * time.Millisecond)
			w.cancel()
			return append(w.until(1), w.probe()...)
		}},
		{"query while skipping", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Query{String: f("INSERT INTO %s VALUES (310, 'q')", tb)}, &pgproto3.Flush{}, &pgproto3.Sync{})
			out := w.until(1)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k = 310", tb)})
			return append(out, w.until(1)...)
		}},
		{"empty and multiple statements in Parse", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: "  ;  "}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Parse{Query: "SELECT 1; SELECT 2"}, &pgproto3.Sync{},
				&pgproto3.Query{String: " ; ; "})
			return append(w.until(3), w.probe()...)
		}},
		{"simple multi-statement error in the middle", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Query{String: f("INSERT INTO %s VALUES (320, 'a'); SELECT 1/0; INSERT INTO %s VALUES (321, 'b')", tb)})
			out := w.until(1)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k IN (320, 321)", tb)})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: f("BEGIN; INSERT INTO %s VALUES (322, 'a'); SELECT 1/0; SELECT 2", tb)})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: "SELECT 3; ROLLBACK; SELECT 4"})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: "ROLLBACK"})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: f("INSERT INTO %s VALUES (323, 'a'); COMMIT; INSERT INTO %s VALUES (1, 'dup'); SELECT 5", tb)})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k IN (322, 323)", tb)})
			return append(out, w.until(1)...)
		}},
		{"sync in a block after an error", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Query{String: "BEGIN"})
			out := w.until(1)
			w.send(&pgproto3.Parse{Query: f("INSERT INTO %s VALUES (330, 'x')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: f("SELECT nope FROM %s", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Sync{},
				&pgproto3.Parse{Query: "ROLLBACK"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			out = append(out, w.until(4)...)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k = 330", tb)})
			return append(out, w.until(1)...)
		}},
		{"copy in extended, done", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("COPY %s FROM STDIN", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			var out []string
			for len(out) < 3 {
				out = append(out, summary(w.receive()))
			}
			w.send(&pgproto3.CopyData{Data: []byte("340\tx\n341\ty\n")}, &pgproto3.Flush{}, &pgproto3.Sync{}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k IN (340, 341)", tb)})
			return append(append(out, w.until(1)...), w.probe()...)
		}},
		{"copy in extended, fail", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: f("COPY %s FROM STDIN", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
			var out []string
			for len(out) < 3 {
				out = append(out, summary(w.receive()))
			}
			w.send(&pgproto3.CopyData{Data: []byte("350\tx\n")}, &pgproto3.CopyFail{Message: "no"}, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Sync{})
			out = append(out, w.until(1)...)
			w.send(&pgproto3.Query{String: f("SELECT count(*) FROM %s WHERE k = 350", tb)})
			return append(append(out, w.until(1)...), w.probe()...)
		}},
		{"unknown message type", func(w *wireConn, tb string) []string {
			w.raw([]byte{'y', 0, 0, 0, 4})
			return w.toEnd()
		}},
		{"unknown message type while skipping", func(w *wireConn, tb string) []string {
			w.send(&pgproto3.Parse{Query: "SELEC 1"})
			out := []string{summary(w.receive())}
			w.raw([]byte{'y', 0, 0, 0, 4})
			return append(out, w.toEnd()...)
		}},
		{"sync with a body", func(w *wireConn, tb string) []string {
			w.raw([]byte{'S', 0, 0, 0, 6, 'x', 'y'})
			return append(w.until(1), w.probe()...)
		}},
	}
	attack1Compare(t, targets, []string{dist, local}, scripts)
}

// PostgreSQL converts a Bind's parameters when it binds them: text that is no value of
// the parameter's type fails the Bind. pgshard passes the text on and the backends
// refuse it at Execute, after a BindComplete PostgreSQL never sends.
func TestAttack1BindParameterText(t *testing.T) {
	t.Skip("known defect: a parameter's text is checked at Execute (by the backends), not at Bind: BindComplete precedes the 22P02")
	dist, local, targets := attack1Targets(t)
	attack1Compare(t, targets, []string{dist, local}, []attack1Script{{"bad parameter text", func(w *wireConn, tb string) []string {
		w.send(&pgproto3.Parse{Name: "one", Query: f1("SELECT k, v FROM %s WHERE k = $1", tb), ParameterOIDs: []uint32{23}},
			&pgproto3.Bind{PreparedStatement: "one", Parameters: [][]byte{[]byte("x")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		return append(w.until(1), w.probe()...)
	}}})
}

// A pipeline is one implicit transaction in PostgreSQL also when it holds a COPY FROM
// STDIN: an error after the COPY undoes the COPY and what came before it.
func TestAttack1CopyInPipelineRollback(t *testing.T) {
	dist, local, targets := attack1Targets(t)
	script := attack1Script{"copy in extended, in a pipeline", func(w *wireConn, tb string) []string {
		w.send(&pgproto3.Parse{Query: f1("INSERT INTO %s VALUES (360, 'z')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: f1("COPY %s FROM STDIN", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		var out []string
		for len(out) < 6 {
			out = append(out, summary(w.receive()))
		}
		w.send(&pgproto3.CopyData{Data: []byte("361\tx\n")}, &pgproto3.CopyDone{},
			&pgproto3.Parse{Query: f1("INSERT INTO %s VALUES (1, 'dup')", tb)}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		out = append(out, w.until(1)...)
		w.send(&pgproto3.Query{String: f1("SELECT count(*) FROM %s WHERE k IN (360, 361)", tb)})
		return append(append(out, w.until(1)...), w.probe()...)
	}}
	t.Run("coordinator table", func(t *testing.T) { attack1Compare(t, targets, []string{local}, []attack1Script{script}) })
	t.Run("distributed table", func(t *testing.T) {
		t.Skip("documented limitation (README, \"Multi-statement query strings and extended-protocol pipelines\"): COPY runs in no block here, so in a pipeline it commits what came before it and itself; a later error undoes neither")
		attack1Compare(t, targets, []string{dist}, []attack1Script{script})
	})
}

// PostgreSQL answers a FunctionCall (the fast-path interface, libpq's lo_* functions):
// pgshard ends the connection as for an unknown message.
func TestAttack1FunctionCall(t *testing.T) {
	t.Skip("known limitation: the fast-path FunctionCall message is a protocol violation (FATAL 08P01) in pgshard")
	dist, local, targets := attack1Targets(t)
	attack1Compare(t, targets, []string{dist, local}, []attack1Script{{"function call", func(w *wireConn, tb string) []string {
		w.send(&pgproto3.FunctionCall{Function: 1}) // no such function
		return append(w.until(1), w.probe()...)
	}}})
}

func f1(format, table string) string { return strings.ReplaceAll(format, "%s", table) }
