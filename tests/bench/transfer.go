package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
)

// shardEnv is the setting of the transfer and autocommit benchmarks: a coordinator and
// four workers, a `pgshard serve` process in front of them, a connection through it, and a
// database "plain" on the coordinator, which plays one plain PostgreSQL holding every row.
type shardEnv struct {
	c     *cluster.Cluster
	proxy *proxyProcess
	conn  *pgx.Conn
	host  string // the proxy's address
	port  int
	tmp   *cluster.Dir // pgbench scripts
}

// startShardEnv starts the servers and the proxy and registers the workers.
func startShardEnv(ctx context.Context, what string) (*shardEnv, error) {
	fmt.Printf("\n%s: starting a coordinator, four workers and pgshard serve...\n", what)
	c, err := cluster.Start(ctx, cluster.Options{Workers: 4, Settings: []string{"shared_buffers = 128MB", "max_wal_size = 2GB"}})
	if err != nil {
		return nil, err
	}
	e := &shardEnv{c: c}
	if e.proxy, err = startProxyProcess(ctx, c.Coordinator.URL("postgres")); err != nil {
		e.close()
		return nil, err
	}
	u, err := url.Parse(e.proxy.url)
	if err != nil {
		e.close()
		return nil, err
	}
	host, port, _ := net.SplitHostPort(u.Host)
	e.host = host
	e.port, _ = strconv.Atoi(port)
	if e.conn, err = pgx.Connect(ctx, e.proxy.url+"&default_query_exec_mode=simple_protocol"); err != nil {
		e.close()
		return nil, err
	}
	if e.tmp, err = cluster.TempDir("pgshard-bench-"); err != nil {
		e.close()
		return nil, err
	}
	for _, w := range c.Workers {
		if _, err := e.conn.Exec(ctx, fmt.Sprintf("select master_add_node('%s', %d)", w.Host, w.Port)); err != nil {
			e.close()
			return nil, err
		}
	}
	if _, err := c.Coordinator.Exec(ctx, "postgres", "CREATE DATABASE plain"); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *shardEnv) close() {
	if e.conn != nil {
		e.conn.Close(context.Background())
	}
	if e.proxy != nil {
		e.proxy.stop()
	}
	if e.tmp != nil {
		e.tmp.Remove()
	}
	e.c.Close()
}

// benchTable creates table (ddl names it %s) in the plain database and, distributed on
// key in 16 shards with rf placements each, through the proxy for every rf in rfs (named
// table_rf<rf>), and fills each with the rows of gen: a SELECT of n rows whose first
// column is the key, called g, and that ends where a WHERE clause may follow. The shards
// are filled directly on their workers (hash is the key type's hash function).
func (e *shardEnv) benchTable(ctx context.Context, table, ddl, key, hash, gen string, rfs []int) error {
	for _, q := range []string{fmt.Sprintf(ddl, table), "INSERT INTO " + table + " " + gen, "VACUUM ANALYZE " + table} {
		if _, err := e.c.Coordinator.Exec(ctx, "plain", q); err != nil {
			return fmt.Errorf("plain %s: %w", table, err)
		}
	}
	for _, rf := range rfs {
		t := fmt.Sprintf("%s_rf%d", table, rf)
		for _, q := range []string{
			fmt.Sprintf(ddl, t),
			fmt.Sprintf("select master_create_distributed_table('%s', '%s')", t, key),
			fmt.Sprintf("select master_create_worker_shards('%s', 16, %d)", t, rf),
		} {
			if _, err := e.conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		ps, err := e.placements(ctx, t)
		if err != nil {
			return err
		}
		errs := make(chan error, len(ps))
		for _, p := range ps {
			go func(p benchPlacement) {
				w := e.worker(p.port)
				_, err := w.Exec(ctx, "postgres", fmt.Sprintf("INSERT INTO %s_%d %s WHERE %s(g) BETWEEN %d AND %d", t, p.shard, gen, hash, p.min, p.max))
				if err == nil {
					_, err = w.Exec(ctx, "postgres", fmt.Sprintf("VACUUM ANALYZE %s_%d", t, p.shard))
				}
				errs <- err
			}(p)
		}
		// Every placement's goroutine answers on errs.
		var err1 error
		for range ps {
			if err := <-errs; err != nil && err1 == nil {
				err1 = err
			}
		}
		if err1 != nil {
			return fmt.Errorf("fill %s: %w", t, err1)
		}
	}
	return nil
}

// benchPlacement is a placement of a distributed table's shard, with the shard's range
// and the placement's state.
type benchPlacement struct {
	shard    int64
	min, max int64
	port     int
	state    int
}

// placements lists the placements of table's shards, in shard order.
func (e *shardEnv) placements(ctx context.Context, table string) ([]benchPlacement, error) {
	rows, err := e.conn.Query(ctx, fmt.Sprintf(`SELECT s.id, s.min_value::bigint, s.max_value::bigint, p.node_port, p.shard_state
		FROM pgs_distribution_metadata.shard s JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = '%s'::regclass ORDER BY s.id, p.node_port`, table))
	if err != nil {
		return nil, err
	}
	var ps []benchPlacement
	for rows.Next() {
		var p benchPlacement
		var port, state int32
		if err := rows.Scan(&p.shard, &p.min, &p.max, &port, &state); err != nil {
			return nil, err
		}
		p.port, p.state = int(port), int(state)
		ps = append(ps, p)
	}
	return ps, rows.Err()
}

func (e *shardEnv) worker(port int) *cluster.Server {
	for _, w := range e.c.Workers {
		if w.Port == port {
			return w
		}
	}
	return e.c.Coordinator
}

// benchTarget is where a pgbench run goes: plain PostgreSQL or the proxy, and the table
// its script names.
type benchTarget struct {
	name  string
	host  string
	port  int
	db    string
	table string
}

// targets are the plain table and its distributed copies with replication 1 and 2.
func (e *shardEnv) targets(table string) []benchTarget {
	co := e.c.Coordinator
	return []benchTarget{
		{name: "plain PostgreSQL", host: co.Host, port: co.Port, db: "plain", table: table},
		{name: "pgshard rf1", host: e.host, port: e.port, db: "postgres", table: table + "_rf1"},
		{name: "pgshard rf2", host: e.host, port: e.port, db: "postgres", table: table + "_rf2"},
	}
}

// benchRun is what one pgbench run reported.
type benchRun struct {
	tps, lat                 float64        // transactions per second; mean latency in ms
	txs, failed, retried     int64          // processed, failed (after retries), retried transactions
	deadlocks, serialization int64          // failures by kind
	aborted                  int            // clients pgbench aborted on another error
	firstErr                 string         // the first such error
	retryErrs                map[string]int // with --verbose-errors: the errors retried, counted
}

var (
	failedRe   = regexp.MustCompile(`number of failed transactions: ([0-9]+)`)
	retriedRe  = regexp.MustCompile(`number of transactions retried: ([0-9]+)`)
	deadlockRe = regexp.MustCompile(`number of deadlock failures: ([0-9]+)`)
	serialRe   = regexp.MustCompile(`number of serialization failures: ([0-9]+)`)
	abortedRe  = regexp.MustCompile(`(?m)^.*client [0-9]+ (?:script [0-9]+ )?aborted.*$`)
	retryErrRe = regexp.MustCompile(`(?m)got an error in command [0-9]+ \(SQL\) of script [0-9]+; *(.*)$`)
)

// runPgbench runs script (%s is the target's table) against t with clients clients for d.
// A run pgbench aborted some clients of (exit status 2) still counts, with its aborted
// clients and first error reported.
func (e *shardEnv) runPgbench(t benchTarget, name, script, mode string, clients int, d time.Duration, extra ...string) (benchRun, error) {
	file := filepath.Join(e.tmp.Path, name+".sql")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(script, t.table)), 0o644); err != nil {
		return benchRun{}, err
	}
	args := append([]string{"-n", "-f", file, "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients),
		"-T", strconv.Itoa(max(1, int(d.Seconds()))), "-h", t.host, "-p", strconv.Itoa(t.port), "-U", "postgres"}, extra...)
	out, err := exec.Command("pgbench", append(args, t.db)...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2) {
		return benchRun{}, fmt.Errorf("pgbench %s on %s: %v: %s", name, t.name, err, out)
	}
	m, l := tpsRe.FindSubmatch(out), latRe.FindSubmatch(out)
	n := txRe.FindSubmatch(out)
	if m == nil || n == nil {
		return benchRun{}, fmt.Errorf("pgbench %s on %s: unexpected output: %s", name, t.name, out)
	}
	var r benchRun
	r.tps, _ = strconv.ParseFloat(string(m[1]), 64)
	r.txs, _ = strconv.ParseInt(string(n[1]), 10, 64)
	if l != nil {
		r.lat, _ = strconv.ParseFloat(string(l[1]), 64)
	}
	count := func(re *regexp.Regexp) int64 {
		if m := re.FindSubmatch(out); m != nil {
			v, _ := strconv.ParseInt(string(m[1]), 10, 64)
			return v
		}
		return 0
	}
	r.failed, r.retried = count(failedRe), count(retriedRe)
	r.deadlocks, r.serialization = count(deadlockRe), count(serialRe)
	aborts := abortedRe.FindAll(out, -1)
	r.aborted = len(aborts)
	if len(aborts) > 0 {
		r.firstErr = strings.TrimSpace(string(aborts[0]))
	}
	for _, m := range retryErrRe.FindAllSubmatch(out, -1) {
		if r.retryErrs == nil {
			r.retryErrs = map[string]int{}
		}
		r.retryErrs[strings.Join(strings.Fields(string(m[1])), " ")]++
	}
	return r, nil
}

// transferScript is the zero-sum transfer between two random accounts of n.
const transferScript = `\set a1 random(1, %[2]d)
\set a2 random(1, %[2]d)
BEGIN;
UPDATE %[1]s SET bal = bal - 1 WHERE aid = :a1;
UPDATE %[1]s SET bal = bal + 1 WHERE aid = :a2;
COMMIT;
`

// runTransfer is the transfer benchmark: accounts accounts in acct (16 shards on four
// workers), clients pgbench clients moving 1 between two random accounts in a transaction
// block, against one plain PostgreSQL holding the same rows and through pgshard with
// replication 1 and 2, in alternating rounds of d each. Deadlocks are retried (pgbench
// --max-tries). Afterwards it checks the bank invariant: every balance sums to 0, through
// pgshard and on the placements, and all placements of each shard are identical.
func runTransfer(accounts, clients int, d time.Duration, rounds int, modes []string) error {
	ctx := context.Background()
	e, err := startShardEnv(ctx, "transfer")
	if err != nil {
		return err
	}
	defer e.close()
	fmt.Printf("loading %d accounts into the plain table and the distributed ones (16 shards, replication 1 and 2)...\n", accounts)
	gen := fmt.Sprintf("SELECT g AS aid, 0::bigint AS bal FROM generate_series(1, %d) g", accounts)
	if err := e.benchTable(ctx, "acct", "CREATE TABLE %s (aid int PRIMARY KEY, bal bigint NOT NULL)", "aid", "hashint4", gen, []int{1, 2}); err != nil {
		return err
	}
	script := strings.ReplaceAll(transferScript, "%[2]d", strconv.Itoa(accounts))
	targets := e.targets("acct")
	for _, mode := range modes {
		results := map[string][]benchRun{}
		for r := 0; r < rounds; r++ {
			for _, t := range targets {
				res, err := e.runPgbench(t, "transfer", script, mode, clients, d, "--max-tries=10", "--failures-detailed", "--verbose-errors")
				if err != nil {
					return err
				}
				results[t.name] = append(results[t.name], res)
				fmt.Printf("  round %d %-17s %-8s %9.0f transfers/s %8.3f ms  failed %d  retried %d  aborted clients %d %s\n",
					r+1, t.name, mode, res.tps, res.lat, res.failed, res.retried, res.aborted, res.firstErr)
				for msg, n := range res.retryErrs {
					fmt.Printf("      retried %d x after: %s\n", n, msg)
				}
			}
		}
		reportTransfer(mode, targets, results, clients, d)
	}
	return e.checkBank(ctx, targets, accounts)
}

// reportTransfer prints the median transfers per second of each target, its ratio to plain
// PostgreSQL, and the failures of all rounds.
func reportTransfer(mode string, targets []benchTarget, results map[string][]benchRun, clients int, d time.Duration) {
	med := func(name string, f func(benchRun) float64) float64 {
		var xs []float64
		for _, r := range results[name] {
			xs = append(xs, f(r))
		}
		return medianF(xs)
	}
	tps := func(r benchRun) float64 { return r.tps }
	lat := func(r benchRun) float64 { return r.lat }
	plain := med(targets[0].name, tps)
	fmt.Printf("\ntransfer (BEGIN; 2 x UPDATE; COMMIT), -M %s, %d clients, %s per run, median of %d rounds:\n", mode, clients, d, len(results[targets[0].name]))
	fmt.Printf("%-17s %12s %10s %11s %8s %8s %10s %9s\n", "target", "transfers/s", "vs plain", "latency ms", "failed", "retried", "deadlocks", "aborted")
	for _, t := range targets {
		var failed, retried, deadlocks int64
		aborted := 0
		for _, r := range results[t.name] {
			failed, retried, deadlocks, aborted = failed+r.failed, retried+r.retried, deadlocks+r.deadlocks, aborted+r.aborted
		}
		m := med(t.name, tps)
		fmt.Printf("%-17s %12.0f %10.3f %11.3f %8d %8d %10d %9d\n", t.name, m, m/plain, med(t.name, lat), failed, retried, deadlocks, aborted)
	}
	fmt.Println("(failed, retried, deadlocks and aborted clients summed over the rounds; goal for rf2: at least 0.25x plain, 0.5x later, no failures except retried deadlocks)")
	fmt.Println()
}

// checkBank checks the bank invariant on every target: accounts rows summing to 0 on plain
// PostgreSQL and through pgshard, and, on the placements directly, every finalized
// placement of a shard identical to its siblings and the shards summing to 0.
func (e *shardEnv) checkBank(ctx context.Context, targets []benchTarget, accounts int) error {
	fmt.Println("bank invariant:")
	var bad []string
	check := func(what string, n, sum int64) {
		verdict := "ok"
		if n != int64(accounts) || sum != 0 {
			verdict = "VIOLATED"
			bad = append(bad, what)
		}
		fmt.Printf("  %-52s %8d accounts, sum %6d  %s\n", what, n, sum, verdict)
	}
	var n, sum int64
	q := "SELECT count(*), coalesce(sum(bal), 0)::bigint FROM %s"
	plain, err := pgx.Connect(ctx, e.c.Coordinator.URL("plain"))
	if err != nil {
		return err
	}
	defer plain.Close(ctx)
	if err := plain.QueryRow(ctx, fmt.Sprintf(q, targets[0].table)).Scan(&n, &sum); err != nil {
		return err
	}
	check(targets[0].name, n, sum)
	for _, t := range targets[1:] {
		if err := e.conn.QueryRow(ctx, fmt.Sprintf(q, t.table)).Scan(&n, &sum); err != nil {
			return fmt.Errorf("%s through pgshard: %w", t.table, err)
		}
		check(t.name+" through pgshard", n, sum)
		n, sum, diffs, inactive, err := e.comparePlacements(ctx, t.table)
		if err != nil {
			return err
		}
		check(fmt.Sprintf("%s placements: %d shards differ, %d not finalized", t.name, diffs, inactive), n, sum)
		if diffs > 0 {
			bad = append(bad, t.name+" placements differ")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("bank invariant violated: %s", strings.Join(bad, "; "))
	}
	return nil
}

// comparePlacements reads every placement of table's shards directly on its worker and
// returns the rows and sum of the shards (first finalized placement of each), how many
// shards have finalized placements that differ, and how many placements are not finalized.
func (e *shardEnv) comparePlacements(ctx context.Context, table string) (n, sum int64, diffs, inactive int, err error) {
	ps, err := e.placements(ctx, table)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	type digest struct {
		n, sum int64
		hash   string
	}
	first := map[int64]*digest{}
	differs := map[int64]bool{}
	for _, p := range ps {
		if p.state != 1 {
			inactive++
			continue
		}
		q := fmt.Sprintf("SELECT count(*), coalesce(sum(bal), 0)::bigint, md5(coalesce(string_agg(aid || ':' || bal, ',' ORDER BY aid), '')) FROM %s_%d", table, p.shard)
		res, err := e.worker(p.port).Exec(ctx, "postgres", q)
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("placement of shard %d on port %d: %w", p.shard, p.port, err)
		}
		row := res[0].Rows[0]
		var d digest
		d.n, _ = strconv.ParseInt(string(row[0]), 10, 64)
		d.sum, _ = strconv.ParseInt(string(row[1]), 10, 64)
		d.hash = string(row[2])
		if f, ok := first[p.shard]; !ok {
			first[p.shard] = &d
			n, sum = n+d.n, sum+d.sum
		} else if *f != d {
			differs[p.shard] = true
		}
	}
	return n, sum, len(differs), inactive, nil
}
