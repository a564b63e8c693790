package tests

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestJobQueueSkipLocked runs the job-queue pattern over a table with several shards per
// worker: transactions take the first pending job with ORDER BY ... LIMIT 1 FOR UPDATE
// SKIP LOCKED, mark it done and commit. Every job must be taken exactly once, a
// job locked by one transaction must be skipped by another, and the lock must be taken
// inside the client's transaction (seen by a third session). FOR UPDATE with LIMIT and
// without SKIP LOCKED stays refused (each shard would lock, or wait for, rows PostgreSQL
// leaves alone).
func TestJobQueueSkipLocked(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("jobs")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, status text NOT NULL, worker int)", table), table, "id", 8, 2)
	const jobs = 60
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, 'new', NULL FROM generate_series(1, %d) g", table, jobs))
	take := fmt.Sprintf("SELECT id FROM %s WHERE status = 'new' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED", table)

	// Two open transactions take different jobs; the first takes the first job.
	a, b, c := connect(t), connect(t), connect(t)
	mustExec(t, a, "BEGIN")
	mustExec(t, b, "BEGIN")
	var ja, jb int
	if err := a.QueryRow(ctx, take).Scan(&ja); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, take).Scan(&jb); err != nil {
		t.Fatal(err)
	}
	if ja != 1 || jb == ja {
		t.Fatalf("first transaction took job %d (want 1), second took %d", ja, jb)
	}
	// Both are locked: a third session skips them.
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT id FROM %s ORDER BY id FOR UPDATE SKIP LOCKED", table))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if int(id) == ja || int(id) == jb {
			t.Fatalf("job %d is not locked by the transaction that took it: %v", id, ids)
		}
	}
	mustExec(t, a, "ROLLBACK")
	mustExec(t, b, "ROLLBACK")

	// Workers drain the queue.
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := map[int]int{}
	errs := make(chan error, 4)
	for w := 1; w <= 4; w++ {
		wconn := connect(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				tx, err := wconn.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				var id int
				err = tx.QueryRow(ctx, take).Scan(&id)
				if errors.Is(err, pgx.ErrNoRows) {
					tx.Rollback(ctx)
					return
				}
				if err == nil {
					_, err = tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET status = 'done', worker = %d WHERE id = %d AND status = 'new'", table, w, id))
				}
				if err == nil {
					err = tx.Commit(ctx)
				}
				if err == nil {
					mu.Lock()
					taken[id]++
					mu.Unlock()
				}
				if err != nil {
					tx.Rollback(ctx)
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for id, n := range taken {
		if n != 1 {
			t.Errorf("job %d taken %d times", id, n)
		}
	}
	if len(taken) != jobs {
		t.Errorf("%d jobs taken, want %d", len(taken), jobs)
	}
	var done, pending int
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FILTER (WHERE status = 'done' AND worker IS NOT NULL), count(*) FILTER (WHERE status <> 'done') FROM %s", table)).Scan(&done, &pending); err != nil {
		t.Fatal(err)
	}
	if done != jobs || pending != 0 {
		t.Fatalf("%d jobs done, %d pending; want %d done", done, pending, jobs)
	}

	var pe *pgconn.PgError
	_, err = conn.Exec(ctx, fmt.Sprintf("SELECT id FROM %s ORDER BY id LIMIT 1 FOR UPDATE", table))
	if !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Fatalf("FOR UPDATE with LIMIT without SKIP LOCKED: %v, want 0A000", err)
	}
}
