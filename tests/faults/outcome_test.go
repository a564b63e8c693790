package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// The write failure model: only an unavailable placement (connection refused or lost,
// server shut down or crashed) is marked inactive, and only while a sibling took the
// write; an error a placement answers with is the client's (the statement is aborted on
// every placement), except a constraint violation where a sibling succeeded, which is
// divergence of data; the last finalized placement of a shard is never marked.

// tableRF creates a distributed table (k int key, v bigint, s text) with the given shard
// count and replication factor, holding rows k = 1..n with v = k.
func tableRF(t testing.TB, c conn, n, shards, rf int) string {
	t.Helper()
	name := uniqueName("o")
	c.exec(t, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v bigint NOT NULL, s text)", name),
		fmt.Sprintf("select master_create_distributed_table('%s', 'k')", name),
		fmt.Sprintf("select master_create_worker_shards('%s', %d, %d)", name, shards, rf))
	if n > 0 {
		c.exec(t, fmt.Sprintf("INSERT INTO %s SELECT g, g, 'row ' || g FROM generate_series(1, %d) g", name, n))
	}
	return name
}

// shardOf returns the placements of the shard that holds key k.
func shardOf(t testing.TB, c conn, table string, k int) []placement {
	t.Helper()
	var h int32
	if err := c.QueryRow(context.Background(), "select hashint4($1)", k).Scan(&h); err != nil {
		t.Fatal(err)
	}
	var out []placement
	for _, p := range placements(t, table) {
		if h >= p.min && h <= p.max {
			out = append(out, p)
		}
	}
	return out
}

// bothPlacements reads v of key k directly from every placement of its shard.
func bothPlacements(t testing.TB, c conn, table string, k int) []int64 {
	t.Helper()
	var out []int64
	for _, p := range shardOf(t, c, table, k) {
		d := connectTo(t, env.c.Workers[p.workerIdx].URL("postgres"))
		var v int64
		if err := d.QueryRow(context.Background(), fmt.Sprintf("SELECT v FROM %s_%d WHERE k = %d", table, p.shard, k)).Scan(&v); err != nil {
			t.Fatalf("placement %d: %v", p.id, err)
		}
		out = append(out, v)
	}
	return out
}

// TestSerializationFailureMarksNothing is issue 9's defect 6: in REPEATABLE READ, A reads
// a row, B updates it, A updates it. PostgreSQL answers A with 40001. The placement A
// read from answers 40001, the other (where A's snapshot is taken only at the UPDATE)
// succeeds: that difference is the transaction's, not the data's, so the client gets
// 40001 and no placement is marked.
func TestSerializationFailureMarksNothing(t *testing.T) {
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 20)
	a, b := connect(t), connect(t)
	a.exec(t, "BEGIN ISOLATION LEVEL REPEATABLE READ", fmt.Sprintf("SELECT v FROM %s WHERE k = 7", tbl))
	b.exec(t, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 7", tbl))
	_, err := a.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 100 WHERE k = 7", tbl))
	if sqlState(err) != "40001" {
		t.Errorf("A's UPDATE: got %v, want 40001 as PostgreSQL gives", err)
	}
	if _, err := a.Exec(ctx, "COMMIT"); err != nil {
		t.Errorf("COMMIT of the failed block: %v", err)
	}
	if w := a.warnings(); len(w) > 0 {
		t.Errorf("warnings: %q", w)
	}
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Fatalf("a serialization failure marked placements: %+v", in)
	}
	for _, v := range bothPlacements(t, c, tbl, 7) {
		if v != 8 {
			t.Errorf("placements hold v = %v, want 8 (B's update only)", bothPlacements(t, c, tbl, 7))
			break
		}
	}
	consistent(t, tbl)
}

// TestErrorOnOnePlacementAborts: a transaction-level error on one placement only (a row
// lock held there by someone else runs into lock_timeout or statement_timeout) aborts the
// statement on every placement, in and outside transaction blocks: the client gets the
// error, nothing is marked, and no placement keeps the write.
func TestErrorOnOnePlacementAborts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, set, code string
		block           bool
	}{
		{"lock_timeout", "SET lock_timeout = '300ms'", "55P03", false},
		{"statement_timeout", "SET statement_timeout = '300ms'", "57014", false},
		{"lock_timeout in a block", "SET lock_timeout = '300ms'", "55P03", true},
		{"statement_timeout in a block", "SET statement_timeout = '300ms'", "57014", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t)
			tbl := table(t, c, 20)
			ps := shardOf(t, c, tbl, 7)
			// Someone holds the row's lock on the second placement only.
			locker := connectTo(t, env.c.Workers[ps[1].workerIdx].URL("postgres"))
			locker.exec(t, "BEGIN", fmt.Sprintf("SELECT * FROM %s_%d WHERE k = 7 FOR UPDATE", tbl, ps[1].shard))
			w := connect(t)
			w.exec(t, tc.set)
			if tc.block {
				w.exec(t, "BEGIN")
			}
			_, err := w.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = -1 WHERE k = 7", tbl))
			if sqlState(err) != tc.code {
				t.Errorf("UPDATE: got %v, want %s", err, tc.code)
			}
			if tc.block {
				w.exec(t, "ROLLBACK")
			}
			locker.exec(t, "ROLLBACK")
			if warns := w.warnings(); len(warns) > 0 {
				t.Errorf("warnings: %q", warns)
			}
			if in := inactive(placements(t, tbl)); len(in) != 0 {
				t.Fatalf("marked: %+v", in)
			}
			for _, v := range bothPlacements(t, c, tbl, 7) {
				if v != 7 {
					t.Fatalf("placements hold %v after the failed UPDATE, want 7 everywhere", bothPlacements(t, c, tbl, 7))
				}
			}
		})
	}
}

// TestDuplicateKeyWhileWorkerLost is issue 9's defect 12b: an INSERT every placement
// refuses with a duplicate key, while the connection to one placement's worker is lost.
// The client gets the duplicate key error; nothing is marked (the healthy placement
// answered, and the lost one cannot have applied a statement that failed).
func TestDuplicateKeyWhileWorkerLost(t *testing.T) {
	for _, action := range []faultproxy.Action{faultproxy.CutBefore, faultproxy.CutAfter} {
		for _, which := range []int{0, 1} {
			t.Run(fmt.Sprintf("%v/placement %d", action, which), func(t *testing.T) {
				defer resetFaults(t)
				ctx := context.Background()
				c := connect(t)
				tbl := table(t, c, 50)
				ps := shardOf(t, c, tbl, 9)
				rule := ps[which].faultProxy.CutOnQuery(fmt.Sprintf(`INSERT INTO .*%s`, tbl), 0, action)
				_, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (9, 9, 'again')", tbl))
				select {
				case <-rule.Fired():
				default:
					t.Fatal("the fault never fired")
				}
				if sqlState(err) != "23505" {
					t.Errorf("INSERT: got %v, want the duplicate key error", err)
				}
				if in := inactive(placements(t, tbl)); len(in) != 0 {
					t.Fatalf("marked: %+v", in)
				}
				resetFaults(t)
				if n := c.int(t, "SELECT count(*) FROM "+tbl); n != 50 {
					t.Errorf("count = %d", n)
				}
				consistent(t, tbl)
			})
		}
	}
}

// TestCommitLostWithOnePlacement is issue 9's defect 9: with replication 1, a worker's
// connection is lost as the block's COMMIT goes out. With two-phase commit that is COMMIT
// PREPARED, after the decision: the transfer is committed on both workers (the lost part
// is finished over a new connection, or by recovery), the client hears COMMIT, and the
// shard's only placement stays finalized.
func TestCommitLostWithOnePlacement(t *testing.T) {
	defer resetFaults(t)
	ctx := context.Background()
	c := connect(t)
	tbl := tableRF(t, c, 100, 6, 1)
	k0, _ := keyOn(t, c, tbl, 0)
	k1, _ := keyOn(t, c, tbl, 1)
	w := connect(t)
	w.exec(t, "BEGIN",
		fmt.Sprintf("UPDATE %s SET v = v - 10 WHERE k = %d", tbl, k0),
		fmt.Sprintf("UPDATE %s SET v = v + 10 WHERE k = %d", tbl, k1))
	rule := env.fps[1].CutOnQuery(`^COMMIT`, 0, faultproxy.CutBefore)
	_, err := w.Exec(ctx, "COMMIT")
	select {
	case <-rule.Fired():
	default:
		t.Fatal("the fault never fired")
	}
	if err != nil {
		t.Fatalf("COMMIT after the decision: %v", err)
	}
	resetFaults(t)
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Fatalf("the only placement of a shard was marked: %+v", in)
	}
	if n := c.int(t, "SELECT count(*) FROM "+tbl); n != 100 {
		t.Errorf("count = %d", n)
	}
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k0)); v != int64(k0-10) {
		t.Errorf("v of k0 = %d, want %d", v, k0-10)
	}
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k1)); v != int64(k1+10) {
		t.Errorf("v of the key whose COMMIT PREPARED was lost = %d, want %d", v, k1+10)
	}
}

// TestCommitLostWithTwoPlacements: with replication 2, the same lost COMMIT (COMMIT
// PREPARED, after the decision) is finished over a new connection: the client's COMMIT
// succeeds, every placement has the write, none is marked.
func TestCommitLostWithTwoPlacements(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 100)
	k, _ := keyOn(t, c, tbl, 1)
	w := connect(t)
	w.exec(t, "BEGIN", fmt.Sprintf("UPDATE %s SET v = -5 WHERE k = %d", tbl, k))
	rule := env.fps[1].CutOnQuery(`^COMMIT`, 0, faultproxy.CutBefore)
	w.exec(t, "COMMIT")
	select {
	case <-rule.Fired():
	default:
		t.Fatal("the fault never fired")
	}
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Fatalf("inactive: %+v", in)
	}
	resetFaults(t)
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != -5 {
		t.Errorf("v = %d", v)
	}
	consistent(t, tbl)
}

// TestExclusionConstraintOrdering is issue 9's defect 12a: an exclusion constraint makes
// INSERTs order-dependent, as a unique index does. Random INSERTs and DELETEs on a few
// keys from 8 sessions must leave both placements of every shard identical, none marked.
func TestExclusionConstraintOrdering(t *testing.T) {
	ctx := context.Background()
	c := connect(t)
	tbl := uniqueName("ex")
	c.exec(t, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int, EXCLUDE USING hash (k WITH =))", tbl),
		fmt.Sprintf("select master_create_distributed_table('%s', 'k')", tbl),
		fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", tbl))
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := connectTo(t, simpleURL(env.p))
			rnd := rand.New(rand.NewSource(int64(i)))
			for time.Now().Before(deadline) {
				k := rnd.Intn(40) + 1
				q := fmt.Sprintf("INSERT INTO %s VALUES (%d, %d)", tbl, k, i)
				if rnd.Intn(2) == 0 {
					q = fmt.Sprintf("DELETE FROM %s WHERE k = %d", tbl, k)
				}
				if _, err := cc.Exec(ctx, q); err != nil && sqlState(err) != "23P01" {
					errs <- fmt.Errorf("%s: %w", q, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if in := inactive(placements(t, tbl)); len(in) != 0 {
		t.Errorf("%d placements marked inactive", len(in))
	}
	// Every pair of placements, whatever their state.
	first := map[int64]string{}
	for _, p := range placements(t, tbl) {
		d := digest(t, tbl, p)
		if f, ok := first[p.shard]; !ok {
			first[p.shard] = d
		} else if f != d {
			t.Errorf("shard %d: placement %d holds %s, its sibling %s", p.shard, p.id, d, f)
		}
	}
}

// TestNoFinalizedPlacementError: a read of a shard none of whose placements is
// finalized says so, rather than "could be reached: <nil>".
func TestNoFinalizedPlacementError(t *testing.T) {
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 20)
	ps := shardOf(t, c, tbl, 3)
	coord := connectTo(t, env.c.Coordinator.URL("postgres"))
	coord.exec(t, fmt.Sprintf("UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE shard_id = %d", ps[0].shard))
	defer coord.exec(t, fmt.Sprintf("UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 1 WHERE shard_id = %d", ps[0].shard))
	var err error
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
		if _, err = c.Exec(ctx, fmt.Sprintf("SELECT v FROM %s WHERE k = 3", tbl)); err != nil {
			break
		}
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("read of a shard without finalized placements: %v", err)
	}
	text := pe.Message + " " + pe.Detail + " " + pe.Hint
	if strings.Contains(text, "<nil>") || !strings.Contains(text, fmt.Sprint(ps[0].shard)) {
		t.Errorf("error: %q", text)
	}
	for _, q := range []string{"SELECT count(*) FROM " + tbl, fmt.Sprintf("UPDATE %s SET v = 0 WHERE k = 3", tbl)} {
		_, err := c.Exec(ctx, q)
		if err == nil || strings.Contains(err.Error(), "<nil>") {
			t.Errorf("%s: %v", q, err)
		}
		if errors.As(err, &pe) && strings.Contains(pe.Detail, "<nil>") {
			t.Errorf("%s: detail %q", q, pe.Detail)
		}
	}
}

// TestCopyCommitLost: COPY into a table with two placements per shard while the
// connection to one worker is lost at PREPARE TRANSACTION (two-phase commit's first
// step): the COPY succeeds (every shard prepared on a placement), the placements on that
// worker that took rows are marked, and repair makes them whole. With one placement per
// shard, the same COPY fails and marks nothing. Lost at COMMIT PREPARED instead (after the
// decision), the COPY succeeds with either replication factor and marks nothing: the
// part is committed (on a new connection, or by recovery), every row is there.
func TestCopyCommitLost(t *testing.T) {
	for _, rf := range []int{2, 1} {
		t.Run(fmt.Sprintf("replication %d", rf), func(t *testing.T) {
			defer resetFaults(t)
			ctx := context.Background()
			c := connect(t)
			tbl := tableRF(t, c, 0, 6, rf)
			rule := env.fps[1].CutOnQuery(`^PREPARE TRANSACTION`, 0, faultproxy.CutBefore)
			_, err := c.PgConn().CopyFrom(ctx, strings.NewReader(copyRows(1, 200)), "COPY "+tbl+" FROM STDIN")
			select {
			case <-rule.Fired():
			default:
				t.Fatal("the fault never fired")
			}
			in := inactive(placements(t, tbl))
			if rf == 1 {
				if err == nil {
					t.Error("COPY succeeded although shards on worker 1 never prepared")
				}
				if len(in) != 0 {
					t.Errorf("marked the only placements: %+v", in)
				}
				resetFaults(t)
				recoverAll(t, c)
				if n := c.int(t, "SELECT count(*) FROM "+tbl); n != 0 {
					t.Errorf("failed COPY left %d rows", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("COPY: %v", err)
			}
			if len(in) == 0 {
				t.Fatal("no placement marked")
			}
			for _, p := range in {
				if p.workerIdx != 1 {
					t.Errorf("marked a placement on worker %d", p.workerIdx)
				}
			}
			resetFaults(t)
			if n := c.int(t, "SELECT count(*) FROM "+tbl); n != 200 {
				t.Errorf("count = %d", n)
			}
			repairAll(t, c, tbl)
			consistent(t, tbl)
		})
		t.Run(fmt.Sprintf("replication %d at COMMIT PREPARED", rf), func(t *testing.T) {
			defer resetFaults(t)
			ctx := context.Background()
			c := connect(t)
			tbl := tableRF(t, c, 0, 6, rf)
			rule := env.fps[1].CutOnQuery(`^COMMIT PREPARED`, 0, faultproxy.CutBefore)
			if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader(copyRows(1, 200)), "COPY "+tbl+" FROM STDIN"); err != nil {
				t.Fatalf("COPY after its decision: %v", err)
			}
			select {
			case <-rule.Fired():
			default:
				t.Fatal("the fault never fired")
			}
			if in := inactive(placements(t, tbl)); len(in) != 0 {
				t.Errorf("marked placements although every part prepared: %+v", in)
			}
			resetFaults(t)
			recoverAll(t, c)
			if n := c.int(t, "SELECT count(*) FROM "+tbl); n != 200 {
				t.Errorf("count = %d", n)
			}
			consistent(t, tbl)
		})
	}
}

// copyRows is COPY text for rows k = lo..hi (k, v = k, s = 'copied').
func copyRows(lo, hi int) string {
	var b strings.Builder
	for k := lo; k <= hi; k++ {
		fmt.Fprintf(&b, "%d\t%d\tcopied\n", k, k)
	}
	return b.String()
}

// TestRepairCyclesWithReloads is issue 9's defect 12c through the proxy: while metadata
// notifications keep every reload busy, a placement is marked (its worker cut) and
// repaired, again and again, under a stream of increments. After each repair both
// placements must hold every increment: a reload that read the metadata before the
// repair must not make the proxy skip the repaired placement.
func TestRepairCyclesWithReloads(t *testing.T) {
	defer resetFaults(t)
	ctx := context.Background()
	c := connect(t)
	tbl := table(t, c, 20)
	ps := shardOf(t, c, tbl, 1)
	cut := ps[1].faultProxy

	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(done)
		wg.Wait()
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		coord := connectTo(t, env.c.Coordinator.URL("postgres"))
		for {
			select {
			case <-done:
				return
			default:
			}
			coord.Exec(ctx, "SELECT pg_notify('pgshard_metadata', 'test')")
			time.Sleep(time.Millisecond)
		}
	}()
	var mu sync.Mutex // held by each increment; the checks take it to pause them
	var applied atomic.Int64
	incErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		w := connect(t)
		for {
			select {
			case <-done:
				return
			default:
			}
			mu.Lock()
			_, err := w.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 1", tbl))
			if err == nil {
				applied.Add(1) // counted before the checks can look
			}
			mu.Unlock()
			if err != nil {
				incErr <- err
				return
			}
		}
	}()
	r := connect(t)
	for cycle := 0; cycle < 12; cycle++ {
		cut.SetRefuse(true)
		cut.CutAll()
		for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			if in := inactive(placements(t, tbl)); len(in) == 1 && in[0].id == ps[1].id {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("cycle %d: placement %d never marked", cycle, ps[1].id)
			}
		}
		cut.SetRefuse(false)
		r.exec(t, fmt.Sprintf("REPAIR SHARD %d", ps[1].shard))
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		select {
		case err := <-incErr:
			mu.Unlock()
			t.Fatalf("increment: %v", err)
		default:
		}
		vs := bothPlacements(t, c, tbl, 1)
		in := inactive(placements(t, tbl))
		mu.Unlock()
		if len(in) == 0 && (len(vs) != 2 || vs[0] != vs[1]) {
			t.Fatalf("cycle %d: the placements hold v = %v after %d increments (both finalized)", cycle, vs, applied.Load())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if v := c.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = 1", tbl)); v != 1+applied.Load() {
		t.Errorf("v = %d after %d increments", v, applied.Load())
	}
}
