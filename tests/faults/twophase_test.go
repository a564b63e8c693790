package faults

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// Atomic commit under faults: connections cut at each step of two-phase commit (before
// PREPARE, after it, at COMMIT PREPARED), the coordinator connection lost while the
// decision commits, and the proxy process killed between the steps and restarted. After
// each: every transaction wholly present or wholly absent, acknowledged ones present,
// finalized placements identical, and no prepared transaction left once recovery ran.

// blockRows sums, over the table's shards, the rows with lo <= k <= hi that the first
// finalized placement of each shard holds (consistent checks the siblings agree).
func blockRows(t *testing.T, table string, lo, hi int) int64 {
	t.Helper()
	var total int64
	seen := map[int64]bool{}
	for _, p := range placements(t, table) {
		if p.state != 1 || seen[p.shard] {
			continue
		}
		seen[p.shard] = true
		c, err := pgx.Connect(context.Background(), env.c.Workers[p.workerIdx].URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		err = c.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %s_%d WHERE k BETWEEN %d AND %d", table, p.shard, lo, hi)).Scan(&n)
		c.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// prepared counts pgshard's prepared transactions on the workers.
func prepared(t *testing.T) int {
	t.Helper()
	n := 0
	for _, w := range env.c.Workers {
		if !w.Running() {
			continue
		}
		c, err := pgx.Connect(context.Background(), w.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var k int
		err = c.QueryRow(context.Background(), `SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'pgshard\_%'`).Scan(&k)
		c.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return n
}

// recoverAll runs RECOVER TRANSACTIONS through c and checks that nothing is left
// prepared.
func recoverAll(t *testing.T, c conn) {
	t.Helper()
	c.exec(t, "RECOVER TRANSACTIONS")
	if n := prepared(t); n != 0 {
		t.Fatalf("%d prepared transactions left after recovery", n)
	}
}

// blockInsert is the block every scenario commits: rows k = lo..lo+29, on every shard.
func blockInsert(table string, lo int) string {
	return fmt.Sprintf("BEGIN; INSERT INTO %s SELECT g, g, 'block' FROM generate_series(%d, %d) g; COMMIT", table, lo, lo+29)
}

// checkAfter checks the outcome of a scenario: the block's rows are all there (want) or
// none (!want) on the finalized placements, which agree; after recovery and repair too.
func checkAfter(t *testing.T, c conn, tbl string, lo int, want bool) {
	t.Helper()
	recoverAll(t, c)
	consistent(t, tbl)
	n := blockRows(t, tbl, lo, lo+29)
	if want && n != 30 || !want && n != 0 {
		t.Fatalf("%d of the block's 30 rows present (want all: %v)", n, want)
	}
	resetFaults(t)
	repairAll(t, c, tbl)
	consistent(t, tbl)
}

// TestTwoPhaseCutAtPrepare: the connection to one worker is lost when PREPARE TRANSACTION
// reaches it. Every shard it wrote has a sibling placement that prepared: its placements
// are marked inactive before the decision, and COMMIT succeeds. With two workers lost,
// some shard has no prepared placement: the block is rolled back everywhere.
func TestTwoPhaseCutAtPrepare(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action faultproxy.Action
	}{{"before", faultproxy.CutBefore}, {"after", faultproxy.CutAfter}} {
		t.Run(tc.name, func(t *testing.T) {
			defer resetFaults(t)
			c := connect(t)
			tbl := table(t, c, 0)
			rule := env.fps[1].CutOnQuery(`^PREPARE TRANSACTION`, 0, tc.action)
			c.exec(t, blockInsert(tbl, 1))
			<-rule.Fired()
			in := inactive(placements(t, tbl))
			if len(in) == 0 {
				t.Fatal("no placement marked")
			}
			for _, p := range in {
				if p.workerIdx != 1 {
					t.Errorf("placement %d on worker %d marked", p.id, p.workerIdx)
				}
			}
			if !contains(c.warnings(), "is now inactive") {
				t.Error("no warning about the marked placements")
			}
			// A write outside a block to both placements of a shard: the same.
			k, _ := keyOn(t, c, tbl, 0)
			env.fps[0].CutOnQuery(`^PREPARE TRANSACTION`, 0, tc.action)
			c.exec(t, fmt.Sprintf("UPDATE %s SET v = -1 WHERE k = %d", tbl, k))
			if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != -1 {
				t.Fatalf("v = %d", v)
			}
			checkAfter(t, c, tbl, 1, true)
		})
	}
	t.Run("no placement prepared", func(t *testing.T) {
		defer resetFaults(t)
		c := connect(t)
		tbl := table(t, c, 0)
		env.fps[0].CutOnQuery(`^PREPARE TRANSACTION`, 0, faultproxy.CutBefore)
		env.fps[1].CutOnQuery(`^PREPARE TRANSACTION`, 0, faultproxy.CutBefore)
		_, err := c.Exec(context.Background(), blockInsert(tbl, 1))
		if sqlState(err) != "08006" {
			t.Fatalf("COMMIT: %v, want 08006", err)
		}
		if in := inactive(placements(t, tbl)); len(in) != 0 {
			t.Fatalf("placements marked: %+v", in)
		}
		checkAfter(t, c, tbl, 1, false)
	})
}

// TestTwoPhaseCutAtCommitPrepared: the decision is committed, then the connection to one
// worker (or every worker) is lost when COMMIT PREPARED reaches it. The client hears
// COMMIT; the parts are finished over new connections (or by recovery, when a worker
// refuses them); every row is there, on every placement.
func TestTwoPhaseCutAtCommitPrepared(t *testing.T) {
	for _, all := range []bool{false, true} {
		for _, refuse := range []bool{false, true} {
			t.Run(fmt.Sprintf("all=%v,refuse=%v", all, refuse), func(t *testing.T) {
				defer resetFaults(t)
				c := connect(t)
				tbl := table(t, c, 0)
				var rules []*faultproxy.Rule
				for i, fp := range env.fps {
					if all || i == 1 {
						rule := fp.CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore)
						rules = append(rules, rule)
						if refuse {
							// New connections are refused once the cut happened.
							go func() {
								<-rule.Fired()
								fp.SetRefuse(true)
							}()
						}
					}
				}
				c.exec(t, blockInsert(tbl, 1))
				<-rules[0].Fired()
				for _, fp := range env.fps {
					fp.SetRefuse(false)
				}
				checkAfter(t, c, tbl, 1, true)
			})
		}
	}
}

// TestTwoPhaseCoordinatorLost: the session's coordinator connection is lost while the
// decision is recorded (its backend terminated by a trigger on the records' table). The
// client hears that the outcome is unknown (08006); recovery finds the coordinator
// transaction aborted and rolls every part back.
func TestTwoPhaseCoordinatorLost(t *testing.T) {
	defer resetFaults(t)
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 0)
	coord := connectTo(t, env.c.Coordinator.URL("postgres"))
	coord.exec(t, `CREATE OR REPLACE FUNCTION public.tp_kill() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$`,
		`CREATE TRIGGER tp_kill BEFORE INSERT ON pgs_distribution_metadata.transaction FOR EACH ROW EXECUTE FUNCTION public.tp_kill()`)
	dropped := false
	drop := func() {
		if !dropped {
			dropped = true
			coord.exec(t, "DROP TRIGGER tp_kill ON pgs_distribution_metadata.transaction", "DROP FUNCTION public.tp_kill()")
		}
	}
	defer drop()
	_, err := c.Exec(ctx, blockInsert(tbl, 1))
	drop()
	if sqlState(err) != "08006" {
		t.Fatalf("COMMIT: %v, want 08006", err)
	}
	// The session goes on.
	c.exec(t, fmt.Sprintf("INSERT INTO %s VALUES (500, 500, 'after')", tbl))
	checkAfter(t, c, tbl, 1, false)
}

// killScenario runs a block through a `pgshard serve` process: BEGIN and an INSERT of
// rows k = 1..30 (on every shard), then arm arranges the fault and COMMIT is sent; step
// returns when the process is to be killed (SIGKILL). The process is restarted (its
// recovery runs at start) and the outcome checked: the block wholly present or wholly
// absent (present when acknowledged, and as want says when it knows), finalized
// placements identical, nothing left prepared.
func killScenario(t *testing.T, arm func(), step func(t *testing.T), want func() (present, known bool)) {
	defer resetFaults(t)
	bin := buildBinary(t)
	cmd, url := startProcess(t, bin)
	c := connectTo(t, url)
	tbl := table(t, c, 0)
	c.exec(t, "BEGIN", fmt.Sprintf("INSERT INTO %s SELECT g, g, 'block' FROM generate_series(1, 30) g", tbl))
	arm()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "COMMIT")
		done <- err
	}()
	step(t)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for _, fp := range env.fps {
		fp.CutAll() // what a delay still holds never arrives
		fp.Reset()
	}
	acked := <-done == nil
	cmd2, url2 := startProcess(t, bin)
	defer func() {
		cmd2.Process.Signal(syscall.SIGINT)
		cmd2.Wait()
	}()
	c2 := connectTo(t, url2)
	present, known := want()
	recoverAll(t, c2)
	consistent(t, tbl)
	n := blockRows(t, tbl, 1, 30)
	if n != 0 && n != 30 {
		t.Fatalf("%d of the block's 30 rows present", n)
	}
	if acked && n != 30 {
		t.Fatalf("the block was acknowledged, %d rows present", n)
	}
	if known && (n == 30) != present {
		t.Fatalf("%d rows present, want all: %v", n, present)
	}
	repairAll(t, c2, tbl)
	consistent(t, tbl)
}

// waitPrepared waits until some pgshard part is prepared on worker i.
func waitPrepared(t *testing.T, i int) {
	t.Helper()
	for k := 0; k < 600; k++ {
		c, err := pgx.Connect(context.Background(), env.c.Workers[i].URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		c.QueryRow(context.Background(), `SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'pgshard\_%'`).Scan(&n)
		c.Close(context.Background())
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing prepared on worker %d", i)
}

// TestTwoPhaseProxyKilled kills the proxy process at each step of the protocol.
func TestTwoPhaseProxyKilled(t *testing.T) {
	unknown := func() (bool, bool) { return false, false }
	committed := func() (bool, bool) { return true, true }
	t.Run("before PREPARE", func(t *testing.T) {
		var rule *faultproxy.Rule
		killScenario(t, func() {
			rule = env.fps[0].CutOnQuery(`^PREPARE TRANSACTION`, 0, faultproxy.CutBefore)
		}, func(t *testing.T) { <-rule.Fired() }, unknown)
	})
	t.Run("between PREPAREs", func(t *testing.T) {
		// Worker 1's PREPARE is held back (its traffic delayed) while worker 0's is done.
		killScenario(t, func() {
			env.fps[1].SetDelay(3 * time.Second)
		}, func(t *testing.T) { waitPrepared(t, 0) }, func() (bool, bool) { return false, true })
	})
	t.Run("after the decision", func(t *testing.T) {
		// Every COMMIT PREPARED is cut: the decision is recorded, nothing is committed
		// on the workers when the proxy dies.
		var rules []*faultproxy.Rule
		killScenario(t, func() {
			for _, fp := range env.fps {
				rules = append(rules, fp.CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore))
			}
		}, func(t *testing.T) { <-rules[0].Fired() }, committed)
	})
	t.Run("between COMMIT PREPAREDs", func(t *testing.T) {
		var rule *faultproxy.Rule
		killScenario(t, func() {
			rule = env.fps[1].CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore)
		}, func(t *testing.T) { <-rule.Fired() }, committed)
	})
}

// TestTwoPhaseWorkerDownUntilRecovery: a worker stops after its part prepared and before
// COMMIT PREPARED reaches it; recovery cannot reach it and keeps its record; once it is
// back, recovery commits its part.
func TestTwoPhaseWorkerDownUntilRecovery(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 0)
	rule := env.fps[2].CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore)
	c.exec(t, blockInsert(tbl, 1))
	<-rule.Fired()
	env.fps[2].SetRefuse(true)
	c.exec(t, "RECOVER TRANSACTIONS")
	coord := connectTo(t, env.c.Coordinator.URL("postgres"))
	if n := coord.int(t, "SELECT count(*) FROM pgs_distribution_metadata.transaction"); n == 0 {
		t.Fatal("the unreachable worker's records were deleted")
	}
	rows, err := c.Query(context.Background(), "SHOW TRANSACTIONS")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := false
	for rows.Next() {
		v, _ := rows.Values()
		if fmt.Sprint(v[3]) == "unreachable" {
			unreachable = true
		}
	}
	rows.Close()
	if !unreachable {
		t.Error("SHOW TRANSACTIONS does not show the unreachable worker")
	}
	env.fps[2].SetRefuse(false)
	recoverAll(t, c)
	if n := coord.int(t, "SELECT count(*) FROM pgs_distribution_metadata.transaction"); n != 0 {
		t.Fatalf("%d records left", n)
	}
	checkAfter(t, c, tbl, 1, true)
}

// TestProxyStoppedMidWrite is the reproduction: B's autocommit UPDATE x = x + 1
// of a replicated shard has run on the shard's first placement and waits on the second
// (in the issue for a pooled connection, here for a row lock a direct session holds
// there); the proxy is stopped (SIGTERM, then SIGKILL, or SIGKILL at once). The
// placements must not differ unless one is marked inactive.
func TestProxyStoppedMidWrite(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			defer resetFaults(t)
			bin := buildBinary(t)
			cmd, url := startProcess(t, bin)
			a := connectTo(t, url)
			tbl := table(t, a, 100)
			k, shard := keyOn(t, a, tbl, 0)
			second := -1
			for _, p := range placements(t, tbl) {
				if p.shard == shard && p.workerIdx != 0 {
					second = p.workerIdx
				}
			}
			direct := connectTo(t, env.c.Workers[second].URL("postgres"))
			direct.exec(t, "BEGIN", fmt.Sprintf("SELECT * FROM %s_%d WHERE k = %d FOR UPDATE", tbl, shard, k))
			b := connectTo(t, url)
			done := make(chan error, 1)
			go func() {
				_, err := b.Exec(context.Background(), fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, k))
				done <- err
			}()
			// B's write ran on the first placement and waits on the second.
			waitActivity(t, 0, fmt.Sprintf("%s_%d", tbl, shard))
			waitActivity(t, second, fmt.Sprintf("%s_%d", tbl, shard))
			cmd.Process.Signal(sig)
			if sig == syscall.SIGTERM {
				time.Sleep(200 * time.Millisecond)
				cmd.Process.Signal(syscall.SIGKILL)
			}
			cmd.Wait()
			<-done
			direct.exec(t, "ROLLBACK")
			cmd2, url2 := startProcess(t, bin)
			defer func() {
				cmd2.Process.Signal(syscall.SIGINT)
				cmd2.Wait()
			}()
			c2 := connectTo(t, url2)
			recoverAll(t, c2)
			consistent(t, tbl)
			repairAll(t, c2, tbl)
			consistent(t, tbl)
		})
	}
}

// waitActivity waits until a backend on worker i has run (or runs) a statement that
// mentions name.
func waitActivity(t *testing.T, i int, name string) {
	t.Helper()
	for k := 0; k < 500; k++ {
		c, err := pgx.Connect(context.Background(), env.c.Workers[i].URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		c.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid() AND query LIKE '%UPDATE%' AND query NOT LIKE '%FOR UPDATE%'`, name).Scan(&n)
		c.Close(context.Background())
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no statement on %s reached worker %d", name, i)
}
