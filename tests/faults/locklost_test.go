package faults

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestWriteLocksLostWhileWaiting: an autocommit UPDATE of a replicated shard waits on a
// placement for a row lock (taken on the worker behind pgshard's back, and held for the
// whole test) when its coordinator connection, which holds its write locks, is
// terminated. The locks are gone, so another writer may now write the rows: the UPDATE
// must not wait on (two such writers wait for each other's row locks on two workers,
// where no deadlock detector sees them: TestIssue12LeaseConnectionsTerminated hung so).
// It fails with 08006 while the row is still locked, and is undone on every placement.
func TestWriteLocksLostWhileWaiting(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 100)
	ps := placements(t, tbl)
	shard, wb := ps[0].shard, ps[1].workerIdx
	k := keyInShard(t, tbl, shard)
	lock := connectTo(t, env.c.Workers[wb].URL("postgres"))
	lock.exec(t, "BEGIN", fmt.Sprintf("SELECT 1 FROM %s_%d WHERE k = %d FOR UPDATE", tbl, shard, k))
	defer lock.exec(t, "ROLLBACK")

	b := connect(t)
	// Only a bound on the test: the UPDATE waits for the row lock as long as it is held.
	wctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(wctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d", tbl, k))
		done <- err
	}()
	waitLockWait(t, wb)
	res, err := env.c.Coordinator.Exec(context.Background(), "postgres", `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
	if err != nil || len(res) == 0 || len(res[0].Rows) == 0 || string(res[0].Rows[0][0]) == "0" {
		t.Fatalf("no coordinator connection terminated (%v): the reproduction needs them gone", err)
	}
	err = <-done
	if errors.Is(wctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the UPDATE still waited for the row lock 60 s after its coordinator connection, holding its write locks, was terminated")
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" {
		t.Fatalf("UPDATE: %v; want 08006, its write locks were lost", err)
	}
	t.Logf("UPDATE: %v", err)
	lock.exec(t, "ROLLBACK")
	waitBackendsGone(t)
	consistent(t, tbl)
	c2 := connect(t)
	var v int64
	if err := c2.QueryRow(context.Background(), fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != int64(k) {
		t.Errorf("v = %d after the failed UPDATE, want %d (unchanged)", v, k)
	}
}
