package tests

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// relProps is what checkDefinitions leaves out of a relation and the ALTER TABLE forms of
// this file change: owner, persistence, replica identity (with its index, suffix
// stripped), storage parameters, and each index's storage parameters.
func relProps(t testing.TB, conn *pgx.Conn, rel, suffix string) string {
	t.Helper()
	var b strings.Builder
	rows, err := conn.Query(context.Background(), `
		SELECT 'table', pg_get_userbyid(c.relowner) || ' ' || c.relpersistence::text || ' ' || c.relreplident::text || ' ' || coalesce(c.reloptions::text, '')
		FROM pg_class c WHERE c.oid = $1::regclass
		UNION ALL
		SELECT 'index ' || ic.relname, coalesce(ic.reloptions::text, '') || CASE WHEN i.indisreplident THEN ' replident' ELSE '' END
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = $1::regclass
		ORDER BY 1`, rel)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(b.String(), suffix, "")
}

// fkDefs lists a relation's foreign keys, the referenced shard's suffix stripped.
func fkDefs(t testing.TB, conn *pgx.Conn, rel string, shard bool) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
		FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY 1`, rel)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		if shard {
			s = refShard.ReplaceAllString(s, "$1(")
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

var refShard = regexp.MustCompile(`([A-Za-z0-9_]+)_[0-9]+\(`)

// checkAlter compares every placement's definition, properties and foreign keys with the
// coordinator's table (foreign keys: shard i refers to shard i of the referenced
// table), and checks that SHOW DRIFT reports nothing.
func checkAlter(t *testing.T, conn *pgx.Conn, table string, refs ...string) {
	t.Helper()
	checkDefinitions(t, table, false)
	coord := connectServer(t, env.C.Coordinator)
	props, fks := relProps(t, coord, table, ""), fkDefs(t, coord, table, false)
	var refShards [][]shardInfo
	for _, r := range refs {
		refShards = append(refShards, shardsOf(t, r))
	}
	conns := map[int]*pgx.Conn{}
	for i, s := range shardsOf(t, table) {
		suffix := fmt.Sprintf("_%d", s.id)
		for _, p := range s.places {
			c := conns[p.port]
			if c == nil {
				c = connectServer(t, serverFor(p.port))
				conns[p.port] = c
			}
			if got := relProps(t, c, table+suffix, suffix); got != props {
				t.Fatalf("shard %d on %d: properties\n%s\ncoordinator:\n%s", s.id, p.port, got, props)
			}
			if got := fkDefs(t, c, table+suffix, true); got != fks {
				t.Fatalf("shard %d on %d: foreign keys\n%s\ncoordinator:\n%s", s.id, p.port, got, fks)
			}
			for _, rs := range refShards {
				var n int
				want := fmt.Sprintf("_%d", rs[i].id)
				if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'
					AND confrelid::regclass::text LIKE '%' || $2`, table+suffix, want).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n == 0 && fks != "" {
					t.Fatalf("shard %d on %d refers to no shard %s of its referenced table", s.id, p.port, want)
				}
			}
		}
	}
	if d := showDrift(t, conn, table); len(d) != 0 {
		t.Fatalf("SHOW DRIFT %s: %v", table, d)
	}
}

// TestDDLAlterForeignKey: foreign keys between co-located distributed tables, added by
// ALTER TABLE through pgshard, are on every shard referring to the matching shard of the
// referenced table and behave as on plain PostgreSQL (violations, ON DELETE CASCADE,
// validation of existing rows); renamed and dropped everywhere; rolled back everywhere;
// the forms that cannot be enforced by the shards are refused with 0A000.
func TestDDLAlterForeignKey(t *testing.T) {
	ctx := context.Background()
	refDDL := "CREATE TABLE %s (k text, id int, name text, PRIMARY KEY (k, id))"
	chDDL := "CREATE TABLE %s (k text, id int, rid int, v int)"
	ref, ch := uniqueName("fkref"), uniqueName("fkch")
	proxy, plain := attackPair(t, fmt.Sprintf(refDDL, ref), ref, "k", 4, 2,
		fmt.Sprintf("INSERT INTO %s SELECT 'k' || i %% 5, i, 'n' || i FROM generate_series(1, 20) i", ref))
	distribute(t, proxy, fmt.Sprintf(chDDL, ch), ch, "k", 4, 2)
	mustExec(t, plain, fmt.Sprintf(chDDL, ch))
	both := func(sqls ...string) {
		t.Helper()
		mustExec(t, proxy, sqls...)
		mustExec(t, plain, sqls...)
	}
	both(fmt.Sprintf("INSERT INTO %s SELECT 'k' || i %% 5, i, i, i FROM generate_series(1, 20) i", ch))

	// Existing rows are validated on the shards: an orphan fails the statement there.
	both(fmt.Sprintf("INSERT INTO %s VALUES ('k1', 100, 99, 0)", ch))
	add := fmt.Sprintf("ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_ref FOREIGN KEY (k, rid) REFERENCES %[2]s (k, id) ON DELETE CASCADE", ch, ref)
	sameAsPlain(t, proxy, plain, add)
	checkAlter(t, proxy, ch)
	both(fmt.Sprintf("DELETE FROM %s WHERE id = 100", ch))
	mustExec(t, proxy, add)
	mustExec(t, plain, add)
	checkAlter(t, proxy, ch, ref)
	checkAlter(t, proxy, ref)

	q := func(s string) string { return fmt.Sprintf(s, ch, ref) }
	sameAsPlain(t, proxy, plain,
		q("INSERT INTO %[1]s VALUES ('k1', 200, 1, 0)"),
		q("INSERT INTO %[1]s VALUES ('k2', 201, 1, 0)"), // (k2, 1) does not exist: 23503
		q("UPDATE %[1]s SET rid = 3 WHERE k = 'k3' AND id = 3"),
		q("UPDATE %[1]s SET rid = 4 WHERE k = 'k3' AND id = 3"), // 23503
		q("DELETE FROM %[2]s WHERE k = 'k1'"),                   // cascades on the shard
		q("SELECT count(*), sum(v) FROM %[1]s"),
		q("SELECT k, id FROM %[1]s ORDER BY k, id"),
	)

	// An unnamed one takes PostgreSQL's name, and the referenced primary key.
	both(q("ALTER TABLE %[1]s ADD FOREIGN KEY (k, id) REFERENCES %[2]s NOT VALID"))
	checkAlter(t, proxy, ch, ref)
	sameAsPlain(t, proxy, plain, q("ALTER TABLE %[1]s VALIDATE CONSTRAINT %[1]s_k_id_fkey"))
	mustExec(t, plain, q("ALTER TABLE %[1]s DROP CONSTRAINT %[1]s_k_id_fkey"))
	mustExec(t, proxy, q("ALTER TABLE %[1]s DROP CONSTRAINT %[1]s_k_id_fkey"))
	checkAlter(t, proxy, ch, ref)
	both(q("ALTER TABLE %[1]s RENAME CONSTRAINT %[1]s_ref TO %[1]s_ref2"))
	checkAlter(t, proxy, ch, ref)
	sameAsPlain(t, proxy, plain, q("INSERT INTO %[1]s VALUES ('k4', 300, 77, 0)"))

	// In a block with other statements: the violation aborts it, a ROLLBACK undoes all.
	both(q("ALTER TABLE %[1]s DROP CONSTRAINT %[1]s_ref2"))
	checkAlter(t, proxy, ch)
	mustExec(t, proxy, "BEGIN", q("ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_blk FOREIGN KEY (k, rid) REFERENCES %[2]s (k, id)"),
		q("INSERT INTO %[1]s VALUES ('k2', 400, 2, 0)"))
	wantErrorNoCheck(t, proxy, q("INSERT INTO %[1]s VALUES ('k2', 401, 99, 0)"), "23503")
	mustExec(t, proxy, "ROLLBACK")
	checkAlter(t, proxy, ch)
	mustExec(t, proxy, "BEGIN", q("ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_blk FOREIGN KEY (k, rid) REFERENCES %[2]s (k, id)"),
		q("INSERT INTO %[1]s VALUES ('k2', 400, 2, 0)"), "COMMIT")
	checkAlter(t, proxy, ch, ref)
	// SET NULL of the other columns only (the partition column must not change).
	mustExec(t, proxy, q("ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_sn FOREIGN KEY (k, rid) REFERENCES %[2]s (k, id) ON DELETE SET NULL (rid)"))
	checkAlter(t, proxy, ch, ref, ref)
	mustExec(t, proxy, q("ALTER TABLE %[1]s DROP CONSTRAINT %[1]s_sn"))
	// A self-reference is co-located with itself.
	mustExec(t, proxy, q("ALTER TABLE %[1]s ADD PRIMARY KEY (k, id)"),
		q("ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_self FOREIGN KEY (k, rid) REFERENCES %[1]s (k, id)"))
	checkAlter(t, proxy, ch, ch)

	// Changes of the referenced or referencing columns rebuild the constraints on every
	// shard as on the coordinator.
	mustExec(t, proxy, q("ALTER TABLE %[2]s ALTER COLUMN id TYPE bigint"), q("ALTER TABLE %[1]s ALTER COLUMN rid TYPE bigint"))
	checkAlter(t, proxy, ch, ref, ch)

	// Refused: what no shard can enforce alone.
	other := uniqueName("fkother")
	distribute(t, proxy, fmt.Sprintf("CREATE TABLE %s (k text, id int, PRIMARY KEY (k, id))", other), other, "k", 2, 2)
	local := uniqueName("fklocal")
	mustExec(t, proxy, fmt.Sprintf("CREATE TABLE %s (k text, id int, PRIMARY KEY (k, id))", local))
	single := uniqueName("fksingle")
	distribute(t, proxy, fmt.Sprintf("CREATE TABLE %s (k text, id int, PRIMARY KEY (k, id))", single), single, "k", 4, 1)
	ints := uniqueName("fkints")
	distribute(t, proxy, fmt.Sprintf("CREATE TABLE %s (n int, k text, PRIMARY KEY (n))", ints), ints, "n", 4, 2)
	for _, s := range []string{
		"ALTER TABLE %[1]s ADD FOREIGN KEY (k, id) REFERENCES %[3]s (k, id)",            // not co-located
		"ALTER TABLE %[1]s ADD FOREIGN KEY (k, id) REFERENCES %[4]s (k, id)",            // a coordinator table
		"ALTER TABLE %[1]s ADD FOREIGN KEY (rid, k) REFERENCES %[2]s (k, id)",           // partition columns not paired
		"ALTER TABLE %[1]s ADD COLUMN r2 int REFERENCES %[2]s (id)",                     // a new column is no partition column
		"ALTER TABLE %[4]s ADD FOREIGN KEY (k, id) REFERENCES %[2]s (k, id)",            // to a distributed table
		"ALTER TABLE %[1]s ADD FOREIGN KEY (v) REFERENCES %[5]s (n)",                    // key types differ
		"ALTER TABLE %[1]s ADD COLUMN r3 int, ADD FOREIGN KEY (k, id) REFERENCES %[3]s", // one bad subcommand
		"ALTER TABLE %[1]s ADD FOREIGN KEY (k, id) REFERENCES %[6]s (k, id)",            // placed on other workers
		"ALTER TABLE %[1]s ADD FOREIGN KEY (k, id) REFERENCES %[2]s ON DELETE SET NULL", // would set the partition column
	} {
		wantError(t, proxy, fmt.Sprintf(s, ch, ref, other, local, ints, single), "0A000", "")
	}
	checkAlter(t, proxy, ch, ref, ch)
	checkAlter(t, proxy, ref)
	var n int
	if err := proxy.QueryRow(ctx, q("SELECT count(*) FROM %[1]s")).Scan(&n); err != nil || n == 0 {
		t.Fatalf("count: %d %v", n, err)
	}
}

// TestDDLAlterTableForms: OWNER TO, SET/RESET (storage parameters), REPLICA IDENTITY,
// SET UNLOGGED/LOGGED, ALTER INDEX ... SET/RESET, EXCLUDE with the partition column and
// ADD CONSTRAINT ... USING INDEX reach every placement, in and out of blocks, with no
// drift; an owner the workers lack fails the statement everywhere.
func TestDDLAlterTableForms(t *testing.T) {
	conn := connect(t)
	table := uniqueName("altf")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, id int NOT NULL, v int)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT 'k' || i, i, i FROM generate_series(1, 30) i", table))
	role := unprivilegedRole(t, "altf_owner")
	for _, s := range []string{
		"ALTER TABLE %[1]s SET (fillfactor = 70, autovacuum_enabled = false)",
		"ALTER TABLE %[1]s RESET (autovacuum_enabled)",
		"ALTER TABLE %[1]s SET (toast.autovacuum_enabled = false)",
		"ALTER TABLE %[1]s REPLICA IDENTITY FULL",
		"CREATE UNIQUE INDEX %[1]s_ux ON %[1]s (k, id)",
		"ALTER TABLE %[1]s REPLICA IDENTITY USING INDEX %[1]s_ux",
		"ALTER INDEX %[1]s_ux SET (fillfactor = 60)",
		"ALTER INDEX %[1]s_ux RESET (fillfactor)",
		"ALTER TABLE %[1]s SET UNLOGGED",
		"ALTER TABLE %[1]s SET LOGGED",
		"ALTER TABLE %[1]s REPLICA IDENTITY DEFAULT",
		"ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_pk PRIMARY KEY USING INDEX %[1]s_ux",
		"CREATE UNIQUE INDEX %[1]s_ux2 ON %[1]s (id, k)",
		"ALTER TABLE %[1]s ADD UNIQUE USING INDEX %[1]s_ux2",
		"ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_ex EXCLUDE USING btree (k WITH =)",
		"ALTER TABLE %[1]s DROP CONSTRAINT %[1]s_ex",
		"ALTER TABLE %[1]s ADD EXCLUDE USING hash (k WITH =)",
		"ALTER TABLE %[1]s OWNER TO " + role,
	} {
		mustExec(t, conn, fmt.Sprintf(s, table))
		checkAlter(t, conn, table)
	}
	// Several in one block, with writes; then the new owner uses the table.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER TABLE %s SET (fillfactor = 90), REPLICA IDENTITY FULL", table),
		fmt.Sprintf("INSERT INTO %s VALUES ('blk', 100, 1)", table), "COMMIT")
	checkAlter(t, conn, table)
	owner := connectAs(t, env.P, role)
	mustExec(t, owner, fmt.Sprintf("UPDATE %s SET v = 0 WHERE k = 'k1'", table),
		fmt.Sprintf("ALTER TABLE %s SET (fillfactor = 80)", table))
	checkAlter(t, conn, table)
	// A duplicate key is refused as plain PostgreSQL refuses it (the EXCLUDE: only one row per k).
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k2', 500, 1)", table), "23P01", "")
	// Not the owner (the coordinator's check), and an owner the workers lack.
	other := unprivilegedRole(t, "altf_other")
	wantError(t, connectAs(t, env.P, other), fmt.Sprintf("ALTER TABLE %s OWNER TO %s", table, other), "42501", "")
	lonely := uniqueName("altf_lonely")
	mustExec(t, connectServer(t, env.C.Coordinator), "CREATE ROLE "+lonely)
	wantError(t, conn, fmt.Sprintf("ALTER TABLE %s OWNER TO %s", table, lonely), "42704", "")
	if s := queryString(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = '%s'::regclass", table)); s != role {
		t.Fatalf("owner after the failed OWNER TO: %s", s)
	}
	checkAlter(t, conn, table)
	// Still refused.
	for _, s := range []string{
		"ALTER TABLE %[1]s ADD EXCLUDE USING btree (id WITH =)",
		"ALTER TABLE %[1]s SET TABLESPACE pg_default",
		"ALTER INDEX %[1]s_ux2 ALTER COLUMN 1 SET STATISTICS 10",
	} {
		wantError(t, conn, fmt.Sprintf(s, table), "0A000", "")
	}
	checkAlter(t, conn, table)
}

// TestDDLAlterSetSchema: ALTER TABLE ... SET SCHEMA moves the coordinator's table and
// every shard table (creating the schema on workers that lack it); pgshard then finds the
// table in its new schema only; refused inside a block (25001).
func TestDDLAlterSetSchema(t *testing.T) {
	conn := connect(t)
	table := uniqueName("altsch")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text PRIMARY KEY, v int CHECK (v >= 0))", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("CREATE INDEX %[1]s_v ON %[1]s (v)", table),
		fmt.Sprintf("INSERT INTO %s SELECT 'k' || i, i FROM generate_series(1, 25) i", table))
	schema := uniqueName("altsch_s")
	// Through pgshard: the schema exists on the coordinator only.
	mustExec(t, conn, "CREATE SCHEMA "+schema)
	// In a block, rolled back (tests/renameblock_test.go: committed).
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER TABLE %s SET SCHEMA %s", table, schema), "ROLLBACK")
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s SET SCHEMA %s", table, schema))
	moved := schema + "." + table
	checkAlter(t, conn, moved)
	if s := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", moved)); s != "25" {
		t.Fatalf("count after SET SCHEMA: %s", s)
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('new', 1)", moved),
		fmt.Sprintf("UPDATE %s SET v = 2 WHERE k = 'k3'", moved))
	wantError(t, conn, fmt.Sprintf("SELECT * FROM %s", table), "42P01", "")
	if total := checkPlacements(t, moved, "hashtext(k)"); total != 26 {
		t.Fatalf("rows after SET SCHEMA: %d", total)
	}
	// And back.
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s SET SCHEMA public", moved))
	checkAlter(t, conn, table)
	if s := queryString(t, conn, fmt.Sprintf("SELECT v::text FROM %s WHERE k = 'k3'", table)); s != "2" {
		t.Fatalf("v after moving back: %s", s)
	}
}

// TestDDLAlterForeignKeyRacingWrites: schema changes of a referenced table (which rebuild
// the referencing shards' constraints on the workers) through one proxy while another
// proxy writes the referencing table across shards: the writes wait for the changes'
// locks and none fails, and every placement keeps the constraint.
func TestDDLAlterForeignKeyRacingWrites(t *testing.T) {
	ctx := context.Background()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	a, b := connect(t), connectTo(t, p2)
	ref, ch := uniqueName("fkrace_ref"), uniqueName("fkrace_ch")
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (k text, id int, PRIMARY KEY (k, id))", ref), ref, "k", 4, 2)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (k text, n int, rid int)", ch), ch, "k", 4, 2)
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s SELECT 'k' || i, 1 FROM generate_series(1, 50) i", ref),
		fmt.Sprintf("ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_f FOREIGN KEY (k, rid) REFERENCES %[2]s (k, id)", ch, ref))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := b.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ('k1', 0, 1)", ch)); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("proxy 2 never learned of the table: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			_, err := b.Exec(wctx, fmt.Sprintf("INSERT INTO %s SELECT 'k' || j, %d, 1 FROM generate_series(1, 50, 7) j", ch, i))
			cancel()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	for _, s := range []string{
		"ALTER TABLE %[2]s ALTER COLUMN id TYPE bigint",
		"ALTER TABLE %[2]s ADD COLUMN w int DEFAULT 1",
		"ALTER TABLE %[1]s ALTER COLUMN rid TYPE bigint",
		"ALTER TABLE %[2]s ALTER COLUMN id TYPE int",
	} {
		mustExec(t, a, fmt.Sprintf(s, ch, ref))
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("a write through the second proxy failed: %v", err)
	}
	checkAlter(t, a, ch, ref)
	checkAlter(t, a, ref)
}
