package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestSchemasAndQuotedNames runs the common statements on a distributed table in its own
// schema, with a mixed-case quoted table and key column, reached both qualified and
// through search_path, and compares the answers with a plain table of the same shape.
func TestSchemasAndQuotedNames(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	schema := uniqueName("Sales")
	q := func(s string) string { return strings.ReplaceAll(s, "@S", `"`+schema+`"`) }
	mustExec(t, conn, q(`CREATE SCHEMA @S`),
		q(`CREATE TABLE @S."Orders" ("Key" int NOT NULL, "Amount" int, note text, PRIMARY KEY ("Key"))`),
		q(`CREATE TABLE @S.plain ("Key" int NOT NULL, "Amount" int, note text, PRIMARY KEY ("Key"))`),
		q(`select master_create_distributed_table('@S."Orders"', 'Key')`),
		q(`select master_create_worker_shards('@S."Orders"', 6, 2)`))
	for _, tbl := range []string{`@S."Orders"`, `@S.plain`} {
		mustExec(t, conn, q(`INSERT INTO `+tbl+` SELECT g, g * 10, 'n' || g FROM generate_series(1, 300) g`),
			q(`UPDATE `+tbl+` SET "Amount" = "Amount" + 1 WHERE "Key" IN (3, 4, 5)`),
			q(`DELETE FROM `+tbl+` WHERE "Key" > 290`),
			q(`INSERT INTO `+tbl+` VALUES (1000, 1, 'x') ON CONFLICT ("Key") DO UPDATE SET note = 'y'`))
	}
	for _, sel := range []string{
		`SELECT count(*) || '/' || sum("Amount") FROM %s`,
		`SELECT note FROM %s WHERE "Key" = 4`,
		`SELECT string_agg("Key"::text, ',' ORDER BY "Key") FROM (SELECT "Key" FROM %s ORDER BY "Amount" DESC, "Key" LIMIT 5) x`,
		`SELECT count(*) FROM %s o JOIN pg_class c ON c.oid = o."Key"`,
		`SELECT sum(r) FROM (SELECT row_number() OVER (ORDER BY "Key") AS r FROM %s WHERE "Amount" < 500) x`,
	} {
		want := queryString(t, conn, fmt.Sprintf(sel, q(`@S.plain`)))
		if got := queryString(t, conn, fmt.Sprintf(sel, q(`@S."Orders"`))); got != want {
			t.Errorf("%s: pgshard %q, PostgreSQL %q", fmt.Sprintf(sel, q(`@S."Orders"`)), got, want)
		}
	}
	// Through search_path, unqualified.
	mustExec(t, conn, q(`SET search_path = @S, public`))
	defer mustExec(t, conn, `RESET search_path`)
	if got, want := queryString(t, conn, `SELECT count(*) FROM "Orders" WHERE "Key" < 50`), queryString(t, conn, `SELECT count(*) FROM plain WHERE "Key" < 50`); got != want {
		t.Errorf("through search_path: %s, want %s", got, want)
	}
	mustExec(t, conn, `INSERT INTO "Orders" SELECT "Key" + 2000, "Amount", note FROM plain WHERE "Key" <= 10`)
	wantError(t, conn, `INSERT INTO "Orders" VALUES (1, 1, 'dup')`, "23505", `duplicate key value violates unique constraint "Orders_pkey"`)
	if got := queryString(t, conn, `SELECT count(*) FROM "Orders"`); got != "301" {
		t.Errorf("rows %s, want 301", got)
	}
	var rows int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM "Orders" o JOIN plain p USING ("Key") WHERE o."Amount" > 100`).Scan(&rows); err != nil || rows != 280 {
		t.Errorf("join: %d rows (%v), want 280", rows, err)
	}
}
