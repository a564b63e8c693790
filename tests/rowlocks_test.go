package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// Row-level write locks (proxy/locks.go): writes to a replicated shard that pin their rows
// by partition-key value lock those keys only, so blocks writing different rows of one
// shard run at once, as in PostgreSQL; writes of the same rows wait as PostgreSQL's do,
// and deadlocks are found by the coordinator's deadlock detector.

// rowLockPair is a table with rows 1..4 in one shard (two placements) through the proxy,
// and the same table on a plain server.
func rowLockPair(t *testing.T, prefix string, rf int) (table, plain string) {
	t.Helper()
	table, plain = uniqueName(prefix), uniqueName(prefix+"_plain")
	ddl := "CREATE TABLE %s (id int PRIMARY KEY, v int)"
	rows := "INSERT INTO %s VALUES (1, 10), (2, 20), (3, 30), (4, 40)"
	pc := connectServer(t, env.C.Coordinator)
	mustExec(t, pc, fmt.Sprintf(ddl, plain), fmt.Sprintf(rows, plain))
	t.Cleanup(func() { pc.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain) })
	a := connect(t)
	distribute(t, a, fmt.Sprintf(ddl, table), table, "id", 1, rf)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf(rows, table))
	return table, plain
}

// rowsNoWait has a's block update row 1 and b then update row 2 (in a block, and
// autocommit) while a's block is open: it reports whether b's statements finished before a
// committed (the test gives them 10s).
func rowsNoWait(t *testing.T, a, b *pgx.Conn, table string) string {
	t.Helper()
	ctx := context.Background()
	mustExec(t, a, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", table))
	out := ""
	for _, stmts := range [][]string{
		{fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 2", table)},
		{"BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 3", table), fmt.Sprintf("DELETE FROM %s WHERE id = 4", table),
			fmt.Sprintf("INSERT INTO %s VALUES (5, 50)", table), "COMMIT"},
		{fmt.Sprintf("INSERT INTO %s VALUES (6, 60), (7, 70)", table)},
	} {
		done := make(chan error, 1)
		go func() {
			for _, s := range stmts {
				if _, err := b.Exec(ctx, s); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			out += fmt.Sprintf("[%v] ", err)
		case <-time.After(10 * time.Second):
			out += "[waits for the other block] "
			mustExec(t, a, "COMMIT")
			<-done
			return out
		}
	}
	mustExec(t, a, "COMMIT")
	return out + queryString(t, b, fmt.Sprintf("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM %s", table))
}

// TestRowLocksDifferentRowsDoNotWait: with two placements per shard, a block writing row 1
// of a shard does not hold up another session's writes of other rows of that shard (UPDATE,
// DELETE, INSERT, in a block and not), as in PostgreSQL.
func TestRowLocksDifferentRowsDoNotWait(t *testing.T) {
	table, plain := rowLockPair(t, "rowlocks_nowait", 2)
	want := rowsNoWait(t, connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator), plain)
	got := rowsNoWait(t, connect(t), connect(t), table)
	if got != want {
		t.Errorf("pgshard: %s\nPostgreSQL: %s", got, want)
	}
	checkPlacements(t, table, "hashint4(id)")
}

// sameRow has a's block update row 1 and b update it too: b waits until a commits and
// then sees a's value. It returns b's RETURNING value and whether b finished before a's
// COMMIT (it must not).
func sameRow(t *testing.T, a, b *pgx.Conn, table string) string {
	t.Helper()
	ctx := context.Background()
	mustExec(t, a, "BEGIN", fmt.Sprintf("UPDATE %s SET v = 100 WHERE id = 1", table))
	var committed atomic.Bool
	type res struct {
		v     int
		err   error
		early bool
	}
	done := make(chan res, 1)
	go func() {
		var v int
		err := b.QueryRow(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1 RETURNING v", table)).Scan(&v)
		done <- res{v, err, !committed.Load()}
	}()
	select {
	case r := <-done:
		mustExec(t, a, "COMMIT")
		return fmt.Sprintf("finished before the commit: %d %v", r.v, r.err)
	case <-time.After(time.Second):
	}
	committed.Store(true)
	mustExec(t, a, "COMMIT")
	r := <-done
	return fmt.Sprintf("%d %v early=%v", r.v, r.err, r.early)
}

// TestRowLocksSameRowWaits: a write of a row another block wrote waits for that block and
// then sees its value, as in PostgreSQL.
func TestRowLocksSameRowWaits(t *testing.T) {
	table, plain := rowLockPair(t, "rowlocks_same", 2)
	want := sameRow(t, connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator), plain)
	got := sameRow(t, connect(t), connect(t), table)
	if got != want {
		t.Errorf("pgshard: %s, PostgreSQL: %s", got, want)
	}
	checkPlacements(t, table, "hashint4(id)")
}

// TestRowLocksDeadlock: two blocks updating two rows of one shard in opposite orders: one
// hears 40P01 within seconds (the coordinator's deadlock_timeout), the other commits, as
// in PostgreSQL; with one placement per shard too, and across two proxies.
func TestRowLocksDeadlock(t *testing.T) {
	p2, err := testproxy.Start(context.Background(), env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	for _, rf := range []int{2, 1} {
		table, plain := rowLockPair(t, fmt.Sprintf("rowlocks_deadlock%d", rf), rf)
		want := deadlock(t, connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator), plain, 1, 2)
		if got := deadlock(t, connect(t), connect(t), table, 1, 2); got != want {
			t.Errorf("replication %d: pgshard: %s, PostgreSQL: %s", rf, got, want)
		}
		if got := deadlock(t, connect(t), connectTo(t, p2), table, 3, 4); got != want {
			t.Errorf("replication %d, two proxies: pgshard: %s, PostgreSQL: %s", rf, got, want)
		}
		checkPlacements(t, table, "hashint4(id)")
	}
}

// TestRowLocksWaitsOneShard: the waits of TestWaitsLikePostgreSQL (lock_timeout,
// statement_timeout, cancel, commit) on a row of a one-shard table, through one proxy and
// through two.
func TestRowLocksWaitsOneShard(t *testing.T) {
	p2, err := testproxy.Start(context.Background(), env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	table, plain := rowLockPair(t, "rowlocks_waits", 2)
	want := runWaitCases(t, connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator), plain)
	for _, b := range []*pgx.Conn{connect(t), connectTo(t, p2)} {
		got := runWaitCases(t, connect(t), b, table)
		for i, c := range waitCases {
			if got[i].code != want[i].code || got[i].msg != want[i].msg {
				t.Errorf("%s: pgshard %s %q, PostgreSQL %s %q", c.name, got[i].code, got[i].msg, want[i].code, want[i].msg)
			}
		}
	}
	checkPlacements(t, table, "hashint4(id)")
}

// TestRowLocksRacePlacementsAgree: keyed UPDATEs, multi-row UPDATEs and DELETEs and
// INSERTs of the same keys race from several sessions on two proxies, in blocks and not;
// afterwards every pair of placements of every shard is identical (read on the workers).
func TestRowLocksRacePlacementsAgree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	table := uniqueName("rowlocks_race")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int, v int, n int NOT NULL DEFAULT 0)", table), table, "id", 2, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s SELECT g %% 8, g, 0 FROM generate_series(1, 40) g", table))

	stmts := []string{
		"UPDATE %[1]s SET n = n + 1, v = (v * 3 + %[2]d) %% 100000 WHERE id = %[3]d",
		"UPDATE %[1]s SET n = n + 1, v = (v + %[2]d) %% 100000 WHERE v %% 5 = %[3]d %% 5",
		"DELETE FROM %[1]s WHERE id = %[3]d AND v %% 3 = 0",
		"DELETE FROM %[1]s WHERE v > 90000 AND n %% 2 = 1",
		"INSERT INTO %[1]s VALUES (%[3]d, %[2]d, 0), (%[3]d, %[2]d + 1, 1)",
		"INSERT INTO %[1]s SELECT id, v + %[2]d, n FROM %[1]s WHERE id = %[3]d ORDER BY v, n LIMIT 1",
		"UPDATE %[1]s SET v = v - 1 WHERE id IN (%[3]d, %[3]d + 1)",
	}
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for w := range 6 {
		p := env.P
		if w%2 == 1 {
			p = p2
		}
		cfg, err := pgx.ParseConfig(simpleURL(p))
		if err != nil {
			t.Fatal(err)
		}
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			t.Logf("session %d notice: %s %s %s", w, n.Code, n.Message, n.Detail)
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < 60 && ctx.Err() == nil; i++ {
				block := rnd.Intn(3) == 0
				var err error
				if block {
					_, err = c.Exec(ctx, "BEGIN")
				}
				for k := 0; k < 1+rnd.Intn(3) && err == nil; k++ {
					_, err = c.Exec(ctx, fmt.Sprintf(stmts[rnd.Intn(len(stmts))], table, rnd.Intn(100), rnd.Intn(8)))
				}
				if block {
					if err == nil {
						_, err = c.Exec(ctx, "COMMIT")
					} else {
						c.Exec(ctx, "ROLLBACK")
					}
				}
				if err != nil {
					if pe := pgErrorOf(err); pe == nil || pe.Code != "40P01" {
						t.Errorf("session %d: %v", w, err)
						return
					}
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d statements or blocks succeeded, %d deadlocked", ok.Load(), failed.Load())
	noInactivePlacements(t, table)
	checkPlacements(t, table, "hashint4(id)")
}

// TestRowLocksNoStarvation: three sessions on one proxy writing a shard without a pause
// (overlapping INSERTs into a table without unique index, which commute) do not starve
// writers of that shard on another proxy, by key or by predicate (the leases did: the
// busy proxy never handed its lease over, and the other writer waited for its lock
// timeout).
func TestRowLocksNoStarvation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	table := uniqueName("rowlocks_starve")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int, v int)", table), table, "id", 1, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (4, 4)", table))
	busy, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 3 {
		c := connect(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for busy.Err() == nil {
				sql := fmt.Sprintf("INSERT INTO %s SELECT %d, g FROM generate_series(1, 200) g", table, 1+i)
				if i == 2 {
					sql = fmt.Sprintf("INSERT INTO %s VALUES (3, 1), (3, 2), (3, 3)", table)
				}
				if _, err := c.Exec(busy, sql); err != nil && busy.Err() == nil {
					t.Errorf("busy session %d: %v", i, err)
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	b := connectTo(t, p2)
	mustExec(t, b, "SET lock_timeout = '10s'")
	for _, sql := range []string{"UPDATE %s SET v = 0 WHERE id = 4", "DELETE FROM %s WHERE v > 150", "UPDATE %s SET v = v + 1 WHERE id = 4"} {
		if _, err := b.Exec(ctx, fmt.Sprintf(sql, table)); err != nil {
			t.Errorf("the other proxy's %q: %v", sql, err)
		}
	}
	stop()
	wg.Wait()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the test ran out of time")
	}
	checkPlacements(t, table, "hashint4(id)")
}

// TestRowLocksLostCoordinatorConnection: a block whose coordinator connection (which holds
// its write locks) is lost cannot commit: another writer may have taken the locks
// meanwhile. COMMIT fails and no placement has the block's write.
func TestRowLocksLostCoordinatorConnection(t *testing.T) {
	ctx := context.Background()
	table, _ := rowLockPair(t, "rowlocks_lost", 2)
	app := uniqueName("lostcoord")
	c, err := pgx.Connect(ctx, simpleURL(env.P)+"&application_name="+app)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	mustExec(t, c, "BEGIN", fmt.Sprintf("UPDATE %s SET v = 1000 WHERE id = 1", table))
	su := connectServer(t, env.C.Coordinator)
	if n := queryString(t, su, "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE application_name = $1", app); n != "1" {
		t.Fatalf("terminated %s coordinator backends of the session, want 1", n)
	}
	_, err = c.Exec(ctx, "COMMIT")
	if err == nil {
		t.Errorf("COMMIT succeeded after the coordinator connection holding the locks was lost")
	}
	other := connect(t)
	if v := queryString(t, other, fmt.Sprintf("SELECT v::text FROM %s WHERE id = 1", table)); v != "10" {
		t.Errorf("the block's write is there (v = %s) though its locks were lost", v)
	}
	checkPlacements(t, table, "hashint4(id)")
}
