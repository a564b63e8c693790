package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// Distributing a table inside a transaction block (issue 13, "Distributing in a
// transaction"): CREATE TABLE, master_create_distributed_table and
// master_create_worker_shards in one block, as migration tools and psycopg2 run them,
// commit together or leave nothing behind.

// distxLeftovers counts what a table named name left behind: its coordinator table,
// its metadata rows (partition rows naming a table of that name, shard rows without a
// table) and shard tables (name_<id>) on every worker, checked in pg_class.
func distxLeftovers(t *testing.T, name string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	coord := connectServer(t, env.C.Coordinator)
	var n int
	if err := coord.QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		out = append(out, fmt.Sprintf("coordinator: %d relations named %s", n, name))
	}
	if err := coord.QueryRow(ctx, `SELECT count(*) FROM pgs_distribution_metadata.shard s
		WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relation_id)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		out = append(out, fmt.Sprintf("coordinator: %d shard rows of no table", n))
	}
	if err := coord.QueryRow(ctx, `SELECT count(*) FROM pgs_distribution_metadata.partition p
		WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = p.relation_id)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		out = append(out, fmt.Sprintf("coordinator: %d partition rows of no table", n))
	}
	for _, w := range env.C.Workers {
		if err := connectServer(t, w).QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname LIKE $1", name+`\_%`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			out = append(out, fmt.Sprintf("worker %s: %d relations named %s_*", w.Name, n, name))
		}
	}
	return out
}

// distxScript is the migration: create, distribute, write, read.
func distxScript(name string) []string {
	return []string{
		fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, v text NOT NULL DEFAULT 'x')", name),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", name),
		fmt.Sprintf("SELECT master_create_worker_shards('%s', 8, 2)", name),
		fmt.Sprintf("INSERT INTO %s (id, v) SELECT g, 'v' || g FROM generate_series(1, 20) g", name),
		fmt.Sprintf("INSERT INTO %s (id) VALUES (21)", name),
		fmt.Sprintf("UPDATE %s SET v = 'updated' WHERE id = 3", name),
	}
}

// TestDistxCommit: the migration in one block commits; the table then serves a new
// connection, a second proxy and a plain read of each shard on both of its placements.
func TestDistxCommit(t *testing.T) {
	ctx := context.Background()
	name := uniqueName("distx_commit")
	conn := connect(t)
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	// Inside the block the session sees its table distributed.
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "21" {
		t.Fatalf("count inside the block = %s, want 21", got)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT v FROM %s WHERE id = 3", name)); got != "updated" {
		t.Fatalf("v inside the block = %s", got)
	}
	// SHOW SHARDS in the block's session lists its shards.
	rows, err := conn.Query(ctx, "SHOW SHARDS")
	if err != nil {
		t.Fatal(err)
	}
	shown := 0
	for rows.Next() {
		vals, _ := rows.Values()
		if strings.Contains(fmt.Sprint(vals), name) {
			shown++
		}
	}
	rows.Close()
	if shown != 8 {
		t.Errorf("SHOW SHARDS in the block lists %d shards of %s, want 8", shown, name)
	}
	mustExec(t, conn, "COMMIT")

	// The same session, at once.
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "21" {
		t.Fatalf("count after COMMIT = %s, want 21", got)
	}
	// A new connection.
	c2 := connect(t)
	mustExec(t, c2, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (100, 'new')", name))
	if got := queryString(t, c2, fmt.Sprintf("SELECT string_agg(v, ',' ORDER BY id) FROM %s WHERE id IN (3, 21, 100)", name)); got != "updated,x,new" {
		t.Fatalf("values through a new connection = %s", got)
	}
	if got := queryString(t, c2, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "22" {
		t.Fatalf("count through a new connection = %s, want 22", got)
	}
	// The coordinator's prototype stays empty; the metadata has 8 shards, 16 placements.
	coord := connectServer(t, env.C.Coordinator)
	if got := queryString(t, coord, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "0" {
		t.Fatalf("the coordinator's prototype holds %s rows", got)
	}
	if got := queryString(t, coord, fmt.Sprintf(`SELECT count(*)::text FROM pgs_distribution_metadata.shard_placement p
		JOIN pgs_distribution_metadata.shard s ON s.id = p.shard_id WHERE s.relation_id = '%s'::regclass AND p.shard_state = 1`, name)); got != "16" {
		t.Fatalf("%s finalized placements, want 16", got)
	}
	// Every shard holds the same rows on both placements.
	rows, err = coord.Query(ctx, fmt.Sprintf(`SELECT s.id, p.node_port FROM pgs_distribution_metadata.shard s
		JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id WHERE s.relation_id = '%s'::regclass ORDER BY s.id, p.id`, name))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int64][]string{}
	total := 0
	for rows.Next() {
		var id int64
		var port int
		if err := rows.Scan(&id, &port); err != nil {
			t.Fatal(err)
		}
		w := serverFor(port)
		if w == nil {
			t.Fatalf("no worker on port %d", port)
		}
		rowsOn := queryString(t, connectServer(t, w), fmt.Sprintf("SELECT count(*)::text || ':' || coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM %s_%d", name, id))
		counts[id] = append(counts[id], rowsOn)
	}
	rows.Close()
	for id, c := range counts {
		if len(c) != 2 || c[0] != c[1] {
			t.Errorf("shard %d: placements hold %v", id, c)
		}
		var k int
		fmt.Sscanf(c[0], "%d:", &k)
		total += k
	}
	if total != 22 {
		t.Errorf("the shards hold %d rows, want 22", total)
	}
	// A second proxy.
	p2 := startDistxProxy(t)
	c3 := connectTo(t, p2)
	if got := queryString(t, c3, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "22" {
		t.Fatalf("count through a second proxy = %s, want 22", got)
	}
	mustExec(t, c3, fmt.Sprintf("DELETE FROM %s WHERE id = 100", name))
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "21" {
		t.Fatalf("count after the second proxy's DELETE = %s, want 21", got)
	}
	mustExec(t, conn, "DROP TABLE "+name)
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Errorf("DROP TABLE left %v", left)
	}
}

func startDistxProxy(t *testing.T) *testproxy.Proxy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// TestDistxRollback: the same migration ending in ROLLBACK leaves nothing behind, on the
// coordinator or any worker; the name can be used again.
func TestDistxRollback(t *testing.T) {
	name := uniqueName("distx_rollback")
	conn := connect(t)
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	mustExec(t, conn, "ROLLBACK")
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("ROLLBACK left %v", left)
	}
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("SELECT * FROM %s", name)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("the table after ROLLBACK: %v", err)
	}
	// Again, committed this time.
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	mustExec(t, conn, "COMMIT")
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "21" {
		t.Fatalf("count = %s, want 21", got)
	}
	mustExec(t, conn, "DROP TABLE "+name)
}

// TestDistxErrorInBlock: an error after distributing fails the block; ROLLBACK leaves
// nothing. So does a ROLLBACK TO a savepoint taken before the distribution.
func TestDistxErrorInBlock(t *testing.T) {
	ctx := context.Background()
	name := uniqueName("distx_error")
	conn := connect(t)
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	// A duplicate key: the block fails.
	_, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id) VALUES (1)", name))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		t.Fatalf("duplicate key: %v", err)
	}
	// In the client's names, as for a committed table.
	if pe.ConstraintName != name+"_pkey" || pe.TableName != name || !strings.Contains(pe.Message, `"`+name+`_pkey"`) {
		t.Errorf("duplicate key error names constraint %q of table %q: %s", pe.ConstraintName, pe.TableName, pe.Message)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT count(*) FROM %s", name)); err == nil || !strings.Contains(err.Error(), "25P02") {
		t.Fatalf("statement in the failed block: %v", err)
	}
	// COMMIT of a failed block rolls back.
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("the failed block left %v", left)
	}

	// A failing master_create_worker_shards (replication factor too high) fails the block.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", name),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", name))
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT master_create_worker_shards('%s', 4, 9)", name)); err == nil || !strings.Contains(err.Error(), "replication_factor") {
		t.Fatalf("replication factor 9: %v", err)
	}
	mustExec(t, conn, "ROLLBACK")
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("the failed block left %v", left)
	}

	// ROLLBACK TO a savepoint taken before the distribution undoes it, for the session
	// too: the table is a plain coordinator table again, and the block commits.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", name),
		"SAVEPOINT s1",
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", name),
		"SAVEPOINT s2",
		fmt.Sprintf("SELECT master_create_worker_shards('%s', 4, 2)", name),
		fmt.Sprintf("INSERT INTO %s VALUES (1)", name),
		"ROLLBACK TO SAVEPOINT s2")
	// Distributed, without shards: an INSERT has nowhere to go.
	if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (2)", name)); err == nil {
		t.Fatalf("INSERT into a table without shards succeeded")
	}
	mustExec(t, conn, "ROLLBACK TO SAVEPOINT s1",
		fmt.Sprintf("INSERT INTO %s VALUES (3)", name),
		"COMMIT")
	if got := queryString(t, conn, fmt.Sprintf("SELECT string_agg(id::text, ',') FROM %s", name)); got != "3" {
		t.Fatalf("rows = %s, want 3 (a plain table)", got)
	}
	if got := queryString(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("SELECT count(*)::text FROM pgs_distribution_metadata.partition WHERE relation_id = '%s'::regclass", name)); got != "0" {
		t.Fatalf("%s partition rows after ROLLBACK TO", got)
	}
	for _, w := range env.C.Workers {
		if got := queryString(t, connectServer(t, w), "SELECT count(*)::text FROM pg_class WHERE relname LIKE $1", name+`\_%`); got != "0" {
			t.Fatalf("worker %s: %s shard tables after ROLLBACK TO", w.Name, got)
		}
	}
	mustExec(t, conn, "DROP TABLE "+name)
}

// TestDistxConcurrentSession: before COMMIT no other session (of this proxy or another)
// sees the table distributed, nor its shards.
func TestDistxConcurrentSession(t *testing.T) {
	ctx := context.Background()
	name := uniqueName("distx_concurrent")
	conn := connect(t)
	other := connect(t)
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	// The other session does not see the table at all (CREATE TABLE is not committed).
	if _, err := other.Exec(ctx, fmt.Sprintf("SELECT count(*) FROM %s", name)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("other session before COMMIT: %v", err)
	}
	rows, err := other.Query(ctx, "SHOW SHARDS")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		vals, _ := rows.Values()
		if strings.Contains(fmt.Sprint(vals), name) {
			t.Errorf("SHOW SHARDS in another session shows %v before COMMIT", vals)
		}
	}
	rows.Close()
	if left := distxLeftovers(t, name); len(left) != 0 {
		t.Fatalf("visible outside the block before COMMIT: %v", left)
	}
	mustExec(t, conn, "COMMIT")
	// The other session sees it once committed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int64
		err := other.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s", name)).Scan(&n)
		if err == nil && n == 21 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other session after COMMIT: %d rows, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustExec(t, conn, "DROP TABLE "+name)

	// A table created before (committed) and distributed in a block: until COMMIT the
	// other session reads it as the plain coordinator table it still is for everyone.
	name2 := uniqueName("distx_concurrent")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, v text NOT NULL DEFAULT 'x')", name2))
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name2)[1:]...)
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name2)); got != "21" {
		t.Fatalf("count inside the block = %s, want 21", got)
	}
	if got := queryString(t, other, fmt.Sprintf("SELECT count(*)::text FROM %s", name2)); got != "0" {
		t.Fatalf("count in the other session before COMMIT = %s, want 0", got)
	}
	rows, err = other.Query(ctx, "SHOW SHARDS")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		vals, _ := rows.Values()
		if strings.Contains(fmt.Sprint(vals), name2) {
			t.Errorf("SHOW SHARDS in another session shows %v before COMMIT", vals)
		}
	}
	rows.Close()
	mustExec(t, conn, "COMMIT")
	deadline = time.Now().Add(10 * time.Second)
	for {
		var n int64
		err := other.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s", name2)).Scan(&n)
		if err == nil && n == 21 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other session after COMMIT: %d rows, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustExec(t, conn, "DROP TABLE "+name2)
}

// TestDistxDriverTransaction: a driver's transaction (pgx's Begin, extended protocol),
// as psycopg2 or an ORM's migration runs it.
func TestDistxDriverTransaction(t *testing.T) {
	ctx := context.Background()
	name := uniqueName("distx_driver")
	conn, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, commit := range []bool{false, true} {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, v text)", name)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "SELECT master_create_distributed_table($1, $2)", name, "id"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "SELECT master_create_worker_shards($1, $2, $3)", name, 4, 2); err != nil {
				return err
			}
			for i := 1; i <= 10; i++ {
				if _, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ($1, $2)", name), i, fmt.Sprint("v", i)); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE id > $1", name), 5).Scan(&n); err != nil {
				return err
			}
			if n != 5 {
				return fmt.Errorf("count = %d, want 5", n)
			}
			if !commit {
				return errRollback
			}
			return nil
		})
		if commit && err != nil || !commit && err != errRollback {
			t.Fatalf("commit=%v: %v", commit, err)
		}
		if !commit {
			if left := distxLeftovers(t, name); len(left) > 0 {
				t.Fatalf("the rolled back transaction left %v", left)
			}
		}
	}
	var n int
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s", name)).Scan(&n); err != nil || n != 10 {
		t.Fatalf("count after COMMIT = %d, %v", n, err)
	}
	if _, err := conn.Exec(ctx, "DROP TABLE "+name); err != nil {
		t.Fatal(err)
	}
}

var errRollback = fmt.Errorf("roll back")

// TestDistxOrdinaryRole: an ordinary role (no access to the metadata schema) distributes
// its table in a block, commits, and uses it; another ordinary role can neither
// distribute that table through pgshard nor write its metadata through the functions
// pgshard uses inside blocks.
func TestDistxOrdinaryRole(t *testing.T) {
	ctx := context.Background()
	owner := unprivilegedRole(t, "distx_owner")
	intruder := unprivilegedRole(t, "distx_intruder")
	name := uniqueName("distx_role")
	conn := connectAs(t, env.P, owner)
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	mustExec(t, conn, "ROLLBACK")
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("ROLLBACK left %v", left)
	}
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	mustExec(t, conn, "COMMIT")
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "21" {
		t.Fatalf("count = %s, want 21", got)
	}
	// The shard tables are the owner's.
	for _, w := range env.C.Workers {
		if got := queryString(t, connectServer(t, w), "SELECT coalesce(string_agg(DISTINCT pg_get_userbyid(relowner)::text, ','), '') FROM pg_class WHERE relname LIKE $1 AND relkind = 'r'", name+`\_%`); got != owner {
			t.Errorf("worker %s: shard tables owned by %q, want %q", w.Name, got, owner)
		}
	}

	other := connectAs(t, env.P, intruder)
	mustExec(t, other, fmt.Sprintf("CREATE TABLE %s_x (id int)", name))
	for _, sql := range []string{
		fmt.Sprintf("SELECT pgs_distribute.add_partition('%s'::regclass, 'h', 'id')", name),
		fmt.Sprintf("SELECT pgs_distribute.add_shards('%s'::regclass, '{1}', '{2}')", name),
		fmt.Sprintf("SELECT pgs_distribute.add_placements('%s'::regclass, '{1}', '{a}', '{1}')", name),
	} {
		if _, err := other.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "42501") {
			t.Errorf("%s as another role: %v", sql, err)
		}
	}
	mustExec(t, other, "BEGIN")
	if _, err := other.Exec(ctx, fmt.Sprintf("SELECT master_create_worker_shards('%s', 4, 2)", name)); err == nil || !strings.Contains(err.Error(), "42501") {
		t.Errorf("master_create_worker_shards of another role's table in a block: %v", err)
	}
	mustExec(t, other, "ROLLBACK")
	// Shards for a table that has them already: refused, even to its owner.
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT pgs_distribute.add_placements('%s'::regclass, (SELECT array_agg(id) FROM (SELECT 10000::bigint AS id) s), '{a}', '{1}')", name)); err == nil {
		t.Errorf("add_placements for old shards succeeded")
	}
	mustExec(t, other, fmt.Sprintf("DROP TABLE %s_x", name))
	mustExec(t, conn, "DROP TABLE "+name)
}

// TestDistxPsqlScript: the migration as one query string with its own BEGIN and COMMIT,
// and as a psql script run with --single-transaction (psql wraps it in BEGIN/COMMIT).
func TestDistxPsqlScript(t *testing.T) {
	name := uniqueName("distx_psql")
	script := "BEGIN; " + strings.Join(distxScript(name), "; ") + "; SELECT count(*) AS n FROM " + name + "; COMMIT;"
	out, err := psql(t, env.P, script+"\n")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if !strings.Contains(out, "21") {
		t.Fatalf("psql output lacks the count 21:\n%s", out)
	}
	conn := connect(t)
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "21" {
		t.Fatalf("count = %s, want 21", got)
	}
	mustExec(t, conn, "DROP TABLE "+name)

	// A script that fails part way leaves nothing.
	bad := strings.Join(distxScript(name), ";\n") + ";\nINSERT INTO " + name + " (id) VALUES (1);\n"
	out, err = psql(t, env.P, bad, "--single-transaction")
	if err == nil || !strings.Contains(out, "duplicate key") {
		t.Fatalf("the failing script: %v\n%s", err, out)
	}
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("the failed script left %v", left)
	}
	out, err = psql(t, env.P, strings.Join(distxScript(name), ";\n")+";\n", "--single-transaction")
	if err != nil {
		t.Fatalf("psql --single-transaction: %v\n%s", err, out)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", name)); got != "21" {
		t.Fatalf("count = %s, want 21", got)
	}
	mustExec(t, conn, "DROP TABLE "+name)
}

// TestDistxRefusedInBlock: what still cannot run in a block says so clearly (25001):
// master_add_node and master_copy_shard_placement; the block then fails and rolls back
// cleanly. DROP TABLE of the table the block just distributed runs and leaves nothing.
func TestDistxRefusedInBlock(t *testing.T) {
	ctx := context.Background()
	name := uniqueName("distx_refused")
	conn := connect(t)
	for _, sql := range []string{
		"SELECT master_add_node('localhost', 1)",
		"SELECT master_copy_shard_placement(1, 'a', 1, 'b', 2)",
	} {
		mustExec(t, conn, "BEGIN")
		if _, err := conn.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "25001") {
			t.Errorf("%s in a block: %v", sql, err)
		}
		mustExec(t, conn, "ROLLBACK")
	}
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	// DROP TABLE of the table the block distributed, then ROLLBACK: nothing left.
	mustExec(t, conn, "DROP TABLE "+name)
	mustExec(t, conn, "ROLLBACK")
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("ROLLBACK left %v", left)
	}
	// And with COMMIT: nothing left either.
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, distxScript(name)...)
	mustExec(t, conn, "DROP TABLE "+name, "COMMIT")
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("distributed and dropped in one block, COMMIT left %v", left)
	}

	// A column type pgshard cannot create on the workers: 0A000, as outside a block.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("CREATE TYPE public.%s_r AS RANGE (subtype = int8)", name),
		fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, r public.%s_r)", name, name),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", name))
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT master_create_worker_shards('%s', 4, 2)", name)); err == nil || !strings.Contains(err.Error(), "0A000") || !strings.Contains(err.Error(), "range type") {
		t.Errorf("a range type column in a block: %v", err)
	}
	mustExec(t, conn, "ROLLBACK")
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("ROLLBACK left %v", left)
	}
}

// TestDistxTypeInBlock: a migration that creates an enum type and a table using it, and
// distributes the table, in one block: the workers get the type with the shards, and a
// ROLLBACK takes the type back on every server too.
func TestDistxTypeInBlock(t *testing.T) {
	ctx := context.Background()
	name := uniqueName("distx_type")
	typ := name + "_mood"
	conn := connect(t)
	script := []string{
		fmt.Sprintf("CREATE TYPE %s AS ENUM ('sad', 'ok', 'happy')", typ),
		fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, m %s NOT NULL)", name, typ),
		fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", name),
		fmt.Sprintf("SELECT master_create_worker_shards('%s', 4, 2)", name),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'happy'), (2, 'sad')", name),
	}
	typeCount := func() int {
		n := 0
		for _, s := range env.C.Servers() {
			var k int
			if err := connectServer(t, s).QueryRow(ctx, "SELECT count(*) FROM pg_type WHERE typname = $1", typ).Scan(&k); err != nil {
				t.Fatal(err)
			}
			n += k
		}
		return n
	}
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, script...)
	mustExec(t, conn, "ROLLBACK")
	if left := distxLeftovers(t, name); len(left) > 0 {
		t.Fatalf("ROLLBACK left %v", left)
	}
	if n := typeCount(); n != 0 {
		t.Fatalf("ROLLBACK left the type on %d servers", n)
	}
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, script...)
	mustExec(t, conn, "COMMIT")
	if got := queryString(t, conn, fmt.Sprintf("SELECT string_agg(m::text, ',' ORDER BY id) FROM %s", name)); got != "happy,sad" {
		t.Fatalf("rows = %s", got)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s WHERE m > 'ok'", name)); got != "1" {
		t.Fatalf("enum comparison on the shards: %s", got)
	}
	mustExec(t, conn, "DROP TABLE "+name)
}

// TestDistxAlterInBlock: a schema change of the table after distributing it in the same
// block reaches its shards, and the block's later statements use the new column.
func TestDistxAlterInBlock(t *testing.T) {
	name := uniqueName("distx_alter")
	conn := connect(t)
	for _, commit := range []bool{false, true} {
		mustExec(t, conn, "BEGIN")
		mustExec(t, conn, distxScript(name)...)
		mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s ADD COLUMN w int NOT NULL DEFAULT 7", name),
			fmt.Sprintf("INSERT INTO %s (id, v, w) VALUES (50, 'w', 8)", name))
		if got := queryString(t, conn, fmt.Sprintf("SELECT string_agg(w::text, ',' ORDER BY id) FROM %s WHERE id IN (1, 50)", name)); got != "7,8" {
			t.Fatalf("w inside the block = %s, want 7,8", got)
		}
		if !commit {
			mustExec(t, conn, "ROLLBACK")
			if left := distxLeftovers(t, name); len(left) > 0 {
				t.Fatalf("ROLLBACK left %v", left)
			}
			continue
		}
		mustExec(t, conn, "COMMIT")
	}
	c2 := connect(t)
	if got := queryString(t, c2, fmt.Sprintf("SELECT count(*)::text || ':' || sum(w)::text FROM %s", name)); got != "22:155" {
		t.Fatalf("after COMMIT = %s, want 22:155", got)
	}
	mustExec(t, conn, "DROP TABLE "+name)
}
