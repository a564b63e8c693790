package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
}

var waitCases = []waitCase{
	{name: "lock_timeout", setup: []string{"SET lock_timeout = '200ms'"}},
	{name: "statement_timeout", setup: []string{"SET statement_timeout = '200ms'"}},
	{name: "lock_timeout, extended", setup: []string{"SET lock_timeout = '200ms'"}, mode: pgx.QueryExecModeExec},
	{name: "SET LOCAL lock_timeout in a block", setup: []string{"BEGIN", "SET LOCAL lock_timeout = '200ms'"}, block: true},
	{name: "statement_timeout in a block", setup: []string{"BEGIN", "SET LOCAL statement_timeout = '200ms'"}, block: true},
	{name: "cancel", cancel: true},
	{name: "cancel, extended", cancel: true, mode: pgx.QueryExecModeExec},
	{name: "cancel in a block", setup: []string{"BEGIN"}, block: true, cancel: true},
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
// session's lock_timeout, 57014 at its statement_timeout or on a cancel request, at once
// rather than at the proxy's --lock-timeout; with none of them it waits for the holder.
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
