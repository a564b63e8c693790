package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"
)

// clientTable creates the drivers' table: distributed on id, 8 shards, 2 placements.
func clientTable(t *testing.T) string {
	t.Helper()
	table := uniqueName("clients")
	distribute(t, connect(t), fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), created date)", table), table, "id", 8, 2)
	return table
}

func clientName(i int) string {
	if i%7 == 0 {
		return fmt.Sprintf("O'Brien-é-%d", i)
	}
	return fmt.Sprintf("name-%d", i)
}

// TestPgx runs the client workload with pgx, in its default (extended protocol, prepared
// statements) and simple-protocol modes.
func TestPgx(t *testing.T) {
	for _, mode := range []string{"extended", "simple"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			table := clientTable(t)
			url := env.P.URL()
			if mode == "simple" {
				url += "&default_query_exec_mode=simple_protocol"
			}
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			pgxWorkload(t, conn, table)
			if total := checkPlacements(t, table, "hashint8(id)"); total != 490 {
				t.Errorf("rows on workers: %d", total)
			}
		})
	}
}

func pgxWorkload(t *testing.T, conn *pgx.Conn, table string) {
	ctx := context.Background()
	// 1. Single-row inserts with parameters.
	for i := 1; i <= 200; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO "+table+" (id, name, amount, created) VALUES ($1, $2, $3, $4)",
			i, clientName(i), fmt.Sprintf("%.2f", float64(i)*1.25), time.Date(2024, 1, 1+i%30, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	// 2. Reads by key.
	for i := 1; i <= 20; i++ {
		var name, amount string
		var created time.Time
		if err := conn.QueryRow(ctx, "SELECT name, amount::text, created FROM "+table+" WHERE id = $1", i).Scan(&name, &amount, &created); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if name != clientName(i) || amount != fmt.Sprintf("%.2f", float64(i)*1.25) || !created.Equal(time.Date(2024, 1, 1+i%30, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("row %d: %q %q %v", i, name, amount, created)
		}
	}
	// 3. Updates and deletes by key.
	for i := 1; i <= 50; i++ {
		tag, err := conn.Exec(ctx, "UPDATE "+table+" SET amount = amount + 1 WHERE id = $1", i)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("update %d: %v %v", i, tag, err)
		}
	}
	for i := 191; i <= 200; i++ {
		tag, err := conn.Exec(ctx, "DELETE FROM "+table+" WHERE id = $1", i)
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("delete %d: %v %v", i, tag, err)
		}
	}
	// 4. A multi-shard read.
	want := 0.0
	for i := 1; i <= 190; i++ {
		want += float64(i) * 1.25
	}
	want += 50
	var n int64
	var sum string
	if err := conn.QueryRow(ctx, "SELECT count(*), sum(amount)::text FROM "+table).Scan(&n, &sum); err != nil || n != 190 || sum != fmt.Sprintf("%.2f", want) {
		t.Errorf("count/sum: %d %s (want 190 %.2f) %v", n, sum, want, err)
	}
	// 5. COPY in and out.
	var data strings.Builder
	for i := 1001; i <= 1300; i++ {
		fmt.Fprintf(&data, "%d\tcopied-%d\t%d.50\t2024-02-01\n", i, i, i)
	}
	tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(data.String()), "COPY "+table+" (id, name, amount, created) FROM STDIN")
	if err != nil || tag.RowsAffected() != 300 {
		t.Fatalf("copy in: %v %v", tag, err)
	}
	var out strings.Builder
	tag, err = conn.PgConn().CopyTo(ctx, &out, "COPY "+table+" TO STDOUT")
	if err != nil || tag.RowsAffected() != 490 || strings.Count(out.String(), "\n") != 490 {
		t.Fatalf("copy out: %v %v, %d lines", tag, err, strings.Count(out.String(), "\n"))
	}
	// 6. Cancel a long-running statement; the connection goes on.
	timer := time.AfterFunc(500*time.Millisecond, func() { conn.PgConn().CancelRequest(context.Background()) })
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(30) FROM "+table+" WHERE id = $1", 1)
	timer.Stop()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" || time.Since(start) > 10*time.Second {
		t.Errorf("cancel: %v after %s", err, time.Since(start))
	}
	// 7. An error, then success.
	_, err = conn.Exec(ctx, "INSERT INTO "+table+" (id, name) VALUES ($1, $2)", 5, "dup")
	if !errors.As(err, &pe) || pe.Code != "23505" {
		t.Errorf("duplicate: %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = $1", 5).Scan(&n); err != nil || n != 1 {
		t.Errorf("after the error: %d %v", n, err)
	}
	// 8. Transactions: one committed, one rolled back.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustTx := func(sql string, args ...any) {
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustTx("UPDATE "+table+" SET name = $2 WHERE id = $1", 60, "tx-a")
	mustTx("UPDATE "+table+" SET name = $2 WHERE id = $1", 61, "tx-b")
	var name string
	if err := tx.QueryRow(ctx, "SELECT name FROM "+table+" WHERE id = $1", 60).Scan(&name); err != nil || name != "tx-a" {
		t.Errorf("read own write: %q %v", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustTx("UPDATE "+table+" SET name = $2 WHERE id = $1", 62, "rolled-back")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT name FROM "+table+" WHERE id = $1", 61).Scan(&name); err != nil || name != "tx-b" {
		t.Errorf("committed: %q %v", name, err)
	}
	if err := conn.QueryRow(ctx, "SELECT name FROM "+table+" WHERE id = $1", 62).Scan(&name); err != nil || name != clientName(62) {
		t.Errorf("rolled back: %q %v", name, err)
	}
}

// TestDatabaseSQL runs the workload's statements through database/sql (pgx's stdlib
// driver): prepared statements, a transaction, a cancel through a context.
func TestDatabaseSQL(t *testing.T) {
	ctx := context.Background()
	table := clientTable(t)
	cfg, err := pgx.ParseConfig(env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	// database/sql cancels through contexts: make pgx send a CancelRequest.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, CancelRequestDelay: 0, DeadlineDelay: 5 * time.Second}
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	ins, err := db.PrepareContext(ctx, "INSERT INTO "+table+" (id, name, amount, created) VALUES ($1, $2, $3, $4)")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 200; i++ {
		if _, err := ins.ExecContext(ctx, i, clientName(i), fmt.Sprintf("%.2f", float64(i)*1.25), time.Date(2024, 1, 1+i%30, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	ins.Close()
	var name string
	if err := db.QueryRowContext(ctx, "SELECT name FROM "+table+" WHERE id = $1", 7).Scan(&name); err != nil || name != clientName(7) {
		t.Errorf("read: %q %v", name, err)
	}
	res, err := db.ExecContext(ctx, "UPDATE "+table+" SET amount = amount + 1 WHERE id = $1", 3)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Errorf("update: %d %v", n, err)
	}
	var cnt int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&cnt); err != nil || cnt != 200 {
		t.Errorf("count: %d %v", cnt, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE id = $1", 1); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	start := time.Now()
	_, err = db.ExecContext(cctx, "SELECT pg_sleep(30) FROM "+table+" WHERE id = $1", 2)
	cancel()
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("cancel: %v after %s", err, time.Since(start))
	}
	_, err = db.ExecContext(ctx, "INSERT INTO "+table+" (id, name) VALUES ($1, $2)", 5, "dup")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		t.Errorf("duplicate: %v", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&cnt); err != nil || cnt != 199 {
		t.Errorf("count: %d %v", cnt, err)
	}
	if total := checkPlacements(t, table, "hashint8(id)"); total != 199 {
		t.Errorf("rows on workers: %d", total)
	}
}

// TestPgbench populates a distributed pgbench_accounts with pgbench -i (COPY through the
// proxy) and runs pgbench's TPC-B-like transactions for 30 s in each protocol mode: no
// transaction may fail, and the balances must agree afterwards.
func TestPgbench(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Skip("pgbench not installed (apt-get install postgresql-client)")
	}
	duration := 30
	if testing.Short() {
		duration = 5
	}
	if d, err := strconv.Atoi(os.Getenv("PGSHARD_PGBENCH_SECONDS")); err == nil {
		duration = d
	}
	conn := connect(t)
	for _, q := range []string{
		"DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history",
		"CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84))",
		"select master_create_distributed_table('pgbench_accounts', 'aid')",
		"select master_create_worker_shards('pgbench_accounts', 8, 2)",
		"CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88))",
		"CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84))",
		"CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))",
	} {
		mustExec(t, conn, q)
	}
	args := []string{"-h", env.P.Host, "-p", strconv.Itoa(env.P.Port), "-U", "postgres", "postgres"}
	if out, err := exec.Command("pgbench", append([]string{"-i", "-I", "gv", "-s", "2"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	if got := queryString(t, conn, "select count(*)::text from pgbench_accounts"); got != "200000" {
		t.Fatalf("pgbench_accounts holds %s rows", got)
	}
	// The built-in TPC-B-like transaction, as a custom script.
	script := filepath.Join(t.TempDir(), "tpcb.sql")
	os.WriteFile(script, []byte(`\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`), 0o644)
	failed := regexp.MustCompile(`number of failed transactions: (\d+)`)
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		out, err := exec.Command("pgbench", append([]string{"-n", "-M", mode, "-f", script, "-c", "4", "-j", "2", "-T", strconv.Itoa(duration)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench -M %s: %v\n%s", mode, err, out)
		}
		f, p := failed.FindSubmatch(out), processed.FindSubmatch(out)
		if f == nil || p == nil || string(f[1]) != "0" || string(p[1]) == "0" {
			t.Errorf("pgbench -M %s:\n%s", mode, out)
		}
		t.Logf("pgbench -M %s: %s transactions, %s failed", mode, p[1], f[1])
	}
	a := queryString(t, conn, "select sum(abalance)::text from pgbench_accounts")
	b := queryString(t, conn, "select sum(bbalance)::text from pgbench_branches")
	h := queryString(t, conn, "select sum(delta)::text from pgbench_history")
	if a != b || a != h {
		t.Errorf("balances disagree: accounts %s, branches %s, history %s", a, b, h)
	}
	if total := checkPlacements(t, "pgbench_accounts", "hashint4(aid)"); total != 200000 {
		t.Errorf("rows on workers: %d", total)
	}
}

// TestPsqlCancel: Ctrl-C in psql (SIGINT) sends a CancelRequest; the proxy cancels the
// statement on every placement it runs on.
func TestPsqlCancel(t *testing.T) {
	table := clientTable(t)
	mustExec(t, connect(t), "INSERT INTO "+table+" (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	for _, q := range []string{
		"select pg_sleep(30) from " + table + " where id = 1",
		"select pg_sleep(30) from " + table,
	} {
		cmd := exec.Command("psql", "-X", "-h", env.P.Host, "-p", strconv.Itoa(env.P.Port), "-U", "postgres", "-d", "postgres", "-c", q)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s: psql still running 10s after Ctrl-C", q)
		}
		if !strings.Contains(out.String(), "canceling statement due to user request") {
			t.Errorf("%s: %s", q, out.String())
		}
	}
}
