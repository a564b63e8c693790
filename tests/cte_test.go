package tests

import (
	"fmt"
	"testing"
)

// TestWritesAndWith checks INSERT ... SELECT with a WITH clause (evaluated once on the
// coordinator, also when it writes a coordinator table or reads the distributed one), and
// that writing a distributed table inside WITH is refused rather than applied to a
// temporary copy.
func TestWritesAndWith(t *testing.T) {
	conn := connect(t)
	table := uniqueName("wcte")
	local := uniqueName("wcte_local")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k int, v int)", local),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", table),
		fmt.Sprintf("INSERT INTO %s VALUES (5, 5), (6, 6)", local))
	state := func() string {
		t.Helper()
		return queryString(t, conn, fmt.Sprintf("SELECT (SELECT string_agg(k || ':' || v, ',' ORDER BY k) FROM %s) || ' | ' || (SELECT coalesce(string_agg(k || ':' || v, ',' ORDER BY k), '') FROM %s)", table, local))
	}
	for _, q := range []string{
		"WITH x AS (INSERT INTO %[1]s VALUES (3, 3) RETURNING *) SELECT count(*) FROM x",
		"WITH x AS (UPDATE %[1]s SET v = 10 WHERE k = 1 RETURNING *) SELECT count(*) FROM x",
		"WITH x AS (DELETE FROM %[1]s WHERE k = 2 RETURNING *) INSERT INTO %[2]s SELECT * FROM x",
		"SELECT * FROM %[2]s WHERE k IN (WITH y AS (DELETE FROM %[1]s RETURNING k) SELECT k FROM y)",
		"EXPLAIN WITH x AS (UPDATE %[1]s SET v = 10 WHERE k = 1 RETURNING *) SELECT count(*) FROM x",
	} {
		wantError(t, conn, fmt.Sprintf(q, table, local), "0A000", "")
	}
	if got := state(); got != "1:1,2:2 | 5:5,6:6" {
		t.Fatalf("after refused statements: %s", got)
	}
	for _, c := range []struct{ sql, tag string }{
		{"WITH x AS (SELECT * FROM %[2]s) INSERT INTO %[1]s SELECT k + 100, v FROM x", "INSERT 0 2"},
		{"WITH x AS (DELETE FROM %[2]s WHERE k = 5 RETURNING *) INSERT INTO %[1]s SELECT k + 200, v FROM x", "INSERT 0 1"},
		{"WITH d AS (SELECT k FROM %[1]s WHERE k < 3) INSERT INTO %[1]s (k, v) SELECT k + 300, 0 FROM d", "INSERT 0 2"},
	} {
		q := fmt.Sprintf(c.sql, table, local)
		tag, err := conn.Exec(t.Context(), q)
		if err != nil || tag.String() != c.tag {
			t.Errorf("%s: %v %v, want %s", q, tag, err, c.tag)
		}
	}
	if got := state(); got != "1:1,2:2,105:5,106:6,205:5,301:0,302:0 | 6:6" {
		t.Errorf("after INSERT ... SELECT with WITH: %s", got)
	}
	checkPlacements(t, table, "hashint4(k)")
}
