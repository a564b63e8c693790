package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// An implicit write to several placements prepares on each in the same query text as
// the write ("BEGIN; UPDATE ...; PREPARE TRANSACTION 'gid'"), when its two-phase commit
// name is known from its locks (proxy/write.go send). These tests cover what the
// placement's answer can then say: the write failed (nothing prepared), or the write
// succeeded and PREPARE refused.

// fillPreparedSlots prepares transactions directly on server s until its
// max_prepared_transactions are all taken, and returns a function that rolls them back.
func fillPreparedSlots(t *testing.T, port int) func() {
	t.Helper()
	ctx := context.Background()
	c := connectServer(t, serverFor(port))
	var max int
	if err := c.QueryRow(ctx, "SELECT current_setting('max_prepared_transactions')::int - (SELECT count(*) FROM pg_prepared_xacts)").Scan(&max); err != nil {
		t.Fatal(err)
	}
	var gids []string
	undo := func() {
		for _, g := range gids {
			if _, err := c.Exec(ctx, "ROLLBACK PREPARED '"+g+"'"); err != nil {
				t.Errorf("rolling back %s: %v", g, err)
			}
		}
		gids = nil
	}
	for i := 0; i < max; i++ {
		g := fmt.Sprintf("filler_%s_%d", uniqueName("p"), i)
		if _, err := c.Exec(ctx, "BEGIN; SELECT 1; PREPARE TRANSACTION '"+g+"'"); err != nil {
			undo()
			t.Fatal(err)
		}
		gids = append(gids, g)
	}
	return undo
}

// TestOneTripPrepareRefused: the write succeeds on both placements, one placement's
// PREPARE is refused (no prepared-transaction slot left): the client gets PostgreSQL's
// error with pgshard's hint, the sibling's prepared part is rolled back at once (no
// prepared transaction is left behind, so no row stays locked), nothing is marked, and
// both placements keep the old value. Once the slots are free, the same write commits
// on both.
func TestOneTripPrepareRefused(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 10)", tbl))
	var h int32
	if err := connectServer(t, env.C.Coordinator).QueryRow(ctx, "SELECT hashint4(1)").Scan(&h); err != nil {
		t.Fatal(err)
	}
	var victim int
	for _, s := range shardsOf(t, tbl) {
		if s.min <= h && h <= s.max {
			victim = s.places[1].port
		}
	}
	if victim == 0 {
		t.Fatal("no shard for key 1")
	}
	before := preparedOnWorkers(t)
	undo := fillPreparedSlots(t, victim)
	_, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 1", tbl))
	undo()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.Contains(pe.Message, "maximum number of prepared transactions reached") {
		t.Fatalf("UPDATE with no prepared-transaction slot on a placement: %v", err)
	}
	// pgshard's wording: which worker refused, and why a single-row write prepares.
	if !strings.HasPrefix(pe.Message, "could not prepare the transaction on ") || !strings.Contains(pe.Detail, "two-phase commit") {
		t.Errorf("message %q, detail %q", pe.Message, pe.Detail)
	}
	if n := preparedOnWorkers(t); n != before {
		t.Errorf("%d pgshard prepared transactions left behind (before: %d)", n-before, before)
	}
	for _, s := range shardsOf(t, tbl) {
		for _, p := range s.places {
			if p.state != 1 {
				t.Errorf("placement %d of shard %d marked (state %d)", p.id, s.id, p.state)
			}
		}
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT v FROM %s WHERE k = 1", tbl)); got != "10" {
		t.Errorf("v = %s after the refused UPDATE, want 10", got)
	}
	placementsAgree(t, tbl)
	// The row is not locked by anything left behind: the same write now commits.
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 1", tbl))
	if got := queryString(t, conn, fmt.Sprintf("SELECT v FROM %s WHERE k = 1", tbl)); got != "11" {
		t.Errorf("v = %s, want 11", got)
	}
	placementsAgree(t, tbl)
}

// TestOneTripWriteFails: a write that fails on every placement (a constraint) prepares
// nothing and leaves nothing prepared; one that fails on one placement only (a row only
// that placement holds, inserted directly) marks it and commits on the other, and
// RETURNING comes back once, from the placement that took it.
func TestOneTripWriteFails(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, ", CHECK (v < 100)")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 10), (2, 20)", tbl))
	before := preparedOnWorkers(t)
	_, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 500 WHERE k = 1", tbl))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" {
		t.Fatalf("UPDATE violating a CHECK: %v", err)
	}
	if n := preparedOnWorkers(t); n != before {
		t.Errorf("%d prepared transactions left behind", n-before)
	}
	var v int
	if err := conn.QueryRow(ctx, fmt.Sprintf("UPDATE %s SET v = v + 5 WHERE k = 2 RETURNING v", tbl)).Scan(&v); err != nil || v != 25 {
		t.Fatalf("UPDATE ... RETURNING: %d, %v", v, err)
	}
	if n := preparedOnWorkers(t); n != before {
		t.Errorf("%d prepared transactions left behind after a commit", n-before)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s", tbl)); got != "2" {
		t.Errorf("count = %s", got)
	}
	placementsAgree(t, tbl)
}

// TestOneTripRowCountsDiffer: a row only the first placement holds (inserted there
// directly): the UPDATE changes it there and nothing on the sibling, which is marked
// inactive (as without two-phase commit); the first placement's part commits, the
// sibling's is rolled back, and no prepared transaction is left behind either way.
func TestOneTripRowCountsDiffer(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	var h int32
	if err := connectServer(t, env.C.Coordinator).QueryRow(ctx, "SELECT hashint4(3)").Scan(&h); err != nil {
		t.Fatal(err)
	}
	var shard shardInfo
	for _, s := range shardsOf(t, tbl) {
		if s.min <= h && h <= s.max {
			shard = s
		}
	}
	first := connectServer(t, serverFor(shard.places[0].port))
	if _, err := first.Exec(ctx, fmt.Sprintf("INSERT INTO %s_%d VALUES (3, 30)", tbl, shard.id)); err != nil {
		t.Fatal(err)
	}
	before := preparedOnWorkers(t)
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 3", tbl))
	if n := preparedOnWorkers(t); n != before {
		t.Errorf("%d prepared transactions left behind", n-before)
	}
	var v int
	if err := first.QueryRow(ctx, fmt.Sprintf("SELECT v FROM %s_%d WHERE k = 3", tbl, shard.id)).Scan(&v); err != nil || v != 31 {
		t.Errorf("first placement: v = %d, %v; want 31", v, err)
	}
	states := map[int64]int{}
	for _, s := range shardsOf(t, tbl) {
		for _, p := range s.places {
			states[p.id] = p.state
		}
	}
	if states[shard.places[0].id] != 1 || states[shard.places[1].id] == 1 {
		t.Errorf("placement states %d (holds the row) and %d (does not): want the second marked", states[shard.places[0].id], states[shard.places[1].id])
	}
}

// TestOneTripOnePlacementRefuses: the sibling placement already holds the key (inserted
// there directly), so an INSERT through pgshard fails there with 23505 and succeeds,
// prepared, on the first placement. The one placement left commits its prepared part
// (COMMIT PREPARED, not a COMMIT that would find no transaction and leave the part to
// recovery, which would roll back a write the client heard succeed); the refusing
// placement is marked, nothing stays prepared, and the row survives recovery.
func TestOneTripOnePlacementRefuses(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, ", PRIMARY KEY (k)")
	var h int32
	if err := connectServer(t, env.C.Coordinator).QueryRow(ctx, "SELECT hashint4(5)").Scan(&h); err != nil {
		t.Fatal(err)
	}
	var shard shardInfo
	for _, s := range shardsOf(t, tbl) {
		if s.min <= h && h <= s.max {
			shard = s
		}
	}
	second := connectServer(t, serverFor(shard.places[1].port))
	if _, err := second.Exec(ctx, fmt.Sprintf("INSERT INTO %s_%d VALUES (5, 50)", tbl, shard.id)); err != nil {
		t.Fatal(err)
	}
	before := preparedOnWorkers(t)
	_, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (5, 55)", tbl))
	t.Logf("INSERT: %v", err)
	if n := preparedOnWorkers(t); n != before {
		t.Errorf("%d prepared transactions left behind", n-before)
	}
	mustExec(t, conn, "RECOVER TRANSACTIONS")
	first := connectServer(t, serverFor(shard.places[0].port))
	var v int
	ferr := first.QueryRow(ctx, fmt.Sprintf("SELECT v FROM %s_%d WHERE k = 5", tbl, shard.id)).Scan(&v)
	states := map[int64]int{}
	for _, s := range shardsOf(t, tbl) {
		for _, p := range s.places {
			states[p.id] = p.state
		}
	}
	if err == nil {
		// Acknowledged: the first placement holds it, the second is marked.
		if ferr != nil || v != 55 {
			t.Errorf("acknowledged INSERT: first placement v = %d, %v", v, ferr)
		}
		if states[shard.places[0].id] != 1 || states[shard.places[1].id] == 1 {
			t.Errorf("placement states %d and %d: want the refusing second one marked", states[shard.places[0].id], states[shard.places[1].id])
		}
	} else if ferr == nil {
		t.Errorf("failed INSERT left v = %d on the first placement", v)
	}
}
