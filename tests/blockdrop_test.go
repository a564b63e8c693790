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

// shardTablesLeft counts the shard tables of table (named table_<digits>) on every worker.
func shardTablesLeft(t testing.TB, table string) int {
	t.Helper()
	n := 0
	for _, w := range env.C.Workers {
		var k int
		if err := connectServer(t, w).QueryRow(context.Background(),
			`SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname ~ ('^' || $1 || '_[0-9]+$')`, table).Scan(&k); err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return n
}

// metadataRows counts table's rows in the coordinator's metadata (partition, shards).
func metadataRows(t testing.TB, table string) string {
	t.Helper()
	var p, s int
	err := connectServer(t, env.C.Coordinator).QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM pgs_distribution_metadata.partition WHERE relation_id::regclass::text = $1),
		(SELECT count(*) FROM pgs_distribution_metadata.shard WHERE relation_id::regclass::text = $1)`, table).Scan(&p, &s)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d/%d", p, s)
}

// inBlockError runs sql, which must fail with code (and msg, if given), inside a block
// (that the error aborts: wantError's check that the connection still serves would fail).
func inBlockError(t testing.TB, conn *pgx.Conn, sql, code, msg string) {
	t.Helper()
	_, err := conn.Exec(context.Background(), sql)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code || (msg != "" && pe.Message != msg) {
		t.Fatalf("%s: got %v, want %s %q", sql, err, code, msg)
	}
}

// TestDropTableInBlock: DROP TABLE of a distributed table inside a transaction block, as
// a migration's down step runs it: a ROLLBACK (or a ROLLBACK TO a savepoint before it)
// undoes it everywhere, statements after it in the block see no table (42P01, as in
// PostgreSQL), and a COMMIT removes the coordinator's table, its metadata and every shard
// table; a role that does not own the table gets PostgreSQL's 42501.
func TestDropTableInBlock(t *testing.T) {
	conn := connect(t)
	table := uniqueName("bdrop")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", table), table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, 20) g", table))
	shards := shardTablesLeft(t, table)
	if shards != 8 {
		t.Fatalf("%d shard tables before, want 8", shards)
	}

	mustExec(t, conn, "BEGIN", "DROP TABLE "+table)
	inBlockError(t, conn, "SELECT count(*) FROM "+table, "42P01", fmt.Sprintf("relation %q does not exist", table))
	mustExec(t, conn, "ROLLBACK")
	if n := queryString(t, conn, "SELECT count(*) FROM "+table); n != "20" {
		t.Fatalf("after ROLLBACK: %s rows", n)
	}
	if got := shardTablesLeft(t, table); got != shards {
		t.Fatalf("after ROLLBACK: %d shard tables, want %d", got, shards)
	}

	mustExec(t, conn, "BEGIN", "SAVEPOINT s", "DROP TABLE "+table, "ROLLBACK TO SAVEPOINT s")
	if n := queryString(t, conn, fmt.Sprintf("SELECT v FROM %s WHERE k = 7", table)); n != "v7" {
		t.Fatalf("after ROLLBACK TO: %q", n)
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (21, 'v21')", table), "COMMIT")
	if n := queryString(t, conn, "SELECT count(*) FROM "+table); n != "21" {
		t.Fatalf("after ROLLBACK TO and COMMIT: %s rows", n)
	}

	role := unprivilegedRole(t, "bdrop_role")
	mustExec(t, conn, fmt.Sprintf("GRANT ALL ON %s TO %s", table, role))
	other := connectAs(t, env.P, role)
	mustExec(t, other, "BEGIN")
	inBlockError(t, other, "DROP TABLE "+table, "42501", "must be owner of table "+table)
	mustExec(t, other, "ROLLBACK")
	// Nobody can remove the metadata of a table that exists.
	wantError(t, other, fmt.Sprintf("SELECT pgs_distribute.drop_partitions(ARRAY['%s'::regclass::oid])", table), "55006", "")

	mustExec(t, conn, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES (22, 'v22')", table), "DROP TABLE "+table, "COMMIT")
	if got := shardTablesLeft(t, table); got != 0 {
		t.Fatalf("after COMMIT: %d shard tables left", got)
	}
	var n int
	if err := connectServer(t, env.C.Coordinator).QueryRow(context.Background(), "SELECT count(*) FROM pg_class WHERE relname = $1", table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("coordinator table after COMMIT: %d (%v)", n, err)
	}
	_, err := other.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES (1, 'x')", table))
	if err == nil || !strings.Contains(err.Error(), "42P01") || strings.Contains(err.Error(), table+"_") {
		t.Fatalf("write to the dropped table: %v", err)
	}
	// The name can be used again, for a distributed table.
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, w int)", table), table, "k", 2, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	if got := queryString(t, conn, "SELECT sum(w) FROM "+table); got != "1" {
		t.Fatalf("the table of the same name: %s", got)
	}

	// Several tables, one of them the coordinator's own, in one statement.
	local := uniqueName("bdrop_local")
	mustExec(t, conn, "CREATE TABLE "+local+" (x int)")
	mustExec(t, conn, "BEGIN", fmt.Sprintf("DROP TABLE %s, %s", table, local), "COMMIT")
	if got := shardTablesLeft(t, table); got != 0 {
		t.Fatalf("after dropping two tables: %d shard tables left", got)
	}
	wantError(t, conn, "SELECT 1 FROM "+local, "42P01", "")
}
