package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Issue 13: triggers and row-level security of distributed tables, created through
// pgshard, on every placement, kept by a repair, compared by SHOW DRIFT; behaviour
// compared with the same statements on a plain PostgreSQL table (a coordinator table).

// securityDef describes a relation's triggers (not pgshard's own), policies and
// row-level security flags, independent of its name.
const securityDef = `
SELECT concat_ws(E'\n',
  'rls ' || c.relrowsecurity || ' force ' || c.relforcerowsecurity,
  (SELECT string_agg('trigger ' || tg.tgname || ' ' || tg.tgenabled::text || ' ' || tg.tgtype || ' ' || tg.tgfoid::regprocedure, E'\n' ORDER BY tg.tgname)
   FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal AND tg.tgname NOT LIKE 'pgshard\_%'),
  (SELECT string_agg('policy ' || po.polname || ' ' || po.polcmd::text || ' ' || po.polpermissive || ' ' || po.polroles::regrole[]::text || ' ' ||
                     coalesce(pg_get_expr(po.polqual, po.polrelid), '') || ' ' || coalesce(pg_get_expr(po.polwithcheck, po.polrelid), ''), E'\n' ORDER BY po.polname)
   FROM pg_policy po WHERE po.polrelid = c.oid))
FROM pg_class c WHERE c.oid = $1::regclass`

// checkSecurity compares every placement's triggers, policies and RLS flags with the
// coordinator table's, and returns the coordinator's.
func checkSecurity(t *testing.T, table, when string) string {
	t.Helper()
	want := queryString(t, connectServer(t, env.C.Coordinator), securityDef, table)
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			shard := fmt.Sprintf("%s_%d", table, s.id)
			if got := queryString(t, connectServer(t, serverFor(p.port)), securityDef, shard); got != want {
				t.Fatalf("%s: %s on port %d:\n%s\nwant (the coordinator's table):\n%s", when, shard, p.port, got, want)
			}
		}
	}
	return want
}

// onPlacements returns the first column of sql (%s: the shard table) on every placement.
func onPlacements(t *testing.T, table, sql string) []string {
	t.Helper()
	var out []string
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			out = append(out, queryString(t, connectServer(t, serverFor(p.port)), fmt.Sprintf(sql, fmt.Sprintf("%s_%d", table, s.id))))
		}
	}
	return out
}

func TestDDLTriggers(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table, plain, fn := uniqueName("dtrg"), uniqueName("dtrg_plain"), uniqueName("dtrg_norm")
	mustExec(t, conn, fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.norm := lower(NEW.v);
	NEW.updated_at := now();
	RETURN NEW;
END $$`, fn))
	t.Cleanup(func() {
		c := connect(t)
		c.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		c.Exec(ctx, "DROP TABLE IF EXISTS "+plain)
	})
	def := "(id int PRIMARY KEY, v text, norm text, updated_at timestamptz)"
	distribute(t, conn, "CREATE TABLE "+table+" "+def, table, "id", 2, 2)
	mustExec(t, conn, "CREATE TABLE "+plain+" "+def)
	for _, tb := range []string{table, plain} {
		mustExec(t, conn, fmt.Sprintf("CREATE TRIGGER norm BEFORE INSERT OR UPDATE OF v ON %s FOR EACH ROW WHEN (NEW.v IS NOT NULL) EXECUTE FUNCTION %s()", tb, fn))
	}
	sec := checkSecurity(t, table, "after CREATE TRIGGER")
	if !strings.Contains(sec, "trigger norm O") {
		t.Fatalf("the trigger is missing: %s", sec)
	}
	// The function was created on the workers from the coordinator's definition.
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if n := queryString(t, connectServer(t, serverFor(p.port)), "SELECT count(*)::text FROM pg_proc WHERE proname = $1", fn); n != "1" {
				t.Fatalf("function %s on port %d: %s", fn, p.port, n)
			}
		}
	}
	// The same rows and updates through pgshard and on the plain table.
	for _, tb := range []string{table, plain} {
		for i := 1; i <= 20; i++ {
			mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (%d, 'Value%d')", tb, i, i))
		}
		mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = 'UPPER' WHERE id <= 5", tb),
			fmt.Sprintf("INSERT INTO %s (id, v, norm) VALUES (100, NULL, 'kept')", tb))
	}
	q := "SELECT string_agg(id || ':' || coalesce(norm, '-') || ':' || (updated_at IS NOT NULL), ',' ORDER BY id) FROM %s"
	want := queryString(t, conn, fmt.Sprintf(q, plain))
	if got := queryString(t, conn, fmt.Sprintf(q, table)); got != want {
		t.Fatalf("rows through pgshard:\n%s\nplain PostgreSQL:\n%s", got, want)
	}
	for _, n := range onPlacements(t, table, "SELECT count(*)::text FROM %s WHERE norm IS DISTINCT FROM lower(v) AND id <> 100") {
		if n != "0" {
			t.Fatalf("a placement holds rows the trigger did not normalize: %s", n)
		}
	}

	// DISABLE / ENABLE TRIGGER, ALTER TRIGGER ... RENAME.
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s DISABLE TRIGGER norm", table))
	if !strings.Contains(checkSecurity(t, table, "after DISABLE TRIGGER"), "trigger norm D") {
		t.Fatal("the trigger is not disabled")
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (200, 'Off')", table))
	if s := queryString(t, conn, fmt.Sprintf("SELECT coalesce(norm, '-') FROM %s WHERE id = 200", table)); s != "-" {
		t.Fatalf("a disabled trigger ran: %s", s)
	}
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s ENABLE TRIGGER norm", table),
		fmt.Sprintf("ALTER TRIGGER norm ON %s RENAME TO renamed_norm", table))
	if !strings.Contains(checkSecurity(t, table, "after ALTER TRIGGER ... RENAME"), "trigger renamed_norm O") {
		t.Fatal("the trigger is not renamed")
	}
	wantError(t, conn, fmt.Sprintf("ALTER TABLE %s DISABLE TRIGGER ALL", table), "0A000", "")
	wantError(t, conn, fmt.Sprintf("ALTER TABLE %s DISABLE TRIGGER pgshard_refuse_writes", table), "0A000", "")
	wantError(t, conn, fmt.Sprintf("DROP TRIGGER pgshard_refuse_writes ON %s", table), "0A000", "")

	// Other triggers need pgshard.enable_unsafe_triggers.
	after := fmt.Sprintf("CREATE TRIGGER audit AFTER INSERT ON %s FOR EACH STATEMENT EXECUTE FUNCTION suppress_redundant_updates_trigger()", table)
	wantError(t, conn, after, "0A000", "")
	checkSecurity(t, table, "after a refused trigger")

	// In a block, rolled back: gone everywhere.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("CREATE TRIGGER gone BEFORE DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()", table, fn),
		"ROLLBACK")
	if strings.Contains(checkSecurity(t, table, "after ROLLBACK"), "gone") {
		t.Fatal("a rolled back trigger stayed")
	}

	// SHOW DRIFT agrees, then sees a trigger dropped straight on a worker.
	if rows := showDrift(t, conn, table); len(rows) != 0 {
		t.Fatalf("SHOW DRIFT: %v", rows)
	}
	sh := shardsOf(t, table)[1]
	worker := connectServer(t, serverFor(sh.places[0].port))
	mustExec(t, worker, fmt.Sprintf("DROP TRIGGER renamed_norm ON %s_%d", table, sh.id))
	rows := showDrift(t, conn, table)
	if len(rows) != 2 || rows[0].item != "function of trigger renamed_norm" || rows[1].item != "trigger renamed_norm" || rows[1].placement != nil {
		t.Fatalf("SHOW DRIFT after dropping a shard's trigger: %v", rows)
	}
	mustExec(t, worker, fmt.Sprintf("CREATE TRIGGER renamed_norm BEFORE INSERT OR UPDATE OF v ON %s_%d FOR EACH ROW WHEN (NEW.v IS NOT NULL) EXECUTE FUNCTION %s()", table, sh.id, fn))
	// The function redefined on a worker alone: SHOW DRIFT tells; CREATE OR REPLACE
	// TRIGGER through pgshard brings the workers the coordinator's definition again.
	mustExec(t, worker, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.norm := 'tampered';
	RETURN NEW;
END $$`, fn))
	if rows := showDrift(t, conn, table); len(rows) == 0 || rows[0].item != "function of trigger renamed_norm" {
		t.Fatalf("SHOW DRIFT after redefining the function on a worker: %v", rows)
	}
	mustExec(t, conn, fmt.Sprintf("CREATE OR REPLACE TRIGGER renamed_norm BEFORE INSERT OR UPDATE OF v ON %s FOR EACH ROW WHEN (NEW.v IS NOT NULL) EXECUTE FUNCTION %s()", table, fn))
	if rows := showDrift(t, conn, table); len(rows) != 0 {
		t.Fatalf("SHOW DRIFT after CREATE OR REPLACE TRIGGER: %v", rows)
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s (id, v) VALUES (300, 'Up')", table))
	for _, n := range onPlacements(t, table, "SELECT count(*)::text FROM %s WHERE norm IS DISTINCT FROM lower(v) AND id NOT IN (100, 200)") {
		if n != "0" {
			t.Fatalf("a placement holds rows the restored trigger function did not normalize: %s", n)
		}
	}

	// A repair recreates the trigger after copying the rows, which the trigger must not
	// change: the repaired placement's rows are its source's, updated_at included (the
	// placements of a shard each ran the trigger with their own now() before).
	breakAndRepair(t, table)
	checkSecurity(t, table, "after REPAIR SHARD")
	sh0 := shardsOf(t, table)[0]
	var digests []string
	for _, p := range sh0.places {
		digests = append(digests, digestPlacement(t, table, "hashint4(id)", sh0, p).digest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("the repaired placement's rows differ from its source's: %v", digests)
	}
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", table)); n != "23" {
		t.Fatalf("rows after the repair: %s", n)
	}

	// With the setting, an AFTER trigger is created; DROP TRIGGER drops it everywhere.
	mustExec(t, conn, "SET pgshard.enable_unsafe_triggers = on", after, "RESET pgshard.enable_unsafe_triggers")
	if !strings.Contains(checkSecurity(t, table, "after an unsafe trigger"), "trigger audit") {
		t.Fatal("the AFTER trigger is missing")
	}
	mustExec(t, conn, "DROP TRIGGER audit ON "+table, "DROP TRIGGER renamed_norm ON "+table)
	if s := checkSecurity(t, table, "after DROP TRIGGER"); strings.Contains(s, "trigger") {
		t.Fatalf("triggers left: %s", s)
	}
	if fin, inact, _ := placementStates(t, table); inact != 0 || fin != 4 {
		t.Fatalf("%d finalized, %d inactive placements", fin, inact)
	}
}

// TestDDLRowLevelSecurity: a non-owner role with a policy sees and writes only its rows
// through pgshard, as on a plain table; ALTER/DROP POLICY and DISABLE ROW LEVEL SECURITY
// reach every placement; a repair keeps the policies and flags.
func TestDDLRowLevelSecurity(t *testing.T) {
	ctx := context.Background()
	owner := unprivilegedRole(t, "drlsown")
	app := unprivilegedRole(t, "drlsapp")
	table, plain := uniqueName("drls"), uniqueName("drls_plain")
	oc := connectAs(t, env.P, owner)
	t.Cleanup(func() {
		oc.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		oc.Exec(ctx, "DROP TABLE IF EXISTS "+plain)
	})
	def := "(id int PRIMARY KEY, who text)"
	distribute(t, oc, "CREATE TABLE "+table+" "+def, table, "id", 2, 2)
	mustExec(t, oc, "CREATE TABLE "+plain+" "+def)
	for _, tb := range []string{table, plain} {
		mustExec(t, oc, fmt.Sprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s", tb, app))
		for i := 1; i <= 12; i++ {
			who := "other"
			if i%3 == 0 {
				who = app
			}
			mustExec(t, oc, fmt.Sprintf("INSERT INTO %s VALUES (%d, '%s')", tb, i, who))
		}
		mustExec(t, oc, fmt.Sprintf("ALTER TABLE %s ENABLE ROW LEVEL SECURITY", tb),
			fmt.Sprintf("CREATE POLICY mine ON %s USING (who = current_user)", tb))
	}
	checkSecurity(t, table, "after CREATE POLICY")
	ac := connectAs(t, env.P, app)
	both := func(sql string) (string, string) {
		return queryString(t, ac, fmt.Sprintf(sql, table)), queryString(t, ac, fmt.Sprintf(sql, plain))
	}
	q := "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM %s"
	if got, want := both(q); got != want || want != "3,6,9,12" {
		t.Fatalf("%s sees %q through pgshard, %q on plain PostgreSQL", app, got, want)
	}
	// Writes: its own rows only; a row for another role is refused, as by PostgreSQL.
	for _, tb := range []string{table, plain} {
		mustExec(t, ac, fmt.Sprintf("UPDATE %s SET who = who WHERE id IN (1, 3)", tb),
			fmt.Sprintf("INSERT INTO %s VALUES (30, '%s')", tb, app))
		wantError(t, ac, fmt.Sprintf("INSERT INTO %s VALUES (31, 'other')", tb), "42501", "")
	}
	if fin, inact, _ := placementStates(t, table); inact != 0 || fin != 4 {
		t.Fatalf("after the refused write: %d finalized, %d inactive placements", fin, inact)
	}
	if got, want := both(q); got != want {
		t.Fatalf("after the writes: %q through pgshard, %q on plain PostgreSQL", got, want)
	}

	// A repair keeps policies and flags.
	breakAndRepair(t, table)
	checkSecurity(t, table, "after REPAIR SHARD")
	if got, want := both(q); got != want {
		t.Fatalf("after the repair: %q through pgshard, %q on plain PostgreSQL", got, want)
	}
	if rows := showDrift(t, connect(t), table); len(rows) != 0 {
		t.Fatalf("SHOW DRIFT: %v", rows)
	}
	// A policy dropped straight on a worker's shard: SHOW DRIFT tells.
	sh := shardsOf(t, table)[1]
	worker := connectServer(t, serverFor(sh.places[1].port))
	mustExec(t, worker, fmt.Sprintf("DROP POLICY mine ON %s_%d", table, sh.id))
	if rows := showDrift(t, connect(t), table); len(rows) != 1 || rows[0].item != "policy mine" || rows[0].placement != nil {
		t.Fatalf("SHOW DRIFT after dropping a shard's policy: %v", rows)
	}
	mustExec(t, worker, fmt.Sprintf("CREATE POLICY mine ON %s_%d USING (who = current_user)", table, sh.id))
	if rows := showDrift(t, connect(t), table); len(rows) != 0 {
		t.Fatalf("SHOW DRIFT after recreating it: %v", rows)
	}

	for _, step := range []string{
		"ALTER POLICY mine ON %s USING (who = current_user OR id < 3)",
		"CREATE POLICY ro ON %s AS RESTRICTIVE FOR UPDATE USING (id < 100)",
		"ALTER TABLE %s FORCE ROW LEVEL SECURITY",
		"ALTER TABLE %s NO FORCE ROW LEVEL SECURITY",
		"ALTER POLICY ro ON %s RENAME TO ro2",
		"DROP POLICY ro2 ON %s",
	} {
		for _, tb := range []string{table, plain} {
			mustExec(t, oc, fmt.Sprintf(step, tb))
		}
		checkSecurity(t, table, step)
		if got, want := both(q); got != want {
			t.Fatalf("after %s: %q through pgshard, %q on plain PostgreSQL", step, got, want)
		}
	}
	// A block rolled back leaves the policies as they were.
	before := checkSecurity(t, table, "before the block")
	mustExec(t, oc, "BEGIN", "DROP POLICY mine ON "+table, fmt.Sprintf("ALTER TABLE %s DISABLE ROW LEVEL SECURITY", table), "ROLLBACK")
	if after := checkSecurity(t, table, "after ROLLBACK"); after != before {
		t.Fatalf("ROLLBACK changed the policies:\n%s\nwas:\n%s", after, before)
	}
	for _, step := range []string{"DROP POLICY mine ON %s", "ALTER TABLE %s DISABLE ROW LEVEL SECURITY"} {
		for _, tb := range []string{table, plain} {
			mustExec(t, oc, fmt.Sprintf(step, tb))
		}
		checkSecurity(t, table, step)
		if got, want := both(q); got != want {
			t.Fatalf("after %s: %q through pgshard, %q on plain PostgreSQL", step, got, want)
		}
	}
	// A policy reading another distributed table is refused; a direct one on the
	// coordinator is refused by its event triggers.
	wantError(t, oc, fmt.Sprintf("CREATE POLICY x ON %[1]s USING (id IN (SELECT id FROM %[1]s))", table), "0A000", "")
	coord := connectServer(t, env.C.Coordinator)
	wantError(t, coord, fmt.Sprintf("CREATE POLICY direct ON %s USING (true)", table), "0A000", "")
	mustExec(t, oc, fmt.Sprintf("CREATE POLICY last ON %s USING (true)", table))
	wantError(t, coord, fmt.Sprintf("DROP POLICY last ON %s", table), "0A000", "")
	wantError(t, coord, fmt.Sprintf("ALTER TABLE %s DISABLE ROW LEVEL SECURITY", table), "0A000", "")
	checkSecurity(t, table, "after the refused direct changes")
	_ = pgx.Identifier{}
}

// TestDDLTriggerAtDistribution: a table distributed with a trigger already on it gets the
// trigger (and its function) on every shard; DROP TRIGGER straight on the coordinator is
// refused by its event triggers.
func TestDDLTriggerAtDistribution(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table, fn := uniqueName("dtrgd"), uniqueName("dtrgd_fn")
	mustExec(t, conn, fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.v := upper(NEW.v);
	RETURN NEW;
END $$`, fn))
	t.Cleanup(func() { connect(t).Exec(ctx, "DROP TABLE IF EXISTS "+table) })
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %[1]s (id int, v text); CREATE TRIGGER up BEFORE INSERT ON %[1]s FOR EACH ROW EXECUTE FUNCTION %[2]s()", table, fn),
		table, "id", 2, 2)
	if !strings.Contains(checkSecurity(t, table, "after distribution"), "trigger up O") {
		t.Fatal("the trigger is missing")
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 'abc'), (2, 'def')", table))
	if s := queryString(t, conn, fmt.Sprintf("SELECT string_agg(v, ',' ORDER BY id) FROM %s", table)); s != "ABC,DEF" {
		t.Fatalf("rows: %s", s)
	}
	if n := checkPlacements(t, table, "hashint4(id)"); n != 2 {
		t.Fatalf("rows on the placements: %d", n)
	}
	coord := connectServer(t, env.C.Coordinator)
	wantError(t, coord, fmt.Sprintf("DROP TRIGGER up ON %s", table), "0A000", "")
	wantError(t, coord, fmt.Sprintf("ALTER TABLE %s DISABLE TRIGGER up", table), "0A000", "")
	checkSecurity(t, table, "after the refused direct changes")
}
