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

	"github.com/pgshard/pgshard/tests/testproxy"
)

// The errors a hostile ordinary user provokes must speak of the client's tables,
// constraints and statements: never of shard tables or shard ids, never of the SQL
// pgshard writes itself (its context lines, its bound parameters, its event triggers),
// and an unauthenticated client must not learn the database the proxy serves. What
// PostgreSQL itself tells the client stays (a unique violation's key, a failing row).

// leakFields is every field of an error a client can read, with its name.
func leakFields(e *pgconn.PgError) map[string]string {
	return map[string]string{
		"Message": e.Message, "Detail": e.Detail, "Hint": e.Hint, "Where": e.Where,
		"SchemaName": e.SchemaName, "TableName": e.TableName, "ColumnName": e.ColumnName,
		"DataTypeName": e.DataTypeName, "ConstraintName": e.ConstraintName,
		"InternalQuery": e.InternalQuery, "Routine": e.Routine,
	}
}

// shardIDs returns the table's shard ids.
func shardIDs(t testing.TB, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id::text FROM pgs_distribution_metadata.shard WHERE relation_id = $1::regclass ORDER BY id", table)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(ids) == 0 {
		t.Fatalf("shards of %s: %v %v", table, ids, err)
	}
	return ids
}

// checkNoLeak fails when a field of e names a shard (a shard id), pgshard's metadata
// schema or a parameter pgshard bound itself.
func checkNoLeak(t testing.TB, what string, e *pgconn.PgError, ids []string) {
	t.Helper()
	for name, v := range leakFields(e) {
		for _, id := range ids {
			if strings.Contains(v, id) {
				t.Errorf("%s: %s names shard %s: %q", what, name, id, v)
			}
		}
		for _, internal := range []string{"pgs_distribution_metadata", "portal parameter", "pgshard_"} {
			if strings.Contains(v, internal) {
				t.Errorf("%s: %s shows pgshard's internals (%s): %q", what, name, internal, v)
			}
		}
	}
	if e.InternalPosition != 0 && e.InternalQuery == "" {
		t.Errorf("%s: internal position %d without an internal query", what, e.InternalPosition)
	}
}

func pgErrorOf(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// TestHostileLeaksPermissionDenied: a role without privileges on alice's table reads and
// writes it and is told, as PostgreSQL tells it, "permission denied for table secret",
// whichever path (one shard, all shards, a gather, COPY, a write) the statement takes.
func TestHostileLeaksPermissionDenied(t *testing.T) {
	ctx := context.Background()
	alice := unprivilegedRole(t, "leak_alice")
	app := unprivilegedRole(t, "leak_app")
	ac := connectAs(t, env.P, alice)
	table := uniqueName("secret")
	distribute(t, ac, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0), u text)", table), table, "id", 4, 2)
	mustExec(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (1, 1, 'a'), (2, 2, 'b')", table))
	ids := shardIDs(t, connect(t), table)
	pc := connectAs(t, env.P, app)
	want := "permission denied for table " + table
	for _, sql := range []string{
		"SELECT * FROM %s WHERE id = 1",
		"SELECT * FROM %s",
		"SELECT count(*) FROM %s",
		"SELECT * FROM %s ORDER BY id LIMIT 1",
		"SELECT * FROM %s s JOIN pg_class c ON c.oid = s.id",
		"INSERT INTO %s VALUES (5, 5, 'e')",
		"INSERT INTO %s VALUES (5, 5, 'e'), (6, 6, 'f'), (7, 7, 'g')",
		"UPDATE %s SET v = 3 WHERE id = 1",
		"UPDATE %s SET v = 3",
		"DELETE FROM %s WHERE id = 1",
		"DELETE FROM %s",
		"COPY %s TO STDOUT",
		"INSERT INTO %[1]s SELECT * FROM %[1]s",
	} {
		q := fmt.Sprintf(sql, table)
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			_, err := pc.Exec(ctx, q, mode)
			pe := pgErrorOf(err)
			if pe == nil {
				t.Errorf("%s (%v): got %v, want %q", q, mode, err, want)
				continue
			}
			if pe.Code != "42501" || pe.Message != want {
				t.Errorf("%s (%v): got %s %q, want 42501 %q", q, mode, pe.Code, pe.Message, want)
			}
			checkNoLeak(t, q, pe, ids)
		}
	}
}

// TestHostileLeaksErrorsAsPostgreSQL runs statements that fail on a shard as the table's
// (unprivileged) owner, through the proxy and against a plain table of the same
// definition on the coordinator, and compares every field a client reads: constraint
// violations keep PostgreSQL's detail (the key, the failing row) and the client's
// constraint names; no field names a shard, pgshard's metadata schema or a parameter
// pgshard bound itself.
func TestHostileLeaksErrorsAsPostgreSQL(t *testing.T) {
	ctx := context.Background()
	alice := unprivilegedRole(t, "leak_owner")
	ac := connectAs(t, env.P, alice)
	table := uniqueName("secret")
	ddl := fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0), u text,
		CONSTRAINT %[1]s_u_key UNIQUE (u, id))`, table)
	distribute(t, ac, ddl, table, "id", 4, 2)
	ids := shardIDs(t, connect(t), table)
	// The plain table: alice's, in a schema of its own on the coordinator.
	schema := uniqueName("plain")
	if _, err := env.C.Coordinator.Exec(ctx, "postgres", fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION %s", schema, alice)); err != nil {
		t.Fatal(err)
	}
	plain, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol&search_path=%s", alice, env.C.Coordinator.Addr(), schema))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	setup := fmt.Sprintf("INSERT INTO %s VALUES (1, 1, 'a'), (2, 2, 'b')", table)
	mustExec(t, plain, ddl, setup)
	mustExec(t, ac, setup)

	for _, sql := range []string{
		"INSERT INTO %s VALUES (1, 5, 'z')",                     // unique violation: Key (id)=(1)
		"INSERT INTO %s VALUES (3, 5, 'a'), (1, 5, 'a')",        // unique, multi-row
		"INSERT INTO %s VALUES (3, -1, 'c')",                    // check
		"INSERT INTO %s VALUES (4, NULL, 'd')",                  // not null
		"UPDATE %s SET v = v - 10 WHERE id = 2",                 // check, by UPDATE
		"UPDATE %s SET v = v - 10",                              // check, every shard
		"SELECT 1/(v-v) FROM %s WHERE id = 1",                   // division by zero in a shard
		"SELECT 1/(v-v) FROM %s",                                // ... in every shard
		"SELECT sum(1/(v-v)) FROM %s",                           // ... under an aggregate
		"SELECT * FROM %s WHERE id = 'x'",                       // a key literal pgshard binds itself
		"SELECT * FROM %s WHERE id = 1 AND v = 'x'",             // a literal in a shard
		"SELECT * FROM %s WHERE id = 1 AND",                     // syntax error (position)
		"SELECT * FROM %s WHERE id = 1 AND nosuch = 1",          // unknown column (position)
		"SELECT string_agg(u, ',')::int FROM %s",                // in the merge on the coordinator
		"SELECT (v::text || 'x')::int FROM %s WHERE id = 2",     // cast on a shard
		"UPDATE %s SET v = (u || 'z')::int WHERE id = 1",        // in a write
		"INSERT INTO %s SELECT id + 100, v - 100, u FROM %[1]s", // INSERT ... SELECT
	} {
		q := strings.ReplaceAll(sql, "%[1]s", table)
		if strings.Contains(q, "%s") {
			q = fmt.Sprintf(q, table)
		}
		want := pgErrorOf(execError2(ctx, plain, q, pgx.QueryExecModeSimpleProtocol))
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			got := pgErrorOf(execError2(ctx, ac, q, mode))
			if want == nil || got == nil {
				t.Errorf("%s (%v): PostgreSQL error %v, pgshard error %v", q, mode, want, got)
				continue
			}
			checkNoLeak(t, q, got, ids)
			// A position is one in the client's statement, as PostgreSQL's: never one
			// in the text pgshard sent.
			if got.Position != 0 && got.Position != want.Position {
				t.Errorf("%s (%v): position %d, PostgreSQL's %d", q, mode, got.Position, want.Position)
			}
			if w, g := describeAll(want), describeAll(got); w != g {
				t.Errorf("%s (%v):\nPostgreSQL: %s\npgshard:    %s", q, mode, w, g)
			}
		}
	}
}

func execError2(ctx context.Context, conn *pgx.Conn, sql string, mode pgx.QueryExecMode) error {
	_, err := conn.Exec(ctx, sql, mode)
	return err
}

// describeAll lists the fields a client reads that must match PostgreSQL's (the schema
// name aside: the plain table lives in a schema of its own; positions only where
// PostgreSQL gives one for the client's statement).
func describeAll(e *pgconn.PgError) string {
	return strings.Join([]string{e.Severity, e.Code, e.Message, e.Detail, e.Hint, e.Where, e.TableName,
		e.ColumnName, e.ConstraintName, e.DataTypeName, e.InternalQuery, fmt.Sprint(e.InternalPosition)}, " | ")
}

// TestHostileLeaksEventTriggerContext: DDL that pgshard's event trigger refuses (a view
// over a distributed table, created where the proxy cannot see it) fails with the
// trigger's message, but the context shows the client's own code only, not the body of
// the metadata schema's functions.
func TestHostileLeaksEventTriggerContext(t *testing.T) {
	ctx := context.Background()
	alice := unprivilegedRole(t, "leak_ddl")
	ac := connectAs(t, env.P, alice)
	table := uniqueName("secret")
	distribute(t, ac, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 2, 1)
	ids := shardIDs(t, connect(t), table)
	view := uniqueName("v")
	// The table's name is put together at run time: only the coordinator's event
	// trigger sees what the view reads.
	q := fmt.Sprintf(`DO $$ BEGIN EXECUTE 'CREATE VIEW %s AS SELECT * FROM ' || '%s' || '%s'; END $$`, view, table[:3], table[3:])
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		pe := pgErrorOf(execError2(ctx, ac, q, mode))
		if pe == nil || pe.Code != "0A000" {
			t.Fatalf("%s: got %v, want pgshard's refusal (0A000)", q, pe)
		}
		checkNoLeak(t, q, pe, ids)
		if !strings.HasPrefix(pe.Where, "SQL statement \"CREATE VIEW") || !strings.Contains(pe.Where, "inline_code_block") {
			t.Errorf("context %q, want the client's own statement and DO block only", pe.Where)
		}
	}
}

// TestHostileLeaksLockTimeout: a write that waits too long for another transaction's
// write lock hears PostgreSQL's lock timeout, naming no shard.
func TestHostileLeaksLockTimeout(t *testing.T) {
	ctx := context.Background()
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	alice := unprivilegedRole(t, "leak_lock")
	ac := connectAs(t, p, alice)
	table := uniqueName("secret")
	distribute(t, ac, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 2, 2)
	ids := shardIDs(t, connect(t), table)
	mustExec(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	holder := connectAs(t, p, alice)
	mustExec(t, holder, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", table))
	mustExec(t, ac, "SET lock_timeout = '500ms'")
	pe := pgErrorOf(execError2(ctx, ac, fmt.Sprintf("UPDATE %s SET v = v * 2 WHERE id = 1", table), pgx.QueryExecModeSimpleProtocol))
	if pe == nil || pe.Code != "55P03" {
		t.Fatalf("got %v, want a lock timeout (55P03)", pe)
	}
	checkNoLeak(t, "lock timeout", pe, ids)
	if want := "canceling statement due to lock timeout"; pe.Message != want {
		t.Errorf("message %q, want %q", pe.Message, want)
	}
	mustExec(t, ac, "RESET lock_timeout")
	mustExec(t, holder, "ROLLBACK")

	// Row locks taken on a shard: PostgreSQL's own lock errors, in the table's name.
	mustExec(t, holder, "BEGIN", fmt.Sprintf("SELECT * FROM %s WHERE id = 1 FOR UPDATE", table))
	pe = pgErrorOf(execError2(ctx, ac, fmt.Sprintf("SELECT * FROM %s WHERE id = 1 FOR UPDATE NOWAIT", table), pgx.QueryExecModeSimpleProtocol))
	if pe == nil || pe.Code != "55P03" {
		t.Fatalf("NOWAIT: got %v, want 55P03", pe)
	}
	checkNoLeak(t, "NOWAIT", pe, ids)
	if want := fmt.Sprintf(`could not obtain lock on row in relation "%s"`, table); pe.Message != want {
		t.Errorf("NOWAIT: message %q, want %q", pe.Message, want)
	}
	mustExec(t, ac, "SET lock_timeout = '200ms'")
	pe = pgErrorOf(execError2(ctx, ac, fmt.Sprintf("SELECT * FROM %s WHERE id = 1 FOR UPDATE", table), pgx.QueryExecModeSimpleProtocol))
	if pe == nil || pe.Code != "55P03" {
		t.Fatalf("lock_timeout: got %v, want 55P03", pe)
	}
	checkNoLeak(t, "lock_timeout", pe, ids)
	if want := fmt.Sprintf(`while locking tuple (0,1) in relation "%s"`, table); pe.Where != want {
		t.Errorf("lock_timeout: context %q, want %q", pe.Where, want)
	}
}

// TestHostileLeaksStartupDatabaseName: a client that names another database is told, as
// by PostgreSQL, that it does not exist, and learns nothing of the database pgshard
// serves.
func TestHostileLeaksStartupDatabaseName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	role := unprivilegedRole(t, "leak_db")
	for _, db := range []string{"guess", "postgres2"} {
		_, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", role, env.P.Addr, db))
		pe := pgErrorOf(err)
		if pe == nil {
			t.Fatalf("connect to database %s: %v, want an error", db, err)
		}
		want := fmt.Sprintf(`database "%s" does not exist`, db)
		if pe.Severity != "FATAL" || pe.Code != "3D000" || pe.Message != want || pe.Detail != "" || pe.Hint != "" {
			t.Errorf("database %s: got %s %s %q detail %q hint %q, want FATAL 3D000 %q alone (as PostgreSQL)", db, pe.Severity, pe.Code, pe.Message, pe.Detail, pe.Hint, want)
		}
	}
	// A role that may not log in hears of the role, not of the database.
	_, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s/guess?sslmode=disable", uniqueName("nosuchrole"), env.P.Addr))
	if pe := pgErrorOf(err); pe == nil || pe.Code != "28000" {
		t.Errorf("unknown role, unknown database: got %v, want 28000 (the role is checked first, as by PostgreSQL)", err)
	}
}

// TestHostileLeaksNotices: notices raised on a shard by the client's own function speak
// of the table, whether the function quotes the relation's name or not.
func TestHostileLeaksNotices(t *testing.T) {
	ctx := context.Background()
	alice := unprivilegedRole(t, "leak_notice")
	table := uniqueName("secret")
	fn := uniqueName("note")
	def := fmt.Sprintf(`CREATE FUNCTION %s(rel regclass) RETURNS bool LANGUAGE plpgsql AS
		$$ BEGIN RAISE NOTICE 'row of %%', rel USING HINT = format('see %%I', rel::text); RETURN true; END $$`, fn)
	for _, w := range env.C.Workers {
		if _, err := w.Exec(ctx, "postgres", def); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", alice, env.P.Addr))
	if err != nil {
		t.Fatal(err)
	}
	var notices []*pgconn.Notice
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n) }
	ac, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close(ctx)
	mustExec(t, ac, def)
	distribute(t, ac, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 2, 1)
	ids := shardIDs(t, connect(t), table)
	mustExec(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", table))
	mustExec(t, ac, fmt.Sprintf("SELECT * FROM %[1]s WHERE id = 1 AND %[2]s(tableoid)", table, fn),
		fmt.Sprintf("SELECT * FROM %[1]s WHERE %[2]s(tableoid)", table, fn))
	if len(notices) != 3 {
		t.Fatalf("%d notices, want 3", len(notices))
	}
	for _, n := range notices {
		pe := (*pgconn.PgError)(n)
		checkNoLeak(t, "notice", pe, ids)
		if n.Message != "row of "+table || n.Hint != "see "+table {
			t.Errorf("notice %q hint %q, want %q and %q", n.Message, n.Hint, "row of "+table, "see "+table)
		}
	}
}

// TestHostileLeaksUnreachableShard: a read of rows whose placements are all inactive
// fails naming the table for an ordinary user (the shard id, which only an administrator
// can act on, is for superusers).
func TestHostileLeaksUnreachableShard(t *testing.T) {
	ctx := context.Background()
	alice := unprivilegedRole(t, "leak_down")
	ac := connectAs(t, env.P, alice)
	table := uniqueName("secret")
	distribute(t, ac, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", table), table, "id", 2, 1)
	mustExec(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	su := connect(t)
	ids := shardIDs(t, su, table)
	mark := func(state int) {
		if _, err := env.C.Coordinator.Exec(ctx, "postgres", fmt.Sprintf(
			"UPDATE pgs_distribution_metadata.shard_placement SET shard_state = %d WHERE shard_id IN (%s)", state, strings.Join(ids, ", "))); err != nil {
			t.Fatal(err)
		}
	}
	mark(3)
	defer mark(1)
	q := fmt.Sprintf("SELECT v FROM %s WHERE id = 1", table)
	var pe *pgconn.PgError
	for start := time.Now(); time.Since(start) < 5*time.Second && pe == nil; time.Sleep(20 * time.Millisecond) {
		pe = pgErrorOf(execError2(ctx, ac, q, pgx.QueryExecModeSimpleProtocol))
	}
	if pe == nil {
		t.Fatal("read of a table without finalized placements succeeded")
	}
	checkNoLeak(t, "unreachable", pe, ids)
	if !strings.Contains(pe.Detail, `"`+table+`"`) {
		t.Errorf("detail %q does not name table %s", pe.Detail, table)
	}
	// A superuser hears of the shard too.
	if pe := pgErrorOf(execError2(ctx, su, q, pgx.QueryExecModeSimpleProtocol)); pe == nil || !strings.Contains(pe.Detail, "(shard ") {
		t.Errorf("superuser: got %v, want the shard named", pe)
	}
}
