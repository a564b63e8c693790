package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Atomic commit (two-phase commit, proxy/twophase.go) and transaction recovery
// (proxy/recovery.go) without faults: the protocol's effects, the records' protection,
// SHOW TRANSACTIONS and RECOVER TRANSACTIONS. tests/faults/twophase_test.go cuts
// connections and kills processes at each step.

// tpTable creates a distributed table (k int, v int) with 4 shards, 2 placements each.
func tpTable(t *testing.T, conn *pgx.Conn, extra string) string {
	t.Helper()
	name := uniqueName("tp")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int NOT NULL%s)", name, extra),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'k')", name),
		fmt.Sprintf("SELECT master_create_worker_shards('%s', 4, 2)", name))
	return name
}

// preparedOnWorkers counts pgshard's prepared transactions on every worker.
func preparedOnWorkers(t *testing.T) int {
	t.Helper()
	n := 0
	for _, w := range env.C.Workers {
		c := connectServer(t, w)
		var k int
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'pgshard\\_%'").Scan(&k); err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return n
}

// placementsAgree checks that every finalized placement of each shard of table holds
// the same rows, and returns the rows of the first placement of each shard summed.
func placementsAgree(t *testing.T, table string) int64 {
	t.Helper()
	var total int64
	for _, s := range shardsOf(t, table) {
		first, seen := "", false
		for _, p := range s.places {
			if p.state != 1 {
				continue
			}
			c := connectServer(t, serverFor(p.port))
			var d string
			var n int64
			q := fmt.Sprintf("SELECT count(*), coalesce(string_agg(k || ':' || v, ',' ORDER BY k), '') FROM %s_%d", table, s.id)
			if err := c.QueryRow(context.Background(), q).Scan(&n, &d); err != nil {
				t.Fatal(err)
			}
			if !seen {
				first, seen = d, true
				total += n
			} else if d != first {
				t.Errorf("shard %d: placement %d holds %q, its sibling %q", s.id, p.id, d, first)
			}
		}
	}
	return total
}

// TestTwoPhaseBlockCommit: a block writing several shards (so several workers) commits
// on every placement, leaves no prepared transaction and no record once recovery ran.
func TestTwoPhaseBlockCommit(t *testing.T) {
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	mustExec(t, conn, "BEGIN")
	for k := 1; k <= 20; k++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (%d, %d)", tbl, k, k))
	}
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = v + 100 WHERE k = 3", tbl), "COMMIT")
	if n := placementsAgree(t, tbl); n != 20 {
		t.Fatalf("%d rows after COMMIT, want 20", n)
	}
	if v := queryString(t, conn, fmt.Sprintf("SELECT v::text FROM %s WHERE k = 3", tbl)); v != "103" {
		t.Fatalf("v = %s", v)
	}
	// A multi-placement autocommit write commits atomically too.
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = v + 1", tbl))
	placementsAgree(t, tbl)
	if n := preparedOnWorkers(t); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
	mustExec(t, conn, "RECOVER TRANSACTIONS")
	coord := connectServer(t, env.C.Coordinator)
	var recs int
	if err := coord.QueryRow(context.Background(), "SELECT count(*) FROM pgs_distribution_metadata.transaction").Scan(&recs); err != nil {
		t.Fatal(err)
	}
	if recs != 0 {
		t.Fatalf("%d commit records left after recovery", recs)
	}
	// ROLLBACK leaves nothing.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(100, 120) g", tbl), "ROLLBACK")
	if n := placementsAgree(t, tbl); n != 20 {
		t.Fatalf("%d rows after ROLLBACK, want 20", n)
	}
}

// TestTwoPhaseDeferredConstraint: a deferred constraint that fails at COMMIT fails the
// PREPARE on its placements: the client gets PostgreSQL's error at COMMIT, as from one
// server, and nothing of the block is committed anywhere (its other shards either).
func TestTwoPhaseDeferredConstraint(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, ", UNIQUE (k) DEFERRABLE INITIALLY DEFERRED")
	plain := connectServer(t, env.C.Coordinator)
	ptbl := uniqueName("tpplain")
	mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int NOT NULL, UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)", ptbl))
	var codes []string
	for _, c := range []struct {
		conn  *pgx.Conn
		table string
	}{{conn, tbl}, {plain, ptbl}} {
		mustExec(t, c.conn, "BEGIN")
		for k := 1; k <= 10; k++ {
			mustExec(t, c.conn, fmt.Sprintf("INSERT INTO %s VALUES (%d, 0)", c.table, k))
		}
		mustExec(t, c.conn, fmt.Sprintf("INSERT INTO %s VALUES (5, 1)", c.table))
		_, err := c.conn.Exec(ctx, "COMMIT")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("COMMIT on %s: %v, want an error", c.table, err)
		}
		codes = append(codes, pe.Code)
	}
	if codes[0] != codes[1] || codes[0] != "23505" {
		t.Fatalf("COMMIT's errors: pgshard %s, PostgreSQL %s", codes[0], codes[1])
	}
	if n := placementsAgree(t, tbl); n != 0 {
		t.Fatalf("%d rows committed by a failed COMMIT", n)
	}
	if n := preparedOnWorkers(t); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
	// The session goes on.
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", tbl))
	if n := placementsAgree(t, tbl); n != 2 {
		t.Fatalf("%d rows", n)
	}
}

// TestTwoPhaseRecordNotForgeable: a role can record a decision only for its own
// coordinator transaction, and cannot touch the records otherwise.
func TestTwoPhaseRecordNotForgeable(t *testing.T) {
	ctx := context.Background()
	coord := connectServer(t, env.C.Coordinator)
	role := uniqueName("tpforger")
	mustExec(t, coord, fmt.Sprintf("CREATE ROLE %s LOGIN", role))
	c, err := pgx.Connect(ctx, strings.Replace(env.C.Coordinator.URL("postgres"), "postgres@", role+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	code := func(sql string) string {
		_, err := c.Exec(ctx, sql)
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return ""
	}
	for _, sql := range []string{
		// Another transaction's gid (an older xid).
		"SELECT pgs_commit.record(ARRAY['pgshard_' || (txid_current() - 1) || '_1'], ARRAY['w'], ARRAY[1])",
		// A gid that only starts like the caller's.
		"SELECT pgs_commit.record(ARRAY['pgshard_' || txid_current() || '5_1'], ARRAY['w'], ARRAY[1])",
		"SELECT pgs_commit.record(ARRAY['pgshard_' || txid_current() || '_1x'], ARRAY['w'], ARRAY[1])",
		"SELECT pgs_commit.record(ARRAY[NULL], ARRAY['w'], ARRAY[1])",
	} {
		if got := code(sql); got != "42501" {
			t.Errorf("%s: SQLSTATE %q, want 42501", sql, got)
		}
	}
	for _, sql := range []string{
		"INSERT INTO pgs_distribution_metadata.transaction (gid, node_name, node_port) VALUES ('pgshard_1_1', 'w', 1)",
		"DELETE FROM pgs_distribution_metadata.transaction",
		"SELECT * FROM pgs_distribution_metadata.transaction",
	} {
		if got := code(sql); got != "42501" {
			t.Errorf("%s: SQLSTATE %q, want 42501", sql, got)
		}
	}
	// Its own transaction's decision it may record (that is what sessions do).
	if got := code("BEGIN; SELECT pgs_commit.record(ARRAY['pgshard_' || txid_current() || '_1'], ARRAY['w'], ARRAY[1]); ROLLBACK"); got != "" {
		t.Errorf("own record: SQLSTATE %q", got)
	}
}

// TestShowRecoverTransactions: a prepared part whose coordinator transaction is in
// progress is left alone and shown; once that transaction commits with its record,
// recovery commits the part; without a record, recovery rolls it back. SHOW
// TRANSACTIONS shows both actions.
func TestShowRecoverTransactions(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	s := shardsOf(t, tbl)[0]
	p := s.places[0]
	w := connectServer(t, serverFor(p.port))
	coord := connectServer(t, env.C.Coordinator)

	// part prepares, on the shard's first placement, a row k under a coordinator
	// transaction left open; it returns the gid.
	part := func(k int) string {
		mustExec(t, coord, "BEGIN")
		var xid int64
		if err := coord.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
			t.Fatal(err)
		}
		gid := fmt.Sprintf("pgshard_%d_1", xid)
		mustExec(t, w, "BEGIN", fmt.Sprintf("INSERT INTO %s_%d VALUES (%d, 0)", tbl, s.id, k), fmt.Sprintf("PREPARE TRANSACTION '%s'", gid))
		return gid
	}
	rowsOf := func(text string) [][]string {
		rows, err := conn.Query(ctx, text, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]string
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			var r []string
			for _, v := range vals {
				r = append(r, fmt.Sprint(v))
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	find := func(rows [][]string, gid string) []string {
		for _, r := range rows {
			if r[2] == gid {
				return r
			}
		}
		return nil
	}

	gid := part(1001)
	mustExec(t, conn, "RECOVER TRANSACTIONS")
	r := find(rowsOf("SHOW TRANSACTIONS"), gid)
	if r == nil || r[3] != "prepared" || !strings.Contains(r[5], "in progress") {
		t.Fatalf("SHOW TRANSACTIONS for an in-progress part: %v", r)
	}
	mustExec(t, coord, fmt.Sprintf("SELECT pgs_commit.record(ARRAY['%s'], ARRAY['%s'], ARRAY[%d])", gid, p.host, p.port), "COMMIT")
	mustExec(t, conn, "RECOVER TRANSACTIONS")
	if r := find(rowsOf("SHOW TRANSACTIONS"), gid); r == nil || r[3] != "recovered" || r[5] != "committed" {
		t.Fatalf("SHOW TRANSACTIONS after recovery: %v", r)
	}

	gid2 := part(1002)
	mustExec(t, coord, "ROLLBACK")
	mustExec(t, conn, "RECOVER TRANSACTIONS")
	if r := find(rowsOf("SHOW TRANSACTIONS"), gid2); r == nil || r[5] != "rolled back" {
		t.Fatalf("SHOW TRANSACTIONS after recovery: %v", r)
	}
	var n int
	if err := w.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s_%d WHERE k IN (1001, 1002)", tbl, s.id)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows of the two parts, want the committed one", n)
	}
	if k := preparedOnWorkers(t); k != 0 {
		t.Fatalf("%d prepared transactions left", k)
	}

	// Only superusers.
	role := uniqueName("tpuser")
	mustExec(t, coord, fmt.Sprintf("CREATE ROLE %s LOGIN", role))
	uc, err := pgx.Connect(ctx, strings.Replace(simpleURL(env.P), "postgres@", role+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close(ctx)
	for _, sql := range []string{"SHOW TRANSACTIONS", "RECOVER TRANSACTIONS"} {
		_, err := uc.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as %s: %v, want 42501", sql, role, err)
		}
	}
}

// TestTwoPhaseCost prints what atomic commit costs (PGSHARD_BENCH=1 runs it; no
// assertion): mean latency of single-row autocommit UPDATEs on a table with one placement
// per shard and on one with two, and of a two-row transfer block touching two shards,
// through the proxy, against the same on the coordinator directly.
func TestTwoPhaseCost(t *testing.T) {
	if os.Getenv("PGSHARD_BENCH") == "" {
		t.Skip("PGSHARD_BENCH not set")
	}
	ctx := context.Background()
	conn := connect(t)
	plain := connectServer(t, env.C.Coordinator)
	mk := func(repl int) string {
		name := uniqueName("tpcost")
		mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v int NOT NULL)", name),
			fmt.Sprintf("SELECT master_create_distributed_table('%s', 'k')", name),
			fmt.Sprintf("SELECT master_create_worker_shards('%s', 8, %d)", name, repl),
			fmt.Sprintf("INSERT INTO %s SELECT g, 0 FROM generate_series(1, 1000) g", name))
		return name
	}
	ptbl := uniqueName("tpcostplain")
	mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v int NOT NULL)", ptbl),
		fmt.Sprintf("INSERT INTO %s SELECT g, 0 FROM generate_series(1, 1000) g", ptbl))
	const n = 400
	measure := func(c *pgx.Conn, sqls func(i int) []string) time.Duration {
		start := time.Now()
		for i := 0; i < n; i++ {
			for _, q := range sqls(i) {
				if _, err := c.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatal(err)
				}
			}
		}
		return time.Since(start) / n
	}
	update := func(tbl string) func(int) []string {
		return func(i int) []string {
			return []string{fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, i%1000+1)}
		}
	}
	transfer := func(tbl string) func(int) []string {
		return func(i int) []string {
			a, b := i%1000+1, (i*7+500)%1000+1
			return []string{"BEGIN", fmt.Sprintf("UPDATE %s SET v = v - 1 WHERE k = %d", tbl, a), fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, b), "COMMIT"}
		}
	}
	r1, r2 := mk(1), mk(2)
	pu := measure(plain, update(ptbl))
	u1, u2 := measure(conn, update(r1)), measure(conn, update(r2))
	pt := measure(plain, transfer(ptbl))
	t1, t2 := measure(conn, transfer(r1)), measure(conn, transfer(r2))
	t.Logf("single-row UPDATE: plain %v, replication 1 %v, replication 2 %v (2 vs 1: %.2fx)", pu, u1, u2, float64(u2)/float64(u1))
	t.Logf("transfer block:    plain %v, replication 1 %v, replication 2 %v (2 vs 1: %.2fx)", pt, t1, t2, float64(t2)/float64(t1))
}
