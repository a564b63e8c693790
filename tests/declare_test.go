package tests

import (
	"fmt"
	"strings"
	"testing"
)

// TestDeclareCursor checks SQL cursors over distributed tables (psycopg2's named cursors
// use them): DECLARE in a block, FETCH and MOVE in parts, two cursors and another
// gathered query in the same block, WITH HOLD outside a block, and PostgreSQL's error
// for a cursor without HOLD outside a block.
func TestDeclareCursor(t *testing.T) {
	conn := connect(t)
	table := uniqueName("decl")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, g * 2 FROM generate_series(1, 100) g", table))
	fetch := func(sql string) string {
		t.Helper()
		rows, err := conn.Query(t.Context(), sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var k int
			if err := rows.Scan(&k); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(k))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return strings.Join(out, ",")
	}
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf(`DECLARE "Named" CURSOR WITHOUT HOLD FOR SELECT k FROM %s WHERE v > 10 ORDER BY k`, table),
		fmt.Sprintf("DECLARE c2 SCROLL CURSOR FOR SELECT k FROM %s t WHERE t.k %% 10 = 0 ORDER BY k DESC", table))
	if got := fetch(`FETCH FORWARD 3 FROM "Named"`); got != "6,7,8" {
		t.Errorf("first fetch: %s", got)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s a JOIN %s b ON b.k = a.k + 1", table, table)); got != "99" {
		t.Errorf("a gather while the cursors are open: %s", got)
	}
	mustExec(t, conn, `MOVE FORWARD 90 IN "Named"`)
	if got := fetch(`FETCH ALL FROM "Named"`); got != "99,100" {
		t.Errorf("after MOVE: %s", got)
	}
	if got := fetch("FETCH 2 FROM c2"); got != "100,90" {
		t.Errorf("second cursor: %s", got)
	}
	if got := fetch("FETCH PRIOR FROM c2"); got != "100" {
		t.Errorf("scroll back: %s", got)
	}
	mustExec(t, conn, `CLOSE "Named"`, "COMMIT")
	// WITH HOLD outlives its transaction, also one the proxy opened.
	mustExec(t, conn, fmt.Sprintf("DECLARE h CURSOR WITH HOLD FOR SELECT k FROM %s WHERE k <= 3 ORDER BY k", table))
	if got := fetch("FETCH ALL FROM h"); got != "1,2,3" {
		t.Errorf("WITH HOLD: %s", got)
	}
	mustExec(t, conn, "CLOSE h")
	wantError(t, conn, fmt.Sprintf("DECLARE n CURSOR FOR SELECT k FROM %s", table), "25P01", "DECLARE CURSOR can only be used in transaction blocks")
}
