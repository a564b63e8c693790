package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
)

// TestStringDistributesThenWrites: every statement of a query string is planned against
// the metadata as it is when that statement runs, as PostgreSQL analyses each statement
// in turn: a string that distributes a table and then writes to it writes to the shards,
// not to the coordinator's prototype.
func TestStringDistributesThenWrites(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	ms := uniqueName("ms")
	_, err := conn.PgConn().Exec(ctx, fmt.Sprintf(`CREATE TABLE %[1]s (id int NOT NULL, v int);
		select master_create_distributed_table('%[1]s','id');
		select master_create_worker_shards('%[1]s',4,2);
		INSERT INTO %[1]s VALUES (1,1),(2,2),(3,3);
		UPDATE %[1]s SET v = v + 10 WHERE id = 2;
		DELETE FROM %[1]s WHERE id = 3`, ms)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM %s", ms)); got != "1:1,2:12" {
		t.Errorf("through pgshard: %s, want 1:1,2:12", got)
	}
	coord := connectServer(t, env.C.Coordinator)
	if got := queryString(t, coord, fmt.Sprintf("SELECT count(*)::text FROM %s", ms)); got != "0" {
		t.Errorf("the coordinator's prototype holds %s rows", got)
	}
	// Dropping a table and creating a local one of the same name in one string: the
	// statements after it reach the local table.
	_, err = conn.PgConn().Exec(ctx, fmt.Sprintf(`DROP TABLE %[1]s; CREATE TABLE %[1]s (id int, v int); INSERT INTO %[1]s VALUES (7, 7)`, ms)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, coord, fmt.Sprintf("SELECT string_agg(id || ':' || v, ',') FROM %s", ms)); got != "7:7" {
		t.Errorf("local table after DROP in the same string: %s", got)
	}
}

// TestSearchPathResolution: unqualified names resolve as PostgreSQL resolves them in the
// session: search_path order (a local table earlier in the path shadows a distributed
// one), "$user", temporary tables first, SET, SET LOCAL, set_config and RESET.
func TestSearchPathResolution(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	coord := connectServer(t, env.C.Coordinator)
	tbl := uniqueName("orders")
	s2 := uniqueName("s2")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE public.%s (k int NOT NULL, v text)", tbl), "public."+tbl, "k", 4, 2)
	mustExec(t, conn, "CREATE SCHEMA "+s2, fmt.Sprintf("CREATE TABLE %s.%s (k int, v text)", s2, tbl))
	mustExec(t, conn, fmt.Sprintf("INSERT INTO public.%s VALUES (1, 'dist')", tbl))
	// which reports where an unqualified read goes: "dist", "s2", "temp" or an error.
	which := func(label string, want string) {
		t.Helper()
		var got string
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT coalesce(string_agg(v, ',' ORDER BY v), '-') FROM %s", tbl)).Scan(&got); err != nil {
			got = "error: " + err.Error()
		}
		if got != want {
			t.Errorf("%s: SELECT reads %q, want %q", label, got, want)
		}
	}
	localRows := func() string {
		return queryString(t, coord, fmt.Sprintf("SELECT count(*)::text FROM %s.%s", s2, tbl))
	}
	which("default path", "dist")
	mustExec(t, conn, fmt.Sprintf("SET search_path = %s, public", s2))
	which("after SET", "-")
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (2, 's2')", tbl))
	if got := localRows(); got != "1" {
		t.Errorf("INSERT after SET search_path: local table has %s rows, want 1", got)
	}
	which("after INSERT", "s2")
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = 's2' WHERE k = 2", tbl), fmt.Sprintf("ALTER TABLE %s ADD COLUMN extra int", tbl))
	if got := queryString(t, coord, fmt.Sprintf("SELECT count(*)::text FROM information_schema.columns WHERE table_schema = '%s' AND table_name = '%s' AND column_name = 'extra'", s2, tbl)); got != "1" {
		t.Errorf("ALTER TABLE did not reach the local table")
	}
	mustExec(t, conn, "RESET search_path")
	which("after RESET", "dist")
	// SET LOCAL lasts until the end of the block, in the block.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("SET LOCAL search_path = %s, public", s2))
	which("SET LOCAL in the block", "s2")
	mustExec(t, conn, "COMMIT")
	which("after the block with SET LOCAL", "dist")
	// A rolled back SET.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("SET search_path = %s, public", s2))
	which("SET in a block", "s2")
	mustExec(t, conn, "ROLLBACK")
	which("after ROLLBACK of SET", "dist")
	// ROLLBACK TO SAVEPOINT undoes a SET.
	mustExec(t, conn, "BEGIN", "SAVEPOINT a", fmt.Sprintf("SET search_path = %s, public", s2))
	which("SET after SAVEPOINT", "s2")
	mustExec(t, conn, "ROLLBACK TO SAVEPOINT a")
	which("after ROLLBACK TO", "dist")
	mustExec(t, conn, "COMMIT")
	// set_config in a SELECT.
	mustExec(t, conn, fmt.Sprintf("SELECT set_config('search_path', '%s, public', false)", s2))
	which("after set_config", "s2")
	mustExec(t, conn, "SET search_path TO DEFAULT")
	which("after SET TO DEFAULT", "dist")
	// "$user": a schema named like the user comes first.
	// (The schema is dropped again at once: tables other tests create would land in it.)
	mustExec(t, conn, `CREATE SCHEMA postgres`, fmt.Sprintf(`CREATE TABLE postgres.%s (k int, v text)`, tbl), fmt.Sprintf(`INSERT INTO postgres.%s VALUES (3, 'user')`, tbl))
	which(`"$user" schema`, "user")
	mustExec(t, conn, `DROP SCHEMA postgres CASCADE`)
	which(`after dropping the "$user" schema`, "dist")
	// A temporary table shadows everything.
	mustExec(t, conn, fmt.Sprintf("CREATE TEMP TABLE %s (k int, v text)", tbl), fmt.Sprintf("INSERT INTO %s VALUES (4, 'temp')", tbl))
	which("temporary table", "temp")
	mustExec(t, conn, fmt.Sprintf("DROP TABLE pg_temp.%s", tbl))
	which("after dropping the temporary table", "dist")
	// A local table created by another session shadows too.
	other := connect(t)
	mustExec(t, conn, fmt.Sprintf("SET search_path = %s, public", s2))
	which("before another session drops", "s2")
	mustExec(t, other, fmt.Sprintf("ALTER TABLE %s.%s RENAME TO %s_old", s2, tbl, tbl))
	which("after another session renamed the local table", "dist")
	mustExec(t, other, fmt.Sprintf("ALTER TABLE %s.%s_old RENAME TO %s", s2, tbl, tbl))
	which("after another session renamed it back", "s2")
	// A prepared statement (extended protocol) is planned again when names resolve
	// differently, as PostgreSQL re-analyses it when search_path changes.
	ext, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	if _, err := ext.Exec(ctx, "SELECT * FROM "+tbl, pgx.QueryExecModeExec); err != nil {
		t.Fatal(err)
	}
	extRead := func() string {
		var got string
		if err := ext.QueryRow(ctx, fmt.Sprintf("SELECT coalesce(string_agg(v, ',' ORDER BY v), '-') FROM %s WHERE k > $1", tbl), 0).Scan(&got); err != nil {
			return "error: " + err.Error()
		}
		return got
	}
	if got := extRead(); got != "dist" {
		t.Errorf("prepared, default path: %q", got)
	}
	if _, err := ext.Exec(ctx, fmt.Sprintf("SET search_path = %s, public", s2)); err != nil {
		t.Fatal(err)
	}
	if got := extRead(); got != "s2" {
		t.Errorf("prepared statement after SET search_path reads %q, want s2", got)
	}
	// The local table has one more column: the description follows.
	rows, err := ext.Query(ctx, "SELECT * FROM "+tbl, pgx.QueryExecModeExec)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rows.FieldDescriptions()); n != 3 {
		t.Errorf("SELECT * after SET search_path: %d columns, want 3", n)
	}
	rows.Close()
	// DDL made on the coordinator itself (or through another proxy) reaches the proxy
	// through the coordinator's event trigger.
	coordRename := func(from, to, want string) {
		t.Helper()
		mustExec(t, coord, fmt.Sprintf("ALTER TABLE %s.%s RENAME TO %s", s2, from, to))
		deadline := time.Now().Add(5 * time.Second)
		for extRead() != want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := extRead(); got != want {
			t.Errorf("after renaming %s to %s on the coordinator: %q, want %q", from, to, got, want)
		}
	}
	coordRename(tbl, tbl+"_x", "dist")
	coordRename(tbl+"_x", tbl, "s2")
	mustExec(t, conn, "RESET search_path")
}

// TestSettingsReachShardsExactly: what a shard query sees of the session's settings is
// what the coordinator session says, after every way a setting changes: SET, SET LOCAL
// (which ends with its block), RESET, RESET ALL, DISCARD ALL, set_config(..., true|false),
// ROLLBACK and ROLLBACK TO SAVEPOINT of a SET, SET ROLE and SET SESSION AUTHORIZATION.
func TestSettingsReachShardsExactly(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := uniqueName("settings_dist")
	role := uniqueName("pgs_role")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (key int NOT NULL, v int)", tbl), tbl, "key", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 20) g", tbl))
	for _, s := range append([]*cluster.Server{env.C.Coordinator}, env.C.Workers...) {
		c := connectServer(t, s)
		mustExec(t, c, "CREATE ROLE "+role, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+role)
	}
	const probe = "current_setting('statement_timeout') || '/' || current_setting('work_mem') || '/' || current_user || '/' || session_user"
	check := func(label string) {
		t.Helper()
		want := queryString(t, conn, "SELECT "+probe)
		for _, k := range []int{1, 7, 13} {
			var got string
			if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE key = %d", probe, tbl, k)).Scan(&got); err != nil {
				t.Errorf("%s: shard query: %v", label, err)
				return
			}
			if got != want {
				t.Errorf("%s: a shard sees %s, the coordinator %s", label, got, want)
				return
			}
		}
	}
	steps := []struct {
		label string
		sqls  []string
	}{
		{"start", nil},
		{"SET LOCAL in a block", []string{"BEGIN", "SET LOCAL statement_timeout = '77ms'", "SELECT count(*) FROM " + tbl, "COMMIT"}},
		{"SET", []string{"SET work_mem = '3MB'", "SET statement_timeout = '5s'"}},
		{"SET LOCAL over SET", []string{"BEGIN", "SET LOCAL work_mem = '5MB'", "SELECT count(*) FROM " + tbl, "COMMIT"}},
		{"ROLLBACK of SET", []string{"BEGIN", "SET work_mem = '7MB'", "SELECT count(*) FROM " + tbl, "ROLLBACK"}},
		{"COMMIT of SET", []string{"BEGIN", "SET work_mem = '8MB'", "SELECT count(*) FROM " + tbl, "COMMIT"}},
		{"ROLLBACK TO of SET", []string{"BEGIN", "SAVEPOINT a", "SET work_mem = '9MB'", "SELECT count(*) FROM " + tbl, "ROLLBACK TO SAVEPOINT a", "COMMIT"}},
		{"set_config(..., true)", []string{"BEGIN", "SELECT set_config('work_mem', '10MB', true)", "SELECT count(*) FROM " + tbl, "COMMIT"}},
		{"set_config(..., true) outside a block", []string{"SELECT set_config('work_mem', '10MB', true)"}},
		{"set_config(..., false)", []string{"SELECT set_config('work_mem', '11MB', false)"}},
		{"RESET", []string{"RESET work_mem"}},
		{"RESET ALL", []string{"SET work_mem = '12MB'", "RESET ALL"}},
		{"SET ROLE", []string{"SET ROLE " + role}},
		{"RESET ROLE", []string{"RESET ROLE"}},
		// A role that may not read pgshard's metadata schema: gathering into a temporary
		// table on the coordinator fires the coordinator's event triggers as that role.
		{"GROUP BY across shards as a role", []string{"SET ROLE " + role, "SELECT v % 3, count(*) FROM " + tbl + " GROUP BY 1", "RESET ROLE"}},
		{"SET LOCAL ROLE", []string{"BEGIN", "SET LOCAL ROLE " + role, "SELECT count(*) FROM " + tbl, "COMMIT"}},
		{"SET SESSION AUTHORIZATION", []string{"SET SESSION AUTHORIZATION " + role}},
		{"RESET SESSION AUTHORIZATION", []string{"RESET SESSION AUTHORIZATION"}},
		{"SET then DISCARD ALL", []string{"SET statement_timeout = '6s'", "SET ROLE " + role, "DISCARD ALL"}},
	}
	for _, st := range steps {
		for _, sql := range st.sqls {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %s: %v", st.label, sql, err)
			}
			if strings.HasPrefix(sql, "SELECT count") {
				check(st.label + " (inside the block)")
			}
		}
		check("after " + st.label)
	}
	// The original defect: a SET LOCAL timeout must not make later shard queries time out.
	mustExec(t, conn, "BEGIN", "SET LOCAL statement_timeout = '77ms'", fmt.Sprintf("SELECT count(*) FROM %s", tbl), "COMMIT")
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT pg_sleep(0.2), count(*) FROM %s WHERE key = 1", tbl)); err != nil {
		t.Errorf("after SET LOCAL statement_timeout ended: %v", err)
	}
}
