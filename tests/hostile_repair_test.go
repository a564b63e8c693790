package tests

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// Issue 10, item 1: repair must run the table owner's code as the owner, never with the
// proxy's (superuser) rights, and recreate the shard owned by the owner.

// connectServerAs opens a pgx connection straight to a server as role (trust).
func connectServerAs(t testing.TB, s *cluster.Server, role string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", role, s.Addr()))
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", s.Name, role, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// hostileOwnerSQL is the owner's code, created by the owner on every server (%[1]s is the
// role). Every piece of it logs who runs it and then tries every way back to a superuser
// identity (RESET ROLE, SET ROLE, SET SESSION AUTHORIZATION, set_config), making the role a
// superuser whenever the identity it finds is one.
const hostileOwnerSQL = `
CREATE TABLE public.%[1]s_log (what text, cu name, su name, at timestamptz DEFAULT pg_catalog.clock_timestamp());
CREATE TABLE public.%[1]s_flag (fail boolean);
CREATE FUNCTION public.%[1]s_attempt(what text) RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
	a text;
BEGIN
	FOREACH a IN ARRAY ARRAY['', 'RESET ROLE', 'SET ROLE postgres', 'SET LOCAL ROLE postgres',
		'SET SESSION AUTHORIZATION postgres', 'RESET SESSION AUTHORIZATION',
		'SELECT pg_catalog.set_config(''role'', ''postgres'', false)',
		'SELECT pg_catalog.set_config(''session_authorization'', ''postgres'', false)'] LOOP
		BEGIN
			IF a <> '' THEN
				EXECUTE a;
			END IF;
			IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
				EXECUTE 'ALTER ROLE %[1]s SUPERUSER';
				INSERT INTO public.%[1]s_log (what, cu, su) VALUES (what || ' escalated by "' || a || '"', current_user, session_user);
			END IF;
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
	END LOOP;
	RETURN true;
END $f$;
CREATE FUNCTION public.%[1]s_note(what text, v integer) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
	IF EXISTS (SELECT 1 FROM public.%[1]s_flag WHERE fail) THEN
		RAISE EXCEPTION 'the owner''s code refuses %%', v;
	END IF;
	INSERT INTO public.%[1]s_log (what, cu, su) VALUES (what, current_user, session_user);
	RETURN public.%[1]s_attempt(what);
END $f$;
CREATE FUNCTION public.%[1]s_idx(v integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
	PERFORM public.%[1]s_note('index', v);
	RETURN v;
END $f$;
CREATE FUNCTION public.%[1]s_gen(v integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN
	PERFORM public.%[1]s_note('generated', v);
	RETURN v * 2;
END $f$;
CREATE FUNCTION public.%[1]s_def() RETURNS integer LANGUAGE plpgsql AS $f$
BEGIN
	PERFORM public.%[1]s_note('default', 0);
	RETURN 7;
END $f$;
CREATE FUNCTION public.%[1]s_trig() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	PERFORM public.%[1]s_attempt('trigger');
	RETURN NEW;
END $f$;
CREATE TRIGGER %[1]s_trig BEFORE INSERT ON public.%[1]s_log FOR EACH ROW
	WHEN (NEW.what = 'check') EXECUTE FUNCTION public.%[1]s_trig();
CREATE DOMAIN public.%[1]s_dom AS integer CHECK (public.%[1]s_note('domain', VALUE));
`

// TestHostileRepairRunsAsOwner: an unprivileged owner whose table's CHECK constraint, index
// expression, generated column, domain, default and a trigger all try to become superuser
// makes a placement diverge on purpose; each repair route (master_copy_shard_placement,
// REPAIR SHARD, the background repairer) must run that code as the owner, recreate the
// shard owned by the owner with the healthy placement's rows, and leave a placement the
// owner's next write does not demote.
func TestHostileRepairRunsAsOwner(t *testing.T) {
	ctx := context.Background()
	role := unprivilegedRole(t, "hrepair")
	for _, s := range env.C.Servers() {
		mustExec(t, connectServerAs(t, s, role), fmt.Sprintf(hostileOwnerSQL, role))
	}
	admin := connect(t)
	owner := connectAs(t, env.P, role)
	table := role + "_t"
	mustExec(t, owner, fmt.Sprintf(`CREATE TABLE %[2]s (
		id integer PRIMARY KEY,
		v integer CHECK (public.%[1]s_note('check', v)),
		d public.%[1]s_dom,
		g integer GENERATED ALWAYS AS (public.%[1]s_gen(v)) STORED,
		w integer DEFAULT public.%[1]s_def())`, role, table),
		fmt.Sprintf("CREATE INDEX %[2]s_idx ON %[2]s ((public.%[1]s_idx(v)))", role, table))
	distribute(t, owner, "SELECT 1", table, "id", 1, 2)
	for i := 1; i <= 20; i++ {
		mustExec(t, owner, fmt.Sprintf("INSERT INTO %s (id, v, d) VALUES (%d, %d, %d)", table, i, i, i))
	}
	shards := shardsOf(t, table)
	if len(shards) != 1 || len(shards[0].places) != 2 {
		t.Fatalf("shards: %+v", shards)
	}
	sh := shards[0]
	shard := fmt.Sprintf("public.%s_%d", table, sh.id)
	victim, healthy := sh.places[0], sh.places[1]
	victimSrv, healthySrv := serverFor(victim.port), serverFor(healthy.port)

	next := 1000
	// diverge makes the victim placement refuse a write its sibling takes, as a hostile
	// owner can: a row put straight into the victim's shard table makes the same row a
	// duplicate key there, so the victim is marked inactive.
	diverge := func() {
		t.Helper()
		next++
		mustExec(t, connectServerAs(t, victimSrv, role), fmt.Sprintf("INSERT INTO %s (id, v, d) VALUES (%d, 1, 1)", shard, next))
		mustExec(t, owner, fmt.Sprintf("INSERT INTO %s (id, v, d) VALUES (%d, %d, %d)", table, next, next, next))
		if _, inact, byPort := placementStates(t, table); inact != 1 || byPort[victim.port] != 1 {
			t.Fatalf("after the divergence: %d inactive placements (%v), want the one on %d", inact, byPort, victim.port)
		}
		mustExec(t, connectServerAs(t, victimSrv, role), fmt.Sprintf("TRUNCATE public.%s_log", role))
	}

	verify := func(how string) {
		t.Helper()
		for _, s := range env.C.Servers() {
			c := connectServer(t, s)
			if su := queryString(t, c, "SELECT rolsuper::text FROM pg_roles WHERE rolname = $1", role); su != "false" {
				t.Fatalf("after %s: %s is a superuser on %s", how, role, s.Name)
			}
		}
		// The owner's code ran during the repair, as the owner and only as the owner.
		vc := connectServer(t, victimSrv)
		rows, err := vc.Query(ctx, fmt.Sprintf("SELECT what, cu::text, su::text FROM public.%s_log", role))
		if err != nil {
			t.Fatal(err)
		}
		ran := map[string]bool{}
		for rows.Next() {
			var what, cu, su string
			if err := rows.Scan(&what, &cu, &su); err != nil {
				t.Fatal(err)
			}
			ran[what] = true
			if cu != role || su != role || strings.Contains(what, "escalated") {
				t.Errorf("after %s: the owner's %q ran as current_user %s, session_user %s", how, what, cu, su)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, what := range []string{"check", "index", "generated", "domain"} {
			if !ran[what] {
				t.Errorf("after %s: the owner's %s code did not run during the repair (ran: %v)", how, what, ran)
			}
		}
		// The repaired shard belongs to the owner, like its sibling, and holds its rows.
		for _, s := range []*cluster.Server{victimSrv, healthySrv} {
			if o := queryString(t, connectServer(t, s), "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = $1::regclass", shard); o != role {
				t.Errorf("after %s: %s on %s is owned by %s, want %s", how, shard, s.Name, o, role)
			}
		}
		if fin, inact, _ := placementStates(t, table); fin != 2 || inact != 0 {
			t.Fatalf("after %s: %d finalized, %d inactive", how, fin, inact)
		}
		want := int64(20 + next - 1000)
		if n := checkPlacements(t, table, "hashint4(id)"); n != want {
			t.Errorf("after %s: %d rows, want %d", how, n, want)
		}
		// The owner's next write reaches both placements and demotes neither.
		next++
		mustExec(t, owner, fmt.Sprintf("INSERT INTO %s (id, v, d) VALUES (%d, %d, %d)", table, next, next, next),
			fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = 1", table))
		if fin, inact, _ := placementStates(t, table); fin != 2 || inact != 0 {
			t.Fatalf("after %s and a write by the owner: %d finalized, %d inactive", how, fin, inact)
		}
		if n := checkPlacements(t, table, "hashint4(id)"); n != want+1 {
			t.Errorf("after %s and a write by the owner: %d rows, want %d", how, n, want+1)
		}
	}

	// 1. pg_shard's master_copy_shard_placement.
	diverge()
	mustExec(t, admin, fmt.Sprintf("SELECT master_copy_shard_placement(%d, '%s', %d, '%s', %d)",
		sh.id, healthy.host, healthy.port, victim.host, victim.port))
	verify("master_copy_shard_placement")

	// 2. REPAIR SHARD.
	diverge()
	mustExec(t, admin, fmt.Sprintf("REPAIR SHARD %d", sh.id))
	verify("REPAIR SHARD")

	// 3. The background repairer.
	diverge()
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{RepairInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitRepaired(t, table, 60*time.Second)
	p2.Stop()
	verify("the background repairer")

	// 4. A shard table in the victim's place that the owner does not own (as an older
	// pgshard's repair left it: owned by the proxy's role) is replaced by the owner's.
	diverge()
	mustExec(t, connectServer(t, victimSrv), fmt.Sprintf("ALTER TABLE %s OWNER TO postgres", shard))
	mustExec(t, admin, fmt.Sprintf("REPAIR SHARD %d", sh.id))
	verify("REPAIR SHARD over a shard owned by postgres")

	// 5. Another role's objects on the owner's search_path do not stand in for those the
	// repair's own statements name.
	// (Only on the workers, and only for this test: the other tests share the servers.)
	other := unprivilegedRole(t, "hrepother")
	for _, s := range env.C.Workers {
		t.Cleanup(func() {
			s.Exec(context.Background(), "postgres", `DROP FUNCTION IF EXISTS public.md5(text), public.substr(text, integer, integer),
				public.pg_total_relation_size(text)`)
		})
		mustExec(t, connectServer(t, s), fmt.Sprintf("ALTER ROLE %s SET search_path = public, pg_catalog", role))
		mustExec(t, connectServerAs(t, s, other), fmt.Sprintf(`
			CREATE TABLE public.%[1]s_log (who name);
			GRANT INSERT ON public.%[1]s_log TO PUBLIC;
			CREATE FUNCTION public.md5(t text) RETURNS text LANGUAGE plpgsql AS $f$
			BEGIN
				INSERT INTO public.%[1]s_log VALUES (current_user);
				RETURN pg_catalog.md5(t);
			END $f$;
			CREATE FUNCTION public.substr(t text, a integer, b integer) RETURNS text LANGUAGE plpgsql AS $f$
			BEGIN
				INSERT INTO public.%[1]s_log VALUES (current_user);
				RETURN pg_catalog.substr(t, a, b);
			END $f$;
			CREATE FUNCTION public.pg_total_relation_size(t text) RETURNS bigint LANGUAGE plpgsql AS $f$
			BEGIN
				INSERT INTO public.%[1]s_log VALUES (current_user);
				RETURN 0;
			END $f$;`, other))
	}
	diverge()
	mustExec(t, admin, fmt.Sprintf("REPAIR SHARD %d", sh.id))
	verify("REPAIR SHARD with other roles' functions first on the owner's search_path")
	for _, s := range []*cluster.Server{victimSrv, healthySrv} {
		if n := queryString(t, connectServer(t, s), fmt.Sprintf("SELECT count(*)::text FROM public.%s_log", other)); n != "0" {
			t.Errorf("another role's functions ran %s times on %s during the repair", n, s.Name)
		}
	}

	// 6. An owner that cannot log in: the repair fails and says why; nothing else runs.
	diverge()
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("ALTER ROLE %s NOLOGIN", role))
	wantError(t, admin, fmt.Sprintf("REPAIR SHARD %d", sh.id), "55000", "")
	if _, inact, _ := placementStates(t, table); inact != 1 {
		t.Errorf("after a refused repair: %d inactive placements, want 1", inact)
	}
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf("ALTER ROLE %s LOGIN", role))
	mustExec(t, admin, fmt.Sprintf("REPAIR SHARD %d", sh.id))
	verify("REPAIR SHARD once the owner can log in again")
}

// waitRepaired waits until no placement of table is inactive.
func waitRepaired(t *testing.T, table string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, inact, _ := placementStates(t, table); inact == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background repairer left placements of %s inactive", table)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHostileRepairOwnerCodeFails: when the owner's code raises an error during the copy,
// the repair fails with that error, the placement stays inactive, and the background
// repairer backs off instead of copying the shard again and again; once the code accepts
// the rows again, the repair succeeds.
func TestHostileRepairOwnerCodeFails(t *testing.T) {
	ctx := context.Background()
	role := unprivilegedRole(t, "hrepfail")
	for _, s := range env.C.Servers() {
		mustExec(t, connectServerAs(t, s, role), fmt.Sprintf(hostileOwnerSQL, role))
	}
	admin := connect(t)
	owner := connectAs(t, env.P, role)
	table := role + "_t"
	distribute(t, owner, fmt.Sprintf(`CREATE TABLE %[2]s (id integer PRIMARY KEY, v integer CHECK (public.%[1]s_note('check', v)))`, role, table),
		table, "id", 1, 2)
	for i := 1; i <= 10; i++ {
		mustExec(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (%d, %d)", table, i, i))
	}
	sh := shardsOf(t, table)[0]
	victim := sh.places[0]
	victimSrv := serverFor(victim.port)
	shard := fmt.Sprintf("public.%s_%d", table, sh.id)
	mustExec(t, connectServerAs(t, victimSrv, role), fmt.Sprintf("INSERT INTO %s VALUES (100, 1)", shard))
	mustExec(t, owner, fmt.Sprintf("INSERT INTO %s VALUES (100, 100)", table))
	if _, inact, _ := placementStates(t, table); inact != 1 {
		t.Fatalf("%d inactive placements, want 1", inact)
	}
	// From now on the owner's CHECK refuses every row on the victim's server.
	victimOwner := connectServerAs(t, victimSrv, role)
	mustExec(t, victimOwner, fmt.Sprintf("INSERT INTO public.%s_flag VALUES (true)", role))

	_, err := admin.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", sh.id))
	if err == nil || !strings.Contains(err.Error(), "could not copy shard data") {
		t.Fatalf("REPAIR SHARD with the owner's code failing: %v, want could not copy shard data", err)
	}
	if _, inact, _ := placementStates(t, table); inact != 1 {
		t.Fatalf("after a failed repair: %d inactive placements, want 1", inact)
	}
	out, _ := psql(t, env.P, "SHOW REPAIRS;\n", "-A", "-t", "-F", "|")
	if !strings.Contains(out, "the owner's code refuses") {
		t.Errorf("SHOW REPAIRS does not show the owner's error:\n%s", out)
	}

	// The background repairer tries, fails, and backs off.
	attempts := func() int {
		var n int
		if err := connectServer(t, env.C.Coordinator).QueryRow(ctx,
			"SELECT count(*) FROM pgs_distribution_metadata.repair WHERE shard_id = $1 AND trigger = 'background'", sh.id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	p2, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{RepairInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	time.Sleep(5 * time.Second)
	n := attempts()
	if n == 0 {
		t.Fatalf("the background repairer did not try")
	}
	// Every 200ms, the repairer would have tried more than 10 times; backing off (doubling
	// from 400ms) it tries at most 4 or 5 times.
	if n > 6 {
		t.Errorf("the background repairer tried %d times in 5s: it does not back off", n)
	}
	if _, inact, _ := placementStates(t, table); inact != 1 {
		t.Fatalf("after failed background repairs: %d inactive placements, want 1", inact)
	}

	// The owner's code accepts rows again: the repair goes through.
	mustExec(t, victimOwner, fmt.Sprintf("TRUNCATE public.%s_flag", role))
	waitRepaired(t, table, 60*time.Second)
	if n := checkPlacements(t, table, "hashint4(id)"); n != 11 {
		t.Errorf("after the repair: %d rows, want 11", n)
	}
	var states []string
	rows, err := connectServer(t, env.C.Coordinator).Query(ctx,
		"SELECT state FROM pgs_distribution_metadata.repair WHERE shard_id = $1 ORDER BY id", sh.id)
	if err != nil {
		t.Fatal(err)
	}
	states, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(states)
	if len(states) == 0 || states[len(states)-1] != "succeeded" {
		t.Errorf("repair states: %v", states)
	}
}
