package ddl

import (
	"strings"
	"testing"
)

// TestSecurityCommands: a shard gets its table's row-level security, policies and
// triggers (with their functions and states) last; a repair runs the triggers and FORCE
// after its copy.
func TestSecurityCommands(t *testing.T) {
	tb := &Table{Schema: "app", Name: "t", QuotedSchema: "app", QuotedName: "t",
		Columns: []Column{{Num: 1, Name: "id", QuotedName: "id", TypeName: "integer"}},
		Security: &Security{RLS: true, ForceRLS: true,
			Policies: []Policy{{QuotedName: "mine", Permissive: true, Command: 'r', Roles: []string{"PUBLIC"}, Using: "(who = CURRENT_USER)"},
				{QuotedName: "ro", Command: 'w', Roles: []string{"app", `"Bob"`}, Using: "true", Check: "(id > 0)"}},
			Triggers: []Trigger{{QuotedName: "norm", Def: "CREATE TRIGGER norm BEFORE INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION app.f()",
				Enabled: 'D', FunctionSchema: "app", FunctionSignature: "app.f()", FunctionDef: "CREATE OR REPLACE FUNCTION app.f()\n RETURNS trigger\n AS $function$BEGIN RETURN NEW; END$function$\n"}}}}
	all, err := tb.CreateCommands(5)
	if err != nil {
		t.Fatal(err)
	}
	create, after, err := tb.RepairCommands(5)
	if err != nil {
		t.Fatal(err)
	}
	if len(create)+len(after) != len(all) || strings.Join(append(append([]string(nil), create...), after...), "\n") != strings.Join(all, "\n") {
		t.Fatalf("RepairCommands does not split CreateCommands:\n%v\n%v", create, after)
	}
	wantCreate := []string{
		"ALTER TABLE app.t_5 ENABLE ROW LEVEL SECURITY",
		"CREATE POLICY mine ON app.t_5 AS PERMISSIVE FOR SELECT TO PUBLIC USING ((who = CURRENT_USER))",
		`CREATE POLICY ro ON app.t_5 AS RESTRICTIVE FOR UPDATE TO app, "Bob" USING (true) WITH CHECK ((id > 0))`,
	}
	if got := create[len(create)-len(wantCreate):]; strings.Join(got, "\n") != strings.Join(wantCreate, "\n") {
		t.Errorf("security commands:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantCreate, "\n"))
	}
	if len(after) != 4 || !strings.HasPrefix(after[0], "DO ") || !strings.Contains(after[0], "to_regprocedure('app.f()')") ||
		after[1] != "CREATE TRIGGER norm BEFORE INSERT ON app.t_5 FOR EACH ROW EXECUTE FUNCTION app.f()" ||
		after[2] != "ALTER TABLE app.t_5 DISABLE TRIGGER norm" || after[3] != "ALTER TABLE app.t_5 FORCE ROW LEVEL SECURITY" {
		t.Errorf("after the copy:\n%s", strings.Join(after, "\n"))
	}
	tb.Security.Triggers[0].Def = "CREATE TRIGGER norm BEFORE INSERT ON other.t FOR EACH ROW EXECUTE FUNCTION app.f()"
	if _, err := tb.CreateCommands(5); err == nil {
		t.Error("a trigger definition that does not name the table was accepted")
	}
}
