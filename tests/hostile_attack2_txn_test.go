package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Attacks on the transaction layer (txnState: blocks, savepoints, SET LOCAL, chains, shard
// locks) and on the write executor, after their restructure: the same statement sequences
// run through pgshard on a table distributed over several shards with two placements each,
// and on plain PostgreSQL on a plain table; every step's answer (rows or SQLSTATE), its
// notices and the transaction status after it must agree, and so must the table and the
// two placements of every shard at the end.

// txnPair is a distributed table (4 shards, 2 placements) and the same table on plain
// PostgreSQL, reached through connections that collect their notices.
type txnPair struct {
	table, schema string
	proxy, plain  *pgx.Conn
	notices       [2][]string
}

func newTxnPair(t *testing.T) *txnPair {
	t.Helper()
	p := &txnPair{table: uniqueName("atk2_txn")}
	ddl := fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, v text)", p.table)
	setup := fmt.Sprintf("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, 8) g", p.table)
	distribute(t, connect(t), ddl, p.table, "id", 4, 2)
	mustExec(t, connect(t), setup)
	p.schema = uniqueName("atk2_plain")
	admin := connectServer(t, env.C.Coordinator)
	mustExec(t, admin, "CREATE SCHEMA "+p.schema, "SET search_path = "+p.schema, ddl, setup)
	for i, url := range []string{simpleURL(env.P), env.C.Coordinator.URL("postgres")} {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		if i == 1 {
			cfg.RuntimeParams["search_path"] = p.schema
		}
		i := i
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			p.notices[i] = append(p.notices[i], n.Severity+" "+n.Code+" "+n.Message)
		}
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		if i == 0 {
			p.proxy = c
		} else {
			p.plain = c
		}
	}
	return p
}

// step runs one statement on both sides ({T} is the table, {S} the schema that holds it)
// and compares answer, notices and transaction status.
func (p *txnPair) step(t *testing.T, sql string) {
	t.Helper()
	var got [2]string
	for i, c := range []*pgx.Conn{p.proxy, p.plain} {
		schema := "public"
		if i == 1 {
			schema = p.schema
		}
		q := strings.NewReplacer("{T}", p.table, "{S}", schema).Replace(sql)
		p.notices[i] = nil
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		out := outcomeCtx(ctx, c, q)
		cancel()
		got[i] = fmt.Sprintf("%s | notices %q | status %c", out, p.notices[i], c.PgConn().TxStatus())
	}
	if got[0] != got[1] {
		t.Errorf("%s\n pgshard:    %s\n PostgreSQL: %s", sql, got[0], got[1])
	}
}

// run runs the steps, then checks the table's rows and its placements.
func (p *txnPair) run(t *testing.T, steps ...string) {
	t.Helper()
	for _, s := range steps {
		p.step(t, s)
	}
	p.step(t, "SELECT id, v FROM {T} ORDER BY id")
	check := connect(t)
	if s := check.PgConn().TxStatus(); s != 'I' {
		t.Fatalf("status %c", s)
	}
	checkPlacements(t, p.table, "hashint4(id)")
}

func outcomeCtx(ctx context.Context, c *pgx.Conn, sql string) string {
	rows, err := c.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
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
	return strings.Join(out, "; ") + " [" + rows.CommandTag().String() + "]"
}

// TestAttack2TxnSequences: savepoints, errors, chains, SET LOCAL and failed blocks, each
// sequence against plain PostgreSQL.
func TestAttack2TxnSequences(t *testing.T) {
	cases := map[string][]string{
		"nested-savepoints": {
			"BEGIN",
			"INSERT INTO {T} VALUES (100, 'a')",
			"SAVEPOINT s1",
			"UPDATE {T} SET v = 'x' WHERE id IN (1, 2, 3, 4)",
			"SAVEPOINT s2",
			"DELETE FROM {T} WHERE id = 5",
			"INSERT INTO {T} VALUES (101, 'b')",
			"ROLLBACK TO SAVEPOINT s1",
			"SELECT id, v FROM {T} ORDER BY id",
			"INSERT INTO {T} VALUES (102, 'c')",
			"UPDATE {T} SET v = 'y' WHERE id = 6",
			"RELEASE SAVEPOINT s1",
			"SAVEPOINT s3",
			"DELETE FROM {T} WHERE id = 7",
			"ROLLBACK TO s3",
			"RELEASE s3",
			"ROLLBACK TO s1",
			"COMMIT",
		},
		"error-in-savepoint": {
			"BEGIN",
			"UPDATE {T} SET v = 'p' WHERE id = 1",
			"SAVEPOINT a",
			"INSERT INTO {T} VALUES (2, 'dup')",
			"SELECT 1",
			"RELEASE a",
			"ROLLBACK TO a",
			"INSERT INTO {T} VALUES (200, 'after')",
			"SAVEPOINT b",
			"SELECT 1/0",
			"ROLLBACK TO b",
			"UPDATE {T} SET v = 'q' WHERE id = 2",
			"RELEASE b",
			"COMMIT",
		},
		"multi-shard-write-fails-on-one-shard": {
			"UPDATE {T} SET v = (CASE WHEN id = 7 THEN 1/0 ELSE 1 END)::text",
			"INSERT INTO {T} SELECT g, 'n' FROM generate_series(20, 40) g UNION ALL SELECT 3, 'dup'",
			"DELETE FROM {T} WHERE id = 1 / (id - 5)",
			"BEGIN",
			"UPDATE {T} SET v = 'b' WHERE id IN (1, 2)",
			"SAVEPOINT s",
			"UPDATE {T} SET v = (CASE WHEN id = 7 THEN 1/0 ELSE 1 END)::text",
			"ROLLBACK TO s",
			"INSERT INTO {T} SELECT g, 'n' FROM generate_series(20, 40) g UNION ALL SELECT 3, 'dup'",
			"ROLLBACK TO s",
			"UPDATE {T} SET v = v || '!'",
			"COMMIT",
		},
		"error-then-commit": {
			"BEGIN",
			"INSERT INTO {T} VALUES (300, 'gone')",
			"UPDATE {T} SET v = 'gone' WHERE id > 0",
			"INSERT INTO {T} VALUES (1, 'dup')",
			"UPDATE {T} SET v = 'z'",
			"SAVEPOINT x",
			"COMMIT",
			"SELECT count(*) FROM {T} WHERE v = 'gone'",
		},
		"begin-in-block": {
			"BEGIN",
			"INSERT INTO {T} VALUES (400, 'a')",
			"BEGIN",
			"START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
			"SHOW transaction_isolation",
			"COMMIT",
			"COMMIT",
			"ROLLBACK",
			"SAVEPOINT nope",
			"RELEASE nope",
			"ROLLBACK TO nope",
		},
		"chain": {
			"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
			"SELECT count(*) FROM {T}",
			"COMMIT AND CHAIN",
			"SHOW transaction_isolation",
			"SHOW transaction_read_only",
			"INSERT INTO {T} VALUES (500, 'ro')",
			"ROLLBACK AND CHAIN",
			"SHOW transaction_read_only",
			"UPDATE {T} SET v = 'ro' WHERE id = 1",
			"ROLLBACK",
			"BEGIN ISOLATION LEVEL SERIALIZABLE",
			"INSERT INTO {T} VALUES (501, 'c1')",
			"COMMIT AND CHAIN",
			"SHOW transaction_isolation",
			"INSERT INTO {T} VALUES (502, 'c2')",
			"SELECT 1/0",
			"COMMIT AND CHAIN",
			"SHOW transaction_isolation",
			"INSERT INTO {T} VALUES (503, 'c3')",
			"ROLLBACK AND CHAIN",
			"SHOW transaction_isolation",
			"SET TRANSACTION READ ONLY",
			"DELETE FROM {T} WHERE id = 501",
			"ROLLBACK",
			"COMMIT AND CHAIN",
			"ROLLBACK AND CHAIN",
			"SHOW transaction_isolation",
		},
		"set-local": {
			"BEGIN",
			"SET LOCAL search_path = pg_catalog",
			"SELECT count(*) FROM {T}",
			"SELECT count(*) FROM {S}.{T}",
			"INSERT INTO {S}.{T} VALUES (600, 'sp')",
			"SAVEPOINT a",
			"SET LOCAL statement_timeout = '150ms'",
			"SELECT count(*) FROM {S}.{T} WHERE pg_sleep(0.1) IS NOT NULL",
			"ROLLBACK TO a",
			"SHOW statement_timeout",
			"SELECT count(*) FROM {S}.{T} WHERE pg_sleep(0.05) IS NOT NULL",
			"COMMIT",
			"SELECT count(*) FROM {T}",
			"BEGIN",
			"SAVEPOINT b",
			"SET LOCAL lock_timeout = '1s'",
			"RELEASE b",
			"SHOW lock_timeout",
			"SET LOCAL work_mem = '1234kB'",
			"SELECT current_setting('work_mem') FROM {T} WHERE id = 1",
			"ROLLBACK",
			"SHOW work_mem",
		},
		"set-local-undone-on-late-workers": {
			"BEGIN",
			"UPDATE {T} SET v = 'w' WHERE id = 1",
			"SAVEPOINT a",
			"SET LOCAL statement_timeout = '100ms'",
			"SELECT id FROM {T} WHERE id = 2 AND pg_sleep(0.3) IS NOT NULL",
			"ROLLBACK TO a",
			"SELECT id FROM {T} WHERE id = 3 AND pg_sleep(0.3) IS NOT NULL",
			"SELECT count(*) FROM {T} WHERE pg_sleep(0.05) IS NOT NULL",
			"SET TRANSACTION READ ONLY",
			"SELECT count(*) FROM {T}",
			"DELETE FROM {T} WHERE id = 4",
			"ROLLBACK TO a",
			"SHOW transaction_read_only",
			"COMMIT",
			"BEGIN",
			"SELECT count(*) FROM {T}",
			"SET LOCAL transaction_read_only = on",
			"INSERT INTO {T} VALUES (900, 'ro')",
			"ROLLBACK",
			"SET default_transaction_read_only = on",
			"BEGIN",
			"INSERT INTO {T} VALUES (901, 'ro')",
			"ROLLBACK",
			"INSERT INTO {T} VALUES (902, 'ro')",
			"BEGIN READ WRITE",
			"INSERT INTO {T} VALUES (903, 'rw')",
			"COMMIT",
			"RESET default_transaction_read_only",
		},
		"set-in-savepoint-rolled-back": {
			"BEGIN",
			"SAVEPOINT a",
			"SET application_name = 'inner'",
			"SET search_path = pg_catalog",
			"ROLLBACK TO a",
			"SHOW application_name",
			"SELECT count(*) FROM {T}",
			"SAVEPOINT b",
			"SET application_name = 'kept'",
			"RELEASE b",
			"COMMIT",
			"SHOW application_name",
		},
		// A block that used no distributed table prepares as in PostgreSQL (one that
		// did is refused: TestHostileAttackPrepareTransaction).
		"prepare-transaction": {
			"BEGIN",
			"SELECT 1",
			"PREPARE TRANSACTION 'atk2_{S}'",
			"SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'atk2_{S}'",
			"COMMIT PREPARED 'atk2_{S}'",
			"BEGIN",
			"PREPARE TRANSACTION 'atk2b_{S}'",
			"ROLLBACK PREPARED 'atk2b_{S}'",
			"BEGIN",
			"SELECT 1/0",
			"PREPARE TRANSACTION 'atk2c_{S}'",
			"SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'atk2c_{S}'",
			"BEGIN",
			"SELECT 1",
			"PREPARE TRANSACTION 'atk2_{S}'; SELECT 2",
			"COMMIT PREPARED 'atk2_{S}'",
			"COMMIT",
		},
		"begin-options-in-block": {
			"BEGIN",
			"BEGIN ISOLATION LEVEL SERIALIZABLE",
			"SHOW transaction_isolation",
			"START TRANSACTION READ ONLY",
			"SELECT count(*) FROM {T}",
			"INSERT INTO {T} VALUES (800, 'ro')",
			"ROLLBACK",
			"BEGIN",
			"INSERT INTO {T} VALUES (801, 'a')",
			"BEGIN READ ONLY",
			"SHOW transaction_read_only",
			"UPDATE {T} SET v = 'ro'",
			"ROLLBACK",
			"BEGIN",
			"SELECT count(*) FROM {T}",
			"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
			"ROLLBACK",
			"BEGIN",
			"INSERT INTO {T} VALUES (802, 'b')",
			"BEGIN WORK",
			"begin transaction;",
			"START TRANSACTION",
			"COMMIT AND CHAIN",
			"BEGIN READ ONLY",
			"COMMIT AND CHAIN",
			"SHOW transaction_read_only",
			"COMMIT",
		},
		"savepoint-outside-block": {
			"SAVEPOINT a",
			"RELEASE a",
			"ROLLBACK TO a",
			"COMMIT",
			"ROLLBACK",
			"COMMIT AND CHAIN",
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			newTxnPair(t).run(t, steps...)
		})
	}
}

// pipeline sends the statements as one extended-protocol pipeline on both sides and
// compares what each answered and the transaction status after Sync.
func (p *txnPair) pipeline(t *testing.T, stmts ...string) {
	t.Helper()
	var got [2]string
	for i, c := range []*pgx.Conn{p.proxy, p.plain} {
		schema := "public"
		if i == 1 {
			schema = p.schema
		}
		r := strings.NewReplacer("{T}", p.table, "{S}", schema)
		var qs []string
		for _, s := range stmts {
			qs = append(qs, r.Replace(s))
		}
		p.notices[i] = nil
		out := pipelineOutcome(t, c, qs...)
		got[i] = fmt.Sprintf("%s | notices %q | status %c", out, p.notices[i], c.PgConn().TxStatus())
	}
	if got[0] != got[1] {
		t.Errorf("%q\n pgshard:    %s\n PostgreSQL: %s", stmts, got[0], got[1])
	}
}

// TestAttack2TxnPipelines: several statements before one Sync are one implicit
// transaction (one failing undoes the others, on every shard), and transaction control
// inside the pipeline behaves as in PostgreSQL.
func TestAttack2TxnPipelines(t *testing.T) {
	cases := map[string][][]string{
		"one-fails": {
			{"INSERT INTO {T} VALUES (100, 'a')", "UPDATE {T} SET v = 'p' WHERE id IN (1, 2, 3, 4, 5)", "DELETE FROM {T} WHERE id = 6", "INSERT INTO {T} VALUES (7, 'dup')", "INSERT INTO {T} VALUES (101, 'b')"},
			{"INSERT INTO {T} VALUES (102, 'a')", "UPDATE {T} SET v = 'q' WHERE id > 4", "SELECT count(*) FROM {T}"},
			{"SELECT count(*) FROM {T}", "UPDATE {T} SET v = 'r' WHERE id = 1", "SELECT 1/0"},
		},
		"begin-inside": {
			{"INSERT INTO {T} VALUES (200, 'a')", "BEGIN", "INSERT INTO {T} VALUES (201, 'b')"},
			{"INSERT INTO {T} VALUES (202, 'c')", "COMMIT"},
			{"INSERT INTO {T} VALUES (203, 'a')", "BEGIN", "INSERT INTO {T} VALUES (204, 'b')", "SELECT 1/0"},
			{"ROLLBACK"},
		},
		"commit-inside": {
			{"INSERT INTO {T} VALUES (300, 'a')", "COMMIT", "INSERT INTO {T} VALUES (301, 'b')", "INSERT INTO {T} VALUES (1, 'dup')"},
			{"UPDATE {T} SET v = 'x' WHERE id = 2", "ROLLBACK", "UPDATE {T} SET v = 'y' WHERE id = 3"},
			{"UPDATE {T} SET v = 'x' WHERE id = 4", "COMMIT AND CHAIN", "UPDATE {T} SET v = 'y' WHERE id = 5"},
			{"UPDATE {T} SET v = 'x' WHERE id = 6", "ROLLBACK AND CHAIN"},
			{"UPDATE {T} SET v = 'x' WHERE id = 7", "BEGIN", "SHOW transaction_isolation", "UPDATE {T} SET v = 'w' WHERE id = 8"},
			{"SHOW transaction_isolation", "ROLLBACK"},
			{"BEGIN ISOLATION LEVEL REPEATABLE READ", "SHOW transaction_isolation", "UPDATE {T} SET v = 'w' WHERE id = 8"},
			{"SHOW transaction_isolation", "COMMIT"},
		},
		"savepoints-in-block": {
			{"BEGIN", "INSERT INTO {T} VALUES (400, 'a')", "SAVEPOINT s", "UPDATE {T} SET v = 'z'", "INSERT INTO {T} VALUES (8, 'dup')"},
			{"ROLLBACK TO s", "INSERT INTO {T} VALUES (401, 'b')", "RELEASE s", "COMMIT"},
		},
	}
	for name, pipes := range cases {
		t.Run(name, func(t *testing.T) {
			p := newTxnPair(t)
			for _, stmts := range pipes {
				p.pipeline(t, stmts...)
			}
			p.run(t)
		})
	}
}

// TestAttack2TxnMultiStatement: a multi-statement query string is one implicit
// transaction, which BEGIN, COMMIT and ROLLBACK inside it change as in PostgreSQL.
func TestAttack2TxnMultiStatement(t *testing.T) {
	p := newTxnPair(t)
	p.run(t,
		"INSERT INTO {T} VALUES (100, 'a'); UPDATE {T} SET v = 'm' WHERE id < 5; INSERT INTO {T} VALUES (1, 'dup')",
		"INSERT INTO {T} VALUES (101, 'a'); BEGIN; INSERT INTO {T} VALUES (102, 'b')",
		"ROLLBACK",
		"INSERT INTO {T} VALUES (103, 'a'); COMMIT; INSERT INTO {T} VALUES (104, 'b'); SELECT 1/0",
		"UPDATE {T} SET v = 'r' WHERE id = 6; ROLLBACK; UPDATE {T} SET v = 's' WHERE id = 7",
		"BEGIN; INSERT INTO {T} VALUES (105, 'a'); SAVEPOINT s; INSERT INTO {T} VALUES (2, 'dup')",
		"ROLLBACK TO s; UPDATE {T} SET v = 't' WHERE id = 8; COMMIT",
		"BEGIN; INSERT INTO {T} VALUES (106, 'a'); COMMIT",
		"SELECT 1; COMMIT; SELECT 2",
		"INSERT INTO {T} VALUES (107, 'a'); ROLLBACK AND CHAIN; INSERT INTO {T} VALUES (108, 'a')",
		"INSERT INTO {T} VALUES (109, 'a'); COMMIT AND CHAIN",
		"INSERT INTO {T} VALUES (110, 'a'); BEGIN; INSERT INTO {T} VALUES (111, 'b'); COMMIT; INSERT INTO {T} VALUES (112, 'c'); SELECT 1/0",
	)
}

// TestAttack2TxnLocksAfterDisconnect: a client that vanishes (its socket closed, no
// Terminate) in a block holding shard write locks gives them back: another session's
// write to those shards proceeds at once, and the block's writes are gone.
func TestAttack2TxnLocksAfterDisconnect(t *testing.T) {
	owner := connect(t)
	table := lockTable(t, owner, "atk2_gone", 2, "")
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s SELECT g, 'o' FROM generate_series(1, 10) g", table))
	for _, how := range []string{"socket", "terminate", "failed"} {
		t.Run(how, func(t *testing.T) {
			c, err := pgx.Connect(context.Background(), simpleURL(env.P))
			if err != nil {
				t.Fatal(err)
			}
			mustExec(t, c, "BEGIN", fmt.Sprintf("UPDATE %s SET v = 'gone' WHERE id > 0", table), fmt.Sprintf("INSERT INTO %s VALUES (100, 'gone')", table))
			if how == "failed" {
				c.Exec(context.Background(), "SELECT 1/0")
			}
			if how == "terminate" {
				c.Close(context.Background())
			} else {
				c.PgConn().Conn().Close()
			}
			quickWrite(t, owner, fmt.Sprintf("UPDATE %s SET v = 'o2' WHERE id > 0", table))
			if got := queryString(t, owner, fmt.Sprintf("SELECT count(*)::text FROM %s WHERE v = 'gone' OR id = 100", table)); got != "0" {
				t.Errorf("%s rows of the vanished block", got)
			}
			checkPlacements(t, table, "hashint4(id)")
		})
	}
}

// TestAttack2TxnSameShardTwoBlocks: two blocks writing the same rows of a replicated
// shard: the second waits for the first as in PostgreSQL, then applies on top of its
// commit, and both placements agree.
func TestAttack2TxnSameShardTwoBlocks(t *testing.T) {
	p := newTxnPair(t)
	for i, pair := range [][2]*pgx.Conn{{p.proxy, connect(t)}, {p.plain, nil}} {
		a, b := pair[0], pair[1]
		if b == nil {
			b = connectServer(t, env.C.Coordinator)
			mustExec(t, b, "SET search_path = "+p.schema)
		}
		mustExec(t, a, "BEGIN", fmt.Sprintf("UPDATE %s SET v = v || 'a' WHERE id IN (1, 2, 3)", p.table))
		mustExec(t, b, "BEGIN")
		done := make(chan error, 1)
		go func() {
			_, err := b.Exec(context.Background(), fmt.Sprintf("UPDATE %s SET v = v || 'b' WHERE id IN (1, 2, 3, 4)", p.table))
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("side %d: the second block's write did not wait: %v", i, err)
		case <-time.After(500 * time.Millisecond):
		}
		mustExec(t, a, fmt.Sprintf("INSERT INTO %s VALUES (50, 'a')", p.table), "COMMIT")
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("side %d: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("side %d: the second block's write still waits", i)
		}
		mustExec(t, b, "COMMIT")
	}
	p.run(t)
}
