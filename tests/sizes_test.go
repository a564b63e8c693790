package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// shardSums computes on the workers what the size functions should answer for a
// distributed table: PostgreSQL's size functions and reltuples of the first finalized
// placement (placement-id order) of each shard, summed; the estimate is -1 if any of
// them was never analyzed. Placements on the worker on port skip are passed over.
func shardSums(t *testing.T, table string, skip int) (tableSize, relSize, totalSize, rows int64) {
	t.Helper()
	ctx := context.Background()
	var tuples float64
	unknown := false
	for _, s := range shardsOf(t, table) {
		var p *placementInfo
		for i := range s.places {
			if s.places[i].state == 1 && s.places[i].port != skip {
				p = &s.places[i]
				break
			}
		}
		if p == nil {
			t.Fatalf("shard %d has no finalized placement", s.id)
		}
		conn := connectServer(t, serverFor(p.port))
		var a, b, c int64
		var r float64
		rel := fmt.Sprintf("%s_%d", table, s.id)
		if err := conn.QueryRow(ctx, `SELECT pg_table_size($1::regclass), pg_relation_size($1::regclass), pg_total_relation_size($1::regclass),
			reltuples::float8 FROM pg_class WHERE oid = $1::regclass`, rel).Scan(&a, &b, &c, &r); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		conn.Close(ctx)
		tableSize, relSize, totalSize = tableSize+a, relSize+b, totalSize+c
		if r < 0 {
			unknown = true
		}
		tuples += r
	}
	rows = int64(tuples + 0.5)
	if unknown {
		rows = -1
	}
	return
}

// analyzeShards runs VACUUM ANALYZE on every placement of the table's shards, directly
// on the workers.
func analyzeShards(t *testing.T, table string) {
	t.Helper()
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			conn := connectServer(t, serverFor(p.port))
			mustExec(t, conn, fmt.Sprintf("VACUUM ANALYZE %s_%d", table, s.id))
			conn.Close(context.Background())
		}
	}
}

// sizeRow reads the size functions of table through conn, in the order pgshard_table_size,
// pgshard_relation_size, pgshard_total_relation_size, pgshard_estimated_rows, then the
// Citus names of the first three.
func sizeRow(t *testing.T, conn *pgx.Conn, table string) [7]int64 {
	t.Helper()
	var v [7]int64
	q := fmt.Sprintf(`SELECT pgshard_table_size('%[1]s'), pgshard_relation_size('%[1]s') AS rel, pgshard_total_relation_size('%[1]s'::regclass),
		pgshard_estimated_rows('%[1]s'), citus_table_size('%[1]s'), citus_relation_size('%[1]s'), citus_total_relation_size('%[1]s')`, table)
	if err := conn.QueryRow(context.Background(), q).Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

// TestSizes: the size functions of a distributed table equal the sums computed on the
// workers, in simple and extended protocol, in and out of a transaction block, in a
// select list over a FROM clause; the row estimate is -1 until the shards are analyzed.
func TestSizes(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("sizes")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text PRIMARY KEY, v int, payload text)", table), table, "k", 4, 2)

	// Never analyzed: -1, as PostgreSQL's reltuples.
	if v := sizeRow(t, conn, table); v[3] != -1 {
		t.Fatalf("estimated rows of a table never analyzed: %d, want -1", v[3])
	}
	const n = 3000
	for i := 0; i < n; i += 500 {
		var vals []string
		for j := i; j < i+500; j++ {
			vals = append(vals, fmt.Sprintf("('k%d', %d, repeat('x', %d))", j, j, j%200))
		}
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES %s", table, strings.Join(vals, ", ")))
	}
	analyzeShards(t, table)
	ts, rs, tot, rows := shardSums(t, table, 0)
	if rows != n || rs == 0 || ts < rs || tot <= ts {
		t.Fatalf("worker sums: table %d relation %d total %d rows %d", ts, rs, tot, rows)
	}
	want := [7]int64{ts, rs, tot, rows, ts, rs, tot}
	if got := sizeRow(t, conn, table); got != want {
		t.Fatalf("through pgshard %v, on the workers %v", got, want)
	}

	// Extended protocol, the table as a parameter.
	ext, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	if got := sizeRow(t, ext, table); got != want {
		t.Fatalf("extended protocol: %v, want %v", got, want)
	}
	var size int64
	if err := ext.QueryRow(ctx, "SELECT pgshard_total_relation_size($1)", table).Scan(&size); err != nil || size != tot {
		t.Fatalf("with a parameter: %d, %v; want %d", size, err, tot)
	}

	// In a transaction block, and over a FROM clause, with an alias.
	mustExec(t, conn, "BEGIN")
	if got := sizeRow(t, conn, table); got != want {
		t.Fatalf("in a block: %v, want %v", got, want)
	}
	mustExec(t, conn, "COMMIT")
	var name string
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT relname::text, pgshard_table_size(oid) AS sz FROM pg_class WHERE oid = '%s'::regclass", table)).Scan(&name, &size); err != nil || name != table || size != ts {
		t.Fatalf("over pg_class: %s %d %v", name, size, err)
	}
	var null *int64
	if err := conn.QueryRow(ctx, "SELECT pgshard_table_size(NULL)").Scan(&null); err != nil || null != nil {
		t.Fatalf("NULL argument: %v, %v", null, err)
	}
	// Calls inside expressions, anywhere in the statement, with constant arguments.
	for _, c := range []*pgx.Conn{conn, ext} {
		var pretty, viaCoord, rel string
		var kb int64
		q := fmt.Sprintf("SELECT pg_size_pretty(pgshard_total_relation_size('%[1]s')), pgshard_table_size('%[1]s') / 1024 AS kb, -pgshard_estimated_rows('%[1]s') AS neg", table)
		var neg int64
		if err := c.QueryRow(ctx, q).Scan(&pretty, &kb, &neg); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if err := coordQueryRow(t, fmt.Sprintf("SELECT pg_size_pretty(%d::bigint)", tot), &viaCoord); err != nil || pretty != viaCoord || kb != ts/1024 || neg != -rows {
			t.Fatalf("%s: %s %d %d, want %s %d %d", q, pretty, kb, neg, viaCoord, ts/1024, -rows)
		}
		q = fmt.Sprintf("SELECT relname::text FROM pg_class WHERE oid = '%[1]s'::regclass AND pgshard_table_size('%[1]s') = %[2]d", table, ts)
		if err := c.QueryRow(ctx, q).Scan(&rel); err != nil || rel != table {
			t.Fatalf("%s: %s %v", q, rel, err)
		}
	}
	wantError(t, conn, "SELECT pg_size_pretty(pgshard_table_size(oid)) FROM pg_class", "0A000", "")
	// A table distributed in the same block: its shards are seen over the block's
	// connections.
	inBlock := uniqueName("sizes_blk")
	mustExec(t, conn, "BEGIN")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int)", inBlock), inBlock, "k", 2, 1)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g FROM generate_series(1, 50) g", inBlock))
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT pgshard_relation_size('%s')", inBlock)).Scan(&size); err != nil || size != 2*8192 {
		t.Fatalf("size of a table distributed in the block: %d, %v", size, err)
	}
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT pgshard_estimated_rows('%s')", inBlock)).Scan(&size); err != nil || size != -1 {
		t.Fatalf("estimate of a table distributed in the block: %d, %v", size, err)
	}
	mustExec(t, conn, "ROLLBACK")
	// The coordinator's own functions still describe its empty prototype.
	coord := connectServer(t, env.C.Coordinator)
	if s := queryString(t, coord, fmt.Sprintf("SELECT pg_relation_size('%s')::text", table)); s != "0" {
		t.Fatalf("coordinator's pg_relation_size: %s", s)
	}
}

// TestSizesRegularAndUnknown: a table that is not distributed is answered by
// PostgreSQL's own functions on the coordinator; an unknown name fails as in
// PostgreSQL (42P01), and so does a schema the caller may not use (42501), without a
// shard's name; a role without privileges on a table gets its sizes, as from
// PostgreSQL's size functions.
func TestSizesRegularAndUnknown(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	coord := connectServer(t, env.C.Coordinator)
	plain := uniqueName("sizes_plain")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (a int, b text)", plain),
		fmt.Sprintf("INSERT INTO %s SELECT g, repeat('y', g %% 50) FROM generate_series(1, 500) g", plain),
		fmt.Sprintf("ANALYZE %s", plain))
	var want [4]int64
	if err := coord.QueryRow(ctx, fmt.Sprintf(`SELECT pg_table_size('%[1]s'), pg_relation_size('%[1]s'), pg_total_relation_size('%[1]s'),
		(SELECT reltuples::int8 FROM pg_class WHERE oid = '%[1]s'::regclass)`, plain)).Scan(&want[0], &want[1], &want[2], &want[3]); err != nil {
		t.Fatal(err)
	}
	got := sizeRow(t, conn, plain)
	if [4]int64{got[0], got[1], got[2], got[3]} != want || want[3] != 500 {
		t.Fatalf("regular table: %v, PostgreSQL says %v", got, want)
	}

	codeOf := func(c *pgx.Conn, sql string) (string, string) {
		_, err := c.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("%s: got %v, want an error", sql, err)
		}
		return pe.Code, pe.Message
	}
	for _, f := range []string{"pgshard_table_size", "pgshard_estimated_rows", "citus_total_relation_size"} {
		code, msg := codeOf(conn, fmt.Sprintf("SELECT %s('no_such_table_sz')", f))
		wcode, wmsg := codeOf(coord, "SELECT pg_table_size('no_such_table_sz')")
		if code != wcode || msg != wmsg {
			t.Fatalf("%s of an unknown table: %s %q, PostgreSQL: %s %q", f, code, msg, wcode, wmsg)
		}
	}

	// A distributed table in a schema the role may not use, and one in public it has no
	// privilege on.
	schema := uniqueName("sizes_s")
	mustExec(t, conn, "CREATE SCHEMA "+schema)
	for _, w := range env.C.Workers {
		if _, err := w.Exec(ctx, "postgres", "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
			t.Fatal(err)
		}
	}
	hidden := schema + ".sized"
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int)", hidden), hidden, "k", 2, 1)
	open := uniqueName("sizes_open")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int)", open), open, "k", 2, 1)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g FROM generate_series(1, 100) g", open))
	role := unprivilegedRole(t, "sizes_app")
	app := connectAs(t, env.P, role)
	code, msg := codeOf(app, fmt.Sprintf("SELECT pgshard_table_size('%s')", hidden))
	mustExec(t, coord, "SET ROLE "+role)
	wcode, wmsg := codeOf(coord, fmt.Sprintf("SELECT pg_table_size('%s')", hidden))
	if code != wcode || msg != wmsg {
		t.Fatalf("schema without USAGE: %s %q, PostgreSQL: %s %q", code, msg, wcode, wmsg)
	}
	mustExec(t, coord, "RESET ROLE")
	ts, _, _, _ := shardSums(t, open, 0)
	var size int64
	if err := app.QueryRow(ctx, fmt.Sprintf("SELECT pgshard_table_size('%s')", open)).Scan(&size); err != nil || size != ts {
		t.Fatalf("as a role without privileges on the table: %d, %v; want %d", size, err, ts)
	}
}

// TestSizesPsqlDescribe: psql's \d+ and \dt+ work through pgshard on a distributed
// table (they read the coordinator's catalog, and show its prototype's size).
func TestSizesPsqlDescribe(t *testing.T) {
	conn := connect(t)
	table := uniqueName("sizes_psql")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text PRIMARY KEY, v int)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('a', 1), ('b', 2)", table))
	out, err := psql(t, env.P, fmt.Sprintf("\\d+ %[1]s\n\\dt+ %[1]s\n\\di+ %[1]s_pkey\nSELECT pgshard_estimated_rows('%[1]s') AS estimate, pgshard_total_relation_size('%[1]s') AS total;\n", table))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{`Table "public.` + table + `"`, "Access method", table + "_pkey", "estimate |"} {
		if !strings.Contains(out, want) {
			t.Fatalf("psql output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ERROR") {
		t.Fatalf("psql: %s", out)
	}
}

// TestSizesWorkerDown: with a worker down, the size of a replicated table is summed over
// the shards' other placements.
func TestSizesWorkerDown(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("sizes_down")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int, v text)", table), table, "k", 8, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, repeat('z', g %% 300) FROM generate_series(1, 2000) g", table))
	analyzeShards(t, table)
	victim := sortedWorkers()[0]
	ts, _, tot, rows := shardSums(t, table, victim.Port)
	if err := victim.Crash(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := victim.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	var a, b, c int64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT pgshard_table_size('%[1]s'), pgshard_total_relation_size('%[1]s'), pgshard_estimated_rows('%[1]s')", table)).Scan(&a, &b, &c); err != nil {
		t.Fatalf("with %s down: %v", victim.Name, err)
	}
	if a != ts || b != tot || c != rows || rows != 2000 {
		t.Fatalf("with %s down: %d %d %d, on the other placements %d %d %d", victim.Name, a, b, c, ts, tot, rows)
	}
}

// coordQueryRow scans one row of sql run on the coordinator directly.
func coordQueryRow(t *testing.T, sql string, dest ...any) error {
	t.Helper()
	conn := connectServer(t, env.C.Coordinator)
	defer conn.Close(context.Background())
	return conn.QueryRow(context.Background(), sql).Scan(dest...)
}
