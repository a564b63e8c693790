package faults

import (
	"context"
	"fmt"
	"testing"
)

// TestAcceptHeldWorkerKeepsReplicatedRows is the fault campaign's stale-restore loss
// (issue 12): a worker restored from an older copy of its data directory holds the only
// placements of a table (replication 1), so it is held; it also holds placements of
// replicated tables: of "pairgood", whose other placements are finalized, and of
// "pairlast", whose other placements had just been marked inactive (they missed a write
// that was not acknowledged) — the restored worker's stale placements are then the last
// finalized ones of pairlast. Writes go on to pairgood. The operator then accepts the
// worker's data by deleting its node_identity row, as the README says, and repair runs.
// Every acknowledged row of both replicated tables must be there afterwards: accepting
// the worker's data must not make its stale copy of a replicated shard the one repair
// copies over the other.
func TestAcceptHeldWorkerKeepsReplicatedRows(t *testing.T) {
	ic := startIdentCluster(t)
	ctx := context.Background()
	cl := ic.connect(t)
	for _, tb := range []struct {
		name string
		repl int
	}{{"lone", 1}, {"pairlast", 2}, {"pairgood", 2}} {
		cl.exec(t, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL)", tb.name),
			fmt.Sprintf("select master_create_distributed_table('%s', 'k')", tb.name),
			fmt.Sprintf("select master_create_worker_shards('%s', 2, %d)", tb.name, tb.repl),
			fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 100) g", tb.name))
	}
	cl2 := connectTo(t, simpleURL(ic.p2))
	waitSees(t, cl2, "pairgood", 100)
	w, good := ic.c.Workers[1], ic.c.Workers[0]
	if n := sum(ic.workerCounts(t, w, "lone")); n == 0 || n == 100 {
		t.Fatalf("worker 2 holds %d of lone's 100 rows; the test needs a shard on each worker", n)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	old := w.Dir + ".old"
	shell(t, "cp", "-a", w.Dir, old)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Acknowledged after the copy: the restored worker will lack them.
	for _, tb := range []string{"lone", "pairlast", "pairgood"} {
		cl.exec(t, fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(101, 200) g", tb))
	}
	// pairlast's placements on the good worker are marked inactive, as a write that
	// failed there (and was not acknowledged) marks them.
	ic.coordRows(t, `UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3
		WHERE node_port = $1 AND shard_id IN (SELECT id FROM pgs_distribution_metadata.shard WHERE relation_id = 'pairlast'::regclass)`, good.Port)
	if err := ic.p.Server().CheckNodes(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	shell(t, "rm", "-rf", w.Dir)
	shell(t, "mv", old, w.Dir)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// The first statement that reaches the worker finds it went back: it is held.
	if _, err := cl.Exec(ctx, "SELECT count(*) FROM lone"); err == nil {
		t.Fatal("a read of lone on the held worker succeeded")
	}
	if rows := ic.coordRows(t, `SELECT held FROM pgs_distribution_metadata.node_identity WHERE node_port = $1`, w.Port); len(rows) != 1 || rows[0][0] != true {
		t.Fatalf("node_identity of the restored worker: %v, want held", rows)
	}
	logStates := func(when string) {
		for _, tb := range []string{"lone", "pairlast", "pairgood"} {
			t.Logf("%s: %s placements (port -> state -> count): %v", when, tb, ic.states(t, tb))
		}
	}
	logStates("held")
	if st := ic.states(t, "pairgood"); st[w.Port][3] != 2 || st[good.Port][1] != 2 {
		t.Errorf("pairgood's placements while held: %v, want the restored worker's inactive, the good worker's finalized", st)
	}
	if st := ic.states(t, "pairlast"); st[w.Port][1] != 2 || st[good.Port][3] != 2 {
		t.Errorf("pairlast's placements while held: %v, want the restored worker's the last finalized", st)
	}
	// Writes go on to pairgood, through both proxies.
	cl.exec(t, "INSERT INTO pairgood SELECT g, g FROM generate_series(201, 250) g")
	cl2.exec(t, "INSERT INTO pairgood SELECT g, g FROM generate_series(251, 300) g")

	// The operator accepts the restored worker's data (README, "Failures and repair").
	ic.coordRows(t, `DELETE FROM pgs_distribution_metadata.node_identity WHERE node_name = $1 AND node_port = $2`, w.Host, w.Port)
	logStates("accepted")
	if st := ic.states(t, "pairlast"); st[w.Port][1] != 0 || st[good.Port][1] != 2 {
		t.Errorf("pairlast's placements after the acceptance: %v; want the restored worker's stale placements inactive, the other worker's finalized", st)
	}
	if st := ic.states(t, "lone"); st[w.Port][1] != 1 {
		t.Errorf("lone's placements after the acceptance: %v; want the restored worker's only copy finalized (accepted as it is)", st)
	}
	// Both proxies use the worker again, and repair brings every inactive placement back.
	if _, err := cl.Exec(ctx, "SELECT count(*) FROM lone"); err != nil {
		t.Errorf("a read of lone after the acceptance: %v", err)
	}
	for _, r := range ic.coordRows(t, `SELECT DISTINCT shard_id FROM pgs_distribution_metadata.shard_placement WHERE shard_state = 3 ORDER BY 1`) {
		if _, err := cl.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", r[0].(int64))); err != nil {
			t.Errorf("REPAIR SHARD %d: %v", r[0], err)
		}
	}
	logStates("repaired")
	for tb, want := range map[string]int64{"pairlast": 200, "pairgood": 300} {
		for i, c := range []conn{cl, cl2} {
			if n := c.int(t, fmt.Sprintf("SELECT count(*) FROM %s", tb)); n != want {
				t.Errorf("proxy %d: %s has %d rows after the acceptance and repair, want %d (every acknowledged row)", i+1, tb, n, want)
			}
		}
		a, b := ic.workerCounts(t, good, tb), ic.workerCounts(t, w, tb)
		if sum(a) != want || sum(b) != want {
			t.Errorf("%s: %d rows on the good worker, %d on the restored one; want %d each", tb, sum(a), sum(b), want)
		}
	}
	for port, st := range ic.states(t, "pairlast") {
		if st[1] != 2 || len(st) != 1 {
			t.Errorf("pairlast's placements on port %d after repair: %v, want all finalized", port, st)
		}
	}
}
