package faults

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// COPY into replicated distributed tables under faults: the proxy process killed at
// each step of the two-phase commit that ends a COPY outside a transaction block, and
// of a block that wrote with COPY. After each: the COPY's rows wholly present or wholly
// absent, finalized placements identical, nothing left prepared once recovery ran.

// copyKillScenario runs COPY of rows k = 1..30 (on every shard) through a `pgshard
// serve` process: alone (block false), or in a block followed by an UPDATE of its rows
// and COMMIT. arm arranges the fault before the committing statement is sent; step
// returns when the process is to be killed (SIGKILL). The process is restarted and the
// outcome checked as killScenario does.
func copyKillScenario(t *testing.T, block bool, arm func(), step func(t *testing.T), want func() (present, known bool)) {
	defer resetFaults(t)
	bin := buildBinary(t)
	cmd, url := startProcess(t, bin)
	c := connectTo(t, url)
	tbl := table(t, c, 0)
	var data strings.Builder
	for k := 1; k <= 30; k++ {
		fmt.Fprintf(&data, "%d\t%d\tcopy\n", k, k)
	}
	copySQL := fmt.Sprintf("COPY %s (k, v, s) FROM STDIN", tbl)
	if block {
		c.exec(t, "BEGIN")
		if _, err := c.PgConn().CopyFrom(context.Background(), strings.NewReader(data.String()), copySQL); err != nil {
			t.Fatal(err)
		}
		c.exec(t, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k <= 30", tbl))
	}
	arm()
	done := make(chan error, 1)
	go func() {
		var err error
		if block {
			_, err = c.Exec(context.Background(), "COMMIT")
		} else {
			_, err = c.PgConn().CopyFrom(context.Background(), strings.NewReader(data.String()), copySQL)
		}
		done <- err
	}()
	step(t)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for _, fp := range env.fps {
		fp.CutAll()
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
		t.Fatalf("%d of the COPY's 30 rows present", n)
	}
	if acked && n != 30 {
		t.Fatalf("the COPY was acknowledged, %d rows present", n)
	}
	if known && (n == 30) != present {
		t.Fatalf("%d rows present, want all: %v", n, present)
	}
	if block && n == 30 {
		if s := c2.int(t, fmt.Sprintf("SELECT sum(v) FROM %s", tbl)); s != 30*31/2+30*1000 {
			t.Fatalf("sum(v) = %d: the block's UPDATE is not all there", s)
		}
	}
	repairAll(t, c2, tbl)
	consistent(t, tbl)
}

// TestCopyTwoPhaseProxyKilled kills the proxy process at each step of the two-phase
// commit of a COPY, outside and inside a transaction block.
func TestCopyTwoPhaseProxyKilled(t *testing.T) {
	unknown := func() (bool, bool) { return false, false }
	committed := func() (bool, bool) { return true, true }
	for _, block := range []bool{false, true} {
		name := "own"
		if block {
			name = "block"
		}
		t.Run(name+"/before PREPARE", func(t *testing.T) {
			var rule *faultproxy.Rule
			copyKillScenario(t, block, func() {
				rule = env.fps[0].CutOnQuery(`^PREPARE TRANSACTION`, 0, faultproxy.CutBefore)
			}, func(t *testing.T) { <-rule.Fired() }, unknown)
		})
		t.Run(name+"/between PREPAREs", func(t *testing.T) {
			// Worker 1's traffic is delayed: worker 0's part prepares first. Outside a
			// block the delay is set before the COPY itself, whose streams it slows
			// too: the kill was seen to come after the decision as well, so only
			// all-or-nothing is checked there.
			want := func() (bool, bool) { return false, true }
			if !block {
				want = unknown
			}
			copyKillScenario(t, block, func() {
				env.fps[1].SetDelay(3 * time.Second)
			}, func(t *testing.T) { waitPrepared(t, 0) }, want)
		})
		t.Run(name+"/after the decision", func(t *testing.T) {
			var rules []*faultproxy.Rule
			copyKillScenario(t, block, func() {
				for _, fp := range env.fps {
					rules = append(rules, fp.CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore))
				}
			}, func(t *testing.T) { <-rules[0].Fired() }, committed)
		})
		t.Run(name+"/between COMMIT PREPAREDs", func(t *testing.T) {
			var rule *faultproxy.Rule
			copyKillScenario(t, block, func() {
				rule = env.fps[1].CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore)
			}, func(t *testing.T) { <-rule.Fired() }, committed)
		})
	}
}
