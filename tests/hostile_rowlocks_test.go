package tests

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// Hostile attacks on the write locks (proxy/locks.go): a block's record of the
// coordinator's advisory locks it holds (txHeld) must agree with PostgreSQL's, or a later
// statement skips a lock it no longer holds and writes unordered; a block whose
// coordinator transaction (with its locks) is gone must never commit; and the placements
// of a shard must stay identical.

// keyLocksHeld is how many exclusive key locks (store.KeyLock) of the shard the
// coordinator has granted, in any session.
func keyLocksHeld(t *testing.T, shardID int64) int {
	t.Helper()
	classid := uint32(uint64(store.KeyLock(shardID, 0)) >> 32)
	var n int
	err := connectServer(t, env.C.Coordinator).QueryRow(context.Background(),
		`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'
		 AND objsubid = 1 AND classid = $1::int8::oid`, int64(classid)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lockHolderPID is the coordinator backend holding a key lock of the shard (0: none).
func lockHolderPID(t *testing.T, shardID int64) int {
	t.Helper()
	classid := uint32(uint64(store.KeyLock(shardID, 0)) >> 32)
	var pid int
	err := connectServer(t, env.C.Coordinator).QueryRow(context.Background(),
		`SELECT coalesce(min(pid), 0) FROM pg_locks WHERE locktype = 'advisory' AND granted
		 AND objsubid = 1 AND classid = $1::int8::oid`, int64(classid)).Scan(&pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// placementsIdentical fails the test when two placements of a shard of the table differ.
func placementsIdentical(t *testing.T, table string) {
	t.Helper()
	for id, places := range placementContents(t, table, "1") {
		for _, p := range places[1:] {
			a, b := places[0][strings.Index(places[0], ":"):], p[strings.Index(p, ":"):]
			if a != b {
				t.Errorf("shard %d: placements differ:\n %s\n %s", id, places[0], p)
			}
		}
	}
}

// TestHostileRowLocksSavepointBookkeeping: after every sequence of savepoints, ROLLBACK
// TO, RELEASE and failed statements, a write of key 1 in the block leaves the block holding
// key 1's lock on the coordinator, as PostgreSQL releases and keeps them; a block that
// believed it held a lock PostgreSQL had released would write unordered.
func TestHostileRowLocksSavepointBookkeeping(t *testing.T) {
	tbl, _ := rowLockPair(t, "hrl_sp", 2)
	shard := tableShardIDs(t, tbl)[0]
	upd := fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", tbl)
	upd2 := fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 2", tbl)
	all := fmt.Sprintf("UPDATE %s SET v = v + 1", tbl)
	ctx := context.Background()
	for _, sc := range []struct {
		name  string
		stmts []string
	}{
		{"rollback to", []string{"SAVEPOINT s", upd, "ROLLBACK TO s", upd}},
		{"taken before savepoint", []string{upd, "SAVEPOINT s", upd, "ROLLBACK TO s", upd}},
		{"release then rollback to outer", []string{"SAVEPOINT a", "SAVEPOINT b", upd, "RELEASE b", "ROLLBACK TO a", upd}},
		{"release then new savepoint", []string{"SAVEPOINT a", upd, "RELEASE a", "SAVEPOINT b", "ROLLBACK TO b", upd}},
		{"duplicate names", []string{"SAVEPOINT a", upd, "SAVEPOINT a", upd, "ROLLBACK TO a", "RELEASE a", "ROLLBACK TO a", upd}},
		{"failed statement", []string{"SAVEPOINT s", upd, "SELECT 1/0", "ROLLBACK TO s", upd}},
		{"failed write", []string{"SAVEPOINT s", upd, fmt.Sprintf("INSERT INTO %s VALUES (2, 0)", tbl), "ROLLBACK TO s", upd}},
		{"failed write same key", []string{"SAVEPOINT s", fmt.Sprintf("INSERT INTO %s VALUES (1, 0)", tbl), "ROLLBACK TO s", upd}},
		{"shard lock upgrade", []string{upd2, "SAVEPOINT s", all, "ROLLBACK TO s", upd}},
		{"one query string", []string{fmt.Sprintf("SAVEPOINT s; %s; ROLLBACK TO s; %s", upd, upd)}},
		{"nested rollback", []string{"SAVEPOINT a", upd, "SAVEPOINT b", upd2, "ROLLBACK TO a", upd2, upd}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
				a := connect(t)
				mustExec(t, a, "BEGIN")
				for _, s := range sc.stmts {
					a.Exec(ctx, s, mode) // failures are part of the scenario
				}
				if n := keyLocksHeld(t, shard); n < 1 {
					t.Errorf("%v: after %q the block wrote key 1 holding no key lock on the coordinator", mode, sc.stmts)
				}
				mustExec(t, a, "ROLLBACK")
				a.Close(ctx)
			}
		})
	}
}

// TestHostileRowLocksLostCoordinatorThenRollbackTo: the coordinator backend of a block that
// wrote is terminated (its locks go with it); whatever the client sends next (a write, a
// read, a statement to prepare, a failing statement), ROLLBACK TO a savepoint taken before
// the loss must not let the block go on and commit on a new coordinator transaction: its
// earlier write was not ordered by any lock since the loss. PostgreSQL ends the session.
func TestHostileRowLocksLostCoordinatorThenRollbackTo(t *testing.T) {
	ctx := context.Background()
	for _, sc := range []struct {
		name  string
		after func(a *pgx.Conn, tbl string) error
	}{
		{"write", func(a *pgx.Conn, tbl string) error {
			_, err := a.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 200 WHERE id = 2", tbl))
			return err
		}},
		{"prepare", func(a *pgx.Conn, tbl string) error {
			_, err := a.Prepare(ctx, "", fmt.Sprintf("SELECT v FROM %s WHERE id = $1", tbl))
			return err
		}},
		{"coordinator read", func(a *pgx.Conn, tbl string) error {
			_, err := a.Exec(ctx, "SELECT now()", pgx.QueryExecModeSimpleProtocol)
			return err
		}},
		{"failed write", func(a *pgx.Conn, tbl string) error {
			_, err := a.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (2, 0)", tbl))
			return err
		}},
		{"held key", func(a *pgx.Conn, tbl string) error {
			_, err := a.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 101 WHERE id = 1", tbl))
			return err
		}},
		{"nothing", func(a *pgx.Conn, tbl string) error { return nil }},
	} {
		t.Run(sc.name, func(t *testing.T) {
			tbl, _ := rowLockPair(t, "hrl_lost", 2)
			shard := tableShardIDs(t, tbl)[0]
			a := connect(t)
			mustExec(t, a, "BEGIN", fmt.Sprintf("UPDATE %s SET v = 100 WHERE id = 1", tbl), "SAVEPOINT s")
			pid := lockHolderPID(t, shard)
			if pid == 0 {
				t.Fatal("the block holds no lock")
			}
			mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid))
			err := sc.after(a, tbl)
			var errs []string
			for i := 0; i < 3; i++ { // a persistent client retries
				_, rerr := a.Exec(ctx, "ROLLBACK TO s")
				_, werr := a.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 300 WHERE id = 3", tbl))
				errs = append(errs, fmt.Sprintf("ROLLBACK TO: %v; write: %v", rerr, werr))
				for _, e := range []error{err, rerr} {
					// A lost connection is 08006 (or PostgreSQL's own error), never an
					// internal error naming the proxy's sockets.
					if sqlstate(e) == "XX000" {
						t.Errorf("the lost coordinator connection is reported as an internal error: %v", e)
					}
				}
			}
			_, cerr := a.Exec(ctx, "COMMIT")
			got := queryString(t, connect(t), fmt.Sprintf("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM %s", tbl))
			t.Logf("after the loss: %v; %s; COMMIT: %v; rows %s", err, strings.Join(errs, "; "), cerr, got)
			if !strings.HasPrefix(got, "1:10,") {
				t.Errorf("a block that lost its coordinator transaction and its locks committed: rows %s", got)
			}
			placementsIdentical(t, tbl)
			if !a.IsClosed() {
				// The session goes on after the block.
				if got := queryString(t, a, fmt.Sprintf("SELECT v::text FROM %s WHERE id = 4", tbl)); got != "40" {
					t.Errorf("after the block: %s", got)
				}
				mustExec(t, a, fmt.Sprintf("UPDATE %s SET v = 41 WHERE id = 4", tbl))
			}
		})
	}
}

// keyFree reports whether another writer could write the rows of key k (an int4 partition
// key) of the shard now: it could take the shard lock shared and k's key lock (tried on
// the coordinator, then let go).
func keyFree(t *testing.T, shardID int64, k int) bool {
	t.Helper()
	ctx := context.Background()
	c := connectServer(t, env.C.Coordinator)
	defer c.Close(ctx)
	var h int32
	if err := c.QueryRow(ctx, "SELECT hashint4($1)", k).Scan(&h); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var free bool
	if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock_shared($1) AND pg_try_advisory_xact_lock($2)",
		store.LockKey(store.LockShard, shardID), store.KeyLock(shardID, h)).Scan(&free); err != nil {
		t.Fatal(err)
	}
	return free
}

// TestHostileRowLocksEveryWriteFormLocksItsKeys: in a block, after each form of write of
// keys 1 and 2 (parameters, prepared statements re-executed with another key, IN, ANY,
// OR, AND, BETWEEN, ON CONFLICT, RETURNING, CTEs, many keys, FOR UPDATE), no other writer
// could write those keys until the block ends.
func TestHostileRowLocksEveryWriteFormLocksItsKeys(t *testing.T) {
	tbl, _ := rowLockPair(t, "hrl_forms", 2)
	shard := tableShardIDs(t, tbl)[0]
	ctx := context.Background()
	many := []string{}
	for i := 100; i < 140; i++ {
		many = append(many, fmt.Sprintf("(%d, 0)", i))
	}
	type stmt struct {
		sql  string
		args []any
	}
	for _, sc := range []struct {
		name  string
		stmts []stmt
	}{
		{"param", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = $1", []any{1}}, {"UPDATE %s SET v = v + 1 WHERE id = $1", []any{2}}}},
		{"param text", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = $1::text::int", []any{"1"}}, {"DELETE FROM %s WHERE id = $1", []any{int64(2)}}}},
		{"any param", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = ANY($1)", []any{[]int32{1, 2}}}}},
		{"any array", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = ANY(ARRAY[1, 2])", nil}}},
		{"in", []stmt{{"UPDATE %s SET v = v + 1 WHERE id IN (1, 2)", nil}}},
		{"in params", []stmt{{"UPDATE %s SET v = v + 1 WHERE id IN ($1, $2)", []any{1, 2}}}},
		{"or", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = 1 OR id = 2", nil}}},
		{"or other", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = 1 OR v = 20", nil}}},
		{"and", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = 1 AND v > 0", nil}, {"UPDATE %s SET v = v + 1 WHERE v > 0 AND id = 2", nil}}},
		{"and contradiction", []stmt{{"UPDATE %s SET v = v + 1 WHERE (id = 1 OR id = 2) AND (id = 2 OR id = 1)", nil}}},
		{"between", []stmt{{"UPDATE %s SET v = v + 1 WHERE id BETWEEN 1 AND 2", nil}}},
		{"cast", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = 1::bigint OR id = '2'", nil}}},
		{"on conflict", []stmt{{"INSERT INTO %s VALUES (1, 0), (2, 0) ON CONFLICT (id) DO UPDATE SET v = excluded.v", nil}}},
		{"returning", []stmt{{"DELETE FROM %s WHERE id IN (1, 2) RETURNING *", nil}}},
		{"cte", []stmt{{"WITH x AS (UPDATE %s SET v = v + 1 WHERE id = 1 RETURNING *) SELECT * FROM x", nil},
			{"WITH x AS (DELETE FROM %s WHERE id = 2 RETURNING *) SELECT count(*) FROM x", nil}}},
		{"many keys", []stmt{{"INSERT INTO %s VALUES (1, 1), (2, 2), " + strings.Join(many, ", ") + " ON CONFLICT DO NOTHING", nil}}},
		{"insert select", []stmt{{"INSERT INTO %[1]s SELECT id + 1000, v FROM %[1]s WHERE id IN (1, 2)", nil},
			{"UPDATE %s SET v = 0 WHERE id IN (1, 2)", nil}}},
		{"for update", []stmt{{"SELECT * FROM %s WHERE id = $1 FOR UPDATE", []any{1}}, {"SELECT * FROM %s WHERE id = 2 FOR SHARE", nil}}},
		{"for update all", []stmt{{"SELECT * FROM %s FOR UPDATE", nil}}},
		{"subquery key", []stmt{{"UPDATE %s SET v = v + 1 WHERE id = (SELECT 1) OR id = (SELECT 2)", nil}}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
				a := connect(t)
				mustExec(t, a, "BEGIN")
				ok := true
				for _, s := range sc.stmts {
					rows, err := a.Query(ctx, fmt.Sprintf(s.sql, tbl), append([]any{mode}, s.args...)...)
					if err == nil {
						for rows.Next() {
						}
						rows.Close()
						err = rows.Err()
					}
					if err != nil {
						t.Logf("%v %s: %v", mode, s.sql, err)
						ok = false
						break
					}
				}
				if ok {
					for _, k := range []int{1, 2} {
						if keyFree(t, shard, k) {
							t.Errorf("%v: after %v in a block, another writer could write key %d", mode, sc.stmts, k)
						}
					}
				}
				mustExec(t, a, "ROLLBACK")
				a.Close(ctx)
			}
		})
	}
}

// TestHostileRowLocksOnConflictSubqueryOverDistributedTable: a subquery over a distributed
// table in INSERT ... ON CONFLICT DO UPDATE SET (or its WHERE) went to the workers as
// written, where the table's name means nothing (42P01 naming the table) or another table
// of the same name: PostgreSQL's answer, or 0A000, never that.
func TestHostileRowLocksOnConflictSubqueryOverDistributedTable(t *testing.T) {
	tbl, plain := rowLockPair(t, "hrl_oc", 2)
	p, pc := connect(t), connectServer(t, env.C.Coordinator)
	for _, q := range []string{
		"INSERT INTO %[1]s VALUES (6, 1) ON CONFLICT (id) DO UPDATE SET v = (SELECT v FROM %[1]s WHERE id = 2) RETURNING *",
		"INSERT INTO %[1]s VALUES (3, 1) ON CONFLICT (id) DO UPDATE SET v = %[1]s.v + (SELECT count(*) FROM %[1]s)::int RETURNING *",
		"INSERT INTO %[1]s VALUES (4, 1) ON CONFLICT (id) DO UPDATE SET v = 0 WHERE EXISTS (SELECT 1 FROM %[1]s WHERE id = 2) RETURNING *",
		"INSERT INTO %[1]s SELECT 2, 5 ON CONFLICT (id) DO UPDATE SET v = (SELECT max(v) FROM %[1]s) RETURNING *",
	} {
		got, want := outcomeOf(p, fmt.Sprintf(q, tbl)), outcomeOf(pc, fmt.Sprintf(q, plain))
		if got != want && got != "error 0A000" {
			t.Errorf("%s:\n pgshard:    %s\n PostgreSQL: %s", q, got, want)
		}
	}
	placementsIdentical(t, tbl)
}

// waitForAdvisoryWaiter waits until some coordinator backend waits for the session-level
// advisory lock gate.
func waitForAdvisoryWaiter(t *testing.T, gate int64) {
	t.Helper()
	c := connectServer(t, env.C.Coordinator)
	defer c.Close(context.Background())
	for i := 0; i < 600; i++ {
		if queryString(t, c, fmt.Sprintf("SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %d AND classid = 0", gate)) != "0" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the statement never reached the gate")
}

// TestHostileRowLocksPipelineKeepsLocksToTheEnd: a write in a pipeline (several Executes
// before one Sync) or a multi-statement query string, which are one implicit transaction,
// keeps its keys locked until that transaction ends: its rows on the workers are not
// committed before, and a writer ordered between them could apply before it on one
// placement and after it on another.
func TestHostileRowLocksPipelineKeepsLocksToTheEnd(t *testing.T) {
	tbl, _ := rowLockPair(t, "hrl_pipe", 2)
	shard := tableShardIDs(t, tbl)[0]
	ctx := context.Background()
	const gate = 7340001
	for _, sc := range []struct {
		name string
		run  func(a *pgx.Conn) error
	}{
		{"pipeline", func(a *pgx.Conn) error {
			b := &pgx.Batch{}
			b.Queue(fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", tbl))
			b.Queue(fmt.Sprintf("SELECT pg_advisory_lock(%d), pg_advisory_unlock(%d)", gate, gate))
			b.Queue(fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 2", tbl))
			return a.SendBatch(ctx, b).Close()
		}},
		{"query string", func(a *pgx.Conn) error {
			_, err := a.Exec(ctx, fmt.Sprintf("UPDATE %[1]s SET v = v + 1 WHERE id = 1; SELECT pg_advisory_lock(%[2]d), pg_advisory_unlock(%[2]d); UPDATE %[1]s SET v = v + 1 WHERE id = 2", tbl, gate), pgx.QueryExecModeSimpleProtocol)
			return err
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			g := connectServer(t, env.C.Coordinator)
			mustExec(t, g, fmt.Sprintf("SELECT pg_advisory_lock(%d)", gate))
			a := connect(t)
			done := make(chan error, 1)
			go func() { done <- sc.run(a) }()
			waitForAdvisoryWaiter(t, gate)
			free := keyFree(t, shard, 1)
			mustExec(t, g, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", gate))
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if free {
				t.Errorf("%s: key 1 was free for other writers while its write was not committed", sc.name)
			}
		})
	}
}

// TestHostileRowLocksConcurrentLoadKeepsPlacementsIdentical: sessions on two proxies run
// order-sensitive writes of a replicated table at once — keyed UPDATEs (simple and
// extended protocol), blocks with savepoints rolled back, predicate UPDATEs and DELETEs,
// INSERT ... ON CONFLICT DO UPDATE of many keys, INSERT ... SELECT, COPY — and every
// pair of finalized placements of each shard ends identical, with nothing marked.
func TestHostileRowLocksConcurrentLoadKeepsPlacementsIdentical(t *testing.T) {
	ctx := context.Background()
	tbl := uniqueName("hrl_load")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v bigint)", tbl), tbl, "id", 2, 2)
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 30) g", tbl))
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	ops := []func(c *pgx.Conn, r *rand.Rand) error{
		func(c *pgx.Conn, r *rand.Rand) error {
			_, err := c.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = (v * 3 + 1) %% 1000003 WHERE id = $1", tbl), r.Intn(30)+1)
			return err
		},
		func(c *pgx.Conn, r *rand.Rand) error {
			_, err := c.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = (v * 5 + 2) %% 1000003 WHERE id IN (%d, %d) OR id = %d", tbl, r.Intn(30)+1, r.Intn(30)+1, r.Intn(30)+1), pgx.QueryExecModeSimpleProtocol)
			return err
		},
		func(c *pgx.Conn, r *rand.Rand) error {
			_, err := c.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v * 2 %% 1000003 WHERE v %% 5 = %d", tbl, r.Intn(5)))
			return err
		},
		func(c *pgx.Conn, r *rand.Rand) error {
			_, err := c.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE v %% 13 = %d", tbl, r.Intn(13)))
			return err
		},
		func(c *pgx.Conn, r *rand.Rand) error {
			var vals []string
			for i := 0; i < 40; i++ {
				vals = append(vals, fmt.Sprintf("(%d, %d)", r.Intn(60)+1, r.Intn(100)))
			}
			// Duplicate keys in one INSERT fail (21000) as in PostgreSQL.
			_, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %[1]s VALUES %[2]s ON CONFLICT (id) DO UPDATE SET v = (%[1]s.v * 7 + excluded.v) %% 1000003", tbl, strings.Join(vals[:1+r.Intn(40)], ", ")))
			return err
		},
		func(c *pgx.Conn, r *rand.Rand) error {
			_, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %[1]s SELECT id + 30, v + 1 FROM %[1]s WHERE id <= 30 ON CONFLICT (id) DO UPDATE SET v = (%[1]s.v * 11 + excluded.v) %% 1000003", tbl))
			return err
		},
		func(c *pgx.Conn, r *rand.Rand) error {
			k := r.Intn(30) + 61
			_, err := c.PgConn().CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%d\t%d\n%d\t1\n", k, k, k+30)), fmt.Sprintf("COPY %s FROM STDIN", tbl))
			return err
		},
		func(c *pgx.Conn, r *rand.Rand) error {
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			for _, s := range []string{
				fmt.Sprintf("UPDATE %s SET v = (v * 3 + 1) %% 1000003 WHERE id = %d", tbl, r.Intn(30)+1),
				"SAVEPOINT s",
				fmt.Sprintf("UPDATE %s SET v = (v * 13 + 1) %% 1000003 WHERE id = %d", tbl, r.Intn(30)+1),
				"ROLLBACK TO s",
				fmt.Sprintf("UPDATE %s SET v = (v * 17 + 1) %% 1000003 WHERE id = %d", tbl, r.Intn(30)+1),
				fmt.Sprintf("DELETE FROM %s WHERE id = %d AND v %% 2 = 0", tbl, r.Intn(90)+1),
			} {
				if _, err := tx.Exec(ctx, s); err != nil {
					return err
				}
			}
			return tx.Commit(ctx)
		},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errCodes := map[string]int{}
	for w := 0; w < 6; w++ {
		var c *pgx.Conn
		if w%2 == 0 {
			c = connect(t)
		} else {
			c = connectTo(t, p2)
		}
		mustExec(t, c, "SET lock_timeout = '20s'")
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < 40; i++ {
				if err := ops[r.Intn(len(ops))](c, r); err != nil {
					mu.Lock()
					if errCodes[sqlstate(err)]++; errCodes[sqlstate(err)] == 1 {
						t.Logf("first %s: %v", sqlstate(err), err)
					}
					mu.Unlock()
				}
			}
		}(int64(w))
	}
	wg.Wait()
	t.Logf("errors by SQLSTATE: %v", errCodes)
	for code := range errCodes {
		switch code {
		case "40P01", "21000", "23505": // deadlocks, duplicate keys in one INSERT or COPY
		default:
			t.Errorf("unexpected errors %s (%d)", code, errCodes[code])
		}
	}
	noInactivePlacements(t, tbl)
	placementsIdentical(t, tbl)
}

// TestHostileRowLocksForUpdateNeedsUpdatePrivilege: PostgreSQL refuses SELECT ... FOR
// UPDATE/SHARE (42501) to a role without UPDATE privilege on the table, at once. pgshard
// took the table's write locks first, as the role: a role that may only read the table
// waited for (then held) its writers' locks, and heard 55P03 after its lock_timeout.
func TestHostileRowLocksForUpdateNeedsUpdatePrivilege(t *testing.T) {
	tbl, plain := rowLockPair(t, "hrl_fup", 2)
	ctx := context.Background()
	app := unprivilegedRole(t, "app")
	mustExec(t, connect(t), fmt.Sprintf("GRANT SELECT ON %s TO %s", tbl, app))
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("GRANT SELECT ON %s TO %s", plain, app))
	holder := connect(t)
	mustExec(t, holder, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", tbl))
	defer holder.Exec(ctx, "ROLLBACK")
	pw := connectServer(t, env.C.Coordinator)
	mustExec(t, pw, "SET ROLE "+app)
	for _, q := range []string{
		"SELECT * FROM %s WHERE id = 1 FOR UPDATE",
		"SELECT * FROM %s WHERE id = 1 FOR SHARE",
		"SELECT * FROM %s FOR KEY SHARE",
	} {
		w := connectAs(t, env.P, app)
		mustExec(t, w, "SET lock_timeout = '2s'", "BEGIN")
		got := outcomeOf(w, fmt.Sprintf(q, tbl))
		mustExec(t, pw, "BEGIN")
		want := outcomeOf(pw, fmt.Sprintf(q, plain))
		mustExec(t, pw, "ROLLBACK")
		if got != want {
			t.Errorf("%s by a role that may only read:\n pgshard:    %s\n PostgreSQL: %s", q, got, want)
		}
		w.Close(ctx)
	}
}

// TestHostileRowLocksWriteReadingAnotherTableKeepsPlacementsIdentical: a keyed write of
// one table whose value or predicate reads another distributed table, while that table's
// row is updated: each placement of the first must apply the same value.
func TestHostileRowLocksWriteReadingAnotherTableKeepsPlacementsIdentical(t *testing.T) {
	tbl, _ := rowLockPair(t, "hrl_xr1", 2)
	src, _ := rowLockPair(t, "hrl_xr2", 2)
	ctx := context.Background()
	for _, q := range []string{
		"UPDATE %[1]s SET v = (SELECT v FROM %[2]s WHERE id = 1) WHERE id = 1",
		"UPDATE %[1]s t SET v = o.v FROM %[2]s o WHERE t.id = 2 AND o.id = 1",
		"UPDATE %[1]s SET v = v + 1 WHERE id = 3 AND EXISTS (SELECT 1 FROM %[2]s WHERE id = 1 AND v %% 2 = 0)",
	} {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connect(t)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", src))
			}
		}()
		c := connect(t)
		for i := 0; i < 200; i++ {
			if _, err := c.Exec(ctx, fmt.Sprintf(q, tbl, src)); err != nil {
				t.Logf("%s: %v", q, err)
				break
			}
		}
		close(stop)
		wg.Wait()
	}
	noInactivePlacements(t, tbl)
	placementsIdentical(t, tbl)
}

// TestHostileRowLocksReturningSubqueryOverDistributedTable: a subquery over a distributed
// table in RETURNING went to the workers as written (42P01 naming the table there):
// PostgreSQL's answer, or 0A000, never that.
func TestHostileRowLocksReturningSubqueryOverDistributedTable(t *testing.T) {
	tbl, plain := rowLockPair(t, "hrl_ret", 2)
	src, srcPlain := rowLockPair(t, "hrl_ret_src", 2)
	p, pc := connect(t), connectServer(t, env.C.Coordinator)
	for _, q := range []string{
		"UPDATE %[1]s SET v = v + 1 WHERE id = 1 RETURNING (SELECT v FROM %[2]s WHERE id = 1)",
		"DELETE FROM %[1]s WHERE id = 2 RETURNING v + (SELECT count(*) FROM %[2]s)",
		"INSERT INTO %[1]s VALUES (7, 1) RETURNING (SELECT v FROM %[2]s WHERE id = 3)",
		"INSERT INTO %[1]s SELECT 8, 1 RETURNING (SELECT v FROM %[1]s WHERE id = 3)",
	} {
		got, want := outcomeOf(p, fmt.Sprintf(q, tbl, src)), outcomeOf(pc, fmt.Sprintf(q, plain, srcPlain))
		if got != want && got != "error 0A000" {
			t.Errorf("%s:\n pgshard:    %s\n PostgreSQL: %s", q, got, want)
		}
	}
	placementsIdentical(t, tbl)
}

// TestHostileRowLocksGatheredUpdateLosesConcurrentUpdate: an UPDATE whose rows depend on
// a subquery is planned in two steps (the coordinator computes the new values over a copy,
// then the shards write them). When it waits for another block's update of the same row,
// PostgreSQL re-reads the row once that block commits: both increments count. pgshard
// wrote the value it computed before the wait, losing the other block's committed update,
// until the statement took its write locks before finding its rows (modifySelected).
func TestHostileRowLocksGatheredUpdateLosesConcurrentUpdate(t *testing.T) {
	tbl, plain := rowLockPair(t, "hrl_gath", 2)
	ctx := context.Background()
	run := func(holder, waiter *pgx.Conn, target string, waiting func()) string {
		mustExec(t, holder, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 10 WHERE id = 1", target))
		done := make(chan error, 1)
		go func() {
			_, err := waiter.Exec(ctx, fmt.Sprintf("UPDATE %[1]s SET v = v + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM %[1]s WHERE id = 2)", target))
			done <- err
		}()
		waiting()
		mustExec(t, holder, "COMMIT")
		if err := <-done; err != nil {
			return "error " + sqlstate(err)
		}
		return queryString(t, holder, fmt.Sprintf("SELECT v::text FROM %s WHERE id = 1", target))
	}
	waitUngranted := func(c *pgx.Conn) func() {
		return func() {
			for i := 0; i < 600; i++ {
				if queryString(t, c, "SELECT count(*)::text FROM pg_locks WHERE NOT granted") != "0" {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatal("the waiter never waited")
		}
	}
	pc := connectServer(t, env.C.Coordinator)
	want := run(connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator), plain, waitUngranted(pc))
	got := run(connect(t), connect(t), tbl, waitUngranted(pc))
	if got != want {
		t.Errorf("a gathered UPDATE (subquery in WHERE) that waited for another block's update of its row: v = %s, PostgreSQL %s", got, want)
	}
	placementsIdentical(t, tbl)
}
