package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

var latRe = regexp.MustCompile(`latency average = ([0-9.]+) ms`)

// runWrites compares single-row INSERT and UPDATE through pgshard on tables with one and
// with two placements per shard. With one client the latency ratio shows what writing the
// placements in parallel costs; with several, on a small machine, the second placement's
// work competes for the same CPUs. As the floor of that ratio, each one-client round also
// writes the workers directly, without pgshard: one of them, then both at once (the
// statement sent to both before either answer is read, as pgshard does).
func runWrites(clientsList []int, duration time.Duration, rounds int, modes []string) error {
	ctx := context.Background()
	fmt.Println("\nwrites: starting a coordinator and two workers...")
	c, p, err := testproxy.StartCluster(ctx, cluster.Options{Workers: 2, Settings: []string{"shared_buffers = 128MB"}}, testproxy.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	defer p.Stop()
	conn, err := pgx.Connect(ctx, p.URL()+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for rf := 1; rf <= 2; rf++ {
		t := fmt.Sprintf("w_rf%d", rf)
		for _, q := range []string{
			fmt.Sprintf("CREATE TABLE %s (k bigint PRIMARY KEY, v bigint NOT NULL)", t),
			fmt.Sprintf("select master_create_distributed_table('%s', 'k')", t),
			fmt.Sprintf("select master_create_worker_shards('%s', 16, %d)", t, rf),
			fmt.Sprintf("INSERT INTO %s SELECT g, 0 FROM generate_series(1, 100000) g", t),
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	direct, err := directConns(ctx, c)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range direct {
			d.Close(ctx)
		}
	}()
	tmp, err := cluster.TempDir("pgshard-bench-")
	if err != nil {
		return err
	}
	defer tmp.Remove()
	dir := tmp.Path
	scripts := map[string]string{
		"insert": "\\set k random(1000000, 4000000000000)\nINSERT INTO %s (k, v) VALUES (:k, 1) ON CONFLICT (k) DO NOTHING;\n",
		"update": "\\set k random(1, 100000)\nUPDATE %s SET v = v + 1 WHERE k = :k;\n",
	}
	for _, clients := range clientsList {
		for _, mode := range modes {
			for _, op := range []string{"insert", "update"} {
				type res struct{ tps, lat []float64 }
				results := map[int]*res{1: {}, 2: {}}
				var one, both []float64
				for r := 0; r < rounds; r++ {
					if clients == 1 {
						l1, err := directWrites(ctx, direct[:1], op, duration)
						if err != nil {
							return err
						}
						l2, err := directWrites(ctx, direct, op, duration)
						if err != nil {
							return err
						}
						one, both = append(one, l1), append(both, l2)
						fmt.Printf("  round %d %-6s direct   one worker %8.3f ms, both %8.3f ms\n", r+1, op, l1, l2)
					}
					for rf := 1; rf <= 2; rf++ {
						file := filepath.Join(dir, fmt.Sprintf("%s_rf%d.sql", op, rf))
						if err := os.WriteFile(file, []byte(fmt.Sprintf(scripts[op], fmt.Sprintf("w_rf%d", rf))), 0o644); err != nil {
							return err
						}
						out, err := exec.Command("pgbench", "-n", "-f", file, "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients),
							"-T", strconv.Itoa(int(duration.Seconds())), "-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", "postgres", "postgres").CombinedOutput()
						if err != nil {
							return fmt.Errorf("pgbench %s rf%d: %v: %s", op, rf, err, out)
						}
						m, l := tpsRe.FindSubmatch(out), latRe.FindSubmatch(out)
						if m == nil || l == nil {
							return fmt.Errorf("unexpected pgbench output: %s", out)
						}
						tps, _ := strconv.ParseFloat(string(m[1]), 64)
						lat, _ := strconv.ParseFloat(string(l[1]), 64)
						results[rf].tps = append(results[rf].tps, tps)
						results[rf].lat = append(results[rf].lat, lat)
						fmt.Printf("  round %d %-6s rf%d %-8s %9.0f tps %8.3f ms\n", r+1, op, rf, mode, tps, lat)
					}
				}
				t1, t2 := medianF(results[1].tps), medianF(results[2].tps)
				l1, l2 := medianF(results[1].lat), medianF(results[2].lat)
				fmt.Printf("\nsingle-row %s through pgshard, -M %s, %d clients, median of %d rounds:\n", op, mode, clients, rounds)
				fmt.Printf("%-22s %10s %12s\n", "", "tps", "latency ms")
				fmt.Printf("%-22s %10.0f %12.3f\n", "1 placement per shard", t1, l1)
				fmt.Printf("%-22s %10.0f %12.3f\n", "2 placements per shard", t2, l2)
				fmt.Printf("%-22s %10.2f %12.2f   (goal: latency within 1.2x)\n", "ratio rf2 / rf1", t2/t1, l2/l1)
				if clients == 1 {
					d1, d2 := medianF(one), medianF(both)
					fmt.Printf("the same write sent directly to the workers, without pgshard:\n")
					fmt.Printf("%-22s %10s %12.3f\n", "one worker", "", d1)
					fmt.Printf("%-22s %10s %12.3f\n", "both in parallel", "", d2)
					fmt.Printf("%-22s %10s %12.2f   (this machine's floor for the ratio above)\n", "ratio both / one", "", d2/d1)
				}
				fmt.Println()
			}
		}
	}
	return nil
}

// directConns connects to each worker and creates there a plain table like the
// benchmark's distributed ones.
func directConns(ctx context.Context, c *cluster.Cluster) ([]*pgconn.PgConn, error) {
	var conns []*pgconn.PgConn
	for _, w := range c.Workers {
		cn, err := pgconn.Connect(ctx, w.URL("postgres"))
		if err != nil {
			return conns, err
		}
		conns = append(conns, cn)
		if _, err := cn.Exec(ctx, "CREATE TABLE w_direct (k bigint PRIMARY KEY, v bigint NOT NULL); "+
			"INSERT INTO w_direct SELECT g, 0 FROM generate_series(1, 100000) g").ReadAll(); err != nil {
			return conns, err
		}
	}
	return conns, nil
}

// directWrites runs single-row writes for the given time, each sent to every connection
// before any answer is read, and returns the mean latency in milliseconds.
func directWrites(ctx context.Context, conns []*pgconn.PgConn, op string, d time.Duration) (float64, error) {
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		var q string
		if op == "insert" {
			q = fmt.Sprintf("INSERT INTO w_direct (k, v) VALUES (%d, 1) ON CONFLICT (k) DO NOTHING", 1000000+rand.Int64N(4000000000000))
		} else {
			q = fmt.Sprintf("UPDATE w_direct SET v = v + 1 WHERE k = %d", 1+rand.IntN(100000))
		}
		for _, c := range conns {
			c.Frontend().Send(&pgproto3.Query{String: q})
			if err := c.Frontend().Flush(); err != nil {
				return 0, err
			}
		}
		for _, c := range conns {
			for {
				m, err := c.ReceiveMessage(ctx)
				if err != nil {
					return 0, err
				}
				if e, ok := m.(*pgproto3.ErrorResponse); ok {
					return 0, fmt.Errorf("%s: %s", q, e.Message)
				}
				if _, ok := m.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
		}
		n++
	}
	return float64(time.Since(start).Microseconds()) / 1000 / float64(n), nil
}

func medianF(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

// runRepair compares REPAIR SHARD's copy rate with a plain COPY between the same servers.
func runRepair(rows, rounds int) error {
	ctx := context.Background()
	fmt.Println("\nrepair: starting a coordinator and two workers...")
	c, p, err := testproxy.StartCluster(ctx, cluster.Options{Workers: 2, Settings: []string{"shared_buffers = 256MB", "max_wal_size = 4GB"}}, testproxy.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	defer p.Stop()
	conn, err := pgx.Connect(ctx, p.URL()+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	ddl := "CREATE TABLE big (k bigint PRIMARY KEY, v bigint, s text)"
	for _, q := range []string{ddl, "select master_create_distributed_table('big', 'k')", "select master_create_worker_shards('big', 1, 2)"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	var shard int64
	if err := conn.QueryRow(ctx, "SELECT id FROM pgs_distribution_metadata.shard WHERE relation_id = 'big'::regclass").Scan(&shard); err != nil {
		return err
	}
	table := fmt.Sprintf("big_%d", shard)
	fmt.Printf("filling both placements of shard %d with %d rows...\n", shard, rows)
	fill := fmt.Sprintf("INSERT INTO %s SELECT g, g * 7, md5(g::text) FROM generate_series(1, %d) g", table, rows)
	for _, w := range c.Workers {
		if _, err := w.Exec(ctx, "postgres", fill); err != nil {
			return err
		}
		if _, err := w.Exec(ctx, "postgres", "VACUUM ANALYZE "+table); err != nil {
			return err
		}
	}
	src, dst := c.Workers[0], c.Workers[1]
	var sizeBytes int64
	rs, err := src.Exec(ctx, "postgres", fmt.Sprintf("SELECT pg_total_relation_size('%s')", table))
	if err != nil {
		return err
	}
	fmt.Sscan(string(rs[0].Rows[0][0]), &sizeBytes)

	var repairs, copies []float64
	for r := 0; r < rounds; r++ {
		// Baseline: COPY from one server into an empty copy of the table on the other.
		if _, err := dst.Exec(ctx, "postgres", "DROP TABLE IF EXISTS copy_baseline; CREATE TABLE copy_baseline (k bigint PRIMARY KEY, v bigint, s text)"); err != nil {
			return err
		}
		d, err := plainCopy(ctx, src, dst, table)
		if err != nil {
			return err
		}
		copies = append(copies, d.Seconds())
		// pgshard: mark the second placement inactive, then REPAIR SHARD.
		if _, err := c.Coordinator.Exec(ctx, "postgres", fmt.Sprintf(
			"UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE shard_id = %d AND node_port = %d", shard, dst.Port)); err != nil {
			return err
		}
		// Wait until the proxy's snapshot shows the placement inactive.
		for {
			var state string
			if err := conn.QueryRow(ctx, fmt.Sprintf("SHOW PLACEMENTS %d", shard)).Scan(nil, nil, nil, nil, nil, nil, &state); err != nil {
				return err
			}
			rows, err := conn.Query(ctx, fmt.Sprintf("SHOW PLACEMENTS %d", shard))
			if err != nil {
				return err
			}
			inactive := 0
			for rows.Next() {
				v, _ := rows.Values()
				if fmt.Sprint(v[6]) == "inactive" {
					inactive++
				}
			}
			if inactive == 1 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		start := time.Now()
		if _, err := conn.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", shard)); err != nil {
			return err
		}
		repairs = append(repairs, time.Since(start).Seconds())
		fmt.Printf("  round %d: COPY %.2fs, REPAIR SHARD %.2fs\n", r+1, copies[r], repairs[r])
	}
	mb := float64(sizeBytes) / (1 << 20)
	cp, rp := medianF(copies), medianF(repairs)
	fmt.Printf("\nrepair of a %d-row shard (%.0f MB with indexes), median of %d rounds:\n", rows, mb, rounds)
	fmt.Printf("%-34s %8.2f s %8.1f MB/s\n", "COPY between the two servers", cp, mb/cp)
	fmt.Printf("%-34s %8.2f s %8.1f MB/s\n", "REPAIR SHARD (copy + verify)", rp, mb/rp)
	fmt.Printf("%-34s %8.2f\n\n", "ratio of rates (repair / COPY)", cp/rp)
	return nil
}

// plainCopy streams a table from src into copy_baseline on dst with COPY (binary).
func plainCopy(ctx context.Context, src, dst *cluster.Server, table string) (time.Duration, error) {
	s, err := pgconn.Connect(ctx, src.URL("postgres"))
	if err != nil {
		return 0, err
	}
	defer s.Close(ctx)
	d, err := pgconn.Connect(ctx, dst.URL("postgres"))
	if err != nil {
		return 0, err
	}
	defer d.Close(ctx)
	start := time.Now()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := s.CopyTo(ctx, pw, "COPY "+table+" TO STDOUT (FORMAT binary)")
		pw.CloseWithError(err)
		errc <- err
	}()
	_, err = d.CopyFrom(ctx, pr, "COPY copy_baseline FROM STDIN (FORMAT binary)")
	if serr := <-errc; serr != nil {
		return 0, serr
	}
	return time.Since(start), err
}
