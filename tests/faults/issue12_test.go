package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Issue 12's replication defects, each as its reproduction. Every test ends by checking
// that no two finalized placements of a shard differ (consistent) and that the rows hold
// exactly the acknowledged writes (plus at most those in doubt).

// keyInShard returns a key k in 1..1000 of table's shard.
func keyInShard(t testing.TB, table string, shard int64) int {
	t.Helper()
	var lo, hi int32
	for _, p := range placements(t, table) {
		if p.shard == shard {
			lo, hi = p.min, p.max
		}
	}
	c, err := pgx.Connect(context.Background(), env.c.Coordinator.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for k := 1; k <= 1000; k++ {
		var h int32
		if err := c.QueryRow(context.Background(), "select hashint4($1)", k).Scan(&h); err != nil {
			t.Fatal(err)
		}
		if h >= lo && h <= hi {
			return k
		}
	}
	t.Fatalf("no key in shard %d", shard)
	return 0
}

// waitBackendsGone waits until no worker has a client backend idle in a transaction or
// running one (a killed proxy's backends notice their client is gone).
func waitBackendsGone(t testing.TB) {
	t.Helper()
	for i := 0; i < 100; i++ {
		busy := false
		for _, w := range env.c.Workers {
			res, err := w.Exec(context.Background(), "postgres", `SELECT count(*) FROM pg_stat_activity
				WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state <> 'idle'`)
			if err == nil && len(res) > 0 && len(res[0].Rows) > 0 && string(res[0].Rows[0][0]) != "0" {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIssue12ProxyStoppedMidWrite: B's autocommit UPDATE ... SET v = v + 1 of a
// replicated shard reaches its first placement and waits at the second (issue 12 made it
// wait for a connection with --pool-size 1; sessions now keep their coordinator connection,
// so pool size 1 admits one session per user, and here the second placement's row is
// locked on its worker instead); the proxy process is then stopped (SIGKILL, SIGTERM). No
// two finalized placements may differ afterwards: the write is on both, on neither, or
// the placement without it is marked inactive.
func TestIssue12ProxyStoppedMidWrite(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		sig  syscall.Signal
		pool bool // wait for a pooled connection (else for a row lock)
	}{{syscall.SIGKILL, false}, {syscall.SIGTERM, false}, {syscall.SIGKILL, true}, {syscall.SIGTERM, true}} {
		sig := tc.sig
		name := sig.String() + map[bool]string{false: " row lock", true: " pool"}[tc.pool]
		t.Run(name, func(t *testing.T) {
			defer resetFaults(t)
			p := newProcProxy(t, "p", bin, env.c.Coordinator.URL("postgres"), "--pool-size", "1", "--repair-interval", "0")
			if err := p.start(context.Background()); err != nil {
				t.Fatal(err)
			}
			a := connectTo(t, p.url())
			tbl := table(t, a, 100)
			a.Close(context.Background())
			ps := placements(t, tbl)
			shard, wb := ps[0].shard, ps[1].workerIdx
			kB := keyInShard(t, tbl, shard)
			lock := connectTo(t, env.c.Workers[wb].URL("postgres"))
			b := connectTo(t, p.url())
			if tc.pool {
				// A fresh session reads, in a block, from a shard with one placement on
				// worker wb: it holds the pool's only connection to wb.
				solo := uniqueName("solo")
				setup := connectTo(t, simpleURL(env.p))
				setup.exec(t, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL)", solo),
					fmt.Sprintf("select master_create_distributed_table('%s', 'k')", solo),
					fmt.Sprintf("select master_create_worker_shards('%s', 3, 1)", solo),
					fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 100) g", solo))
				var soloShard int64 = -1
				for _, sp := range placements(t, solo) {
					if sp.workerIdx == wb {
						soloShard = sp.shard
					}
				}
				a := connectTo(t, p.url())
				a.exec(t, "BEGIN")
				a.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", solo, keyInShard(t, solo, soloShard)))
			} else {
				// The row is locked on the second placement's worker, behind pgshard's back.
				lock.exec(t, "BEGIN", fmt.Sprintf("SELECT 1 FROM %s_%d WHERE k = %d FOR UPDATE", tbl, shard, kB))
			}
			done := make(chan error, 1)
			go func() {
				_, err := b.Exec(context.Background(), fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, kB))
				done <- err
			}()
			if tc.pool {
				waitQuery(t, ps[0].workerIdx, fmt.Sprintf("%s_%d", tbl, shard))
			} else {
				waitLockWait(t, wb)
			}
			select {
			case err := <-done:
				t.Fatalf("B's UPDATE ended before the proxy was stopped (%v): the reproduction needs it waiting", err)
			default:
			}
			if sig == syscall.SIGKILL {
				p.signal(sig, 0)
			} else {
				p.signal(sig, 30*time.Second)
			}
			err := <-done
			t.Logf("B's UPDATE: %v", err)
			if !tc.pool {
				lock.exec(t, "ROLLBACK")
			}
			waitBackendsGone(t)
			for _, pl := range placements(t, tbl) {
				if pl.shard == shard {
					t.Logf("placement %d on worker %d: state %d, %s", pl.id, pl.workerIdx, pl.state, digest(t, tbl, pl))
				}
			}
			consistent(t, tbl)
		})
	}
}

// waitQuery waits until a backend on worker idx has run a statement naming table.
func waitQuery(t testing.TB, idx int, table string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		res, err := env.c.Workers[idx].Exec(context.Background(), "postgres",
			"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%"+table+"%' AND pid <> pg_backend_pid()")
		if err == nil && len(res) > 0 && len(res[0].Rows) > 0 && string(res[0].Rows[0][0]) != "0" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the write never reached worker %d: the reproduction needs it there", idx)
}

// lockWaits describes the backends waiting for a lock on the coordinator and the workers.
func lockWaits() string {
	var b strings.Builder
	for _, w := range env.c.Servers() {
		res, err := w.Exec(context.Background(), "postgres", `SELECT pid || ' (' || application_name || ') waits for ' || array_to_string(pg_blocking_pids(pid), ',') || ': ' || left(query, 100)
			FROM pg_stat_activity WHERE wait_event_type = 'Lock'`)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", w.Name, err)
			continue
		}
		for _, r := range res {
			for _, row := range r.Rows {
				fmt.Fprintf(&b, "%s: %s\n", w.Name, row[0])
			}
		}
	}
	return b.String()
}

// waitLockWait waits until a backend on worker idx waits for a lock.
func waitLockWait(t testing.TB, idx int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		res, err := env.c.Workers[idx].Exec(context.Background(), "postgres",
			"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
		if err == nil && len(res) > 0 && len(res[0].Rows) > 0 && string(res[0].Rows[0][0]) != "0" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no backend on worker %d waits for a lock", idx)
}

// TestIssue12LeaseConnectionsTerminated: two proxies append letters to one row of a
// replicated shard (UPDATE ... SET s = s || 'a' through one, 'b' through the other) while
// the proxies' coordinator connections (the lease connections of issue 12's time, the
// sessions' connections holding the write locks now) are terminated again and again. The placements must not diverge (same letters in another order), and
// the row holds every acknowledged letter.
func TestIssue12LeaseConnectionsTerminated(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 10)
	c.exec(t, fmt.Sprintf("UPDATE %s SET s = '' WHERE k = 1", tbl))
	p2 := startProxy(t)
	ctx, stop := context.WithTimeout(context.Background(), 8*time.Second)
	defer stop()
	var wg sync.WaitGroup
	var ackedN, doubtN [2]atomic.Int64
	var failedN [2]atomic.Int64
	var hung atomic.Int64
	for i, url := range []string{simpleURL(env.p), simpleURL(p2)} {
		letter := string(rune('a' + i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				cc, err := pgx.Connect(context.Background(), url)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				for ctx.Err() == nil && !cc.IsClosed() {
					// A deadline past pgshard's own 30 s bound on lock waits ends a wait that
					// never ends otherwise.
					wctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
					_, err := cc.Exec(wctx, fmt.Sprintf("UPDATE %s SET s = s || '%s' WHERE k = 1", tbl, letter))
					if errors.Is(wctx.Err(), context.DeadlineExceeded) && hung.Add(1) == 1 {
						t.Logf("lock waits on the servers when an UPDATE through %s hung:\n%s", letter, lockWaits())
					}
					cancel()
					switch classify(err, true) {
					case acked:
						ackedN[i].Add(1)
					case unknown:
						doubtN[i].Add(1)
					default:
						failedN[i].Add(1)
					}
				}
				cc.Close(context.Background())
			}
		}()
	}
	terminated := 0
	for ctx.Err() == nil {
		time.Sleep(time.Duration(100+rand.Intn(200)) * time.Millisecond)
		// pgshard's own connections ("pgshard ..."), and the sessions' coordinator
		// connections, which hold the write locks since leases gave way to them.
		res, err := env.c.Coordinator.Exec(context.Background(), "postgres", `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
		if err == nil && len(res) > 0 && len(res[0].Rows) > 0 && string(res[0].Rows[0][0]) != "0" {
			terminated++
		}
	}
	wg.Wait()
	t.Logf("%d rounds of terminations; a: %d acknowledged, %d in doubt, %d failed; b: %d acknowledged, %d in doubt, %d failed",
		terminated, ackedN[0].Load(), doubtN[0].Load(), failedN[0].Load(), ackedN[1].Load(), doubtN[1].Load(), failedN[1].Load())
	if terminated == 0 {
		t.Fatal("no pgshard coordinator connection was terminated: the fault never happened")
	}
	if n := hung.Load(); n > 0 {
		t.Errorf("%d UPDATEs still waited after 45 s, past pgshard's 30 s bound on lock waits", n)
	}
	consistent(t, tbl)
	var s string
	if err := c.QueryRow(context.Background(), fmt.Sprintf("SELECT s FROM %s WHERE k = 1", tbl)).Scan(&s); err != nil {
		t.Fatal(err)
	}
	for i, letter := range []string{"a", "b"} {
		n := int64(strings.Count(s, letter))
		if n < ackedN[i].Load() || n > ackedN[i].Load()+doubtN[i].Load() {
			t.Errorf("the row holds %d %q; %d acknowledged, %d in doubt", n, letter, ackedN[i].Load(), doubtN[i].Load())
		}
	}
}

// TestIssue12MarksWhileCoordinatorDown: clients increment counters through a proxy that
// has its locks (leases) in hand; the coordinator stops, and while it is down a worker
// crashes. A write that cannot record the mark of the placement it missed must fail (and
// be absent), never be acknowledged: afterwards no two finalized placements differ, and
// every counter equals its acknowledged increments (plus at most those in doubt).
func TestIssue12MarksWhileCoordinatorDown(t *testing.T) {
	defer resetFaults(t)
	defer env.c.Coordinator.Start(context.Background())
	c := connect(t)
	tbl := table(t, c, 40)
	p := startProxy(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var mu sync.Mutex
	ack, doubt, fail := map[int]int64{}, map[int]int64{}, map[int]int64{}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		cc := connectTo(t, simpleURL(p))
		rng := rand.New(rand.NewSource(int64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !cc.IsClosed() {
				k := 1 + rng.Intn(40)
				wctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				_, err := cc.Exec(wctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, k))
				cancel()
				mu.Lock()
				switch classify(err, true) {
				case acked:
					ack[k]++
				case unknown:
					doubt[k]++
				default:
					fail[k]++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	if err := env.c.Coordinator.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := env.c.Workers[1].Crash(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := env.c.Coordinator.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := env.c.Workers[1].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	var nAck, nDoubt, nFail int64
	for k := 1; k <= 40; k++ {
		nAck, nDoubt, nFail = nAck+ack[k], nDoubt+doubt[k], nFail+fail[k]
	}
	t.Logf("increments: %d acknowledged, %d in doubt, %d failed", nAck, nDoubt, nFail)
	consistent(t, tbl)
	c2 := connect(t)
	rows, err := c2.Query(context.Background(), fmt.Sprintf("SELECT k, v FROM %s ORDER BY k", tbl))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	bad := 0
	for rows.Next() {
		var k int
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		if n := v - int64(k); n < ack[k] || n > ack[k]+doubt[k] {
			bad++
			if bad <= 5 {
				t.Errorf("k %d: %d increments applied; %d acknowledged, %d in doubt, %d failed", k, n, ack[k], doubt[k], fail[k])
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d counters in all differ from their acknowledged increments", bad)
	}
}
