package faults

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgshard/pgshard/tests/faultproxy"
)

// TestWarningsNameTheTable: when a placement misses a write and is marked inactive (its
// connection is lost at PREPARE TRANSACTION while its sibling prepared), the writer's
// warning names the table it wrote, not shard or placement ids (which it did not ask
// about; SHOW PLACEMENTS and the log have them).
func TestWarningsNameTheTable(t *testing.T) {
	defer resetFaults(t)
	c := connect(t)
	tbl := table(t, c, 100)
	k, shard := keyOn(t, c, tbl, 1)
	w := connect(t)
	w.exec(t, "BEGIN", fmt.Sprintf("UPDATE %s SET v = -5 WHERE k = %d", tbl, k))
	rule := env.fps[1].CutOnQuery(`^PREPARE TRANSACTION`, 0, faultproxy.CutBefore)
	w.exec(t, "COMMIT")
	select {
	case <-rule.Fired():
	default:
		t.Fatal("the fault never fired")
	}
	warns := w.warnings()
	if !contains(warns, fmt.Sprintf(`a placement of table "%s"`, tbl)) {
		t.Errorf("warnings %q do not name table %s", warns, tbl)
	}
	for _, m := range warns {
		if strings.Contains(m, fmt.Sprint(shard)) {
			t.Errorf("warning %q names shard %d", m, shard)
		}
	}
	resetFaults(t)
	repairAll(t, c, tbl)
}
