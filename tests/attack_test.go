package tests

// Defects found by attacking pgshard as a new user would (issue 9's areas), each compared
// with what plain PostgreSQL does with the same statements on an undistributed table.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/cluster"
)

// attackPair creates the table ddl (named table) distributed on column through the proxy,
// and the same table undistributed in a schema of its own on the coordinator, fills both
// with the setup statements, and returns a proxy connection and a plain one whose
// search_path finds the plain table under the same name.
func attackPair(t *testing.T, ddl, table, column string, shards, rf int, setup ...string) (proxy, plain *pgx.Conn) {
	t.Helper()
	proxy = connect(t)
	distribute(t, proxy, ddl, table, column, shards, rf)
	mustExec(t, proxy, setup...)
	plain = connectServer(t, env.C.Coordinator)
	schema := uniqueName("attack_plain")
	mustExec(t, plain, "CREATE SCHEMA "+schema, "SET search_path = "+schema)
	mustExec(t, plain, ddl)
	mustExec(t, plain, setup...)
	return proxy, plain
}

// outcomeOf runs sql (simple protocol) and describes its rows or its error's SQLSTATE.
func outcomeOf(c *pgx.Conn, sql string) string {
	rows, err := c.Query(context.Background(), sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return "error " + sqlstate(err)
	}
	var out []string
	for rows.Next() {
		v, _ := rows.Values()
		out = append(out, fmt.Sprint(v...))
	}
	if err := rows.Err(); err != nil {
		return "error " + sqlstate(err)
	}
	return strings.Join(out, "; ")
}

// sameAsPlain checks that each query gives the proxy the answer it gives on plain PostgreSQL.
func sameAsPlain(t *testing.T, proxy, plain *pgx.Conn, queries ...string) {
	t.Helper()
	for _, q := range queries {
		got, want := outcomeOf(proxy, q), outcomeOf(plain, q)
		if got != want {
			t.Errorf("%s\n pgshard:    %s\n PostgreSQL: %s", q, got, want)
		}
	}
}

// noInactivePlacements checks that nothing marked a placement of the table.
func noInactivePlacements(t *testing.T, table string) {
	t.Helper()
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 {
				t.Errorf("placement %d of shard %d on port %d is in state %d", p.id, s.id, p.port, p.state)
			}
		}
	}
}

// PostgreSQL resolves a bare name in ORDER BY to an output column first: SELECT count(*)
// AS n FROM t ORDER BY n is valid and answers the count. pgshard took n for a column outside
// an aggregate and ran the statement on the coordinator's empty prototype: 0, silently.
func TestAttackOrderByAliasOfAggregateAnsweredFromEmptyPrototype(t *testing.T) {
	tbl := uniqueName("atk_agg")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s SELECT g, g %% 7 FROM generate_series(1, 50) g", tbl))
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("SELECT count(*) AS n FROM %s ORDER BY n", tbl),
		fmt.Sprintf("SELECT count(*) AS count FROM %s ORDER BY count", tbl),
		fmt.Sprintf("SELECT count(*) FROM %s ORDER BY count DESC LIMIT 1", tbl),
		fmt.Sprintf("SELECT sum(v) AS total, max(id) AS id FROM %s ORDER BY total, id", tbl),
		fmt.Sprintf("SELECT count(*), true AS id FROM %s ORDER BY id", tbl),
		// Still PostgreSQL's error for a real column outside an aggregate.
		fmt.Sprintf("SELECT count(*) AS n FROM %s ORDER BY v", tbl),
		fmt.Sprintf("SELECT count(*) AS n FROM %s ORDER BY n + v", tbl))
}

// PostgreSQL takes any bigint OFFSET: LIMIT 1 OFFSET 9223372036854775807 returns no rows.
// pgshard sent each shard LIMIT limit+offset, which overflowed: "LIMIT must not be negative".
func TestAttackLimitPlusOffsetOverflows(t *testing.T) {
	tbl := uniqueName("atk_lim")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 20)", tbl))
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("SELECT id FROM %s ORDER BY id LIMIT 1 OFFSET 9223372036854775807", tbl),
		fmt.Sprintf("SELECT id FROM %s ORDER BY id LIMIT 9223372036854775807 OFFSET 18", tbl))
	// Without ORDER BY, which row is left is PostgreSQL's choice; how many is not.
	q := fmt.Sprintf("SELECT id FROM %s LIMIT 9223372036854775807 OFFSET 19", tbl)
	if got := outcomeOf(proxy, q); strings.HasPrefix(got, "error") || strings.Contains(got, ";") || got == "" {
		t.Errorf("%s: %s, want one row", q, got)
	}
}

// In PostgreSQL, LOCK TABLE t IN EXCLUSIVE MODE keeps every other session's writes to t
// waiting until the lock holder's transaction ends. pgshard took the lock on the
// coordinator's prototype only: other sessions wrote to the shards at once. A lock that
// keeps out writers must either hold them off or be refused (0A000), never be a no-op.
func TestAttackLockTableIsSilentNoOp(t *testing.T) {
	ctx := context.Background()
	tbl := uniqueName("atk_lock")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", tbl), tbl, "id", 4, 2)
	mustExec(t, a, "BEGIN")
	_, err := a.Exec(ctx, fmt.Sprintf("LOCK TABLE %s IN EXCLUSIVE MODE", tbl))
	if err != nil {
		if sqlstate(err) != "0A000" {
			t.Fatalf("LOCK TABLE: %v, want it to hold or 0A000", err)
		}
		mustExec(t, a, "ROLLBACK")
		// Weaker modes, which keep out only schema changes, still work.
		mustExec(t, a, "BEGIN", fmt.Sprintf("LOCK TABLE %s IN ACCESS SHARE MODE", tbl), "COMMIT")
		return
	}
	b := connect(t)
	mustExec(t, b, "SET statement_timeout = '500ms'")
	_, err = b.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", tbl))
	mustExec(t, a, "ROLLBACK")
	if sqlstate(err) != "57014" {
		t.Errorf("INSERT while another session holds LOCK TABLE ... IN EXCLUSIVE MODE: %v; PostgreSQL waits (57014 after statement_timeout)", err)
	}
}

// placementContents returns, for every placement of the table's shards, the rows of the
// placement as text, keyed by shard and node port.
func placementContents(t *testing.T, table string, order string) map[int64][]string {
	t.Helper()
	out := map[int64][]string{}
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			w := serverFor(p.port)
			if w == nil {
				t.Fatalf("no worker on port %d", p.port)
			}
			c := connectServer(t, w)
			out[s.id] = append(out[s.id], fmt.Sprintf("%d: %s", p.port, outcomeOf(c, fmt.Sprintf("SELECT * FROM %s_%d ORDER BY %s", table, s.id, order))))
			c.Close(context.Background())
		}
	}
	return out
}

// Each placement stores its rows at its own physical positions (ctid) and with its own
// transaction ids (xmin, xmax). A write
// that picks rows by them changed different rows on the two placements of a shard — both
// "modified 1 row", so nothing was marked and the replicas silently diverged. PostgreSQL
// changes exactly the row at that ctid. Such writes must be refused (0A000).
func TestAttackWriteBySystemColumnDivergesPlacements(t *testing.T) {
	ctx := context.Background()
	tbl := uniqueName("atk_ctid")
	c := connect(t)
	distribute(t, c, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", tbl), tbl, "id", 1, 2)
	mustExec(t, c, fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 10), 0", tbl))
	// Different histories on the two placements' pages: a row updated in a block that one
	// placement's row versions keep.
	for i := 0; i < 3; i++ {
		mustExec(t, c, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = %d", tbl, i+1))
	}
	// Make the placements' layouts differ as they do after a repair or a vacuum on one.
	sh := shardsOf(t, tbl)[0]
	w := connectServer(t, serverFor(sh.places[0].port))
	mustExec(t, w, fmt.Sprintf("VACUUM FULL %s_%d", tbl, sh.id))
	for _, q := range []string{
		fmt.Sprintf("DELETE FROM %s WHERE ctid = (SELECT min(ctid) FROM %s)", tbl, tbl),
		fmt.Sprintf("DELETE FROM %s WHERE ctid = '(0,1)'", tbl),
		fmt.Sprintf("UPDATE %s SET v = 100 WHERE ctid = '(0,2)'", tbl),
		fmt.Sprintf("UPDATE %s SET v = 101 WHERE xmin::text = xmin::text AND id = 5", tbl),
	} {
		_, err := c.Exec(ctx, q)
		if err == nil {
			t.Errorf("%s: accepted; PostgreSQL picks rows by the one table's system columns, which differ per placement", q)
		} else if sqlstate(err) != "0A000" {
			t.Errorf("%s: %v, want 0A000", q, err)
		}
	}
	// RETURNING and reads may show them.
	mustExec(t, c, fmt.Sprintf("UPDATE %s SET v = 7 WHERE id = 7 RETURNING ctid, xmin", tbl))
	for id, rows := range placementContents(t, tbl, "id") {
		for _, r := range rows[1:] {
			if r[strings.Index(r, ":"):] != rows[0][strings.Index(rows[0], ":"):] {
				t.Errorf("shard %d: placements differ:\n %s\n %s", id, rows[0], r)
			}
		}
	}
	noInactivePlacements(t, tbl)
}

// The usual way to remove duplicate rows, DELETE FROM t a USING t b WHERE a.ctid < b.ctid
// AND a.k = b.k AND a.v = b.v, keeps one row of each group in PostgreSQL. pgshard found the
// rows to delete on gathered copies and then deleted them by every column on the shards,
// which removed every copy: DELETE 5 where PostgreSQL says DELETE 3, data lost.
func TestAttackDedupeByCtidDeletesEveryCopy(t *testing.T) {
	tbl := uniqueName("atk_dup")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (k int, v int)", tbl), tbl, "k", 4, 2,
		fmt.Sprintf("INSERT INTO %s VALUES (1,1),(1,1),(2,2),(3,3),(3,3),(3,3)", tbl))
	q := fmt.Sprintf("DELETE FROM %s a USING %s b WHERE a.ctid < b.ctid AND a.k = b.k AND a.v = b.v", tbl, tbl)
	_, err := proxy.Exec(context.Background(), q)
	if err != nil && sqlstate(err) != "0A000" {
		t.Fatalf("%s: %v", q, err)
	}
	if err == nil {
		mustExec(t, plain, q)
		sameAsPlain(t, proxy, plain, fmt.Sprintf("SELECT k, v FROM %s ORDER BY k", tbl))
	}
	// Refused or right, the rows are all there.
	if n := queryString(t, proxy, fmt.Sprintf("SELECT count(*)::text FROM %s", tbl)); err != nil && n != "6" {
		t.Errorf("after the refused DELETE: %s rows, want 6", n)
	}
	noInactivePlacements(t, tbl)
}

// PostgreSQL names the statement in its errors as its command tag (CREATE TRIGGER); pgshard
// said "CREATETRIG on distributed table ... is not supported" (the parse node's name).
func TestAttackRefusedCommandNamedByParseNode(t *testing.T) {
	tbl := uniqueName("atk_tag")
	c := connect(t)
	distribute(t, c, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", tbl), tbl, "id", 2, 1)
	mustExec(t, c, "CREATE OR REPLACE FUNCTION atk_noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
	for _, q := range []string{
		fmt.Sprintf("CREATE TRIGGER atk_t AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION atk_noop()", tbl),
		fmt.Sprintf("CREATE STATISTICS atk_s ON id, v FROM %s", tbl),
		fmt.Sprintf("ALTER FOREIGN TABLE %s SET SCHEMA public", tbl),
	} {
		_, err := c.Exec(context.Background(), q)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" {
			t.Errorf("%s: %v, want 0A000", q, err)
			continue
		}
		if strings.Contains(pe.Message, "CREATETRIG") || strings.Contains(pe.Message, "CREATESTATS") ||
			strings.Contains(pe.Message, "ALTEROBJECTSCHEMA") {
			t.Errorf("%s: %q names the parse node, not the command", q, pe.Message)
		}
	}
}

// PostgreSQL answers WHERE key IN (<100,000 integers>) in about half a second. pgshard
// took about two minutes (and a CPU) for the same statement, growing faster than the list
// (5,000: 1 s; 20,000: 10 s; 40,000: 26 s; 100,000: 118 s on the test machine): every
// value's error position was counted from the start of the text. Now 100,000 values take
// a few seconds; TestKeyHasherCharPos (proxy) guards the cause, this the answer.
func TestAttackHugeInListOnKey(t *testing.T) {
	tbl := uniqueName("atk_in")
	c := connect(t)
	distribute(t, c, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", tbl), tbl, "id", 8, 2)
	mustExec(t, c, fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 200)", tbl))
	var b strings.Builder
	for i := 0; i < 20000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, i)
	}
	var n int
	err := c.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %s WHERE id IN (%s)", tbl, b.String())).Scan(&n)
	if err != nil || n != 200 {
		t.Errorf("count = %d, %v; want 200", n, err)
	}
}

// In PostgreSQL, two transactions that update different rows of a table do not wait for
// each other. Through pgshard, a transaction block's first write to a replicated shard took
// the shard's write lock until the block ended, so a second block writing another row of
// the same shard waited (up to 30 s, then 55P03). A write that pins its rows to partition-key
// values now takes the shard lock shared and a lock per key (README, Locks): the second
// block's UPDATE goes through while the first block is still open.
func TestAttackBlocksWritingOtherRowsOfAShardWait(t *testing.T) {
	ctx := context.Background()
	tbl := uniqueName("atk_blk")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", tbl), tbl, "id", 1, 2)
	mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (1, 0), (2, 0)", tbl))
	b := connect(t)
	mustExec(t, a, "BEGIN", fmt.Sprintf("UPDATE %s SET v = 1 WHERE id = 1", tbl))
	mustExec(t, b, "BEGIN")
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 2 WHERE id = 2", tbl))
		done <- err
	}()
	// The first block stays open until the second block's UPDATE has ended (a wait for it
	// would not end: the check fails after 20 s).
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		mustExec(t, a, "ROLLBACK")
		err = <-done
		t.Fatalf("UPDATE of another row of the shard in a second block waited for the first block (then: %v); PostgreSQL does not wait", err)
	}
	if err != nil {
		t.Errorf("UPDATE of another row of the shard in a second block: %v", err)
	}
	mustExec(t, a, "COMMIT")
	mustExec(t, b, "COMMIT")
	if got := queryString(t, a, fmt.Sprintf("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM %s", tbl)); got != "1=1,2=2" {
		t.Errorf("rows after both blocks: %s, want 1=1,2=2", got)
	}
	placementsIdentical(t, tbl)
}

// PostgreSQL's SERIALIZABLE aborts one of two transactions that each read what the other
// writes (write skew): A and B both read rows 2 and 7, A updates 7, B updates 2; B's COMMIT
// fails with 40001. Through pgshard each worker sees only its part of the read/write
// dependencies, so when rows 2 and 7 live on different workers both commit.
func TestAttackSerializableWriteSkewAcrossWorkersCommits(t *testing.T) {
	t.Skip("known limitation (design, documented in README, Isolation): SERIALIZABLE is only serializable per worker; a write skew across workers commits both blocks; see the h8-attack report")
	ctx := context.Background()
	tbl := uniqueName("atk_ser")
	a := connect(t)
	distribute(t, a, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v int)", tbl), tbl, "id", 4, 1)
	// Two keys whose shards are on different workers.
	var keys []int
	for k := 1; len(keys) < 2 && k < 100; k++ {
		mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (%d, 0)", tbl, k))
		port := queryString(t, connectServer(t, env.C.Coordinator), fmt.Sprintf(`
			SELECT p.node_port::text FROM pgs_distribution_metadata.shard s
			JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
			WHERE s.relation_id = '%s'::regclass AND hashint4(%d) BETWEEN s.min_value::int AND s.max_value::int`, tbl, k))
		if len(keys) == 0 || port != queryString(t, connectServer(t, env.C.Coordinator), fmt.Sprintf(`
			SELECT p.node_port::text FROM pgs_distribution_metadata.shard s
			JOIN pgs_distribution_metadata.shard_placement p ON p.shard_id = s.id
			WHERE s.relation_id = '%s'::regclass AND hashint4(%d) BETWEEN s.min_value::int AND s.max_value::int`, tbl, keys[0])) {
			keys = append(keys, k)
		}
	}
	b := connect(t)
	sum := fmt.Sprintf("SELECT sum(v) FROM %s WHERE id IN (%d, %d)", tbl, keys[0], keys[1])
	mustExec(t, a, "BEGIN ISOLATION LEVEL SERIALIZABLE", sum)
	mustExec(t, b, "BEGIN ISOLATION LEVEL SERIALIZABLE", sum)
	mustExec(t, a, fmt.Sprintf("UPDATE %s SET v = 1 WHERE id = %d", tbl, keys[0]))
	mustExec(t, b, fmt.Sprintf("UPDATE %s SET v = 1 WHERE id = %d", tbl, keys[1]))
	_, errA := a.Exec(ctx, "COMMIT")
	_, errB := b.Exec(ctx, "COMMIT")
	if errA == nil && errB == nil {
		t.Errorf("both SERIALIZABLE transactions of a write skew committed (sum now %s); PostgreSQL fails one with 40001",
			queryString(t, a, fmt.Sprintf("SELECT sum(v)::text FROM %s", tbl)))
	}
}

// PostgreSQL runs COPY (SELECT ... FOR UPDATE) TO STDOUT (it locks the rows it copies).
// pgshard refused it (0A000) even on one shard, saying FOR UPDATE "is only supported on a
// single distributed table" for a statement over a single distributed table.
func TestAttackCopySelectForUpdateRefused(t *testing.T) {
	t.Skip("known defect: COPY (SELECT ... FOR UPDATE) TO STDOUT over a distributed table is refused with a misleading message; see the h8-attack report")
	tbl := uniqueName("atk_cpl")
	c := connect(t)
	distribute(t, c, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", tbl), tbl, "id", 4, 1)
	mustExec(t, c, fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 5)", tbl))
	for _, q := range []string{
		fmt.Sprintf("COPY (SELECT id FROM %s WHERE id = 1 FOR UPDATE) TO STDOUT", tbl),
		fmt.Sprintf("COPY (SELECT id FROM %s WHERE id < 3 ORDER BY id FOR UPDATE) TO STDOUT", tbl),
	} {
		var buf strings.Builder
		if _, err := c.PgConn().CopyTo(context.Background(), &buf, q); err != nil {
			t.Errorf("%s: %v; PostgreSQL copies the rows", q, err)
		}
	}
}

// A shard's or the coordinator's error positions are mapped back to the client's statement
// (README), but PostgreSQL's "ORDER BY "grp" is ambiguous" (42702) came without its position.
func TestAttackAmbiguousOrderByLosesPosition(t *testing.T) {
	t.Skip("known defect: 42702 from an ambiguous ORDER BY name comes without its position; see the h8-attack report")
	tbl := uniqueName("atk_pos")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, grp text, t text)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'a', 'b')", tbl))
	for _, q := range []string{
		fmt.Sprintf("SELECT grp, count(*) AS grp FROM %s GROUP BY grp ORDER BY grp", tbl),
		fmt.Sprintf("SELECT id AS x, grp AS x FROM %s ORDER BY x LIMIT 1", tbl),
	} {
		var pp, pw *pgconn.PgError
		_, err := proxy.Exec(context.Background(), q)
		_, werr := plain.Exec(context.Background(), q)
		if !errors.As(err, &pp) || !errors.As(werr, &pw) {
			t.Errorf("%s: pgshard %v, PostgreSQL %v", q, err, werr)
			continue
		}
		if pp.Code != pw.Code || pp.Position != pw.Position {
			t.Errorf("%s: pgshard %s at %d, PostgreSQL %s at %d", q, pp.Code, pp.Position, pw.Code, pw.Position)
		}
	}
}

// PostgreSQL returns the rows of INSERT ... VALUES (...), (...) RETURNING in the order of
// the VALUES list, and ORMs rely on it (Django's bulk_create assigns the returned ids to its
// objects in that order). pgshard returned them grouped by shard, so the ids went to the
// wrong objects, silently.
func TestAttackInsertReturningOrderIsByShard(t *testing.T) {
	tbl := uniqueName("atk_ret")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v text)", tbl), tbl, "k", 4, 2)
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("INSERT INTO %s VALUES (5, 'a'), (1, 'b'), (9, 'c'), (3, 'd'), (7, 'e'), (2, 'f'), (8, 'g') RETURNING k, v", tbl),
		fmt.Sprintf("INSERT INTO %s SELECT g, 'x' FROM generate_series(20, 27) g ORDER BY g DESC RETURNING k", tbl))
}

// PostgreSQL accepts a parenthesized SELECT, with or without clauses after the parentheses:
// (SELECT count(*) FROM t), (SELECT id FROM t) ORDER BY id DESC LIMIT 1. Over several shards
// pgshard sent the shards text with an unbalanced parenthesis: 42601 on valid SQL.
func TestAttackParenthesizedSelectSyntaxError(t *testing.T) {
	tbl := uniqueName("atk_par")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 30)", tbl))
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("(SELECT count(*) FROM %s)", tbl),
		fmt.Sprintf("(SELECT id FROM %s) ORDER BY id DESC LIMIT 1", tbl),
		fmt.Sprintf("((SELECT id FROM %s) ORDER BY id DESC LIMIT 2)", tbl),
		fmt.Sprintf("(SELECT id FROM %s ORDER BY id) LIMIT 1", tbl))
}

// PostgreSQL compares a row with a value of the table's row type: WHERE i = ROW(1, 'u')::t.
// The shards' tables are named t_<shard id>, so the cast to t failed there: "type t does
// not exist" (42704).
func TestAttackRowTypeCastOfDistributedTable(t *testing.T) {
	t.Skip("known defect: a cast to a distributed table's row type fails on the shards (42704); see the h8-attack report")
	tbl := uniqueName("atk_row")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, name text)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'u'), (2, 'b')", tbl))
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("SELECT i.* FROM %s i WHERE i = ROW(1, 'u')::%s", tbl, tbl),
		fmt.Sprintf("SELECT id FROM %s i WHERE i.id = 2 AND i = ROW(2, 'b')::%s", tbl, tbl))
}

// PostgreSQL runs SELECT set_config('work_mem', '79kB', false), current_setting('work_mem')
// FROM t WHERE id = 1 over t's rows: one row, and the setting changes. pgshard ran every
// statement calling set_config on the coordinator, here over the empty prototype: no rows,
// and set_config was never called. Now refused (0A000) rather than answered wrong.
func TestAttackSetConfigOverDistributedTableAnsweredFromPrototype(t *testing.T) {
	tbl := uniqueName("atk_setc")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 3)", tbl))
	q := fmt.Sprintf("SELECT set_config('work_mem', '79kB', false), current_setting('work_mem') FROM %s WHERE id = 1", tbl)
	if got := outcomeOf(proxy, q); got != "error 0A000" {
		if want := outcomeOf(plain, q); got != want {
			t.Errorf("%s\n pgshard:    %s\n PostgreSQL: %s", q, got, want)
		}
	}
	// set_config on its own still works, and reaches the shards.
	mustExec(t, proxy, "SELECT set_config('work_mem', '79kB', false)")
	if got := queryString(t, proxy, fmt.Sprintf("SELECT current_setting('work_mem') FROM %s WHERE id = 2", tbl)); got != "79kB" {
		t.Errorf("work_mem on the shard after set_config: %s, want 79kB", got)
	}
}

// In PostgreSQL, SELECT tableoid::regclass FROM t says t, and SELECT nextval('s'), id FROM t
// draws from the sequence. Through pgshard a read runs on the shards as written: tableoid
// names the shard table (t_<shard id>) or a gather table (pgshard_gather_1), silently, and
// nextval of a coordinator sequence fails with 42P01 (writes evaluate such calls on the
// coordinator; reads do not).
func TestAttackReadsEvaluateCoordinatorThingsOnShards(t *testing.T) {
	t.Skip("known defect: tableoid and coordinator-only sequences/functions in reads are the shard's; see the h8-attack report")
	tbl := uniqueName("atk_rd")
	seq := tbl + "_seq"
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 3)", tbl))
	mustExec(t, proxy, "CREATE SEQUENCE public."+seq)
	mustExec(t, plain, "CREATE SEQUENCE "+seq)
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("SELECT tableoid::regclass::text, id FROM %s WHERE id = 1", tbl),
		fmt.Sprintf("SELECT DISTINCT tableoid::regclass::text FROM %s", tbl),
		fmt.Sprintf("SELECT nextval('%s') > 0, id FROM %s ORDER BY id", seq, tbl))
}

// PostgreSQL refuses a malformed binary parameter with its receive function's error: bytes
// left over (22P03 "incorrect binary data format in bind parameter 1"), too few (08P01
// "insufficient data left in message"), text that is not UTF-8 (22021 "invalid byte
// sequence ..."). For a partition key pgshard answered 22023 "invalid binary value for
// parameter $1 of type ...", another SQLSTATE than PostgreSQL's.
func TestAttackMalformedBinaryKeyParameterSQLSTATE(t *testing.T) {
	ctx := context.Background()
	ti, tt := uniqueName("atk_bin_i"), uniqueName("atk_bin_t")
	proxy := connect(t)
	distribute(t, proxy, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY)", ti), ti, "k", 4, 1)
	distribute(t, proxy, fmt.Sprintf("CREATE TABLE %s (k text PRIMARY KEY)", tt), tt, "k", 4, 1)
	plain := connectServer(t, env.C.Coordinator)
	schema := uniqueName("attack_plain")
	mustExec(t, plain, "CREATE SCHEMA "+schema, "SET search_path = "+schema,
		fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY)", ti), fmt.Sprintf("CREATE TABLE %s (k text PRIMARY KEY)", tt))
	cases := []struct {
		sql string
		oid uint32
		val []byte
	}{
		{fmt.Sprintf("SELECT * FROM %s WHERE k = $1", ti), 23, []byte{0, 0, 0, 0, 0, 0, 0, 7}},
		{fmt.Sprintf("SELECT * FROM %s WHERE k = $1", ti), 23, []byte{0, 0, 7}},
		{fmt.Sprintf("INSERT INTO %s VALUES ($1)", ti), 23, []byte{0, 0, 0, 0, 0, 0, 0, 7}},
		{fmt.Sprintf("SELECT * FROM %s WHERE k = $1", tt), 25, []byte{0xff, 0xfe}},
		{fmt.Sprintf("INSERT INTO %s VALUES ($1)", tt), 25, []byte{'a', 0xc3, 0x28}},
		{fmt.Sprintf("INSERT INTO %s VALUES ($1)", tt), 25, []byte{'a', 0, 'b'}},
	}
	describe := func(c *pgx.Conn, sql string, oid uint32, val []byte) string {
		res := c.PgConn().ExecParams(ctx, sql, [][]byte{val}, []uint32{oid}, []int16{1}, nil).Read()
		var pe *pgconn.PgError
		if errors.As(res.Err, &pe) {
			return pe.Code + " " + pe.Message
		}
		return fmt.Sprint(res.Err)
	}
	for _, c := range cases {
		if got, want := describe(proxy, c.sql, c.oid, c.val), describe(plain, c.sql, c.oid, c.val); got != want {
			t.Errorf("%s with binary %x:\n pgshard:    %s\n PostgreSQL: %s", c.sql, c.val, got, want)
		}
	}
}

// In PostgreSQL, GRANT SELECT ON t TO r lets r read t. Through pgshard the GRANT reached
// only the coordinator's prototype: r (which exists on every server) then got "permission
// denied for table t_<shard id>" from the shards — naming the shard table, too.
func TestAttackGrantDoesNotReachShards(t *testing.T) {
	tbl := uniqueName("atk_grant")
	role := uniqueName("atk_role")
	for _, s := range append(append([]*cluster.Server{}, env.C.Workers...), env.C.Coordinator) {
		c := connectServer(t, s)
		mustExec(t, c, "CREATE ROLE "+role)
	}
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s SELECT generate_series(1, 3)", tbl),
		fmt.Sprintf("GRANT SELECT ON %s TO %s", tbl, role))
	mustExec(t, plain, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", queryString(t, plain, "SELECT current_schema()"), role))
	mustExec(t, proxy, "SET ROLE "+role)
	mustExec(t, plain, "SET ROLE "+role)
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("SELECT count(*) FROM %s", tbl),
		fmt.Sprintf("SELECT id FROM %s WHERE id = 2", tbl),
		fmt.Sprintf("INSERT INTO %s VALUES (9)", tbl))
}

// pgshard's admin statements are recognised only when they are the whole query string: in
// "SELECT 1; SHOW NODES" (psql -c, a script sent at once) SHOW NODES went to the
// coordinator, which said 'unrecognized configuration parameter "nodes"' (42704).
func TestAttackAdminStatementInMultiStatementString(t *testing.T) {
	t.Skip("known defect: admin statements inside a multi-statement query string go to the coordinator; see the h8-attack report")
	c := connect(t)
	for _, q := range []string{"SELECT 1; SHOW NODES", "SHOW NODES; SELECT 1", "SHOW VERSION; SHOW STATS"} {
		if _, err := c.Exec(context.Background(), q); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// A distributed table named with a common word (data, items, users) makes pgshard refuse
// every function or DO block whose body contains that word anywhere — a parameter, a
// variable, a column of a local table, a string — though none of them reads the table
// (README: a deliberate word match). PostgreSQL creates and runs them.
func TestAttackPrototypeRefusalOverRefusesCommonWords(t *testing.T) {
	t.Skip("known limitation (documented): function bodies are refused by word match on distributed table names; see the h8-attack report")
	word := uniqueName("data")
	c := connect(t)
	distribute(t, c, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY)", word), word, "id", 2, 1)
	loc := uniqueName("atk_local")
	mustExec(t, c, fmt.Sprintf("CREATE TABLE %s (id int, %s jsonb)", loc, word))
	for _, q := range []string{
		fmt.Sprintf("CREATE FUNCTION %s_add1(%s int) RETURNS int LANGUAGE sql AS 'select %s + 1'", loc, word, word),
		fmt.Sprintf("CREATE FUNCTION %s_var() RETURNS int LANGUAGE plpgsql AS $$ DECLARE %s int := 3; BEGIN RETURN %s; END $$", loc, word, word),
		fmt.Sprintf("CREATE FUNCTION %s_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.%s := '{}'; RETURN NEW; END $$", loc, word),
		fmt.Sprintf("DO $$ BEGIN RAISE NOTICE 'no %s here'; END $$", word),
	} {
		if _, err := c.Exec(context.Background(), q); err != nil {
			t.Errorf("%s: %v; PostgreSQL accepts it and it never reads the distributed table", q, err)
		}
	}
}

// PostgreSQL answers any SELECT in a READ ONLY transaction (BEGIN READ ONLY, or
// default_transaction_read_only = on, as read-only reporting connections use). A SELECT
// that pgshard gathers (window functions, DISTINCT ON, subqueries, CTEs...) creates
// temporary tables on the coordinator in the client's transaction and failed there:
// "cannot execute CREATE TABLE AS in a read-only transaction" (25006).
func TestAttackGatheredSelectInReadOnlyTransaction(t *testing.T) {
	t.Skip("known defect: gathered SELECTs fail in read-only transactions (25006); see the h8-attack report")
	tbl := uniqueName("atk_ro")
	proxy, plain := attackPair(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, grp text)", tbl), tbl, "id", 4, 1,
		fmt.Sprintf("INSERT INTO %s SELECT g, 'g' || (g %% 3) FROM generate_series(1, 12) g", tbl))
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "SET default_transaction_read_only = on")
	}
	sameAsPlain(t, proxy, plain,
		fmt.Sprintf("SELECT id, rank() OVER (PARTITION BY grp ORDER BY id) FROM %s ORDER BY id", tbl),
		fmt.Sprintf("SELECT DISTINCT ON (grp) grp, id FROM %s ORDER BY grp, id", tbl),
		fmt.Sprintf("WITH x AS (SELECT * FROM %s) SELECT count(*) FROM x", tbl))
}
