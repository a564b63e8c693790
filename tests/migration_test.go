package tests

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// The migration suite runs a realistic series of schema migrations through pgshard, the
// way applications run them: goose (a migration tool that wraps each migration in a
// transaction unless told otherwise) over database/sql, and psql scripts run with
// --single-transaction. After every step each placement's catalog definition must equal
// the coordinator's table's, queries through pgshard must keep working, and a role that
// was granted privileges (not the owner) must be able to use the tables.

// migrationStep is one migration: goose's (a versioned file) or a psql script.
type migrationStep struct {
	name  string
	goose string // a goose migration file's text, or
	psql  string // a psql script, run with --single-transaction
	// tables are the distributed tables that exist after the step, qualified.
	tables []string
	// check, if set, runs queries through pgshard after the step.
	check func(t *testing.T)
}

// fullDef is a relation's definition on one server: tableDef plus what a migration adds
// beyond it (foreign keys, triggers, row security and policies, owner), with every shard
// suffix in strip taken out.
func fullDef(t testing.TB, conn *pgx.Conn, rel string, strip *regexp.Regexp) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(tableDef(t, conn, rel, ""))
	q := func(label, sql string) { catalogRows(t, conn, &b, rel, label, sql) }
	q("foreign key", `SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY 1`)
	q("trigger", `SELECT tgname, pg_get_triggerdef(oid), tgenabled FROM pg_trigger
		WHERE tgrelid = $1::regclass AND NOT tgisinternal AND tgname NOT LIKE 'pgshard\_%' ORDER BY 1`)
	q("row security", `SELECT relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner), relpersistence
		FROM pg_class WHERE oid = $1::regclass`)
	q("schema privileges", `SELECT ARRAY(SELECT pg_get_userbyid(x.grantee) || ':' || x.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) x
		WHERE n.oid = (SELECT relnamespace FROM pg_class WHERE oid = $1::regclass) AND x.grantee <> n.nspowner ORDER BY 1)`)
	q("policy", `SELECT polname, polcmd, polpermissive, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid),
		ARRAY(SELECT rolname FROM pg_roles WHERE oid = ANY (polroles) ORDER BY 1)
		FROM pg_policy WHERE polrelid = $1::regclass ORDER BY 1`)
	return strip.ReplaceAllString(b.String(), "")
}

// shardSuffixes matches "_<shard id>" for every shard of tables, so that definitions
// on different shards (whose foreign keys name other shards) compare equal.
func shardSuffixes(t testing.TB, tables []string) *regexp.Regexp {
	var ids []string
	for _, tbl := range tables {
		for _, s := range shardsOf(t, tbl) {
			ids = append(ids, fmt.Sprint(s.id))
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	return regexp.MustCompile(`_(` + strings.Join(ids, "|") + `)\b`)
}

// checkMigrated compares every placement of every table with the coordinator's table.
func checkMigrated(t *testing.T, tables []string) {
	t.Helper()
	strip := shardSuffixes(t, tables)
	coord := connectServer(t, env.C.Coordinator)
	conns := map[int]*pgx.Conn{}
	for _, tbl := range tables {
		want := fullDef(t, coord, tbl, strip)
		schema, name, _ := strings.Cut(tbl, ".")
		for _, s := range shardsOf(t, tbl) {
			for _, p := range s.places {
				if p.state != 1 {
					t.Errorf("%s: shard %d on port %d is not finalized (state %d)", tbl, s.id, p.port, p.state)
					continue
				}
				c := conns[p.port]
				if c == nil {
					c = connectServer(t, serverFor(p.port))
					conns[p.port] = c
				}
				got := fullDef(t, c, fmt.Sprintf("%s.%s_%d", schema, name, s.id), strip)
				if got != want {
					t.Fatalf("%s: shard %d on port %d differs from the coordinator's table:\n%s\ncoordinator:\n%s", tbl, s.id, p.port, got, want)
				}
			}
		}
	}
}

// migrationRole is the application's role: not the tables' owner, granted what it uses.
var migrationRole = "migr_app"

func TestMigrationSuite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(ctx, "postgres", "DROP ROLE IF EXISTS "+migrationRole+"; CREATE ROLE "+migrationRole+" LOGIN"); err != nil {
			t.Fatalf("role on %s: %v", s.Name, err)
		}
	}
	owner := connect(t)
	app := connectAs(t, env.P, migrationRole)
	queryAs := func(t *testing.T, conn *pgx.Conn, sql string) string {
		t.Helper()
		var out []string
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = fmt.Sprint(v)
			}
			out = append(out, strings.Join(parts, " "))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return strings.Join(out, ";")
	}
	expect := func(t *testing.T, conn *pgx.Conn, sql, want string) {
		t.Helper()
		if got := queryAs(t, conn, sql); got != want {
			t.Fatalf("%s: got %q, want %q", sql, got, want)
		}
	}

	both := []string{"shop.customers", "shop.orders"}
	steps := []migrationStep{{
		name: "00001_create_tables.sql",
		goose: `-- +goose Up
CREATE SCHEMA shop;
GRANT USAGE ON SCHEMA shop TO migr_app;
CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text NOT NULL);
SELECT master_create_distributed_table('shop.customers', 'id');
SELECT master_create_worker_shards('shop.customers', 4, 2);
CREATE TABLE shop.orders (customer_id bigint NOT NULL, id bigint NOT NULL, total numeric(10,2), PRIMARY KEY (customer_id, id));
SELECT master_create_distributed_table('shop.orders', 'customer_id');
SELECT master_create_worker_shards('shop.orders', 4, 2);
`,
		tables: both,
		check: func(t *testing.T) {
			mustExec(t, owner, `INSERT INTO shop.customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 20) g`,
				`INSERT INTO shop.orders SELECT g % 20 + 1, g, g * 1.5 FROM generate_series(1, 60) g`)
			expect(t, owner, `SELECT count(*), sum(total)::text FROM shop.orders`, "60 2745.00")
		},
	}, {
		name: "add columns (psql)",
		psql: `ALTER TABLE shop.customers ADD COLUMN name varchar(100);
ALTER TABLE shop.orders ADD COLUMN status text NOT NULL DEFAULT 'new';
UPDATE shop.customers SET name = 'Customer ' || id;
`,
		tables: both,
		check: func(t *testing.T) {
			expect(t, owner, `SELECT status, count(*) FROM shop.orders GROUP BY status`, "new 60")
			expect(t, owner, `SELECT name FROM shop.customers WHERE id = 7`, "Customer 7")
		},
	}, {
		name: "00002_rename_and_replace.sql",
		goose: `-- +goose Up
ALTER TABLE shop.customers RENAME COLUMN name TO full_name;
ALTER TABLE shop.orders ADD COLUMN amount_cents bigint NOT NULL DEFAULT 0;
ALTER TABLE shop.orders ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
UPDATE shop.orders SET amount_cents = (total * 100)::bigint;
ALTER TABLE shop.orders DROP COLUMN total;
ALTER TABLE shop.orders ADD CONSTRAINT orders_amount_nonnegative CHECK (amount_cents >= 0);
`,
		tables: both,
		check: func(t *testing.T) {
			expect(t, owner, `SELECT sum(amount_cents)::text FROM shop.orders`, "274500")
			expect(t, owner, `SELECT full_name FROM shop.customers WHERE id = 3`, "Customer 3")
		},
	}, {
		name: "grant to the application (psql)",
		psql: `GRANT SELECT, INSERT, UPDATE ON shop.customers, shop.orders TO migr_app;
`,
		tables: both,
		check: func(t *testing.T) {
			mustExec(t, app, `INSERT INTO shop.orders (customer_id, id, amount_cents) VALUES (1, 1001, 500)`,
				`UPDATE shop.customers SET full_name = 'Renamed' WHERE id = 1`)
			expect(t, app, `SELECT c.full_name, sum(o.amount_cents)::text FROM shop.customers c JOIN shop.orders o ON o.customer_id = c.id WHERE c.id = 1 GROUP BY 1`, "Renamed 18500")
			wantError(t, app, `DELETE FROM shop.orders WHERE customer_id = 1`, "42501", "")
		},
	}, {
		name: "00003_index_concurrently.sql",
		goose: `-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY orders_status_idx ON shop.orders (status);
CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON shop.customers (email, id);
`,
		tables: both,
	}, {
		name: "00004_foreign_key.sql",
		goose: `-- +goose Up
ALTER TABLE shop.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customers (id) ON DELETE CASCADE;
`,
		tables: both,
		check: func(t *testing.T) {
			wantError(t, owner, `INSERT INTO shop.orders (customer_id, id) VALUES (999, 1000)`, "23503", "")
			mustExec(t, owner, `DELETE FROM shop.customers WHERE id = 20`)
			expect(t, owner, `SELECT count(*) FROM shop.orders WHERE customer_id = 20`, "0")
		},
	}, {
		name: "00005_updated_at_trigger.sql",
		goose: `-- +goose Up
ALTER TABLE shop.orders ADD COLUMN updated_at timestamptz;
-- +goose StatementBegin
CREATE FUNCTION shop.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := '2026-01-01 00:00:00+00';
  RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.touch_updated_at();
`,
		tables: both,
		check: func(t *testing.T) {
			mustExec(t, app, `UPDATE shop.orders SET status = 'paid' WHERE customer_id = 2`)
			expect(t, owner, `SELECT count(*) FROM shop.orders WHERE status = 'paid' AND updated_at = '2026-01-01 00:00:00+00'`, "3")
		},
	}, {
		name: "rename the schema (psql)",
		psql: `ALTER SCHEMA shop RENAME TO store;
`,
		tables: []string{"store.customers", "store.orders"},
		check: func(t *testing.T) {
			expect(t, app, `SELECT count(*) FROM store.orders WHERE customer_id = 2`, "3")
			mustExec(t, app, `INSERT INTO store.customers (id, email) VALUES (21, 'new@example.com')`)
			expect(t, owner, `SELECT count(*) FROM store.customers`, "20")
		},
	}}

	cfg, err := pgx.ParseConfig(env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	files := fstest.MapFS{}
	for _, st := range steps {
		name := st.name
		t.Run(name, func(t *testing.T) {
			switch {
			case st.goose != "":
				files[name] = &fstest.MapFile{Data: []byte(st.goose)}
				runGoose(t, ctx, db, files)
			default:
				if out, err := psql(t, env.P, st.psql, "--single-transaction"); err != nil {
					t.Fatalf("psql: %v\n%s", err, out)
				}
			}
			checkMigrated(t, st.tables)
			if st.check != nil {
				st.check(t)
			}
			checkMigrated(t, st.tables)
		})
		if t.Failed() {
			return
		}
	}
}

// runGoose applies the pending migrations of files with goose.
func runGoose(t *testing.T, ctx context.Context, db *sql.DB, files fstest.MapFS) {
	t.Helper()
	p, err := goose.NewProvider(goose.DialectPostgres, db, files)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		t.Fatalf("goose up: %v", err)
	}
	if len(res) != 1 {
		t.Fatalf("goose applied %d migrations, want 1: %v", len(res), res)
	}
}
