package faults

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestRepairRacesReload: a proxy repairs a placement while its sessions keep writing to
// the shard and metadata notifications keep its snapshot reloading. A reload that read
// the metadata just before the repair finalized the placement must not install its older
// snapshot afterwards: the proxy would then skip the repaired placement for writes while
// it is finalized on the coordinator, and the placements would silently differ.
func TestRepairRacesReload(t *testing.T) {
	defer resetFaults(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := connect(t)
	tbl := table(t, c, 10)
	other := table(t, c, 0)
	k, shard := keyOn(t, c, tbl, 0)
	var target placement
	for _, p := range placements(t, tbl) {
		if p.shard == shard && p.workerIdx != 0 {
			target = p
		}
	}
	noise := placements(t, other)[0].id

	// Notifications: every update of a placement row wakes every proxy's reload.
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	bg.Add(1)
	go func() {
		defer bg.Done()
		nc, err := pgx.Connect(ctx, env.c.Coordinator.URL("postgres"))
		if err != nil {
			return
		}
		defer nc.Close(context.Background())
		for ctx.Err() == nil {
			nc.Exec(ctx, "UPDATE pgs_distribution_metadata.shard_placement SET shard_state = shard_state WHERE id = $1", noise)
			time.Sleep(time.Millisecond)
		}
	}()

	coord := connectTo(t, env.c.Coordinator.URL("postgres"))
	acked := int64(0)
	cycles := 15
	for cycle := 0; cycle < cycles; cycle++ {
		coord.exec(t, fmt.Sprintf("UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE id = %d", target.id))
		for deadline := time.Now().Add(5 * time.Second); ; {
			if ps := env.p.Server().Snapshot().Shard(shard); ps != nil && len(ps.Finalized()) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the proxy never saw the placement inactive")
			}
			time.Sleep(5 * time.Millisecond)
		}
		var stop atomic.Bool
		var n atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wc := connect(t)
				for !stop.Load() {
					if _, err := wc.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, k)); err != nil {
						errs <- err
						return
					}
					n.Add(1)
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		c.exec(t, fmt.Sprintf("REPAIR SHARD %d", shard))
		time.Sleep(50 * time.Millisecond)
		stop.Store(true)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		acked += n.Load()
		a, b := digest(t, tbl, placements(t, tbl)[0]), ""
		for _, p := range placements(t, tbl) {
			if p.shard == shard && p.id != target.id {
				a = digest(t, tbl, p)
			}
		}
		b = digest(t, tbl, target)
		if a != b {
			t.Fatalf("cycle %d: the repaired placement missed writes: %s, its sibling %s", cycle, b, a)
		}
	}
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k)+acked {
		t.Errorf("v = %d after %d acknowledged increments of %d", v, acked, k)
	}
}
