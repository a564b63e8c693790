package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
)

// runQuery is the multi-shard query benchmark: aggregates over a distributed table of
// rows rows on four workers, timed through the proxy against the same query on one plain
// PostgreSQL holding every row, and the proxy's peak memory (its own process) for an
// ordered LIMIT query and for full scans of growing size, which stream.
func runQuery(rows, rounds int) error {
	ctx := context.Background()
	fmt.Printf("\nquery: starting a coordinator and four workers, %d rows...\n", rows)
	c, err := cluster.Start(ctx, cluster.Options{Workers: 4, Settings: []string{"shared_buffers = 256MB", "max_wal_size = 4GB"}})
	if err != nil {
		return err
	}
	defer c.Close()

	proxy, err := startProxyProcess(ctx, c.Coordinator.URL("postgres"))
	if err != nil {
		return err
	}
	defer proxy.stop()
	conn, err := pgx.Connect(ctx, proxy.url+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := loadItems(ctx, c, conn, rows); err != nil {
		return err
	}
	plain, err := pgx.Connect(ctx, c.Coordinator.URL("plain"))
	if err != nil {
		return err
	}
	defer plain.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != int64(rows) {
		return fmt.Errorf("distributed table holds %d rows (%v), want %d", n, err, rows)
	}
	if err := compareQueries(ctx, plain, conn, rows, rounds); err != nil {
		return err
	}
	return proxyMemory(ctx, proxy, conn, rows)
}

// itemsDDL is the benchmark's table, distributed through the proxy and plain on the
// coordinator's database "plain".
const itemsDDL = "CREATE TABLE items (id bigint NOT NULL, grp int, v int, pad text)"

// loadItems distributes items over the cluster's workers through conn and fills it with
// rows rows, and the same rows into a plain table in a new database "plain" on the
// coordinator; both databases get a table grps to join with.
func loadItems(ctx context.Context, c *cluster.Cluster, conn *pgx.Conn, rows int) error {
	for _, w := range c.Workers {
		if _, err := conn.Exec(ctx, fmt.Sprintf("select master_add_node('%s', %d)", w.Host, w.Port)); err != nil {
			return err
		}
	}
	for _, q := range []string{itemsDDL, "select master_create_distributed_table('items', 'id')", "select master_create_worker_shards('items', 16, 1)"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	// Fill each shard on its worker with the rows whose hash falls in its range (the same
	// rows as the plain table), then the plain table on the coordinator.
	fmt.Println("loading...")
	gen := func(where string) string {
		return fmt.Sprintf("SELECT g, g %% 100, (g * 7919) %% 1000, md5(g::text) FROM generate_series(1::bigint, %d) g %s", rows, where)
	}
	ps, err := itemsPlacements(ctx, conn)
	if err != nil {
		return err
	}
	errs := make(chan error, len(c.Workers))
	for _, w := range c.Workers {
		go func(w *cluster.Server) {
			for _, p := range ps {
				if p.port != w.Port {
					continue
				}
				q := fmt.Sprintf("INSERT INTO items_%d %s; ANALYZE items_%d", p.id, gen(fmt.Sprintf("WHERE hashint8(g) BETWEEN %d AND %d", p.min, p.max)), p.id)
				if _, err := w.Exec(ctx, "postgres", q); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	// Every worker's goroutine answers on errs, also when this returns early.
	var err1 error
	if _, err := c.Coordinator.Exec(ctx, "postgres", "CREATE DATABASE plain"); err != nil {
		err1 = err
	}
	if err1 == nil {
		if _, err := c.Coordinator.Exec(ctx, "plain", itemsDDL+"; INSERT INTO items "+gen("")+"; ANALYZE items"); err != nil {
			err1 = err
		}
	}
	// A coordinator table to join with.
	const grps = "CREATE TABLE grps AS SELECT g AS grp, 'group ' || g AS label FROM generate_series(0, 99) g"
	for _, db := range []string{"plain", "postgres"} {
		if err1 != nil {
			break
		}
		if _, err := c.Coordinator.Exec(ctx, db, grps); err != nil {
			err1 = err
		}
	}
	for range c.Workers {
		if err := <-errs; err != nil && err1 == nil {
			err1 = err
		}
	}
	return err1
}

// itemsPlacement is a placement of a shard of items, with the shard's hash range.
type itemsPlacement struct {
	id       int64
	min, max int32
	port     int
}

// itemsPlacements lists the placements of items' shards.
func itemsPlacements(ctx context.Context, conn *pgx.Conn) ([]itemsPlacement, error) {
	shardRows, err := conn.Query(ctx, `SELECT s.id, s.min_value::int, s.max_value::int, p.node_name, p.node_port
		FROM pgs_distribution_metadata.shard s JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = 'items'::regclass`)
	if err != nil {
		return nil, err
	}
	var ps []itemsPlacement
	for shardRows.Next() {
		var p itemsPlacement
		var host string
		if err := shardRows.Scan(&p.id, &p.min, &p.max, &host, &p.port); err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, shardRows.Err()
}

// compareQueries prints the median time of each multi-shard query on plain PostgreSQL
// and through pgshard.
func compareQueries(ctx context.Context, plain, conn *pgx.Conn, rows, rounds int) error {
	fmt.Printf("\nmulti-shard queries, %d rows, 16 shards on 4 workers (median of %d runs)\n", rows, rounds)
	fmt.Printf("%-62s %12s %12s %8s\n", "query", "plain PG", "pgshard", "ratio")
	for _, q := range []string{
		"SELECT count(*) FROM items",
		"SELECT grp, count(*), sum(v) FROM items GROUP BY grp",
		"SELECT grp, avg(v), max(pad) FROM items GROUP BY grp ORDER BY 2 DESC LIMIT 5",
		"SELECT count(DISTINCT v) FROM items",
		"SELECT id, v FROM items ORDER BY v DESC, id LIMIT 10",
		// Gathered: only the rows the filter keeps are copied.
		"SELECT g.label, count(*) FROM items i JOIN grps g ON g.grp = i.grp WHERE i.v < 10 GROUP BY g.label",
	} {
		var tp, tx []float64
		for r := 0; r < rounds; r++ {
			d, err := timeQuery(ctx, plain, q)
			if err != nil {
				return fmt.Errorf("plain %s: %w", q, err)
			}
			tp = append(tp, d.Seconds())
			if d, err = timeQuery(ctx, conn, q); err != nil {
				return fmt.Errorf("pgshard %s: %w", q, err)
			}
			tx = append(tx, d.Seconds())
		}
		mp, mx := medianF(tp), medianF(tx)
		fmt.Printf("%-62s %10.1fms %10.1fms %7.2fx\n", q, mp*1000, mx*1000, mx/mp)
	}
	return nil
}

// proxyMemory prints the proxy's peak resident set for queries whose answers it should
// stream (or batch) rather than hold.
func proxyMemory(ctx context.Context, proxy *proxyProcess, conn *pgx.Conn, rows int) error {
	fmt.Printf("\npeak proxy memory (resident set, the proxy's own process)\n")
	idle, err := proxy.resetPeak()
	if err != nil {
		return err
	}
	fmt.Printf("%-62s %10d kB\n", "idle", idle)
	memQueries := []string{
		"SELECT * FROM items ORDER BY v, id LIMIT 10",
		// A gather: every row is copied to the coordinator.
		"SELECT DISTINCT ON (grp) grp, id FROM items ORDER BY grp, id DESC",
	}
	for _, frac := range []int{4, 2, 1} {
		memQueries = append(memQueries, fmt.Sprintf("SELECT * FROM items WHERE id <= %d", rows/frac))
	}
	// INSERT ... SELECT: the rows pass through the proxy in batches.
	for _, q := range []string{"CREATE TABLE items_copy (LIKE items)", "select master_create_distributed_table('items_copy', 'id')",
		"select master_create_worker_shards('items_copy', 16, 1)"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	for _, frac := range []int{4, 2} {
		memQueries = append(memQueries, fmt.Sprintf("INSERT INTO items_copy SELECT * FROM items WHERE id <= %d", rows/frac), "TRUNCATE items_copy")
	}
	for _, q := range memQueries {
		if strings.HasPrefix(q, "TRUNCATE") {
			if _, err := conn.Exec(ctx, q); err != nil {
				return err
			}
			continue
		}
		if _, err := proxy.resetPeak(); err != nil {
			return err
		}
		start := time.Now()
		got, err := drain(ctx, conn, q)
		if err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		peak, err := proxy.peak()
		if err != nil {
			return err
		}
		fmt.Printf("%-62s %10d kB  (%d rows, %.1fs)\n", q, peak, got, time.Since(start).Seconds())
	}
	return nil
}

func timeQuery(ctx context.Context, conn *pgx.Conn, q string) (time.Duration, error) {
	start := time.Now()
	_, err := drain(ctx, conn, q)
	return time.Since(start), err
}

// drain runs q and reads every row without keeping any.
func drain(ctx context.Context, conn *pgx.Conn, q string) (int64, error) {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return 0, err
	}
	var n int64
	for rows.Next() {
		rows.RawValues()
		n++
	}
	return n, rows.Err()
}

// proxyProcess is pgshard serve running as its own process, so that its memory can be
// measured.
type proxyProcess struct {
	cmd *exec.Cmd
	url string
	dir *cluster.Dir
}

func startProxyProcess(ctx context.Context, coordinator string) (*proxyProcess, error) {
	dir, err := cluster.TempDir("pgshard-bench-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir.Path, "pgshard")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pgshard")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		dir.Remove()
		return nil, fmt.Errorf("build pgshard: %w", err)
	}
	port, err := cluster.FreePort()
	if err != nil {
		dir.Remove()
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "serve", "--listen", addr, "--coordinator", coordinator, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if profileFile != "" {
		// The proxy process writes its own CPU profile when it stops.
		cmd.Env = append(os.Environ(), "PGSHARD_CPUPROFILE="+profileFile)
	}
	if err := cmd.Start(); err != nil {
		dir.Remove()
		return nil, err
	}
	p := &proxyProcess{cmd: cmd, dir: dir, url: "postgres://postgres@" + addr + "/postgres?sslmode=disable"}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if nc, err := net.Dial("tcp", addr); err == nil {
			nc.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("pgshard did not start listening on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proxyProcess) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.dir.Remove()
}

// resetPeak resets the process's peak resident set to its current size and returns it.
func (p *proxyProcess) resetPeak() (int64, error) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0); err != nil {
		return 0, err
	}
	return p.status("VmRSS")
}

// peak returns the process's peak resident set since the last reset, in kB.
func (p *proxyProcess) peak() (int64, error) { return p.status("VmHWM") }

func (p *proxyProcess) status(field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc status", field)
}
