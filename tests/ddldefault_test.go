package tests

import (
	"context"
	"fmt"
	"testing"
)

// TestDDLAddColumnComputedDefault: ADD COLUMN with a default that is not a constant but
// not volatile either (now(), current_user, current_date + 1), as migrations add
// timestamps: every existing row gets the one value the coordinator computed, on every
// placement, as PostgreSQL gives every existing row the same value; later INSERTs get
// the default evaluated anew; the definitions stay equal. A volatile default (random(),
// nextval()) is refused (0A000) and leaves nothing behind.
func TestDDLAddColumnComputedDefault(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("cdef")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, 40) g", table))

	perPlacement := func(sql string) map[string]bool {
		seen := map[string]bool{}
		for _, s := range shardsOf(t, table) {
			for _, p := range s.places {
				seen[queryString(t, connectServer(t, serverFor(p.port)), fmt.Sprintf(sql, fmt.Sprintf("%s_%d", table, s.id)))] = true
			}
		}
		return seen
	}

	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s ADD COLUMN created timestamptz NOT NULL DEFAULT now()", table))
	checkDefinitions(t, table, false)
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(DISTINCT created) FROM %s", table)); got != "1" {
		t.Fatalf("existing rows got %s different values of now()", got)
	}
	if seen := perPlacement("SELECT min(created)::text || '/' || max(created)::text FROM %s"); len(seen) != 1 {
		t.Fatalf("placements filled the column differently: %v", seen)
	}
	first := queryString(t, conn, fmt.Sprintf("SELECT min(created)::text FROM %s", table))
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (k, v) VALUES (100, 'new')", table))
	if got := queryString(t, conn, fmt.Sprintf("SELECT (created > '%s')::text FROM %s WHERE k = 100", first, table)); got != "true" {
		t.Fatalf("a later INSERT's default: %s", got)
	}

	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN who text DEFAULT current_user, ADD COLUMN due date DEFAULT current_date + 1", table),
		fmt.Sprintf("INSERT INTO %s (k, v) VALUES (101, 'in block')", table),
		"COMMIT")
	checkDefinitions(t, table, false)
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s WHERE who = current_user AND due = current_date + 1", table)); got != "42" {
		t.Fatalf("rows with the computed defaults: %s of 42", got)
	}
	if seen := perPlacement("SELECT count(*) FILTER (WHERE who IS NULL OR due IS NULL)::text FROM %s"); len(seen) != 1 || !seen["0"] {
		t.Fatalf("placements lack the computed values: %v", seen)
	}

	seq := table + "_seq"
	mustExec(t, conn, "CREATE SEQUENCE "+seq)
	for _, sql := range []string{
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN r float8 DEFAULT random()", table),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN n bigint DEFAULT nextval('%s')", table, seq),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN c timestamptz DEFAULT clock_timestamp()", table),
	} {
		wantError(t, conn, sql, "0A000", "")
	}
	var n int
	if err := connectServer(t, env.C.Coordinator).QueryRow(ctx, "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::regclass AND attname IN ('r', 'n', 'c')", table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a refused volatile default left %d columns (%v)", n, err)
	}
	checkDefinitions(t, table, false)
}
