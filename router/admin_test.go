package router

import "testing"

// TestAdminCommand (issue 9, defect 14): admin statements are recognised with comments,
// whitespace and semicolons around their words, as SQL allows; anything else is SQL.
func TestAdminCommand(t *testing.T) {
	for _, c := range []struct{ q, cmd, arg string }{
		{"SHOW NODES", "SHOW NODES", ""},
		{"/* comment */ SHOW NODES", "SHOW NODES", ""},
		{"/* a /* nested */ comment */show nodes;", "SHOW NODES", ""},
		{"-- comment\nREPAIR SHARD 10001", "REPAIR SHARD", "10001"},
		{"  \n\tREPAIR /* x */ SHARD 10001 ; ;", "REPAIR SHARD", "10001"},
		{"SHOW SHARDS public.orders;", "SHOW SHARDS", "public.orders"},
		{`SHOW SHARDS "My"."T" -- trailing`, "SHOW SHARDS", `"My"."T"`},
		{"SHOW SHARDS", "SHOW SHARDS", ""},
		{"show placements 10002", "SHOW PLACEMENTS", "10002"},
		{"SHOW VERSION;", "SHOW VERSION", ""},
		{"SHOW DRIFT", "SHOW DRIFT", ""},
		{"show drift public.orders;", "SHOW DRIFT", "public.orders"},
		{"SHOW DRIFT orders with checksum", "SHOW DRIFT", "orders WITH CHECKSUM"},
		{"SHOW DRIFT WITH CHECKSUM", "SHOW DRIFT", " WITH CHECKSUM"},
		{"SHOW DRIFT orders WITH", "", ""},
		{"SHOW DRIFT orders CHECKSUM", "", ""},
		{"SHOW search_path", "", ""},
		{"SHOW NODES x", "", ""},
		{"SHOW NODES; SELECT 1", "", ""},
		{"SHOW SHARDS a b", "", ""},
		{"SHOW SHARDS a. b", "", ""},
		{"REPAIR SHARD", "", ""},
		{"SELECT 1 /* SHOW NODES */", "", ""},
		{"'SHOW NODES'", "", ""},
		{"/* unterminated SHOW NODES", "", ""},
	} {
		cmd, arg, ok := adminCommand(c.q)
		if ok != (c.cmd != "") || ok && (cmd != c.cmd || arg != c.arg) {
			t.Errorf("%q: %q %q %v, want %q %q", c.q, cmd, arg, ok, c.cmd, c.arg)
		}
	}
}

// TestPlanAdminDrift: SHOW DRIFT's table and WITH CHECKSUM come apart.
func TestPlanAdminDrift(t *testing.T) {
	for _, c := range []struct {
		q, arg   string
		checksum bool
	}{
		{"SHOW DRIFT", "", false},
		{"SHOW DRIFT s.t", "s.t", false},
		{"SHOW DRIFT s.t WITH CHECKSUM;", "s.t", true},
		{"SHOW DRIFT with checksum", "", true},
	} {
		st := PlanAdmin(c.q)
		if st == nil || st.Command.Name != "SHOW DRIFT" || st.Command.Arg != c.arg || st.Command.Checksum != c.checksum {
			t.Errorf("%q: %+v", c.q, st)
		}
	}
}
