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
)

// Issue 13, "No drift, by any route": DDL that reaches the coordinator's table of a
// distributed table without pgshard propagating it (a DO block or function sent through
// pgshard, a direct connection to the coordinator, a schema dropped or renamed) is refused
// by the coordinator's event triggers, pgshard's own DDL still runs, no client can forge
// pgshard's authorization, and SHOW DRIFT reports what differs between a table and its
// placements.

// dynamic returns a PL/pgSQL expression that evaluates to sql without naming any word of it
// (pgshard refuses DO blocks and functions whose body names a distributed table): the text
// reversed, reversed back at run time.
func dynamic(sql string) string {
	r := []rune(sql)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return "pg_catalog.reverse('" + strings.ReplaceAll(string(r), "'", "''") + "')"
}

// doBlock wraps sql in a DO block that runs it with EXECUTE, its text hidden (dynamic).
func doBlock(sql string) string {
	return "DO $$ BEGIN EXECUTE " + dynamic(sql) + "; END $$"
}

// wantRefused runs sql on conn and checks that it fails with 0A000 (and, when msg is not
// empty, a message containing msg).
func wantRefused(t *testing.T, conn *pgx.Conn, what, sql, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, sql)
	wantSQLState(t, what+": "+sql, err, "0A000", msg)
}

// onAllServers runs sql on the coordinator and every worker (schemas, roles).
func onAllServers(t *testing.T, sql string) {
	t.Helper()
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", sql); err != nil {
			t.Fatalf("%s on %s: %v", sql, s.Name, err)
		}
	}
}

// coordColumns lists the coordinator's columns of table.
func coordColumns(t *testing.T, table string) string {
	t.Helper()
	return queryString(t, connectServer(t, env.C.Coordinator), `SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, table)
}

func TestDriftGuardRefusesBypass(t *testing.T) {
	proxy := connect(t)
	coord := connectServer(t, env.C.Coordinator)
	schema := uniqueName("drs")
	onAllServers(t, "CREATE SCHEMA "+schema)
	tbl := uniqueName("drift")
	qtbl := schema + "." + tbl
	ix := tbl + "_v"
	mustExec(t, proxy, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", qtbl),
		fmt.Sprintf("CREATE INDEX %s ON %s (v)", ix, qtbl),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", qtbl),
		fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", qtbl),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 10), (2, 20), (3, 30)", qtbl))
	mustExec(t, coord, "CREATE OR REPLACE FUNCTION public.drift_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
	app := unprivilegedRole(t, "drapp")

	const msg = "must run through pgshard"
	bypass := []struct{ what, sql, msg string }{
		{"ALTER TABLE ADD COLUMN", fmt.Sprintf("ALTER TABLE %s ADD COLUMN x int", qtbl), msg},
		{"ALTER TABLE ALTER TYPE", fmt.Sprintf("ALTER TABLE %s ALTER COLUMN v TYPE bigint", qtbl), msg},
		{"ALTER TABLE SET NOT NULL", fmt.Sprintf("ALTER TABLE %s ALTER COLUMN v SET NOT NULL", qtbl), msg},
		{"ALTER TABLE ADD CONSTRAINT", fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s_c CHECK (v > 0)", qtbl, tbl), msg},
		{"ALTER TABLE RENAME", fmt.Sprintf("ALTER TABLE %s RENAME TO %s_x", qtbl, tbl), msg},
		{"ALTER TABLE RENAME COLUMN", fmt.Sprintf("ALTER TABLE %s RENAME COLUMN v TO w", qtbl), msg},
		{"ALTER TABLE SET SCHEMA", fmt.Sprintf("ALTER TABLE %s SET SCHEMA public", qtbl), msg},
		{"ALTER TABLE OWNER", fmt.Sprintf("ALTER TABLE %s OWNER TO %s", qtbl, app), msg},
		{"CREATE INDEX", fmt.Sprintf("CREATE INDEX ON %s (id, v)", qtbl), msg},
		{"DROP INDEX", fmt.Sprintf("DROP INDEX %s.%s", schema, ix), msg},
		{"ALTER INDEX RENAME", fmt.Sprintf("ALTER INDEX %s.%s RENAME TO %s_y", schema, ix, ix), msg},
		{"ALTER SCHEMA RENAME", fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s_2", schema, schema), msg},
		{"DROP SCHEMA CASCADE", fmt.Sprintf("DROP SCHEMA %s CASCADE", schema), msg},
		{"DROP TABLE", fmt.Sprintf("DROP TABLE %s", qtbl), msg},
		{"CREATE TRIGGER", fmt.Sprintf("CREATE TRIGGER %s_t BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.drift_trg()", tbl, qtbl), msg},
		// pgshard's older trigger names the policy as an object over the prototype.
		{"CREATE POLICY", fmt.Sprintf("CREATE POLICY %s_p ON %s USING (true)", tbl, qtbl), ""},
	}
	// Forms pgshard applies to every placement itself (tests/ddlprop_test.go): as a
	// statement of their own through pgshard they succeed, and are not tried here.
	propagated := map[string]bool{"ALTER TABLE ADD COLUMN": true, "ALTER TABLE ALTER TYPE": true, "ALTER TABLE SET NOT NULL": true,
		"ALTER TABLE ADD CONSTRAINT": true, "ALTER TABLE RENAME": true, "ALTER TABLE RENAME COLUMN": true,
		"CREATE INDEX": true, "DROP INDEX": true, "ALTER INDEX RENAME": true, "ALTER TABLE SET SCHEMA": true, "ALTER TABLE OWNER": true,
		// tests/ddlschema_test.go, tests/ddltrigger_test.go
		"ALTER SCHEMA RENAME": true, "DROP SCHEMA CASCADE": true, "CREATE TRIGGER": true, "CREATE POLICY": true}
	for _, b := range bypass {
		// As a statement of its own through pgshard: refused (by pgshard, or by the
		// coordinator where pgshard passes it on), except pgshard's own DROP TABLE.
		if b.what != "DROP TABLE" && !propagated[b.what] {
			wantRefused(t, proxy, "through pgshard", b.sql, "")
		}
		// A DO block through pgshard: the coordinator runs it.
		wantRefused(t, proxy, "through pgshard in a DO block", doBlock(b.sql), b.msg)
		// A direct connection to the coordinator, as a statement and in a DO block.
		wantRefused(t, coord, "on the coordinator", b.sql, b.msg)
		wantRefused(t, coord, "on the coordinator in a DO block", doBlock(b.sql), b.msg)
		// Inside a transaction block, in a savepoint's subtransaction.
		tx, err := coord.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, tx.Conn(), "SAVEPOINT s")
		_, err = tx.Exec(context.Background(), b.sql)
		wantSQLState(t, "on the coordinator in a block: "+b.sql, err, "0A000", b.msg)
		tx.Rollback(context.Background())
	}
	// CONCURRENTLY, which runs in transactions of its own (so only on a direct connection):
	// refused before it starts, so that no invalid index is left behind.
	wantRefused(t, coord, "on the coordinator", fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_c ON %s (id)", tbl, qtbl), msg)
	wantRefused(t, coord, "on the coordinator", fmt.Sprintf("DROP INDEX CONCURRENTLY %s.%s", schema, ix), msg)
	if n := queryString(t, coord, "SELECT count(*)::text FROM pg_index WHERE indrelid = $1::regclass AND indisvalid AND indisready", qtbl); n != "2" {
		t.Errorf("valid indexes after CONCURRENTLY: %s, want 2", n)
	}
	// The route of the issue: a column added in a DO block broke every read.
	if got := coordColumns(t, qtbl); got != "id,v" {
		t.Errorf("coordinator's columns after the refused DDL: %s, want id,v", got)
	}
	if n := queryString(t, coord, "SELECT count(*)::text FROM pg_indexes WHERE schemaname = $1 AND indexname = $2", schema, ix); n != "1" {
		t.Errorf("index %s on the coordinator: %s, want 1", ix, n)
	}
	ext, err := pgx.Connect(context.Background(), env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(context.Background())
	var ids []int32
	rows, err := ext.Query(context.Background(), fmt.Sprintf("SELECT * FROM %s ORDER BY id LIMIT 2", qtbl))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, v int32
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if rows.Err() != nil || fmt.Sprint(ids) != "[1 2]" {
		t.Errorf("SELECT * ORDER BY id LIMIT 2 after the refused DDL: %v %v", ids, rows.Err())
	}
	if n := queryString(t, coord, "SELECT count(*)::text FROM pgs_distribution_metadata.partition WHERE relation_id = $1::regclass", qtbl); n != "1" {
		t.Errorf("partition rows after the refused drops: %s", n)
	}

	// DDL on other tables, and comments on distributed ones, are not pgshard's business.
	local := uniqueName("drloc")
	mustExec(t, coord, fmt.Sprintf("CREATE TABLE %s (id int)", local),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN v int", local),
		fmt.Sprintf("CREATE INDEX ON %s (v)", local),
		fmt.Sprintf("COMMENT ON TABLE %s IS 'orders'", qtbl),
		fmt.Sprintf("DROP TABLE %s", local))
	mustExec(t, proxy, doBlock(fmt.Sprintf("CREATE TABLE %s (id int)", local)), doBlock(fmt.Sprintf("DROP TABLE %s", local)))
}

// pgshard's own DDL on distributed tables passes the guard: distributing (which adds
// triggers to the prototype), TRUNCATE, DROP TABLE, also for an ordinary role and with a
// REPEATABLE READ default.
func TestDriftGuardOwnDDL(t *testing.T) {
	coord := connectServer(t, env.C.Coordinator)
	app := unprivilegedRole(t, "drown")
	for _, c := range []struct {
		name string
		conn *pgx.Conn
	}{{"superuser", connect(t)}, {"ordinary role", connectAs(t, env.P, app)}} {
		tbl := uniqueName("drown")
		distribute(t, c.conn, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text)", tbl), tbl, "id", 4, 2)
		mustExec(t, c.conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 'a'), (2, 'b')", tbl),
			fmt.Sprintf("TRUNCATE %s", tbl),
			fmt.Sprintf("INSERT INTO %s VALUES (3, 'c')", tbl),
			"SET default_transaction_isolation = 'repeatable read'")
		if n := queryString(t, c.conn, "SELECT count(*)::text FROM "+tbl); n != "1" {
			t.Errorf("%s: %s rows after TRUNCATE and INSERT, want 1", c.name, n)
		}
		ids := tableShardIDs(t, tbl)
		mustExec(t, c.conn, "DROP TABLE "+tbl, "RESET default_transaction_isolation")
		if n := queryString(t, coord, "SELECT count(*)::text FROM pgs_distribution_metadata.shard WHERE id = ANY($1)", ids); n != "0" {
			t.Errorf("%s: shard rows after DROP TABLE: %s", c.name, n)
		}
		left := 0
		for _, id := range ids {
			left += workerTables(t, fmt.Sprintf("%s_%d", tbl, id))
		}
		if left != 0 {
			t.Errorf("%s: %d shard tables after DROP TABLE", c.name, left)
		}
	}
	// The authorizations of ended transactions do not pile up.
	if n := queryString(t, coord, `SELECT count(*)::text FROM pgs_distribution_metadata.ddl_authorization
		WHERE txid < txid_snapshot_xmin(txid_current_snapshot())`); n != "0" && n != "1" {
		t.Errorf("%s authorizations of ended transactions left", n)
	}
}

// A client cannot pass for pgshard: the authorization table and functions are not its, a
// setting does not stand for them, and the table's owner gets no further on the
// coordinator than anyone.
func TestDriftGuardNotForgeable(t *testing.T) {
	ctx := context.Background()
	app := unprivilegedRole(t, "drforge")
	pc := connectAs(t, env.P, app)
	tbl := uniqueName("drforge")
	distribute(t, pc, fmt.Sprintf("CREATE TABLE %s (id int, v int)", tbl), tbl, "id", 2, 2)
	direct := connectServerAs(t, env.C.Coordinator, app)
	mustExec(t, direct, "SET search_path = public")
	// An index made before distributing (pgshard refuses CREATE INDEX on a distributed table).
	tbl2 := uniqueName("drforge")
	ix := tbl2 + "_v"
	distribute(t, pc, fmt.Sprintf("CREATE TABLE %s (id int, v int); CREATE INDEX %s ON %s (v)", tbl2, ix, tbl2), tbl2, "id", 2, 2)

	forge := []struct{ what, sql, code string }{
		{"insert an authorization", fmt.Sprintf("INSERT INTO pgs_distribution_metadata.ddl_authorization VALUES (txid_current(), '%s'::regclass)", tbl), "42501"},
		{"ask for one", fmt.Sprintf("SELECT pgs_distribution_metadata.ddl_authorized('%s'::regclass)", tbl), "42501"},
		{"call the event trigger function", "SELECT pgs_distribution_metadata.refuse_unpropagated_ddl()", "42501"},
	}
	for _, f := range forge {
		tx, err := direct.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, f.sql)
		wantSQLState(t, f.what, err, f.code, "")
		tx.Rollback(ctx)
	}
	// Settings a client may set stand for nothing.
	for _, sql := range []string{
		fmt.Sprintf("SELECT set_config('pgshard.distributed_indexes', '', true); DROP INDEX %s", ix),
		fmt.Sprintf("SET LOCAL pgshard.ddl_authorized = 'on'; ALTER TABLE %s ADD COLUMN x int", tbl),
		fmt.Sprintf("SET LOCAL session_replication_role = replica; ALTER TABLE %s ADD COLUMN x int", tbl),
	} {
		tx, err := direct.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "0A000" && pe.Code != "42501") {
			t.Errorf("%s: %v, want 0A000 or 42501", sql, err)
		}
		tx.Rollback(ctx)
	}
	// Through pgshard, in a REPEATABLE READ block whose snapshot predates anything pgshard
	// could record: still refused.
	tx, err := pc.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, tx.Conn(), "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SELECT txid_current()")
	_, err = tx.Exec(ctx, doBlock(fmt.Sprintf("ALTER TABLE %s ADD COLUMN x int", tbl)))
	wantSQLState(t, "DO block in a REPEATABLE READ block", err, "0A000", "")
	tx.Rollback(ctx)
	// A superuser's DROP OWNED of the owner drops its distributed tables: refused too.
	wantRefused(t, connectServer(t, env.C.Coordinator), "DROP OWNED", "DROP OWNED BY "+app, "must run through pgshard")
	if got := coordColumns(t, tbl); got != "id,v" {
		t.Errorf("columns after the forgery attempts: %s", got)
	}
	if got := coordColumns(t, ix); got != "v" {
		t.Errorf("index %s after the forgery attempts: %s", ix, got)
	}
}

// driftRow is a row of SHOW DRIFT.
type driftRow struct {
	table, node, item string
	shard             int64
	port              int32
	coord, placement  *string
}

func (r driftRow) String() string {
	s := func(p *string) string {
		if p == nil {
			return "NULL"
		}
		return *p
	}
	return fmt.Sprintf("%s %d %s:%d %s [%s] [%s]", r.table, r.shard, r.node, r.port, r.item, s(r.coord), s(r.placement))
}

// showDrift runs SHOW DRIFT over conn (extended protocol unless conn is a simple one).
func showDrift(t *testing.T, conn *pgx.Conn, arg string) []driftRow {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SHOW DRIFT "+arg)
	if err != nil {
		t.Fatalf("SHOW DRIFT %s: %v", arg, err)
	}
	var out []driftRow
	for rows.Next() {
		var r driftRow
		if err := rows.Scan(&r.table, &r.shard, &r.node, &r.port, &r.item, &r.coord, &r.placement); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("SHOW DRIFT %s: %v", arg, err)
	}
	return out
}

func TestShowDrift(t *testing.T) {
	ctx := context.Background()
	proxy := connect(t)
	ext, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	coord := connectServer(t, env.C.Coordinator)
	tbl := uniqueName("drshow")
	mustExec(t, proxy, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, v text NOT NULL DEFAULT 'x', n numeric(10,2),
			at timestamptz DEFAULT now(), CONSTRAINT %[1]s_n CHECK (n >= 0))`, tbl),
		fmt.Sprintf("CREATE INDEX %[1]s_v ON %[1]s (v)", tbl),
		fmt.Sprintf("CREATE UNIQUE INDEX %[1]s_idv ON %[1]s (id, v) WHERE n > 1", tbl),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", tbl),
		fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", tbl),
		fmt.Sprintf("INSERT INTO %s (id, v, n) SELECT g, 'v' || g, g FROM generate_series(1, 40) g", tbl))

	// A clean table: nothing, by either protocol, with or without checksums.
	for _, c := range []*pgx.Conn{proxy, ext} {
		for _, arg := range []string{tbl, "public." + tbl, tbl + " WITH CHECKSUM"} {
			if got := showDrift(t, c, arg); len(got) != 0 {
				t.Errorf("SHOW DRIFT %s of a clean table: %v", arg, got)
			}
		}
	}
	// Columns whose coordinator definition the shards carry differently on purpose
	// (identity and serial defaults are evaluated by pgshard) are no drift either.
	odd := uniqueName("drodd")
	distribute(t, proxy, fmt.Sprintf(`CREATE TABLE %s (id bigint GENERATED ALWAYS AS IDENTITY, s serial, k int NOT NULL,
		name varchar(10) COLLATE "C" DEFAULT 'n', tags text[] DEFAULT '{}', twice int GENERATED ALWAYS AS (k * 2) STORED,
		at timestamptz DEFAULT now(), UNIQUE (k, name), EXCLUDE USING btree (k WITH =))`, odd), odd, "k", 2, 2)
	if got := showDrift(t, proxy, odd+" WITH CHECKSUM"); len(got) != 0 {
		t.Errorf("SHOW DRIFT of a clean table with identity, serial and generated columns: %v", got)
	}

	// Every table at once runs too (other tests' tables may well differ).
	showDrift(t, proxy, "")

	// Differences made on the workers, behind pgshard's back.
	type placement struct {
		shard int64
		port  int
	}
	var places []placement
	rows, err := coord.Query(ctx, `SELECT p.shard_id, p.node_port FROM pgs_distribution_metadata.shard_placement p
		JOIN pgs_distribution_metadata.shard s ON s.id = p.shard_id WHERE s.relation_id = $1::regclass ORDER BY p.shard_id, p.id`, tbl)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p placement
		if err := rows.Scan(&p.shard, &p.port); err != nil {
			t.Fatal(err)
		}
		places = append(places, p)
	}
	if rows.Err() != nil || len(places) != 8 {
		t.Fatalf("placements: %v %v", places, rows.Err())
	}
	on := func(p placement) *pgx.Conn { return connectServer(t, serverFor(p.port)) }
	shard := func(p placement) string { return fmt.Sprintf("%s_%d", tbl, p.shard) }
	a, b := places[0], places[3] // two shards, one placement each
	mustExec(t, on(a), fmt.Sprintf("ALTER TABLE %s ADD COLUMN extra int", shard(a)),
		fmt.Sprintf("ALTER TABLE %s ALTER COLUMN v DROP NOT NULL", shard(a)))
	mustExec(t, on(b), fmt.Sprintf("DROP INDEX %s_v_%d", tbl, b.shard),
		fmt.Sprintf("ALTER TABLE %s ALTER COLUMN n TYPE numeric(12,2)", shard(b)))
	app := unprivilegedRole(t, "drgrant")
	// Straight on the coordinator (through pgshard a GRANT reaches every placement; the
	// guard cannot refuse GRANT, which event triggers do not name the tables of).
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("GRANT SELECT ON %s TO %s", tbl, app))

	got := showDrift(t, ext, tbl)
	var lines []string
	for _, r := range got {
		lines = append(lines, r.String())
	}
	has := func(p placement, item, coordVal, placeVal string) {
		t.Helper()
		for _, r := range got {
			if r.shard == p.shard && int(r.port) == p.port && r.item == item && r.table == "public."+tbl &&
				(coordVal == "*" || (r.coord == nil && coordVal == "NULL") || (r.coord != nil && *r.coord == coordVal)) &&
				(placeVal == "*" || (r.placement == nil && placeVal == "NULL") || (r.placement != nil && *r.placement == placeVal)) {
				return
			}
		}
		t.Errorf("SHOW DRIFT: no row for shard %d on port %d: %s [%s] [%s]; got:\n%s", p.shard, p.port, item, coordVal, placeVal, strings.Join(lines, "\n"))
	}
	has(a, "column extra", "NULL", "5: integer")
	has(a, "column v", "2: text NOT NULL DEFAULT 'x'::text", "2: text DEFAULT 'x'::text")
	has(b, "index "+tbl+"_v", "USING btree (v)", "NULL")
	has(b, "column n", "3: numeric(10,2)", "3: numeric(12,2)")
	// The GRANT reached the coordinator only: every placement differs.
	for _, p := range places {
		has(p, "privileges", "*", "*")
	}
	if want := 4 + len(places); len(got) != want {
		t.Errorf("SHOW DRIFT: %d rows, want %d:\n%s", len(got), want, strings.Join(lines, "\n"))
	}

	// Contents: a row changed on one placement only (and the rows of the placement with an
	// extra column print differently).
	c := places[5]
	mustExec(t, on(c), fmt.Sprintf("UPDATE %s SET v = 'changed' WHERE id = (SELECT min(id) FROM %s)", shard(c), shard(c)))
	var sums []int64
	for _, r := range showDrift(t, proxy, tbl+" WITH CHECKSUM") {
		if strings.HasPrefix(r.item, "contents") {
			sums = append(sums, r.shard)
			if r.coord == nil || r.placement == nil || *r.coord == *r.placement {
				t.Errorf("contents row: %v", r)
			}
		}
	}
	if fmt.Sprint(sums) != fmt.Sprint([]int64{a.shard, c.shard}) {
		t.Errorf("SHOW DRIFT WITH CHECKSUM: contents rows of shards %v, want %v", sums, []int64{a.shard, c.shard})
	}

	// A shard table gone from its worker.
	d := places[7]
	mustExec(t, on(d), "DROP TABLE "+shard(d))
	missing := false
	for _, r := range showDrift(t, proxy, tbl) {
		if r.shard == d.shard && int(r.port) == d.port && r.item == "table" && r.placement != nil && *r.placement == "(missing)" {
			missing = true
		}
	}
	if !missing {
		t.Errorf("SHOW DRIFT: no row for the dropped shard table %s", shard(d))
	}

	// Superusers only; unknown tables are errors.
	_, err = connectAs(t, env.P, app).Exec(ctx, "SHOW DRIFT "+tbl)
	wantSQLState(t, "SHOW DRIFT as an ordinary role", err, "42501", "SHOW DRIFT")
	_, err = proxy.Exec(ctx, "SHOW DRIFT no_such_table_here")
	wantSQLState(t, "SHOW DRIFT of an unknown table", err, "42P01", "")
}
