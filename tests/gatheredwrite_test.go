package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestGatheredWritesWaitLikePostgreSQL: gathered writes (UPDATE ... FROM, DELETE or
// UPDATE with a subquery over a distributed table) find their rows on the coordinator and
// then change them on the shards. When one waits for another block's update of its rows,
// PostgreSQL re-reads those rows once the block commits (EvalPlanQual): the UPDATE builds
// on the committed value, and the DELETE re-checks its predicate against it. pgshard takes
// the statement's write locks before finding the rows, so it finds them after the block
// ended; compared with the same sessions on plain PostgreSQL, for the statement's tag and
// the table's rows afterwards.
func TestGatheredWritesWaitLikePostgreSQL(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, holder, waiter string }{
		{"update with a subquery", "UPDATE %[1]s SET v = v + 10 WHERE id = 1",
			"UPDATE %[1]s SET v = v + 1 WHERE id = 1 AND EXISTS (SELECT 1 FROM %[1]s WHERE id = 2)"},
		{"update from", "UPDATE %[1]s SET v = v + 10 WHERE id = 1",
			"UPDATE %[1]s t SET v = t.v + o.v FROM %[1]s o WHERE t.id = 1 AND o.id = 2"},
		{"delete whose predicate the wait changes", "UPDATE %[1]s SET v = v + 10 WHERE id = 1",
			"DELETE FROM %[1]s WHERE id = 1 AND v < 15 AND EXISTS (SELECT 1 FROM %[1]s WHERE id = 2)"},
		{"delete of a row the block deleted", "DELETE FROM %[1]s WHERE id = 1",
			"DELETE FROM %[1]s WHERE id IN (SELECT id FROM %[1]s WHERE v < 15)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, plain := rowLockPair(t, "gw", 2)
			pc := connectServer(t, env.C.Coordinator)
			waitUngranted := func() {
				for i := 0; i < 600; i++ {
					if queryString(t, pc, "SELECT count(*)::text FROM pg_locks WHERE NOT granted") != "0" {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				t.Fatal("the waiter never waited")
			}
			run := func(holder, waiter *pgx.Conn, target string) string {
				mustExec(t, holder, "BEGIN", fmt.Sprintf(tc.holder, target))
				done := make(chan string, 1)
				go func() {
					tag, err := waiter.Exec(ctx, fmt.Sprintf(tc.waiter, target))
					if err != nil {
						done <- "error " + sqlstate(err)
						return
					}
					done <- tag.String()
				}()
				waitUngranted()
				mustExec(t, holder, "COMMIT")
				res := <-done
				return res + " | " + queryString(t, holder, fmt.Sprintf("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM %s", target))
			}
			want := run(connectServer(t, env.C.Coordinator), connectServer(t, env.C.Coordinator), plain)
			got := run(connect(t), connect(t), tbl)
			if got != want {
				t.Errorf("%s waiting for a block's %s:\n pgshard:    %s\n PostgreSQL: %s", fmt.Sprintf(tc.waiter, tbl), fmt.Sprintf(tc.holder, tbl), got, want)
			}
			placementsIdentical(t, tbl)
		})
	}
}
