package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// TestWorkerStoppedBeforeWrite: a worker is down (immediate shutdown) before a write; the
// write succeeds on the other placement, the missed placement is marked inactive with a
// warning naming it, and repair brings it back identical.
func TestWorkerStoppedBeforeWrite(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 300)
	k, shard := keyOn(t, c, tbl, 1)
	if err := env.c.Workers[1].Crash(); err != nil {
		t.Fatal(err)
	}
	c.exec(t, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k = %d", tbl, k))
	if w := c.warnings(); !contains(w, "is now inactive") || !contains(w, fmt.Sprintf(":%d", env.fps[1].Port())) {
		t.Errorf("warnings: %q", w)
	}
	in := inactive(placements(t, tbl))
	if len(in) != 1 || in[0].shard != shard || in[0].workerIdx != 1 {
		t.Fatalf("inactive placements: %+v", in)
	}
	// Reads go to the healthy placement.
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k+1000) {
		t.Errorf("v = %d", v)
	}
	if err := env.c.Workers[1].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	repairAll(t, c, tbl)
	consistent(t, tbl)
}

// TestWorkerStoppedDuringWrite: the worker of one placement shuts down (immediately) while
// a write runs there.
func TestWorkerStoppedDuringWrite(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 300)
	k, _ := keyOn(t, c, tbl, 2)
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), fmt.Sprintf("UPDATE %s SET v = v * 3 WHERE k = %d AND pg_sleep(0.5) IS NOT NULL", tbl, k))
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := env.c.Workers[2].Crash(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write failed although a placement took it: %v", err)
	}
	if in := inactive(placements(t, tbl)); len(in) != 1 || in[0].workerIdx != 2 {
		t.Fatalf("inactive: %+v", in)
	}
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(3*k) {
		t.Errorf("v = %d, want %d", v, 3*k)
	}
	resetFaults(t)
	repairAll(t, c, tbl)
	consistent(t, tbl)
}

// TestConnectionCutMidWrite: the connection to one placement is cut as the write passes,
// before or after the server got it.
func TestConnectionCutMidWrite(t *testing.T) {
	for _, action := range []faultproxy.Action{faultproxy.CutBefore, faultproxy.CutAfter} {
		t.Run(fmt.Sprint(action), func(t *testing.T) {
			defer resetFaults(t)
			c := connect(t)
			tbl := table(t, c, 200)
			k, _ := keyOn(t, c, tbl, 0)
			rule := env.fps[0].CutOnQuery(fmt.Sprintf(`UPDATE .*%s.* SET v = 7`, tbl), 0, action)
			c.exec(t, fmt.Sprintf("UPDATE %s SET v = 7 WHERE k = %d", tbl, k))
			select {
			case <-rule.Fired():
			default:
				t.Fatal("the fault never fired")
			}
			if in := inactive(placements(t, tbl)); len(in) != 1 || in[0].workerIdx != 0 {
				t.Fatalf("inactive: %+v", in)
			}
			if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != 7 {
				t.Errorf("v = %d", v)
			}
			resetFaults(t)
			repairAll(t, c, tbl)
			consistent(t, tbl)
		})
	}
}

// TestNoPlacementAvailable: with both placements unreachable the write fails with
// pg_shard's error and marks nothing.
func TestNoPlacementAvailable(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 100)
	k, _ := keyOn(t, c, tbl, 0)
	ps := placements(t, tbl)
	var shardPlacements []placement
	for _, p := range ps {
		if _, s := keyOn(t, c, tbl, 0); p.shard == s {
			shardPlacements = append(shardPlacements, p)
		}
	}
	for _, p := range shardPlacements {
		p.faultProxy.SetRefuse(true)
		p.faultProxy.CutAll()
	}
	_, err := c.Exec(context.Background(), fmt.Sprintf("UPDATE %s SET v = 0 WHERE k = %d", tbl, k))
	if err == nil || sqlState(err) != "XX000" {
		t.Fatalf("got %v, want could not modify any active placements", err)
	}
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Errorf("placements marked although no placement took the write: %+v", in)
	}
	resetFaults(t)
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k) {
		t.Errorf("v = %d after a failed write", v)
	}
	consistent(t, tbl)
}

// TestDivergentPlacement: a placement that answers differently from its sibling (here it
// already holds the key: it diverged behind pgshard's back) is the odd one out, marked
// inactive with a warning; the statement succeeds.
func TestDivergentPlacement(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 10)
	// A new key whose shard's first placement is on worker 1; the other placement
	// receives the key behind pgshard's back.
	k, shard := keyOnFrom(t, tbl, 1, 1001)
	var target placement
	for _, p := range placements(t, tbl) {
		if p.shard == shard && p.workerIdx != 1 {
			target = p
		}
	}
	direct := connectTo(t, env.c.Workers[target.workerIdx].URL("postgres"))
	direct.exec(t, fmt.Sprintf("INSERT INTO %s_%d VALUES (%d, -1, 'rogue')", tbl, shard, k))
	c.exec(t, fmt.Sprintf("INSERT INTO %s VALUES (%d, %d, 'proper')", tbl, k, k))
	if warns := c.warnings(); !contains(warns, "Bad result from") {
		t.Errorf("warnings: %q", warns)
	}
	in := inactive(placements(t, tbl))
	if len(in) != 1 || in[0].id != target.id {
		t.Fatalf("inactive: %+v, want placement %d", in, target.id)
	}
	repairAll(t, c, tbl)
	consistent(t, tbl)
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k) {
		t.Errorf("v = %d", v)
	}
}

// keyOnFrom is keyOn starting the search at from.
func keyOnFrom(t testing.TB, table string, idx, from int) (int, int64) {
	t.Helper()
	ps := placements(t, table)
	c := connectTo(t, env.c.Coordinator.URL("postgres"))
	for k := from; k < from+10000; k++ {
		var h int32
		c.QueryRow(context.Background(), "select hashint4($1)", k).Scan(&h)
		for i, p := range ps {
			if h >= p.min && h <= p.max && (i == 0 || ps[i-1].shard != p.shard) && p.workerIdx == idx {
				return k, p.shard
			}
		}
	}
	t.Fatalf("no key on worker %d", idx)
	return 0, 0
}

// TestReadFailover: a read whose first placement is down is served by the next one,
// without an error.
func TestReadFailover(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 500)
	k, _ := keyOn(t, c, tbl, 0)
	env.fps[0].SetRefuse(true)
	env.fps[0].CutAll()
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k) {
		t.Errorf("v = %d", v)
	}
	if n := c.int(t, "SELECT count(*) FROM "+tbl); n != 500 {
		t.Errorf("count = %d", n)
	}
	if n := c.int(t, "SELECT sum(v) FROM "+tbl); n != 500*501/2 {
		t.Errorf("sum = %d", n)
	}
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Errorf("reads marked placements: %+v", in)
	}
}

// TestRepairFaults: the repair's target restarts, or its source is lost, during the copy.
// The placement stays inactive, the failure is recorded, and running the repair again
// succeeds.
func TestRepairFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(target, source placement)
	}{
		{"target restarts", func(target, source placement) {
			env.c.Workers[target.workerIdx].Restart(context.Background())
		}},
		{"source lost", func(target, source placement) {
			source.faultProxy.CutAll()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer resetFaults(t)
			c := connect(t)
			tbl := table(t, c, 60000)
			k, shard := keyOn(t, c, tbl, 0)
			env.fps[0].SetRefuse(true)
			env.fps[0].CutAll()
			c.exec(t, fmt.Sprintf("UPDATE %s SET v = -v WHERE k = %d", tbl, k))
			env.fps[0].SetRefuse(false)
			var target, source placement
			for _, p := range placements(t, tbl) {
				if p.shard == shard && p.state == 3 {
					target = p
				} else if p.shard == shard {
					source = p
				}
			}
			// Slow the copy down so that the fault lands during it.
			source.faultProxy.SetDelay(50 * time.Millisecond)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Exec(context.Background(), fmt.Sprintf("REPAIR SHARD %d", shard))
				errc <- err
			}()
			time.Sleep(300 * time.Millisecond)
			tc.fault(target, source)
			if err := <-errc; err == nil {
				t.Fatal("repair succeeded despite the fault")
			}
			if in := inactive(placements(t, tbl)); len(in) != 1 || in[0].id != target.id {
				t.Fatalf("after the failed repair: inactive %+v", in)
			}
			var state string
			if err := c.QueryRow(context.Background(), "SHOW REPAIRS").Scan(nil, nil, nil, nil, nil, &state, nil, nil, nil, nil, nil, nil, nil); err != nil || state != "failed" {
				t.Errorf("SHOW REPAIRS: state %q, %v", state, err)
			}
			resetFaults(t)
			c.exec(t, fmt.Sprintf("REPAIR SHARD %d", shard))
			if in := inactive(placements(t, tbl)); len(in) != 0 {
				t.Fatalf("inactive after the second repair: %+v", in)
			}
			consistent(t, tbl)
		})
	}
}

// TestWriteDuringRepair: a write to a shard under repair waits for the repair and then
// succeeds; both placements have it.
func TestWriteDuringRepair(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 60000)
	k, shard := keyOn(t, c, tbl, 0)
	env.fps[0].SetRefuse(true)
	env.fps[0].CutAll()
	c.exec(t, fmt.Sprintf("UPDATE %s SET v = 1 WHERE k = %d", tbl, k))
	env.fps[0].SetRefuse(false)
	for _, p := range placements(t, tbl) {
		if p.shard == shard && p.state == 1 {
			p.faultProxy.SetDelay(30 * time.Millisecond)
		}
	}
	repairDone := make(chan error, 1)
	go func() {
		rc := connect(t)
		_, err := rc.Exec(context.Background(), fmt.Sprintf("REPAIR SHARD %d", shard))
		repairDone <- err
	}()
	time.Sleep(300 * time.Millisecond)
	w := connect(t)
	start := time.Now()
	w.exec(t, fmt.Sprintf("UPDATE %s SET v = v + 41 WHERE k = %d", tbl, k))
	waited := time.Since(start)
	select {
	case err := <-repairDone:
		if err != nil {
			t.Fatalf("repair: %v", err)
		}
	default:
		t.Fatalf("the write finished (after %s) while the repair was still running", waited)
	}
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Fatalf("inactive: %+v", in)
	}
	for _, fp := range env.fps {
		fp.SetDelay(0)
	}
	consistent(t, tbl)
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != 42 {
		t.Errorf("v = %d, want 42", v)
	}
}

// TestTwoProxiesWhileMarking: two proxies write concurrently while a worker goes down;
// every write succeeds and, after repair, no placement differs.
func TestTwoProxiesWhileMarking(t *testing.T) {
	defer resetFaults(t)
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 0)
	p2 := startProxy(t)
	urls := []string{simpleURL(env.p), simpleURL(p2)}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := connectTo(t, u)
			for j := 0; j < 150; j++ {
				k := i*1000 + j + 1
				if _, err := cc.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (%d, %d, 'p%d')", tbl, k, k, i)); err != nil {
					errs <- fmt.Errorf("proxy %d insert %d: %w", i, k, err)
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	env.fps[2].SetRefuse(true)
	env.fps[2].CutAll()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := c.int(t, "SELECT count(*) FROM "+tbl); n != 300 {
		t.Errorf("count = %d", n)
	}
	if len(inactive(placements(t, tbl))) == 0 {
		t.Error("no placement marked")
	}
	resetFaults(t)
	repairAll(t, c, tbl)
	consistent(t, tbl)
}

// TestConcurrentConflictingUpdates: UPDATEs that do not commute, to the same rows, through
// two proxies at once, reach both placements in the same order.
func TestConcurrentConflictingUpdates(t *testing.T) {
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 20)
	p2 := startProxy(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i, u := range []string{simpleURL(env.p), simpleURL(p2), simpleURL(env.p), simpleURL(p2)} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := connectTo(t, u)
			for j := 0; j < 60; j++ {
				// v*2+i and v+i do not commute: any reordering between placements shows.
				q := fmt.Sprintf("UPDATE %s SET v = (v * 2 + %d) %% 1000003 WHERE k <= 20", tbl, i)
				if j%2 == 1 {
					q = fmt.Sprintf("UPDATE %s SET v = v + %d WHERE k <= 20", tbl, i+1)
				}
				if _, err := cc.Exec(ctx, q); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Fatalf("inactive: %+v", in)
	}
	consistent(t, tbl)
}
