package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/proxy"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// poolWaitOutcome is how a statement ended: its SQLSTATE and message ("" for success).
type poolWaitOutcome struct{ code, msg string }

func poolOutcomeOf(err error) poolWaitOutcome {
	if pe := pgErrorOf(err); pe != nil {
		return poolWaitOutcome{pe.Code, pe.Message}
	}
	if err != nil {
		return poolWaitOutcome{"client", err.Error()}
	}
	return poolWaitOutcome{}
}

// endWait runs sql on waiter in the background and, when cancel is set, sends a cancel
// request once it has had time to start waiting; it returns how the statement ended. A
// statement still waiting after 20s fails the test (the wait was not ended).
func endWait(t *testing.T, waiter *pgx.Conn, sql string, mode pgx.QueryExecMode, cancel bool) poolWaitOutcome {
	t.Helper()
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	done := make(chan poolWaitOutcome, 1)
	go func() {
		_, err := waiter.Exec(ctx, sql, mode)
		done <- poolOutcomeOf(err)
	}()
	if cancel {
		time.Sleep(500 * time.Millisecond)
		if err := waiter.PgConn().CancelRequest(ctx); err != nil {
			t.Fatalf("cancel request: %v", err)
		}
	}
	select {
	case o := <-done:
		return o
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: still waiting after 20s", sql)
		return poolWaitOutcome{}
	}
}

// plainWaitOutcomes are PostgreSQL's answers to a statement that waits (pg_sleep) and is
// ended by statement_timeout or by a cancel request: what a statement waiting in pgshard
// for a backend connection is to hear.
func plainWaitOutcomes(t *testing.T) (timeout, cancel poolWaitOutcome) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, env.C.Coordinator.URL("postgres")+"&options=-c%20statement_timeout%3D300ms")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	timeout = endWait(t, c, "SELECT pg_sleep(30)", pgx.QueryExecModeSimpleProtocol, false)
	mustExec(t, c, "SET statement_timeout = 0")
	cancel = endWait(t, c, "SELECT pg_sleep(30)", pgx.QueryExecModeSimpleProtocol, true)
	if timeout.code != "57014" || cancel.code != "57014" {
		t.Fatalf("plain PostgreSQL: timeout %v, cancel %v", timeout, cancel)
	}
	return timeout, cancel
}

// TestPoolWait: with --pool-size 1, session A holds the only connection to a server (a
// worker, or the coordinator) in an open block, and session B's statement waits for a
// connection. B's statement_timeout and a cancel request end the wait with 57014 and
// PostgreSQL's messages, as they end any wait in PostgreSQL; both sessions, and the
// proxy, go on working afterwards.
func TestPoolWait(t *testing.T) {
	ctx := context.Background()
	wantTimeout, wantCancel := plainWaitOutcomes(t)

	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{
		Config: func(c *proxy.Config) { c.PoolSize = 1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()

	// The table is made through the shared proxy, so that p's pools start empty.
	table := uniqueName("poolwait")
	admin := connect(t)
	distribute(t, admin, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 1, 1)
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, admin, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", table))

	connectOpts := func(opts string) *pgx.Conn {
		c, err := pgx.Connect(ctx, simpleURL(p)+opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	// The proxy sees a table another proxy just distributed once its metadata listener
	// heard of it (asynchronously; see the README's known limits).
	seeTable(t, simpleURL(p), "SELECT v FROM "+table+" WHERE id = 1")
	a := connectOpts("")
	bTimeout := connectOpts("&options=-c%20statement_timeout%3D300ms")
	b := connectOpts("")

	cases := []struct {
		name   string
		hold   string // what A runs in its block to hold the connection
		sql    string // what B runs
		waiter *pgx.Conn
		mode   pgx.QueryExecMode
		cancel bool
		block  bool // B waits inside a transaction block, which fails as in PostgreSQL
		want   poolWaitOutcome
	}{
		{name: "worker, statement_timeout", hold: "SELECT v FROM " + table + " WHERE id = 1", sql: "SELECT v FROM " + table + " WHERE id = 2",
			waiter: bTimeout, want: wantTimeout},
		{name: "worker, cancel", hold: "SELECT v FROM " + table + " WHERE id = 1", sql: "SELECT v FROM " + table + " WHERE id = 2",
			waiter: b, cancel: true, want: wantCancel},
		{name: "worker, cancel, extended", hold: "SELECT v FROM " + table + " WHERE id = 1", sql: "SELECT v FROM " + table + " WHERE id = 2",
			waiter: b, mode: pgx.QueryExecModeExec, cancel: true, want: wantCancel},
		{name: "worker, cancel, in a block", hold: "SELECT v FROM " + table + " WHERE id = 1", sql: "SELECT v FROM " + table + " WHERE id = 2",
			waiter: b, cancel: true, block: true, want: wantCancel},
		{name: "worker, write, statement_timeout", hold: "UPDATE " + table + " SET v = v + 1 WHERE id = 1", sql: "UPDATE " + table + " SET v = v + 1 WHERE id = 2",
			waiter: bTimeout, want: wantTimeout},
		{name: "coordinator, statement_timeout", hold: "SELECT pg_catalog.now()", sql: "SELECT pg_catalog.now()",
			waiter: bTimeout, want: wantTimeout},
		{name: "coordinator, cancel", hold: "SELECT pg_catalog.now()", sql: "SELECT pg_catalog.now()",
			waiter: b, cancel: true, want: wantCancel},
	}
	for _, c := range cases {
		mode := c.mode
		if mode == 0 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		mustExec(t, a, "BEGIN", c.hold)
		if c.block {
			mustExec(t, c.waiter, "BEGIN")
		}
		got := endWait(t, c.waiter, c.sql, mode, c.cancel)
		if got != c.want {
			t.Errorf("%s: got %s %q, want %s %q (as PostgreSQL)", c.name, got.code, got.msg, c.want.code, c.want.msg)
		}
		if c.block {
			_, err := c.waiter.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
			if pe := pgErrorOf(err); pe == nil || pe.Code != "25P02" {
				t.Errorf("%s: after the failed wait in a block got %v, want 25P02", c.name, err)
			}
			mustExec(t, c.waiter, "ROLLBACK")
		}
		mustExec(t, a, "ROLLBACK")
		// Every session is served again once the connection is free.
		for _, s := range []*pgx.Conn{c.waiter, a} {
			if v := queryString(t, s, "SELECT v::text FROM "+table+" WHERE id = 2"); v != "2" {
				t.Errorf("%s: afterwards v = %s, want 2", c.name, v)
			}
		}
	}
}

// stringTimeoutOutcome runs, on waiter (whose statement_timeout is 3s), a query string
// whose first statement sleeps 2s and whose second waits for what holder holds in an
// open block (run before); holder's block ends 3.5s after the string was sent. With the
// timeout counted for each statement of the string, as PostgreSQL counts it
// (exec_simple_query disables the statement timeout after each statement and starts a
// fresh one for the next), the second statement has waited 1.5s of its 3s when the
// holder lets go, and succeeds; counted from the start of the string, it would have
// ended at 3s with 57014.
func stringTimeoutOutcome(t *testing.T, holder, waiter *pgx.Conn, hold, second string) poolWaitOutcome {
	t.Helper()
	mustExec(t, holder, "BEGIN", hold)
	done := make(chan poolWaitOutcome, 1)
	go func() {
		_, err := waiter.Exec(context.Background(), "SELECT pg_catalog.pg_sleep(2); "+second, pgx.QueryExecModeSimpleProtocol)
		done <- poolOutcomeOf(err)
	}()
	time.Sleep(3500 * time.Millisecond)
	mustExec(t, holder, "ROLLBACK")
	select {
	case o := <-done:
		return o
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: still waiting 20s after the holder's block ended", second)
		return poolWaitOutcome{}
	}
}

// TestStatementTimeoutPerStatement: statement_timeout applies to each statement of a
// multi-statement query string separately, as in PostgreSQL, also to pgshard's own waits
// (for a shard write lock, for a pooled backend connection).
func TestStatementTimeoutPerStatement(t *testing.T) {
	ctx := context.Background()
	const opts = "&options=-c%20statement_timeout%3D3s"
	// Plain PostgreSQL: the second statement waits for a row lock.
	plain := uniqueName("stringtimeout_plain")
	pa := connectServer(t, env.C.Coordinator)
	mustExec(t, pa, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", plain), fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", plain))
	t.Cleanup(func() { pa.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain) })
	pb, err := pgx.Connect(ctx, env.C.Coordinator.URL("postgres")+opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close(ctx)
	want := stringTimeoutOutcome(t, pa, pb, "UPDATE "+plain+" SET v = v + 1 WHERE id = 1", "UPDATE "+plain+" SET v = v * 2 WHERE id = 1")
	if want != (poolWaitOutcome{}) {
		t.Fatalf("plain PostgreSQL: %v, want success", want)
	}

	// pgshard: a shard write lock (replication 2).
	table := uniqueName("stringtimeout")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 1, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", table))
	b, err := pgx.Connect(ctx, simpleURL(env.P)+opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if got := stringTimeoutOutcome(t, a, b, "UPDATE "+table+" SET v = v + 1 WHERE id = 1", "UPDATE "+table+" SET v = v * 2 WHERE id = 1"); got != want {
		t.Errorf("write lock: pgshard %v, PostgreSQL %v", got, want)
	}

	// pgshard: a backend connection (--pool-size 1, the holder's block keeps the
	// worker's only connection).
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{
		Config: func(c *proxy.Config) { c.PoolSize = 1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	pa2, err := pgx.Connect(ctx, simpleURL(p))
	if err != nil {
		t.Fatal(err)
	}
	defer pa2.Close(ctx)
	pb2, err := pgx.Connect(ctx, simpleURL(p)+opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pb2.Close(ctx)
	if got := stringTimeoutOutcome(t, pa2, pb2, "SELECT v FROM "+table+" WHERE id = 1", "SELECT v FROM "+table+" WHERE id = 2"); got != want {
		t.Errorf("pool: pgshard %v, PostgreSQL %v", got, want)
	}
}

// TestRepairWaitsLikeALockWait: REPAIR SHARD from a client waits for the shard's write
// lock, which a transaction block that wrote the shard holds, as the client's writes
// wait for it (and as PostgreSQL's lock waits end): at the session's lock_timeout (55P03),
// statement_timeout or a cancel request (57014), with PostgreSQL's messages.
func TestRepairWaitsLikeALockWait(t *testing.T) {
	ctx := context.Background()
	wantTimeout, wantCancel := plainWaitOutcomes(t)
	// PostgreSQL's answer to a lock wait ended by lock_timeout.
	plain := uniqueName("repairwait_plain")
	pa := connectServer(t, env.C.Coordinator)
	mustExec(t, pa, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", plain), fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", plain))
	t.Cleanup(func() { pa.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain) })
	pb, err := pgx.Connect(ctx, env.C.Coordinator.URL("postgres")+"&options=-c%20lock_timeout%3D300ms")
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close(ctx)
	mustExec(t, pa, "BEGIN", "UPDATE "+plain+" SET v = 2 WHERE id = 1")
	wantLock := endWait(t, pb, "UPDATE "+plain+" SET v = 3 WHERE id = 1", pgx.QueryExecModeSimpleProtocol, false)
	mustExec(t, pa, "ROLLBACK")
	if wantLock.code != "55P03" {
		t.Fatalf("plain PostgreSQL lock_timeout: %v", wantLock)
	}

	table := uniqueName("repairwait")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 1, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", table))
	var shard int64
	if err := connectServer(t, env.C.Coordinator).QueryRow(ctx, fmt.Sprintf(`UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3
		WHERE id = (SELECT min(p.id) FROM pgs_distribution_metadata.shard_placement p JOIN pgs_distribution_metadata.shard s ON s.id = p.shard_id
		            WHERE s.relation_id = '%s'::regclass)
		RETURNING shard_id`, table)).Scan(&shard); err != nil {
		t.Fatalf("mark a placement inactive: %v", err)
	}
	time.Sleep(time.Second) // the proxy reloads on the notification
	connectOpts := func(opts string) *pgx.Conn {
		c, err := pgx.Connect(ctx, simpleURL(env.P)+opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	repair := fmt.Sprintf("REPAIR SHARD %d", shard)
	for _, c := range []struct {
		name   string
		waiter *pgx.Conn
		cancel bool
		want   poolWaitOutcome
	}{
		{"statement_timeout", connectOpts("&options=-c%20statement_timeout%3D300ms"), false, wantTimeout},
		{"lock_timeout", connectOpts("&options=-c%20lock_timeout%3D300ms"), false, wantLock},
		{"cancel", connectOpts(""), true, wantCancel},
	} {
		mustExec(t, a, "BEGIN", "UPDATE "+table+" SET v = v + 1 WHERE id = 1")
		got := endWait(t, c.waiter, repair, pgx.QueryExecModeSimpleProtocol, c.cancel)
		if got != c.want {
			t.Errorf("%s: REPAIR SHARD waiting for the write lock got %s %q, want %s %q (as PostgreSQL)", c.name, got.code, got.msg, c.want.code, c.want.msg)
		}
		mustExec(t, a, "ROLLBACK")
	}
	// Once the block is gone, the repair goes through.
	mustExec(t, connectOpts(""), repair)
}

// TestPoolWaitBetweenStatements: a session's statement_timeout bounds its waits for a
// connection from the start of each statement; a message that needs a connection after
// the session was idle for longer (a Parse, the first use of the coordinator) is not
// refused for a statement that ended long ago, whether or not a connection is free.
func TestPoolWaitBetweenStatements(t *testing.T) {
	ctx := context.Background()
	table := uniqueName("poolidle")
	admin := connect(t)
	distribute(t, admin, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 1, 1)
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, admin, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	// Warm the new proxy's pools first (and let it see the new table): making the
	// first connections, checking the worker's identity, can take longer than the
	// session's 300 ms on a loaded machine, and that is not the wait this test is about.
	seeTable(t, p.URL(), "SELECT v FROM "+table+" WHERE id = 1")
	b, err := pgx.Connect(ctx, p.URL()+"&options=-c%20statement_timeout%3D300ms")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	// A statement on a worker only: the session takes no coordinator connection yet.
	if _, err := b.Exec(ctx, "SELECT v FROM "+table+" WHERE id = 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	// Parse, Describe, Bind, Execute of a coordinator statement.
	var one int
	if err := b.QueryRow(ctx, "SELECT $1::int", 1).Scan(&one); err != nil || one != 1 {
		t.Errorf("after an idle second, a statement got %v, %d", err, one)
	}
}

// TestDropTableWaitsLikePostgreSQL: DROP TABLE of a distributed table that a transaction
// block has read waits for the block's lock on the shard tables, on the workers. In
// PostgreSQL that wait ends at the session's lock_timeout (55P03), statement_timeout
// (57014) or a cancel request (57014), and the table is still there; so through pgshard,
// compared with the same sessions against plain PostgreSQL. (pgshard dropped the shard
// tables after the coordinator had committed the drop, on connections of its own, where
// none of them reached.) Once the block has ended, the drop goes through.
func TestDropTableWaitsLikePostgreSQL(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, options string
		cancel        bool
	}{
		{"statement_timeout", "-c statement_timeout=300ms", false},
		{"lock_timeout", "-c lock_timeout=300ms", false},
		{"cancel", "", true},
	}
	run := func(url, table string, holder *pgx.Conn, options string, cancel bool) poolWaitOutcome {
		mustExec(t, holder, "BEGIN", "SELECT v FROM "+table+" WHERE id = 1")
		defer mustExec(t, holder, "ROLLBACK")
		if options != "" {
			url += "&options=" + strings.ReplaceAll(strings.ReplaceAll(options, " ", "%20"), "=", "%3D")
		}
		b, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close(ctx)
		return endWait(t, b, "DROP TABLE "+table, pgx.QueryExecModeSimpleProtocol, cancel)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plain := uniqueName("dropwait_plain")
			pa := connectServer(t, env.C.Coordinator)
			mustExec(t, pa, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", plain), fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2), (3, 3)", plain))
			t.Cleanup(func() { pa.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain) })
			want := run(env.C.Coordinator.URL("postgres"), plain, pa, tc.options, tc.cancel)
			if want.code != "57014" && want.code != "55P03" {
				t.Fatalf("plain PostgreSQL: %v", want)
			}

			table := uniqueName("dropwait")
			a := connect(t)
			distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 2, 2)
			t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
			mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2), (3, 3)", table))
			if got := run(simpleURL(env.P), table, a, tc.options, tc.cancel); got != want {
				t.Errorf("DROP TABLE waiting for a block's lock: %v, want %v (as PostgreSQL)", got, want)
			}
			// The failed drop left the table whole, as in PostgreSQL.
			if got := queryString(t, a, "SELECT sum(v)::text FROM "+table); got != "6" {
				t.Errorf("after the failed DROP TABLE: sum %s, want 6", got)
			}
			noInactivePlacements(t, table)
			placementsIdentical(t, table)
			mustExec(t, a, "DROP TABLE "+table)
			if _, err := a.Exec(ctx, "SELECT 1 FROM "+table); sqlstate(err) != "42P01" {
				t.Errorf("after DROP TABLE: %v, want 42P01", err)
			}
		})
	}
}

// TestStatementTimeoutSetInString: a SET statement_timeout in a query string counts for
// the string's later statements, also for pgshard's own waits, as in PostgreSQL; the
// failed string's implicit transaction takes the SET back with it.
func TestStatementTimeoutSetInString(t *testing.T) {
	run := func(holder, waiter *pgx.Conn, table string) []poolWaitOutcome {
		mustExec(t, holder, "BEGIN", "UPDATE "+table+" SET v = v + 1 WHERE id = 1")
		got := endWait(t, waiter, "SET statement_timeout = '300ms'; UPDATE "+table+" SET v = v * 2 WHERE id = 1", pgx.QueryExecModeSimpleProtocol, false)
		mustExec(t, holder, "ROLLBACK")
		var setting string
		if err := waiter.QueryRow(context.Background(), "SHOW statement_timeout", pgx.QueryExecModeSimpleProtocol).Scan(&setting); err != nil {
			t.Fatal(err)
		}
		return []poolWaitOutcome{got, {msg: setting}}
	}
	plain := uniqueName("settimeout_plain")
	pa, pb := connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator)
	mustExec(t, pa, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", plain), fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", plain))
	t.Cleanup(func() { pa.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain) })
	want := run(pa, pb, plain)
	if want[0].code != "57014" {
		t.Fatalf("plain PostgreSQL: %v", want)
	}
	table := uniqueName("settimeout")
	a, b := connect(t), connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 1, 2)
	t.Cleanup(func() { a.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	if got := run(a, b, table); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pgshard %v, PostgreSQL %v", got, want)
	}
}

// seeTable runs sql through a connection of its own to url until it succeeds (at most
// 10 s): the proxy behind url then knows the table sql reads, and has pooled connections.
func seeTable(t *testing.T, url, sql string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgx.Connect(context.Background(), url)
		if err == nil {
			_, err = c.Exec(context.Background(), sql, pgx.QueryExecModeSimpleProtocol)
			c.Close(context.Background())
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s through a new proxy: %v", sql, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
