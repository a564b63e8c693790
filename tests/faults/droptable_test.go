package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// shardTablesOn counts the shard tables of table on worker i.
func shardTablesOn(t *testing.T, i int, table string) string {
	t.Helper()
	res, err := env.c.Workers[i].Exec(context.Background(), "postgres",
		fmt.Sprintf("SELECT count(*) FROM pg_tables WHERE tablename ~ '^%s_[0-9]+$'", table))
	if err != nil {
		t.Fatal(err)
	}
	return string(res[0].Rows[0][0])
}

// TestDropTableWorkerLost: DROP TABLE of a distributed table whose shard tables are also
// on a worker that cannot be reached, or whose connection is cut as its drop passes
// (before the worker got it, or after, before its COMMIT), drops the table and the other
// workers' shard tables and warns that the lost worker keeps its own (orphaned, to drop by
// hand), as README says; the other workers' drops, held open until the coordinator
// committed, are committed.
func TestDropTableWorkerLost(t *testing.T) {
	for _, fault := range []string{"unreachable", "cut before", "cut after"} {
		t.Run(fault, func(t *testing.T) {
			defer resetFaults(t)
			c := connect(t)
			tbl := table(t, c, 50)
			var rule *faultproxy.Rule
			switch fault {
			case "unreachable":
				env.fps[0].SetRefuse(true)
				env.fps[0].CutAll()
			case "cut before":
				rule = env.fps[0].CutOnQuery(`DROP TABLE IF EXISTS .*`+tbl+`_`, 0, faultproxy.CutBefore)
			case "cut after":
				rule = env.fps[0].CutOnQuery(`DROP TABLE IF EXISTS .*`+tbl+`_`, 0, faultproxy.CutAfter)
			}
			c.warnings()
			c.exec(t, "DROP TABLE "+tbl)
			if rule != nil {
				select {
				case <-rule.Fired():
				default:
					t.Fatal("the fault never fired")
				}
			}
			if w := c.warnings(); len(w) != 1 || !strings.Contains(w[0], "could not drop shard tables on") {
				t.Errorf("warnings: %q, want one naming the lost worker", w)
			}
			if _, err := c.Exec(context.Background(), "SELECT 1 FROM "+tbl); sqlState(err) != "42P01" {
				t.Errorf("after DROP TABLE: %v, want 42P01", err)
			}
			resetFaults(t)
			if n := shardTablesOn(t, 0, tbl); n == "0" {
				t.Errorf("the lost worker has no shard table of %s left: the warning was wrong", tbl)
			}
			for i := 1; i < len(env.c.Workers); i++ {
				if n := shardTablesOn(t, i, tbl); n != "0" {
					t.Errorf("worker %d keeps %s shard tables of %s", i, n, tbl)
				}
			}
		})
	}
}
