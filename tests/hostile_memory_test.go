package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/proxy"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// dialWireAs is dialWire for another role.
func dialWireAs(t testing.TB, addr, role string) *wireConn {
	t.Helper()
	w := &wireConn{t: t, addr: addr}
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	w.nc, w.fe = nc, pgproto3.NewFrontend(nc, nc)
	w.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": role, "database": "postgres"}})
	w.flush()
	for {
		switch m := w.receive().(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup as %s: %s", role, m.Message)
		case *pgproto3.ReadyForQuery:
			return w
		}
	}
}

// heapPeak samples the process's heap in use until stop is called, which returns the
// highest value seen (and the value after a collection at the end). Meanwhile the
// collector runs early (GOGC=10), so that the peak is what is held, not garbage waiting
// for a collection that the default pacing lets grow as large as the live heap.
func heapPeak() (stop func() uint64) {
	old := debug.SetGCPercent(10)
	var mu sync.Mutex
	var peak uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		runtime.GC()
		sample()
		debug.SetGCPercent(old)
		return peak
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rowsOf reads the answer to Executes up to the next ReadyForQuery: the DataRows' first
// columns, whether every second column is 1 MiB of 'x', and the other messages.
func rowsOf(t *testing.T, w *wireConn, big int) (keys []string, rest []string) {
	t.Helper()
	for {
		m := w.receive()
		switch m := m.(type) {
		case *pgproto3.DataRow:
			keys = append(keys, string(m.Values[0]))
			if len(m.Values[1]) != big || bytes.Count(m.Values[1], []byte{'x'}) != big {
				t.Fatalf("row %s: value of %d bytes, want %d bytes of x", m.Values[0], len(m.Values[1]), big)
			}
			continue
		case *pgproto3.ParameterStatus, *pgproto3.NoticeResponse:
			continue
		}
		rest = append(rest, summary(m))
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return keys, rest
		}
	}
}

// TestHostileSuspendedPortal: a portal suspended by an Execute's row limit, in a
// transaction block, then another statement on the session. The proxy must read the rest
// of the result before the statement runs (they share the block's connections), but it
// may not keep it in memory: beyond a bound it goes to a temporary file, and the
// portal's next Executes still return every row.
func TestHostileSuspendedPortal(t *testing.T) {
	role := unprivilegedRole(t, "memrole")
	const big = 1 << 20
	const n = 128 // 128 MiB of results
	conn := connect(t)
	table := uniqueName("membig")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 1)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT i, 'x' FROM generate_series(1, %d) i", table, n))
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s", role)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, sql string }{
		{"coordinator", fmt.Sprintf("SELECT i::text, repeat('x', %d) FROM generate_series(1, %d) i", big, n)},
		{"distributed", fmt.Sprintf("SELECT k::text, repeat(v, %d) FROM %s", big, table)},
	} {
		t.Run(c.name, func(t *testing.T) {
			openBefore := spoolFiles(t)
			w := dialWireAs(t, env.P.Addr, role)
			w.send(&pgproto3.Query{String: "BEGIN"})
			if got := strings.Join(w.until(1), " "); got != "C[BEGIN] ZT" {
				t.Fatalf("BEGIN: %s", got)
			}
			w.send(&pgproto3.Parse{Query: c.sql}, &pgproto3.Bind{DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{})
			keys, rest := rowsOf(t, w, big)
			if len(keys) != 1 || strings.Join(rest, " ") != "1 2 s ZT" {
				t.Fatalf("first Execute: %d rows, %s", len(keys), rest)
			}

			base := heapInuse()
			stop := heapPeak()
			w.send(&pgproto3.Query{String: "SELECT 1"})
			got := strings.Join(w.until(1), " ")
			peak := stop()
			if got != "T[?column?:23:0] D[1] C[SELECT 1] ZT" {
				t.Fatalf("SELECT 1 after the suspended portal: %s", got)
			}
			const margin = 48 << 20
			t.Logf("heap in use: %d MiB before, %d MiB at the peak", base>>20, peak>>20)
			if peak > base+margin {
				t.Errorf("heap in use rose from %d MiB to %d MiB while the rest of a %d MiB portal was set aside (allowed: %d MiB)",
					base>>20, peak>>20, n*big>>20, margin>>20)
			}

			// The portal goes on where it stopped, in parts, as in PostgreSQL.
			w.send(&pgproto3.Execute{Portal: "p", MaxRows: 50}, &pgproto3.Sync{})
			more, rest := rowsOf(t, w, big)
			if len(more) != 50 || strings.Join(rest, " ") != "s ZT" {
				t.Fatalf("second Execute: %d rows, %s", len(more), rest)
			}
			keys = append(keys, more...)
			w.send(&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
			more, rest = rowsOf(t, w, big)
			if want := fmt.Sprintf("C[SELECT %d] ZT", n-51); len(more) != n-51 || strings.Join(rest, " ") != want {
				t.Fatalf("last Execute: %d rows, %s (want %d rows, %s)", len(more), rest, n-51, want)
			}
			keys = append(keys, more...)
			seen := map[string]bool{}
			for _, k := range keys {
				seen[k] = true
			}
			for i := 1; i <= n; i++ {
				if !seen[fmt.Sprint(i)] {
					t.Fatalf("row %d missing from the portal's result (%d rows, %d distinct)", i, len(keys), len(seen))
				}
			}
			w.send(&pgproto3.Query{String: "COMMIT"})
			if got := strings.Join(w.until(1), " "); got != "C[COMMIT] ZI" {
				t.Fatalf("COMMIT: %s", got)
			}

			// Set aside again, and the client leaves: the temporary file goes with it.
			w.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: c.sql}, &pgproto3.Bind{DestinationPortal: "p"},
				&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT 1"})
			w.until(3)
			w.send(&pgproto3.Terminate{})
			w.nc.Close()
			deadline := time.Now().Add(10 * time.Second)
			for spoolFiles(t) > openBefore {
				if time.Now().After(deadline) {
					t.Fatalf("%d temporary files still open after the client left (%d before)", spoolFiles(t), openBefore)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// spoolFiles counts the proxy's open temporary result files (it removes them from the
// directory at once, so they show as deleted in /proc/self/fd).
func spoolFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.Contains(target, "pgshard-result-") {
			n++
		}
	}
	return n
}

// TestHostileSuspendedPortalLimit: beyond the temporary file limit, the statement that
// needed the session's connections fails with 53400, saying which limit and how to raise
// it, and the block is aborted; the session stays usable.
func TestHostileSuspendedPortalLimit(t *testing.T) {
	role := unprivilegedRole(t, "memlimit")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{Config: func(c *proxy.Config) {
		c.WorkMem = 1 << 20
		c.TempFileLimit = 8 << 20
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	w := dialWireAs(t, p.Addr, role)
	w.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: "SELECT i, repeat('x', 1 << 20) FROM generate_series(1, 64) i"},
		&pgproto3.Bind{DestinationPortal: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{})
	w.until(2)
	w.send(&pgproto3.Query{String: "SELECT 1"})
	var e *pgproto3.ErrorResponse
	for {
		m := w.receive()
		if er, ok := m.(*pgproto3.ErrorResponse); ok {
			e = er
		}
		if z, ok := m.(*pgproto3.ReadyForQuery); ok {
			if z.TxStatus != 'E' {
				t.Errorf("transaction state %c after the limit, want E", z.TxStatus)
			}
			break
		}
	}
	if e == nil || e.Code != "53400" || !strings.Contains(e.Message, "temp-file-limit") {
		t.Fatalf("want 53400 naming temp-file-limit, got %+v", e)
	}
	w.send(&pgproto3.Query{String: "ROLLBACK"})
	if got := strings.Join(w.until(1), " "); got != "C[ROLLBACK] ZI" {
		t.Fatalf("ROLLBACK: %s", got)
	}
	w.send(&pgproto3.Query{String: "SELECT 2"})
	if got := strings.Join(w.until(1), " "); got != "T[?column?:23:0] D[2] C[SELECT 1] ZI" {
		t.Fatalf("after ROLLBACK: %s", got)
	}
}

// TestHostileReturningMemory: a write's answers are set aside until every placement has
// answered (the outcome decides which one the client gets). A multi-shard UPDATE ...
// RETURNING of large values must not hold them all in memory, and its rows still arrive.
func TestHostileReturningMemory(t *testing.T) {
	const big = 1 << 20
	const n = 64 // 64 MiB of RETURNING rows, on 2 placements each
	conn := connect(t)
	table := uniqueName("memret")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT i, 'x' FROM generate_series(1, %d) i", table, n))
	role := unprivilegedRole(t, "memret")
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", fmt.Sprintf("GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO %s", role)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ name, pre, post string }{{"autocommit", "", ""}, {"block", "BEGIN", "COMMIT"}} {
		t.Run(c.name, func(t *testing.T) {
			w := dialWireAs(t, env.P.Addr, role)
			if c.pre != "" {
				w.send(&pgproto3.Query{String: c.pre})
				w.until(1)
			}
			base := heapInuse()
			stop := heapPeak()
			w.send(&pgproto3.Query{String: fmt.Sprintf("UPDATE %s SET v = v RETURNING k::text, repeat(v, %d)", table, big)})
			first := w.receive() // sent once every placement has answered
			peak := stop()
			if _, ok := first.(*pgproto3.RowDescription); !ok {
				t.Fatalf("first answer %s", summary(first))
			}
			const margin = 48 << 20
			t.Logf("heap in use: %d MiB before, %d MiB at the peak", base>>20, peak>>20)
			if peak > base+margin {
				t.Errorf("heap in use rose from %d MiB to %d MiB for %d MiB of RETURNING rows (allowed: %d MiB)",
					base>>20, peak>>20, n*big>>20, margin>>20)
			}
			keys, rest := rowsOf(t, w, big)
			want := fmt.Sprintf("C[UPDATE %d] Z", n)
			if c.pre != "" {
				want += "T"
			} else {
				want += "I"
			}
			if len(keys) != n || strings.Join(rest, " ") != want {
				t.Fatalf("%d rows, %s (want %d, %s)", len(keys), rest, n, want)
			}
			if c.post != "" {
				w.send(&pgproto3.Query{String: c.post})
				w.until(1)
			}
		})
	}
}

// TestHostileCopyRowWithoutEnd: COPY data that never ends its row is held by the proxy
// until the row ends; past the largest message (the row could not be sent on anyway) the
// COPY fails with 54000 instead of growing without bound.
func TestHostileCopyRowWithoutEnd(t *testing.T) {
	conn := connect(t)
	table := uniqueName("memcopy")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 1)
	role := unprivilegedRole(t, "memcopy")
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", fmt.Sprintf("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO %s", role)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{Config: func(c *proxy.Config) {
		c.MaxMessage = 1 << 20
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	w := dialWireAs(t, p.Addr, role)
	w.send(&pgproto3.Query{String: fmt.Sprintf("COPY %s FROM STDIN", table)})
	if m := w.receive(); summary(m) != "*pgproto3.CopyInResponse" {
		t.Fatalf("COPY: %s", summary(m))
	}
	w.send(&pgproto3.CopyData{Data: []byte("1\tfirst\n2\t")})
	chunk := bytes.Repeat([]byte("y"), 256<<10)
	for i := 0; i < 8; i++ {
		w.send(&pgproto3.CopyData{Data: chunk})
	}
	w.send(&pgproto3.CopyDone{})
	var e *pgproto3.ErrorResponse
	for {
		m := w.receive()
		if er, ok := m.(*pgproto3.ErrorResponse); ok && e == nil {
			e = er
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if e == nil || e.Code != "54000" || !strings.Contains(e.Message, "max-message") || !strings.Contains(e.Where, "line 2") {
		t.Fatalf("want 54000 naming max-message at line 2, got %+v", e)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", table)); got != "0" {
		t.Errorf("%s rows after the failed COPY", got)
	}
}

// TestHostileSortedForUpdateMemory: ORDER BY ... FOR UPDATE inside a transaction block,
// with several shards on one worker: each shard's rows are read in turn and set aside
// before the merge, in bounded memory.
func TestHostileSortedForUpdateMemory(t *testing.T) {
	const big = 1 << 20
	const n = 96
	conn := connect(t)
	table := uniqueName("memsort")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 8, 1)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT i, 'x' FROM generate_series(1, %d) i", table, n))
	role := unprivilegedRole(t, "memsort")
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", fmt.Sprintf("GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO %s", role)); err != nil {
			t.Fatal(err)
		}
	}
	w := dialWireAs(t, env.P.Addr, role)
	w.send(&pgproto3.Query{String: "BEGIN"})
	w.until(1)
	base := heapInuse()
	stop := heapPeak()
	w.send(&pgproto3.Query{String: fmt.Sprintf("SELECT k, repeat(v, %d) FROM %s ORDER BY k DESC FOR UPDATE", big, table)})
	first := w.receive()
	peak := stop()
	if _, ok := first.(*pgproto3.RowDescription); !ok {
		t.Fatalf("first answer %s", summary(first))
	}
	const margin = 48 << 20
	t.Logf("heap in use: %d MiB before, %d MiB at the peak", base>>20, peak>>20)
	if peak > base+margin {
		t.Errorf("heap in use rose from %d MiB to %d MiB for %d MiB of rows (allowed: %d MiB)", base>>20, peak>>20, n*big>>20, margin>>20)
	}
	keys, rest := rowsOf(t, w, big)
	if len(keys) != n || strings.Join(rest, " ") != fmt.Sprintf("C[SELECT %d] ZT", n) {
		t.Fatalf("%d rows, %s", len(keys), rest)
	}
	for i, k := range keys {
		if k != fmt.Sprint(n-i) {
			t.Fatalf("row %d has key %s, want %d (ORDER BY k DESC)", i, k, n-i)
		}
	}
	w.send(&pgproto3.Query{String: "COMMIT"})
	w.until(1)
}

// TestHostilePreparedStatements: a client preparing statement after statement without
// closing them meets max-prepared-memory (54000) instead of growing the proxy without
// bound; closing statements makes room again, and the session goes on.
func TestHostilePreparedStatements(t *testing.T) {
	role := unprivilegedRole(t, "memprep")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{Config: func(c *proxy.Config) {
		c.MaxPreparedMemory = 4 << 20
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	w := dialWireAs(t, p.Addr, role)
	pad := strings.Repeat(" + 1", 1000) // 4 KB of text
	var failedAt int
	for i := 0; i < 200 && failedAt == 0; i++ {
		w.send(&pgproto3.Parse{Name: fmt.Sprint("s", i), Query: fmt.Sprintf("SELECT %d", i) + pad}, &pgproto3.Sync{})
		for {
			m := w.receive()
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				if e.Code != "54000" || !strings.Contains(e.Message, "max-prepared-memory") {
					t.Fatalf("statement %d: %s %s", i, e.Code, e.Message)
				}
				failedAt = i
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
	}
	if failedAt == 0 {
		t.Fatalf("200 statements of 4 KB prepared within 4 MiB of max-prepared-memory")
	}
	// SQL PREPARE counts the same.
	w.send(&pgproto3.Query{String: "PREPARE q AS SELECT 1" + pad})
	if got := strings.Join(w.until(1), " "); got != "E[54000] ZI" {
		t.Fatalf("PREPARE past the limit: %s", got)
	}
	w.send(&pgproto3.Close{ObjectType: 'S', Name: "s0"}, &pgproto3.Close{ObjectType: 'S', Name: "s1"}, &pgproto3.Sync{})
	w.until(1)
	w.send(&pgproto3.Query{String: "PREPARE q AS SELECT 1" + pad}, &pgproto3.Query{String: "EXECUTE q"})
	if got := strings.Join(w.until(2), " "); got != "C[PREPARE] ZI T[?column?:23:0] D[1001] C[SELECT 1] ZI" {
		t.Fatalf("after closing two statements: %s", got)
	}

	// Portals count too: in a block, they live until it ends.
	var closes []pgproto3.FrontendMessage
	for i := 2; i < failedAt; i++ {
		closes = append(closes, &pgproto3.Close{ObjectType: 'S', Name: fmt.Sprint("s", i)})
	}
	closes = append(closes, &pgproto3.Parse{Name: "p1", Query: "SELECT length($1::text)"}, &pgproto3.Sync{}, &pgproto3.Query{String: "BEGIN"})
	w.send(closes...)
	w.until(2)
	param := bytes.Repeat([]byte("p"), 256<<10)
	failedAt = -1
	for i := 0; i < 100 && failedAt < 0; i++ {
		w.send(&pgproto3.Bind{DestinationPortal: fmt.Sprint("b", i), PreparedStatement: "p1", Parameters: [][]byte{param}}, &pgproto3.Sync{})
		got := strings.Join(w.until(1), " ")
		switch got {
		case "2 ZT":
		case "E[54000] ZE":
			failedAt = i
		default:
			t.Fatalf("Bind %d: %s", i, got)
		}
	}
	if failedAt < 8 {
		t.Fatalf("portal %d of 256 KB past 4 MiB of max-prepared-memory", failedAt)
	}
	// (The proxy drops a block's portals at the next Sync after it ends.)
	w.send(&pgproto3.Query{String: "ROLLBACK"}, &pgproto3.Sync{})
	w.until(2)
	w.send(&pgproto3.Bind{DestinationPortal: "again", PreparedStatement: "p1", Parameters: [][]byte{param}},
		&pgproto3.Execute{Portal: "again"}, &pgproto3.Sync{})
	if got := strings.Join(w.until(1), " "); got != "2 D[262144] C[SELECT 1] ZI" {
		t.Fatalf("a portal after the block's portals went: %s", got)
	}
}

// TestHostileBlockReplay: what brings a backend that joins a transaction block late to
// the block's state (BEGIN, SETs, savepoints) is kept short: released savepoints and
// what a ROLLBACK TO undid leave it, so thousands of savepoints (psql's ON_ERROR_ROLLBACK)
// cost nothing, and a worker joining after them still sees the block's settings as
// PostgreSQL would. Settings past a bound fail with 54000 instead of growing it.
func TestHostileBlockReplay(t *testing.T) {
	role := unprivilegedRole(t, "memreplay")
	conn := connect(t)
	table := uniqueName("memreplay")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 1)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT i, 'x' FROM generate_series(1, 40) i", table))
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s", role)); err != nil {
			t.Fatal(err)
		}
	}
	c := connectAs(t, env.P, role)
	mustExec(t, c, "BEGIN", "SET LOCAL application_name = 'kept'")
	var pairs strings.Builder
	for i := 0; i < 2000; i++ {
		pairs.WriteString("SAVEPOINT s; RELEASE s; ")
	}
	mustExec(t, c, pairs.String(),
		"SAVEPOINT a", "SET LOCAL application_name = 'undone'", "SAVEPOINT b", "ROLLBACK TO a",
		"SAVEPOINT c", "SET LOCAL statement_timeout = '17s'", "RELEASE c")
	// Every shard's worker joins the block now and must be where the block is.
	rows, err := c.Query(context.Background(), fmt.Sprintf("SELECT current_setting('application_name'), current_setting('statement_timeout'), k FROM %s", table))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var app, timeout string
		var k int
		if err := rows.Scan(&app, &timeout, &k); err != nil {
			t.Fatal(err)
		}
		if app != "kept" || timeout != "17s" {
			t.Fatalf("row %d read with application_name %q, statement_timeout %q; want kept, 17s", k, app, timeout)
		}
		n++
	}
	if rows.Err() != nil || n != 40 {
		t.Fatalf("%d rows, %v", n, rows.Err())
	}
	// ROLLBACK TO a savepoint still works after the replay dropped the released ones.
	mustExec(t, c, "ROLLBACK TO a", "ROLLBACK")

	// Settings: 33 SETs of 512 KB each in one block pass the bound.
	mustExec(t, c, "BEGIN")
	val := strings.Repeat("y", 512<<10)
	var last error
	for i := 0; i < 33 && last == nil; i++ {
		_, last = c.Exec(context.Background(), fmt.Sprintf("SET LOCAL pgshard_test.v%d = '%s'", i, val))
	}
	var pe *pgconn.PgError
	if !errors.As(last, &pe) || pe.Code != "54000" {
		t.Fatalf("16.5 MB of SET LOCAL in one block: %v, want 54000", last)
	}
	mustExec(t, c, "ROLLBACK")
	if got := queryString(t, c, "SELECT 'alive'"); got != "alive" {
		t.Fatalf("after the refused SET: %s", got)
	}
}

// TestHostileFunctionArgumentRows: pgshard's functions in the target list of a query run
// once per row of the rest of the query, which the coordinator evaluates first; those rows
// are set aside in bounded memory, whatever the query returns.
func TestHostileFunctionArgumentRows(t *testing.T) {
	role := unprivilegedRole(t, "memfunc")
	w := dialWireAs(t, env.P.Addr, role)
	base := heapInuse()
	stop := heapPeak()
	w.send(&pgproto3.Query{String: "SELECT master_create_distributed_table('no_such_table_' || i || repeat('x', 1 << 20), 'k') FROM generate_series(1, 160) i"})
	got := w.until(1)
	peak := stop()
	if j := strings.Join(got, " "); !strings.Contains(j, "E[42P01] ZI") {
		t.Fatalf("answer %s, want 42P01 (no such table)", j)
	}
	const margin = 48 << 20
	t.Logf("heap in use: %d MiB before, %d MiB at the peak", base>>20, peak>>20)
	if peak > base+margin {
		t.Errorf("heap in use rose from %d MiB to %d MiB for 160 MiB of argument rows (allowed: %d MiB)", base>>20, peak>>20, margin>>20)
	}
}

// TestHostileSessionSettings: the proxy keeps a session's settings and applies them to
// every worker connection the session uses, so their size is bounded: a SET past the
// bound fails with 54000, and settings grown past it otherwise (set_config) keep the
// session off the workers, with 54000, until they are reset.
func TestHostileSessionSettings(t *testing.T) {
	role := unprivilegedRole(t, "memset")
	conn := connect(t)
	table := uniqueName("memset")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 1)
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s", role)); err != nil {
			t.Fatal(err)
		}
	}
	c := connectAs(t, env.P, role)
	count := fmt.Sprintf("SELECT count(*)::text FROM %s", table)
	code := func(sql string) string {
		_, err := c.Exec(context.Background(), sql)
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	// One SET past the bound is refused before it runs.
	if got := code(fmt.Sprintf(`SET search_path = public, "%s"`, strings.Repeat("y", 2<<20))); got != "54000" {
		t.Fatalf("SET of 2 MB: %s, want 54000", got)
	}
	if got := queryString(t, c, "SELECT length(current_setting('search_path'))::text"); len(got) > 3 {
		t.Fatalf("search_path of %s bytes after the refused SET", got)
	}
	// Grown past it by set_config: the coordinator has it, the workers are refused.
	if got := code(`SELECT set_config('search_path', 'public, "' || repeat('z', 2000000) || '"', false)`); got != "ok" {
		t.Fatalf("set_config: %s", got)
	}
	if got := code(count); got != "54000" {
		t.Fatalf("count with 2 MB of settings: %s, want 54000", got)
	}
	mustExec(t, c, "RESET search_path")
	if got := queryString(t, c, count); got != "0" {
		t.Fatalf("count after RESET: %s", got)
	}
}

// TestHostilePipelineNotRead: a client that sends many statements and reads none of the
// answers is held back by TCP: the proxy stops when its writes block, it does not
// buffer the answers. Every answer arrives once the client reads.
func TestHostilePipelineNotRead(t *testing.T) {
	role := unprivilegedRole(t, "mempipe")
	w := dialWireAs(t, env.P.Addr, role)
	const n = 1000 // 1000 answers of 100 KB: 100 MB
	var msgs []pgproto3.FrontendMessage
	msgs = append(msgs, &pgproto3.Parse{Name: "big", Query: "SELECT repeat('x', 100000)"})
	for i := 0; i < n; i++ {
		msgs = append(msgs, &pgproto3.Bind{PreparedStatement: "big"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}
	base := heapInuse()
	stop := heapPeak()
	sent := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			w.fe.Send(m)
		}
		sent <- w.fe.Flush()
	}()
	time.Sleep(2 * time.Second) // the proxy runs until its writes to the client block
	peak := stop()
	t.Logf("heap in use: %d MiB before, %d MiB at the peak", base>>20, peak>>20)
	const margin = 48 << 20
	if peak > base+margin {
		t.Errorf("heap in use rose from %d MiB to %d MiB while the client read nothing (allowed: %d MiB)", base>>20, peak>>20, margin>>20)
	}
	rows := 0
	for ready := 0; ready < n; {
		w.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		m, err := w.fe.Receive()
		if err != nil {
			t.Fatalf("after %d answers: %v", ready, err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			if len(m.Values[0]) != 100000 {
				t.Fatalf("a value of %d bytes", len(m.Values[0]))
			}
			rows++
		case *pgproto3.ErrorResponse:
			t.Fatalf("error %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Fatalf("%d rows, want %d", rows, n)
	}
}

// TestHostilePortalsEndWithTheBlock: a block's portals end with it, as in PostgreSQL, and
// with them what they hold (parameters, rows set aside), whether or not a Sync follows.
func TestHostilePortalsEndWithTheBlock(t *testing.T) {
	role := unprivilegedRole(t, "memportal")
	for _, target := range []struct{ name, addr string }{{"postgres", env.C.Workers[0].Addr()}, {"pgshard", env.P.Addr}} {
		t.Run(target.name, func(t *testing.T) {
			w := dialWireAs(t, target.addr, role)
			w.send(&pgproto3.Query{String: "BEGIN"},
				&pgproto3.Parse{Name: "s", Query: "SELECT i FROM generate_series(1, 10) i"},
				&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{},
				&pgproto3.Query{String: "SELECT 1"}, // sets the portal's rest aside in pgshard
				&pgproto3.Query{String: "COMMIT"},
				&pgproto3.Execute{Portal: "p", MaxRows: 2}, &pgproto3.Sync{})
			got := strings.Join(w.until(5), " ")
			want := "C[BEGIN] ZT 1 2 D[1] D[2] s ZT T[?column?:23:0] D[1] C[SELECT 1] ZT C[COMMIT] ZI E[34000] ZI"
			if got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			if spoolFiles(t) != 0 && target.name == "pgshard" {
				t.Errorf("%d temporary files open after the block ended", spoolFiles(t))
			}
		})
	}
}

// TestHostileTempDirFails: when a temporary file cannot be created, the statement fails
// with 53000, and the client learns nothing of the server's paths.
func TestHostileTempDirFails(t *testing.T) {
	role := unprivilegedRole(t, "memtmpdir")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "missing-secret-dir")
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{Config: func(c *proxy.Config) {
		c.WorkMem = 1 << 20
		c.TempDir = dir
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	w := dialWireAs(t, p.Addr, role)
	w.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: "SELECT i, repeat('x', 1 << 20) FROM generate_series(1, 8) i"},
		&pgproto3.Bind{DestinationPortal: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{})
	w.until(2)
	w.send(&pgproto3.Query{String: "SELECT 1"})
	var e *pgproto3.ErrorResponse
	for {
		m := w.receive()
		if er, ok := m.(*pgproto3.ErrorResponse); ok {
			e = er
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if e == nil || e.Code != "53000" {
		t.Fatalf("want 53000, got %+v", e)
	}
	if all := e.Message + e.Detail + e.Hint; strings.Contains(all, "missing-secret-dir") || strings.Contains(all, "/") {
		t.Errorf("the error shows a server path: %q %q %q", e.Message, e.Detail, e.Hint)
	}
	w.send(&pgproto3.Query{String: "ROLLBACK"})
	if got := strings.Join(w.until(1), " "); got != "C[ROLLBACK] ZI" {
		t.Fatalf("ROLLBACK: %s", got)
	}
}
