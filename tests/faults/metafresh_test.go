package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgshard/pgshard/tests/faultproxy"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// TestStaleProxyReadsAfterListenerLoss: a proxy whose metadata listener is lost (a
// terminated connection, a coordinator restart) hears of no mark another proxy commits
// until it listens again (its reconnection backs off, up to seconds). Meanwhile it must
// not read from a placement the other proxy marked inactive: that placement misses an
// acknowledged write. This is what made TestIssue12LeaseConnectionsTerminated and
// TestIssue12MarksWhileCoordinatorDown see acknowledged writes "missing": their final
// reads went through the test's main proxy, whose listener had been lost, while the
// other proxy had marked the placement the read used. Here proxy B reaches the
// coordinator through a fault proxy that cuts every LISTEN, so B's listener stays down
// (no timing involved); proxy A marks the first placement of a shard (its worker refuses
// A's write, which the sibling takes); B's read of the row must see the write.
func TestStaleProxyReadsAfterListenerLoss(t *testing.T) {
	defer resetFaults(t)
	fpc, err := faultproxy.Start(env.c.Coordinator.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fpc.Close()
	b, err := testproxy.Start(context.Background(), fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable", fpc.Host(), fpc.Port()),
		testproxy.Options{LockTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	a := connect(t)
	tbl := table(t, a, 10)
	ps := placements(t, tbl)
	first := ps[0]
	k := keyInShard(t, tbl, first.shard)
	read := fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)
	// B knows the table (its listener heard of it, or its planner loads it).
	if v := connectTo(t, simpleURL(b)).int(t, read); v != int64(k) {
		t.Fatalf("B reads v = %d before the write, want %d", v, k)
	}

	// B's listener goes, and every reconnection of it is cut at its LISTEN.
	var rules []*faultproxy.Rule
	for i := 0; i < 100; i++ {
		rules = append(rules, fpc.CutOnQuery(`^LISTEN`, 0, faultproxy.CutBefore))
	}
	fpc.CutAll()
	select {
	case <-rules[0].Fired():
		// B's listener reconnected after the loss, and lost again: it is down.
	case <-time.After(30 * time.Second):
		t.Fatal("B's metadata listener did not reconnect after its connection was cut")
	}

	// A's write misses the first placement (its worker refuses A's connections), which
	// A marks inactive; the sibling takes the write, acknowledged.
	fp := first.faultProxy
	fp.SetRefuse(true)
	fp.CutAll()
	a2 := connect(t)
	a2.exec(t, fmt.Sprintf("UPDATE %s SET v = v + 100 WHERE k = %d", tbl, k))
	fp.SetRefuse(false)
	for _, p := range placements(t, tbl) {
		if p.id == first.id && p.state == 1 {
			t.Fatalf("placement %d is still finalized after missing the write: the reproduction needs it marked", p.id)
		}
	}
	if v := a2.int(t, read); v != int64(k)+100 {
		t.Fatalf("A reads v = %d after its acknowledged write, want %d", v, k+100)
	}

	// B, deaf to the mark, must still not serve the placement that missed the write.
	if v := connectTo(t, simpleURL(b)).int(t, read); v != int64(k)+100 {
		t.Errorf("B reads v = %d after A's acknowledged write of %d: it read placement %d, marked inactive by A while B's listener was down",
			v, k+100, first.id)
	}
	select {
	case <-rules[len(rules)-1].Fired():
		t.Fatal("B's listener used up the rules that kept it down: the check above proves nothing")
	default:
	}
}
