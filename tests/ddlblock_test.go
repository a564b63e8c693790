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

// ddlBlockScripts are transaction blocks that change a table's definition and then use
// it. Each line is a statement (%[1]s the table); "COPY <cols>|<rows>" copies rows in
// text form.
var ddlBlockScripts = map[string][]string{
	"add column": {
		"BEGIN",
		"ALTER TABLE %[1]s ADD COLUMN c int DEFAULT 5",
		"INSERT INTO %[1]s (k, v, c) VALUES ('a1', 1, 7)",
		"INSERT INTO %[1]s (k, v) VALUES ('a2', 2)",
		"INSERT INTO %[1]s VALUES ('a3', 3, 9)",
		"COPY k, c|a4\t11\na5\t12\n",
		"UPDATE %[1]s SET c = c + 100 WHERE k = 'a5'",
		"COMMIT",
	},
	"set default": {
		"BEGIN",
		"ALTER TABLE %[1]s ALTER COLUMN v SET DEFAULT 42",
		"INSERT INTO %[1]s (k) VALUES ('d1')",
		"ALTER TABLE %[1]s ALTER COLUMN v SET DEFAULT length(current_database()) + 1000",
		"INSERT INTO %[1]s (k) VALUES ('d2')",
		"COPY k|d3\n",
		"INSERT INTO %[1]s VALUES ('d4', DEFAULT)",
		"ALTER TABLE %[1]s ALTER COLUMN v DROP DEFAULT",
		"INSERT INTO %[1]s (k) VALUES ('d5')",
		"COMMIT",
	},
	"rename column": {
		"BEGIN",
		"ALTER TABLE %[1]s RENAME COLUMN v TO w",
		"INSERT INTO %[1]s (k, w) VALUES ('r1', 1)",
		"INSERT INTO %[1]s (k, v) VALUES ('r2', 2)",
		"ROLLBACK",
		"INSERT INTO %[1]s (k, v) VALUES ('r3', 3)",
		"BEGIN",
		"ALTER TABLE %[1]s RENAME COLUMN v TO w",
		"INSERT INTO %[1]s (k, w) VALUES ('r4', 4)",
		"COPY k, w|r5\t5\n",
		"SELECT k, w FROM %[1]s WHERE k = 'r4'",
		"COMMIT",
		"INSERT INTO %[1]s (k, w) VALUES ('r6', 6)",
	},
	"drop column": {
		"ALTER TABLE %[1]s ADD COLUMN x text DEFAULT 'x'",
		"BEGIN",
		"ALTER TABLE %[1]s DROP COLUMN x",
		"INSERT INTO %[1]s VALUES ('x1', 1)",
		"INSERT INTO %[1]s (k, v, x) VALUES ('x2', 2, 'no')",
		"ROLLBACK",
		"BEGIN",
		"ALTER TABLE %[1]s DROP COLUMN x",
		"INSERT INTO %[1]s VALUES ('x3', 3)",
		"COPY k, v|x4\t4\n",
		"COMMIT",
	},
	"savepoints": {
		"BEGIN",
		"ALTER TABLE %[1]s ADD COLUMN n1 int DEFAULT 1",
		"SAVEPOINT s1",
		"ALTER TABLE %[1]s ADD COLUMN n2 int DEFAULT 2",
		"INSERT INTO %[1]s (k, n1, n2) VALUES ('s1', 10, 20)",
		"ROLLBACK TO SAVEPOINT s1",
		"INSERT INTO %[1]s (k, n1, n2) VALUES ('s2', 10, 20)",
		"ROLLBACK TO SAVEPOINT s1",
		"INSERT INTO %[1]s (k, n1) VALUES ('s3', 11)",
		"INSERT INTO %[1]s (k) VALUES ('s4')",
		"SAVEPOINT s2",
		"ALTER TABLE %[1]s RENAME COLUMN n1 TO m1",
		"ALTER TABLE %[1]s ALTER COLUMN m1 SET DEFAULT 77",
		"INSERT INTO %[1]s (k) VALUES ('s5')",
		"RELEASE SAVEPOINT s2",
		"INSERT INTO %[1]s (k, m1) VALUES ('s6', 6)",
		"SAVEPOINT s3",
		"ALTER TABLE %[1]s DROP COLUMN m1",
		"INSERT INTO %[1]s VALUES ('s7', 7)",
		"ROLLBACK TO s3",
		"INSERT INTO %[1]s (k) VALUES ('s8')",
		"INSERT INTO %[1]s VALUES ('s9', 9, 99)",
		"COMMIT",
	},
	"cached statements": {
		"INSERT INTO %[1]s (k) VALUES ('c')",
		"SELECT k, v FROM %[1]s WHERE k = 'c' ORDER BY v",
		"BEGIN",
		"ALTER TABLE %[1]s ALTER COLUMN v SET DEFAULT length(current_database()) + 5",
		"ALTER TABLE %[1]s ADD COLUMN z int DEFAULT 3",
		"INSERT INTO %[1]s (k) VALUES ('c')",
		"SELECT k, v FROM %[1]s WHERE k = 'c' ORDER BY v",
		"SAVEPOINT a",
		"ALTER TABLE %[1]s DROP COLUMN z",
		"ALTER TABLE %[1]s ALTER COLUMN v SET DEFAULT 2",
		"INSERT INTO %[1]s (k) VALUES ('c')",
		"SELECT k, v FROM %[1]s WHERE k = 'c' ORDER BY v",
		"ROLLBACK TO SAVEPOINT a",
		"INSERT INTO %[1]s (k) VALUES ('c')",
		"INSERT INTO %[1]s (k, z) VALUES ('c', 33)",
		"SELECT k, v FROM %[1]s WHERE k = 'c' ORDER BY v",
		"COMMIT",
		"INSERT INTO %[1]s (k) VALUES ('c')",
		"SELECT k, v FROM %[1]s WHERE k = 'c' ORDER BY v",
	},
	"query string": {
		"BEGIN; ALTER TABLE %[1]s ADD COLUMN m int DEFAULT 4; INSERT INTO %[1]s (k, m) VALUES ('q1', 1); INSERT INTO %[1]s (k) VALUES ('q2'); COMMIT",
		"BEGIN; ALTER TABLE %[1]s RENAME COLUMN m TO mm; ALTER TABLE %[1]s ALTER COLUMN v SET DEFAULT length(current_database()); INSERT INTO %[1]s (k, mm) VALUES ('q3', 3); COMMIT",
	},
	"rollback": {
		"BEGIN",
		"ALTER TABLE %[1]s ADD COLUMN c int DEFAULT 5",
		"INSERT INTO %[1]s (k, c) VALUES ('b1', 1)",
		"ROLLBACK",
		"INSERT INTO %[1]s (k, c) VALUES ('b2', 2)",
		"INSERT INTO %[1]s VALUES ('b3', 3)",
		"BEGIN",
		"ALTER TABLE %[1]s ADD COLUMN c int DEFAULT 5",
		"INSERT INTO %[1]s (k, c) VALUES ('b4', 1)",
		"SELECT pg_catalog.length('x') / 0",
		"INSERT INTO %[1]s (k, c) VALUES ('b5', 1)",
		"ROLLBACK",
		"INSERT INTO %[1]s (k) VALUES ('b6')",
		"INSERT INTO %[1]s (k, c) VALUES ('b7', 2)",
	},
}

// runDDLBlockScript runs a script statement by statement and returns a transcript: each
// statement's SQLSTATE (or "ok" and its rows), then the table's rows.
func runDDLBlockScript(t *testing.T, conn *pgx.Conn, table string, script []string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, line := range script {
		var err error
		var rows [][]any
		if cols, data, ok := strings.Cut(line, "|"); ok && strings.HasPrefix(cols, "COPY ") {
			_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader(data), fmt.Sprintf("COPY %s (%s) FROM STDIN", table, strings.TrimPrefix(cols, "COPY ")))
		} else {
			var r pgx.Rows
			r, err = conn.Query(ctx, strings.ReplaceAll(line, "%[1]s", table))
			if err == nil {
				for r.Next() {
					vals, verr := r.Values()
					if verr != nil {
						err = verr
						break
					}
					rows = append(rows, vals)
				}
				r.Close()
				if err == nil {
					err = r.Err()
				}
			}
		}
		var pe *pgconn.PgError
		switch {
		case err == nil:
			fmt.Fprintf(&b, "%s: ok %v\n", line, rows)
		case errors.As(err, &pe):
			fmt.Fprintf(&b, "%s: %s\n", line, pe.Code)
		default:
			t.Fatalf("%s: %v", line, err)
		}
	}
	r, err := conn.Query(ctx, fmt.Sprintf("SELECT * FROM %s ORDER BY k", table))
	if err != nil {
		t.Fatalf("reading %s: %v", table, err)
	}
	for r.Next() {
		vals, err := r.Values()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "row %v\n", vals)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestDDLBlockPlansWithNewDefinition: inside a transaction block, statements after a
// schema change of a distributed table see the table as the change left it (new,
// renamed and dropped columns, new defaults), and a ROLLBACK or ROLLBACK TO a savepoint
// brings the old definition back, exactly as for a plain PostgreSQL table. Each script
// runs on a coordinator table directly and on a distributed table through pgshard, over
// the simple and the extended protocol.
func TestDDLBlockPlansWithNewDefinition(t *testing.T) {
	ctx := context.Background()
	dial := func(t *testing.T, url string) *pgx.Conn {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	for name, script := range ddlBlockScripts {
		for _, mode := range []string{"simple", "extended"} {
			t.Run(strings.ReplaceAll(name, " ", "_")+"/"+mode, func(t *testing.T) {
				coordURL, proxyURL := env.C.Coordinator.URL("postgres"), env.P.URL()
				if mode == "simple" {
					coordURL += "&default_query_exec_mode=simple_protocol"
					proxyURL = simpleURL(env.P)
				}
				coord, conn := dial(t, coordURL), dial(t, proxyURL)
				table := uniqueName("ddlblock")
				plain := table + "_plain"
				mustExec(t, coord, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", plain))
				defer coord.Exec(ctx, "DROP TABLE IF EXISTS "+plain)
				want := runDDLBlockScript(t, coord, plain, script)
				distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
				got := runDDLBlockScript(t, conn, table, script)
				if got != want {
					t.Fatalf("through pgshard:\n%s\nplain PostgreSQL:\n%s", got, want)
				}
				checkDefinitions(t, table, false)
			})
		}
	}
}
