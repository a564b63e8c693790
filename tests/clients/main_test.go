package clients

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// env is the cluster and proxy shared by the tests of this package.
var env testproxy.Env

func TestMain(m *testing.M) { testproxy.Main(m, "clients", &env, testproxy.Options{}) }

func proxyURL() string { return env.P.URL() + "&default_query_exec_mode=simple_protocol" }

// connect opens a pgx connection to the proxy (url empty) or to a server.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	if url == "" {
		url = proxyURL()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

var tableSeq atomic.Int64

// workload is one client run: the table it works on and the environment it gets.
type workload struct {
	table string
	txIDs [2]int64 // two keys on different shards, for the transaction step
}

// prepare creates and distributes the workload's table through the proxy (8 shards,
// replication factor 2) and picks two keys on different shards.
func prepare(t *testing.T, prefix string) workload {
	t.Helper()
	w := workload{table: fmt.Sprintf("%s_%d", prefix, tableSeq.Add(1))}
	conn := connect(t, "")
	for _, sql := range []string{
		fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), created date)", w.table),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", w.table),
		fmt.Sprintf("select master_create_worker_shards('%s', 8, 2)", w.table),
	} {
		if _, err := conn.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	coord := connect(t, env.C.Coordinator.URL("postgres"))
	rows, err := coord.Query(context.Background(), `
		SELECT g, s.id FROM generate_series(60, 90) g
		JOIN pgs_distribution_metadata.shard s ON s.relation_id = $1::regclass
			AND hashint8(g) BETWEEN s.min_value::int AND s.max_value::int
		ORDER BY g`, w.table)
	if err != nil {
		t.Fatal(err)
	}
	var firstShard int64
	for rows.Next() {
		var id, shard int64
		if err := rows.Scan(&id, &shard); err != nil {
			t.Fatal(err)
		}
		if w.txIDs[0] == 0 {
			w.txIDs[0], firstShard = id, shard
		} else if shard != firstShard && w.txIDs[1] == 0 {
			w.txIDs[1] = id
		}
	}
	if rows.Err() != nil || w.txIDs[1] == 0 {
		t.Fatalf("no two keys on different shards among 60..90: %v", rows.Err())
	}
	return w
}

// run runs a client program against the proxy with the workload's environment and
// requires exit status 0 and a last line "OK".
func (w workload) run(t *testing.T, dir string, extraEnv []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(cleanEnv(),
		"TABLE="+w.table,
		fmt.Sprintf("TX_IDS=%d,%d", w.txIDs[0], w.txIDs[1]),
		"PGHOST="+env.P.Host,
		fmt.Sprintf("PGPORT=%d", env.P.Port),
		"PGUSER=postgres",
		"PGDATABASE=postgres",
		"PGSSLMODE=disable",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s ran in %v", name, time.Since(start).Round(time.Millisecond))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err != nil || lines[len(lines)-1] != "OK" {
		t.Fatalf("client workload failed (%v):\n%s", err, out.String())
	}
}

// cleanEnv is the environment without libpq's connection variables, so that only the
// ones run sets reach the client.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}

// verify checks, after a client ran, what the workload must have left: on the workers,
// every row in the shard whose hash range holds hashint8(id), both placements of each
// shard identical, 490 rows in all; through the proxy, the sum and the committed
// transaction's names.
func (w workload) verify(t *testing.T) {
	t.Helper()
	if total := checkPlacements(t, w.table); total != 490 {
		t.Errorf("rows on workers = %d, want 490", total)
	}
	coord := connect(t, env.C.Coordinator.URL("postgres"))
	var n int64
	if err := coord.QueryRow(context.Background(), "select count(*) from "+w.table).Scan(&n); err != nil || n != 0 {
		t.Errorf("coordinator's prototype table holds %d rows (%v)", n, err)
	}
	conn := connect(t, "")
	var count int64
	var sum string
	if err := conn.QueryRow(context.Background(), "select count(*), sum(amount)::text from "+w.table).Scan(&count, &sum); err != nil {
		t.Fatal(err)
	}
	// 1.25 * (1+...+190) + 50 updates of +1, and 1.25 * (1001+...+1300).
	if count != 490 || sum != "454168.75" {
		t.Errorf("count, sum = %d, %s; want 490, 454168.75", count, sum)
	}
	for _, id := range w.txIDs {
		var name string
		if err := conn.QueryRow(context.Background(), fmt.Sprintf("select name from %s where id = %d", w.table, id)).Scan(&name); err != nil || name != "tx-committed" {
			t.Errorf("name of %d = %q (%v), want tx-committed", id, name, err)
		}
	}
}

type shard struct {
	id       int64
	min, max int32
	places   []placement
}

type placement struct {
	id    int64
	state int
	port  int
}

// checkPlacements verifies on the workers that every row of table sits in the shard whose
// range holds hashint8(id), and that all finalized placements of a shard are identical.
// It returns the number of rows.
func checkPlacements(t *testing.T, table string) int64 {
	t.Helper()
	coord := connect(t, env.C.Coordinator.URL("postgres"))
	rows, err := coord.Query(context.Background(), `
		SELECT s.id, s.min_value::int, s.max_value::int, p.id, p.shard_state, p.node_port
		FROM pgs_distribution_metadata.shard s
		JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = $1::regclass ORDER BY s.id, p.id`, table)
	if err != nil {
		t.Fatal(err)
	}
	var shards []shard
	for rows.Next() {
		var s shard
		var p placement
		if err := rows.Scan(&s.id, &s.min, &s.max, &p.id, &p.state, &p.port); err != nil {
			t.Fatal(err)
		}
		if len(shards) == 0 || shards[len(shards)-1].id != s.id {
			shards = append(shards, s)
		}
		shards[len(shards)-1].places = append(shards[len(shards)-1].places, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(shards) != 8 {
		t.Errorf("%d shards, want 8", len(shards))
	}
	workers := map[int]*pgx.Conn{}
	for _, w := range env.C.Workers {
		workers[w.Port] = connect(t, w.URL("postgres"))
	}
	type digest struct {
		rows, misplaced int64
		md5             string
	}
	var total int64
	for _, s := range shards {
		var first *digest
		finalized := 0
		for _, p := range s.places {
			if p.state != 1 {
				t.Errorf("shard %d: placement %d is in state %d", s.id, p.id, p.state)
				continue
			}
			finalized++
			var d digest
			q := fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE NOT (hashint8(id) BETWEEN %d AND %d)),
				coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM %s_%d x`, s.min, s.max, table, s.id)
			if err := workers[p.port].QueryRow(context.Background(), q).Scan(&d.rows, &d.misplaced, &d.md5); err != nil {
				t.Fatalf("shard %d on port %d: %v", s.id, p.port, err)
			}
			if d.misplaced != 0 {
				t.Errorf("shard %d placement %d: %d rows outside [%d, %d]", s.id, p.id, d.misplaced, s.min, s.max)
			}
			if first == nil {
				first = &d
				total += d.rows
			} else if d != *first {
				t.Errorf("shard %d: placement %d (%d rows, %s) differs from its sibling (%d rows, %s)", s.id, p.id, d.rows, d.md5, first.rows, first.md5)
			}
		}
		if finalized != 2 {
			t.Errorf("shard %d has %d finalized placements, want 2", s.id, finalized)
		}
	}
	return total
}

var aptMu sync.Mutex

// aptInstall installs Debian packages (as root), running apt-get update when the first
// attempt fails (a fresh machine has no package lists).
func aptInstall(t *testing.T, pkgs ...string) error {
	t.Helper()
	aptMu.Lock()
	defer aptMu.Unlock()
	apt := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	install := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
	t.Logf("installing %s with apt-get", strings.Join(pkgs, " "))
	if apt(install...) == nil {
		return nil
	}
	if err := apt("update", "-q"); err != nil {
		return err
	}
	return apt(install...)
}

// canApt reports whether aptInstall can work here: root on a system with apt-get.
func canApt() bool {
	_, err := exec.LookPath("apt-get")
	return err == nil && os.Geteuid() == 0
}
