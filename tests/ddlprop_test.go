package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// catalogRows writes the rows of a catalog query about relation rel ($1) to b, one line
// each, prefixed with label.
func catalogRows(t testing.TB, conn *pgx.Conn, b *strings.Builder, rel, label, sql string) {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, rel)
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(b, "%s %v\n", label, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", label, err)
	}
}

// tableDef is a relation's definition as the catalog has it, with shard suffixes taken
// out: what every placement must share with the coordinator's table.
func tableDef(t testing.TB, conn *pgx.Conn, rel, suffix string) string {
	t.Helper()
	var b strings.Builder
	q := func(label, sql string) { catalogRows(t, conn, &b, rel, label, sql) }
	q("column", `SELECT attname, format_type(atttypid, atttypmod), atttypmod, attnotnull, attstattarget, attstorage, attgenerated FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`)
	q("default", `SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
		JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
		WHERE d.adrelid = $1::regclass AND d.adbin LIKE '{CONST %' ORDER BY 1`)
	q("generated", `SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
		JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
		WHERE d.adrelid = $1::regclass AND a.attgenerated = 's' ORDER BY 1`)
	q("index", `SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1::regclass ORDER BY 1`)
	q("constraint", `SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = $1::regclass AND contype <> 'f' ORDER BY 1`)
	q("acl", `SELECT coalesce(relacl::text, '') FROM pg_class WHERE oid = $1::regclass`)
	q("comment", `SELECT coalesce(obj_description($1::regclass, 'pg_class'), '')`)
	q("index comment", `SELECT c.relname, obj_description(i.indexrelid, 'pg_class') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = $1::regclass AND obj_description(i.indexrelid, 'pg_class') IS NOT NULL ORDER BY 1`)
	q("constraint comment", `SELECT conname, obj_description(oid, 'pg_constraint') FROM pg_constraint
		WHERE conrelid = $1::regclass AND obj_description(oid, 'pg_constraint') IS NOT NULL ORDER BY 1`)
	q("clustered", `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass AND i.indisclustered`)
	q("colcomment", `SELECT attname, col_description(attrelid, attnum) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND col_description(attrelid, attnum) IS NOT NULL ORDER BY 1`)
	out := b.String()
	if suffix != "" {
		out = strings.ReplaceAll(out, suffix, "")
	}
	return out
}

// checkDefinitions compares every placement's definition (finalized ones, or all with
// all) with the coordinator's table.
func checkDefinitions(t testing.TB, table string, all bool) string {
	t.Helper()
	coord := connectServer(t, env.C.Coordinator)
	want := tableDef(t, coord, table, "")
	conns := map[int]*pgx.Conn{}
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 && !all {
				continue
			}
			c := conns[p.port]
			if c == nil {
				c = connectServer(t, serverFor(p.port))
				conns[p.port] = c
			}
			suffix := fmt.Sprintf("_%d", s.id)
			rel := table + suffix
			if strings.HasSuffix(table, `"`) {
				rel = strings.TrimSuffix(table, `"`) + suffix + `"`
			}
			got := tableDef(t, c, rel, suffix)
			if got != want {
				t.Fatalf("shard %d on port %d differs from the coordinator's table:\n%s\ncoordinator:\n%s", s.id, p.port, got, want)
			}
		}
	}
	return want
}

// TestDDLPropagation runs each supported schema change through pgshard, outside and
// inside transaction blocks, and compares every placement's definition with the
// coordinator's after each; a ROLLBACK leaves every placement as it was; a role granted
// privileges through pgshard can use the table; refused forms get 0A000.
func TestDDLPropagation(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("ddlp")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, id bigint, v int)", table), table, "k", 4, 2)
	for i := 0; i < 40; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d, %d)", table, i, i, i%7))
	}
	checkDefinitions(t, table, false)

	steps := []string{
		"ALTER TABLE %[1]s ADD COLUMN note varchar(20) DEFAULT 'n' NOT NULL CHECK (note <> '')",
		"ALTER TABLE %[1]s ADD COLUMN amount numeric(10,2) DEFAULT 1.5",
		"ALTER TABLE %[1]s ALTER COLUMN v TYPE bigint",
		"ALTER TABLE %[1]s ALTER COLUMN v SET DEFAULT 0, ALTER COLUMN v SET NOT NULL",
		"ALTER TABLE %[1]s ALTER COLUMN amount DROP DEFAULT",
		"ALTER TABLE %[1]s ALTER COLUMN id SET DEFAULT (random() * 1000)::bigint",
		"ALTER TABLE %[1]s ALTER COLUMN v DROP NOT NULL",
		"ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_vpos CHECK (v >= 0)",
		"ALTER TABLE %[1]s ADD CHECK (id >= 0)",
		// PostgreSQL names these in another order than the statement's.
		"ALTER TABLE %[1]s ADD CHECK (v > -5), ADD COLUMN x int CHECK (x > 0), ADD CHECK (id > -1), ADD CHECK (v > -6)",
		"ALTER TABLE %[1]s ADD PRIMARY KEY (k, id)",
		"ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_uq UNIQUE (id, k)",
		"CREATE INDEX ON %[1]s (v)",
		"CREATE INDEX %[1]s_ix ON %[1]s USING btree (note DESC) WHERE v > 2",
		"CREATE UNIQUE INDEX %[1]s_ux ON %[1]s (k, v)",
		"COMMENT ON INDEX %[1]s_ux IS 'an index'",
		"COMMENT ON CONSTRAINT %[1]s_uq ON %[1]s IS 'a unique constraint'",
		"COMMENT ON CONSTRAINT %[1]s_vpos ON %[1]s IS 'a check'",
		"ALTER TABLE %[1]s CLUSTER ON %[1]s_ux",
		"ALTER TABLE %[1]s SET WITHOUT CLUSTER",
		"ALTER TABLE %[1]s CLUSTER ON %[1]s_uq",
		"ALTER INDEX %[1]s_ix RENAME TO %[1]s_ix2",
		"DROP INDEX %[1]s_ux",
		"ALTER TABLE %[1]s RENAME CONSTRAINT %[1]s_vpos TO %[1]s_vnonneg",
		"ALTER TABLE %[1]s RENAME CONSTRAINT %[1]s_uq TO %[1]s_uq2",
		"ALTER TABLE %[1]s DROP CONSTRAINT %[1]s_uq2",
		"ALTER TABLE %[1]s RENAME COLUMN note TO remark",
		"ALTER TABLE %[1]s DROP COLUMN amount",
		"ALTER TABLE %[1]s ADD COLUMN g bigint GENERATED ALWAYS AS (v * 2) STORED",
		"ALTER TABLE %[1]s ALTER COLUMN v SET STATISTICS 200, ALTER COLUMN remark SET STORAGE EXTERNAL",
		"ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_nv CHECK (v < 1000) NOT VALID",
		"ALTER TABLE %[1]s VALIDATE CONSTRAINT %[1]s_nv",
		"ALTER TABLE %[1]s DROP COLUMN g",
		"COMMENT ON TABLE %[1]s IS 'the table'",
		"COMMENT ON COLUMN %[1]s.remark IS 'a remark'",
	}
	for _, s := range steps {
		mustExec(t, conn, fmt.Sprintf(s, table))
		checkDefinitions(t, table, false)
	}

	// A block of several changes, committed.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN flag boolean DEFAULT false", table),
		fmt.Sprintf("UPDATE %s SET flag = true WHERE v = 3", table),
		fmt.Sprintf("CREATE INDEX %[1]s_flag ON %[1]s (flag)", table),
		fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s_vnonneg", table, table),
		"COMMIT")
	def := checkDefinitions(t, table, false)
	if !strings.Contains(def, "flag") {
		t.Fatalf("the committed block's column is missing:\n%s", def)
	}
	var n int
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE flag", table)).Scan(&n); err != nil || n == 0 {
		t.Fatalf("rows flagged in the block: %d, %v", n, err)
	}

	// A block rolled back leaves everything as it was.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN gone int", table),
		fmt.Sprintf("CREATE INDEX %[1]s_gone ON %[1]s (v)", table),
		fmt.Sprintf("ALTER TABLE %s DROP COLUMN remark", table),
		"ROLLBACK")
	if after := checkDefinitions(t, table, false); after != def {
		t.Fatalf("ROLLBACK changed the definition:\n%s\nwas:\n%s", after, def)
	}
	// A failing statement in a block rolls the block's earlier changes back everywhere.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER TABLE %s ADD COLUMN gone2 int", table))
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT never CHECK (v > 100)", table)); err == nil {
		t.Fatalf("a CHECK the rows violate was accepted")
	}
	mustExec(t, conn, "ROLLBACK")
	if after := checkDefinitions(t, table, false); after != def {
		t.Fatalf("a failed block changed the definition:\n%s\nwas:\n%s", after, def)
	}

	// ROLLBACK TO a savepoint undoes the changes after it everywhere.
	mustExec(t, conn, "BEGIN", "SAVEPOINT a",
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN sp int", table),
		"ROLLBACK TO a",
		fmt.Sprintf("COMMENT ON TABLE %s IS 'after the savepoint'", table),
		"COMMIT")
	if after := checkDefinitions(t, table, false); strings.Contains(after, "sp ") || !strings.Contains(after, "after the savepoint") {
		t.Fatalf("ROLLBACK TO a savepoint:\n%s", after)
	}
	// Queries and writes through pgshard see the new definition.
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (k, id, v, remark, flag) VALUES ('new', 1000, 5, 'r', true)", table))
	if s := queryString(t, conn, fmt.Sprintf("SELECT remark || ':' || v FROM %s WHERE k = 'new'", table)); s != "r:5" {
		t.Fatalf("new row: %s", s)
	}
	if s := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s WHERE remark = 'n'", table)); s != "40" {
		t.Fatalf("rows with the added column's default: %s", s)
	}
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (k, id, v) VALUES ('new', 1000, 1)", table), "23505", "")

	// A role granted privileges through pgshard uses the table on every shard.
	role := unprivilegedRole(t, "ddlp_app")
	mustExec(t, conn, fmt.Sprintf("GRANT SELECT, INSERT, UPDATE ON %s TO %s", table, role))
	checkDefinitions(t, table, false)
	app := connectAs(t, env.P, role)
	if s := queryString(t, app, fmt.Sprintf("SELECT count(*)::text FROM %s", table)); s != "41" {
		t.Fatalf("count as %s: %s", role, s)
	}
	mustExec(t, app, fmt.Sprintf("UPDATE %s SET v = 6 WHERE k = 'k1'", table),
		fmt.Sprintf("INSERT INTO %s (k, id) VALUES ('app', 2000)", table))
	wantError(t, app, fmt.Sprintf("DELETE FROM %s", table), "42501", "")
	wantError(t, app, fmt.Sprintf("ALTER TABLE %s ADD COLUMN x int", table), "42501", "")
	mustExec(t, conn, fmt.Sprintf("REVOKE UPDATE ON %s FROM %s", table, role))
	checkDefinitions(t, table, false)
	wantError(t, app, fmt.Sprintf("UPDATE %s SET v = 7 WHERE k = 'k1'", table), "42501", "")

	// Refused forms, and the definition untouched by them.
	for _, s := range []string{
		"ALTER TABLE %[1]s ADD COLUMN c float8 DEFAULT random()",
		"ALTER TABLE %[1]s ADD COLUMN s serial",
		"ALTER TABLE %[1]s DROP COLUMN k",
		"ALTER TABLE %[1]s ALTER COLUMN k TYPE varchar(30)",
		"ALTER TABLE %[1]s RENAME COLUMN k TO kk",
		"ALTER TABLE %[1]s ADD UNIQUE (id)",
		"CREATE UNIQUE INDEX ON %[1]s (id)",
		"CREATE UNIQUE INDEX CONCURRENTLY ON %[1]s (id)",
	} {
		wantError(t, conn, fmt.Sprintf(s, table), "0A000", "")
	}
	if after := checkDefinitions(t, table, false); !strings.Contains(after, role) {
		t.Fatalf("grants missing:\n%s", after)
	}

	// RENAME TO, in a block rolled back, then outside one, then queries by the new name.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER TABLE %s RENAME TO %s_r", table, table), "ROLLBACK")
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s RENAME TO %s_r", table, table))
	renamed := table + "_r"
	checkDefinitions(t, renamed, false)
	if s := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", renamed)); s != "42" {
		t.Fatalf("count after rename: %s", s)
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (k, id) VALUES ('after-rename', 3000)", renamed))
}

// wantErrorNoCheck runs sql and checks its SQLSTATE, without wantError's follow-up query
// (which an aborted block would refuse).
func wantErrorNoCheck(t testing.TB, conn *pgx.Conn, sql, code string) {
	t.Helper()
	_, err := conn.Exec(context.Background(), sql)
	if err == nil || !strings.Contains(err.Error(), code) {
		t.Fatalf("%s: got %v, want %s", sql, err, code)
	}
}

// TestDDLPropWorkerDown: a worker down during ALTER TABLE has its placements marked
// inactive while the change commits everywhere else; REPAIR SHARD recreates them with
// the new definition.
func TestDDLPropWorkerDown(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("ddlpdown")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text, v int)", table), table, "k", 4, 2)
	for i := 0; i < 20; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d)", table, i, i))
	}
	victim := sortedWorkers()[0]
	if err := victim.Crash(); err != nil {
		t.Fatal(err)
	}
	started := false
	defer func() {
		if !started {
			victim.Start(ctx)
		}
	}()
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s ADD COLUMN w int DEFAULT 7, ADD CHECK (v >= 0)", table))
	inactive := 0
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.port == victim.Port && p.state != 1 {
				inactive++
			}
			if p.port != victim.Port && p.state != 1 {
				t.Fatalf("shard %d: placement on %d is %d", s.id, p.port, p.state)
			}
		}
	}
	if inactive == 0 {
		t.Fatalf("no placement on the stopped worker was marked inactive")
	}
	checkDefinitions(t, table, false)
	if s := queryString(t, conn, fmt.Sprintf("SELECT sum(w)::text FROM %s", table)); s != "140" {
		t.Fatalf("sum(w) with a worker down: %s", s)
	}
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started = true
	var script strings.Builder
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 {
				fmt.Fprintf(&script, "REPAIR SHARD %d;\n", s.id)
				break
			}
		}
	}
	if out, err := psql(t, env.P, script.String()); err != nil {
		t.Fatalf("REPAIR SHARD: %v\n%s", err, out)
	}
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 {
				t.Fatalf("shard %d: placement on %d still %d after repair", s.id, p.port, p.state)
			}
		}
	}
	checkDefinitions(t, table, true)
	if total := checkPlacements(t, table, "hashtext(k)"); total != 20 {
		t.Fatalf("rows after repair: %d", total)
	}
}

// TestDDLPropPsql: through psql, a skipped DROP CONSTRAINT IF EXISTS gives the client one
// notice (the coordinator's, not one per shard), DROP INDEX of a coordinator table's
// index and of no index stays on the coordinator, GRANT ... ON ALL TABLES IN SCHEMA
// reaches the shards, and the extended protocol runs DDL too.
func TestDDLPropPsql(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("ddlpsql")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
	role := unprivilegedRole(t, "ddlpsql_app")
	out, err := psql(t, env.P, fmt.Sprintf(`ALTER TABLE %[1]s DROP CONSTRAINT IF EXISTS nope;
CREATE TABLE plain_%[1]s (a int); CREATE INDEX pix_%[1]s ON plain_%[1]s (a); DROP INDEX pix_%[1]s; DROP INDEX IF EXISTS nothing_%[1]s;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO %[2]s;
`, table, role))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if n := strings.Count(out, `constraint "nope"`); n != 1 {
		t.Fatalf("%d notices for the skipped constraint, want 1:\n%s", n, out)
	}
	checkDefinitions(t, table, false)
	// Multi-statement query strings (one Query message), with and without a block.
	mustExec(t, conn, fmt.Sprintf("BEGIN; ALTER TABLE %[1]s ADD COLUMN m1 int; INSERT INTO %[1]s (k, v) VALUES ('m', 1); UPDATE %[1]s SET m1 = 7; COMMIT", table),
		fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN m2 int DEFAULT 2; CREATE INDEX ON %[1]s (m2); UPDATE %[1]s SET m2 = m1", table))
	checkDefinitions(t, table, false)
	if s := queryString(t, conn, fmt.Sprintf("SELECT m1 || '/' || m2 FROM %s WHERE k = 'm'", table)); s != "7/7" {
		t.Fatalf("multi-statement strings: %s", s)
	}
	mustExec(t, conn, fmt.Sprintf("DELETE FROM %s", table))
	app := connectAs(t, env.P, role)
	if s := queryString(t, app, fmt.Sprintf("SELECT count(*)::text FROM %s", table)); s != "0" {
		t.Fatalf("count as %s: %s", role, s)
	}

	ext, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	if _, err := ext.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN e int DEFAULT 3", table)); err != nil {
		t.Fatalf("extended protocol: %v", err)
	}
	if _, err := ext.Exec(ctx, fmt.Sprintf("INSERT INTO %s (k, v) VALUES ($1, $2)", table), "a", 1); err != nil {
		t.Fatal(err)
	}
	var e int
	if err := ext.QueryRow(ctx, fmt.Sprintf("SELECT e FROM %s WHERE k = $1", table), "a").Scan(&e); err != nil || e != 3 {
		t.Fatalf("e = %d, %v", e, err)
	}
	checkDefinitions(t, table, false)
}

// TestDDLPropRacingWrites: schema changes through one proxy while another proxy writes
// the table: the writes wait for the changes' locks and none fails, the placements stay
// identical, and the second proxy learns the new definition.
func TestDDLPropRacingWrites(t *testing.T) {
	ctx := context.Background()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	a, b := connect(t), connectTo(t, p2)
	table := uniqueName("ddlprace")
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := b.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ('first', 0)", table)); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("proxy 2 never learned of the table: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	written := 1
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := b.Exec(ctx, fmt.Sprintf("INSERT INTO %s (k, v) VALUES ('a%d', %d), ('b%d', %d)", table, i, i, i, i)); err != nil {
				done <- err
				return
			}
			if _, err := b.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 'a%d'", table, i)); err != nil {
				done <- err
				return
			}
			written += 2
		}
	}()
	for _, s := range []string{
		"ALTER TABLE %[1]s ADD COLUMN w int DEFAULT 1",
		"CREATE INDEX %[1]s_v ON %[1]s (v)",
		"ALTER TABLE %[1]s ALTER COLUMN v TYPE bigint",
		"ALTER TABLE %[1]s ADD CHECK (v >= 0)",
		"ALTER TABLE %[1]s ADD PRIMARY KEY (k)",
	} {
		mustExec(t, a, fmt.Sprintf(s, table))
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("a write through the second proxy failed: %v", err)
	}
	checkDefinitions(t, table, false)
	if total := checkPlacements(t, table, "hashtext(k)"); total != int64(written) {
		t.Fatalf("rows on the workers: %d, want %d", total, written)
	}
	// The second proxy learns the new definition (the coordinator's notification).
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, err := b.Exec(ctx, fmt.Sprintf("INSERT INTO %s (k, v, w) VALUES ('last', 1, 5)", table))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy 2 never learned of the new column: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDDLPropQuotedNames: a distributed table in another schema, with names that need
// quoting, takes schema changes on every placement.
func TestDDLPropQuotedNames(t *testing.T) {
	conn := connect(t)
	schema := uniqueName("DdlSch")
	table := uniqueName("Mixed Case")
	q := fmt.Sprintf(`"%s"."%s"`, schema, table)
	mustExec(t, conn, fmt.Sprintf(`CREATE SCHEMA "%s"`, schema))
	distribute(t, conn, fmt.Sprintf(`CREATE TABLE %s ("Key" text NOT NULL, "Val" int)`, q), q, "Key", 2, 2)
	for _, s := range []string{
		`ALTER TABLE %s ADD COLUMN "New Col" text DEFAULT 'it''s' CHECK ("New Col" <> '')`,
		`CREATE INDEX ON %s ("Val")`,
		`CREATE INDEX "Odd Index" ON %s ("New Col")`,
		`ALTER TABLE %s ADD PRIMARY KEY ("Key")`,
		`ALTER TABLE %s RENAME COLUMN "Val" TO "Value"`,
		`COMMENT ON COLUMN %s."Value" IS 'v'`,
	} {
		mustExec(t, conn, fmt.Sprintf(s, q))
		checkDefinitions(t, q, false)
	}
	mustExec(t, conn, fmt.Sprintf(`ALTER INDEX "%s"."Odd Index" RENAME TO "Odder Index"`, schema),
		fmt.Sprintf(`INSERT INTO %s ("Key", "Value") VALUES ('a', 1)`, q))
	checkDefinitions(t, q, false)
	if s := queryString(t, conn, fmt.Sprintf(`SELECT "New Col" FROM %s WHERE "Key" = 'a'`, q)); s != "it's" {
		t.Fatalf("default: %s", s)
	}
}
