package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestCursorStreams checks that a portal read in parts (Execute with a row limit, as
// JDBC's fetch size and node-postgres' cursors do) streams: between two Executes the
// shard's backend waits to send the rest of its result (wait event ClientWrite) instead
// of the proxy reading it all into memory first. The result is 20 MB, more than the
// socket buffers between a worker and the proxy hold. It also checks that every row
// arrives, that a portal left part way is cut off at Sync outside a transaction block,
// and kept across Syncs inside one.
func TestCursorStreams(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("cur")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k bigint PRIMARY KEY, v text)", table), table, "k", 1, 1)
	var shard int64
	var port int
	if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT s.id, p.node_port FROM pgs_distribution_metadata.shard s
		JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id WHERE s.relation_id = '%s'::regclass`, table)).Scan(&shard, &port); err != nil {
		t.Fatal(err)
	}
	worker := serverFor(port)
	// One shard holds every hash value: fill it on the worker directly, quickly.
	const total = 200000
	if _, err := worker.Exec(ctx, "postgres", fmt.Sprintf("INSERT INTO %s_%d SELECT g, repeat('x', 100) FROM generate_series(1, %d) g", table, shard, total)); err != nil {
		t.Fatal(err)
	}
	shardQuery := fmt.Sprintf("%s_%d", table, shard)
	// waitState polls the worker until the shard query's backend is (or is no longer)
	// blocked writing to the proxy.
	waitState := func(blocked bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			rs, err := worker.Exec(ctx, "postgres", fmt.Sprintf(
				"SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'ClientWrite' AND query LIKE '%%%s%%' AND pid <> pg_backend_pid()", shardQuery))
			if err != nil {
				t.Fatal(err)
			}
			n := string(rs[0].Rows[0][0])
			if (n != "0") == blocked {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("shard backend blocked in ClientWrite: %s, want blocked=%v", n, blocked)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// read receives one Execute's answer: its rows and how it ended.
	read := func(w *wireConn) (rows int, end string) {
		for {
			switch m := w.receive().(type) {
			case *pgproto3.DataRow:
				rows++
			case *pgproto3.PortalSuspended:
				return rows, "suspended"
			case *pgproto3.CommandComplete:
				return rows, string(m.CommandTag)
			case *pgproto3.ErrorResponse:
				t.Fatalf("error: %s %s", m.Code, m.Message)
			}
		}
	}

	w := dialWire(t, env.P.Addr)
	sql := fmt.Sprintf("SELECT k, v FROM %s", table)
	w.send(&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 100}, &pgproto3.Flush{})
	w.receive() // ParseComplete
	w.receive() // BindComplete
	if n, end := read(w); n != 100 || end != "suspended" {
		t.Fatalf("first part: %d rows, %s", n, end)
	}
	waitState(true)
	// The session is idle between fetches: a cancel request does nothing, as in
	// PostgreSQL (the statement must not fail at the next fetch).
	w.cancel()
	got := 100
	for {
		w.send(&pgproto3.Execute{MaxRows: 30000}, &pgproto3.Flush{})
		n, end := read(w)
		got += n
		if end != "suspended" {
			if want := fmt.Sprintf("SELECT %d", n); end != want {
				t.Errorf("last part ends with %q, want %q", end, want)
			}
			break
		}
	}
	if got != total {
		t.Errorf("read %d rows in parts, want %d", got, total)
	}
	w.send(&pgproto3.Sync{})
	w.until(1)

	// Left part way outside a transaction block: Sync ends the portal and its reads.
	w.send(&pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 10}, &pgproto3.Flush{})
	w.receive()
	if n, end := read(w); n != 10 || end != "suspended" {
		t.Fatalf("%d rows, %s", n, end)
	}
	waitState(true)
	w.send(&pgproto3.Sync{})
	w.until(1)
	waitState(false)
	w.send(&pgproto3.Query{String: fmt.Sprintf("SELECT count(*) FROM %s", table)})
	if out := w.until(1); !strings.Contains(strings.Join(out, " "), fmt.Sprintf("D[%d]", total)) {
		t.Errorf("count after an abandoned portal: %v", out)
	}

	// Inside a transaction block the portal outlives Sync, and Close drops it.
	w.send(&pgproto3.Query{String: "BEGIN"})
	w.until(1)
	w.send(&pgproto3.Bind{DestinationPortal: "c"}, &pgproto3.Execute{Portal: "c", MaxRows: 10}, &pgproto3.Sync{})
	w.receive()
	if n, end := read(w); n != 10 || end != "suspended" {
		t.Fatalf("%d rows, %s", n, end)
	}
	if out := w.until(1); strings.Join(out, " ") != "ZT" {
		t.Fatalf("after Sync: %v", out)
	}
	waitState(true)
	w.send(&pgproto3.Execute{Portal: "c", MaxRows: 10}, &pgproto3.Sync{})
	if n, end := read(w); n != 10 || end != "suspended" {
		t.Fatalf("after Sync: %d rows, %s", n, end)
	}
	w.until(1)
	w.send(&pgproto3.Close{ObjectType: 'P', Name: "c"}, &pgproto3.Sync{})
	if out := w.until(1); strings.Join(out, " ") != "3 ZT" {
		t.Fatalf("Close: %v", out)
	}
	waitState(false)
	w.send(&pgproto3.Query{String: "COMMIT"})
	if out := w.until(1); strings.Join(out, " ") != "C[COMMIT] ZI" {
		t.Fatalf("COMMIT: %v", out)
	}
}
