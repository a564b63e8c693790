package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgshard/pgshard/tests/faultproxy"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// pgbenchResult is what one pgbench run reported.
type pgbenchResult struct {
	mode      string
	processed int64 // transactions pgbench counted as committed
	failed    int64
	aborted   int // clients cut off (each may have left one transaction in doubt)
	out       string
	err       error
}

var (
	reProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	reFailed    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	reAborted   = regexp.MustCompile(`(?m)^pgbench: error: client \d+ (script \d+ )?aborted`)
)

func runPgbench(p *testproxy.Proxy, mode string, seconds int) pgbenchResult {
	args := []string{"-n", "-b", "tpcb-like", "-M", mode, "-c", "4", "-j", "2", "-T", strconv.Itoa(seconds),
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", "postgres", "postgres"}
	out, err := exec.Command("pgbench", args...).CombinedOutput()
	r := pgbenchResult{mode: mode, out: string(out), err: err}
	if m := reProcessed.FindSubmatch(out); m != nil {
		r.processed, _ = strconv.ParseInt(string(m[1]), 10, 64)
	} else {
		r.processed = -1
	}
	if m := reFailed.FindSubmatch(out); m != nil {
		r.failed, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	r.aborted = len(reAborted.FindAll(out, -1))
	return r
}

// setupPgbench creates pgbench's four tables through the proxy, distributed with 8 shards
// of 2 placements each so that every statement of the TPC-B-like script is single-shard
// (pgbench_history on aid), and fills them with pgbench -i at the given scale.
func setupPgbench(t *testing.T, c conn, scale int) {
	t.Helper()
	c.exec(t, "DROP TABLE IF EXISTS pgbench_accounts, pgbench_tellers, pgbench_branches, pgbench_history")
	for _, tb := range []struct{ name, def, key string }{
		{"pgbench_accounts", "(aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84))", "aid"},
		{"pgbench_tellers", "(tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84))", "tid"},
		{"pgbench_branches", "(bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88))", "bid"},
		{"pgbench_history", "(tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))", "aid"},
	} {
		c.exec(t, "CREATE TABLE "+tb.name+" "+tb.def,
			fmt.Sprintf("select master_create_distributed_table('%s', '%s')", tb.name, tb.key),
			fmt.Sprintf("select master_create_worker_shards('%s', 8, 2)", tb.name))
	}
	out, err := exec.Command("pgbench", "-i", "-I", "g", "-s", strconv.Itoa(scale),
		"-h", env.p.Host, "-p", strconv.Itoa(env.p.Port), "-U", "postgres", "postgres").CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
}

// TestPgbenchWorkerCrash runs pgbench's TPC-B-like transactions through two proxies at
// once (extended protocol on one, prepared statements on the other) while workers are
// stopped with an immediate shutdown and started again, one after the other, with repairs
// in between (defect 10 of issue 9). Every transaction pgbench counted as committed must
// be whole: the three balance sums equal sum(delta) of pgbench_history, pgbench_history
// holds one row per acknowledged transaction (plus at most one in doubt per client cut
// off), and after repair both placements of every shard are identical. With two
// placements per shard and one worker down at a time, no client may be cut off either.
//
// PGSHARD_PGBENCH_SOAK=<seconds> runs longer, with more crash cycles;
// PGSHARD_PGBENCH_DEBUG=<dir> logs every statement on the workers and copies their logs
// there.
func TestPgbenchWorkerCrash(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Skip("pgbench not installed")
	}
	defer resetFaults(t)
	seconds := 20
	if s, err := strconv.Atoi(os.Getenv("PGSHARD_PGBENCH_SOAK")); err == nil && s > 0 {
		seconds = s
	}
	debugDir := os.Getenv("PGSHARD_PGBENCH_DEBUG")
	if debugDir != "" {
		for _, w := range env.c.Workers {
			for _, q := range []string{"ALTER SYSTEM SET log_statement = 'all'", "ALTER SYSTEM SET log_line_prefix = '%m [%p] %c %v %x '", "SELECT pg_reload_conf()"} {
				if _, err := w.Exec(context.Background(), "postgres", q); err != nil {
					t.Fatal(err)
				}
			}
		}
		defer func() {
			for _, w := range env.c.Workers {
				exec.Command("cp", w.Dir+"/server.log", debugDir+"/"+w.Name+".log").Run()
				for _, q := range []string{"ALTER SYSTEM RESET log_statement", "ALTER SYSTEM RESET log_line_prefix", "SELECT pg_reload_conf()"} {
					w.Exec(context.Background(), "postgres", q)
				}
			}
		}()
	}
	c := connect(t)
	setupPgbench(t, c, 4)
	p2 := startProxy(t)

	var wg sync.WaitGroup
	results := make([]pgbenchResult, 2)
	running := make(chan struct{})
	for i, run := range []struct {
		p    *testproxy.Proxy
		mode string
	}{{env.p, "extended"}, {p2, "prepared"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runPgbench(run.p, run.mode, seconds)
		}()
	}
	go func() {
		wg.Wait()
		close(running)
	}()

	// Fault cycles while pgbench runs, one worker at a time: single connections to the
	// worker are cut at a statement (most inside transaction blocks), before it reaches
	// the server and after; then the worker goes down (immediate shutdown) for 2.5 s,
	// comes back, and its inactive placements are repaired while the load goes on.
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	cycles, cuts := 0, 0
	pause := func(d time.Duration) bool {
		select {
		case <-running:
			return false
		case <-time.After(d):
			return true
		}
	}
	// pgbench's own start (counting pgbench_branches, a statement without retries) is
	// left alone: a fault there ends the run before its first transaction.
	pause(2 * time.Second)
	for w := 0; time.Until(end) > 5*time.Second; w = (w + 1) % len(env.c.Workers) {
		fp := env.fps[w]
		rules := []*faultproxy.Rule{
			fp.Add(&faultproxy.Rule{Type: 'B', After: 10, Action: faultproxy.CutBefore}),
			fp.Add(&faultproxy.Rule{Type: 'B', After: 40, Action: faultproxy.CutAfter}),
		}
		up := pause(1500 * time.Millisecond)
		fp.ClearRules()
		for _, r := range rules {
			select {
			case <-r.Fired():
				cuts++
			default:
			}
		}
		if !up {
			break
		}
		if err := env.c.Workers[w].Crash(); err != nil {
			t.Fatal(err)
		}
		pause(2500 * time.Millisecond)
		if err := env.c.Workers[w].Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		cycles++
		rc := connect(t)
		for _, tbl := range []string{"pgbench_accounts", "pgbench_tellers", "pgbench_branches", "pgbench_history"} {
			repairInactive(t, rc, tbl)
		}
		rc.Close(context.Background())
	}
	<-running
	t.Logf("%d crash cycles, %d connections cut", cycles, cuts)

	var processed, aborted int64
	for _, r := range results {
		t.Logf("pgbench -M %s: %d transactions, %d failed, %d clients aborted", r.mode, r.processed, r.failed, r.aborted)
		if r.processed < 0 {
			t.Fatalf("pgbench -M %s: no result: %v\n%s", r.mode, r.err, r.out)
		}
		if r.aborted > 0 || r.failed > 0 {
			// With two placements per shard and one worker down at a time, every
			// statement has a placement to go to: no client may be cut off.
			t.Errorf("pgbench -M %s: clients cut off:\n%s", r.mode, errorLines(r.out))
		}
		processed += r.processed
		aborted += int64(r.aborted)
	}

	// A worker crash can leave prepared parts whose decision is made (commit record) on a
	// placement still finalized, until the recovery loop's next pass (every 5 s) finishes
	// them: the placements are compared once a recovery pass ran and nothing is left in
	// doubt, so that a difference is a divergence, not a pass yet to come. What was in
	// doubt is logged first.
	for _, row := range showTransactions(t, c) {
		if row[3] != "recovered" {
			t.Logf("in doubt once the load ended: %s", strings.Join(row, " | "))
		}
	}
	recoverTransactions(t, c)
	for _, row := range showTransactions(t, c) {
		if row[3] != "recovered" {
			t.Errorf("in doubt after RECOVER TRANSACTIONS: %s", strings.Join(row, " | "))
		}
	}
	if n := prepared(t); n != 0 {
		t.Fatalf("%d prepared transactions left on the workers after RECOVER TRANSACTIONS", n)
	}
	for _, tbl := range []string{"pgbench_accounts", "pgbench_tellers", "pgbench_branches", "pgbench_history"} {
		repairAll(t, c, tbl)
		samePlacements(t, tbl)
	}
	if t.Failed() {
		for _, row := range showTransactions(t, c) {
			t.Logf("SHOW TRANSACTIONS: %s", strings.Join(row, " | "))
		}
	}
	a := c.int(t, "SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts")
	tb := c.int(t, "SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers")
	b := c.int(t, "SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches")
	h := c.int(t, "SELECT coalesce(sum(delta), 0) FROM pgbench_history")
	n := c.int(t, "SELECT count(*) FROM pgbench_history")
	t.Logf("sums: accounts %d, tellers %d, branches %d, history %d; history rows %d, acknowledged %d", a, tb, b, h, n, processed)
	if a != tb || a != b || a != h {
		t.Errorf("bank invariant broken: sum(abalance) %d, sum(tbalance) %d, sum(bbalance) %d, sum(delta) %d", a, tb, b, h)
		reportBroken(t, c)
	}
	if n < processed || n > processed+aborted {
		t.Errorf("pgbench_history holds %d rows; pgbench acknowledged %d transactions (%d clients cut off)", n, processed, aborted)
	}
}

// recoverTransactions runs RECOVER TRANSACTIONS, again while another proxy's pass holds
// the recovery lock (the other proxy's background pass).
func recoverTransactions(t testing.TB, c conn) {
	t.Helper()
	for i := 0; ; i++ {
		_, err := c.Exec(context.Background(), "RECOVER TRANSACTIONS")
		if err == nil {
			return
		}
		if i >= 10 || !strings.Contains(err.Error(), "try again") {
			t.Fatalf("RECOVER TRANSACTIONS: %v", err)
		}
	}
}

// showTransactions returns the rows of SHOW TRANSACTIONS as text: node, port, gid,
// state (prepared, unreachable, recovered), age, detail.
func showTransactions(t testing.TB, c conn) [][]string {
	t.Helper()
	rows, err := c.Query(context.Background(), "SHOW TRANSACTIONS")
	if err != nil {
		t.Fatalf("SHOW TRANSACTIONS: %v", err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatalf("SHOW TRANSACTIONS: %v", err)
		}
		row := make([]string, len(v))
		for i, x := range v {
			row[i] = fmt.Sprint(x)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("SHOW TRANSACTIONS: %v", err)
	}
	return out
}

// repairInactive repairs the inactive placements of a table whose worker is up, as the
// background repairer would, and tolerates failures (the load goes on meanwhile).
func repairInactive(t testing.TB, c conn, table string) {
	t.Helper()
	done := map[int64]bool{}
	for _, p := range inactive(placements(t, table)) {
		if !done[p.shard] {
			done[p.shard] = true
			if _, err := c.Exec(context.Background(), fmt.Sprintf("REPAIR SHARD %d", p.shard)); err != nil {
				t.Logf("REPAIR SHARD %d: %v", p.shard, err)
			}
		}
	}
}

// errorLines returns pgbench's error lines (the reasons clients were cut off).
func errorLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "error") || strings.Contains(l, "FATAL") || strings.Contains(l, "ERROR") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// samePlacements checks that both placements of every shard of table hold the same rows,
// and names the rows that differ.
func samePlacements(t testing.TB, table string) {
	t.Helper()
	ps := placements(t, table)
	for i := 0; i+1 < len(ps); i++ {
		a, b := ps[i], ps[i+1]
		if a.shard != b.shard {
			continue
		}
		ra, rb := shardRows(t, table, a), shardRows(t, table, b)
		var diff []string
		for r, n := range ra {
			if rb[r] != n {
				diff = append(diff, fmt.Sprintf("%dx on %d, %dx on %d: %s", n, a.id, rb[r], b.id, r))
			}
		}
		for r, n := range rb {
			if _, ok := ra[r]; !ok {
				diff = append(diff, fmt.Sprintf("0x on %d, %dx on %d: %s", a.id, n, b.id, r))
			}
		}
		if len(diff) > 0 {
			if len(diff) > 6 {
				diff = append(diff[:6], "...")
			}
			t.Errorf("%s shard %d: placements %d (worker %d) and %d (worker %d) differ in %d rows:\n%s",
				table, a.shard, a.id, a.workerIdx, b.id, b.workerIdx, len(diff), strings.Join(diff, "\n"))
		}
	}
}

// shardRows counts the rows of a placement by their text.
func shardRows(t testing.TB, table string, p placement) map[string]int {
	t.Helper()
	c := connectTo(t, env.c.Workers[p.workerIdx].URL("postgres"))
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), fmt.Sprintf("SELECT x::text FROM %s_%d x", table, p.shard))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out[s]++
	}
	return out
}

// reportBroken names the accounts, tellers and branches whose balance differs from the sum
// of their deltas in pgbench_history, with the history rows of the accounts.
func reportBroken(t testing.TB, c conn) {
	t.Helper()
	for _, q := range []string{
		`SELECT 'account ' || aid || ': balance ' || abalance || ', history ' || coalesce(h, 0) || ' ' || coalesce(rows, '')
		   FROM pgbench_accounts a LEFT JOIN (SELECT aid AS haid, sum(delta) AS h, string_agg(delta || '@' || mtime::time, ' ' ORDER BY mtime) AS rows FROM pgbench_history GROUP BY aid) x ON x.haid = a.aid
		  WHERE abalance <> coalesce(h, 0) ORDER BY aid LIMIT 20`,
		`SELECT 'teller ' || tid || ': balance ' || tbalance || ', history ' || coalesce(h, 0)
		   FROM pgbench_tellers LEFT JOIN (SELECT tid AS htid, sum(delta) AS h FROM pgbench_history GROUP BY tid) x ON x.htid = tid
		  WHERE tbalance <> coalesce(h, 0) ORDER BY tid`,
		`SELECT 'branch ' || bid || ': balance ' || bbalance || ', history ' || coalesce(h, 0)
		   FROM pgbench_branches LEFT JOIN (SELECT bid AS hbid, sum(delta) AS h FROM pgbench_history GROUP BY bid) x ON x.hbid = bid
		  WHERE bbalance <> coalesce(h, 0) ORDER BY bid`,
	} {
		rows, err := c.Query(context.Background(), q)
		if err != nil {
			t.Logf("%s: %v", q, err)
			continue
		}
		for rows.Next() {
			var s string
			rows.Scan(&s)
			t.Log(s)
		}
		rows.Close()
	}
}
