package diff

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestExplain checks that EXPLAIN of distributed statements shows the distributed plan:
// the shards, how results merge, the SQL each shard gets and its own plan.
func TestExplain(t *testing.T) {
	ctx := context.Background()
	if err := loaded(ctx); err != nil {
		t.Fatalf("load: %v", err)
	}
	conn, err := pgx.Connect(ctx, proxyURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	k1 := configs[0].keys[0]
	for _, tc := range []struct {
		sql  string
		want []string
		// shards is the number of shard plans shown.
		shards int
	}{
		{"EXPLAIN SELECT * FROM d_int_8_2 WHERE k = " + k1, []string{"Shards: 1 of 8", "Merge: none", `Query: SELECT * FROM "public"."d_int_8_2_`, "Filter: (k = "}, 1},
		{"EXPLAIN SELECT id FROM d_int_8_2 ORDER BY id DESC LIMIT 3 OFFSET 1", []string{"Shards: 8 of 8", "ordered streams merged", "LIMIT 3 OFFSET 1", "(each shard: LIMIT 4)", "Tasks shown: one of 8", "AS pgshard_s1", "Sort Key: id DESC"}, 1},
		{"EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM d_int_8_2", []string{"partial aggregates", "coalesce(pg_catalog.sum(pgshard_p1), 0)::pg_catalog.int8", "actual time"}, 8},
		{"EXPLAIN SELECT grp, count(*) FROM d_int_8_2 GROUP BY grp", []string{"gathered into temporary tables", "Pull into pg_temp.pgshard_gather_1 from 8 shard(s)", "GROUP BY", "Coordinator Query:"}, 0},
		{"EXPLAIN ANALYZE SELECT grp, row_number() OVER (ORDER BY id) FROM d_int_8_2", []string{"gathered into temporary tables", "WindowAgg", "actual time"}, 0},
		{"EXPLAIN SELECT count(*) FROM d_int_8_2 t JOIN d_int_8_2_orders o ON o.k = t.k", []string{`co-located tables "d_int_8_2", "d_int_8_2_orders"`, "Tasks shown: one of 8", "Join"}, 1},
		{"EXPLAIN SELECT * FROM d_int_8_2 t JOIN d_other_5_1 o ON o.k = t.k", []string{"gathered on the coordinator", "Pull into pg_temp.pgshard_gather_2"}, 0},
		// A filter of one table narrows its copy and prunes its shards; the self join's
		// copy stays whole.
		{"EXPLAIN SELECT t.id, l.label FROM d_int_8_2 t JOIN lookup l ON l.grp = t.grp WHERE t.qty > 140 AND t.k = " + k1 + " AND l.grp > 1",
			[]string{"Pull into pg_temp.pgshard_gather_1 from 1 shard(s)", `"t" WHERE (t.qty > 140) AND (t.k = ` + k1 + ")"}, 0},
		{"EXPLAIN SELECT a.id FROM d_int_8_2 a JOIN d_int_8_2 b ON b.id = a.id + 1 WHERE a.qty > 140",
			[]string{"Pull into pg_temp.pgshard_gather_1 from 8 shard(s)"}, 0},
		// Outer joins: the preserved side, and a NULL-rejecting filter on the nullable
		// side, narrow; IS NULL on the nullable side does not.
		{"EXPLAIN SELECT t.id FROM d_int_8_2 t LEFT JOIN d_other_5_1 o ON o.k = t.k WHERE t.k = " + k1 + " AND o.val > 5 AND o.tag IS NULL",
			[]string{"gather_1 from 1 shard(s)", `"t" WHERE (t.k = ` + k1 + ")", `"o" WHERE (o.val > 5)`}, 0},
		{"EXPLAIN SELECT l.grp FROM lookup l LEFT JOIN d_int_8_2 t ON t.grp = l.grp WHERE t.id IS NULL",
			[]string{`Query: SELECT * FROM <shard of "d_int_8_2">` + "\n"}, 0},
		{"EXPLAIN UPDATE d_int_8_2_orders SET amount = 1 WHERE k = 7", []string{"Distributed UPDATE", "Shards: 1 of 8", "Update on d_int_8_2_orders_"}, 1},
	} {
		for _, m := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			rows, err := conn.Query(ctx, tc.sql, m)
			if err != nil {
				t.Errorf("%s: %v", tc.sql, err)
				continue
			}
			var lines []string
			for rows.Next() {
				var l string
				if err := rows.Scan(&l); err != nil {
					t.Fatal(err)
				}
				lines = append(lines, l)
			}
			if err := rows.Err(); err != nil {
				t.Errorf("%s: %v", tc.sql, err)
				continue
			}
			if fd := rows.FieldDescriptions(); len(fd) != 1 || fd[0].Name != "QUERY PLAN" {
				t.Errorf("%s: columns %v", tc.sql, fd)
			}
			out := strings.Join(lines, "\n")
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s: no %q in\n%s", tc.sql, w, out)
				}
			}
			if n := strings.Count(out, "->  Shard "); n != tc.shards {
				t.Errorf("%s: %d shard plans shown, want %d\n%s", tc.sql, n, tc.shards, out)
			}
		}
	}
	for _, sql := range []string{
		"EXPLAIN (FORMAT JSON) SELECT count(*) FROM d_int_8_2",
		"EXPLAIN ANALYZE DELETE FROM d_int_8_2_orders WHERE k = 1",
	} {
		_, err := conn.Exec(ctx, sql)
		if sqlstate(err) != "0A000" {
			t.Errorf("%s: want 0A000, got %v", sql, err)
		}
	}
}
