package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// waitOutcome is how a statement that waited for another transaction's lock ended: its
// SQLSTATE and message ("" for success), and how long it waited.
type waitOutcome struct {
	code, msg string
	took      time.Duration
}

// waitCase is one way of ending a wait: the waiter's settings before its UPDATE, whether
// it runs in a block, and what the test does while it waits (cancel it, or commit the
// holder).
type waitCase struct {
	name   string
	setup  []string // run by the waiter before the UPDATE
	block  bool     // the waiter's UPDATE runs in a transaction block
	cancel bool     // a cancel request ends the wait
	commit bool     // the holder commits while the waiter waits
	mode   pgx.QueryExecMode
	code   string // the SQLSTATE PostgreSQL answers with ("" for success)
}

var waitCases = []waitCase{
	{name: "lock_timeout", setup: []string{"SET lock_timeout = '200ms'"}, code: "55P03"},
	{name: "statement_timeout", setup: []string{"SET statement_timeout = '200ms'"}, code: "57014"},
	{name: "lock_timeout, extended", setup: []string{"SET lock_timeout = '200ms'"}, mode: pgx.QueryExecModeExec, code: "55P03"},
	{name: "SET LOCAL lock_timeout in a block", setup: []string{"BEGIN", "SET LOCAL lock_timeout = '200ms'"}, block: true, code: "55P03"},
	{name: "statement_timeout in a block", setup: []string{"BEGIN", "SET LOCAL statement_timeout = '200ms'"}, block: true, code: "57014"},
	{name: "cancel", cancel: true, code: "57014"},
	{name: "cancel, extended", cancel: true, mode: pgx.QueryExecModeExec, code: "57014"},
	{name: "cancel in a block", setup: []string{"BEGIN"}, block: true, cancel: true, code: "57014"},
	{name: "wait for commit", commit: true},
}

// runWaitCases runs every case with holder holding row 1 of table in a block and waiter
// updating it, and checks that both sessions are usable afterwards.
func runWaitCases(t *testing.T, holder, waiter *pgx.Conn, table string) []waitOutcome {
	t.Helper()
	ctx, cancelAll := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelAll()
	var out []waitOutcome
	for _, c := range waitCases {
		mode := c.mode
		if mode == 0 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		mustExec(t, holder, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", table))
		mustExec(t, waiter, c.setup...)
		done := make(chan waitOutcome, 1)
		start := time.Now()
		go func() {
			_, err := waiter.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v * 2 WHERE id = 1", table), mode)
			o := waitOutcome{took: time.Since(start)}
			if pe := pgErrorOf(err); pe != nil {
				o.code, o.msg = pe.Code, pe.Message
			} else if err != nil {
				o.code, o.msg = "client", err.Error()
			}
			done <- o
		}()
		var acted time.Time
		if c.cancel || c.commit {
			time.Sleep(500 * time.Millisecond)
			acted = time.Now()
			if c.cancel {
				if err := waiter.PgConn().CancelRequest(ctx); err != nil {
					t.Fatalf("%s: cancel request: %v", c.name, err)
				}
			} else {
				mustExec(t, holder, "COMMIT")
			}
		}
		var o waitOutcome
		select {
		case o = <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the waiter still waits after 20s", c.name)
		}
		if !acted.IsZero() {
			o.took = time.Since(acted)
		}
		if o.took > 1500*time.Millisecond {
			t.Errorf("%s: the wait ended after %s, want at once", c.name, o.took)
		}
		if c.block && o.code != "" {
			// The block failed, as in PostgreSQL: statements are refused until ROLLBACK.
			_, err := waiter.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
			if pe := pgErrorOf(err); pe == nil || pe.Code != "25P02" {
				t.Errorf("%s: after the failed wait in a block got %v, want 25P02", c.name, err)
			}
		}
		if c.block {
			mustExec(t, waiter, "ROLLBACK")
		}
		if !c.commit {
			mustExec(t, holder, "ROLLBACK")
		}
		mustExec(t, waiter, "RESET ALL")
		// Both sessions are usable, and the lock is free.
		mustExec(t, waiter, fmt.Sprintf("UPDATE %s SET v = 1 WHERE id = 1", table))
		t.Logf("%s: %s %q after %s", c.name, o.code, o.msg, o.took)
		out = append(out, o)
	}
	return out
}

// TestWaitsLikePostgreSQL: a write that waits for a shard write lock another block holds
// ends as a write waiting for a row lock in plain PostgreSQL does: with 55P03 at the
// session's lock_timeout, 57014 at its statement_timeout or on a cancel request, at once;
// with none of them it waits for the holder.
func TestWaitsLikePostgreSQL(t *testing.T) {
	table := uniqueName("waits")
	ddl := fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table)

	plain := uniqueName("waits_plain")
	pa, pb := connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator)
	mustExec(t, pa, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", plain),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", plain))
	t.Cleanup(func() { pa.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain) })
	want := runWaitCases(t, pa, pb, plain)

	a, b := connect(t), connect(t)
	distribute(t, a, ddl, table, "id", 2, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2), (3, 3)", table))
	got := runWaitCases(t, a, b, table)

	for i, c := range waitCases {
		if got[i].code != want[i].code || got[i].msg != want[i].msg {
			t.Errorf("%s: pgshard %s %q, PostgreSQL %s %q", c.name, got[i].code, got[i].msg, want[i].code, want[i].msg)
		}
	}
}

// TestWaitsAcrossProxies: the same waits where the lock is held through another proxy
// (both wait in the coordinator's lock manager), and a lock_timeout from the startup
// packet's options.
func TestWaitsAcrossProxies(t *testing.T) {
	ctx := context.Background()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	table := uniqueName("waits_lease")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 2, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	b := connectTo(t, p2)
	got := runWaitCases(t, a, b, table)
	for i, c := range waitCases {
		if got[i].code != c.code {
			t.Errorf("%s: got %s %q, want %s", c.name, got[i].code, got[i].msg, c.code)
		}
	}

	// lock_timeout from the startup packet (options=-c lock_timeout=200ms).
	opt, err := pgx.Connect(ctx, simpleURL(p2)+"&options=-c%20lock_timeout%3D200ms")
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close(ctx)
	mustExec(t, a, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", table))
	start := time.Now()
	_, err = opt.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v * 2 WHERE id = 1", table))
	if pe := pgErrorOf(err); pe == nil || pe.Code != "55P03" || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("startup lock_timeout: got %v after %s, want 55P03 after 200ms", err, time.Since(start))
	}
	mustExec(t, a, "ROLLBACK")
	// With the holder gone, the write goes through at once.
	mustExec(t, opt, "SET lock_timeout = 0", fmt.Sprintf("UPDATE %s SET v = 1 WHERE id = 1", table))
}

// TestWaitsDeadlock: two blocks writing two shards in opposite order deadlock on the
// coordinator's write locks; as in PostgreSQL (two rows updated in opposite order), one of them
// hears 40P01 "deadlock detected" after about deadlock_timeout, its block fails, and the
// other goes on and commits.
func TestWaitsDeadlock(t *testing.T) {
	plain := uniqueName("deadlock_plain")
	pa, pb := connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator)
	mustExec(t, pa, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", plain),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", plain))
	t.Cleanup(func() { pa.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain) })
	want := deadlock(t, pa, pb, plain, 1, 2)

	table := uniqueName("deadlock")
	a, b := connect(t), connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 2, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	// Two ids on different shards.
	var ids []int
	seen := map[string]bool{}
	for id := 1; len(ids) < 2 && id < 100; id++ {
		mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (%d, %d)", table, id, id))
		sh := queryString(t, a, fmt.Sprintf(`SELECT s.id::text FROM pgs_distribution_metadata.shard s
			WHERE s.relation_id = '%s'::regclass AND hashint4(%d) BETWEEN s.min_value::int AND s.max_value::int`, table, id))
		if !seen[sh] {
			seen[sh] = true
			ids = append(ids, id)
		}
	}
	if len(ids) < 2 {
		t.Fatal("no two ids on different shards")
	}
	got := deadlock(t, a, b, table, ids[0], ids[1])
	if got != want {
		t.Errorf("pgshard: %s, PostgreSQL: %s", got, want)
	}
}

// deadlock has a and b update rows x and y of table in opposite orders in blocks, and
// returns what they heard.
func deadlock(t *testing.T, a, b *pgx.Conn, table string, x, y int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	upd := func(id int) string { return fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = %d", table, id) }
	mustExec(t, a, "BEGIN", upd(x))
	mustExec(t, b, "BEGIN", upd(y))
	start := time.Now()
	errs := make(chan error, 2)
	go func() { _, err := a.Exec(ctx, upd(y)); errs <- err }()
	time.Sleep(100 * time.Millisecond)
	go func() { _, err := b.Exec(ctx, upd(x)); errs <- err }()
	var codes []string
	for range 2 {
		err := <-errs
		if err == nil {
			codes = append(codes, "ok")
			continue
		}
		pe := pgErrorOf(err)
		if pe == nil {
			t.Fatalf("deadlock: %v", err)
		}
		codes = append(codes, pe.Code+" "+pe.Message)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("deadlock answered after %s, want about deadlock_timeout", took)
		}
	}
	mustExec(t, a, "ROLLBACK")
	mustExec(t, b, "ROLLBACK")
	if codes[0] > codes[1] {
		codes[0], codes[1] = codes[1], codes[0]
	}
	return codes[0] + "; " + codes[1]
}
