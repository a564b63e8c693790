package tests

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestArrayAndListParameters checks shard pruning and writes by key with parameters bound in
// binary by pgx: an array for = ANY($1), and several for IN and OR.
func TestArrayAndListParameters(t *testing.T) {
	conn := connect(t)
	table := uniqueName("anyarr")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k bigint NOT NULL, v text)", table), table, "k", 8, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, 100) g", table))
	ext, err := pgx.Connect(t.Context(), env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(t.Context())
	var n int
	if err := ext.QueryRow(t.Context(), fmt.Sprintf("SELECT count(*) FROM %s WHERE k = ANY($1)", table), []int64{1, 5, 99, 1000}).Scan(&n); err != nil || n != 3 {
		t.Errorf("ANY($1): %d %v", n, err)
	}
	var s string
	if err := ext.QueryRow(t.Context(), fmt.Sprintf("SELECT string_agg(v, ',' ORDER BY k) FROM %s WHERE k IN ($1, $2) OR k = $3", table), int64(7), int64(8), int64(9)).Scan(&s); err != nil || s != "v7,v8,v9" {
		t.Errorf("IN params: %q %v", s, err)
	}
	tag, err := ext.Exec(t.Context(), fmt.Sprintf("UPDATE %s SET v = $2 WHERE k = ANY($1)", table), []int64{2, 3}, "u")
	if err != nil || tag.String() != "UPDATE 2" {
		t.Errorf("UPDATE ANY: %v %v", tag, err)
	}
	checkPlacements(t, table, "hashint8(k)")
}
