package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Issue 13: a shard table carries what its coordinator table has that matters to users
// (owner, privileges, comments) and the types its columns need, when it is created and
// when a repair recreates it.

// shardExtrasSQL describes what a table carries besides its columns and indexes,
// independent of its name: owner, table and column privileges (grantee, privilege, grant
// option; not the grantor) and comments on the table and its columns.
const shardExtrasSQL = `
SELECT concat_ws(E'\n',
  'owner ' || pg_get_userbyid(c.relowner),
  'acl ' || coalesce((SELECT string_agg(e, ',' ORDER BY e) FROM (
                        SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END || '=' ||
                               x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END AS e
                        FROM aclexplode(c.relacl) x) y), '<default>'),
  (SELECT string_agg('column ' || a.attname || ' ' || (SELECT string_agg(e, ',' ORDER BY e) FROM (
                        SELECT pg_get_userbyid(x.grantee) || '=' || x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END AS e
                        FROM aclexplode(a.attacl) x) y), E'\n' ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL),
  'comment ' || obj_description(c.oid, 'pg_class'),
  (SELECT string_agg('column comment ' || a.attname || ' ' || col_description(c.oid, a.attnum), E'\n' ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL))
FROM pg_class c WHERE c.oid = $1::regclass`

// checkShardExtras compares every placement's owner, privileges and comments with the
// coordinator's table's.
func checkShardExtras(t *testing.T, table, when string) {
	t.Helper()
	want := queryString(t, connectServer(t, env.C.Coordinator), shardExtrasSQL, table)
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			shard := fmt.Sprintf("%s_%d", table, s.id)
			if got := queryString(t, connectServer(t, serverFor(p.port)), shardExtrasSQL, shard); got != want {
				t.Errorf("%s: %s on port %d:\n%s\nwant (the coordinator's table):\n%s", when, shard, p.port, got, want)
			}
		}
	}
}

// breakAndRepair drops the shard table of the first placement of table's first shard on
// its worker, marks the placement inactive, repairs the shard with REPAIR SHARD and
// checks that every placement is finalized again.
func breakAndRepair(t *testing.T, table string) {
	t.Helper()
	ctx := context.Background()
	sh := shardsOf(t, table)[0]
	victim := sh.places[0]
	mustExec(t, connectServer(t, serverFor(victim.port)), fmt.Sprintf("DROP TABLE %s_%d", table, sh.id))
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf(
		"UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE id = %d", victim.id))
	awaitProxySeesInactive(t, victim.id)
	if _, err := connect(t).Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", sh.id)); err != nil {
		t.Fatalf("REPAIR SHARD %d: %v", sh.id, err)
	}
	if fin, inact, _ := placementStates(t, table); inact != 0 || fin != 2*len(shardsOf(t, table)) {
		t.Fatalf("after the repair: %d finalized, %d inactive placements", fin, inact)
	}
}

// TestShardOwnerGrantsComments: a table with privileges for another role (table and
// column grants), comments and a non-superuser owner is distributed; every placement has
// the coordinator table's owner, privileges and comments, also after a repair recreated
// one; the other role reads and writes through pgshard after the repair without demoting
// anything (the loop of issue 13: a repaired shard without its grants refused the role's
// next write and was marked inactive again).
func TestShardOwnerGrantsComments(t *testing.T) {
	owner := unprivilegedRole(t, "sobjown")
	app := unprivilegedRole(t, "sobjapp")
	reader := unprivilegedRole(t, "sobjread")
	table := uniqueName("sobj_acl")
	oc := connectAs(t, env.P, owner)
	mustExec(t, oc,
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text, n int, secret text)", table),
		fmt.Sprintf("GRANT SELECT, UPDATE, INSERT ON %s TO %s", table, app),
		fmt.Sprintf("GRANT SELECT (id, v) ON %s TO %s", table, reader),
		fmt.Sprintf("REVOKE TRUNCATE ON %s FROM %s", table, owner),
		fmt.Sprintf("COMMENT ON TABLE %s IS 'orders, one row per order'", table),
		fmt.Sprintf("COMMENT ON COLUMN %s.v IS 'the value'", table))
	distribute(t, oc, "SELECT 1", table, "id", 2, 2)
	t.Cleanup(func() { connect(t).Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	checkShardExtras(t, table, "after distribution")

	ac := connectAs(t, env.P, app)
	rc := connectAs(t, env.P, reader)
	for i := 1; i <= 20; i++ {
		mustExec(t, ac, fmt.Sprintf("INSERT INTO %s (id, v, n) VALUES (%d, 'v%d', %d)", table, i, i, i))
	}
	breakAndRepair(t, table)
	checkShardExtras(t, table, "after REPAIR SHARD")

	// The app role's writes reach every placement; none is demoted.
	mustExec(t, ac, fmt.Sprintf("UPDATE %s SET n = n + 1", table),
		fmt.Sprintf("UPDATE %s SET v = 'x' WHERE id = 1", table),
		fmt.Sprintf("INSERT INTO %s (id, v, n) VALUES (100, 'new', 0)", table))
	if n := queryString(t, ac, fmt.Sprintf("SELECT sum(n)::text FROM %s", table)); n != "230" {
		t.Errorf("sum(n) through pgshard as %s: %s, want 230", app, n)
	}
	if fin, inact, _ := placementStates(t, table); inact != 0 || fin != 4 {
		t.Fatalf("after the app role's writes: %d finalized, %d inactive placements", fin, inact)
	}
	if n := checkPlacements(t, table, "hashint4(id)"); n != 21 {
		t.Errorf("%d rows on the placements, want 21", n)
	}
	// The reader's column privileges hold on the shards as on the coordinator.
	// (Not an aggregate: string_agg over several shards fails with 42501 for a role with
	// column privileges only, a limit of the gathering, not of the shards.)
	var got []string
	rows, err := rc.Query(context.Background(), fmt.Sprintf("SELECT v FROM %s WHERE id <= 3 ORDER BY id", table))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil || strings.Join(got, ",") != "x,v2,v3" {
		t.Errorf("reader: %v, %v", got, err)
	}
	for _, q := range []string{"SELECT secret FROM %s", "SELECT * FROM %s", "UPDATE %s SET v = 'y' WHERE id = 2"} {
		wantError(t, rc, fmt.Sprintf(q, table), "42501", "")
	}
	if _, err := ac.Exec(context.Background(), fmt.Sprintf("TRUNCATE %s", table)); err == nil {
		t.Errorf("TRUNCATE by %s, which has no TRUNCATE privilege, succeeded", app)
	}
	if fin, inact, _ := placementStates(t, table); inact != 0 || fin != 4 {
		t.Fatalf("after refused statements: %d finalized, %d inactive placements", fin, inact)
	}
}

// TestShardTypes: a table whose columns are of a user-defined enum (in a schema of its own
// that the workers lack), a domain with a check, a composite type and an array of the enum
// is distributed without creating anything on the workers first: the types are created
// there with the shards. Values of those types go in and come out through pgshard as in
// PostgreSQL; a repair onto a worker whose copies of the types were dropped creates them
// again.
func TestShardTypes(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	schema := uniqueName("sobj_types")
	dom := uniqueName("sobj_posint")
	comp := uniqueName("sobj_pair")
	table := uniqueName("sobj_typed")
	mustExec(t, conn,
		"CREATE SCHEMA "+schema,
		fmt.Sprintf("CREATE TYPE %s.mood AS ENUM ('sad', 'ok', 'happy')", schema),
		fmt.Sprintf("CREATE DOMAIN %s AS int NOT NULL CHECK (VALUE > 0)", dom),
		fmt.Sprintf("CREATE TYPE %s AS (a int, m %s.mood)", comp, schema))
	t.Cleanup(func() {
		for _, s := range env.C.Servers() {
			s.Exec(context.Background(), "postgres", fmt.Sprintf("DROP TABLE IF EXISTS %s; DROP SCHEMA IF EXISTS %s CASCADE; DROP TYPE IF EXISTS %s; DROP DOMAIN IF EXISTS %s", table, schema, comp, dom))
		}
	})
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, m %s.mood DEFAULT 'ok', p %s, c %s, ms %s.mood[])",
		table, schema, dom, comp, schema), table, "id", 1, 2)
	mustExec(t, conn,
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'happy', 5, ROW(1, 'sad'), '{sad,happy}')", table),
		fmt.Sprintf("INSERT INTO %s (id, p, c) VALUES (2, 7, ROW(2, 'ok')::%s)", table, comp),
		fmt.Sprintf("INSERT INTO %s (id, m, p) VALUES (3, 'sad', 1)", table))
	const q = "SELECT string_agg(concat_ws('/', id, m, p, c, ms, (c).m > 'sad'), ' ' ORDER BY m, id) FROM %s WHERE m >= 'sad'"
	want := "3/sad/1 2/ok/7/(2,ok)/t 1/happy/5/(1,sad)/{sad,happy}/f" // enum order: sad < ok < happy
	if got := queryString(t, conn, fmt.Sprintf(q, table)); got != want {
		t.Errorf("%s: %q, want %q", fmt.Sprintf(q, table), got, want)
	}
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (id, p) VALUES (4, 0)", table), "23514", "")
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (id, m, p) VALUES (5, 'angry', 1)", table), "22P02", "")

	// The victim worker loses the shard and its types; the repair creates them again.
	sh := shardsOf(t, table)[0]
	victim := serverFor(sh.places[0].port)
	mustExec(t, connectServer(t, victim), fmt.Sprintf("DROP TABLE %s_%d; DROP SCHEMA %s CASCADE; DROP TYPE %s; DROP DOMAIN %s", table, sh.id, schema, comp, dom))
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf(
		"UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE id = %d", sh.places[0].id))
	awaitProxySeesInactive(t, sh.places[0].id)
	if _, err := conn.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", sh.id)); err != nil {
		t.Fatalf("REPAIR SHARD %d: %v", sh.id, err)
	}
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET m = 'ok', c = ROW(9, 'happy') WHERE id = 3", table))
	if fin, inact, _ := placementStates(t, table); fin != 2 || inact != 0 {
		t.Fatalf("after the repair and a write: %d finalized, %d inactive placements", fin, inact)
	}
	if n := checkPlacements(t, table, "hashint4(id)"); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
	want = "2/ok/7/(2,ok)/t 3/ok/1/(9,happy)/t 1/happy/5/(1,sad)/{sad,happy}/f"
	if got := queryString(t, conn, fmt.Sprintf(q, table)); got != want {
		t.Errorf("after the repair: %q, want %q", got, want)
	}
}

// TestShardCopiesFunction: a table whose CHECK constraint calls a function (in SQL) that
// the workers lack is distributed: master_create_worker_shards creates the function on
// the workers from the coordinator's definition, and the shards enforce the check; a
// repair onto a worker that lost the function creates it again.
func TestShardCopiesFunction(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	fn := uniqueName("sobj_fn")
	table := uniqueName("sobj_fnt")
	mustExec(t, conn, fmt.Sprintf("CREATE FUNCTION public.%s(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 > 0'", fn),
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int CHECK (public.%s(v)))", table, fn))
	distribute(t, conn, "SELECT 1", table, "id", 2, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (2, 0)", table), "23514", "")
	def := queryString(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("SELECT pg_get_functiondef('public.%s(int)'::regprocedure)", fn))
	for _, sh := range shardsOf(t, table) {
		for _, p := range sh.places {
			if got := queryString(t, connectServer(t, serverFor(p.port)), fmt.Sprintf("SELECT pg_get_functiondef('public.%s(int)'::regprocedure)", fn)); got != def {
				t.Fatalf("the function on port %d: %q, want %q", p.port, got, def)
			}
		}
	}

	// A repair onto a worker that lost the function (and the shard with it) creates it.
	sh := shardsOf(t, table)[0]
	victim := sh.places[0]
	vc := connectServer(t, serverFor(victim.port))
	mustExec(t, vc, fmt.Sprintf("DROP FUNCTION public.%s(int) CASCADE", fn))
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf(
		"UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE id = %d", victim.id))
	awaitProxySeesInactive(t, victim.id)
	if _, err := conn.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", sh.id)); err != nil {
		t.Fatalf("REPAIR SHARD: %v", err)
	}
	if got := queryString(t, vc, fmt.Sprintf("SELECT count(*) FROM pg_constraint WHERE conrelid = '%s_%d'::regclass AND contype = 'c'", table, sh.id)); got != "1" {
		t.Fatalf("the repaired shard has %s checks", got)
	}
	checkDefinitions(t, table, false)
}

// TestShardRangeTypeRefused: a column of a range type, which pgshard does not create on
// the workers, makes master_create_worker_shards fail with 0A000 naming the type.
func TestShardRangeTypeRefused(t *testing.T) {
	conn := connect(t)
	typ := uniqueName("sobj_range")
	table := uniqueName("sobj_rt")
	mustExec(t, conn, fmt.Sprintf("CREATE TYPE public.%s AS RANGE (subtype = int8)", typ),
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, r public.%s)", table, typ),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", table))
	t.Cleanup(func() {
		connect(t).Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %s; DROP TYPE IF EXISTS public.%s", table, typ))
	})
	wantError(t, conn, fmt.Sprintf("SELECT master_create_worker_shards('%s', 2, 2)", table), "0A000",
		fmt.Sprintf(`cannot create the shards of %q: unsupported object: column type public.%s of public.%s is a range type, which pgshard does not create on the workers`, table, typ, table))
	if n := len(shardsOf(t, table)); n != 0 {
		t.Errorf("%d shards recorded after a refused creation", n)
	}
}

// awaitProxySeesInactive waits until the proxy's own metadata (SHOW PLACEMENTS, which
// REPAIR SHARD goes by) has placement id inactive after a test marked it on the
// coordinator directly: the proxy reloads on the coordinator's notification.
func awaitProxySeesInactive(t *testing.T, id int64) {
	t.Helper()
	conn := connect(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var state int
		rows, err := conn.Query(context.Background(), "SHOW PLACEMENTS")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(vals[0]) == fmt.Sprint(id) {
				state = int(vals[5].(int32))
			}
		}
		rows.Close()
		if state == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy still has placement %d in state %d 20 s after it was marked inactive on the coordinator", id, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
