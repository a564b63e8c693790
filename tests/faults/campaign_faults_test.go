package faults

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// The kinds of fault the campaign injects.
const (
	fWorkerKill     = "worker kill -9 + restart"
	fWorkerCrash    = "worker immediate shutdown + restart"
	fWorkerRestart  = "worker graceful restart"
	fProxyKill      = "proxy SIGKILL + restart"
	fProxyTerm      = "proxy SIGTERM + restart"
	fCoordRestart   = "coordinator restart"
	fCoordCrash     = "coordinator immediate shutdown + restart"
	fTerminate      = "pg_terminate_backend of pgshard's coordinator connections"
	fTerminateAll   = "pg_terminate_backend of every proxy connection to the coordinator"
	fCutAll         = "fault proxy: cut every connection to a worker"
	fCutCommit      = "fault proxy: cut a connection at a commit statement"
	fRefuse         = "fault proxy: worker unreachable for a while"
	fStaleRestore   = "worker restored from an older copy of its data directory"
	staleRestoreEnv = "PGSHARD_CAMPAIGN_STALE_RESTORE"
)

// injector picks random faults at random times and undoes them.
type injector struct {
	e     *campaignEnv
	rng   *rand.Rand
	t     testing.TB
	mu    sync.Mutex
	count map[string]int
	log   []string
	start time.Time

	staleDir    string // an older copy of staleWorker's data directory ("" when off)
	staleWorker int
	staleDone   bool
}

var faultKinds = []struct {
	name   string
	weight int
}{
	{fWorkerKill, 3}, {fWorkerCrash, 2}, {fWorkerRestart, 2}, {fProxyKill, 3}, {fProxyTerm, 2},
	{fCoordRestart, 1}, {fCoordCrash, 1}, {fTerminate, 2}, {fTerminateAll, 2}, {fCutAll, 3}, {fCutCommit, 3}, {fRefuse, 2},
}

// note records an injected fault.
func (in *injector) note(kind, detail string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.count[kind]++
	in.log = append(in.log, fmt.Sprintf("%6.1fs %s: %s", time.Since(in.start).Seconds(), kind, detail))
}

// snapshotStale keeps a copy of a worker's data directory (taken after a clean stop) for
// the stale-restore fault.
func (in *injector) snapshotStale(ctx context.Context) error {
	in.staleWorker = in.rng.Intn(len(in.e.c.Workers))
	w := in.e.c.Workers[in.staleWorker]
	if err := w.Stop(); err != nil {
		return err
	}
	in.staleDir = w.Dir + ".older"
	if out, err := exec.Command("cp", "-a", w.Dir, in.staleDir).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %w: %s", w.Dir, err, out)
	}
	return startServer(ctx, w)
}

// run injects faults until ctx is done; the pause between faults is random (0.3-2.5 s).
func (in *injector) run(ctx context.Context, half time.Time) {
	total := 0
	for _, k := range faultKinds {
		total += k.weight
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(300+in.rng.Intn(2200)) * time.Millisecond):
		}
		if in.staleDir != "" && !in.staleDone && time.Now().After(half) {
			in.staleDone = true
			in.staleRestore(ctx)
			continue
		}
		r := in.rng.Intn(total)
		for _, k := range faultKinds {
			if r < k.weight {
				in.inject(ctx, k.name)
				break
			}
			r -= k.weight
		}
	}
}

// down is how long a stopped server or proxy stays down.
func (in *injector) down() time.Duration {
	return time.Duration(100+in.rng.Intn(2500)) * time.Millisecond
}

func (in *injector) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// inject injects one fault and undoes it (a server or proxy stopped is started again).
func (in *injector) inject(ctx context.Context, kind string) {
	e := in.e
	bg := context.Background() // restarts finish even when the run ends meanwhile
	wi := in.rng.Intn(len(e.c.Workers))
	w := e.c.Workers[wi]
	pi := in.rng.Intn(len(e.proxies))
	p := e.proxies[pi]
	fail := func(err error) {
		if err != nil {
			in.t.Errorf("fault %s: %v", kind, err)
		}
	}
	switch kind {
	case fWorkerKill, fWorkerCrash, fWorkerRestart:
		d := in.down()
		in.note(kind, fmt.Sprintf("%s, down %v", w.Name, d))
		switch kind {
		case fWorkerKill:
			fail(killServer(w))
		case fWorkerCrash:
			fail(w.Crash())
		default:
			fail(w.Stop())
		}
		in.sleep(ctx, d)
		fail(startServer(bg, w))
	case fProxyKill, fProxyTerm:
		d := in.down()
		in.note(kind, fmt.Sprintf("%s, down %v", p.name, d))
		if kind == fProxyKill {
			p.signal(syscall.SIGKILL, 0)
		} else {
			p.signal(syscall.SIGTERM, 30*time.Second)
		}
		in.sleep(ctx, d)
		fail(p.start(bg))
	case fCoordRestart, fCoordCrash:
		d := in.down()
		in.note(kind, fmt.Sprintf("down %v", d))
		if kind == fCoordCrash {
			fail(e.c.Coordinator.Crash())
		} else {
			fail(e.c.Coordinator.Stop())
		}
		in.sleep(ctx, d)
		fail(startServer(bg, e.c.Coordinator))
	case fTerminate, fTerminateAll:
		which := "application_name LIKE 'pgshard%'" // the proxies' own connections
		if kind == fTerminateAll {
			which = "backend_type = 'client backend'" // the sessions' too (their write locks)
		}
		res, err := e.c.Coordinator.Exec(bg, "postgres", `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE `+which+` AND pid <> pg_backend_pid()`)
		n := "?"
		if err == nil && len(res) > 0 && len(res[0].Rows) > 0 {
			n = string(res[0].Rows[0][0])
		}
		in.note(kind, n+" backends")
	case fCutAll:
		in.note(kind, w.Name)
		e.fps[wi].CutAll()
	case fCutCommit:
		action := faultproxy.Action(in.rng.Intn(2))
		after := in.rng.Intn(8)
		in.note(kind, fmt.Sprintf("%s, %v after %d matches", w.Name, map[faultproxy.Action]string{faultproxy.CutBefore: "before", faultproxy.CutAfter: "after"}[action], after))
		e.fps[wi].CutOnQuery(`(?i)^\s*(COMMIT|PREPARE\s+TRANSACTION|END)\b`, after, action)
		in.sleep(ctx, 2*time.Second)
		e.fps[wi].ClearRules()
	case fRefuse:
		d := in.down()
		in.note(kind, fmt.Sprintf("%s, %v", w.Name, d))
		e.fps[wi].SetRefuse(true)
		e.fps[wi].CutAll()
		in.sleep(ctx, d)
		e.fps[wi].SetRefuse(false)
	}
}

// staleRestore stops the stale worker and puts the older copy of its data directory in
// place of the current one before starting it again: a node whose data went back in time.
func (in *injector) staleRestore(ctx context.Context) {
	w := in.e.c.Workers[in.staleWorker]
	in.waitReplicated(ctx)
	in.note(fStaleRestore, w.Name)
	if err := w.Stop(); err != nil {
		in.t.Errorf("stale restore: %v", err)
	}
	if err := os.RemoveAll(w.Dir); err != nil {
		in.t.Errorf("stale restore: %v", err)
	}
	if out, err := exec.Command("cp", "-a", in.staleDir, w.Dir).CombinedOutput(); err != nil {
		in.t.Errorf("stale restore: %v: %s", err, out)
	}
	os.Remove(filepath.Join(w.Dir, "postmaster.pid"))
	if err := startServer(context.Background(), w); err != nil {
		in.t.Errorf("stale restore: %v", err)
	}
}

// waitReplicated waits (at most 30 s) until every placement of the replicated tables is
// finalized, as repair makes them after the faults before: writes acknowledged while the
// restored worker held a replicated shard's only finalized placement exist nowhere else,
// and no check could ask for them back.
func (in *injector) waitReplicated(ctx context.Context) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; in.sleep(ctx, 200*time.Millisecond) {
		res, err := in.e.c.Coordinator.Exec(ctx, "postgres", `SELECT count(*) FROM pgs_distribution_metadata.shard_placement p
			JOIN pgs_distribution_metadata.shard s ON s.id = p.shard_id
			WHERE s.relation_id IN ('`+campItems+`'::regclass, '`+campCtr+`'::regclass) AND p.shard_state <> 1`)
		if err == nil && len(res) > 0 && len(res[0].Rows) > 0 && string(res[0].Rows[0][0]) == "0" {
			return
		}
	}
	in.t.Logf("stale restore: replicated placements still inactive after 30 s; restoring anyway")
}

// heal undoes every fault left: every server and proxy runs, no fault proxy interferes.
func (in *injector) heal(ctx context.Context) error {
	for _, fp := range in.e.fps {
		fp.Reset()
	}
	for _, s := range in.e.c.Servers() {
		if err := startServer(ctx, s); err != nil {
			return err
		}
	}
	for _, p := range in.e.proxies {
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// summary lists the faults injected per kind.
func (in *injector) summary() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var kinds []string
	total := 0
	for k, n := range in.count {
		kinds = append(kinds, fmt.Sprintf("  %4d  %s", n, k))
		total += n
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d faults injected:\n%s", total, strings.Join(kinds, "\n"))
}
