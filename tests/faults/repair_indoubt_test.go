package faults

import (
	"context"
	"fmt"
	"testing"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// TestRepairFromSourceInDoubt: a placement holds, prepared and decided (commit record),
// the part of an acknowledged transaction that recovery has not committed yet (COMMIT
// PREPARED could not reach its worker, and no sibling took the write: the sibling was
// inactive, so nothing was marked). A repair of the sibling copies from that placement
// before recovery ran: the copy must not miss the transaction, which recovery commits on
// the source afterwards. After recovery and repair, both placements hold the
// transaction's write.
//
// Recovery passes are held off by the test holding the lock a pass takes on the
// coordinator (every proxy's pass then skips), so that the repair deterministically
// comes first.
func TestRepairFromSourceInDoubt(t *testing.T) {
	defer resetFaults(t)
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 0)
	// k's shard has placements on workers 0 and 1; k2's shard another one.
	k, k2 := 0, 0
	var shard int64
	for i := 1; i <= 1000 && (k == 0 || k2 == 0); i++ {
		ps := shardOf(t, c, tbl, i)
		if len(ps) != 2 {
			t.Fatalf("key %d: %d placements", i, len(ps))
		}
		w := map[int]bool{ps[0].workerIdx: true, ps[1].workerIdx: true}
		switch {
		case k == 0 && w[0] && w[1]:
			k, shard = i, ps[0].shard
		case k2 == 0 && !(w[0] && w[1]):
			k2 = i
		}
	}
	if k == 0 || k2 == 0 {
		t.Fatal("no keys on the shards wanted")
	}
	c.exec(t, fmt.Sprintf("INSERT INTO %s VALUES (%d, 1, 'x'), (%d, 1, 'y')", tbl, k, k2))

	// The placement on worker 1 misses a write: marked inactive.
	env.fps[1].SetRefuse(true)
	env.fps[1].CutAll()
	c.exec(t, fmt.Sprintf("UPDATE %s SET v = 2 WHERE k = %d", tbl, k))
	env.fps[1].SetRefuse(false)
	if in := inactive(placements(t, tbl)); len(in) != 1 || in[0].workerIdx != 1 || in[0].shard != shard {
		t.Fatalf("inactive after the write worker 1 missed: %+v", in)
	}

	hold := connectTo(t, env.c.Coordinator.URL("postgres"))
	hold.exec(t, "BEGIN", "LOCK TABLE pgs_distribution_metadata.transaction IN SHARE UPDATE EXCLUSIVE MODE")

	// A block writes k (worker 0 only) and k2: two-phase commit. COMMIT PREPARED cannot
	// reach worker 0 (the connection is cut at it, new ones are refused): the part stays
	// prepared there, decided, and the client hears COMMIT.
	c.exec(t, "BEGIN", fmt.Sprintf("UPDATE %s SET v = 3 WHERE k = %d", tbl, k), fmt.Sprintf("UPDATE %s SET v = 3 WHERE k = %d", tbl, k2))
	rule := env.fps[0].CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore)
	env.fps[0].SetRefuse(true)
	c.exec(t, "COMMIT")
	<-rule.Fired()
	env.fps[0].Reset()
	decided := false
	for _, row := range showTransactions(t, c) {
		if row[3] == "prepared" && row[5] == "commit record: recovery commits it" {
			decided = true
		}
	}
	if !decided {
		t.Fatalf("no decided part in doubt: %v", showTransactions(t, c))
	}

	// The repair of worker 1's placement copies from worker 0's.
	// (A repair may wait for recovery as for the shard's write lock: bounded here.)
	c.exec(t, "SET lock_timeout = '2s'")
	if _, err := c.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", shard)); err != nil {
		t.Logf("REPAIR SHARD %d while a part is in doubt on its source: %v", shard, err)
	}
	c.exec(t, "RESET lock_timeout")
	hold.exec(t, "ROLLBACK")
	recoverTransactions(t, c)
	if n := prepared(t); n != 0 {
		t.Fatalf("%d prepared transactions left after recovery", n)
	}
	// Finalized placements agree (a repair that failed above is run again).
	consistent(t, tbl)
	repairAll(t, c, tbl)
	consistent(t, tbl)
	if vs := bothPlacements(t, c, tbl, k); vs[0] != 3 || vs[1] != 3 {
		t.Fatalf("k = %d: v on its placements %v, want 3 on both (the acknowledged block)", k, vs)
	}
}
