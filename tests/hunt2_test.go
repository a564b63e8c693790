package tests

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Hostile tests of issue 13's guards (triggers, row-level security, foreign keys, the
// coordinator's event triggers), compared with plain PostgreSQL.

// TestHunt2DirectDropFunctionCascadeDropsCheck: the owner of a distributed table, on a
// direct connection to the coordinator, drops the function a CHECK constraint of the
// table calls WITH CASCADE. PostgreSQL drops the constraint with it; on the coordinator
// alone that is drift (the shards keep the CHECK), which the event triggers must refuse,
// as they refuse the same cascade dropping a trigger.
func TestHunt2DirectDropFunctionCascadeDropsCheck(t *testing.T) {
	ctx := context.Background()
	owner := unprivilegedRole(t, "h2dfc")
	table, fn := uniqueName("h2dfc"), uniqueName("h2dfc_chk")
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(ctx, "postgres", fmt.Sprintf(`CREATE FUNCTION %s(int) RETURNS bool LANGUAGE sql IMMUTABLE AS $$ SELECT $1 > 0 $$; ALTER FUNCTION %[1]s(int) OWNER TO %s`, fn, owner)); err != nil {
			t.Fatal(err)
		}
	}
	oc := connectAs(t, env.P, owner)
	t.Cleanup(func() { oc.Exec(ctx, "DROP TABLE IF EXISTS "+table) })
	distribute(t, oc, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text, CONSTRAINT positive CHECK (%s(id)))", table, fn), table, "id", 2, 2)
	coord := connectServerAs(t, env.C.Coordinator, owner)
	wantError(t, coord, fmt.Sprintf("DROP FUNCTION %s(int) CASCADE", fn), "0A000", "")
	if rows := showDrift(t, connect(t), table); len(rows) != 0 {
		t.Fatalf("SHOW DRIFT after the refused drop: %v", rows)
	}
	// Through pgshard the same statement is refused too (pgshard does not propagate a
	// function's drop), never a coordinator-only change.
	if _, err := oc.Exec(ctx, fmt.Sprintf("DROP FUNCTION %s(int) CASCADE", fn)); err == nil {
		if rows := showDrift(t, connect(t), table); len(rows) != 0 {
			t.Fatalf("SHOW DRIFT after DROP FUNCTION ... CASCADE through pgshard: %v", rows)
		}
	}
	// A direct ALTER TABLE ... DROP CONSTRAINT stays refused, as before.
	wantError(t, coord, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT positive", table), "0A000", "")
}

// TestHunt2CustomSettingPolicy: the usual multi-tenant policy reads a custom setting
// (current_setting('app.tenant', true)) that the application SETs for its session.
// PostgreSQL does not list custom (placeholder) settings in pg_settings, where pgshard
// read a session's settings back from, so the shards never got the session-level SET
// (SET LOCAL, replayed, did): the distributed table showed no rows where the plain table
// showed the tenant's. Two sessions of one role with different tenants see their own.
func TestHunt2CustomSettingPolicy(t *testing.T) {
	owner := unprivilegedRole(t, "h2cso")
	app := unprivilegedRole(t, "h2csa")
	table, plain := uniqueName("h2cs"), uniqueName("h2cs_plain")
	oc := connectAs(t, env.P, owner)
	t.Cleanup(func() {
		oc.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
		oc.Exec(context.Background(), "DROP TABLE IF EXISTS "+plain)
	})
	def := "(id int PRIMARY KEY, tenant text)"
	distribute(t, oc, "CREATE TABLE "+table+" "+def, table, "id", 4, 2)
	mustExec(t, oc, "CREATE TABLE "+plain+" "+def)
	for _, tb := range []string{table, plain} {
		mustExec(t, oc, fmt.Sprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s", tb, app),
			fmt.Sprintf("INSERT INTO %s SELECT i, CASE WHEN i %% 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 10) i", tb),
			fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY", tb),
			fmt.Sprintf("CREATE POLICY tenant ON %s USING (tenant = current_setting('app.tenant', true))", tb))
	}
	a1, a2 := connectAs(t, env.P, app), connectAs(t, env.P, app)
	q := "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM %s"
	same := func(conn *pgx.Conn, when, want string) {
		t.Helper()
		got, pl := queryString(t, conn, fmt.Sprintf(q, table)), queryString(t, conn, fmt.Sprintf(q, plain))
		if got != pl || pl != want {
			t.Fatalf("%s: %q through pgshard, %q on plain PostgreSQL, want %q", when, got, pl, want)
		}
	}
	same(a1, "no tenant set", "")
	mustExec(t, a1, "SET app.tenant = 'a'")
	mustExec(t, a2, "SET app.tenant TO 'b'")
	same(a1, "SET app.tenant = 'a'", "2,4,6,8,10")
	same(a2, "SET app.tenant = 'b' in another session", "1,3,5,7,9")
	same(a1, "the first session again", "2,4,6,8,10")
	mustExec(t, a1, "BEGIN", "SET LOCAL app.tenant = 'b'")
	same(a1, "SET LOCAL", "1,3,5,7,9")
	mustExec(t, a1, "COMMIT")
	same(a1, "after the block", "2,4,6,8,10")
	mustExec(t, a2, "SELECT set_config('app.tenant', 'a', false)")
	same(a2, "set_config", "2,4,6,8,10")
	mustExec(t, a2, "RESET app.tenant")
	same(a2, "RESET", "")
	// A new session of the role, on pooled worker connections the others used, has no
	// tenant.
	same(connectAs(t, env.P, app), "a new session", "")
	// Writes follow the same policy.
	mustExec(t, a1, fmt.Sprintf("UPDATE %s SET tenant = tenant", table))
	if n := queryString(t, a1, fmt.Sprintf("WITH u AS (UPDATE %s SET tenant = tenant RETURNING 1) SELECT count(*)::text FROM u", plain)); n != "5" {
		t.Fatalf("plain UPDATE touched %s rows", n)
	}
	wantError(t, a1, fmt.Sprintf("INSERT INTO %s VALUES (100, 'b')", table), "42501", "")
}

// TestHunt2SizeFunctionInFrom: PostgreSQL accepts a size function in FROM (SELECT * FROM
// pg_table_size('t')). pgshard put the computed size, a literal, in place of the call
// and sent the coordinator "SELECT * FROM '65536'": the client got 42601 syntax error at
// or near "'65536'", text it never wrote. pgshard refuses the form with 0A000 instead,
// and keeps answering it in the select list.
func TestHunt2SizeFunctionInFrom(t *testing.T) {
	conn := connect(t)
	table := uniqueName("h2sf")
	t.Cleanup(func() { connect(t).Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	distribute(t, conn, "CREATE TABLE "+table+" (id int PRIMARY KEY, v text)", table, "id", 2, 2)
	mustExec(t, conn, "INSERT INTO "+table+" SELECT i, 'x' FROM generate_series(1, 50) i")
	for _, q := range []string{
		"SELECT * FROM pgshard_table_size('%s')",
		"SELECT s FROM citus_total_relation_size('%s') AS s",
		"SELECT x FROM pgshard_estimated_rows('%s') s(x)",
	} {
		wantError(t, conn, fmt.Sprintf(q, table), "0A000", "")
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT (pgshard_table_size('%s') > 0)::text FROM generate_series(1, 2) LIMIT 1", table)); got != "true" {
		t.Fatalf("size in the select list: %s", got)
	}
}
