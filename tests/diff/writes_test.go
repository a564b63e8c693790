package diff

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// writeTables are written by TestDiffWrites: one with a primary key and one without (the
// proxy identifies the rows a gathered UPDATE or DELETE changes by the key, or by every
// column).
var writeTables = []struct{ name, ddl, key string }{
	{"w_pk", "CREATE TABLE w_pk (k int NOT NULL, id int NOT NULL, grp int, amount int, note text, PRIMARY KEY (k, id))", "k"},
	{"w_nopk", "CREATE TABLE w_nopk (k text NOT NULL, id int, grp int, amount int, note text)", "k"},
}

// writeCorpus are statements run in order on both sides; after each, the statement's
// result (tag, RETURNING rows) and the whole table must agree. {w} is the table.
var writeCorpus = []string{
	"INSERT INTO {w} (k, id, grp, amount, note) SELECT k, id, grp, qty, note FROM d_int_8_2 WHERE id <= 600",
	"INSERT INTO {w} (k, id, grp, amount) SELECT o.k, o.id + 10000, 3, o.amount FROM d_int_8_2_orders o WHERE o.id % 7 = 0 AND o.k > 0",
	"INSERT INTO {w} (k, id, grp, amount) SELECT k, id + 20000, 4, 1 FROM {w} WHERE grp = 3 AND amount > 900 RETURNING k, id",
	"INSERT INTO {w} (k, id, grp, amount) VALUES (1, 30001, (SELECT max(grp) FROM d_int_8_2), (SELECT count(*) FROM d_other_5_1))",
	"UPDATE {w} SET amount = amount + 1 WHERE grp = 1",
	"UPDATE {w} w SET note = l.label FROM lookup l WHERE l.grp = w.grp AND w.amount > 50",
	"UPDATE {w} w SET amount = o.amount FROM d_int_8_2_orders o WHERE o.k::text = w.k::text AND o.id = 42",
	"UPDATE {w} SET amount = 0 WHERE k::text IN (SELECT k::text FROM d_other_5_1 WHERE val > 50) RETURNING k, id, amount",
	"UPDATE {w} w SET grp = -1 WHERE EXISTS (SELECT 1 FROM d_int_8_2 d WHERE d.id = w.id AND d.flag)",
	"WITH big AS (SELECT k FROM d_int_8_2_orders GROUP BY k HAVING count(*) > 2) UPDATE {w} w SET note = 'big' FROM big WHERE big.k::text = w.k::text",
	"UPDATE {w} SET amount = (SELECT min(amount) FROM d_int_8_2_orders) WHERE grp = 2 AND id < 100",
	"UPDATE {w} w SET amount = DEFAULT FROM lookup l WHERE l.grp = w.grp AND l.grp = 5",
	"DELETE FROM {w} w USING d_int_8_2_orders o WHERE o.k::text = w.k::text AND o.status = 'new' AND w.grp = 3",
	"DELETE FROM {w} WHERE id IN (SELECT id FROM d_int_8_2 WHERE cat = 'alpha') RETURNING k, id",
	"DELETE FROM {w} WHERE grp = (SELECT min(grp) FROM lookup) AND amount IS NOT NULL",
	"WITH gone AS (SELECT id FROM d_int_8_2 WHERE qty < -40) DELETE FROM {w} w USING gone WHERE gone.id = w.id",
	"DELETE FROM {w} WHERE k::text IN (SELECT k::text FROM d_int_8_2 WHERE false)",
	"UPDATE {w} w SET amount = w.amount FROM d_other_5_1 x WHERE false",
	// Keywords inside expressions and as aliases (clauses are located from the parse tree).
	"UPDATE {w} w SET amount = CASE WHEN w.grp IS DISTINCT FROM l.grp THEN 1 ELSE 2 END FROM lookup l WHERE l.grp = w.grp - 1 AND w.amount > 100",
	"INSERT INTO {w} (k, id, grp, amount) SELECT k, id + 40000 AS returning, grp AS for, qty AS from FROM d_int_8_2 WHERE id <= 20 AND grp IS DISTINCT FROM 3",
	"DELETE FROM {w} w USING lookup l WHERE (w.grp = l.grp AND l.label IS DISTINCT FROM 'group 1') AND CASE WHEN w.amount > 10 AND w.amount < 40 THEN true END RETURNING w.id AS from",
	"INSERT INTO {w} AS values (k, id, grp) VALUES (5, 50001, 1), (6, 50002, ((2))) RETURNING values.id AS values, values.grp IS DISTINCT FROM 1 AS from",
	"UPDATE {w} SET k = k WHERE id IN (SELECT 1)",
	"DELETE FROM {w} w USING nosuchtable n WHERE n.id = w.id",
}

// TestDiffWrites runs writes that read other tables (INSERT ... SELECT, UPDATE ... FROM,
// DELETE ... USING, subqueries, WITH) on a plain table and on distributed ones, and
// compares results and contents after every statement, then checks that the replicas of
// every shard hold the same rows.
func TestDiffWrites(t *testing.T) {
	ctx := context.Background()
	if err := loaded(ctx); err != nil {
		t.Fatalf("load: %v", err)
	}
	oracle := &side{name: "oracle", url: oracleURL()}
	proxy := &side{name: "proxy", url: proxyURL()}
	defer oracle.close()
	defer proxy.close()
	for _, wt := range writeTables {
		for _, s := range []*side{oracle, proxy} {
			if r := s.run(ctx, modes[0], wt.ddl, nil); r.err != nil {
				t.Fatalf("%s: %s: %v", s.name, wt.ddl, r.err)
			}
		}
		for _, q := range []string{
			fmt.Sprintf("select master_create_distributed_table('%s', '%s')", wt.name, wt.key),
			fmt.Sprintf("select master_create_worker_shards('%s', 6, 2)", wt.name),
		} {
			if r := proxy.run(ctx, modes[0], q, nil); r.err != nil {
				t.Fatalf("%s: %v", q, r.err)
			}
		}
	}
	for _, wt := range writeTables {
		for i, q := range writeCorpus {
			sql := strings.ReplaceAll(q, "{w}", wt.name)
			if strings.HasPrefix(q, "UPDATE {w} SET k = k") {
				// Changing the partition key is refused (even to itself).
				r := proxy.run(ctx, modes[i%3], sql, nil)
				if sqlstate(r.err) != "0A000" {
					t.Errorf("%s: %s: want 0A000, got %v", wt.name, sql, r.err)
				}
				continue
			}
			m := modes[i%3]
			o, p := oracle.run(ctx, m, sql, nil), proxy.run(ctx, m, sql, nil)
			if cause, detail := compare(o, p, false); cause != "" {
				t.Errorf("%s [%s]: %s\n%s: %s", wt.name, m.name, sql, cause, detail)
				continue
			}
			if p.err != nil {
				t.Logf("%s: %s: both fail with %s", wt.name, sql, sqlstate(p.err))
			} else {
				t.Logf("%s: %s: %s, %d rows returned", wt.name, sql, p.tag, len(p.rows))
			}
			all := "SELECT * FROM " + wt.name
			o, p = oracle.run(ctx, modes[0], all, nil), proxy.run(ctx, modes[0], all, nil)
			if cause, detail := compare(o, p, false); cause != "" {
				t.Errorf("%s: after %s\ntable contents: %s: %s", wt.name, sql, cause, detail)
			}
		}
		checkReplicas(ctx, t, wt.name)
	}
}

// checkReplicas compares the two placements of every shard of a table, on the workers.
func checkReplicas(ctx context.Context, t *testing.T, table string) {
	t.Helper()
	coord, err := pgx.Connect(ctx, env.C.Coordinator.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close(ctx)
	rows, err := coord.Query(ctx, `SELECT s.id, p.node_port FROM pgs_distribution_metadata.shard s
		JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = $1::regclass AND p.shard_state = 1 ORDER BY s.id, p.node_port`, table)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[int64][]string{}
	type placement struct {
		shard int64
		port  int
	}
	var ps []placement
	for rows.Next() {
		var p placement
		if err := rows.Scan(&p.shard, &p.port); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for _, p := range ps {
		for _, w := range env.C.Workers {
			if w.Port != p.port {
				continue
			}
			res, err := w.Exec(ctx, "postgres", fmt.Sprintf("SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM %s_%d t", table, p.shard))
			if err != nil {
				t.Fatal(err)
			}
			sums[p.shard] = append(sums[p.shard], string(res[0].Rows[0][0]))
		}
	}
	if len(sums) != 6 {
		t.Errorf("%s: %d shards with finalized placements, want 6", table, len(sums))
	}
	for shard, s := range sums {
		if len(s) != 2 || s[0] != s[1] {
			t.Errorf("%s: shard %d placements differ or are missing: %v", table, shard, s)
		}
	}
	if !t.Failed() {
		t.Logf("%s: 6 shards, both placements identical", table)
	}
}
