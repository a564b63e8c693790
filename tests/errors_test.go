package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardErrorsNameTheTable checks that errors raised on a shard read as PostgreSQL
// would have written them for the distributed table: table, constraint and index names
// without the shard suffix, in the message and in the error's fields. Each statement runs
// against the distributed table through the proxy and against a plain table with the same
// definition on a worker, and the errors must match field by field.
func TestShardErrorsNameTheTable(t *testing.T) {
	ctx := context.Background()
	table := uniqueName("errnames")
	ddl := fmt.Sprintf(`CREATE TABLE %[1]s (k int PRIMARY KEY, v int NOT NULL CHECK (v >= 0), u text,
		CONSTRAINT %[1]s_u_key UNIQUE (u, k))`, table)
	conn := connect(t)
	distribute(t, conn, ddl, table, "k", 4, 2)
	// The plain table sits in its own schema on a worker, away from the shards' names
	// (PostgreSQL picks constraint names unique in a schema).
	plain := connectServer(t, env.C.Workers[0])
	mustExec(t, plain, "CREATE SCHEMA "+table, "SET search_path = "+table, ddl)
	setup := fmt.Sprintf("INSERT INTO %s VALUES (1, 1, 'a'), (2, 2, 'b')", table)
	mustExec(t, conn, setup)
	mustExec(t, plain, setup)

	for _, sql := range []string{
		"INSERT INTO %s VALUES (1, 5, 'z')",                             // primary key
		"INSERT INTO %s VALUES (3, -1, 'c')",                            // check
		"INSERT INTO %s VALUES (4, NULL, 'd')",                          // not null
		"INSERT INTO %s VALUES (2, 1, 'q') RETURNING k",                 // through RETURNING
		"UPDATE %s SET v = v - 10 WHERE k = 2",                          // check, by UPDATE
		"INSERT INTO %s (k, v, u) SELECT 1, 1, 'w' FROM (VALUES (1)) x", // INSERT ... SELECT
	} {
		q := fmt.Sprintf(sql, table)
		want := execError(ctx, plain, q)
		got := execError(ctx, conn, q)
		if want == nil || got == nil {
			t.Errorf("%s: PostgreSQL error %v, pgshard error %v", q, want, got)
			continue
		}
		if w, g := describePgError(want), describePgError(got); w != g {
			t.Errorf("%s:\nPostgreSQL: %s\npgshard:    %s", q, w, g)
		}
	}
	// Both placements of every shard took the same writes: no error above demoted one.
	if s := queryString(t, conn, fmt.Sprintf(
		"SELECT count(*) FROM pgs_distribution_metadata.shard_placement p JOIN pgs_distribution_metadata.shard s ON s.id = p.shard_id WHERE s.relation_id = '%s'::regclass AND p.shard_state <> 1", table)); s != "0" {
		t.Errorf("%s placements not finalized after the errors", s)
	}

	// A shard's notice, too: a function that names the relation a row comes from.
	fn := fmt.Sprintf(`CREATE FUNCTION %s_note(rel text) RETURNS bool LANGUAGE plpgsql AS
		$$ BEGIN RAISE NOTICE 'row of "%%"', rel; RETURN true; END $$`, table)
	mustExec(t, conn, fn)
	for _, w := range env.C.Workers {
		if _, err := w.Exec(ctx, "postgres", fn); err != nil {
			t.Fatal(err)
		}
	}
	var notices []string
	nconn := connectNotices(t, &notices)
	mustExec(t, nconn, fmt.Sprintf("SELECT k FROM %[1]s WHERE k = 1 AND %[1]s_note(tableoid::regclass::text)", table))
	// A write's notices come back with its result (from the first placement).
	mustExec(t, nconn, fmt.Sprintf("UPDATE %[1]s SET v = v WHERE k = 2 AND %[1]s_note(tableoid::regclass::text)", table))
	if want := fmt.Sprintf(`row of "%s"`, table); len(notices) != 2 || notices[0] != want || notices[1] != want {
		t.Errorf("notices %q, want [%q %q]", notices, want, want)
	}

	// ON CONFLICT names the constraint as the client knows it.
	for _, c := range []struct {
		sql string
		tag string
	}{
		{"INSERT INTO %s VALUES (1, 7, 'a') ON CONFLICT ON CONSTRAINT %s_pkey DO NOTHING", "INSERT 0 0"},
		{"INSERT INTO %s VALUES (1, 7, 'a') ON CONFLICT ON CONSTRAINT %s_u_key DO NOTHING", "INSERT 0 0"},
		{"INSERT INTO %s VALUES (2, 7, 'b') ON CONFLICT ON CONSTRAINT %s_pkey DO UPDATE SET v = excluded.v + 1", "INSERT 0 1"},
		{"INSERT INTO %s SELECT 1, 9, 'a' ON CONFLICT ON CONSTRAINT \"%s_pkey\" DO UPDATE SET v = 9", "INSERT 0 1"},
	} {
		q := fmt.Sprintf(c.sql, table, table)
		for _, cn := range []struct {
			name string
			conn *pgx.Conn
		}{{"PostgreSQL", plain}, {"pgshard", conn}} {
			tag, err := cn.conn.Exec(ctx, q)
			if err != nil || tag.String() != c.tag {
				t.Errorf("%s on %s: %v %v", q, cn.name, tag, err)
			}
		}
	}
	if a, b := queryString(t, plain, "SELECT string_agg(k || ':' || v, ' ' ORDER BY k) FROM "+table),
		queryString(t, conn, "SELECT string_agg(k || ':' || v, ' ' ORDER BY k) FROM "+table); a != b {
		t.Errorf("rows after ON CONFLICT: PostgreSQL %s, pgshard %s", a, b)
	}

	// A unique constraint without the partition column could be broken across shards:
	// distributing such a table is refused.
	for _, def := range []string{"UNIQUE (u)", "PRIMARY KEY (u)", "EXCLUDE USING hash (u WITH =)"} {
		other := uniqueName("uniq")
		mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k int, u text, %s)", other, def))
		wantError(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'k')", other), "0A000", "")
	}
	ok := uniqueName("uniq")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k int, u text, UNIQUE (u, k), EXCLUDE USING btree (k WITH =))", ok),
		fmt.Sprintf("select master_create_distributed_table('%s', 'k')", ok))
}

// connectNotices opens a connection to the proxy that appends the notices it receives.
func connectNotices(t testing.TB, notices *[]string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(simpleURL(env.P))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { *notices = append(*notices, n.Message) }
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// execError runs sql and returns its PostgreSQL error, nil if it succeeded.
func execError(ctx context.Context, conn interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, sql string) *pgconn.PgError {
	_, err := conn.Exec(ctx, sql)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// describePgError lists the fields a client sees (positions aside, and schema names,
// which the coordinator and worker may qualify differently).
func describePgError(e *pgconn.PgError) string {
	return strings.Join([]string{e.Severity, e.Code, e.Message, e.Detail, e.Hint, e.TableName, e.ColumnName, e.ConstraintName, e.DataTypeName}, " | ")
}
