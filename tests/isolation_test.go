package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The isolation tests run one scenario with two sessions through pgshard and against
// plain PostgreSQL (the same table, undistributed, on the coordinator) and compare what
// the sessions saw. Each checks a claim of the README's "Isolation" section: READ
// COMMITTED work behaves as on one server; REPEATABLE READ and SERIALIZABLE behave as on
// one server for the rows of one worker; across workers, each worker has a snapshot of its
// own, taken at the block's first statement there, so a block can see another
// transaction's effects on one worker and not on another, and SERIALIZABLE does not detect
// anomalies whose conflicts span workers.

// isoPair is a table of (id int PRIMARY KEY, v int) twice: distributed through pgshard
// (shards, replication rf) and plain on the coordinator, with two sessions to each.
type isoPair struct {
	table        string
	sa, sb       *pgx.Conn // pgshard
	pa, pb       *pgx.Conn // plain PostgreSQL
	shards, rf   int
	rowsByWorker map[int][]int // pgshard's keys (of the rows inserted) by worker port (rf 1)
	shardOf      map[int]int64 // pgshard's shard of each key (rf 1)
}

// newIsoPair creates the tables and inserts rows 1..n with v = 100 * id.
func newIsoPair(t *testing.T, shards, rf, n int) *isoPair {
	t.Helper()
	p := &isoPair{table: uniqueName("iso"), shards: shards, rf: rf}
	ddl := fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", p.table)
	fill := fmt.Sprintf("INSERT INTO %s SELECT i, 100 * i FROM generate_series(1, %d) i", p.table, n)
	p.sa, p.sb = connect(t), connect(t)
	distribute(t, p.sa, ddl, p.table, "id", shards, rf)
	t.Cleanup(func() { p.sa.Exec(context.Background(), "DROP TABLE IF EXISTS "+p.table) })
	mustExec(t, p.sa, fill)
	p.pa, p.pb = connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator)
	schema := uniqueName("iso_plain")
	mustExec(t, p.pa, "CREATE SCHEMA "+schema, "SET search_path = "+schema, ddl, fill)
	t.Cleanup(func() { p.pa.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	mustExec(t, p.pb, "SET search_path = "+schema)
	if rf == 1 {
		p.rowsByWorker, p.shardOf = map[int][]int{}, map[int]int64{}
		coord := connectServer(t, env.C.Coordinator)
		for id := 1; id <= n; id++ {
			where := queryString(t, coord, fmt.Sprintf(`
				SELECT p.node_port || ' ' || s.id FROM pgs_distribution_metadata.shard s
				JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
				WHERE s.relation_id = '%s'::regclass AND hashint4(%d) BETWEEN s.min_value::int AND s.max_value::int`, p.table, id))
			var port int
			var shard int64
			fmt.Sscan(where, &port, &shard)
			p.rowsByWorker[port] = append(p.rowsByWorker[port], id)
			p.shardOf[id] = shard
		}
	}
	return p
}

// twoWorkers returns a key on one worker and a key on another (rf 1).
func (p *isoPair) twoWorkers(t *testing.T) (x, y int) {
	t.Helper()
	var keys []int
	for _, ks := range p.rowsByWorker {
		keys = append(keys, ks[0])
		if len(keys) == 2 {
			return keys[0], keys[1]
		}
	}
	t.Fatalf("the rows of %s are on fewer than two workers: %v", p.table, p.rowsByWorker)
	return 0, 0
}

// twoShardsOneWorker returns two keys of different shards on the same worker (rf 1).
func (p *isoPair) twoShardsOneWorker(t *testing.T) (x, y int) {
	t.Helper()
	for _, ks := range p.rowsByWorker {
		for _, k := range ks[1:] {
			if p.shardOf[k] != p.shardOf[ks[0]] {
				return ks[0], k
			}
		}
	}
	t.Fatalf("no worker holds two shards of %s", p.table)
	return 0, 0
}

// transfer is a REPEATABLE READ block that reads row x, then rows x and y after another
// transaction moved 10 from x to y.
func transfer(x, y int) scenario {
	return func(t *testing.T, a, b *pgx.Conn, table string) []string {
		out := []string{see(a, "BEGIN ISOLATION LEVEL REPEATABLE READ"), see(a, fmt.Sprintf("SELECT v FROM %s WHERE id = %d", table, x))}
		out = append(out, see(b, "BEGIN"), see(b, fmt.Sprintf("UPDATE %s SET v = v - 10 WHERE id = %d", table, x)),
			see(b, fmt.Sprintf("UPDATE %s SET v = v + 10 WHERE id = %d", table, y)), see(b, "COMMIT"))
		return append(out, see(a, fmt.Sprintf("SELECT id, v FROM %s WHERE id IN (%d, %d) ORDER BY id = %d", table, x, y, y)), see(a, "COMMIT"))
	}
}

// scenario is what two sessions do; it returns what they saw, one line per observation.
type scenario func(t *testing.T, a, b *pgx.Conn, table string) []string

// run runs s through pgshard and on plain PostgreSQL and returns both accounts.
func (p *isoPair) run(t *testing.T, s scenario) (pgshard, plain []string) {
	t.Helper()
	pgshard = s(t, p.sa, p.sb, p.table)
	plain = s(t, p.pa, p.pb, p.table)
	return pgshard, plain
}

// sameAccount checks that pgshard's account of a scenario is PostgreSQL's.
func sameAccount(t *testing.T, what string, pgshard, plain []string) {
	t.Helper()
	t.Logf("%s:\n  %s", what, strings.Join(pgshard, "\n  "))
	if strings.Join(pgshard, "\n") != strings.Join(plain, "\n") {
		t.Errorf("%s:\n pgshard:\n  %s\n PostgreSQL:\n  %s", what, strings.Join(pgshard, "\n  "), strings.Join(plain, "\n  "))
	}
}

// see runs sql (simple protocol) and describes its rows, or its error's SQLSTATE and
// message.
func see(c *pgx.Conn, sql string) string {
	rows, err := c.Query(context.Background(), sql, pgx.QueryExecModeSimpleProtocol)
	var out []string
	if err == nil {
		for rows.Next() {
			v, _ := rows.Values()
			out = append(out, fmt.Sprint(v...))
		}
		err = rows.Err()
	}
	if pe := pgErrorOf(err); pe != nil {
		return sql + " -> error " + pe.Code + ": " + pe.Message
	} else if err != nil {
		return sql + " -> error " + err.Error()
	}
	return sql + " -> " + strings.Join(out, "; ")
}

// blocked runs sql on c in the background (it is expected to wait for the other
// session), and returns a function that waits for it and describes how it ended.
func blocked(c *pgx.Conn, sql string) func() string {
	done := make(chan string, 1)
	go func() { done <- see(c, sql) }()
	// Let it reach its wait; the outcome does not depend on whether it has.
	time.Sleep(300 * time.Millisecond)
	return func() string {
		select {
		case s := <-done:
			return s
		case <-time.After(30 * time.Second):
			return "still waiting after 30s"
		}
	}
}

// TestIsolationReadCommitted: under READ COMMITTED (the default), two transactions that
// increment the same row both apply (the second waits for the first and updates the row
// as committed: no lost update), and each statement of a block sees what committed
// before it started; with one placement per shard and with two.
func TestIsolationReadCommitted(t *testing.T) {
	for _, rf := range []int{1, 2} {
		p := newIsoPair(t, 4, rf, 8)
		lostUpdate := func(t *testing.T, a, b *pgx.Conn, table string) []string {
			inc := fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", table)
			out := []string{see(a, "BEGIN"), see(a, inc)}
			wait := blocked(b, inc)
			out = append(out, see(a, "COMMIT"), wait())
			// A block waiting for the row, too.
			out = append(out, see(a, "BEGIN"), see(a, inc))
			mustExec(t, b, "BEGIN")
			wait = blocked(b, inc)
			out = append(out, see(a, "COMMIT"), wait(), see(b, "COMMIT"))
			return append(out, see(a, fmt.Sprintf("SELECT v FROM %s WHERE id = 1", table)))
		}
		got, want := p.run(t, lostUpdate)
		sameAccount(t, fmt.Sprintf("rf %d, concurrent increments", rf), got, want)
		if last := got[len(got)-1]; !strings.HasSuffix(last, "-> 104") {
			t.Errorf("rf %d: after four increments of 100: %s", rf, last)
		}

		committed := func(t *testing.T, a, b *pgx.Conn, table string) []string {
			read := fmt.Sprintf("SELECT v FROM %s WHERE id IN (2, 3) ORDER BY id", table)
			out := []string{see(a, "BEGIN"), see(a, read)}
			out = append(out, see(b, fmt.Sprintf("UPDATE %s SET v = v + 5 WHERE id = 2", table)),
				see(b, fmt.Sprintf("UPDATE %s SET v = v + 5 WHERE id = 3", table)))
			return append(out, see(a, read), see(a, "COMMIT"))
		}
		got, want = p.run(t, committed)
		sameAccount(t, fmt.Sprintf("rf %d, each statement sees what committed before it", rf), got, want)
	}
}

// TestIsolationRepeatableReadOneWorker: a REPEATABLE READ block reading rows of one
// worker sees one snapshot there, whatever commits meanwhile, and its update of a row
// another transaction changed after the snapshot fails with 40001, as in PostgreSQL.
func TestIsolationRepeatableReadOneWorker(t *testing.T) {
	for _, rf := range []int{1, 2} {
		// One shard: every row on the same worker(s).
		p := newIsoPair(t, 1, rf, 4)
		stable := func(t *testing.T, a, b *pgx.Conn, table string) []string {
			read := fmt.Sprintf("SELECT count(*), sum(v) FROM %s", table)
			out := []string{see(a, "BEGIN ISOLATION LEVEL REPEATABLE READ"), see(a, read)}
			out = append(out, see(b, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", table)),
				see(b, fmt.Sprintf("INSERT INTO %s VALUES (10, 1000)", table)),
				see(b, fmt.Sprintf("DELETE FROM %s WHERE id = 2", table)))
			out = append(out, see(a, read), see(a, fmt.Sprintf("SELECT v FROM %s WHERE id = 1", table)), see(a, "COMMIT"))
			return append(out, see(a, read))
		}
		got, want := p.run(t, stable)
		sameAccount(t, fmt.Sprintf("rf %d, stable snapshot", rf), got, want)

		conflict := func(t *testing.T, a, b *pgx.Conn, table string) []string {
			out := []string{see(a, "BEGIN ISOLATION LEVEL REPEATABLE READ"), see(a, fmt.Sprintf("SELECT v FROM %s WHERE id = 3", table))}
			out = append(out, see(b, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 3", table)))
			out = append(out, see(a, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 3", table)), see(a, "ROLLBACK"))
			return append(out, see(a, fmt.Sprintf("SELECT v FROM %s WHERE id = 3", table)))
		}
		got, want = p.run(t, conflict)
		sameAccount(t, fmt.Sprintf("rf %d, concurrent update", rf), got, want)
		if !strings.Contains(strings.Join(got, "\n"), "error 40001") {
			t.Errorf("rf %d: no 40001:\n%s", rf, strings.Join(got, "\n"))
		}
	}
}

// TestIsolationShardsOfOneWorker: the shards of one worker share the block's snapshot
// there: a REPEATABLE READ block that read one of them does not see a transfer to a row of
// another that committed afterwards, as in PostgreSQL.
func TestIsolationShardsOfOneWorker(t *testing.T) {
	p := newIsoPair(t, 8, 1, 16)
	x, y := p.twoShardsOneWorker(t)
	got, want := p.run(t, transfer(x, y))
	sameAccount(t, "transfer between two shards of one worker", got, want)
}

// TestIsolationSerializableOneWorker: a write skew between two SERIALIZABLE blocks over
// rows of one worker fails one of them with 40001, as in PostgreSQL.
func TestIsolationSerializableOneWorker(t *testing.T) {
	p := newIsoPair(t, 1, 1, 2)
	got, want := p.run(t, writeSkew(1, 2))
	sameAccount(t, "write skew on one worker", got, want)
	if !strings.Contains(strings.Join(got, "\n"), "error 40001") {
		t.Errorf("no 40001:\n%s", strings.Join(got, "\n"))
	}
}

// writeSkew is the classic write skew: each block reads both rows and updates one.
func writeSkew(x, y int) scenario {
	return func(t *testing.T, a, b *pgx.Conn, table string) []string {
		sum := fmt.Sprintf("SELECT sum(v) FROM %s WHERE id IN (%d, %d)", table, x, y)
		out := []string{see(a, "BEGIN ISOLATION LEVEL SERIALIZABLE"), see(a, sum), see(b, "BEGIN ISOLATION LEVEL SERIALIZABLE"), see(b, sum)}
		out = append(out, see(a, fmt.Sprintf("UPDATE %s SET v = 0 WHERE id = %d", table, x)),
			see(b, fmt.Sprintf("UPDATE %s SET v = 0 WHERE id = %d", table, y)))
		out = append(out, see(a, "COMMIT"), see(b, "COMMIT"))
		return append(out, see(a, fmt.Sprintf("SELECT count(*) FROM %s WHERE id IN (%d, %d) AND v = 0", table, x, y)))
	}
}

// TestIsolationAcrossWorkers checks what the README says pgshard does not guarantee
// across workers, so that the README stays true: a REPEATABLE READ block that read one
// worker before another transaction committed changes on two workers sees that
// transaction's change on the worker it reaches only afterwards, and not on the first
// (PostgreSQL shows it neither); and a SERIALIZABLE write skew whose rows are on two
// workers commits both blocks (PostgreSQL fails one with 40001).
func TestIsolationAcrossWorkers(t *testing.T) {
	p := newIsoPair(t, 4, 1, 16)
	x, y := p.twoWorkers(t)
	// A transfer of 10 from x to y, committed between the block's reads of x and y.
	got, want := p.run(t, transfer(x, y))
	t.Logf("transfer:\n pgshard:\n  %s\n PostgreSQL:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	before := fmt.Sprintf("%d %d; %d %d", x, 100*x, y, 100*y)
	skewed := fmt.Sprintf("%d %d; %d %d", x, 100*x, y, 100*y+10)
	if !strings.HasSuffix(want[len(want)-2], "-> "+before) {
		t.Errorf("PostgreSQL: the block saw %s, want %s (one snapshot)", want[len(want)-2], before)
	}
	if !strings.HasSuffix(got[len(got)-2], "-> "+skewed) {
		t.Errorf("pgshard: the block saw %s; the README says %s (a snapshot per worker, the second taken after the transfer)", got[len(got)-2], skewed)
	}

	got, want = p.run(t, writeSkew(x, y))
	t.Logf("write skew:\n pgshard:\n  %s\n PostgreSQL:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	if !strings.HasSuffix(want[len(want)-1], "-> 1") {
		t.Errorf("PostgreSQL: write skew gave\n%s", strings.Join(want, "\n"))
	}
	if !strings.HasSuffix(got[len(got)-1], "-> 2") || strings.Contains(strings.Join(got, "\n"), "error") {
		t.Errorf("pgshard: the README says both blocks of a write skew across workers commit; got\n%s", strings.Join(got, "\n"))
	}
}
