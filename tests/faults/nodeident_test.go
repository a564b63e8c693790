package faults

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/proxy"
	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// identCluster is a coordinator with two workers of its own and a proxy: the tests below
// stop workers and replace their data directories, which the shared cluster's other tests
// must not see.
type identCluster struct {
	c  *cluster.Cluster
	p  *testproxy.Proxy
	p2 *testproxy.Proxy // a second proxy, which did not notice the restore itself
}

func startIdentCluster(t *testing.T) *identCluster { return startIdentClusterEvery(t, -1) }

// startIdentClusterEvery starts an identCluster whose proxies check identities every
// interval (negative: never on their own).
func startIdentClusterEvery(t *testing.T, every time.Duration) *identCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// By default no periodic identity check: the tests record WAL positions with
	// CheckNodes, so that what catches a restore is the check on a new connection, before
	// its first use.
	p, err := testproxy.Start(ctx, c.Coordinator.URL("postgres"), testproxy.Options{LockTimeout: 20 * time.Second,
		Config: func(cfg *proxy.Config) { cfg.NodeCheckInterval = every }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	p2, err := testproxy.Start(ctx, c.Coordinator.URL("postgres"), testproxy.Options{LockTimeout: 20 * time.Second,
		Config: func(cfg *proxy.Config) { cfg.NodeCheckInterval = every }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Stop() })
	ic := &identCluster{c: c, p: p, p2: p2}
	cl := ic.connect(t)
	for _, w := range c.Workers {
		cl.exec(t, fmt.Sprintf("select master_add_node('%s', %d)", w.Host, w.Port))
	}
	return ic
}

func (ic *identCluster) connect(t *testing.T) conn { return connectTo(t, simpleURL(ic.p)) }

// states returns the placement states of table on each worker port: port -> state -> count.
func (ic *identCluster) states(t *testing.T, table string) map[int]map[int]int {
	t.Helper()
	out := map[int]map[int]int{}
	for _, r := range ic.coordRows(t, `SELECT p.node_port, p.shard_state FROM pgs_distribution_metadata.shard s
		JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id WHERE s.relation_id = $1::regclass`, table) {
		port, state := int(r[0].(int32)), int(r[1].(int32))
		if out[port] == nil {
			out[port] = map[int]int{}
		}
		out[port][state]++
	}
	return out
}

func (ic *identCluster) coordRows(t *testing.T, sql string, args ...any) [][]any {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, ic.c.Coordinator.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// workerCounts returns, per shard id, the rows of the shard's table on worker w.
func (ic *identCluster) workerCounts(t *testing.T, w *cluster.Server, table string) map[int64]int64 {
	t.Helper()
	ctx := context.Background()
	out := map[int64]int64{}
	c, err := pgx.Connect(ctx, w.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, r := range ic.coordRows(t, `SELECT s.id FROM pgs_distribution_metadata.shard s
		JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = $1::regclass AND p.node_port = $2`, table, w.Port) {
		id := r[0].(int64)
		var n int64
		if err := c.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s_%d", table, id)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	return out
}

// walPosition is worker w's current WAL position and the one the coordinator recorded.
func (ic *identCluster) walPositions(t *testing.T, w *cluster.Server) (current, recorded string, ahead bool) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, w.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&current); err != nil {
		t.Fatal(err)
	}
	rows := ic.coordRows(t, `SELECT wal_lsn::text, wal_lsn >= $3::pg_lsn FROM pgs_distribution_metadata.node_identity
		WHERE node_name = $1 AND node_port = $2`, w.Host, w.Port, current)
	if len(rows) == 0 {
		return current, "", false
	}
	return current, rows[0][0].(string), rows[0][1].(bool)
}

// shell runs a command, failing the test on error.
func shell(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestWorkerRestoredFromOlderCopy: a worker stopped, its data directory replaced by a
// copy taken before 30 acknowledged inserts, and started again (issue 12). Its placements
// become inactive before any read uses them, an UPDATE of a row only the good copy has
// updates it without marking the good placement, REPAIR copies the good placement over
// the stale one, and every acknowledged row is there afterwards.
func TestWorkerRestoredFromOlderCopy(t *testing.T) {
	// The first statement after the restore that reaches the worker catches it: a
	// multi-shard read, or the UPDATE.
	t.Run("read first", func(t *testing.T) { restoredFromOlderCopy(t, false) })
	t.Run("update first", func(t *testing.T) { restoredFromOlderCopy(t, true) })
}

func restoredFromOlderCopy(t *testing.T, updateFirst bool) {
	ic := startIdentCluster(t)
	ctx := context.Background()
	cl := ic.connect(t)
	cl.exec(t, "CREATE TABLE restored (k int PRIMARY KEY, v bigint NOT NULL)",
		"select master_create_distributed_table('restored', 'k')",
		"select master_create_worker_shards('restored', 4, 2)",
		"INSERT INTO restored SELECT g, g FROM generate_series(1, 170) g")
	cl2 := connectTo(t, simpleURL(ic.p2))
	waitSees(t, cl2, "restored", 170)
	w := ic.c.Workers[1]

	// The older copy, taken with the server stopped (cp -a keeps the owner).
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	old := w.Dir + ".old"
	shell(t, "cp", "-a", w.Dir, old)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// A worker restarted with its own data is trusted: nothing is marked.
	cl.exec(t, "INSERT INTO restored SELECT g, g FROM generate_series(171, 200) g")
	for port, st := range ic.states(t, "restored") {
		if st[1] != 2*2 || len(st) != 1 {
			t.Fatalf("after a plain restart, placements on port %d: %v, want all finalized", port, st)
		}
	}
	// The proxy records the worker's WAL position periodically; here, once, now: the
	// restore must go back past what was recorded to be caught.
	if err := ic.p.Server().CheckNodes(ctx); err != nil {
		t.Fatal(err)
	}
	if cur, rec, ahead := ic.walPositions(t, w); !ahead {
		t.Fatalf("worker at %s, recorded %q after CheckNodes", cur, rec)
	}

	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	shell(t, "rm", "-rf", w.Dir)
	shell(t, "mv", old, w.Dir)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ic.workerCounts(t, w, "restored"); sum(got) != 170 {
		t.Fatalf("the restored copy holds %d rows, want 170 (the test's premise)", sum(got))
	}

	good := ic.c.Workers[0].Port
	update := func() {
		tag, err := cl.Exec(ctx, "UPDATE restored SET v = -v WHERE k = 185")
		if err != nil || tag.String() != "UPDATE 1" {
			t.Errorf("UPDATE of a row only the good copy has: %v, %v; want UPDATE 1", tag, err)
		}
		if st := ic.states(t, "restored")[good]; st[1] != 4 {
			t.Errorf("after the UPDATE, placements on the good worker: %v, want 4 finalized", st)
		}
	}
	if updateFirst {
		update()
	}
	if n := cl.int(t, "SELECT count(*) FROM restored"); n != 200 {
		t.Errorf("count after the restore: %d, want 200", n)
	}
	states := ic.states(t, "restored")
	if st := states[w.Port]; st[3] != 4 {
		t.Errorf("placements on the restored worker: %v, want 4 inactive (state 3)", st)
	}
	if st := states[good]; st[1] != 4 {
		t.Errorf("placements on the good worker: %v, want 4 finalized", st)
	}
	// The second proxy, whose connections to the worker were cut by the restart too,
	// learns of the marks rather than read the stale copy.
	if n := cl2.int(t, "SELECT count(*) FROM restored"); n != 200 {
		t.Errorf("count through the second proxy after the restore: %d, want 200", n)
	}
	want := int64(30 * (171 + 200) / 2)
	if updateFirst {
		want -= 2 * 185
	}
	if n := cl2.int(t, "SELECT sum(v) FROM restored WHERE k > 170"); n != want {
		t.Errorf("rows 171..200 through the second proxy: sum %d, want %d", n, want)
	}
	if !updateFirst {
		update()
	}

	// REPAIR copies the good placements over the stale ones.
	for _, r := range ic.coordRows(t, `SELECT DISTINCT p.shard_id FROM pgs_distribution_metadata.shard_placement p
		JOIN pgs_distribution_metadata.shard s ON s.id = p.shard_id
		WHERE s.relation_id = 'restored'::regclass AND p.shard_state = 3`) {
		cl.exec(t, fmt.Sprintf("REPAIR SHARD %d", r[0].(int64)))
	}
	for port, st := range ic.states(t, "restored") {
		if st[1] != 4 || len(st) != 1 {
			t.Errorf("after REPAIR, placements on port %d: %v, want all finalized", port, st)
		}
	}
	a, b := ic.workerCounts(t, ic.c.Workers[0], "restored"), ic.workerCounts(t, w, "restored")
	if sum(a) != 200 || sum(b) != 200 {
		t.Errorf("rows after REPAIR: %d on the good worker, %d on the restored one; want 200 each", sum(a), sum(b))
	}
	if n := cl.int(t, "SELECT count(*) FROM restored WHERE v = -185"); n != 1 {
		t.Errorf("the updated row: %d, want 1", n)
	}
	if n := cl.int(t, "SELECT count(*) FROM restored"); n != 200 {
		t.Errorf("count after REPAIR: %d, want 200", n)
	}
}

// TestWorkerRestartedKeepsPlacements: a worker stopped and started with its own data
// is the same node: none of its placements is marked, and repeated restarts stay quiet.
func TestWorkerRestartedKeepsPlacements(t *testing.T) {
	ic := startIdentCluster(t)
	ctx := context.Background()
	cl := ic.connect(t)
	cl.exec(t, "CREATE TABLE restarted (k int PRIMARY KEY, v bigint NOT NULL)",
		"select master_create_distributed_table('restarted', 'k')",
		"select master_create_worker_shards('restarted', 4, 2)",
		"INSERT INTO restarted SELECT g, g FROM generate_series(1, 100) g")
	for i := 0; i < 2; i++ {
		for _, w := range ic.c.Workers {
			if err := w.Restart(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := cl.int(t, "SELECT count(*) FROM restarted"); n != 100+int64(i)*10 {
			t.Errorf("count: %d", n)
		}
		cl.exec(t, fmt.Sprintf("INSERT INTO restarted SELECT g, g FROM generate_series(%d, %d) g", 101+i*10, 110+i*10))
		for port, st := range ic.states(t, "restarted") {
			if st[1] != 4 || len(st) != 1 {
				t.Errorf("after restart %d, placements on port %d: %v, want all finalized", i+1, port, st)
			}
		}
	}
	if rows := ic.coordRows(t, `SELECT node_port FROM pgs_distribution_metadata.node_identity WHERE went_back IS NOT NULL`); len(rows) != 0 {
		t.Errorf("nodes recorded as gone back: %v", rows)
	}
}

// TestRestoredWorkerLastPlacementHeld: a worker restored from an older copy holds the
// only placements of a table (replication 1) and the last finalized placements of
// another. They cannot be marked inactive; the worker is held: reads and writes that
// need it fail with an error saying why, rather than returning stale rows, repair
// refuses it as a source, until an operator deletes its node_identity row, which accepts
// its data as it is.
func TestRestoredWorkerLastPlacementHeld(t *testing.T) {
	ic := startIdentCluster(t)
	ctx := context.Background()
	cl := ic.connect(t)
	cl.exec(t, "CREATE TABLE lone (k int PRIMARY KEY, v bigint NOT NULL)",
		"select master_create_distributed_table('lone', 'k')",
		"select master_create_worker_shards('lone', 2, 1)",
		"INSERT INTO lone SELECT g, g FROM generate_series(1, 100) g",
		"CREATE TABLE pair (k int PRIMARY KEY, v bigint NOT NULL)",
		"select master_create_distributed_table('pair', 'k')",
		"select master_create_worker_shards('pair', 2, 2)",
		"INSERT INTO pair SELECT g, g FROM generate_series(1, 100) g")
	w := ic.c.Workers[1]
	before := sum(ic.workerCounts(t, w, "lone"))
	if before == 0 || before == 100 {
		t.Fatalf("worker 2 holds %d of 100 rows; the test needs a shard on each worker", before)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	old := w.Dir + ".old"
	shell(t, "cp", "-a", w.Dir, old)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cl.exec(t, "INSERT INTO lone SELECT g, g FROM generate_series(101, 200) g")
	// pair's placements on the other worker miss an UPDATE (that worker is down for it)
	// and are marked inactive: the restored worker's are then the last finalized ones.
	good := ic.c.Workers[0]
	if err := good.Stop(); err != nil {
		t.Fatal(err)
	}
	cl.exec(t, "UPDATE pair SET v = v + 1")
	if err := good.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := ic.states(t, "pair")[good.Port]; st[3] != 2 {
		t.Fatalf("pair's placements on the stopped worker: %v, want 2 inactive", st)
	}
	if err := ic.p.Server().CheckNodes(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	shell(t, "rm", "-rf", w.Dir)
	shell(t, "mv", old, w.Dir)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}

	for _, sql := range []string{"SELECT count(*) FROM lone", "SELECT count(*) FROM pair", "UPDATE pair SET v = v + 1", "INSERT INTO lone SELECT g, g FROM generate_series(201, 300) g", "UPDATE lone SET v = v + 1"} {
		_, err := cl.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55000" || !strings.Contains(pe.Message, "went back in time") {
			t.Errorf("%s on a held worker: %v; want 55000, went back in time", sql, err)
		}
	}
	if st := ic.states(t, "lone")[w.Port]; st[1] != 1 || len(st) != 1 {
		t.Errorf("placements on the held worker: %v, want its one placement finalized (the last)", st)
	}
	if rows := ic.coordRows(t, `SELECT held FROM pgs_distribution_metadata.node_identity WHERE node_port = $1`, w.Port); len(rows) != 1 || rows[0][0] != true {
		t.Errorf("node_identity of the held worker: %v, want held", rows)
	}

	// Repair refuses the held worker's placements as sources: the other worker's
	// placements stay inactive.
	for _, r := range ic.coordRows(t, `SELECT id FROM pgs_distribution_metadata.shard WHERE relation_id = 'pair'::regclass`) {
		_, err := cl.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", r[0].(int64)))
		if err == nil || !strings.Contains(err.Error(), "went back in time") {
			t.Errorf("REPAIR SHARD %d from the held worker: %v; want refused", r[0], err)
		}
	}
	if st := ic.states(t, "pair"); st[good.Port][3] != 2 || st[w.Port][1] != 2 {
		t.Errorf("pair's placements after the refused repairs: %v", st)
	}

	// The operator accepts the worker's data as it is: the worker is used again, with
	// the rows its copy has.
	ic.coordRows(t, `DELETE FROM pgs_distribution_metadata.node_identity WHERE node_port = $1`, w.Port)
	want := sum(ic.workerCounts(t, ic.c.Workers[0], "lone")) + sum(ic.workerCounts(t, w, "lone"))
	if got := cl.int(t, "SELECT count(*) FROM lone"); got != want {
		t.Errorf("count after the operator accepted the worker: %d, want %d", got, want)
	}
	cl.exec(t, "UPDATE lone SET v = v + 1")
}

// TestIdentityChecksUnderWritesMarkNothing: two proxies checking and recording the
// workers' WAL positions as often as they can while both write: the positions each reads
// only grow, whichever proxy records first, and no healthy worker is taken for one whose
// data went back.
func TestIdentityChecksUnderWritesMarkNothing(t *testing.T) {
	ic := startIdentClusterEvery(t, time.Millisecond)
	cl, cl2 := ic.connect(t), connectTo(t, simpleURL(ic.p2))
	cl.exec(t, "CREATE TABLE busy (k int PRIMARY KEY, v bigint NOT NULL)",
		"select master_create_distributed_table('busy', 'k')",
		"select master_create_worker_shards('busy', 4, 2)",
		"INSERT INTO busy SELECT g, 0 FROM generate_series(1, 100) g")
	waitSees(t, cl2, "busy", 100)
	for i := 0; i < 150; i++ {
		cl.exec(t, fmt.Sprintf("UPDATE busy SET v = v + 1 WHERE k = %d", i%100+1))
		cl2.exec(t, fmt.Sprintf("UPDATE busy SET v = v + 1 WHERE k = %d", (i+50)%100+1))
	}
	if n := cl.int(t, "SELECT sum(v) FROM busy"); n != 300 {
		t.Errorf("sum after 300 increments: %d", n)
	}
	for port, st := range ic.states(t, "busy") {
		if st[1] != 4 || len(st) != 1 {
			t.Errorf("placements on port %d: %v, want all finalized", port, st)
		}
	}
	if rows := ic.coordRows(t, `SELECT node_port, went_back FROM pgs_distribution_metadata.node_identity WHERE went_back IS NOT NULL`); len(rows) != 0 {
		t.Errorf("healthy workers recorded as gone back: %v", rows)
	}
}

// waitSees waits until a proxy's session reads n rows of table: a proxy learns of a
// table another proxy created through a notification, a moment later.
func waitSees(t *testing.T, c conn, table string, n int64) {
	t.Helper()
	var got int64
	var err error
	for i := 0; i < 300; i++ {
		if err = c.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&got); err == nil && got == n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the second proxy reads %d rows of %s (%v), want %d", got, table, err, n)
}

func sum(m map[int64]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}
