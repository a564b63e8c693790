package faults

import (
	"context"
	"fmt"
	"testing"
)

// TestAttack2BlockWorkerCrashBeforeCommit: a block writes to two shards, one of them
// with a placement on a worker that then crashes before COMMIT. COMMIT succeeds (each
// shard keeps a placement that took the writes), marks exactly the crashed worker's
// placement of the written shard, and after repair both placements agree.
func TestAttack2BlockWorkerCrashBeforeCommit(t *testing.T) {
	defer resetFaults(t)
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 100)
	k1, shard := keyOn(t, c, tbl, 1)
	k2 := keyAvoiding(t, tbl, 1)
	c.exec(t, "BEGIN",
		fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k = %d", tbl, k1),
		fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k = %d", tbl, k2),
		"SAVEPOINT s",
		fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k IN (%d, %d)", tbl, k1, k2),
		"ROLLBACK TO s",
		fmt.Sprintf("INSERT INTO %s VALUES (5000, 5000, 'x')", tbl))
	if err := env.c.Workers[1].Crash(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "COMMIT"); err != nil {
		t.Fatalf("COMMIT: %v", err)
	}
	found := false
	for _, p := range inactive(placements(t, tbl)) {
		if p.workerIdx != 1 {
			t.Errorf("placement on worker %d marked: %+v", p.workerIdx, p)
		}
		found = found || p.shard == shard
	}
	if !found {
		t.Errorf("the crashed worker's placement of shard %d is not marked", shard)
	}
	for _, k := range []int{k1, k2} {
		if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k+1000) {
			t.Errorf("k = %d: v = %d, want %d", k, v, k+1000)
		}
	}
	if err := env.c.Workers[1].Start(ctx); err != nil {
		t.Fatal(err)
	}
	repairAll(t, c, tbl)
	consistent(t, tbl)
}
