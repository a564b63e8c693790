package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestVolatileDefaultsEverywhere checks that serial, clock_timestamp() and
// gen_random_uuid() defaults get one value per row, the same on both placements, whether
// rows come by INSERT ... VALUES, COPY or INSERT ... SELECT.
func TestVolatileDefaultsEverywhere(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("serial")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, id bigserial, made timestamptz DEFAULT clock_timestamp(), u uuid DEFAULT gen_random_uuid())", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (k) VALUES (1), (2), (3)", table))
	_, err := conn.PgConn().CopyFrom(ctx, strings.NewReader("4\n5\n6\n7\n"), fmt.Sprintf("COPY %s (k) FROM STDIN", table))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (k) SELECT g FROM generate_series(8, 20) g", table))
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(DISTINCT id) || '/' || count(DISTINCT u) || '/' || count(*) FROM %s", table)); got != "20/20/20" {
		t.Errorf("distinct ids/uuids/rows: %s", got)
	}
	checkPlacements(t, table, "hashint4(k)")
}

// TestRecreatedTable checks that a statement text planned for a distributed table works
// again after the table is dropped and created anew (a new OID, another shard count).
func TestRecreatedTable(t *testing.T) {
	conn := connect(t)
	table := uniqueName("recreate")
	for round := 0; round < 2; round++ {
		distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", table), table, "k", 3+round, 1)
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, %d), (2, 2)", table, round))
		if got := queryString(t, conn, fmt.Sprintf("SELECT v FROM %s WHERE k = 1", table)); got != fmt.Sprint(round) {
			t.Errorf("round %d: %s", round, got)
		}
		if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s", table)); got != "2" {
			t.Errorf("round %d: count %s", round, got)
		}
		mustExec(t, conn, "DROP TABLE "+table)
	}
}

// TestSortedMergeEdgeValues checks the proxy's merge of ordered shard streams, and
// min/max partials, on the values whose order is special: NaN, -0, infinities, NULLs,
// time zones and intervals of equal length written differently.
func TestSortedMergeEdgeValues(t *testing.T) {
	conn := connect(t)
	table := uniqueName("floats")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, f float8, r real, n numeric, ts timestamptz, iv interval)", table), table, "k", 5, 1)
	plain := uniqueName("floats_plain")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, f float8, r real, n numeric, ts timestamptz, iv interval)", plain))
	vals := "(1, 'NaN', 'NaN', 'NaN', 'infinity', '1 day'), (2, '-0', '-0', '-0', '-infinity', '24 hours'), (3, '0', '0', '0.000', '2024-01-01 00:00+00', '-1 mon'), (4, 'Infinity', 'Infinity', 'Infinity', NULL, '30 days'), (5, '-Infinity', '-Infinity', '-Infinity', '2024-01-01 01:00+01', '1 mon'), (6, NULL, NULL, NULL, '2023-12-31 23:59:59.999999+00', NULL), (7, 1e-300, 1e-30, 1e-300, '1999-01-08 04:05:06', '1 year -12 mons'), (8, -1.5, -1.5, -1.50, '2038-01-19 03:14:08+00', '00:00:00.000001')"
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES %s", table, vals), fmt.Sprintf("INSERT INTO %s VALUES %s", plain, vals))
	for _, col := range []string{"f", "r", "n", "ts", "iv"} {
		for _, dir := range []string{"ASC", "DESC", "ASC NULLS FIRST", "DESC NULLS LAST"} {
			q := "SELECT string_agg(k::text, ',') FROM (SELECT k FROM %s ORDER BY " + col + " " + dir + ", k LIMIT 20) x"
			want := queryString(t, conn, fmt.Sprintf(q, plain))
			if got := queryString(t, conn, fmt.Sprintf(q, table)); got != want {
				t.Errorf("ORDER BY %s %s: pgshard %s, PostgreSQL %s", col, dir, got, want)
			}
		}
		if col == "iv" {
			// '1 mon' and '30 days' are equal: which one max returns depends on the
			// order it meets them, in PostgreSQL too.
			continue
		}
		q := "SELECT min(" + col + ")::text || '/' || max(" + col + ")::text FROM %s"
		want := queryString(t, conn, fmt.Sprintf(q, plain))
		if got := queryString(t, conn, fmt.Sprintf(q, table)); got != want {
			t.Errorf("min/max %s: pgshard %s, PostgreSQL %s", col, got, want)
		}
	}
}
