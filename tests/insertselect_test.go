package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestInsertSelectInBatches checks INSERT ... SELECT whose source yields more rows than
// the proxy holds at a time (it reads the source through a cursor; the tests' proxy writes
// 10,000 rows a batch):
// every row arrives once on every placement, RETURNING returns each row, a failure in a
// late batch (a duplicate key, an error in the source query) leaves nothing behind, and
// inside a transaction block the rows stay invisible to others until COMMIT and vanish at
// ROLLBACK.
func TestInsertSelectInBatches(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("ins_sel")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k bigint PRIMARY KEY, v text, d timestamptz DEFAULT now())", table), table, "k", 8, 2)
	local := uniqueName("ins_src")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s AS SELECT g AS k, md5(g::text) AS v FROM generate_series(1, 35000) g", local))
	count := func(c *pgx.Conn) string {
		t.Helper()
		return queryString(t, c, fmt.Sprintf("SELECT count(*) || '/' || count(DISTINCT d) FROM %s", table))
	}

	// From a coordinator table, in four batches; the default is evaluated once.
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (k, v) SELECT k, v FROM %s", table, local))
	if got := count(conn); got != "35000/1" {
		t.Fatalf("after INSERT ... SELECT: count/distinct defaults %s, want 35000/1", got)
	}
	// From the distributed table itself (gathered), with RETURNING.
	rows, err := conn.Query(ctx, fmt.Sprintf("INSERT INTO %[1]s (k, v) SELECT k + 100000, v FROM %[1]s WHERE k <= 25000 RETURNING k", table))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		seen[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if tag := rows.CommandTag().String(); tag != "INSERT 0 25000" || len(seen) != 25000 {
		t.Fatalf("RETURNING: tag %q, %d distinct keys", tag, len(seen))
	}

	// A duplicate key in the third batch, and an error raised by the source query after
	// 30,000 rows: nothing of either statement stays.
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (k, v) SELECT k + 200000 - CASE WHEN k = 25000 THEN 200000 ELSE 0 END, v FROM %s", table, local), "23505", "")
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (k, v) SELECT k + 300000, (1 / (30000 - k))::text FROM %s", table, local), "22012", "")
	if got := count(conn); got != "60000/2" {
		t.Fatalf("after failed statements: %s, want 60000/2", got)
	}

	// Inside a block: invisible to another session until COMMIT, gone after ROLLBACK.
	other := connect(t)
	mustExec(t, conn, "BEGIN", fmt.Sprintf("INSERT INTO %s (k, v) SELECT k + 400000, v FROM %s", table, local))
	if got := count(other); got != "60000/2" {
		t.Errorf("another session sees %s during the block, want 60000/2", got)
	}
	if got := count(conn); got != "95000/3" {
		t.Errorf("the block sees %s, want 95000/3", got)
	}
	mustExec(t, conn, "ROLLBACK")
	mustExec(t, conn, "BEGIN", fmt.Sprintf("INSERT INTO %s (k, v) SELECT k + 500000, v FROM %s WHERE k <= 15000", table, local), "COMMIT")
	if got := count(other); got != "75000/3" {
		t.Errorf("after COMMIT: %s, want 75000/3", got)
	}
	if n := checkPlacements(t, table, "hashint8(k)"); n != 75000 {
		t.Errorf("the workers hold %d rows, want 75000", n)
	}

	// UPDATE ... FROM and DELETE ... USING that change more rows than a batch, joining
	// some rows twice: each row is changed, and counted, once.
	for _, c := range []struct{ sql, tag string }{
		{"UPDATE %[1]s SET v = 'u' || s.v FROM %[2]s s WHERE %[1]s.k = s.k", "UPDATE 35000"},
		{"UPDATE %[1]s SET v = 'twice' FROM %[2]s s WHERE %[1]s.k = s.k %% 20000 + 1", "UPDATE 20000"},
		{"DELETE FROM %[1]s USING %[2]s s WHERE %[1]s.k = s.k %% 25000 + 100001", "DELETE 25000"},
	} {
		q := fmt.Sprintf(c.sql, table, local)
		tag, err := conn.Exec(ctx, q)
		if err != nil || tag.String() != c.tag {
			t.Errorf("%s: %v %v, want %s", q, tag, err, c.tag)
		}
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FILTER (WHERE v = 'twice') || '/' || count(*) FILTER (WHERE v LIKE 'u%%') || '/' || count(*) FROM %s", table)); got != "20000/15000/50000" {
		t.Errorf("after UPDATE/DELETE: twice/u/all = %s, want 20000/15000/50000", got)
	}
	if n := checkPlacements(t, table, "hashint8(k)"); n != 50000 {
		t.Errorf("the workers hold %d rows, want 50000", n)
	}

	// Binary parameters (pgx's extended protocol) reach the source query and the shards.
	ext, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	tag, err := ext.Exec(ctx, fmt.Sprintf("INSERT INTO %s (k, v) SELECT k + $1, v || $3 FROM %s WHERE k <= $2", table, local), int64(700000), int64(12), "-ext")
	if err != nil || tag.String() != "INSERT 0 12" {
		t.Fatalf("INSERT ... SELECT with binary parameters: %v %v", tag, err)
	}
	var n int
	if err := ext.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE k > $1 AND v LIKE $2", table), int64(700000), "%-ext").Scan(&n); err != nil || n != 12 {
		t.Fatalf("rows from the binary-parameter INSERT: %d (%v)", n, err)
	}
	mustExec(t, conn, fmt.Sprintf("DELETE FROM %s WHERE k > 700000", table))

	// A copy of the table's definition (LIKE), distributed in turn and filled from it.
	cp := uniqueName("ins_copy")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (LIKE %s INCLUDING ALL)", cp, table), cp, "k", 3, 1)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT * FROM %s", cp, table))
	if a, b := count(conn), queryString(t, conn, fmt.Sprintf("SELECT count(*) || '/' || count(DISTINCT d) FROM %s", cp)); a != b {
		t.Errorf("copy holds %s, the table %s", b, a)
	}
	// LIKE with anything else of a distributed table is still refused.
	wantError(t, conn, fmt.Sprintf("CREATE TABLE %s (LIKE %s) INHERITS (%s)", uniqueName("x"), table, table), "0A000", "")
}

// TestMultiStatementStringIsOneTransaction checks that a query string of several
// statements touching distributed tables applies whole or not at all, as one implicit
// transaction does in PostgreSQL, and that strings calling pgshard's functions still run.
func TestMultiStatementStringIsOneTransaction(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("multi")
	local := uniqueName("multi_local")
	// Creating and distributing a table in one string runs statement by statement.
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %[1]s (k int PRIMARY KEY, v text); SELECT master_create_distributed_table('%[1]s', 'k'); SELECT master_create_worker_shards('%[1]s', 4, 2)", table))
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (a int)", local))
	counts := func() string {
		return queryString(t, conn, fmt.Sprintf("SELECT (SELECT count(*) FROM %s) || '/' || (SELECT count(*) FROM %s)", table, local))
	}
	for _, c := range []struct {
		sql, code, want string
	}{
		{"INSERT INTO %[1]s VALUES (1, 'a'), (2, 'b'); INSERT INTO %[2]s VALUES (1); UPDATE %[1]s SET v = 'c' WHERE k = 2", "", "2/1"},
		// A duplicate key in the last statement undoes the first two.
		{"INSERT INTO %[1]s VALUES (3, 'x'), (4, 'y'); INSERT INTO %[2]s VALUES (2); INSERT INTO %[1]s VALUES (1, 'dup')", "23505", "2/1"},
		// An error the proxy raises (a NULL partition key) undoes the statements before it.
		{"DELETE FROM %[1]s WHERE k = 1; INSERT INTO %[1]s VALUES (NULL, 'n')", "22004", "2/1"},
		{"DELETE FROM %[1]s; SELECT 1/0", "22012", "2/1"},
		{"DELETE FROM %[1]s WHERE k = 1; SELECT count(*) FROM %[1]s", "", "1/1"},
	} {
		q := fmt.Sprintf(c.sql, table, local)
		_, err := conn.Exec(ctx, q)
		if c.code == "" && err != nil || c.code != "" && (err == nil || !strings.Contains(err.Error(), c.code)) {
			t.Errorf("%s: %v, want %q", q, err, c.code)
		}
		if got := counts(); got != c.want {
			t.Errorf("after %s: %s rows, want %s", q, got, c.want)
		}
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT string_agg(k || v, ',') FROM %s", table)); got != "2c" {
		t.Errorf("rows %s, want 2c", got)
	}
	checkPlacements(t, table, "hashint4(k)")
}

// TestInsertSelectFewerExpressionsThanColumns checks INSERT without a column list whose
// SELECT (or VALUES) gives fewer expressions than the table has columns: PostgreSQL fills
// the first N columns in order and gives the rest their defaults (or NULL). pgshard named
// every column of the table in its source query and failed with an internal error
// ("pgshard_src has 3 columns available but 12 columns specified"). With a column list,
// too few or too many expressions are PostgreSQL's 42601 errors, and a partition key left
// to its default (NULL here) is pgshard's NULL partition key error.
func TestInsertSelectFewerExpressionsThanColumns(t *testing.T) {
	tbl := uniqueName("ins_few")
	src := uniqueName("ins_few_src")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, a text DEFAULT 'da', b int, c timestamptz DEFAULT '2020-01-01', d text)", tbl), tbl, "k", 4, 1)
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, fmt.Sprintf("CREATE TABLE %s (x int, y text, z int)", src),
			fmt.Sprintf("INSERT INTO %s SELECT g, 'y' || g, g * 10 FROM generate_series(1, 6) g", src))
	}
	all := fmt.Sprintf("SELECT k, a, b, c, d FROM %s ORDER BY k", tbl)
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("INSERT INTO %s SELECT x, y, z FROM %s WHERE x <= 2", tbl, src),
		fmt.Sprintf("INSERT INTO %s SELECT x + 10 FROM %s WHERE x <= 2", tbl, src),
		fmt.Sprintf("INSERT INTO %s SELECT 20, 'lit'", tbl),
		fmt.Sprintf("INSERT INTO %s SELECT x + 30, y FROM %s WHERE x = 1 UNION ALL SELECT 32, 'u'", tbl, src),
		fmt.Sprintf("INSERT INTO %s SELECT x + 40, y FROM %s WHERE x <= 2 RETURNING *", tbl, src),
		fmt.Sprintf("INSERT INTO %s VALUES (50), (51, 'v')", tbl),
		fmt.Sprintf("INSERT INTO %s SELECT * FROM (VALUES (60, 'w'), (61, 'w2')) v", tbl),
		// From the distributed table itself (gathered).
		fmt.Sprintf("INSERT INTO %[1]s SELECT k + 100, a FROM %[1]s WHERE k < 20", tbl),
		all,
		// With a column list: too few or too many expressions.
		fmt.Sprintf("INSERT INTO %s (k, a, b) SELECT x, y FROM %s", tbl, src),
		fmt.Sprintf("INSERT INTO %s (k, a) SELECT x + 200, y, z FROM %s", tbl, src),
		fmt.Sprintf("INSERT INTO %s (k, a, b) VALUES (300, 'x')", tbl),
		fmt.Sprintf("INSERT INTO %s (k) VALUES (301, 'x')", tbl),
		// Without one: more expressions than columns.
		fmt.Sprintf("INSERT INTO %s SELECT x + 400, y, z, now(), 'd', 'extra' FROM %s", tbl, src),
		fmt.Sprintf("INSERT INTO %s VALUES (401, 'a', 1, now(), 'd', 'extra')", tbl),
		all)

	// SELECT * from a distributed table, narrower or wider than the target; a generated
	// column among the first N.
	narrow, gen := uniqueName("ins_narrow"), uniqueName("ins_gen")
	for _, c := range []*pgx.Conn{proxy, plain} {
		ddl := []string{fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, a text)", narrow),
			fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, g int GENERATED ALWAYS AS (k * 2) STORED, v text)", gen)}
		if c == proxy {
			distribute(t, c, ddl[0], narrow, "k", 2, 1)
			distribute(t, c, ddl[1], gen, "k", 2, 1)
		} else {
			mustExec(t, c, ddl...)
		}
		mustExec(t, c, fmt.Sprintf("INSERT INTO %s VALUES (500, 'n1'), (501, 'n2')", narrow))
	}
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("INSERT INTO %s SELECT * FROM %s", tbl, narrow),
		fmt.Sprintf("INSERT INTO %s SELECT * FROM %s", narrow, tbl),
		fmt.Sprintf("INSERT INTO %s SELECT 1", gen),
		fmt.Sprintf("INSERT INTO %s SELECT 1, 2", gen),
		fmt.Sprintf("INSERT INTO %s (k, v) SELECT 3, 'x'", gen),
		fmt.Sprintf("SELECT k, g, v FROM %s ORDER BY k", gen),
		all)

	// The partition key left out: it is NULL, pgshard's error for a NULL partition key.
	key := uniqueName("ins_fewkey")
	kp := connect(t)
	distribute(t, kp, fmt.Sprintf("CREATE TABLE %s (v text, k int)", key), key, "k", 4, 1)
	wantError(t, kp, fmt.Sprintf("INSERT INTO %s SELECT 'x'", key), "22004", "")
	wantError(t, kp, fmt.Sprintf("INSERT INTO %s VALUES ('x')", key), "22004", "")
	wantError(t, kp, fmt.Sprintf("INSERT INTO %s SELECT FROM %s", tbl, src), "22004", "")
	// With a default, the default goes in.
	dk := uniqueName("ins_fewdef")
	distribute(t, kp, fmt.Sprintf("CREATE TABLE %s (v text, k int DEFAULT 7)", dk), dk, "k", 4, 1)
	mustExec(t, kp, fmt.Sprintf("INSERT INTO %s SELECT 'x'", dk), fmt.Sprintf("INSERT INTO %s VALUES ('y')", dk),
		fmt.Sprintf("INSERT INTO %s SELECT FROM %s WHERE x = 1", dk, src))
	if got := queryString(t, kp, fmt.Sprintf("SELECT string_agg(coalesce(v, '-') || k, ',' ORDER BY v) FROM %s", dk)); got != "x7,y7,-7" {
		t.Errorf("rows %s, want x7,y7,-7", got)
	}
}
