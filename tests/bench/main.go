// Command bench runs pgshard's benchmarks, each comparing with a baseline in the same run:
//
//   - select: pgbench select-only throughput and CPU cost per query against one PostgreSQL
//     worker directly, through PgBouncer, and through pgshard (pgbench_accounts distributed
//     in 16 shards, all on that worker), in alternating rounds;
//
//   - writes: single-row INSERT and UPDATE throughput and latency through pgshard with two
//     placements per shard against one placement, and the same writes sent directly to
//     one worker and to both at once (what the machine itself charges for a second copy);
//
//   - repair: the copy rate of REPAIR SHARD against a plain COPY between the same two
//     servers;
//
//   - query: multi-shard count(*), GROUP BY, count(DISTINCT) and ORDER BY ... LIMIT over
//     a distributed table (16 shards on 4 workers) against the same queries on one plain
//     PostgreSQL holding every row, and the proxy's peak memory for an ordered LIMIT query
//     and for full scans of growing size;
//
//   - transfer: a zero-sum transfer between two random accounts in a transaction block
//     (4 workers, 16 shards, -accounts accounts) on one plain PostgreSQL and through
//     pgshard with replication 1 and 2, then the bank invariant (transfer.go);
//
//   - autocommit: single-row autocommit INSERT and UPDATE latency through pgshard with
//     replication 2 against 1, and on plain PostgreSQL (autocommit.go).
//
//     go run ./tests/bench [-run select,writes,repair,query,transfer,autocommit] [-accounts 400000] [-phase 5s] [-query-rows 1000000] [-scale 10] [-clients 8] [-duration 10s] [-rounds 3] [-modes simple]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

func main() {
	scale := flag.Int("scale", 10, "pgbench scale factor (100,000 accounts each)")
	clients := flag.Int("clients", 8, "pgbench clients")
	duration := flag.Duration("duration", 10*time.Second, "length of each pgbench run")
	rounds := flag.Int("rounds", 3, "rounds of direct / pgbouncer / pgshard")
	modes := flag.String("modes", "simple", "pgbench protocol modes, comma-separated (simple, extended, prepared)")
	suites := flag.String("run", "select,writes,repair,query,transfer,autocommit", "benchmarks to run")
	accounts := flag.Int("accounts", 400000, "accounts of the transfer benchmark")
	phase := flag.Duration("phase", 5*time.Second, "length of each pgbench run of the transfer and autocommit benchmarks")
	repairRows := flag.Int("repair-rows", 1000000, "rows in the shard the repair benchmark copies")
	queryRows := flag.Int("query-rows", 1000000, "rows of the query benchmark's table")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the pgshard runs to this file")
	flag.Parse()
	profileFile = *cpuProfile
	for _, suite := range strings.Split(*suites, ",") {
		var err error
		switch suite {
		case "select":
			err = run(*scale, *clients, *duration, *rounds, strings.Split(*modes, ","))
		case "writes":
			err = runWrites([]int{1, *clients}, *duration, *rounds, strings.Split(*modes, ","))
		case "repair":
			err = runRepair(*repairRows, *rounds)
		case "query":
			err = runQuery(*queryRows, *rounds)
		case "transfer":
			err = runTransfer(*accounts, *clients, *phase, *rounds, strings.Split(*modes, ","))
		case "autocommit":
			err = runAutocommit([]int{1, *clients}, *phase, *rounds, strings.Split(*modes, ","))
		default:
			err = fmt.Errorf("unknown benchmark %q", suite)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

type target struct {
	name string
	host string
	port int
	cpu  func() time.Duration // CPU time used by the middleman so far
}

type result struct {
	tps float64
	txs int64
	cpu time.Duration
}

func run(scale, clients int, duration time.Duration, rounds int, modes []string) error {
	ctx := context.Background()
	fmt.Println("starting a coordinator and one worker...")
	c, err := cluster.Start(ctx, cluster.Options{Workers: 1, Settings: []string{"shared_buffers = 256MB"}})
	if err != nil {
		return err
	}
	defer c.Close()
	w := c.Workers[0]

	fmt.Printf("pgbench -i -s %d on the worker (direct baseline)...\n", scale)
	if out, err := exec.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "-h", w.Host, "-p", strconv.Itoa(w.Port), "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v: %s", err, out)
	}

	p, err := testproxy.Start(ctx, c.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		return err
	}
	defer p.Stop()
	if err := setupDistributed(ctx, p, c, scale); err != nil {
		return err
	}
	bouncer, stopBouncer, err := startPgBouncer(w)
	if err != nil {
		return err
	}
	defer stopBouncer()

	targets := []target{
		{name: "direct", host: w.Host, port: w.Port, cpu: func() time.Duration { return 0 }},
		bouncer,
		{name: "pgshard", host: p.Host, port: p.Port, cpu: selfCPU},
	}
	for _, mode := range modes {
		results := map[string][]result{}
		for r := 0; r < rounds; r++ {
			for _, t := range targets {
				if t.name == "pgbouncer" && mode == "prepared" {
					// Transaction pooling (before PgBouncer 1.21) cannot keep a
					// client's prepared statements.
					continue
				}
				res, err := pgbench(t, mode, clients, duration)
				if err != nil {
					return fmt.Errorf("%s (%s): %w", t.name, mode, err)
				}
				results[t.name] = append(results[t.name], res)
				fmt.Printf("  round %d %-9s %-8s %9.0f tps\n", r+1, t.name, mode, res.tps)
			}
		}
		report(mode, targets, results, clients, duration)
	}
	return nil
}

// setupDistributed distributes pgbench_accounts through the proxy (16 shards on the one
// worker) and fills the shards directly on the worker (the benchmark is about queries).
func setupDistributed(ctx context.Context, p *testproxy.Proxy, c *cluster.Cluster, scale int) error {
	conn, err := pgx.Connect(ctx, p.URL()+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	w := c.Workers[0]
	for _, q := range []string{
		fmt.Sprintf("select master_add_node('%s', %d)", w.Host, w.Port),
		"CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84))",
		"select master_create_distributed_table('pgbench_accounts', 'aid')",
		"select master_create_worker_shards('pgbench_accounts', 16, 1)",
		// pgbench reads the scale from pgbench_branches, a coordinator table.
		"CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88))",
		fmt.Sprintf("INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, %d) b", scale),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	wc, err := pgx.Connect(ctx, w.URL("postgres"))
	if err != nil {
		return err
	}
	defer wc.Close(ctx)
	rows, err := conn.Query(ctx, "SHOW SHARDS pgbench_accounts")
	if err != nil {
		return err
	}
	type shard struct{ id, min, max int64 }
	var shards []shard
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		id, _ := strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
		lo, _ := strconv.ParseInt(fmt.Sprint(vals[2]), 10, 64)
		hi, _ := strconv.ParseInt(fmt.Sprint(vals[3]), 10, 64)
		shards = append(shards, shard{id, lo, hi})
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fmt.Printf("filling %d shards of pgbench_accounts on the worker...\n", len(shards))
	for _, s := range shards {
		q := fmt.Sprintf(`INSERT INTO pgbench_accounts_%d SELECT aid, (aid - 1) / 100000 + 1, 0, '' FROM generate_series(1, %d) aid
			WHERE hashint4(aid) BETWEEN %d AND %d`, s.id, scale*100000, s.min, s.max)
		if _, err := wc.Exec(ctx, q); err != nil {
			return err
		}
	}
	_, err = wc.Exec(ctx, "VACUUM ANALYZE")
	return err
}

func startPgBouncer(w *cluster.Server) (target, func(), error) {
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		return target{}, nil, fmt.Errorf("pgbouncer not installed (apt-get install pgbouncer)")
	}
	tmp, err := cluster.TempDir("pgshard-bouncer-")
	if err != nil {
		return target{}, nil, err
	}
	dir := tmp.Path
	port, err := cluster.FreePort()
	if err != nil {
		return target{}, nil, err
	}
	ini := fmt.Sprintf(`[databases]
postgres = host=%s port=%d dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 40
max_client_conn = 1000
logfile = %s/pgbouncer.log
`, w.Host, w.Port, port, dir)
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		return target{}, nil, err
	}
	os.Chmod(dir, 0o755)
	cluster.Chown(dir)
	cmd := cluster.Command("pgbouncer", filepath.Join(dir, "pgbouncer.ini"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return target{}, nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		tmp.Remove()
	}
	for i := 0; i < 100; i++ {
		if c, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)); err == nil {
			c.Close(context.Background())
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	return target{name: "pgbouncer", host: "127.0.0.1", port: port, cpu: func() time.Duration { return procCPU(pid) }}, stop, nil
}

// procCPU is a process's user+system CPU time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100
}

// selfCPU is this process's CPU time (the in-process proxy; pgbench is a child and is not
// counted).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
var txRe = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)

// profileFile, if set, receives a CPU profile of the pgbench runs through pgshard.
var profileFile string

func pgbench(t target, mode string, clients int, d time.Duration) (result, error) {
	if t.name == "pgshard" && profileFile != "" {
		f, err := os.Create(profileFile)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cpu0 := t.cpu()
	cmd := exec.Command("pgbench", "-S", "-n", "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients),
		"-T", strconv.Itoa(int(d.Seconds())), "-h", t.host, "-p", strconv.Itoa(t.port), "-U", "postgres", "postgres")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("%v: %s", err, out)
	}
	cpu := t.cpu() - cpu0
	m := tpsRe.FindSubmatch(out)
	n := txRe.FindSubmatch(out)
	if m == nil || n == nil {
		return result{}, fmt.Errorf("unexpected pgbench output: %s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	txs, _ := strconv.ParseInt(string(n[1]), 10, 64)
	return result{tps: tps, txs: txs, cpu: cpu}, nil
}

func median(rs []result) result {
	s := append([]result(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].tps < s[j].tps })
	return s[len(s)/2]
}

func report(mode string, targets []target, results map[string][]result, clients int, d time.Duration) {
	direct := median(results["direct"])
	var bouncer result
	if len(results["pgbouncer"]) > 0 {
		bouncer = median(results["pgbouncer"])
	}
	fmt.Printf("\npgbench -S -M %s, %d clients, %s per run, median of %d rounds:\n", mode, clients, d, len(results["direct"]))
	fmt.Printf("%-10s %12s %12s %14s %16s\n", "target", "tps", "vs direct", "vs pgbouncer", "CPU µs/query")
	for _, t := range targets {
		if len(results[t.name]) == 0 {
			fmt.Printf("%-10s %12s   (not run: pgbouncer's transaction pooling does not keep prepared statements)\n", t.name, "-")
			continue
		}
		m := median(results[t.name])
		cpu := "-"
		if t.name != "direct" && m.txs > 0 {
			cpu = fmt.Sprintf("%.1f", float64(m.cpu.Microseconds())/float64(m.txs))
		}
		vsBouncer := "-"
		if len(results["pgbouncer"]) > 0 {
			vsBouncer = fmt.Sprintf("%.2f", m.tps/bouncer.tps)
		}
		fmt.Printf("%-10s %12.0f %12.2f %14s %16s\n", t.name, m.tps, m.tps/direct.tps, vsBouncer, cpu)
	}
	fmt.Println()
}
