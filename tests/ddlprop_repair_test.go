package tests

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestDDLPropRepairWaitsForSchemaChange: a repair that waits for the shard's write lock
// while a transaction block changes the table's schema (ALTER TABLE holds the shards'
// write locks until it commits) recreates the placement with the definition that
// committed, not the one it would have read before waiting: the repaired placement has
// the new column, and nothing drifts.
func TestDDLPropRepairWaitsForSchemaChange(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 100) g", tbl))
	shard := shardsOf(t, tbl)[0]
	victim := shard.places[1]
	coord := connectServer(t, env.C.Coordinator)
	if _, err := coord.Exec(ctx, fmt.Sprintf("UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE id = %d", victim.id)); err != nil {
		t.Fatal(err)
	}

	alter := connect(t)
	mustExec(t, alter, "BEGIN", fmt.Sprintf("ALTER TABLE %s ADD COLUMN extra int NOT NULL DEFAULT 7", tbl))
	repairer := connect(t)
	done := make(chan error, 1)
	go func() {
		_, err := repairer.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", shard.id))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("REPAIR SHARD did not wait for the schema change's locks: %v", err)
	case <-time.After(700 * time.Millisecond):
	}
	mustExec(t, alter, "COMMIT")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("REPAIR SHARD: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("REPAIR SHARD still waiting a minute after the schema change committed")
	}
	w := connectServer(t, serverFor(victim.port))
	var n, sum int
	if err := w.QueryRow(ctx, fmt.Sprintf("SELECT count(*), coalesce(sum(extra), 0) FROM %s_%d", tbl, shard.id)).Scan(&n, &sum); err != nil {
		t.Fatalf("repaired placement: %v", err)
	}
	if sum != 7*n {
		t.Errorf("repaired placement: %d rows, sum(extra) = %d, want %d", n, sum, 7*n)
	}
	for _, s := range shardsOf(t, tbl) {
		for _, p := range s.places {
			if p.state != 1 {
				t.Errorf("placement %d of shard %d in state %d", p.id, s.id, p.state)
			}
		}
	}
	if rows := showDrift(t, conn, tbl); len(rows) != 0 {
		t.Errorf("SHOW DRIFT after the repair: %v", rows)
	}
}
