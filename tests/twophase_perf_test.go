package tests

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The release of the write locks' session-level copies after a two-phase commit
// (proxy/twophase.go) goes out without waiting for its answer: these tests check that
// it releases pgshard's copies only, and that the session's coordinator connection stays
// in step for what comes next (statements, notifications).

// TestTwoPhaseKeepsClientAdvisoryLocks: a client's own session-level advisory lock on
// the coordinator outlives a replicated autocommit write (two-phase commit, whose lock
// copies are released after it), as it outlives any write on plain PostgreSQL; and the
// write's locks are free again for another session's write of the same row.
func TestTwoPhaseKeepsClientAdvisoryLocks(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", tbl))
	plain := connectServer(t, env.C.Coordinator)
	mustExec(t, plain, fmt.Sprintf("CREATE TEMP TABLE %s (k int, v int)", tbl), fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", tbl))
	observer := connectServer(t, env.C.Coordinator)
	for _, c := range []struct {
		name string
		exec func(sql string)
	}{
		{"plain", func(sql string) { mustExec(t, plain, sql) }},
		{"pgshard", func(sql string) { mustExec(t, conn, sql) }},
	} {
		c.exec("SELECT pg_advisory_lock(424242)")
		for i := 0; i < 3; i++ {
			c.exec(fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 1", tbl))
		}
		var got bool
		if err := observer.QueryRow(ctx, "SELECT pg_try_advisory_lock(424242)").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got {
			t.Errorf("%s: the client's advisory lock was released by its writes", c.name)
			mustExec(t, observer, "SELECT pg_advisory_unlock(424242)")
		}
		c.exec("SELECT pg_advisory_unlock(424242)")
	}
	// Another session writes the same row at once: the copies were released.
	other := connect(t)
	mustExec(t, other, "SET lock_timeout = '10s'", fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 1", tbl))
	if v := queryString(t, conn, fmt.Sprintf("SELECT v::text FROM %s WHERE k = 1", tbl)); v != "5" {
		t.Fatalf("v = %s, want 5", v)
	}
	placementsAgree(t, tbl)
}

// TestTwoPhaseListenAfterWrite: a session that listens and then writes through two-phase
// commit still gets its notifications while idle (the release's answer, read later, is
// not taken for one), and its next statements answer in step.
func TestTwoPhaseListenAfterWrite(t *testing.T) {
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (2, 1)", tbl), "LISTEN perf2pc")
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 2", tbl))
	time.Sleep(100 * time.Millisecond) // let the session go idle with the answer there
	other := connect(t)
	mustExec(t, other, "NOTIFY perf2pc, 'hello'")
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	if n.Payload != "hello" {
		t.Fatalf("payload %q", n.Payload)
	}
	if v := queryString(t, conn, fmt.Sprintf("SELECT v::text FROM %s WHERE k = 2", tbl)); v != "2" {
		t.Fatalf("v = %s, want 2", v)
	}
}
