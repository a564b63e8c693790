package proxy

import (
	"testing"

	"github.com/pgshard/pgshard/pgerr"
)

func TestShiftPosition(t *testing.T) {
	for _, c := range []struct {
		old, new  string
		pos, want int32
	}{
		{"SELECT 1 FROM secret_10000 x WHERE y", "SELECT 1 FROM secret x WHERE y", 30, 24},
		{"SELECT 1 FROM secret_10000 x WHERE y", "SELECT 1 FROM secret x WHERE y", 5, 5},
		{"é FROM a_10001, b_10002 WHERE z", "é FROM a, b WHERE z", 25, 13},
		{"x", "x", 0, 0},
	} {
		if got := shiftPosition(c.old, c.new, c.pos); got != c.want {
			t.Errorf("shiftPosition(%q, %q, %d) = %d, want %d", c.old, c.new, c.pos, got, c.want)
		}
	}
}

func TestScrubInternal(t *testing.T) {
	e := &pgerr.Error{
		Where: "SQL statement \"SELECT 1 FROM pgs_distribution_metadata.partition\"\n" +
			"PL/pgSQL function pgs_distribution_metadata.notify_ddl() line 3 at IF\n" +
			"SQL statement \"CREATE TABLE t (x int)\"\nPL/pgSQL function inline_code_block line 1 at EXECUTE",
		InternalQuery: "SELECT 1 FROM pgs_distribution_metadata.partition", InternalPosition: 3,
	}
	if !scrubInternal(e, false) || e.Where != "SQL statement \"CREATE TABLE t (x int)\"\nPL/pgSQL function inline_code_block line 1 at EXECUTE" ||
		e.InternalQuery != "" || e.InternalPosition != 0 {
		t.Errorf("got %+v", e)
	}
	p := &pgerr.Error{Where: "unnamed portal parameter $1 = '...'"}
	if scrubInternal(p, false) || p.Where == "" {
		t.Errorf("a client's own parameter line went: %+v", p)
	}
	if !scrubInternal(p, true) || p.Where != "" {
		t.Errorf("pgshard's parameter line kept: %+v", p)
	}
}
