package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// placementStates counts a table's placements by state, per node port.
func placementStates(t testing.TB, table string) (finalized, inactive int, inactiveByPort map[int]int) {
	t.Helper()
	inactiveByPort = map[int]int{}
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			switch p.state {
			case 1:
				finalized++
			case 3:
				inactive++
				inactiveByPort[p.port]++
			default:
				t.Errorf("placement %d in state %d", p.id, p.state)
			}
		}
	}
	return
}

// writeWhileDown runs writes that all succeed although one worker is down, and returns
// the expected change in row count.
func writeWhileDown(t *testing.T, table string, round int) int {
	t.Helper()
	conn := connect(t)
	ctx := context.Background()
	added := 0
	// Single-row and multi-row inserts over many keys, so that most shards get a write.
	for i := 0; i < 40; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('R%d-%d', '2021-01-01', 5, 1, 'P1', 'new', '{}')", table, round, i))
		added++
	}
	var vals []string
	for i := 0; i < 200; i++ {
		vals = append(vals, fmt.Sprintf("('M%d-%d', now()::date, 4, 0, 'P2', 'multi', '{}')", round, i))
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES %s", table, strings.Join(vals, ", ")))
	added += 200
	for i := 0; i < 30; i++ {
		tag, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET review_votes = review_votes + 1 WHERE customer_id = 'C%d'", table, 100+i))
		if err != nil || tag.RowsAffected() == 0 {
			t.Fatalf("update while a worker is down: %v %v", tag, err)
		}
	}
	tag, err := conn.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE customer_id IN ('C%d', 'C%d')", table, 2000+round*2, 2001+round*2))
	if err != nil {
		t.Fatalf("delete while a worker is down: %v", err)
	}
	return added - int(tag.RowsAffected())
}

// TestWorkerFailureStory is the failure story: a worker stops, writes go on, the missed
// placements are marked inactive, reads avoid them, and repair by
// master_copy_shard_placement, by REPAIR SHARD and by the background repairer makes every
// placement whole again.
func TestWorkerFailureStory(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("story")
	distribute(t, conn, reviewsDDL(table), table, "customer_id", 16, 2)
	for _, ins := range reviewRows(table, 17000, 1000) {
		mustExec(t, conn, ins)
	}
	want := 17000
	count := func() int {
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from "+table).Scan(&n); err != nil {
			t.Fatalf("count: %v", err)
		}
		return n
	}
	if n := count(); n != want {
		t.Fatalf("count %d, want %d", n, want)
	}
	victim := sortedWorkers()[3]

	// down stops the victim (immediate shutdown, as a crash), runs writes, and checks the
	// marks and the reads.
	down := func(round int) {
		t.Helper()
		if err := victim.Crash(); err != nil {
			t.Fatal(err)
		}
		want += writeWhileDown(t, table, round)
		fin, inact, byPort := placementStates(t, table)
		if inact == 0 || byPort[victim.Port] != inact {
			t.Fatalf("round %d: %d inactive placements (by port %v), want some, all on %d", round, inact, byPort, victim.Port)
		}
		if fin+inact != 32 {
			t.Fatalf("placements: %d + %d", fin, inact)
		}
		// Reads never use the stopped worker or the inactive placements.
		if n := count(); n != want {
			t.Fatalf("round %d: count %d, want %d", round, n, want)
		}
		for i := 0; i < 50; i++ {
			var n int
			if err := conn.QueryRow(ctx, fmt.Sprintf("select count(*) from %s where customer_id = 'C%d'", table, i)).Scan(&n); err != nil {
				t.Fatalf("read of C%d with a worker down: %v", i, err)
			}
		}
		if err := victim.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Still inactive: repair is what brings them back.
		if _, inact2, _ := placementStates(t, table); inact2 != inact {
			t.Fatalf("inactive placements changed from %d to %d before repair", inact, inact2)
		}
	}
	verify := func(how string) {
		t.Helper()
		fin, inact, _ := placementStates(t, table)
		if inact != 0 || fin != 32 {
			t.Fatalf("after %s: %d finalized, %d inactive", how, fin, inact)
		}
		if total := checkPlacements(t, table, "hashtext(customer_id)"); total != int64(want) {
			t.Fatalf("after %s: %d rows on the workers, want %d", how, total, want)
		}
		if n := count(); n != want {
			t.Fatalf("after %s: count %d, want %d", how, n, want)
		}
	}

	// 1. pg_shard's repair: a SELECT over shard_placement calling master_copy_shard_placement
	// once per inactive placement. The wrong way round is refused first.
	down(1)
	repairSQL := `SELECT master_copy_shard_placement(t1.shard_id, %s.node_name, %s.node_port, %s.node_name, %s.node_port)
		FROM pgs_distribution_metadata.shard_placement t1, pgs_distribution_metadata.shard_placement t2
		WHERE t1.shard_id = t2.shard_id AND t1.shard_state = 3 AND t2.shard_state = 1
		  AND t1.shard_id IN (SELECT id FROM pgs_distribution_metadata.shard WHERE relation_id = '%s'::regclass)`
	wantError(t, conn, fmt.Sprintf(repairSQL, "t1", "t1", "t2", "t2", table), "22023", "source placement must be in finalized state")
	rows, err := conn.Query(ctx, fmt.Sprintf(repairSQL, "t2", "t2", "t1", "t1", table))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil || n == 0 {
		t.Fatalf("repair query: %d rows, %v", n, err)
	}
	verify("master_copy_shard_placement")

	// 2. REPAIR SHARD <id>, with progress notices, shard by shard.
	down(2)
	var script strings.Builder
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state == 3 {
				fmt.Fprintf(&script, "REPAIR SHARD %d;\n", s.id)
			}
		}
	}
	out, err := psql(t, env.P, script.String())
	if err != nil {
		t.Fatalf("REPAIR SHARD: %v\n%s", err, out)
	}
	if !strings.Contains(out, "NOTICE:") || !strings.Contains(out, ": done") || !strings.Contains(out, "copying") {
		t.Errorf("REPAIR SHARD printed no progress notices:\n%s", out)
	}
	verify("REPAIR SHARD")
	out, err = psql(t, env.P, "SHOW REPAIRS;\n", "-A", "-t", "-F", "|")
	if err != nil || !strings.Contains(out, "|succeeded|") || !strings.Contains(out, "|statement|") || !strings.Contains(out, "|function|") {
		t.Errorf("SHOW REPAIRS: %v\n%s", err, out)
	}

	// 3. The background repairer of a proxy notices the node is back.
	down(3)
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{RepairInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, inact, _ := placementStates(t, table)
		if inact == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background repairer left %d placements inactive", inact)
		}
		time.Sleep(100 * time.Millisecond)
	}
	verify("the background repairer")
	out, _ = psql(t, p2, "SHOW REPAIRS;\n", "-A", "-t", "-F", "|")
	if !strings.Contains(out, "|background|") {
		t.Errorf("SHOW REPAIRS lacks background repairs:\n%s", out)
	}
}
