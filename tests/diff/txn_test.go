package diff

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"
)

var (
	txSeed  = flag.Int64("diff.txseed", 0, "seed of TestDiffTransactions (0: a new one, printed)")
	txSteps = flag.Int("diff.txsteps", 250, "statements per session in TestDiffTransactions")
)

// txTables: tx_d is distributed through the proxy (plain in the oracle); txs.tx_d is a
// plain table of the same name in another schema, reached when a statement sets
// search_path to txs first.
const (
	txDDL      = "CREATE TABLE %s (k int NOT NULL, id int NOT NULL, v int, note text, PRIMARY KEY (k, id))"
	txSessions = 3
)

// TestDiffTransactions runs random sequences (seeded: the seed is printed, and
// -diff.txseed replays one) of BEGIN, SAVEPOINT, ROLLBACK TO, RELEASE, COMMIT and
// ROLLBACK (AND CHAIN) with single- and multi-shard INSERT, UPDATE and DELETE, SET, SET
// LOCAL, set_config, SET ROLE, SET SESSION AUTHORIZATION, search_path changes that make
// an unqualified name reach a plain table of another schema, and SELECTs (some reading
// settings and current_user on the shards), through pgshard and on a
// plain database, in every protocol mode. After every statement the outcome (SQLSTATE,
// command tag, rows) and the transaction status must agree; after every session, the
// tables; at the end, the two placements of every shard.
func TestDiffTransactions(t *testing.T) {
	ctx := context.Background()
	if err := loaded(ctx); err != nil {
		t.Fatalf("load: %v", err)
	}
	seed := *txSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000_000
	}
	t.Logf("seed %d (replay: go test ./tests/diff/ -run TestDiffTransactions -diff.txseed=%d)", seed, seed)
	rnd := rand.New(rand.NewSource(seed))

	oracle := &side{name: "oracle", url: oracleURL()}
	proxy := &side{name: "proxy", url: proxyURL()}
	defer oracle.close()
	defer proxy.close()
	setup := []string{
		"DROP TABLE IF EXISTS tx_d", "DROP SCHEMA IF EXISTS txs CASCADE",
		fmt.Sprintf(txDDL, "tx_d"), "CREATE SCHEMA txs", fmt.Sprintf(txDDL, "txs.tx_d"),
	}
	for _, s := range []*side{oracle, proxy} {
		for _, q := range setup {
			if r := s.run(ctx, modes[0], q, nil); r.err != nil {
				t.Fatalf("%s: %s: %v", s.name, q, r.err)
			}
		}
	}
	for _, q := range []string{"select master_create_distributed_table('tx_d', 'k')", "select master_create_worker_shards('tx_d', 6, 2)"} {
		if r := proxy.run(ctx, modes[0], q, nil); r.err != nil {
			t.Fatalf("%s: %v", q, r.err)
		}
	}
	// A role the sequences SET ROLE to, with the rights the sequences need everywhere
	// (roles are per server: the coordinator, which holds the oracle database too, and
	// every worker).
	grants := "GRANT USAGE ON SCHEMA txs TO tx_role; GRANT ALL ON ALL TABLES IN SCHEMA public, txs TO tx_role"
	if _, err := env.C.Coordinator.Exec(ctx, "postgres", "DROP ROLE IF EXISTS tx_role; CREATE ROLE tx_role; "+grants); err != nil {
		t.Fatal(err)
	}
	if _, err := env.C.Coordinator.Exec(ctx, "oracle", grants); err != nil {
		t.Fatal(err)
	}
	for _, w := range env.C.Workers {
		if _, err := w.Exec(ctx, "postgres", "DROP ROLE IF EXISTS tx_role; CREATE ROLE tx_role; GRANT ALL ON ALL TABLES IN SCHEMA public TO tx_role"); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*side{oracle, proxy} {
		q := "INSERT INTO tx_d SELECT g % 12, g, g * 3, 'n' || g FROM generate_series(1, 60) g"
		if r := s.run(ctx, modes[0], q, nil); r.err != nil {
			t.Fatalf("%s: %s: %v", s.name, q, r.err)
		}
	}

	for n := 0; n < txSessions && !t.Failed(); n++ {
		// Each sequence runs in a new session on both sides.
		oracle.close()
		proxy.close()
		oracle.conn, proxy.conn = nil, nil
		g := &txGen{rnd: rnd}
		var history []string
		for i := 0; i < *txSteps; i++ {
			sql := g.next()
			m := modes[rnd.Intn(len(modes))]
			if strings.Contains(sql, ";") || strings.HasPrefix(sql, "SET") || strings.HasPrefix(sql, "RESET") {
				m = modes[0] // several statements, or no parameters: simple protocol
			}
			history = append(history, fmt.Sprintf("[%s] %s", m.name, sql))
			o, p := oracle.run(ctx, m, sql, nil), proxy.run(ctx, m, sql, nil)
			cause, detail := compare(o, p, strings.Contains(sql, "ORDER BY"))
			if cause == "" {
				if os, ps := oracle.conn.PgConn().TxStatus(), proxy.conn.PgConn().TxStatus(); os != ps {
					cause, detail = "transaction status", fmt.Sprintf("oracle %c, proxy %c", os, ps)
				}
			}
			if cause != "" {
				shown := history
				if len(shown) > 60 {
					shown = shown[len(shown)-60:]
				}
				t.Errorf("seed %d, session %d, step %d: %s: %s\n%s\nthe session's last statements:\n  %s", seed, n, i, sql, cause, detail, strings.Join(shown, "\n  "))
				break
			}
			g.observe(oracle.conn.PgConn().TxStatus())
		}
		// End the session's block, if any, and compare the tables.
		for _, s := range []*side{oracle, proxy} {
			s.run(ctx, modes[0], "ROLLBACK", nil)
			s.run(ctx, modes[0], "RESET ALL", nil)
		}
		for _, q := range []string{"SELECT * FROM public.tx_d ORDER BY k, id", "SELECT * FROM txs.tx_d ORDER BY k, id"} {
			o, p := oracle.run(ctx, modes[0], q, nil), proxy.run(ctx, modes[0], q, nil)
			if cause, detail := compare(o, p, true); cause != "" {
				t.Errorf("seed %d, after session %d: %s: %s\n%s", seed, n, q, cause, detail)
			} else {
				t.Logf("session %d: %s: %d rows agree", n, q, len(p.rows))
			}
		}
	}
	checkReplicas(ctx, t, "tx_d")
}

// txGen generates statements that are valid in the state the session is in (mostly: a
// few are errors on purpose), tracking the transaction status and the savepoints.
type txGen struct {
	rnd        *rand.Rand
	inBlock    bool
	failed     bool
	savepoints []string
	nextSP     int
}

// observe updates the generator's view from the transaction status after a statement.
func (g *txGen) observe(status byte) {
	switch status {
	case 'I':
		g.inBlock, g.failed, g.savepoints = false, false, nil
	case 'T':
		g.inBlock, g.failed = true, false
	case 'E':
		g.inBlock, g.failed = true, true
	}
}

func (g *txGen) pick(xs ...string) string { return xs[g.rnd.Intn(len(xs))] }

func (g *txGen) next() string {
	r := g.rnd
	k := r.Intn(14) // 12 and 13 hold no rows at first
	id := 1 + r.Intn(70)
	tbl := g.pick("tx_d", "tx_d", "tx_d", "public.tx_d")
	switch x := r.Intn(100); {
	case g.failed && x < 60:
		// A failed block: mostly its end, sometimes a statement (25P02) or a ROLLBACK TO.
		if len(g.savepoints) > 0 && r.Intn(2) == 0 {
			return "ROLLBACK TO SAVEPOINT " + g.savepoints[r.Intn(len(g.savepoints))]
		}
		return g.pick("ROLLBACK", "COMMIT", "ROLLBACK", "ROLLBACK AND CHAIN")
	case x < 10:
		if !g.inBlock {
			// (Not BEGIN READ ONLY: a GROUP BY across shards gathers into a temporary
			// table on the coordinator, which a read-only block refuses with 25006.)
			return g.pick("BEGIN", "BEGIN", "START TRANSACTION", "BEGIN ISOLATION LEVEL REPEATABLE READ")
		}
		return g.pick("COMMIT", "ROLLBACK", "COMMIT", "BEGIN")
	case x < 18:
		if !g.inBlock && r.Intn(4) > 0 {
			return "BEGIN"
		}
		g.nextSP++
		name := fmt.Sprintf("sp%d", g.nextSP%4)
		g.savepoints = append(g.savepoints, name)
		return "SAVEPOINT " + name
	case x < 24:
		name := fmt.Sprintf("sp%d", r.Intn(5))
		if len(g.savepoints) > 0 && r.Intn(4) > 0 {
			name = g.savepoints[r.Intn(len(g.savepoints))]
		}
		if r.Intn(3) == 0 {
			return "RELEASE SAVEPOINT " + name
		}
		return "ROLLBACK TO SAVEPOINT " + name
	case x < 34:
		// INSERT: one row (maybe a duplicate key), several rows across shards.
		if r.Intn(2) == 0 {
			return fmt.Sprintf("INSERT INTO %s VALUES (%d, %d, %d, 'i%d')", tbl, k, id, r.Intn(1000), id)
		}
		var rows []string
		for j := 0; j < 1+r.Intn(4); j++ {
			rows = append(rows, fmt.Sprintf("(%d, %d, %d, 'm')", r.Intn(14), 100+r.Intn(400), r.Intn(1000)))
		}
		return fmt.Sprintf("INSERT INTO %s VALUES %s", tbl, strings.Join(rows, ", "))
	case x < 44:
		switch r.Intn(4) {
		case 0:
			return fmt.Sprintf("UPDATE %s SET v = v + %d WHERE k = %d", tbl, 1+r.Intn(9), k)
		case 1:
			return fmt.Sprintf("UPDATE %s SET v = v * 2, note = 'u' WHERE id %% 7 = %d", tbl, r.Intn(7))
		case 2:
			return fmt.Sprintf("UPDATE %s SET v = v - 1 WHERE k = %d AND id = %d RETURNING k, id, v", tbl, k, id)
		}
		if r.Intn(2) == 0 {
			// Across shards: some may divide by zero while others succeed.
			return fmt.Sprintf("UPDATE %s SET v = 1000 / (v %% 11) WHERE id %% 13 = %d", tbl, r.Intn(13))
		}
		return fmt.Sprintf("UPDATE %s SET v = 100 / (v %% 5) WHERE k = %d", tbl, k) // may divide by zero
	case x < 52:
		switch r.Intn(3) {
		case 0:
			return fmt.Sprintf("DELETE FROM %s WHERE k = %d AND id > %d", tbl, k, id)
		case 1:
			return fmt.Sprintf("DELETE FROM %s WHERE v > %d RETURNING k, id", tbl, 900+r.Intn(400))
		}
		return fmt.Sprintf("DELETE FROM %s WHERE id = %d", tbl, id)
	case x < 62:
		// Settings, which shard queries must see exactly as the coordinator has them.
		val := fmt.Sprintf("'%dkB'", 1024*(1+r.Intn(8)))
		switch r.Intn(9) {
		case 0:
			return "SET work_mem = " + val
		case 1:
			return "SET LOCAL work_mem = " + val
		case 2:
			return fmt.Sprintf("SELECT set_config('work_mem', %s, %v)", val, r.Intn(2) == 0)
		case 3:
			return g.pick("RESET work_mem", "RESET ALL", "SET work_mem TO DEFAULT")
		case 4:
			return g.pick("SET search_path = txs, public", "SET LOCAL search_path = txs, public", "RESET search_path")
		case 5:
			return fmt.Sprintf("SET LOCAL statement_timeout = '%dms'", 2000+r.Intn(1000))
		case 6:
			return g.pick("SET DateStyle = 'SQL, DMY'", "SET LOCAL DateStyle = 'German'", "RESET DateStyle")
		case 7:
			if r.Intn(2) == 0 {
				return g.pick("SET ROLE tx_role", "SET LOCAL ROLE tx_role", "RESET ROLE", "SET SESSION AUTHORIZATION tx_role", "RESET SESSION AUTHORIZATION")
			}
			return "SET extra_float_digits = " + fmt.Sprint(r.Intn(4)-1)
		}
		return "SET LOCAL extra_float_digits = 0"
	case x < 72:
		// Settings as the shards see them (a row per key: none for an empty key).
		return fmt.Sprintf("SELECT k, id, current_setting('work_mem'), current_setting('statement_timeout'), current_setting('DateStyle'), current_user, session_user, '2024-03-05'::date::text, (v / 3.0)::float8::text FROM %s WHERE k = %d ORDER BY id", tbl, k)
	case x < 82:
		return fmt.Sprintf("SELECT * FROM %s WHERE k = %d ORDER BY id", tbl, k)
	case x < 90:
		return fmt.Sprintf("SELECT count(*), sum(v), min(note), max(id) FROM %s", tbl)
	case x < 93:
		return g.pick("SELECT 1/0", "SELECT current_setting('work_mem') || current_setting('search_path')", "SHOW work_mem")
	case x < 94:
		return fmt.Sprintf("SELECT k, count(*) FROM %s WHERE id > %d GROUP BY k ORDER BY k", tbl, id)
	case x < 96:
		return fmt.Sprintf("SELECT id, v FROM %s WHERE k = %d ORDER BY id FOR UPDATE", tbl, k)
	}
	// Several statements in one string, some changing where names resolve for the
	// statements after them.
	switch r.Intn(4) {
	case 0:
		return fmt.Sprintf("SET LOCAL search_path = txs, public; INSERT INTO tx_d VALUES (%d, %d, 1, 'p'); SELECT count(*) FROM tx_d", k, 600+r.Intn(50))
	case 1:
		return fmt.Sprintf("SELECT set_config('search_path', %s, %v); DELETE FROM tx_d WHERE k = %d", g.pick("'txs, public'", "'public'"), r.Intn(2) == 0, k)
	case 2:
		if r.Intn(2) == 0 {
			return fmt.Sprintf("INSERT INTO %s SELECT (k + %d) %% 14, id + 1000, v, 'copy' FROM %s WHERE k = %d AND id < 1000", tbl, 1+r.Intn(3), tbl, k)
		}
		return fmt.Sprintf("INSERT INTO %s VALUES (%d, %d, 5, 'c') ON CONFLICT (k, id) DO UPDATE SET v = tx_d.v + 100 RETURNING k, id, v", tbl, k, id)
	}
	return fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = %d; INSERT INTO %s VALUES (%d, %d, 0, 's'); SELECT count(*) FROM %s WHERE k = %d", tbl, k, tbl, k, 500+r.Intn(100), tbl, k)
}
