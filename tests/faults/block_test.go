package faults

import (
	"context"
	"fmt"
	"testing"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// protocols are the two ways a client sends statements: simple Query messages, and the
// extended protocol (Parse/Bind/Execute/Sync, as pgbench -M extended and most drivers).
var protocols = []struct {
	name string
	url  func() string
}{
	{"simple", func() string { return simpleURL(env.p) }},
	{"extended", func() string { return env.p.URL() + "&default_query_exec_mode=exec" }},
}

// TestBlockReadFailover: inside a transaction block that wrote a row to both placements
// of its shard, the connection to the placement the next read goes to is lost. The read
// is served by the other placement, which holds the block's uncommitted write, rather
// than failing (in the extended protocol it used to end the client's connection with
// "FATAL: invalid message format"); COMMIT succeeds and marks the placement that lost its
// part of the block.
func TestBlockReadFailover(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			defer resetFaults(t)
			ctx := context.Background()
			c := connectTo(t, proto.url())
			tbl := table(t, c, 100)
			k, shard := keyOn(t, c, tbl, 0)
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k = $1", tbl), k); err != nil {
				t.Fatal(err)
			}
			// The read goes to the shard's first placement, on worker 0: cut it there.
			rule := env.fps[0].CutOnQuery(fmt.Sprintf(`SELECT .*%s_%d`, tbl, shard), 0, faultproxy.CutBefore)
			var v int64
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT v FROM %s WHERE k = $1", tbl), k).Scan(&v); err != nil {
				t.Fatalf("read in the block after the connection was lost: %v", err)
			}
			select {
			case <-rule.Fired():
			default:
				t.Fatal("the fault never fired")
			}
			if v != int64(k+1000) {
				t.Errorf("the block read v = %d, want its own write %d", v, k+1000)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("COMMIT: %v", err)
			}
			if in := inactive(placements(t, tbl)); len(in) != 1 || in[0].workerIdx != 0 || in[0].shard != shard {
				t.Fatalf("inactive placements: %+v", in)
			}
			if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k+1000) {
				t.Errorf("after COMMIT v = %d", v)
			}
			resetFaults(t)
			repairAll(t, c, tbl)
			consistent(t, tbl)
		})
	}
}

// TestBlockNodeAborted: inside a transaction block, a write fails on one placement only
// (its worker holds a row behind pgshard's back) and succeeds on the other. That worker's
// part of the block is now aborted: the writes the block made there earlier, to other
// shards, are lost with it. COMMIT must not count that worker as committed: every
// placement the block wrote there is marked, and reads in the block no longer go there.
func TestBlockNodeAborted(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			defer resetFaults(t)
			ctx := context.Background()
			c := connectTo(t, proto.url())
			tbl := table(t, c, 100)
			// Shard A has a placement on worker 1 and on another worker.
			ka, shardA := keyOn(t, c, tbl, 1)
			// A new key whose shard B also has a placement on worker 1, other than A.
			var kb int
			var shardB int64
			for from := 1001; ; {
				kb, shardB = keyOnFrom(t, tbl, 1, from)
				if shardB != shardA {
					break
				}
				from = kb + 1
			}
			direct := connectTo(t, env.c.Workers[1].URL("postgres"))
			direct.exec(t, fmt.Sprintf("INSERT INTO %s_%d VALUES (%d, -1, 'rogue')", tbl, shardB, kb))

			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k = $1", tbl), ka); err != nil {
				t.Fatal(err)
			}
			// Fails on worker 1 (duplicate key), succeeds on the other placement.
			if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ($1, $2, 'proper')", tbl), kb, kb); err != nil {
				t.Fatal(err)
			}
			var v int64
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT v FROM %s WHERE k = $1", tbl), ka).Scan(&v); err != nil {
				t.Fatalf("read in the block: %v", err)
			}
			if v != int64(ka+1000) {
				t.Errorf("the block read v = %d, want %d", v, ka+1000)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("COMMIT: %v", err)
			}
			marked := map[int64]bool{}
			for _, p := range inactive(placements(t, tbl)) {
				if p.workerIdx == 1 {
					marked[p.shard] = true
				}
			}
			if !marked[shardA] || !marked[shardB] {
				t.Errorf("placements on worker 1 marked inactive: %v, want shards %d and %d", marked, shardA, shardB)
			}
			for _, k := range []int{ka, kb} {
				want := int64(k)
				if k == ka {
					want += 1000
				}
				if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != want {
					t.Errorf("k = %d: v = %d, want %d", k, v, want)
				}
			}
			repairAll(t, c, tbl)
			consistent(t, tbl)
		})
	}
}

// TestBlockGoesOnWithoutLostNode: after the connection to one worker of a transaction
// block is lost, SET, SAVEPOINT, ROLLBACK TO and RELEASE run on the workers the block still
// has, writes go to the surviving placements, and COMMIT marks what the lost worker missed.
func TestBlockGoesOnWithoutLostNode(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			defer resetFaults(t)
			ctx := context.Background()
			c := connectTo(t, proto.url())
			tbl := table(t, c, 100)
			k, shard := keyOn(t, c, tbl, 0)
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k = $1", tbl), k); err != nil {
				t.Fatal(err)
			}
			env.fps[0].SetRefuse(true)
			env.fps[0].CutAll()
			for _, q := range []string{
				"SET LOCAL statement_timeout = '20s'",
				"SAVEPOINT s1",
				fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, k),
				"ROLLBACK TO SAVEPOINT s1",
				fmt.Sprintf("UPDATE %s SET v = v + 10 WHERE k = %d", tbl, k),
				"RELEASE SAVEPOINT s1",
			} {
				if _, err := tx.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			var v int64
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT v FROM %s WHERE k = $1", tbl), k).Scan(&v); err != nil || v != int64(k+1010) {
				t.Fatalf("the block read v = %d (%v), want %d", v, err, k+1010)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("COMMIT: %v", err)
			}
			if in := inactive(placements(t, tbl)); len(in) != 1 || in[0].workerIdx != 0 || in[0].shard != shard {
				t.Fatalf("inactive placements: %+v", in)
			}
			resetFaults(t)
			if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != int64(k+1010) {
				t.Errorf("after COMMIT v = %d", v)
			}
			repairAll(t, c, tbl)
			consistent(t, tbl)
		})
	}
}

// TestBlockReadOnlyNodeLost: a worker that served only reads of a transaction block is
// lost before COMMIT. Nothing of the block was lost with it: COMMIT succeeds and marks
// nothing.
func TestBlockReadOnlyNodeLost(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			defer resetFaults(t)
			ctx := context.Background()
			c := connectTo(t, proto.url())
			tbl := table(t, c, 100)
			kr, _ := keyOn(t, c, tbl, 0)
			kw := keyAvoiding(t, tbl, 0)
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var v int64
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT v FROM %s WHERE k = $1", tbl), kr).Scan(&v); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k = $1", tbl), kw); err != nil {
				t.Fatal(err)
			}
			env.fps[0].SetRefuse(true)
			env.fps[0].CutAll()
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("COMMIT: %v", err)
			}
			if in := inactive(placements(t, tbl)); len(in) != 0 {
				t.Fatalf("inactive placements: %+v", in)
			}
			if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, kw)); v != int64(kw+1000) {
				t.Errorf("after COMMIT v = %d", v)
			}
			resetFaults(t)
			consistent(t, tbl)
		})
	}
}

// keyAvoiding returns a key in 1..100 whose shard has no placement on worker idx.
func keyAvoiding(t testing.TB, table string, idx int) int {
	t.Helper()
	ps := placements(t, table)
	c := connectTo(t, env.c.Coordinator.URL("postgres"))
	for k := 1; k <= 100; k++ {
		var h int32
		c.QueryRow(context.Background(), "select hashint4($1)", k).Scan(&h)
		ok, found := true, false
		for _, p := range ps {
			if h >= p.min && h <= p.max {
				found = true
				ok = ok && p.workerIdx != idx
			}
		}
		if found && ok {
			return k
		}
	}
	t.Fatalf("no key avoiding worker %d", idx)
	return 0
}
