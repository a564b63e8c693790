package faults

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// COPY into replicated distributed tables under faults: the proxy process killed at
// each step of the two-phase commit that ends a COPY outside a transaction block, and
// of a block that wrote with COPY. After each: the COPY's rows wholly present or wholly
// absent, finalized placements identical, nothing left prepared once recovery ran.

// copyKill is one scenario of copyKillScenario.
type copyKill struct {
	// block: the COPY runs in a transaction block, followed by an UPDATE of its rows and
	// COMMIT; else it commits on its own.
	block bool
	// setup, if set, runs once the table exists, before the COPY (and its block) starts.
	setup func(t *testing.T, tbl string)
	// arm arranges the fault before the committing statement (COPY or COMMIT) is sent.
	arm func()
	// step returns when the process is to be killed; st says whether the committing
	// statement ended first (which no scenario expects).
	step func(t *testing.T, st *stmtRun)
	// killed, if set, runs after the kill, before the restart.
	killed func(t *testing.T)
	// want says whether the COPY's rows must be present (present), when known.
	want func() (present, known bool)
}

// copyKillScenario runs COPY of rows k = 1..30 (on every shard) through a `pgshard
// serve` process: alone, or in a block followed by an UPDATE of its rows and COMMIT.
// The process is killed (SIGKILL) at the scenario's step, restarted, and the outcome
// checked as killScenario does.
func copyKillScenario(t *testing.T, sc copyKill) {
	defer resetFaults(t)
	bin := buildBinary(t)
	cmd, url := startProcess(t, bin)
	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
		}
	}
	// Runs before c's cleanup closes it: the process is gone, so the statement on c
	// has ended (or was never started) once this returns.
	defer kill()
	c := connectTo(t, url)
	tbl := table(t, c, 0)
	if sc.setup != nil {
		sc.setup(t, tbl)
	}
	var data strings.Builder
	for k := 1; k <= 30; k++ {
		fmt.Fprintf(&data, "%d\t%d\tcopy\n", k, k)
	}
	copySQL := fmt.Sprintf("COPY %s (k, v, s) FROM STDIN", tbl)
	if sc.block {
		c.exec(t, "BEGIN")
		if _, err := c.PgConn().CopyFrom(context.Background(), strings.NewReader(data.String()), copySQL); err != nil {
			t.Fatal(err)
		}
		c.exec(t, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k <= 30", tbl))
	}
	sc.arm()
	// The committing statement runs on c in a goroutine of its own, which every path
	// out of this function waits for (after the kill, which ends it): c is not closed
	// under it.
	st := &stmtRun{ended: make(chan struct{})}
	go func() {
		defer close(st.ended)
		if sc.block {
			_, st.err = c.Exec(context.Background(), "COMMIT")
		} else {
			_, st.err = c.PgConn().CopyFrom(context.Background(), strings.NewReader(data.String()), copySQL)
		}
	}()
	defer func() {
		kill()
		<-st.ended
	}()
	sc.step(t, st)
	kill()
	for _, fp := range env.fps {
		fp.CutAll()
		fp.Reset()
	}
	<-st.ended
	acked := st.err == nil
	if sc.killed != nil {
		sc.killed(t)
	}
	cmd2, url2 := startProcess(t, bin)
	defer func() {
		cmd2.Process.Signal(syscall.SIGINT)
		cmd2.Wait()
	}()
	c2 := connectTo(t, url2)
	present, known := sc.want()
	recoverAll(t, c2)
	consistent(t, tbl)
	n := blockRows(t, tbl, 1, 30)
	if n != 0 && n != 30 {
		t.Fatalf("%d of the COPY's 30 rows present", n)
	}
	if acked && n != 30 {
		t.Fatalf("the COPY was acknowledged, %d rows present", n)
	}
	if known && (n == 30) != present {
		t.Fatalf("%d rows present, want all: %v", n, present)
	}
	if sc.block && n == 30 {
		if s := c2.int(t, fmt.Sprintf("SELECT sum(v) FROM %s", tbl)); s != 30*31/2+30*1000 {
			t.Fatalf("sum(v) = %d: the block's UPDATE is not all there", s)
		}
	}
	repairAll(t, c2, tbl)
	consistent(t, tbl)
}

// stmtRun is the committing statement of a scenario, running.
type stmtRun struct {
	ended chan struct{} // closed when it ended
	err   error         // its outcome, once ended
}

// fired returns when the rule fired (or fails the test when the committing statement
// ended without it).
func fired(rule **faultproxy.Rule) func(t *testing.T, st *stmtRun) {
	return func(t *testing.T, st *stmtRun) {
		t.Helper()
		select {
		case <-(*rule).Fired():
		case <-st.ended:
			select {
			case <-(*rule).Fired():
			default:
				t.Fatalf("the statement ended (%v) before its fault fired", st.err)
			}
		}
	}
}

// holdKey is the advisory lock that holds PREPARE TRANSACTION on a worker (prepareHold).
const holdKey = 727272

// prepareHold holds every PREPARE TRANSACTION of a table's parts on one worker: a
// deferred constraint trigger on its shard tables there takes the advisory lock holdKey
// at PREPARE (deferred triggers fire before the transaction is prepared), which a
// connection of the test holds. So a kill "between PREPAREs" is a state of the workers,
// not a moment: the other workers' parts prepared, this one's backends waiting for the
// lock, unprepared.
type prepareHold struct {
	worker int
	holder conn
	table  string
	shards []int64
}

// install creates the trigger on the worker's placements of tbl and takes the lock.
func (h *prepareHold) install(t *testing.T, tbl string) {
	t.Helper()
	w := connectTo(t, env.c.Workers[h.worker].URL("postgres"))
	w.exec(t, fmt.Sprintf(`CREATE OR REPLACE FUNCTION pgs_test_hold_prepare() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_catalog.pg_advisory_xact_lock(%d); RETURN NULL; END $$`, holdKey))
	for _, p := range placements(t, tbl) {
		if p.workerIdx == h.worker {
			w.exec(t, fmt.Sprintf(`CREATE CONSTRAINT TRIGGER pgs_test_hold AFTER INSERT OR UPDATE ON %s_%d
				DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pgs_test_hold_prepare()`, tbl, p.shard))
			h.shards = append(h.shards, p.shard)
		}
	}
	if len(h.shards) == 0 {
		t.Fatalf("no placement of %s on worker %d", tbl, h.worker)
	}
	h.holder, h.table = w, tbl
	w.exec(t, fmt.Sprintf("SELECT pg_catalog.pg_advisory_lock(%d)", holdKey))
}

// waiters counts the worker's backends waiting for the lock.
func (h *prepareHold) waiters(t *testing.T) int64 {
	t.Helper()
	return h.holder.int(t, fmt.Sprintf("SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %d AND NOT granted", holdKey))
}

// betweenPrepares returns once a part is prepared on worker prep and a part of the hold's
// worker waits at its PREPARE: the decision cannot have been made.
func (h *prepareHold) betweenPrepares(prep int) func(t *testing.T, st *stmtRun) {
	return func(t *testing.T, st *stmtRun) {
		t.Helper()
		// The bound only keeps a broken product from hanging the test: the state is
		// reached within seconds on an idle machine.
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if preparedOn(t, prep) > 0 && h.waiters(t) > 0 {
				return
			}
			select {
			case <-st.ended:
				t.Fatalf("the statement ended (%v) before worker %d prepared while worker %d waited at PREPARE", st.err, prep, h.worker)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %d never prepared while worker %d waited at PREPARE (prepared there: %d, waiting: %d)",
					prep, h.worker, preparedOn(t, prep), h.waiters(t))
			}
		}
	}
}

// release ends the backends waiting for the lock (their connections are gone with the
// proxy, and they would prepare once the lock is free), then frees the lock.
func (h *prepareHold) release(t *testing.T) {
	t.Helper()
	q := fmt.Sprintf("SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = %d AND NOT granted", holdKey)
	for h.holder.int(t, q) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	h.holder.exec(t, fmt.Sprintf("SELECT pg_catalog.pg_advisory_unlock(%d)", holdKey))
	for _, id := range h.shards {
		h.holder.exec(t, fmt.Sprintf("DROP TRIGGER pgs_test_hold ON %s_%d", h.table, id))
	}
}

// preparedOn counts pgshard's prepared transactions on worker i.
func preparedOn(t *testing.T, i int) int64 {
	t.Helper()
	c, err := pgx.Connect(context.Background(), env.c.Workers[i].URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_catalog.pg_prepared_xacts WHERE gid LIKE 'pgshard\_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCopyTwoPhaseProxyKilled kills the proxy process at each step of the two-phase
// commit of a COPY, outside and inside a transaction block.
func TestCopyTwoPhaseProxyKilled(t *testing.T) {
	unknown := func() (bool, bool) { return false, false }
	absent := func() (bool, bool) { return false, true }
	committed := func() (bool, bool) { return true, true }
	for _, block := range []bool{false, true} {
		name := "own"
		if block {
			name = "block"
		}
		t.Run(name+"/before PREPARE", func(t *testing.T) {
			var rule *faultproxy.Rule
			copyKillScenario(t, copyKill{block: block, arm: func() {
				rule = env.fps[0].CutOnQuery(`^PREPARE TRANSACTION`, 0, faultproxy.CutBefore)
			}, step: fired(&rule), want: unknown})
		})
		t.Run(name+"/between PREPAREs", func(t *testing.T) {
			// Worker 1's parts wait at PREPARE TRANSACTION (prepareHold) while worker
			// 0's prepare: the kill comes before the decision, so nothing may commit.
			h := &prepareHold{worker: 1}
			copyKillScenario(t, copyKill{block: block, setup: h.install, arm: func() {},
				step: h.betweenPrepares(0), killed: h.release, want: absent})
		})
		t.Run(name+"/after the decision", func(t *testing.T) {
			var rules []*faultproxy.Rule
			var rule *faultproxy.Rule
			copyKillScenario(t, copyKill{block: block, arm: func() {
				for _, fp := range env.fps {
					rules = append(rules, fp.CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore))
				}
				rule = rules[0]
			}, step: fired(&rule), want: committed})
		})
		t.Run(name+"/between COMMIT PREPAREDs", func(t *testing.T) {
			var rule *faultproxy.Rule
			copyKillScenario(t, copyKill{block: block, arm: func() {
				rule = env.fps[1].CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore)
			}, step: fired(&rule), want: committed})
		})
	}
}
