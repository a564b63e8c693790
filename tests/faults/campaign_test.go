package faults

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFaultCampaign is issue 12's randomized fault campaign: two pgshard proxy processes
// over one coordinator and four workers (reached through fault proxies), a mixed workload
// of several clients per proxy (autocommit and transaction blocks, single- and
// multi-shard INSERT, UPDATE, DELETE and COPY on tables with replication 2 and 1), and an
// injector that meanwhile kills and restarts workers, proxies and the coordinator,
// terminates pgshard's coordinator connections and breaks worker connections. Then, once
// recovery and repair are done, a checker verifies every acknowledged write is present
// exactly once (writes in doubt at most once, and a block in doubt wholly or not at all),
// counters equal the acknowledged increments (plus at most those in doubt), every pair of
// finalized placements is identical, and no prepared transaction is left.
//
// The run lasts 60 s; PGSHARD_SOAK=<duration> (e.g. 30m) runs longer. PGSHARD_CAMPAIGN_SEED
// replays a seed (the operations and faults chosen; their timing differs).
// PGSHARD_CAMPAIGN_STALE_RESTORE=1 adds, once, a worker restored from an older copy of its
// data directory (off until pgshard detects such a node).
func TestFaultCampaign(t *testing.T) {
	dur := 60 * time.Second
	if s := os.Getenv("PGSHARD_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("PGSHARD_SOAK=%q: %v", s, err)
		}
		dur = d
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("PGSHARD_CAMPAIGN_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("PGSHARD_CAMPAIGN_SEED=%q: %v", s, err)
		}
	}
	fmt.Printf("TestFaultCampaign: seed %d (replay with PGSHARD_CAMPAIGN_SEED=%d), %v\n", seed, seed, dur)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))

	e := startCampaignEnv(t, 4, 2, "--repair-interval", "2s", "--pool-size", "20")
	ctx := context.Background()
	setupCampaignTables(t, e)

	in := &injector{e: e, rng: rand.New(rand.NewSource(rng.Int63())), t: t, count: map[string]int{}}
	if os.Getenv(staleRestoreEnv) != "" {
		if err := in.snapshotStale(ctx); err != nil {
			t.Fatal(err)
		}
	}
	l := newLedger()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		c := &client{id: i, url: e.proxies[i%2].url(), rng: rand.New(rand.NewSource(rng.Int63())), l: l, mine: map[string][]int64{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(runCtx)
		}()
	}
	injCtx, stopInj := context.WithTimeout(ctx, dur)
	in.start = time.Now()
	in.run(injCtx, time.Now().Add(dur/2))
	stopInj()
	if err := in.heal(ctx); err != nil {
		t.Fatalf("healing after the faults: %v", err)
	}
	// A few seconds of load without faults, then the clients stop.
	time.Sleep(3 * time.Second)
	stop()
	wg.Wait()

	t.Logf("%s", in.summary())
	t.Logf("%s", l.opsSummary())
	fmt.Printf("TestFaultCampaign seed %d:\n%s\n%s\n", seed, in.summary(), l.opsSummary())
	if testing.Verbose() {
		t.Logf("faults in order:\n%s", strings.Join(in.log, "\n"))
	}

	tables := []string{campItems, campCtr, campSolo}
	rowTables := []string{campItems, campSolo}
	if in.staleDir != "" {
		// The restored worker's shards of camp_solo had no other copy: their lost writes
		// cannot come back, and pgshard rightly refuses to serve them. Only the
		// replicated tables are checked.
		t.Logf("stale restore: %s not checked (its only copy on %s went back in time)", campSolo, e.c.Workers[in.staleWorker].Name)
		tables, rowTables = []string{campItems, campCtr}, []string{campItems}
		// It holds the last placement of those shards, so pgshard holds it (refuses it)
		// until an operator accepts its data as it is (README, "Failures and repair").
		fp := e.fps[in.staleWorker]
		if _, err := e.c.Coordinator.Exec(ctx, "postgres", fmt.Sprintf(
			"DELETE FROM pgs_distribution_metadata.node_identity WHERE node_name = '%s' AND node_port = %d", fp.Host(), fp.Port())); err != nil {
			t.Logf("accepting the restored worker's data: %v", err)
		}
	}
	prepared, inactive, err := e.settle(ctx, 90*time.Second, tables...)
	if err != nil {
		t.Fatal(err)
	}
	var p problems
	for _, x := range prepared {
		p.add("prepared transaction left on a worker", "%s", x)
	}
	for _, s := range inactive {
		p.add("shard with an inactive placement after repair", "shard %d", s)
	}
	diverged, err := e.divergedShards(ctx, tables...)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diverged {
		p.add("finalized placements differ", "%s", d)
	}
	if err := l.checkRows(ctx, e.proxies[0].url(), &p, rowTables...); err != nil {
		t.Fatal(err)
	}
	if err := l.checkCounters(ctx, e.proxies[0].url(), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.byKind) > 0 {
		t.Errorf("seed %d: the checker found:\n%s\nfaults in order:\n%s", seed, p.String(), strings.Join(in.log, "\n"))
		for _, px := range e.proxies {
			t.Logf("%s log (tail):\n%s", px.name, px.logTail())
		}
	}
}

// setupCampaignTables creates the campaign's tables: camp_items and camp_ctr with 8 shards
// of 2 placements, camp_solo with 4 shards of one placement, and the counters.
func setupCampaignTables(t *testing.T, e *campaignEnv) {
	t.Helper()
	c := e.admin(t)
	defer c.Close(context.Background())
	for _, s := range []string{
		"CREATE TABLE " + campItems + " (id bigint PRIMARY KEY, cl int NOT NULL, v bigint NOT NULL)",
		"select master_create_distributed_table('" + campItems + "', 'id')",
		"select master_create_worker_shards('" + campItems + "', 8, 2)",
		"CREATE TABLE " + campCtr + " (k int PRIMARY KEY, n bigint NOT NULL)",
		"select master_create_distributed_table('" + campCtr + "', 'k')",
		"select master_create_worker_shards('" + campCtr + "', 8, 2)",
		"CREATE TABLE " + campSolo + " (id bigint PRIMARY KEY, cl int NOT NULL, v bigint NOT NULL)",
		"select master_create_distributed_table('" + campSolo + "', 'id')",
		"select master_create_worker_shards('" + campSolo + "', 4, 1)",
		fmt.Sprintf("INSERT INTO %s SELECT g, 0 FROM generate_series(1, %d) g", campCtr, campCtrN),
	} {
		if _, err := c.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
