// Package faults tests pgshard under failures: every worker is registered through a
// fault-injecting TCP proxy, so that a test can refuse, cut or delay the connections to it
// or cut them when a given statement passes, and then check the client's answers, the
// placement states and, directly on the workers, that no replica silently diverges.
package faults

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/faultproxy"
	"github.com/pgshard/pgshard/tests/testproxy"
)

var env struct {
	c   *cluster.Cluster
	fps []*faultproxy.Proxy // one per worker, in worker order
	p   *testproxy.Proxy
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() || !cluster.Available() {
		fmt.Println("faults: PostgreSQL server binaries not found (or -short); skipping")
		os.Exit(0)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Workers: 3})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	env.c = c
	for _, w := range c.Workers {
		fp, err := faultproxy.Start(w.Addr())
		if err != nil {
			return 0, err
		}
		defer fp.Close()
		env.fps = append(env.fps, fp)
	}
	p, err := testproxy.Start(ctx, c.Coordinator.URL("postgres"), testproxy.Options{LockTimeout: 20 * time.Second})
	if err != nil {
		return 0, err
	}
	defer p.Stop()
	env.p = p
	conn, err := pgx.Connect(ctx, simpleURL(p))
	if err != nil {
		return 0, err
	}
	for _, fp := range env.fps {
		if _, err := conn.Exec(ctx, fmt.Sprintf("select master_add_node('%s', %d)", fp.Host(), fp.Port())); err != nil {
			return 0, err
		}
	}
	conn.Close(ctx)
	return m.Run(), nil
}

func simpleURL(p *testproxy.Proxy) string {
	return p.URL() + "&default_query_exec_mode=simple_protocol"
}

// conn is a client connection that records the notices it receives.
type conn struct {
	*pgx.Conn
	notices *[]*pgconn.Notice
}

func connect(t testing.TB) conn {
	t.Helper()
	return connectTo(t, simpleURL(env.p))
}

func connectTo(t testing.TB, url string) conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var notices []*pgconn.Notice
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n) }
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return conn{c, &notices}
}

func (c conn) exec(t testing.TB, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		if _, err := c.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

func (c conn) int(t testing.TB, sql string) int64 {
	t.Helper()
	var n int64
	if err := c.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// warnings returns and clears the WARNING notices received so far.
func (c conn) warnings() []string {
	var out []string
	for _, n := range *c.notices {
		if n.Severity == "WARNING" {
			out = append(out, n.Message)
		}
	}
	*c.notices = nil
	return out
}

var seq atomic.Int64

func uniqueName(prefix string) string { return fmt.Sprintf("%s_%d", prefix, seq.Add(1)) }

// table creates a distributed table (k int key, v bigint, s text) with 6 shards on the 3
// workers, 2 placements each, holding rows k = 1..n with v = k.
func table(t testing.TB, c conn, n int) string {
	t.Helper()
	name := uniqueName("f")
	c.exec(t, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL, s text)", name),
		fmt.Sprintf("select master_create_distributed_table('%s', 'k')", name),
		fmt.Sprintf("select master_create_worker_shards('%s', 6, 2)", name))
	if n > 0 {
		c.exec(t, fmt.Sprintf("INSERT INTO %s SELECT g, g, 'row ' || g FROM generate_series(1, %d) g", name, n))
	}
	return name
}

// placement is a row of the metadata.
type placement struct {
	id, shard  int64
	state      int
	port       int
	min, max   int32
	workerIdx  int
	faultProxy *faultproxy.Proxy
}

// placements reads a table's placements from the coordinator, in shard and placement order.
func placements(t testing.TB, table string) []placement {
	t.Helper()
	c, err := pgx.Connect(context.Background(), env.c.Coordinator.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), `SELECT p.id, s.id, p.shard_state, p.node_port, s.min_value::int, s.max_value::int
		FROM pgs_distribution_metadata.shard s JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = $1::regclass ORDER BY s.id, p.id`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []placement
	for rows.Next() {
		var p placement
		if err := rows.Scan(&p.id, &p.shard, &p.state, &p.port, &p.min, &p.max); err != nil {
			t.Fatal(err)
		}
		for i, fp := range env.fps {
			if fp.Port() == p.port {
				p.workerIdx, p.faultProxy = i, fp
			}
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func inactive(ps []placement) []placement {
	var out []placement
	for _, p := range ps {
		if p.state == 3 {
			out = append(out, p)
		}
	}
	return out
}

// keyOn returns a key k in 1..1000 whose shard has its first placement on worker idx (and
// that shard's id).
func keyOn(t testing.TB, c conn, table string, idx int) (int, int64) {
	t.Helper()
	ps := placements(t, table)
	for k := 1; k <= 1000; k++ {
		var h int32
		direct, err := pgx.Connect(context.Background(), env.c.Coordinator.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		direct.QueryRow(context.Background(), "select hashint4($1)", k).Scan(&h)
		direct.Close(context.Background())
		for i, p := range ps {
			if h >= p.min && h <= p.max && (i == 0 || ps[i-1].shard != p.shard) && p.workerIdx == idx {
				return k, p.shard
			}
		}
	}
	t.Fatalf("no key on worker %d", idx)
	return 0, 0
}

// digest is a placement's content: row count and an order-independent checksum.
func digest(t testing.TB, table string, p placement) string {
	t.Helper()
	w := env.c.Workers[p.workerIdx]
	c, err := pgx.Connect(context.Background(), w.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var d string
	q := fmt.Sprintf("SELECT count(*) || '/' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM %s_%d x", table, p.shard)
	if err := c.QueryRow(context.Background(), q).Scan(&d); err != nil {
		t.Fatalf("%s on %s: %v", q, w.Name, err)
	}
	return d
}

// consistent checks that every finalized placement of each shard equals its siblings, and
// returns the sum of v over the table as the placements hold it.
func consistent(t testing.TB, table string) {
	t.Helper()
	ps := placements(t, table)
	first := map[int64]string{}
	for _, p := range ps {
		if p.state != 1 {
			continue
		}
		d := digest(t, table, p)
		if f, ok := first[p.shard]; !ok {
			first[p.shard] = d
		} else if f != d {
			t.Errorf("shard %d: placement %d holds %s, its sibling %s", p.shard, p.id, d, f)
		}
	}
}

// repairAll repairs every inactive placement of a table through the proxy.
func repairAll(t testing.TB, c conn, table string) {
	t.Helper()
	done := map[int64]bool{}
	for _, p := range inactive(placements(t, table)) {
		if !done[p.shard] {
			done[p.shard] = true
			c.exec(t, fmt.Sprintf("REPAIR SHARD %d", p.shard))
		}
	}
	if n := len(inactive(placements(t, table))); n != 0 {
		t.Fatalf("%d placements still inactive after repair", n)
	}
}

// resetFaults clears every fault and restarts stopped workers.
func resetFaults(t testing.TB) {
	t.Helper()
	for _, fp := range env.fps {
		fp.Reset()
	}
	for _, w := range env.c.Workers {
		if !w.Running() {
			if err := w.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
