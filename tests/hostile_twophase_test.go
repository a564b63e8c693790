package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/cluster"
)

// Hostile clients against atomic commit (proxy/twophase.go): session state and settings
// a client can put in the way of the commit protocol.

// syncCommitLog makes a coordinator table (plain, not distributed) whose every row,
// at its transaction's COMMIT (a deferred constraint trigger), logs the
// synchronous_commit that COMMIT runs with. It returns the table and the log.
func syncCommitLog(t *testing.T) (table, log string) {
	t.Helper()
	coord := connectServer(t, env.C.Coordinator)
	table, log = uniqueName("tpsync"), uniqueName("tpsynclog")
	mustExec(t, coord,
		fmt.Sprintf("CREATE TABLE %s (x int)", table),
		fmt.Sprintf("CREATE TABLE %s (x int, s text)", log),
		fmt.Sprintf("GRANT ALL ON %s, %s TO PUBLIC", table, log),
		fmt.Sprintf(`CREATE FUNCTION %s_f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO %s VALUES (NEW.x, pg_catalog.current_setting('synchronous_commit'));
	RETURN NULL;
END $$`, log, log),
		fmt.Sprintf("CREATE CONSTRAINT TRIGGER %s_t AFTER INSERT ON %s DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %s_f()", log, table, log))
	return table, log
}

// TestHostile2PCDecisionSyncCommitOff: a client may run with synchronous_commit = off
// (a USERSET setting; for one server it only risks losing the last transactions in a
// crash, atomically). In a two-phase commit the coordinator's COMMIT is the decision:
// committed asynchronously, a coordinator crash right after it loses the decision (and
// the block's coordinator changes, and may hand its xid, which names the parts, to a
// later transaction) while COMMIT PREPARED already made the workers' parts durable.
// The decision's COMMIT must be durable whatever the client set; its own one-server
// transactions keep the client's setting (compared with plain PostgreSQL).
func TestHostile2PCDecisionSyncCommitOff(t *testing.T) {
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	local, log := syncCommitLog(t)
	setting := func(x int) string {
		t.Helper()
		return queryString(t, conn, fmt.Sprintf("SELECT s FROM %s WHERE x = %d", log, x))
	}
	// Plain PostgreSQL (the coordinator alone) commits with the client's setting.
	plain := connectServer(t, env.C.Coordinator)
	mustExec(t, plain, "BEGIN", "SET LOCAL synchronous_commit = off", fmt.Sprintf("INSERT INTO %s VALUES (0)", local), "COMMIT")
	if s := setting(0); s != "off" {
		t.Fatalf("plain PostgreSQL: synchronous_commit %q at COMMIT, want off", s)
	}
	for i, c := range []struct {
		name  string
		setup []string
		after []string
	}{
		{"SET LOCAL in the block", []string{"BEGIN", "SET LOCAL synchronous_commit = off"}, nil},
		{"session SET", []string{"SET synchronous_commit = off", "BEGIN"}, []string{"RESET synchronous_commit"}},
	} {
		x := i + 1
		mustExec(t, conn, c.setup...)
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (%d)", local, x))
		for k := 1; k <= 8; k++ { // 8 keys: every shard of 4, so both workers
			mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (%d, %d)", tbl, 100*x+k, x))
		}
		mustExec(t, conn, "COMMIT")
		mustExec(t, conn, c.after...)
		if s := setting(x); s == "off" {
			t.Errorf("%s: the two-phase commit's decision committed with synchronous_commit = off", c.name)
		}
		if n := placementsAgree(t, tbl); n != int64(8*x) {
			t.Fatalf("%s: %d rows", c.name, n)
		}
	}
	// A one-participant block keeps the client's setting, as PostgreSQL does.
	mustExec(t, conn, "BEGIN", "SET LOCAL synchronous_commit = off", fmt.Sprintf("INSERT INTO %s VALUES (9)", local), "COMMIT")
	if s := setting(9); s != "off" {
		t.Errorf("a block on the coordinator alone: synchronous_commit %q at COMMIT, want the client's off", s)
	}
	if n := preparedOnWorkers(t); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
}

// TestHostile2PCCoordinatorSessionState: PostgreSQL refuses PREPARE TRANSACTION for a
// transaction that used temporary tables, LISTEN/NOTIFY, a WITH HOLD cursor, or held a
// session-level and a transaction-level lock on one object. A block that does all of
// this on the coordinator and writes two workers commits through pgshard as it would on
// one server: the coordinator's part is never prepared.
func TestHostile2PCCoordinatorSessionState(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	tmp := uniqueName("tptmp")
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("CREATE TEMP TABLE %s (x int)", tmp),
		fmt.Sprintf("INSERT INTO %s VALUES (1)", tmp),
		"LISTEN tp_hostile",
		"NOTIFY tp_hostile, 'x'",
		fmt.Sprintf("DECLARE h CURSOR WITH HOLD FOR SELECT x FROM %s", tmp),
		"SELECT pg_advisory_lock(424242)",
		"SELECT pg_advisory_xact_lock(424242)")
	for k := 1; k <= 8; k++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (%d, 0)", tbl, k))
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		t.Fatalf("COMMIT: %v", err)
	}
	if n := placementsAgree(t, tbl); n != 8 {
		t.Fatalf("%d rows after COMMIT, want 8", n)
	}
	if got := queryString(t, conn, "FETCH ALL FROM h"); got != "1" {
		t.Errorf("WITH HOLD cursor after COMMIT: %s", got)
	}
	mustExec(t, conn, "CLOSE h", "SELECT pg_advisory_unlock(424242)", "UNLISTEN *")
	if n := preparedOnWorkers(t); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
}

// TestHostile2PCCoordinatorCommitFailsLocksKept: the coordinator refuses the decision's
// COMMIT (a deferred constraint of a coordinator table the block wrote) after the
// session-level copies of the block's write locks were taken for COMMIT PREPARED
// (twophase.go's holdSQL). PostgreSQL keeps session-level advisory locks taken in a
// transaction that then aborts: the copies must be released, else every other
// session's write to the block's shards waits for as long as this session lives.
func TestHostile2PCCoordinatorCommitFailsLocksKept(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	coord := connectServer(t, env.C.Coordinator)
	local := uniqueName("tpdefer")
	mustExec(t, coord, fmt.Sprintf("CREATE TABLE %s (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)", local),
		fmt.Sprintf("GRANT ALL ON %s TO PUBLIC", local))
	var codes []string
	for _, c := range []*pgx.Conn{conn, coord} {
		mustExec(t, c, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1), (1)", local))
		if c == conn {
			for k := 1; k <= 8; k++ {
				mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (%d, 0)", tbl, k))
			}
		}
		_, err := c.Exec(ctx, "COMMIT")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("COMMIT: %v, want an error", err)
		}
		codes = append(codes, pe.Code)
	}
	if codes[0] != codes[1] || codes[0] != "23505" {
		t.Fatalf("COMMIT's errors: pgshard %s, PostgreSQL %s", codes[0], codes[1])
	}
	if n := placementsAgree(t, tbl); n != 0 {
		t.Fatalf("%d rows committed by a failed COMMIT", n)
	}
	// Another session writes every shard (exclusive shard locks) while this one lives.
	other := connect(t)
	mustExec(t, other, "SET lock_timeout = '5s'")
	if _, err := other.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1", tbl)); err != nil {
		t.Errorf("another session's write after the failed COMMIT: %v", err)
	}
	// The failed session goes on, and its own advisory locks are its own.
	mustExec(t, conn, "SELECT pg_advisory_lock(434343)")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", tbl))
	if got := queryString(t, conn, "SELECT pg_advisory_unlock(434343)::text"); got != "true" {
		t.Errorf("the client's own session lock: unlock gave %s", got)
	}
	if n := placementsAgree(t, tbl); n != 2 {
		t.Fatalf("%d rows", n)
	}
	if n := preparedOnWorkers(t); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
}

// TestHostileStaleStatementTimeoutHitsNextUse: a block that SETs statement_timeout
// leaves it, committed (by COMMIT or at PREPARE TRANSACTION), on its worker
// connections, which go back to the pool marked stale; the next use of each (by any
// session with the pool's user) first runs RESET ALL and the session's settings, under
// that timeout still: with statement_timeout = 1 (ms), on a loaded server, the reset
// itself is cancelled and the next session's statement fails with 57014 though its own
// statement_timeout is 0, as PostgreSQL would never do. Seen at the first blocks of a
// loop through a two-phase commit (4 worker connections a block).
func TestHostileStaleStatementTimeoutHitsNextUse(t *testing.T) {
	ctx := context.Background()
	a, b := connect(t), connect(t)
	tbl := tpTable(t, a, "")
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 8) g", tbl))
	for i := 0; i < 40; i++ {
		mustExec(t, a, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 1", tbl), "SET statement_timeout = 1")
		_, commitErr := a.Exec(ctx, "COMMIT") // may time out at PREPARE: either way the connections are stale
		_, rollbackErr := a.Exec(ctx, "ROLLBACK")
		// RESET itself runs under the 1 ms timeout (as in PostgreSQL, which may cancel
		// it on a loaded machine): try again until it is done.
		for j := 0; ; j++ {
			_, err := a.Exec(ctx, "RESET statement_timeout")
			var pe *pgconn.PgError
			if err == nil {
				break
			} else if !errors.As(err, &pe) || pe.Code != "57014" || j == 20 {
				t.Fatalf("round %d: RESET statement_timeout: %v (after COMMIT: %v, ROLLBACK: %v)", i, err, commitErr, rollbackErr)
			}
		}
		for k := 1; k <= 8; k++ {
			for _, c := range []*pgx.Conn{a, b} {
				if _, err := c.Exec(ctx, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); err != nil {
					t.Fatalf("round %d: a read after RESET statement_timeout (or in another session): %v", i, err)
				}
			}
		}
	}
}

// TestHostile2PCPreparedSlotsExhausted: one worker's max_prepared_transactions slots are
// all taken (by prepared transactions that are not pgshard's): a block and an autocommit
// write through two workers fail at COMMIT with PostgreSQL's error and a hint naming the
// worker, nothing of them is committed on any placement, nothing is marked, and writes
// work again once the slots are free.
func TestHostile2PCPreparedSlotsExhausted(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	w := env.C.Workers[0]
	wc := connectServer(t, w)
	var max int
	if err := wc.QueryRow(ctx, "SELECT current_setting('max_prepared_transactions')::int - (SELECT count(*) FROM pg_prepared_xacts)").Scan(&max); err != nil {
		t.Fatal(err)
	}
	if max > 500 {
		t.Skipf("%d free prepared transaction slots: too many to fill", max)
	}
	prefix := uniqueName("hog")
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), w.URL("postgres"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		rows, _ := c.Query(context.Background(), "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1", prefix+"%")
		gids, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, g := range gids {
			c.Exec(context.Background(), fmt.Sprintf("ROLLBACK PREPARED '%s'", g))
		}
	})
	for i := 0; i < max; i++ {
		mustExec(t, wc, "BEGIN", fmt.Sprintf("PREPARE TRANSACTION '%s_%d'", prefix, i))
	}
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"block", func() error {
			mustExec(t, conn, "BEGIN")
			for k := 1; k <= 8; k++ {
				mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (%d, 0)", tbl, k))
			}
			_, err := conn.Exec(ctx, "COMMIT")
			return err
		}},
		{"autocommit", func() error {
			_, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s SELECT g, 0 FROM generate_series(1, 8) g", tbl))
			return err
		}},
	} {
		err := c.run()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53200" || !strings.Contains(pe.Hint, "max_prepared_transactions") {
			t.Errorf("%s: %v, want 53200 (PostgreSQL's) with a hint naming max_prepared_transactions", c.name, err)
		}
		if st := conn.PgConn().TxStatus(); st != 'I' {
			t.Errorf("%s: transaction status %c after the failed COMMIT", c.name, st)
		}
		if n := placementsAgree(t, tbl); n != 0 {
			t.Errorf("%s: %d rows committed by a failed COMMIT", c.name, n)
		}
		if n := preparedOnWorkers(t); n != 0 {
			t.Errorf("%s: %d prepared transactions of pgshard left", c.name, n)
		}
	}
	for _, s := range shardsOf(t, tbl) {
		for _, p := range s.places {
			if p.state != 1 {
				t.Errorf("shard %d: placement %d marked (state %d)", s.id, p.id, p.state)
			}
		}
	}
	mustExec(t, wc, fmt.Sprintf("ROLLBACK PREPARED '%s_0'", prefix))
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, 0 FROM generate_series(1, 8) g", tbl))
	if n := placementsAgree(t, tbl); n != 8 {
		t.Fatalf("%d rows once a slot is free", n)
	}
}

// TestHostile2PCRecordOfAnotherNode: a gid names its coordinator transaction and its
// part's number, not its node, so the same gid can be prepared on two workers: a
// coordinator that crashed after txid_current() but before any WAL named the xid hands
// the xid out again, and its new transaction's parts take the same gids, in another
// node order. A commit record says which node's part is to be committed: recovery must
// not commit the other node's part, of a transaction that never committed, for it.
// (The state is made directly: a part on one worker, a record for the same gid on
// another.)
func TestHostile2PCRecordOfAnotherNode(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	s := shardsOf(t, tbl)[0]
	p := s.places[0]
	var other *cluster.Server
	for _, w := range env.C.Workers {
		if w.Port != p.port {
			other = w
			break
		}
	}
	w := connectServer(t, serverFor(p.port))
	coord := connectServer(t, env.C.Coordinator)
	mustExec(t, coord, "BEGIN")
	var xid int64
	if err := coord.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	gid := fmt.Sprintf("pgshard_%d_1", xid)
	mustExec(t, w, "BEGIN", fmt.Sprintf("INSERT INTO %s_%d VALUES (2001, 0)", tbl, s.id), fmt.Sprintf("PREPARE TRANSACTION '%s'", gid))
	// The record is the other worker's part's (node names are as the metadata has them).
	mustExec(t, coord, fmt.Sprintf("SELECT pgs_commit.record(ARRAY['%s'], ARRAY['%s'], ARRAY[%d])", gid, p.host, other.Port), "COMMIT")
	mustExec(t, conn, "RECOVER TRANSACTIONS")
	var n int
	if err := w.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s_%d WHERE k = 2001", tbl, s.id)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("recovery committed a part on %d for the commit record of a part on %d", p.port, other.Port)
	}
	if k := preparedOnWorkers(t); k != 0 {
		t.Errorf("%d prepared transactions left", k)
	}
}

// TestHostile2PCLockCopiesReleaseCancelled: after COMMIT PREPARED, the session-level
// copies of the write locks are released by a query sent without waiting for its answer
// (twophase.go's releaseSQL, backend.Conn.SendDiscard), which runs under the session's
// statement_timeout on its coordinator connection: a client with a tiny
// statement_timeout gets it cancelled now and then, its failure is dropped when the
// connection's next use reads it (txnconns.go's Drain), and the copies stay held for
// as long as the session lives: every other session's write to those shards waits.
// Seen about once in 600 autocommit two-placement INSERTs with statement_timeout = 1 on
// a loaded machine; the check is made once the connection is idle after the release.
func TestHostile2PCLockCopiesReleaseCancelled(t *testing.T) {
	ctx := context.Background()
	// The application name comes with the startup packet: a commit that fails part way
	// may close the session's coordinator connection, and a new one gets the startup's
	// application_name, not one SET since.
	app := uniqueName("relcancel")
	conn, err := pgx.Connect(ctx, simpleURL(env.P)+"&application_name="+app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tbl := tpTable(t, conn, "")
	coord := connectServer(t, env.C.Coordinator)
	mustExec(t, conn, "SET statement_timeout = 1")
	for i := 0; i < 2000; i++ {
		if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (%d, 0)", tbl, i)); err != nil {
			continue // the write itself timed out: nothing to release
		}
		// Wait until the coordinator connection ran the release (the decision query
		// itself leaves the copies held while COMMIT PREPARED runs).
		var heldSince time.Time
		for j := 0; j < 5000; j++ {
			var st, q string
			var locks int
			err := coord.QueryRow(ctx, `SELECT a.state, a.query, (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')
				FROM pg_stat_activity a WHERE a.application_name = $1`, app).Scan(&st, &q, &locks)
			if errors.Is(err, pgx.ErrNoRows) {
				break // no coordinator connection (a failed commit closed it): nothing held
			}
			if err != nil {
				t.Fatal(err)
			}
			if st == "idle" && strings.Contains(q, "pg_advisory_unlock") {
				if locks == 0 {
					break
				}
				// A release cancelled all the same is run again at once (while the
				// client is idle): the copies must go within a moment.
				if heldSince.IsZero() {
					heldSince = time.Now()
				} else if time.Since(heldSince) > 2*time.Second {
					t.Fatalf("round %d: the session's coordinator connection is idle holding %d advisory locks for %v after the release %q", i, locks, time.Since(heldSince).Round(time.Millisecond), q)
				}
				time.Sleep(time.Millisecond)
				continue
			}
			if st == "idle" && !strings.Contains(q, "pgs_commit.record") {
				break // a one-phase write, or the release is not the last query
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestHostile2PCClientGoneAtCommit: the client sends COMMIT for a block that wrote two
// workers and closes its socket at once. The commit is all or nothing on every
// placement (the protocol does not follow the session's end), nothing stays prepared
// once recovery ran, and no lock of the block outlives it: another session's write to
// the same shards goes through.
func TestHostile2PCClientGoneAtCommit(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	for round := 0; round < 5; round++ {
		c, err := pgx.Connect(ctx, simpleURL(env.P))
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, c, "BEGIN", fmt.Sprintf("INSERT INTO %s SELECT g, %d FROM generate_series(%d, %d) g", tbl, round, 100*round+1, 100*round+8),
			fmt.Sprintf("UPDATE %s SET v = v + 1", tbl))
		nc := c.PgConn().Conn()
		msg := append([]byte{'Q', 0, 0, 0, byte(4 + len("COMMIT") + 1)}, append([]byte("COMMIT"), 0)...)
		if _, err := nc.Write(msg); err != nil {
			t.Fatal(err)
		}
		nc.Close()
		other := connect(t)
		mustExec(t, other, "SET lock_timeout = '10s'")
		if _, err := other.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 0", tbl)); err != nil {
			t.Fatalf("round %d: another session's write after the client left at COMMIT: %v", round, err)
		}
		mustExec(t, conn, "RECOVER TRANSACTIONS")
		n := placementsAgree(t, tbl)
		if n%8 != 0 {
			t.Fatalf("round %d: %d rows: part of a block committed", round, n)
		}
		if k := preparedOnWorkers(t); k != 0 {
			t.Fatalf("round %d: %d prepared transactions left after recovery", round, k)
		}
	}
}
