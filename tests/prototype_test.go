package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// TestPrototypeRefused checks that code running inside the coordinator (functions,
// triggers, rules, views) never silently reads or writes a distributed table's empty
// prototype: each way gets a loud 0A000 error that names pgshard, and no row lands in the
// prototype. pgshard's own statements that run against the prototype keep working.
func TestPrototypeRefused(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	coord := connectServer(t, env.C.Coordinator)
	o := uniqueName("po")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, amt bigint)", o), o, "id", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 10), (2, 20)", o))
	loc := uniqueName("ploc")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (id int, amt bigint)", loc))

	// loud runs the statements in turn until one fails: it must fail with 0A000 and a
	// message naming pgshard, and the statements before it must not have returned rows.
	loud := func(c *pgx.Conn, sqls ...string) {
		t.Helper()
		for _, q := range sqls {
			rows, err := c.Query(ctx, q)
			var got []string
			if err == nil {
				for rows.Next() {
					v, _ := rows.Values()
					got = append(got, fmt.Sprint(v))
				}
				rows.Close()
				err = rows.Err()
			}
			if err == nil {
				if len(got) > 0 {
					t.Errorf("%s: answered %v, want a 0A000 error", q, got)
					return
				}
				continue
			}
			t.Logf("%s: %v", q, err)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "pgshard") {
				t.Errorf("%s: %v, want 0A000 naming pgshard", q, err)
			}
			return
		}
		t.Errorf("%s: no error, want 0A000", strings.Join(sqls, "; "))
	}
	empty := func(what string) {
		t.Helper()
		var n int64
		if err := coord.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM ONLY %s", o)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("after %s: %d rows in the coordinator's prototype", what, n)
			mustExec(t, coord, "SET session_replication_role = replica", "DELETE FROM "+o, "RESET session_replication_role")
		}
		if s := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text || '/' || sum(amt)::text FROM %s", o)); s != "2/30" {
			t.Errorf("after %s: distributed table holds %s, want 2/30", what, s)
		}
	}

	// A SQL function reading the table.
	loud(conn, fmt.Sprintf("CREATE FUNCTION %[1]s_total() RETURNS bigint LANGUAGE sql AS 'select sum(amt) from %[1]s'", o),
		fmt.Sprintf("SELECT %s_total()", o))
	// A SQL-standard function body.
	loud(conn, fmt.Sprintf("CREATE FUNCTION %[1]s_atomic() RETURNS bigint LANGUAGE sql BEGIN ATOMIC select sum(amt) from %[1]s; END", o),
		fmt.Sprintf("SELECT %s_atomic()", o))
	// A PL/pgSQL function counting its rows.
	loud(conn, fmt.Sprintf(`CREATE FUNCTION %[1]s_count() RETURNS bigint LANGUAGE plpgsql AS $$
		BEGIN RETURN (SELECT count(*) FROM %[1]s); END $$`, o),
		fmt.Sprintf("SELECT %s_count()", o))
	// A function inserting into it.
	loud(conn, fmt.Sprintf("CREATE FUNCTION %[1]s_add(a bigint) RETURNS void LANGUAGE sql AS 'insert into %[1]s values (1000, a)'", o),
		fmt.Sprintf("SELECT %s_add(1000)", o))
	empty("a function inserting")
	// A DO block reading it.
	loud(conn, fmt.Sprintf("DO $$ BEGIN IF (SELECT count(*) FROM %s) = 0 THEN RAISE NOTICE 'empty'; END IF; END $$", o))
	// Functions created straight on the coordinator are refused too.
	loud(coord, fmt.Sprintf("CREATE FUNCTION %[1]s_direct() RETURNS bigint LANGUAGE sql AS 'select count(*) from public.%[1]s'", o))
	// A view, through pgshard and straight on the coordinator.
	loud(conn, fmt.Sprintf("CREATE VIEW %[1]s_v AS SELECT * FROM %[1]s", o), fmt.Sprintf("SELECT count(*) FROM %s_v", o))
	loud(coord, fmt.Sprintf("CREATE VIEW %[1]s_v AS SELECT * FROM %[1]s", o))
	loud(coord, fmt.Sprintf("CREATE MATERIALIZED VIEW %[1]s_mv AS SELECT * FROM %[1]s", o))
	loud(coord, fmt.Sprintf("CREATE RULE %[1]s_r AS ON INSERT TO %[2]s DO ALSO INSERT INTO %[1]s VALUES (NEW.id, NEW.amt)", o, loc))

	// Built-in functions that run SQL given as a string, or export tables given by name.
	loud(conn, fmt.Sprintf("SELECT query_to_xml('select count(*) from %s', true, false, '')", o))
	loud(conn, fmt.Sprintf("SELECT table_to_xml('%s'::regclass, true, false, '')", o))
	loud(conn, "SELECT table_name, query_to_xml(format('select count(*) from %I', table_name), false, true, '') FROM information_schema.tables WHERE table_schema = 'public'")
	loud(conn, "SELECT schema_to_xml('public', true, false, '')")
	if s := queryString(t, conn, fmt.Sprintf("SELECT query_to_xml('select count(*) AS n from %s', true, false, '')::text", loc)); !strings.Contains(s, "<n>0</n>") {
		t.Errorf("query_to_xml over a coordinator table: %s", s)
	}

	// Code that names the table only at run time escapes the checks above: its writes
	// still fail.
	mustExec(t, conn, `CREATE OR REPLACE FUNCTION pgshard_test_write(tbl text, a bigint) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'INSERT INTO ' || tbl || ' VALUES (1000, $1)' USING a; END $$`)
	loud(conn, fmt.Sprintf("SELECT pgshard_test_write('%s', 1000)", o))
	empty("a function inserting by a name it was given")
	mustExec(t, conn, `CREATE OR REPLACE FUNCTION pgshard_test_change(tbl text) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'UPDATE ' || tbl || ' SET amt = amt + 1'; EXECUTE 'DELETE FROM ' || tbl; END $$`)
	loud(conn, fmt.Sprintf("SELECT pgshard_test_change('%s')", o))
	mustExec(t, conn, `CREATE OR REPLACE FUNCTION pgshard_test_truncate(tbl text) RETURNS void LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'TRUNCATE ' || tbl; END $$`)
	loud(conn, fmt.Sprintf("SELECT pgshard_test_truncate('%s')", o))
	// ... inside a transaction block, too (which the error aborts).
	mustExec(t, conn, "BEGIN")
	loud(conn, fmt.Sprintf("SELECT pgshard_test_write('%s', 1000)", o))
	mustExec(t, conn, "ROLLBACK")
	empty("a function inserting in a transaction block")

	// A trigger on a coordinator table that writes the distributed table.
	mustExec(t, conn, `CREATE OR REPLACE FUNCTION pgshard_test_copy_row() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'INSERT INTO ' || TG_ARGV[0] || ' VALUES ($1, $2)' USING NEW.id, NEW.amt; RETURN NEW; END $$`,
		fmt.Sprintf("CREATE TRIGGER copy_row AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION pgshard_test_copy_row('%s')", loc, o))
	loud(conn, fmt.Sprintf("INSERT INTO %s VALUES (7, 70)", loc))
	empty("a trigger on a coordinator table")
	if s := queryString(t, conn, "SELECT count(*)::text FROM "+loc); s != "0" {
		t.Errorf("the coordinator table kept %s rows of the refused INSERT", s)
	}
	mustExec(t, conn, fmt.Sprintf("DROP TRIGGER copy_row ON %s", loc))

	// A view that got past the checks (made while they were off): writes through it fail.
	mustExec(t, coord, "SET session_replication_role = replica",
		fmt.Sprintf("CREATE VIEW %[1]s_v AS SELECT * FROM %[1]s", o), "RESET session_replication_role")
	loud(conn, fmt.Sprintf("INSERT INTO %s_v VALUES (5, 50)", o))
	loud(conn, fmt.Sprintf("UPDATE %s_v SET amt = 0", o))
	loud(conn, fmt.Sprintf("DELETE FROM %s_v", o))
	empty("writes through a view")
	mustExec(t, conn, fmt.Sprintf("DROP VIEW %s_v", o))

	// A table that views or functions already read cannot be distributed.
	o2 := uniqueName("po")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, amt bigint)", o2),
		fmt.Sprintf("CREATE VIEW %[1]s_v AS SELECT * FROM %[1]s", o2))
	loud(conn, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", o2))
	mustExec(t, conn, fmt.Sprintf("DROP VIEW %s_v", o2),
		fmt.Sprintf("CREATE FUNCTION %[1]s_n() RETURNS bigint LANGUAGE sql AS 'select count(*) from %[1]s'", o2))
	loud(conn, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", o2))
	mustExec(t, conn, fmt.Sprintf("DROP FUNCTION %s_n()", o2))
	distribute(t, conn, "SELECT 1", o2, "id", 2, 1)

	// A client cannot pass for pgshard itself.
	wantError(t, conn, fmt.Sprintf("/* pgshard-internal-statement */ SELECT pgshard_test_truncate('%s')", o), "42501", "")
	wantError(t, conn, fmt.Sprintf("SELECT '/* pgshard-internal-statement */', pgshard_test_truncate('%s')", o), "42501", "")

	// pgshard's own statements on the prototype still work: writes that no shard can
	// match, INSERT ... SELECT of no rows, TRUNCATE.
	for _, c := range []struct{ sql, tag string }{
		{fmt.Sprintf("UPDATE %s SET amt = 1 WHERE id = NULL", o), "UPDATE 0"},
		{fmt.Sprintf("DELETE FROM %s WHERE id IN (NULL)", o), "DELETE 0"},
		{fmt.Sprintf("INSERT INTO %s SELECT id, amt FROM %s", o, loc), "INSERT 0 0"},
	} {
		tag, err := conn.Exec(ctx, c.sql)
		if err != nil || tag.String() != c.tag {
			t.Errorf("%s: %v %v, want %s", c.sql, tag, err, c.tag)
		}
	}
	// ... in the extended protocol too.
	ext, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	if tag, err := ext.Exec(ctx, fmt.Sprintf("UPDATE %s SET amt = $1 WHERE id = $2", o), 1, nil); err != nil || tag.String() != "UPDATE 0" {
		t.Errorf("UPDATE with a NULL key parameter: %v %v", tag, err)
	}
	empty("pgshard's own statements")
	mustExec(t, conn, fmt.Sprintf("TRUNCATE %s, %s", o, loc))
	if s := queryString(t, conn, "SELECT count(*)::text FROM "+o); s != "0" {
		t.Errorf("after TRUNCATE: %s rows", s)
	}
	// Tables distributed before pgshard guarded prototypes get their triggers when a proxy
	// starts.
	mustExec(t, coord, fmt.Sprintf("DROP TRIGGER pgshard_refuse_writes ON %s", o2), fmt.Sprintf("DROP TRIGGER pgshard_refuse_rows ON %s", o2))
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p2.Stop()
	loud(conn, fmt.Sprintf("SELECT pgshard_test_write('%s', 1)", o2))

	// psql's \d shows the table.
	if out, err := psql(t, env.P, `\d `+o); err != nil || !strings.Contains(out, "amt") {
		t.Errorf(`\d %s: %v %s`, o, err, out)
	}
}

// TestPrototypeRefusedNonSuperuser checks the same refusals for a role that is not a
// superuser and may not read pgshard's metadata schema, and that such a role's DDL on
// the coordinator is not broken by pgshard's event triggers.
func TestPrototypeRefusedNonSuperuser(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	coord := connectServer(t, env.C.Coordinator)
	// On every server: a GRANT through pgshard reaches the shards.
	role := unprivilegedRole(t, "pgshard_alice")
	o := uniqueName("po")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, amt bigint)", o), o, "id", 4, 1)
	mustExec(t, conn, fmt.Sprintf("GRANT ALL ON %s TO %s", o, role))

	alice, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", role, env.P.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close(ctx)
	loc := uniqueName("ploc")
	mustExec(t, alice, fmt.Sprintf("CREATE TABLE %s (id int, amt bigint)", loc),
		`CREATE FUNCTION `+role+`_write(tbl text) RETURNS void LANGUAGE plpgsql AS $$
			BEGIN EXECUTE 'INSERT INTO ' || tbl || ' VALUES (1, 1)'; END $$`)
	wantError(t, alice, fmt.Sprintf("SELECT %s_write('%s')", role, o), "0A000", "")
	wantError(t, alice, fmt.Sprintf("CREATE VIEW %[1]s_v AS SELECT * FROM %[1]s", o), "0A000", "")
	// Straight on the coordinator, as the same role.
	direct, err := pgx.Connect(ctx, strings.Replace(env.C.Coordinator.URL("postgres"), "postgres@", role+"@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	wantError(t, direct, fmt.Sprintf("CREATE VIEW %[1]s_v AS SELECT * FROM %[1]s", o), "0A000", "")
	wantError(t, direct, fmt.Sprintf("CREATE FUNCTION %[1]s_n() RETURNS bigint LANGUAGE sql AS 'select count(*) from %[1]s'", o), "0A000", "")
	// pgshard's own statements on the prototype, for this role.
	if tag, err := alice.Exec(ctx, fmt.Sprintf("UPDATE %s SET amt = 1 WHERE id = NULL", o)); err != nil || tag.String() != "UPDATE 0" {
		t.Errorf("UPDATE no shard can match: %v %v", tag, err)
	}
	var n int64
	if err := coord.QueryRow(ctx, "SELECT count(*) FROM ONLY "+o).Scan(&n); err != nil || n != 0 {
		t.Errorf("prototype rows: %d %v", n, err)
	}
}
