package tests

import (
	"context"
	"fmt"
	"testing"
)

// TestBlockJoinAnswers: a worker connection joins a transaction block with its first
// statement there (the block's BEGIN, SETs and savepoints go out ahead of it). What the
// replayed statements answer (set_config's row, SET's and SAVEPOINT's tags) is not the
// client's: a write's answer is its own, with no rows, whichever statements the block
// ran before the workers joined.
func TestBlockJoinAnswers(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 40) g", tbl))
	for _, before := range []string{
		"SELECT pg_catalog.set_config('work_mem', '8MB', true)",
		"SET LOCAL work_mem = '9MB'",
		"SAVEPOINT s1",
		"SELECT pg_catalog.set_config('work_mem', '7MB', true); SAVEPOINT s2",
	} {
		for _, write := range []string{
			fmt.Sprintf("DELETE FROM %s WHERE v = 2", tbl),
			fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 5", tbl),
			fmt.Sprintf("INSERT INTO %s VALUES (100, 100)", tbl),
		} {
			pc := conn.PgConn()
			if _, err := pc.Exec(ctx, "BEGIN; "+before).ReadAll(); err != nil {
				t.Fatalf("BEGIN; %s: %v", before, err)
			}
			res, err := pc.Exec(ctx, write).ReadAll()
			if err != nil {
				t.Fatalf("after %s: %s: %v", before, write, err)
			}
			if len(res) != 1 || len(res[0].FieldDescriptions) != 0 || len(res[0].Rows) != 0 {
				t.Errorf("after %s: %s answered %d results, the first with %d columns and %d rows (tag %q): want one, with none",
					before, write, len(res), len(res[0].FieldDescriptions), len(res[0].Rows), res[0].CommandTag)
			}
			if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
