package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/faultproxy"
)

// procProxy is a `pgshard serve` process that can be killed and started again on the
// same address, so that its clients find it again.
type procProxy struct {
	name  string
	bin   string
	addr  string
	coord string
	args  []string // extra flags
	logf  string   // the process's stderr, appended to across restarts

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// newProcProxy reserves a port for a proxy process; start launches it.
func newProcProxy(t testing.TB, name, bin, coord string, args ...string) *procProxy {
	t.Helper()
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &procProxy{name: name, bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port), coord: coord, args: args,
		logf: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() { p.signal(syscall.SIGKILL, 0) })
	return p
}

// url is a client URL for the proxy (simple protocol unless the caller adds otherwise).
func (p *procProxy) url() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=5&default_query_exec_mode=simple_protocol", p.addr)
}

// running reports whether the process is up.
func (p *procProxy) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// start launches the process and waits until it accepts a session, launching it again
// when it exits during startup (the coordinator may be down for a moment).
func (p *procProxy) start(ctx context.Context) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		if err := p.launch(); err != nil {
			return err
		}
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		for {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			c, err := pgx.Connect(cctx, p.url())
			cancel()
			if err == nil {
				c.Close(ctx)
				return nil
			}
			if time.Now().After(deadline) {
				p.signal(syscall.SIGKILL, 0)
				return fmt.Errorf("%s did not start: %w (log %s)", p.name, err, p.logTail())
			}
			exited := false
			select {
			case <-done:
				exited = true
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if exited {
				p.mu.Lock()
				p.cmd, p.done = nil, nil
				p.mu.Unlock()
				time.Sleep(300 * time.Millisecond)
				break
			}
		}
	}
}

func (p *procProxy) launch() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(p.logf, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("proxy log: %w", err)
	}
	args := append([]string{"serve", "--listen", p.addr, "--coordinator", p.coord, "--log-level", "warn"}, p.args...)
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// signal sends sig and waits up to wait for the process to exit (then kills it); wait 0
// waits for as long as SIGKILL takes.
func (p *procProxy) signal(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	if wait > 0 {
		select {
		case <-done:
		case <-time.After(wait):
			cmd.Process.Kill()
		}
	}
	<-done
	p.mu.Lock()
	if p.cmd == cmd {
		p.cmd, p.done = nil, nil
	}
	p.mu.Unlock()
}

func (p *procProxy) logTail() string {
	b, _ := os.ReadFile(p.logf)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// killServer stops a PostgreSQL server as kill -9 would: SIGKILL to the postmaster and
// every process it started, at once (a lost machine: no shutdown of any kind).
func killServer(s *cluster.Server) error {
	b, err := os.ReadFile(filepath.Join(s.Dir, "postmaster.pid"))
	if err != nil {
		return s.Crash()
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return s.Crash()
	}
	pids := []int{pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			pids = append(pids, child)
		}
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	// Crash collects the dead postmaster (its SIGQUIT finds nothing to stop).
	return s.Crash()
}

// startServer starts a server again, retrying while the remains of a killed one (backends
// still attached to the old shared memory) keep it from starting.
func startServer(ctx context.Context, s *cluster.Server) error {
	var err error
	for i := 0; i < 20; i++ {
		if s.Running() {
			return nil
		}
		if err = s.Start(ctx); err == nil {
			return nil
		}
		s.Crash()
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return err
}

// campaignEnv is a cluster of its own for the campaign: a coordinator, workers registered
// through fault proxies, and proxy processes.
type campaignEnv struct {
	c       *cluster.Cluster
	fps     []*faultproxy.Proxy
	proxies []*procProxy
}

// startCampaignEnv starts a coordinator and n workers, registers the workers through fault
// proxies, and starts proxies proxy processes with the given flags.
func startCampaignEnv(t testing.TB, workers, proxies int, flags ...string) *campaignEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	e := &campaignEnv{c: c}
	t.Cleanup(func() { c.Close() })
	for _, w := range c.Workers {
		fp, err := faultproxy.Start(w.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fp.Close)
		e.fps = append(e.fps, fp)
	}
	bin := buildBinary(t)
	for i := 0; i < proxies; i++ {
		p := newProcProxy(t, fmt.Sprintf("proxy%d", i+1), bin, c.Coordinator.URL("postgres"), flags...)
		if err := p.start(ctx); err != nil {
			t.Fatal(err)
		}
		e.proxies = append(e.proxies, p)
	}
	admin := e.admin(t)
	defer admin.Close(ctx)
	for _, fp := range e.fps {
		if _, err := admin.Exec(ctx, fmt.Sprintf("select master_add_node('%s', %d)", fp.Host(), fp.Port())); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// admin connects to the first proxy.
func (e *campaignEnv) admin(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.proxies[0].url())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// workerIdx maps a placement's node port (a fault proxy's) to the worker's index.
func (e *campaignEnv) workerIdx(port int) int {
	for i, fp := range e.fps {
		if fp.Port() == port {
			return i
		}
	}
	return -1
}

// cplacement is a placement as the coordinator's metadata has it.
type cplacement struct {
	id, shard int64
	state     int
	worker    int
}

// placementsOf reads a table's placements from the coordinator, in shard and id order.
func (e *campaignEnv) placementsOf(ctx context.Context, table string) ([]cplacement, error) {
	c, err := pgx.Connect(ctx, e.c.Coordinator.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT p.id, s.id, p.shard_state, p.node_port
		FROM pgs_distribution_metadata.shard s JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = $1::regclass ORDER BY s.id, p.id`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []cplacement
	for rows.Next() {
		var p cplacement
		var port int
		if err := rows.Scan(&p.id, &p.shard, &p.state, &port); err != nil {
			return nil, err
		}
		p.worker = e.workerIdx(port)
		out = append(out, p)
	}
	return out, rows.Err()
}

// placementRows reads a placement's rows as text, counted, directly from its worker.
func (e *campaignEnv) placementRows(ctx context.Context, table string, p cplacement) (map[string]int, error) {
	c, err := pgx.Connect(ctx, e.c.Workers[p.worker].URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT x::text FROM %s_%d x", table, p.shard))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out[s]++
	}
	return out, rows.Err()
}

// diffRows describes how two placements' rows differ (empty when they are the same).
func diffRows(a, b map[string]int) []string {
	var diff []string
	for r, n := range a {
		if b[r] != n {
			diff = append(diff, fmt.Sprintf("%dx / %dx: %s", n, b[r], r))
		}
	}
	for r, n := range b {
		if _, ok := a[r]; !ok {
			diff = append(diff, fmt.Sprintf("0x / %dx: %s", n, r))
		}
	}
	return diff
}

// divergedShards compares every pair of finalized placements of each shard of the tables,
// row by row, and describes each pair that differs.
func (e *campaignEnv) divergedShards(ctx context.Context, tables ...string) ([]string, error) {
	var out []string
	for _, tbl := range tables {
		ps, err := e.placementsOf(ctx, tbl)
		if err != nil {
			return nil, err
		}
		first := map[int64]cplacement{}
		firstRows := map[int64]map[string]int{}
		for _, p := range ps {
			if p.state != 1 {
				continue
			}
			rows, err := e.placementRows(ctx, tbl, p)
			if err != nil {
				return nil, fmt.Errorf("placement %d of %s: %w", p.id, tbl, err)
			}
			f, ok := first[p.shard]
			if !ok {
				first[p.shard], firstRows[p.shard] = p, rows
				continue
			}
			if d := diffRows(firstRows[p.shard], rows); len(d) > 0 {
				if len(d) > 6 {
					d = append(d[:6], fmt.Sprintf("... (%d rows in all)", len(d)))
				}
				out = append(out, fmt.Sprintf("%s shard %d: finalized placements %d (worker %d) and %d (worker %d) differ:\n  %s",
					tbl, p.shard, f.id, f.worker, p.id, p.worker, strings.Join(d, "\n  ")))
			}
		}
	}
	return out, nil
}

// preparedXacts lists the prepared transactions left on the workers.
func (e *campaignEnv) preparedXacts(ctx context.Context) ([]string, error) {
	var out []string
	for _, w := range e.c.Workers {
		res, err := w.Exec(ctx, "postgres", "SELECT gid || ' (' || prepared || ')' FROM pg_prepared_xacts")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.Name, err)
		}
		for _, r := range res {
			for _, row := range r.Rows {
				out = append(out, w.Name+": "+string(row[0]))
			}
		}
	}
	return out, nil
}

// inactiveShards lists the shards of the tables with an inactive placement.
func (e *campaignEnv) inactiveShards(ctx context.Context, tables ...string) ([]int64, error) {
	var out []int64
	seen := map[int64]bool{}
	for _, tbl := range tables {
		ps, err := e.placementsOf(ctx, tbl)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if p.state != 1 && !seen[p.shard] {
				seen[p.shard] = true
				out = append(out, p.shard)
			}
		}
	}
	return out, nil
}
