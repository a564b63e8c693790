package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// reviewsDDL creates a pg_shard README-style table.
func reviewsDDL(table string) string {
	return fmt.Sprintf(`CREATE TABLE %s (
	customer_id TEXT NOT NULL,
	review_date DATE,
	review_rating INTEGER,
	review_votes INTEGER,
	product_id CHAR(10),
	product_title TEXT,
	similar_product_ids CHAR(10)[])`, table)
}

// reviewRows returns multi-row INSERT statements for n deterministic rows; customers
// repeat (3000 distinct keys) and titles contain quotes.
func reviewRows(table string, n, perStmt int) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i%perStmt == 0 {
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
			fmt.Fprintf(&b, "INSERT INTO %s VALUES ", table)
		} else {
			b.WriteString(", ")
		}
		title := fmt.Sprintf("Book %d", i%977)
		if i%50 == 0 {
			title = fmt.Sprintf("It''s book %d", i)
		}
		fmt.Fprintf(&b, "('C%d', date '2020-01-01' + %d, %d, %d, 'P%07d', '%s', '{P%07d,P%07d}')",
			i%3000, i%365, i%5+1, i%17, i%100000, title, (i+1)%100000, (i+2)%100000)
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// shardInfo is a shard with its range and placements, read from the metadata.
type shardInfo struct {
	id       int64
	min, max int32
	places   []placementInfo
}

type placementInfo struct {
	id    int64
	state int
	host  string
	port  int
}

// shardsOf reads a table's shards from the coordinator's metadata directly.
func shardsOf(t testing.TB, table string) []shardInfo {
	t.Helper()
	conn := connectServer(t, env.C.Coordinator)
	rows, err := conn.Query(context.Background(), `
		SELECT s.id, s.min_value::int, s.max_value::int, p.id, p.shard_state, p.node_name, p.node_port
		FROM pgs_distribution_metadata.shard s
		JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
		WHERE s.relation_id = $1::regclass ORDER BY s.id, p.id`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []shardInfo
	for rows.Next() {
		var s shardInfo
		var p placementInfo
		if err := rows.Scan(&s.id, &s.min, &s.max, &p.id, &p.state, &p.host, &p.port); err != nil {
			t.Fatal(err)
		}
		if len(out) == 0 || out[len(out)-1].id != s.id {
			out = append(out, s)
		}
		out[len(out)-1].places = append(out[len(out)-1].places, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// placementDigest is what a placement holds: row count, rows outside the shard's hash
// range (computed by the worker's PostgreSQL) and a digest of the ordered rows.
type placementDigest struct {
	rows, misplaced int64
	digest          string
}

func digestPlacement(t testing.TB, table, hashExpr string, s shardInfo, p placementInfo) placementDigest {
	t.Helper()
	srv := serverFor(p.port)
	if srv == nil {
		t.Fatalf("no worker on port %d", p.port)
	}
	conn := connectServer(t, srv)
	var d placementDigest
	q := fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE NOT (%s BETWEEN %d AND %d)),
		coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM %s_%d x`, hashExpr, s.min, s.max, table, s.id)
	if err := conn.QueryRow(context.Background(), q).Scan(&d.rows, &d.misplaced, &d.digest); err != nil {
		t.Fatalf("%s on %s: %v", q, srv.Name, err)
	}
	return d
}

// checkPlacements verifies on the workers that every row of table sits in the shard whose
// range holds PostgreSQL's hash of its key, and that all finalized placements of a shard
// are identical. It returns the total number of rows.
func checkPlacements(t testing.TB, table, hashExpr string) int64 {
	t.Helper()
	var total int64
	for _, s := range shardsOf(t, table) {
		var first *placementDigest
		for _, p := range s.places {
			if p.state != 1 {
				continue
			}
			d := digestPlacement(t, table, hashExpr, s, p)
			if d.misplaced != 0 {
				t.Errorf("shard %d placement %d: %d rows outside [%d, %d]", s.id, p.id, d.misplaced, s.min, s.max)
			}
			if first == nil {
				first = &d
				total += d.rows
			} else if d != *first {
				t.Errorf("shard %d: placement %d (%d rows, %s) differs from its sibling (%d rows, %s)", s.id, p.id, d.rows, d.digest, first.rows, first.digest)
			}
		}
	}
	return total
}

// TestPsqlSession is the user's story: psql through the proxy, a table distributed over 4
// workers in 16 shards with 2 placements each, 10,000 rows, reads and writes, metadata and
// admin statements; then the workers are checked directly.
func TestPsqlSession(t *testing.T) {
	table := uniqueName("customer_reviews")
	var script strings.Builder
	script.WriteString(reviewsDDL(table) + ";\n")
	fmt.Fprintf(&script, "select master_create_distributed_table('%s', 'customer_id');\n", table)
	fmt.Fprintf(&script, "select master_create_worker_shards('%s', 16, 2);\n", table)
	for _, ins := range reviewRows(table, 10000, 500) {
		script.WriteString(ins + ";\n")
	}
	fmt.Fprintf(&script, `\echo COUNT
select count(*) from %[1]s;
\echo ONE
select customer_id, review_rating, product_title from %[1]s where customer_id = 'C123' order by review_date;
\echo UPDATE
UPDATE %[1]s SET review_votes = review_votes + 100 WHERE customer_id = 'C123';
\echo DELETE
DELETE FROM %[1]s WHERE customer_id = 'C7';
\echo AFTER
select count(*), sum(review_votes), min(review_date), max(review_rating) from %[1]s;
\echo META
select count(*) from pgs_distribution_metadata.shard_placement p join pgs_distribution_metadata.shard s on s.id = p.shard_id where s.relation_id = '%[1]s'::regclass;
\echo NODES
SHOW NODES;
\echo SHARDS
SHOW SHARDS %[1]s;
\echo PLACEMENTS
SHOW PLACEMENTS;
\echo DESCRIBE
\d %[1]s
`, table)
	out, err := psql(t, env.P, script.String(), "-A", "-t", "-F", "|")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	sections := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		switch line {
		case "COUNT", "ONE", "UPDATE", "DELETE", "AFTER", "META", "NODES", "SHARDS", "PLACEMENTS", "DESCRIBE":
			cur = line
			continue
		}
		if line != "" {
			sections[cur] = append(sections[cur], line)
		}
	}
	if got := strings.Join(sections["COUNT"], ","); got != "10000" {
		t.Errorf("count = %q, want 10000\n%s", got, out)
	}
	// C123 appears for i = 123, 3123, 6123, 9123.
	if n := len(sections["ONE"]); n != 4 {
		t.Errorf("rows of C123 = %d, want 4: %v", n, sections["ONE"])
	} else if !strings.HasPrefix(sections["ONE"][0], "C123|4|") {
		t.Errorf("C123 row = %q", sections["ONE"][0])
	}
	if got := strings.Join(sections["AFTER"], ","); !strings.HasPrefix(got, "9996|") {
		t.Errorf("after DELETE of C7's 4 rows: %q", got)
	}
	if got := strings.Join(sections["META"], ","); got != "32" {
		t.Errorf("placements = %q, want 32", got)
	}
	if n := len(sections["NODES"]); n < 4 {
		t.Errorf("SHOW NODES: %v", sections["NODES"])
	}
	if n := len(sections["SHARDS"]); n != 16 {
		t.Errorf("SHOW SHARDS: %d rows, want 16: %v", n, sections["SHARDS"])
	}
	if !strings.Contains(strings.Join(sections["DESCRIBE"], "\n"), "customer_id|text") {
		t.Errorf("\\d: %v", sections["DESCRIBE"])
	}

	// Sum of votes: the oracle is the same arithmetic.
	var want int64
	for i := 0; i < 10000; i++ {
		if i%3000 == 7 {
			continue
		}
		want += int64(i % 17)
		if i%3000 == 123 {
			want += 100
		}
	}
	if !strings.HasPrefix(sections["AFTER"][0], fmt.Sprintf("9996|%d|2020-01-01|5", want)) {
		t.Errorf("after: %q, want sum %d", sections["AFTER"][0], want)
	}

	// On the workers: rows in the right shards, placements identical, nothing lost.
	if total := checkPlacements(t, table, "hashtext(customer_id)"); total != 9996 {
		t.Errorf("rows on workers = %d, want 9996", total)
	}
	// The coordinator's prototype table stays empty.
	coord := connectServer(t, env.C.Coordinator)
	if n := queryString(t, coord, "select count(*)::text from "+table); n != "0" {
		t.Errorf("coordinator prototype holds %s rows", n)
	}
	shards := shardsOf(t, table)
	if len(shards) != 16 {
		t.Fatalf("%d shards", len(shards))
	}
	for i, s := range shards {
		if len(s.places) != 2 {
			t.Errorf("shard %d has %d placements", s.id, len(s.places))
		}
		// Placement k of shard i is on node (i+k) mod 4 of the sorted nodes.
		for k, p := range s.places {
			w := sortedWorkers()[(i+k)%4]
			if p.port != w.Port {
				t.Errorf("shard %d placement %d on port %d, want %d", s.id, k, p.port, w.Port)
			}
		}
	}
}

// sortedWorkers returns the workers ordered as pg_shard orders nodes (name, then port).
func sortedWorkers() []*cluster.Server {
	ws := append([]*cluster.Server(nil), env.C.Workers...)
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j].Port < ws[j-1].Port; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
	return ws
}

// distribute creates a table through the proxy and distributes it.
func distribute(t testing.TB, conn *pgx.Conn, ddl, table, column string, shards, rf int) {
	t.Helper()
	mustExec(t, conn, ddl,
		fmt.Sprintf("select master_create_distributed_table('%s', '%s')", table, column),
		fmt.Sprintf("select master_create_worker_shards('%s', %d, %d)", table, shards, rf))
}

// wantError runs sql and checks the SQLSTATE (and, if given, the message).
func wantError(t testing.TB, conn *pgx.Conn, sql, code, msg string) {
	t.Helper()
	_, err := conn.Exec(context.Background(), sql)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Errorf("%s: got %v, want error %s", sql, err, code)
		return
	}
	if pe.Code != code || (msg != "" && pe.Message != msg) {
		t.Errorf("%s: got %s %q, want %s %q", sql, pe.Code, pe.Message, code, msg)
	}
	// The connection keeps serving.
	if s := queryString(t, conn, "select 'still here'"); s != "still here" {
		t.Errorf("connection broken after error")
	}
}

// TestBadInput checks that bad input gets PostgreSQL-style errors with the right SQLSTATE
// and pg_shard's texts, and that the connection keeps working.
func TestBadInput(t *testing.T) {
	conn := connect(t)
	table := uniqueName("bad")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (id int NOT NULL, j json, iv interval, v int)", table))
	wantError(t, conn, "select master_create_distributed_table('no_such_table', 'id')", "42P01", `relation "no_such_table" does not exist`)
	wantError(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'nope')", table), "42703",
		fmt.Sprintf(`column "nope" of relation "%s" does not exist`, table))
	wantError(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'j')", table), "42704",
		"data type json has no default operator class for specified partition method")
	wantError(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'iv')", table), "0A000",
		"pgshard cannot hash values of type interval")
	wantError(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'id', 'x')", table), "22023",
		"unrecognized table partition type: x")
	wantError(t, conn, fmt.Sprintf("select master_create_worker_shards('%s', 4, 1)", table), "42704",
		fmt.Sprintf(`no partition column is defined for relation "%s"`, table))
	mustExec(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", table))
	wantError(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", table), "42710", "")
	wantError(t, conn, fmt.Sprintf("select master_create_worker_shards('%s', 0, 1)", table), "22023", "shard_count must be positive")
	wantError(t, conn, fmt.Sprintf("select master_create_worker_shards('%s', 4, 0)", table), "22023", "replication_factor must be positive")
	wantError(t, conn, fmt.Sprintf("select master_create_worker_shards('%s', 4, 5)", table), "22023", "replication_factor (5) exceeds number of worker nodes (4)")
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (id) VALUES (1)", table), "55000", "could not find any shards for query")
	mustExec(t, conn, fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", table))
	wantError(t, conn, fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", table), "55000",
		fmt.Sprintf(`table "%s" has already had shards created for it`, table))
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (NULL, 1)", table), "22004", "cannot plan INSERT using row with NULL value in partition column")
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (v) VALUES (1)", table), "22004", "cannot plan INSERT using row with NULL value in partition column")
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (id) VALUES ('abc')", table), "22P02", `invalid input syntax for type integer: "abc"`)
	wantError(t, conn, fmt.Sprintf("UPDATE %s SET id = 2 WHERE id = 1", table), "0A000", "modifying the partition value of rows is not allowed")
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s (id, nope) VALUES (1, 1)", table), "42703", "")
	wantError(t, conn, fmt.Sprintf("SELEC * FROM %s", table), "42601", `syntax error at or near "SELEC"`)
	wantError(t, conn, fmt.Sprintf("SELECT nope FROM %s WHERE id = 1", table), "42703", `column "nope" does not exist`)
	wantError(t, conn, fmt.Sprintf("SELECT nope FROM %s", table), "42703", `column "nope" does not exist`)
	wantError(t, conn, "select master_add_node('localhost', 1)", "08006", "")
	// A duplicate key on a replicated shard is the client's error and demotes nothing.
	uniq := uniqueName("uniq")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text)", uniq), uniq, "id", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 'a')", uniq))
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 'b')", uniq), "23505", "")
	for _, s := range shardsOf(t, uniq) {
		for _, p := range s.places {
			if p.state != 1 {
				t.Errorf("placement %d of shard %d is in state %d after a duplicate key", p.id, s.id, p.state)
			}
		}
	}
}

// TestGarbageOnPort sends bytes that are not the PostgreSQL protocol; the proxy refuses
// that connection and keeps serving others.
func TestGarbageOnPort(t *testing.T) {
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef},
		{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0},
		{0, 0, 0, 9, 0, 3, 0, 0, 'u'},
	} {
		nc, err := net.DialTimeout("tcp", env.P.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		nc.Write(junk)
		buf := make([]byte, 4096)
		n, _ := nc.Read(buf)
		if n > 0 && buf[0] != 'E' {
			t.Errorf("junk %q: answer starts with %q, want an ErrorResponse or nothing", junk, buf[0])
		}
		nc.Close()
	}
	conn := connect(t)
	if s := queryString(t, conn, "select 'ok'"); s != "ok" {
		t.Fatal("proxy stopped serving")
	}
}

// TestPassthrough checks that statements touching no distributed table behave as on
// plain PostgreSQL.
func TestPassthrough(t *testing.T) {
	conn := connect(t)
	local := uniqueName("local")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (a int primary key, b text)", local),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'one'), (2, 'two')", local))
	if got := queryString(t, conn, fmt.Sprintf("select string_agg(b, ',' order by a) from %s", local)); got != "one,two" {
		t.Errorf("got %q", got)
	}
	// A multi-statement string is one implicit transaction, as in PostgreSQL.
	_, err := conn.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES (3, 'three'); SELECT 1/0", local))
	if err == nil {
		t.Fatal("division by zero did not fail")
	}
	if got := queryString(t, conn, fmt.Sprintf("select count(*)::text from %s", local)); got != "2" {
		t.Errorf("rows after failed implicit transaction = %s, want 2", got)
	}
	mustExec(t, conn, "SET work_mem = '8MB'")
	if got := queryString(t, conn, "SHOW work_mem"); got != "8MB" {
		t.Errorf("work_mem = %s", got)
	}
	if got := queryString(t, conn, "select relkind::text from pg_class where relname = $1", local); got != "r" {
		t.Errorf("catalog query: %s", got)
	}
	out, err := psql(t, env.P, fmt.Sprintf("\\d %s\n\\dt %s\n", local, local))
	if err != nil || !strings.Contains(out, "not null") || !strings.Contains(out, local) {
		t.Errorf("psql \\d: %v\n%s", err, out)
	}
	wantError(t, conn, "select * from no_such_table", "42P01", `relation "no_such_table" does not exist`)
}

// TestWrites covers multi-row INSERT split by shard, UPDATE and DELETE by key and across
// shards (with summed counts), RETURNING, and the aggregates that must already be right.
func TestWrites(t *testing.T) {
	conn := connect(t)
	table := uniqueName("writes")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k bigint NOT NULL, v int, s text)", table), table, "k", 8, 2)
	var vals []string
	for i := 1; i <= 1000; i++ {
		vals = append(vals, fmt.Sprintf("(%d, %d, 's%d')", i, i%10, i))
	}
	tag, err := conn.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES %s", table, strings.Join(vals, ",")))
	if err != nil || tag.String() != "INSERT 0 1000" {
		t.Fatalf("insert: %v %v", tag, err)
	}
	tag, err = conn.Exec(context.Background(), fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE v = 3", table))
	if err != nil || tag.String() != "UPDATE 100" {
		t.Errorf("multi-shard update: %v %v", tag, err)
	}
	tag, err = conn.Exec(context.Background(), fmt.Sprintf("DELETE FROM %s WHERE k IN (1, 2, 3, 500)", table))
	if err != nil || tag.String() != "DELETE 4" {
		t.Errorf("delete by keys: %v %v", tag, err)
	}
	var s string
	if err := conn.QueryRow(context.Background(), fmt.Sprintf("UPDATE %s SET s = 'changed' WHERE k = 42 RETURNING s || '!'", table)).Scan(&s); err != nil || s != "changed!" {
		t.Errorf("update returning: %q %v", s, err)
	}
	var cnt, sum, min, max int64
	var avg string
	if err := conn.QueryRow(context.Background(), fmt.Sprintf("select count(*), sum(v), min(k), max(k), avg(v)::text from %s", table)).Scan(&cnt, &sum, &min, &max, &avg); err != nil {
		t.Fatal(err)
	}
	// The oracle: the same rows in a plain table on the coordinator.
	oracle := uniqueName("oracle")
	coord := connectServer(t, env.C.Coordinator)
	mustExec(t, coord, fmt.Sprintf("CREATE TABLE %s (k bigint, v int, s text)", oracle),
		fmt.Sprintf("INSERT INTO %s VALUES %s", oracle, strings.Join(vals, ",")),
		fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE v = 3", oracle),
		fmt.Sprintf("DELETE FROM %s WHERE k IN (1, 2, 3, 500)", oracle))
	var ocnt, osum, omin, omax int64
	var oavg string
	if err := coord.QueryRow(context.Background(), fmt.Sprintf("select count(*), sum(v), min(k), max(k), avg(v)::text from %s", oracle)).Scan(&ocnt, &osum, &omin, &omax, &oavg); err != nil {
		t.Fatal(err)
	}
	if cnt != ocnt || sum != osum || min != omin || max != omax || avg != oavg {
		t.Errorf("aggregates (%d %d %d %d %s) differ from PostgreSQL's (%d %d %d %d %s)", cnt, sum, min, max, avg, ocnt, osum, omin, omax, oavg)
	}
	if total := checkPlacements(t, table, "hashint8(k)"); total != 996 {
		t.Errorf("rows on workers = %d, want 996", total)
	}
	// Zero-shard statements answer from the empty prototype.
	if got := queryString(t, conn, fmt.Sprintf("select count(*)::text from %s where k = 1 and k = 2", table)); got != "0" {
		t.Errorf("contradictory WHERE: %s", got)
	}
	tag, err = conn.Exec(context.Background(), fmt.Sprintf("DELETE FROM %s WHERE k = 1 AND k = 2", table))
	if err != nil || tag.String() != "DELETE 0" {
		t.Errorf("zero-shard delete: %v %v", tag, err)
	}
	// LIMIT across shards.
	rows, err := conn.Query(context.Background(), fmt.Sprintf("select k from %s limit 7 offset 3", table))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Err() != nil || n != 7 {
		t.Errorf("limit 7 offset 3: %d rows, %v", n, rows.Err())
	}
}

// TestTwoProxies checks that a second proxy learns of metadata changes made through the
// first (LISTEN/NOTIFY) and routes the same way.
func TestTwoProxies(t *testing.T) {
	ctx := context.Background()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	a, b := connect(t), connectTo(t, p2)
	table := uniqueName("twoproxies")
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
	// Proxy 2 must route the new table once the notification arrives.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := b.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ('x', 1), ('y', 2), ('z', 3)", table))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy 2 never learned of the table: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := queryString(t, a, fmt.Sprintf("select sum(v)::text from %s", table)); got != "6" {
		t.Errorf("sum through proxy 1 = %s", got)
	}
	coord := connectServer(t, env.C.Coordinator)
	if got := queryString(t, coord, fmt.Sprintf("select count(*)::text from %s", table)); got != "0" {
		t.Errorf("proxy 2 wrote %s rows to the coordinator's prototype", got)
	}
	if total := checkPlacements(t, table, "hashtext(k)"); total != 3 {
		t.Errorf("rows on workers = %d", total)
	}
}

// TestDropTable drops a distributed table: shards, metadata and prototype go.
func TestDropTable(t *testing.T) {
	conn := connect(t)
	table := uniqueName("dropme")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1), (2)", table))
	shards := shardsOf(t, table)
	mustExec(t, conn, "DROP TABLE "+table)
	coord := connectServer(t, env.C.Coordinator)
	if got := queryString(t, coord, "select count(*)::text from pgs_distribution_metadata.shard s where not exists (select 1 from pg_class c where c.oid = s.relation_id)"); got != "0" {
		t.Errorf("%s orphaned shard rows", got)
	}
	for _, s := range shards {
		for _, p := range s.places {
			w := connectServer(t, serverFor(p.port))
			if got := queryString(t, w, fmt.Sprintf("select count(*)::text from pg_class where relname = '%s_%d'", table, s.id)); got != "0" {
				t.Errorf("shard table %s_%d still on port %d", table, s.id, p.port)
			}
		}
	}
	wantError(t, conn, "select * from "+table, "42P01", "")
}

// TestConcurrentMultiShardWrites: writes to several shards run in a transaction on each
// placement; two of them at once must not deadlock across workers (even without
// replication), and every increment counts.
func TestConcurrentMultiShardWrites(t *testing.T) {
	conn := connect(t)
	table := uniqueName("multiw")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", table), table, "k", 8, 1)
	var vals []string
	for i := 1; i <= 40; i++ {
		vals = append(vals, fmt.Sprintf("(%d, 0)", i))
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES %s", table, strings.Join(vals, ",")))
	done := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			c, err := pgx.Connect(context.Background(), simpleURL(env.P))
			if err != nil {
				done <- err
				return
			}
			defer c.Close(context.Background())
			for i := 0; i < 25; i++ {
				if _, err := c.Exec(context.Background(), fmt.Sprintf("UPDATE %s SET v = v + 1", table)); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	timeout := time.After(90 * time.Second)
	for w := 0; w < 4; w++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("concurrent multi-shard UPDATEs deadlocked")
		}
	}
	if got := queryString(t, conn, fmt.Sprintf("select sum(v)::text from %s", table)); got != "4000" {
		t.Errorf("sum = %s, want 4000", got)
	}
}
