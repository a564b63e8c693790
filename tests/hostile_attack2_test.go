package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// A second round of attacks, as an ordinary user, on the fixes of issue 10's items 6
// (shard locks and idle timeouts), 9 (leaks) and 10 (client limits).

// TestHostileAttackIdleLimitFlush: pgshard's --idle-transaction-timeout, which a client
// cannot lift, ends a session that holds shard locks and then sends only a Flush (or a
// Parse without Sync): the session waits for its client all the same. (PostgreSQL arms
// idle_in_transaction_session_timeout only after ReadyForQuery, and so does pgshard for
// that setting; its own limit guards the shard locks PostgreSQL does not have.)
func TestHostileAttackIdleLimitFlush(t *testing.T) {
	p := startLimitedProxy(t, testproxy.Options{IdleTransactionTimeout: time.Second})
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "flushidle", 1, app)
	for _, c := range []struct {
		name string
		msgs []pgproto3.FrontendMessage
	}{
		{"flush", []pgproto3.FrontendMessage{&pgproto3.Flush{}}},
		{"parse-no-sync", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Flush{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ac := connectAs(t, p, app)
			mustExec(t, ac, "SET idle_in_transaction_session_timeout = 0", "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
			fe := ac.PgConn().Frontend()
			for _, m := range c.msgs {
				fe.Send(m)
			}
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			quickWrite(t, connect(t), fmt.Sprintf("UPDATE %s SET v = 'owner'", table))
			waitFatal(t, ac.PgConn(), "25P03")
			if got := tableIDs(t, owner, table); got != "" {
				t.Errorf("rows %s", got)
			}
		})
	}
}

// waitFatal reads what the proxy sends until an error, which must be FATAL with code.
func waitFatal(t *testing.T, pc *pgconn.PgConn, code string) {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		msg, err := pc.ReceiveMessage(ctx)
		cancel()
		pe := pgErrorOf(err)
		if e, ok := msg.(*pgproto3.ErrorResponse); ok && err == nil {
			pe = &pgconn.PgError{Severity: e.Severity, Code: e.Code, Message: e.Message}
		}
		if pe != nil {
			if pe.Code != code || pe.Severity != "FATAL" {
				t.Errorf("got %s %s %q, want FATAL %s", pe.Severity, pe.Code, pe.Message, code)
			}
			return
		}
		if err != nil {
			t.Fatalf("want FATAL %s, got %v", code, err)
		}
	}
}

// copyStall starts COPY ... FROM STDIN on the connection and then sends nothing.
func copyStall(t *testing.T, fe *pgproto3.Frontend, recv func() (pgproto3.BackendMessage, error), sql string) {
	t.Helper()
	fe.Send(&pgproto3.Query{String: sql})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := recv()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyInResponse:
			return
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s: %s", sql, m.Message)
		}
	}
}

// TestHostileAttackCopyStall: a COPY FROM STDIN into a distributed table locks every
// shard; a client that starts one and then sends nothing must not keep them (and
// every other writer out) forever: client_idle_timeout and pgshard's
// --idle-transaction-timeout end it as they end a client idle between statements.
func TestHostileAttackCopyStall(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "copystall", 4, app)
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s SELECT g, 'owner' FROM generate_series(1, 8) g", table))
	for _, c := range []struct {
		name  string
		opts  testproxy.Options
		code  string
		block bool
	}{
		{"client-idle-timeout", testproxy.Options{ClientIdleTimeout: time.Second}, "57P05", false},
		{"idle-transaction-timeout", testproxy.Options{IdleTransactionTimeout: time.Second}, "25P03", false},
		{"idle-transaction-timeout-block", testproxy.Options{IdleTransactionTimeout: time.Second}, "25P03", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := startLimitedProxy(t, c.opts)
			ac := connectAs(t, p, app)
			if c.block {
				mustExec(t, ac, "BEGIN")
			}
			recv := func() (pgproto3.BackendMessage, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return ac.PgConn().ReceiveMessage(ctx)
			}
			copyStall(t, ac.PgConn().Frontend(), recv, fmt.Sprintf("COPY %s FROM STDIN", table))
			quickWrite(t, connect(t), fmt.Sprintf("UPDATE %s SET v = v || '.'", table))
			waitFatal(t, ac.PgConn(), c.code)
		})
	}
}

// TestHostileAttackMaxClientConnReserved: an ordinary role that takes every one of
// max_client_conn's places does not lock the superusers out: as PostgreSQL keeps
// superuser_reserved_connections for them, pgshard keeps a few places beyond
// max_client_conn that only a superuser may log in to; an ordinary role there is told
// "sorry, too many clients already".
func TestHostileAttackMaxClientConnReserved(t *testing.T) {
	const max = 2
	p := startLimitedProxy(t, testproxy.Options{MaxClientConn: max})
	app := unprivilegedRole(t, "app")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", app, p.Addr)
	for i := 0; i < max; i++ {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, max, err)
		}
		defer c.Close(context.Background())
	}
	if c, err := pgx.Connect(ctx, url); err == nil {
		c.Close(ctx)
		t.Fatal("an ordinary role got a place beyond max_client_conn")
	} else if pe := pgErrorOf(err); pe == nil || pe.Code != "53300" || pe.Severity != "FATAL" {
		t.Fatalf("an ordinary role beyond max_client_conn: got %v, want FATAL 53300", err)
	}
	su, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		t.Fatalf("a superuser could not log in while an ordinary role holds max_client_conn places: %v", err)
	}
	defer su.Close(context.Background())
	if got := queryString(t, su, "SELECT 'ok'"); got != "ok" {
		t.Errorf("superuser session: %s", got)
	}
}

// TestHostileAttackPrepareTransaction: PREPARE TRANSACTION in a block that used
// distributed tables would prepare only the coordinator's part of it (which then outlives
// the session, holding its locks) and leave the workers' part, and the shard locks, in a
// block the client believes ended. pgshard refuses it there (0A000) and the block fails,
// giving back its shard locks at once; nothing is left prepared.
func TestHostileAttackPrepareTransaction(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "prep", 1, app)
	ac := connectAs(t, env.P, app)
	gid := uniqueName("gid")
	defer owner.Exec(context.Background(), fmt.Sprintf("ROLLBACK PREPARED '%s'", gid))
	for _, write := range []bool{true, false} {
		mustExec(t, ac, "BEGIN", "SELECT 1")
		if write {
			mustExec(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
		} else {
			mustExec(t, ac, fmt.Sprintf("SELECT * FROM %s WHERE id = 1", table))
		}
		wantCode(t, ac, fmt.Sprintf("PREPARE TRANSACTION '%s'", gid), "0A000", "")
		if st := ac.PgConn().TxStatus(); st != 'E' {
			t.Errorf("transaction status after the refused PREPARE TRANSACTION: %c, want E", st)
		}
		quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", table))
		mustExec(t, ac, "ROLLBACK")
		if got := queryString(t, owner, fmt.Sprintf("SELECT count(*)::text FROM pg_prepared_xacts WHERE gid = '%s'", gid)); got != "0" {
			t.Errorf("prepared transactions left on the coordinator: %s", got)
		}
		if got := tableIDs(t, owner, table); got != "2" {
			t.Errorf("rows %s", got)
		}
		mustExec(t, owner, fmt.Sprintf("DELETE FROM %s", table))
	}
}

// TestHostileAttackIdleLimitUnreadResult: a client whose block holds shard locks and
// that then stops reading a large result keeps the proxy waiting for it as surely as an
// idle one: pgshard's --idle-transaction-timeout bounds that wait too (PostgreSQL would
// wait, holding only the block's row locks, not every writer of the shard out).
func TestHostileAttackIdleLimitUnreadResult(t *testing.T) {
	p := startLimitedProxy(t, testproxy.Options{IdleTransactionTimeout: time.Second})
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "unread", 1, app)
	ac := connectAs(t, p, app)
	mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
	fe := ac.PgConn().Frontend()
	fe.Send(&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 500000)"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing: the proxy's writes fill the socket buffers and block.
	quickWrite(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", table))
	ac.PgConn().Conn().Close()
	if got := tableIDs(t, owner, table); got != "2" {
		t.Errorf("rows %s", got)
	}
}

// TestHostileAttackPrivilegeCheckSchema: a write to a distributed table in a schema the
// role may not use fails as in PostgreSQL, with "permission denied for schema", not with
// the table's privilege error that tells the table is there (the privilege check before
// the shard locks).
func TestHostileAttackPrivilegeCheckSchema(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	sch := uniqueName("hid")
	// A table name no other test's function mentions: distributing refuses tables that
	// function bodies name (by word), and the package's tests share one cluster.
	tbl := sch + ".tpriv"
	mustExec(t, owner, "CREATE SCHEMA "+sch, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text)", tbl),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id', 'hash')", tbl),
		fmt.Sprintf("SELECT master_create_worker_shards('%s', 2, 2)", tbl))
	ac := connectAs(t, env.P, app)
	pg := connectServerAs(t, env.C.Coordinator, app)
	for _, sql := range []string{"DELETE FROM %s", "UPDATE %s SET v = 'x'", "INSERT INTO %s VALUES (1, 'a')", "COPY %s FROM STDIN"} {
		sql = fmt.Sprintf(sql, tbl)
		_, perr := pg.Exec(context.Background(), sql)
		want := pgErrorOf(perr)
		if want == nil {
			t.Fatalf("%s on PostgreSQL: %v", sql, perr)
		}
		wantCode(t, ac, sql, want.Code, want.Message)
	}
}

// TestHostileAttackRowSecurity: a table with row-level security enabled must not be
// distributed (master_create_distributed_table does not carry it); enabled on a
// distributed table through pgshard, it reaches every shard, so that a role with
// privileges on the shards reads no row that PostgreSQL would hide (with row security on
// and no policy, every row of another owner's table; tests/ddltrigger_test.go has
// policies).
func TestHostileAttackRowSecurity(t *testing.T) {
	owner := connect(t)
	for _, mode := range []string{"ENABLE", "FORCE"} {
		rls := uniqueName("rls")
		mustExec(t, owner, fmt.Sprintf("CREATE TABLE %s (id int, who text)", rls),
			fmt.Sprintf("ALTER TABLE %s %s ROW LEVEL SECURITY", rls, mode))
		wantCode(t, owner, fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id', 'hash')", rls), "0A000", "")
	}
	rls := uniqueName("rls")
	mustExec(t, owner, fmt.Sprintf("CREATE TABLE %s (id int, who text)", rls),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id', 'hash')", rls),
		fmt.Sprintf("SELECT master_create_worker_shards('%s', 2, 2)", rls))
	app := unprivilegedRole(t, "rlsapp")
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (1, 'a'), (2, 'b'), (3, 'c')", rls),
		fmt.Sprintf("GRANT SELECT ON %s TO %s", rls, app))
	ac := connectAs(t, env.P, app)
	for _, mode := range []string{"ENABLE", "FORCE"} {
		mustExec(t, owner, fmt.Sprintf("ALTER TABLE %s %s ROW LEVEL SECURITY", rls, mode))
		if n := queryString(t, ac, fmt.Sprintf("SELECT count(*)::text FROM %s", rls)); n != "0" {
			t.Errorf("after %s ROW LEVEL SECURITY, %s reads %s rows through pgshard, want 0 (as PostgreSQL: no policy)", mode, app, n)
		}
	}
}

// TestHostileAttackExplainAddresses: EXPLAIN of a distributed table does not show an
// ordinary role the workers' addresses (SHOW NODES and SHOW PLACEMENTS are for
// superusers only, and the metadata is not readable to it); a superuser still sees them.
func TestHostileAttackExplainAddresses(t *testing.T) {
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "explained", 2, "")
	grantShards(t, table, "SELECT", app)
	ac := connectAs(t, env.P, app)
	plan := func(conn *pgx.Conn) string {
		rows, err := conn.Query(context.Background(), fmt.Sprintf("EXPLAIN ANALYZE SELECT * FROM %s", table))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, "\n")
	}
	got := plan(ac)
	for _, s := range env.C.Workers {
		if strings.Contains(got, s.Addr()) || strings.Contains(got, fmt.Sprintf(":%d", s.Port)) {
			t.Errorf("an ordinary role's EXPLAIN shows worker %s:\n%s", s.Addr(), got)
		}
	}
	if !strings.Contains(got, "->  Shard ") {
		t.Errorf("no shards in the plan:\n%s", got)
	}
	if su := plan(owner); !strings.Contains(su, " on 127.0.0.1:") && !strings.Contains(su, " on localhost:") {
		t.Errorf("a superuser's EXPLAIN lost the workers' addresses:\n%s", su)
	}
}

// TestHostileAttackIdleLimitRowLocks: a block idle after SELECT ... FOR UPDATE holds no
// shard lock, but the first writer of the locked row waits for it on the worker while
// holding the shard's write lock, so every other writer of the shard waits too (in
// PostgreSQL only writers of that row would): pgshard's --idle-transaction-timeout ends
// such a block as it ends one that wrote.
func TestHostileAttackIdleLimitRowLocks(t *testing.T) {
	p := startLimitedProxy(t, testproxy.Options{IdleTransactionTimeout: time.Second})
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "rowlock", 1, app)
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (1, 'a'), (2, 'b')", table))
	ac := connectAs(t, p, app)
	mustExec(t, ac, "SET idle_in_transaction_session_timeout = 0", "BEGIN", fmt.Sprintf("SELECT * FROM %s WHERE id = 1 FOR UPDATE", table))
	first := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(context.Background(), simpleURL(p))
		if err != nil {
			first <- err
			return
		}
		defer c.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err = c.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 'first' WHERE id = 1", table))
		first <- err
	}()
	time.Sleep(200 * time.Millisecond)
	quickWrite(t, connectTo(t, p), fmt.Sprintf("UPDATE %s SET v = 'other' WHERE id = 2", table))
	if err := <-first; err != nil {
		t.Errorf("the writer of the locked row: %v", err)
	}
}

// TestHostileAttackActiveBlockHoldsShard: a block that inserted one row into a table with
// a primary key held the shard's exclusive write lock until it ended; a client that kept
// it open by sending a statement now and then (never idle) kept every other writer of the
// shard waiting, and failing after the 30 s lock timeout, for as long as it liked. In
// PostgreSQL only an INSERT of the same key waits, and so through pgshard now: an INSERT
// takes the shard lock shared and a lock per key (README, Locks).
func TestHostileAttackActiveBlockHoldsShard(t *testing.T) {
	p := startLimitedProxy(t, testproxy.Options{IdleTransactionTimeout: time.Second})
	owner := connect(t)
	app := unprivilegedRole(t, "app")
	table := lockTable(t, owner, "active", 1, app)
	ac := connectAs(t, p, app)
	mustExec(t, ac, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (1, 'app')", table))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				if _, err := ac.Exec(context.Background(), "SELECT 1"); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-done }()
	quickWrite(t, connectTo(t, p), fmt.Sprintf("INSERT INTO %s VALUES (2, 'owner')", table))
}
