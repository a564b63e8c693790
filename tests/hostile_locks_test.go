package tests

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// The shard write locks (pgshard orders the writes to a replicated shard by taking its
// lock, through every proxy) must not be a way for an ordinary user to stop other users'
// writes: a statement that fails gives back what it took, a statement the user may not
// run takes nothing, and a session idle in a transaction block is ended by
// idle_in_transaction_session_timeout as PostgreSQL ends it. The other writer's wait is
// bounded by quickWrite's 10 s (no proxy-wide lock timeout bounds it any more).

// lockTable creates a table of postgres's with the given number of shards, two
// placements each, and gives role (if any) every privilege on it and on its shards (GRANT
// through the proxy changes only the coordinator's table).
func lockTable(t *testing.T, owner *pgx.Conn, prefix string, shards int, role string) string {
	t.Helper()
	table := uniqueName(prefix)
	distribute(t, owner, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text)", table), table, "id", shards, 2)
	if role != "" {
		grantShards(t, table, "ALL", role)
	}
	return table
}

// grantShards grants privs on table and on its shard tables to role, on every server.
func grantShards(t *testing.T, table, privs, role string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sql := fmt.Sprintf(`DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace
			AND (relname = '%[1]s' OR relname ~ '^%[1]s_[0-9]+$') LOOP
			EXECUTE format('GRANT %[2]s ON TABLE public.%%I TO %%I', r.relname, '%[3]s');
		END LOOP; END $$`, table, privs, role)
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(ctx, "postgres", sql); err != nil {
			t.Fatalf("grant on %s: %v", s.Name, err)
		}
	}
}

// quickWrite runs a write that must neither wait for a shard lock nor fail.
func quickWrite(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v after %s (a shard lock left behind?)", sql, err, time.Since(start).Round(time.Millisecond))
	}
}

// wantCode runs sql and checks the SQLSTATE of its error.
func wantCode(t *testing.T, conn *pgx.Conn, sql, code, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, sql)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code || (msg != "" && pe.Message != msg) {
		t.Errorf("%s: got %v, want %s %s", sql, err, code, msg)
	}
}

func tableIDs(t *testing.T, conn *pgx.Conn, table string) string {
	t.Helper()
	return queryString(t, conn, fmt.Sprintf("SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM %s", table))
}

// TestHostileLockPermissionDenied: a write the user has no privilege for, in a transaction
// block, fails with PostgreSQL's error and leaves no shard lock behind, with or without a
// WHERE that pins one shard.
func TestHostileLockPermissionDenied(t *testing.T) {
	owner := connect(t)
	secret := lockTable(t, owner, "secret", 4, "")
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s SELECT g, 'owner' FROM generate_series(1, 8) g", secret))
	app := unprivilegedRole(t, "app")
	ac := connectAs(t, env.P, app)
	denied := fmt.Sprintf("permission denied for table %s", secret)
	for _, sql := range []string{
		"DELETE FROM %s WHERE id = 1",
		"DELETE FROM %s",
		"UPDATE %s SET v = 'app'",
		"INSERT INTO %s VALUES (1000, 'app')",
	} {
		sql = fmt.Sprintf(sql, secret)
		t.Run(sql, func(t *testing.T) {
			defer ac.Exec(context.Background(), "ROLLBACK")
			mustExec(t, ac, "BEGIN")
			wantCode(t, ac, sql, "42501", denied)
			// Every shard, while the failed block is still open.
			quickWrite(t, owner, fmt.Sprintf("UPDATE %s SET v = v || '.'", secret))
			quickWrite(t, owner, fmt.Sprintf("DELETE FROM %s WHERE id = 1", secret))
			quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (1, 'owner')", secret))
			mustExec(t, ac, "ROLLBACK")
		})
	}
	// Outside a block, too.
	wantCode(t, ac, fmt.Sprintf("DELETE FROM %s", secret), "42501", denied)
	// The refusal does not even wait for the lock another writer holds (nor queue before
	// the writers behind that one).
	mustExec(t, owner, "BEGIN", fmt.Sprintf("UPDATE %s SET v = 'owner' WHERE id = 1", secret))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := ac.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE id = 1", secret))
	cancel()
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "42501" {
		t.Errorf("DELETE while the shard is locked: %v, want 42501 at once", err)
	}
	mustExec(t, owner, "COMMIT")
	if got := tableIDs(t, owner, secret); got != "1,2,3,4,5,6,7,8" {
		t.Errorf("rows %s", got)
	}
}

// TestHostileLockColumnPrivileges: the privilege check made before the locks are taken
// refuses nothing PostgreSQL allows: column privileges are enough for INSERT and UPDATE.
func TestHostileLockColumnPrivileges(t *testing.T) {
	owner := connect(t)
	table := lockTable(t, owner, "colpriv", 4, "")
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (1, 'owner')", table))
	app := unprivilegedRole(t, "app")
	grantShards(t, table, "SELECT (id), UPDATE (v), INSERT (id, v)", app)
	ac := connectAs(t, env.P, app)
	mustExec(t, ac, "BEGIN",
		fmt.Sprintf("UPDATE %s SET v = 'app' WHERE id = 1", table),
		fmt.Sprintf("INSERT INTO %s VALUES (2, 'app')", table),
		"COMMIT")
	wantCode(t, ac, fmt.Sprintf("DELETE FROM %s WHERE id = 1", table), "42501", "permission denied for table "+table)
	if got := queryString(t, owner, fmt.Sprintf("SELECT string_agg(id || v, ',' ORDER BY id) FROM %s", table)); got != "1app,2app" {
		t.Errorf("rows %s", got)
	}
}

// TestHostileLockFailedAfterWrite: a statement that fails after a successful write in the
// same block aborts the block, which can then only roll back: none of its locks is needed
// any more.
func TestHostileLockFailedAfterWrite(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	own := lockTable(t, owner, "ownw", 1, app)
	secret := lockTable(t, owner, "secretw", 1, "")
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (5, 'owner')", own))
	ac := connectAs(t, env.P, app)

	// Fails on the placements (duplicate key), after taking the lock.
	mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", own))
	wantCode(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (5, 'app')", own), "23505", "")
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", own))
	quickWrite(t, owner, fmt.Sprintf("UPDATE %s SET v = 'owner2' WHERE id = 5", own))
	wantCode(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (3, 'app')", own), "25P02", "")
	mustExec(t, ac, "ROLLBACK")

	// Refused for want of privileges.
	mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", own))
	wantCode(t, ac, fmt.Sprintf("DELETE FROM %s WHERE id = 1", secret), "42501", "")
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (3, 'owner')", own))
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (1, 'owner')", secret))
	mustExec(t, ac, "ROLLBACK")

	// The same in the extended protocol.
	ext, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", app, env.P.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(context.Background())
	mustExec(t, ext, "BEGIN")
	if _, err := ext.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES ($1, 'app')", own), 1); err != nil {
		t.Fatal(err)
	}
	wantCode(t, ext, fmt.Sprintf("DELETE FROM %s WHERE id = 1", secret), "42501", "")
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (4, 'owner')", own))
	mustExec(t, ext, "ROLLBACK", "BEGIN")
	if _, err := ext.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES ($1, 'app')", own), 1); err != nil {
		t.Fatal(err)
	}
	wantCode(t, ext, fmt.Sprintf("INSERT INTO %s VALUES (5, 'app')", own), "23505", "")
	quickWrite(t, owner, fmt.Sprintf("DELETE FROM %s WHERE id = 4", own))
	mustExec(t, ext, "ROLLBACK")

	// A statement that fails elsewhere (here on the coordinator) leaves the block's row
	// locked on the workers no more than PostgreSQL, which aborts the transaction when the
	// statement fails: the same key inserted by another session does not wait for the
	// block's ROLLBACK.
	mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", own))
	wantCode(t, ac, "SELECT 1/0", "22012", "")
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (1, 'owner')", own))
	quickWrite(t, owner, fmt.Sprintf("DELETE FROM %s WHERE id = 1", own))
	mustExec(t, ac, "ROLLBACK")

	if got := tableIDs(t, owner, own); got != "2,3,5" {
		t.Errorf("rows %s", got)
	}
	// The block's writes are usable again afterwards.
	mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", own), "COMMIT")
	if got := tableIDs(t, owner, own); got != "1,2,3,5" {
		t.Errorf("rows %s", got)
	}
}

// TestHostileLockSavepoint: ROLLBACK TO SAVEPOINT, and an error after a savepoint, give
// back the locks taken after the savepoint and keep those taken before it, which the
// block's surviving writes still need. Writes of other keys never wait (key locks), so
// each check writes a key the block wrote.
func TestHostileLockSavepoint(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	a := lockTable(t, owner, "spa", 1, app)
	b := lockTable(t, owner, "spb", 1, app)
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (5, 'owner')", b))
	ac := connectAs(t, env.P, app)

	// stillLocked checks that a write of row id of table (which ac's block wrote) waits
	// for the block and completes once the block ends with end.
	stillLocked := func(table string, id int, end string) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := owner.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 'owner' WHERE id = %d", table, id))
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("write to %s did not wait for the block's lock (err %v)", table, err)
		case <-time.After(time.Second):
		}
		mustExec(t, ac, end)
		if err := <-done; err != nil {
			t.Fatalf("write to %s after the block: %v", table, err)
		}
	}

	mustExec(t, ac, "BEGIN",
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", a),
		"SAVEPOINT s",
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", b),
		"ROLLBACK TO SAVEPOINT s")
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (1, 'owner')", b))
	stillLocked(a, 1, "COMMIT")

	// An error after the savepoint.
	mustExec(t, ac, "BEGIN",
		fmt.Sprintf("INSERT INTO %s VALUES (3, 'app')", a),
		"SAVEPOINT s1",
		"SAVEPOINT s2",
		fmt.Sprintf("INSERT INTO %s VALUES (3, 'app')", b))
	wantCode(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (5, 'app')", b), "23505", "")
	// (No row to update: only the coordinator's key lock could hold it up.)
	quickWrite(t, owner, fmt.Sprintf("UPDATE %s SET v = 'owner' WHERE id = 3", b))
	mustExec(t, ac, "ROLLBACK TO SAVEPOINT s2", fmt.Sprintf("INSERT INTO %s VALUES (3, 'app')", b))
	// Failing elsewhere (on the coordinator), the statement leaves the row written after
	// the savepoint locked on the workers no more than PostgreSQL would.
	wantCode(t, ac, "SELECT 1/0", "22012", "")
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (3, 'owner')", b))
	mustExec(t, ac, "ROLLBACK TO SAVEPOINT s1",
		fmt.Sprintf("INSERT INTO %s VALUES (4, 'app')", a),
		fmt.Sprintf("INSERT INTO %s VALUES (6, 'app')", b))
	stillLocked(b, 6, "COMMIT")

	if got := tableIDs(t, owner, a); got != "1,3,4" {
		t.Errorf("%s: rows %s", a, got)
	}
	if got := tableIDs(t, owner, b); got != "1,3,5,6" {
		t.Errorf("%s: rows %s", b, got)
	}
}

// idleEnd waits for the error a server sends on its own when it ends an idle session.
func idleEnd(t *testing.T, conn *pgx.Conn) *pgconn.PgError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		msg, err := conn.PgConn().ReceiveMessage(ctx)
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			return &pgconn.PgError{Severity: e.Severity, Code: e.Code, Message: e.Message}
		}
		if n, ok := msg.(*pgproto3.NoticeResponse); ok && err == nil {
			// Seen once under load in a LISTENing session (not understood yet: see the
			// issue's note); the session's end is what this checks.
			t.Logf("notice before the end of an idle session: %s %s %q", n.Severity, n.Code, n.Message)
			continue
		}
		t.Fatalf("got %T %v from an idle session, want an ErrorResponse", msg, err)
		return nil
	}
}

func sameEnd(t *testing.T, got, want *pgconn.PgError) {
	t.Helper()
	if got.Severity != want.Severity || got.Code != want.Code || got.Message != want.Message {
		t.Errorf("pgshard: %s %s %q; PostgreSQL: %s %s %q", got.Severity, got.Code, got.Message, want.Severity, want.Code, want.Message)
	}
}

// TestHostileLockIdleInTransaction: a session idle in a transaction block for longer than
// idle_in_transaction_session_timeout (set by the client, or the role's default on the
// coordinator) is ended as PostgreSQL ends it, and its locks go with it.
func TestHostileLockIdleInTransaction(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "idle", 1, app)

	// PostgreSQL's own answer.
	pg, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", app, env.C.Coordinator.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	mustExec(t, pg, "SET idle_in_transaction_session_timeout = '1s'", "BEGIN", "SELECT 1")
	want := idleEnd(t, pg)

	for _, c := range []struct {
		name  string
		setup []string
	}{
		{"set", []string{"SET idle_in_transaction_session_timeout = '1s'", "BEGIN"}},
		{"set-local", []string{"BEGIN", "SET LOCAL idle_in_transaction_session_timeout = 1000"}},
		{"listen", []string{"LISTEN hostile_locks", "SET idle_in_transaction_session_timeout = '1s'", "BEGIN"}},
		{"failed-block", []string{"SET idle_in_transaction_session_timeout = '1s'", "BEGIN"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Whatever happens, the next case starts from an empty table.
			defer owner.Exec(context.Background(), fmt.Sprintf("DELETE FROM %s", table))
			ac := connectAs(t, env.P, app)
			mustExec(t, ac, c.setup...)
			mustExec(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
			if c.name == "failed-block" {
				wantCode(t, ac, "SELECT 1/0", "22012", "")
			}
			quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", table))
			sameEnd(t, idleEnd(t, ac), want)
			if got := tableIDs(t, owner, table); got != "2" {
				t.Errorf("rows %s", got)
			}
			mustExec(t, owner, fmt.Sprintf("DELETE FROM %s", table))
		})
	}

	// The startup packet's options.
	t.Run("startup-options", func(t *testing.T) {
		ac, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable&options=-c%%20idle_in_transaction_session_timeout%%3D1s", app, env.P.Addr))
		if err != nil {
			t.Fatal(err)
		}
		defer ac.Close(context.Background())
		if got := queryString(t, ac, "SHOW idle_in_transaction_session_timeout"); got != "1s" {
			t.Errorf("SHOW idle_in_transaction_session_timeout: %s", got)
		}
		mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
		quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", table))
		sameEnd(t, idleEnd(t, ac), want)
		if got := tableIDs(t, owner, table); got != "2" {
			t.Errorf("rows %s", got)
		}
		mustExec(t, owner, fmt.Sprintf("DELETE FROM %s", table))
	})

	// The role's default on the coordinator.
	t.Run("role-default", func(t *testing.T) {
		slow := unprivilegedRole(t, "app", "ALTER ROLE %[1]s SET idle_in_transaction_session_timeout = '1s'")
		grantShards(t, table, "ALL", slow)
		ac := connectAs(t, env.P, slow)
		mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
		quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", table))
		sameEnd(t, idleEnd(t, ac), want)
		if got := tableIDs(t, owner, table); got != "2" {
			t.Errorf("rows %s", got)
		}
	})

	// Idle outside a block: only idle_session_timeout ends the session.
	t.Run("idle-session", func(t *testing.T) {
		pg, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", app, env.C.Coordinator.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close(context.Background())
		mustExec(t, pg, "SET idle_session_timeout = '1s'")
		want := idleEnd(t, pg)
		ac := connectAs(t, env.P, app)
		mustExec(t, ac, "SET idle_in_transaction_session_timeout = '1s'")
		time.Sleep(1500 * time.Millisecond)
		mustExec(t, ac, "SET idle_session_timeout = '1s'")
		sameEnd(t, idleEnd(t, ac), want)
	})
}

// TestHostileLockIdleTransactionLimit: pgshard's own limit ends a session idle in a block
// that holds shard locks, whatever the session's idle_in_transaction_session_timeout; a
// block that holds none is left alone.
func TestHostileLockIdleTransactionLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{IdleTransactionTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "idlelimit", 1, app)

	ac := connectAs(t, p2, app)
	mustExec(t, ac, "SET idle_in_transaction_session_timeout = 0", "BEGIN", "SELECT 1")
	time.Sleep(1500 * time.Millisecond)
	mustExec(t, ac, fmt.Sprintf("SELECT * FROM %s", table), "COMMIT")

	mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", table))
	if e := idleEnd(t, ac); e.Code != "25P03" || e.Severity != "FATAL" {
		t.Errorf("got %s %s %q, want FATAL 25P03", e.Severity, e.Code, e.Message)
	}
	if got := tableIDs(t, owner, table); got != "2" {
		t.Errorf("rows %s", got)
	}
}

// TestHostileLockPrivilegeOfCurrentRole: the privilege check asks as the session's current
// role, as PostgreSQL checks: SET ROLE (for the session or for the block) to a role with
// the privilege lets the write through, and back to one without refuses it.
func TestHostileLockPrivilegeOfCurrentRole(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app", "ALTER ROLE %[1]s NOINHERIT")
	writer := unprivilegedRole(t, "writer")
	table := lockTable(t, owner, "setrole", 4, writer)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(ctx, "postgres", fmt.Sprintf("GRANT %s TO %s", writer, app)); err != nil {
			t.Fatal(err)
		}
	}
	ac := connectAs(t, env.P, app)
	denied := "permission denied for table " + table
	mustExec(t, ac, "BEGIN")
	wantCode(t, ac, fmt.Sprintf("DELETE FROM %s", table), "42501", denied)
	mustExec(t, ac, "ROLLBACK",
		"BEGIN", "SET LOCAL ROLE "+writer, fmt.Sprintf("INSERT INTO %s VALUES (1, 'writer')", table), "COMMIT")
	mustExec(t, ac, "SET ROLE "+writer, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (2, 'writer')", table), "COMMIT")
	mustExec(t, ac, "BEGIN", "SET LOCAL ROLE NONE")
	wantCode(t, ac, fmt.Sprintf("DELETE FROM %s", table), "42501", denied)
	mustExec(t, ac, "ROLLBACK", "RESET ROLE", "BEGIN")
	wantCode(t, ac, fmt.Sprintf("UPDATE %s SET v = 'app'", table), "42501", denied)
	mustExec(t, ac, "ROLLBACK")
	quickWrite(t, owner, fmt.Sprintf("UPDATE %s SET v = 'owner'", table))
	if got := tableIDs(t, owner, table); got != "1,2" {
		t.Errorf("rows %s", got)
	}
}
