package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// Issue 10: attacks of a hostile ordinary role (LOGIN, CREATE on public) on what the fixes
// of items 1, 3, 4, 7 and 9 claim: no code of an ordinary role runs with the proxy's own
// (superuser) rights, and the proxy connects nowhere an ordinary role chooses.

// isSuperuser reports whether role is a superuser on the coordinator.
func isSuperuser(t *testing.T, role string) bool {
	t.Helper()
	var su bool
	if err := connectServer(t, env.C.Coordinator).QueryRow(context.Background(),
		"SELECT rolsuper FROM pg_roles WHERE rolname = $1", role).Scan(&su); err != nil {
		t.Fatal(err)
	}
	return su
}

// waitForLockWait waits until a backend waits for a lock on relation rel on the
// coordinator.
func waitForLockWait(t *testing.T, rel string) {
	t.Helper()
	cc := connectServer(t, env.C.Coordinator)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := cc.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = $1 AND NOT l.granted`, rel).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nobody waits for a lock on %s", rel)
}

// The ownership and kind checks of master_create_distributed_table run in the caller's
// session; the proxy's own connection then checks that the prototype is empty. A table
// turned into a view in between (PostgreSQL 15 still converts an empty table with an ON
// SELECT rule "_RETURN") made the proxy's superuser connection read the view, running
// the caller's function in it as superuser: the caller made itself a superuser.
func TestHostileDistributeTableTurnedView(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := unprivilegedRole(t, "alice")
	a1 := connectAs(t, env.P, alice)
	a2 := connectAs(t, env.P, alice)
	tbl := uniqueName("turned")
	su := connectServer(t, env.C.Coordinator)
	t.Cleanup(func() {
		su.Exec(context.Background(), fmt.Sprintf("ALTER ROLE %s NOSUPERUSER", alice))
		su.Exec(context.Background(), fmt.Sprintf("DELETE FROM pgs_distribution_metadata.partition WHERE relation_id = (SELECT oid FROM pg_class WHERE relname = '%s')", tbl))
		su.Exec(context.Background(), fmt.Sprintf("DROP VIEW IF EXISTS %[1]s; DROP TABLE IF EXISTS %[1]s", tbl))
	})
	mustExec(t, a1,
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", tbl),
		// Escalates when anyone but alice runs it; the view stays empty for everyone.
		fmt.Sprintf(`CREATE FUNCTION %[1]s_evil() RETURNS boolean LANGUAGE plpgsql AS $$
			BEGIN
				IF current_user <> '%[1]s' THEN EXECUTE 'ALTER ROLE %[1]s SUPERUSER'; END IF;
				RETURN false;
			END $$`, alice),
		fmt.Sprintf("CREATE FUNCTION %[1]s_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$", alice))

	// A second session of alice's turns the table into a view, in a transaction that the
	// call's emptiness check (in alice's session) waits for.
	mustExec(t, a2, "BEGIN",
		fmt.Sprintf(`CREATE RULE "_RETURN" AS ON SELECT TO %s DO INSTEAD SELECT 1 AS id, NULL::text AS v WHERE %s_evil()`, tbl, alice),
		// Triggers with the names of those the proxy adds, so that it adds none (which a
		// view would refuse).
		fmt.Sprintf("CREATE TRIGGER pgshard_refuse_rows INSTEAD OF INSERT ON %s FOR EACH ROW EXECUTE FUNCTION %s_trg()", tbl, alice),
		fmt.Sprintf("CREATE TRIGGER pgshard_refuse_writes BEFORE INSERT ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s_trg()", tbl, alice))
	done := make(chan error, 1)
	go func() {
		_, err := a1.Exec(ctx, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", tbl))
		done <- err
	}()
	waitForLockWait(t, tbl)
	mustExec(t, a2, "COMMIT")
	err := <-done
	if isSuperuser(t, alice) {
		t.Fatalf("%s made itself a superuser through a table turned into a view while it was distributed", alice)
	}
	wantSQLState(t, "distributing a table turned into a view", err, "42809", "cannot distribute relation")
	if n := queryString(t, su, fmt.Sprintf("SELECT count(*)::text FROM pgs_distribution_metadata.partition WHERE relation_id = '%s'::regclass", tbl)); n != "0" {
		t.Errorf("a view was distributed: %s partition rows", n)
	}
}

// tableShardIDs returns the shard ids of a distributed table, from the metadata.
func tableShardIDs(t *testing.T, table string) []int64 {
	t.Helper()
	rows, err := connectServer(t, env.C.Coordinator).Query(context.Background(),
		"SELECT id FROM pgs_distribution_metadata.shard WHERE relation_id = $1::regclass ORDER BY id", table)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return ids
}

// The shard write locks (and the repair locks) are advisory locks on the coordinator, whose keys anyone can compute and take: an ordinary role with no
// privilege on a table stops every write to it (and its repair) with one SELECT.
func TestHostileAdvisoryLockSquatting(t *testing.T) {
	t.Skip("known defect: pgshard's shard write locks and repair locks are coordinator advisory locks (namespace<<56 | shard id), which every role may take with pg_advisory_lock: another role's writes to a replicated shard wait for them (until their lock_timeout), and its repairs fail ('being repaired by another session')")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := unprivilegedRole(t, "alice")
	app := unprivilegedRole(t, "app")
	ac := connectAs(t, env.P, alice)
	pc := connectAs(t, env.P, app)
	tbl := uniqueName("squatted")
	su := connectServer(t, env.C.Coordinator)
	t.Cleanup(func() { su.Exec(context.Background(), "DROP TABLE IF EXISTS "+tbl) })
	mustExec(t, ac,
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", tbl),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", tbl),
		fmt.Sprintf("select master_create_worker_shards('%s', 2, 2)", tbl))
	for _, id := range tableShardIDs(t, tbl) {
		// store.LockKey(store.LockShard, id), exclusively: a write that pins its keys takes
		// it shared (with a key lock), which a shared squatter does not block; every write
		// waits for an exclusive one.
		mustExec(t, pc, fmt.Sprintf("SELECT pg_advisory_lock((2::bigint << 56) | %d)", id))
	}
	done := make(chan error, 1)
	go func() {
		_, err := ac.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = 'x' WHERE id = 1", tbl))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("alice's write: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("alice's write to her own table waits for an advisory lock %s took", app)
		pc.Close(ctx)
		<-done
	}
}

// A temporary table, or a partition, can never have shards (their definition is refused
// when the shards are created), but master_create_distributed_table recorded them: the
// partition row of a temporary table outlived it (no event trigger sees a temporary table
// go at the end of its session).
func TestHostileDistributeTempTableOrPartition(t *testing.T) {
	ctx := context.Background()
	app := unprivilegedRole(t, "app")
	pc := connectAs(t, env.P, app)
	su := connectServer(t, env.C.Coordinator)
	parent := uniqueName("parted")
	t.Cleanup(func() { su.Exec(context.Background(), "DROP TABLE IF EXISTS "+parent) })
	mustExec(t, pc,
		"CREATE TEMP TABLE scratch_dist (id int)",
		fmt.Sprintf("CREATE TABLE %s (id int) PARTITION BY HASH (id)", parent),
		fmt.Sprintf("CREATE TABLE %[1]s_0 PARTITION OF %[1]s FOR VALUES WITH (modulus 1, remainder 0)", parent))
	var tempOID uint32
	if err := pc.QueryRow(ctx, "SELECT 'scratch_dist'::regclass::oid").Scan(&tempOID); err != nil {
		t.Fatal(err)
	}
	_, err := pc.Exec(ctx, "select master_create_distributed_table('scratch_dist', 'id')")
	wantSQLState(t, "distributing a temporary table", err, "0A000", "cannot distribute a temporary table")
	_, err = pc.Exec(ctx, fmt.Sprintf("select master_create_distributed_table('%s_0', 'id')", parent))
	wantSQLState(t, "distributing a partition", err, "0A000", "is a partition")
	if n := queryString(t, su, fmt.Sprintf("SELECT count(*)::text FROM pgs_distribution_metadata.partition WHERE relation_id IN (%d, '%s_0'::regclass)", tempOID, parent)); n != "0" {
		t.Errorf("%s partition rows for a temporary table and a partition", n)
	}
	su.Exec(ctx, fmt.Sprintf("DELETE FROM pgs_distribution_metadata.partition WHERE relation_id IN (%d, '%s_0'::regclass)", tempOID, parent))
}

// workerTables counts, on every worker, the tables named name in schema public.
func workerTables(t *testing.T, name string) int {
	t.Helper()
	n := 0
	for _, w := range env.C.Workers {
		var k int
		if err := connectServer(t, w).QueryRow(context.Background(),
			"SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", name).Scan(&k); err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return n
}

// A distributed table renamed behind the proxy's back (in a function: the proxy refuses
// ALTER TABLE ... RENAME itself) to a name of 63 bytes made its shard names longer than
// PostgreSQL's identifiers: truncated, they named another role's shard, which the next
// superuser to drop (or truncate) the renamed table through the proxy destroyed.
func TestHostileRenamedTableShardNameCollision(t *testing.T) {
	ctx := context.Background()
	alice := unprivilegedRole(t, "alice")
	app := unprivilegedRole(t, "app")
	ac := connectAs(t, env.P, alice)
	pc := connectAs(t, env.P, app)
	su := connect(t)
	// alice's table has a name of 57 bytes: with a 5-digit shard id, its shard names
	// have 63.
	long := uniqueName("victim")
	long += strings.Repeat("x", 57-len(long))
	mine := uniqueName("mine")
	t.Cleanup(func() {
		su.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %s", long))
	})
	mustExec(t, ac,
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", long),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", long),
		fmt.Sprintf("select master_create_worker_shards('%s', 1, 2)", long),
		fmt.Sprintf("INSERT INTO %s VALUES (1, 'alice')", long))
	ids := tableShardIDs(t, long)
	victim := fmt.Sprintf("%s_%d", long, ids[0])
	if len(victim) != 63 {
		t.Skipf("shard id %d does not have 5 digits", ids[0])
	}
	mustExec(t, pc,
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", mine),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", mine),
		fmt.Sprintf("select master_create_worker_shards('%s', 1, 1)", mine),
		fmt.Sprintf(`CREATE FUNCTION %s_ren(a text, b text) RETURNS void LANGUAGE plpgsql AS $$
			BEGIN EXECUTE pg_catalog.format('ALTER TABLE %%I RENAME TO %%I', a, b); END $$`, app))
	// app's table takes the name of alice's shard: its own shard names, truncated, are it.
	// (ALTER INDEX ... RENAME renames a table too.)
	mustExec(t, pc, fmt.Sprintf(`CREATE FUNCTION %s_ren_index(a text, b text) RETURNS void LANGUAGE plpgsql AS $$
			BEGIN EXECUTE pg_catalog.format('ALTER INDEX %%I RENAME TO %%I', a, b); END $$`, app))
	_, err := pc.Exec(ctx, fmt.Sprintf("select %s_ren_index('%s', '%s')", app, mine, victim))
	wantSQLState(t, "renaming a distributed table (ALTER INDEX) to a name its shard names overflow", err, "42622", "longer than 63 bytes")
	if err == nil {
		mustExec(t, pc, fmt.Sprintf("select %s_ren_index('%s', '%s')", app, victim, mine))
	}
	_, err = pc.Exec(ctx, fmt.Sprintf("select %s_ren('%s', '%s')", app, mine, victim))
	wantSQLState(t, "renaming a distributed table to a name its shard names overflow", err, "42622", "longer than 63 bytes")
	if err == nil {
		// The proxy learns of the rename through NOTIFY.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if tb := env.P.Server().Snapshot().Table("public", victim); tb != nil {
				break
			}
		}
		// A superuser cleans up app's table.
		_, err = su.Exec(ctx, fmt.Sprintf(`TRUNCATE %q`, victim))
		t.Logf("TRUNCATE: %v", err)
		_, err = su.Exec(ctx, fmt.Sprintf(`DROP TABLE %q`, victim))
		t.Logf("DROP TABLE: %v", err)
		t.Cleanup(func() { su.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %q", victim)) })
	} else {
		t.Cleanup(func() { su.Exec(context.Background(), "DROP TABLE IF EXISTS "+mine) })
	}
	if n := workerTables(t, victim); n != 2 {
		t.Fatalf("alice's shard %s is on %d workers after app's rename and a superuser's cleanup, want 2", victim, n)
	}
	if got := queryString(t, ac, fmt.Sprintf("SELECT count(*)::text FROM %s", long)); got != "1" {
		t.Errorf("alice's table holds %s rows, want 1", got)
	}
}

// Planning a query over a table evaluates the constant parts of its index expressions and
// predicates (an IMMUTABLE function, which may call anything): the proxy's own connection
// checked that a table was empty with a SELECT over it, so distributing a table with such
// an index ran its owner's function as superuser; so did every proxy's start for a
// distributed table that got such an index afterwards (in a function, where pgshard does
// not see the CREATE INDEX).
func TestHostileIndexPredicateRunsAsProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := unprivilegedRole(t, "alice")
	ac := connectAs(t, env.P, alice)
	su := connectServer(t, env.C.Coordinator)
	first, second := uniqueName("pred"), uniqueName("pred")
	t.Cleanup(func() {
		su.Exec(context.Background(), fmt.Sprintf("ALTER ROLE %s NOSUPERUSER", alice))
		for _, tbl := range []string{first, second} {
			su.Exec(context.Background(), fmt.Sprintf("DELETE FROM pgs_distribution_metadata.partition WHERE relation_id = '%s'::regclass", tbl))
			su.Exec(context.Background(), "DROP TABLE IF EXISTS "+tbl)
		}
	})
	mustExec(t, ac,
		fmt.Sprintf(`CREATE FUNCTION %[1]s_evil() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
			BEGIN
				IF current_user <> '%[1]s' THEN EXECUTE 'ALTER ROLE %[1]s SUPERUSER'; END IF;
				RETURN true;
			END $$`, alice),
		fmt.Sprintf(`CREATE FUNCTION %[1]s_imm() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
			BEGIN RETURN %[1]s_evil(); END $$`, alice),
		fmt.Sprintf(`CREATE FUNCTION %[1]s_idx(t text) RETURNS void LANGUAGE plpgsql AS $$
			BEGIN EXECUTE pg_catalog.format('CREATE INDEX ON %%I (id) WHERE %[1]s_imm()', t); END $$`, alice),
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", first),
		fmt.Sprintf("CREATE INDEX ON %s (id) WHERE %s_imm()", first, alice),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", first))
	if isSuperuser(t, alice) {
		t.Fatalf("%s made itself a superuser with an index predicate of a table it distributed", alice)
	}

	// A table distributed first, then given the index behind the proxy's back; a proxy
	// starts.
	mustExec(t, ac,
		fmt.Sprintf("CREATE TABLE %s (id int, v text)", second),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", second))
	// (The coordinator's DDL guard refuses an index made behind the proxy's back now: issue 13.)
	_, err := ac.Exec(ctx, fmt.Sprintf("select %s_idx('%s')", alice, second))
	wantSQLState(t, "CREATE INDEX on a distributed table in a function", err, "0A000", "must run through pgshard")
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if isSuperuser(t, alice) {
		t.Fatalf("%s made itself a superuser with an index predicate of a distributed table when a proxy started", alice)
	}
}

// master_create_worker_shards took any shard_count: the proxy allocated its hash ranges
// at once (2^31-1 of them, 16 GB, is the end of the proxy for every client) and created
// that many shards. As Citus, at most 64000. (Shown with a table whose shard names are too
// long, so that the unfixed proxy failed after its allocation and metadata inserts, not
// after creating 64001 tables.)
func TestHostileShardCountBounded(t *testing.T) {
	ctx := context.Background()
	app := unprivilegedRole(t, "app")
	pc := connectAs(t, env.P, app)
	tbl := uniqueName("many")
	tbl += strings.Repeat("y", 60-len(tbl))
	su := connect(t)
	t.Cleanup(func() { su.Exec(context.Background(), "DROP TABLE IF EXISTS "+tbl) })
	mustExec(t, pc,
		fmt.Sprintf("CREATE TABLE %s (id int)", tbl),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", tbl))
	_, err := pc.Exec(ctx, fmt.Sprintf("select master_create_worker_shards('%s', 64001, 1)", tbl))
	wantSQLState(t, "64001 shards", err, "22023", "shard_count")
}

// The proxy asks clients for no password and logs them in by connecting to the coordinator
// as the client's user with the coordinator URL's password: a client that knows no
// password logs in as the URL's own (superuser) role, which the coordinator accepts
// whatever its pg_hba.conf demands, and every privilege check of issue 10 is moot.
func TestHostileLoginAsProxyRoleWithoutPassword(t *testing.T) {
	t.Skip("known defect: no client authentication (README: trust; client TLS and password authentication not supported yet): a client naming the coordinator URL's user logs in with the URL's password, as a superuser")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := strings.Replace(env.C.Coordinator.URL("postgres"), "postgres@", "postgres:coordinator-s3cret@", 1)
	p, err := testproxy.Start(ctx, url, testproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", p.Addr))
	if err == nil {
		var su bool
		c.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&su)
		c.Close(ctx)
		t.Fatalf("a client without a password logged in through the proxy as the coordinator URL's role (superuser: %v)", su)
	}
	wantSQLState(t, "login as the URL's role without a password", err, "28P01", "")
}

// master_create_worker_shards waited, on a connection of the proxy's metadata pool, for an
// advisory lock of the table that any role may take: an ordinary role holding it and
// calling the function a few times occupied every metadata connection, and every
// proxy-wide metadata change (any role's master_create_distributed_table, marking a
// placement, a reload) waited for as long as the role liked. The advisory lock is
// gone (shard creation locks the partition row, which no other role can lock).
func TestHostileCreateShardsLockExhaustsMetadataPool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := unprivilegedRole(t, "app")
	alice := unprivilegedRole(t, "alice")
	pc := connectAs(t, env.P, app)
	ac := connectAs(t, env.P, alice)
	su := connect(t)
	mine, victim := uniqueName("squat"), uniqueName("victim")
	t.Cleanup(func() { su.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %s, %s", mine, victim)) })
	mustExec(t, pc,
		fmt.Sprintf("CREATE TABLE %s (id int)", mine),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", mine))
	mustExec(t, ac, fmt.Sprintf("CREATE TABLE %s (id int)", victim))
	var oid uint32
	if err := pc.QueryRow(ctx, fmt.Sprintf("SELECT '%s'::regclass::oid", mine)).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	// store.LockKey(lockCreateShards, oid)
	mustExec(t, pc, fmt.Sprintf("SELECT pg_advisory_lock((1::bigint << 56) | %d)", oid))
	callCtx, stopCalls := context.WithCancel(ctx)
	defer stopCalls()
	const calls = 12
	errs := floodCalls(t, callCtx, app, calls, fmt.Sprintf("select master_create_worker_shards('%s', 2, 1)", mine))
	victimDistributes(t, ctx, ac, victim, app)
	for i := 0; i < calls; i++ {
		select {
		case err := <-errs:
			// One call creates the shards; the others find them there, or being created.
			var pe *pgconn.PgError
			if err != nil && (!errors.As(err, &pe) || pe.Code != "55P03" && pe.Code != "55000") {
				t.Errorf("concurrent master_create_worker_shards: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("master_create_worker_shards waits for a lock another session holds")
			i = calls
		}
	}
	pc.Close(ctx) // releases the lock
	stopCalls()
}

// Distributing a table takes locks on it on a metadata connection (its triggers), and a
// proxy's start checks every distributed table likewise: an owner holding a lock on its
// own table held those connections (every one of the pool, with a few calls) and kept new
// proxies from starting, for as long as it liked.
func TestHostileTableLockHoldsMetadataPool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app := unprivilegedRole(t, "app")
	alice := unprivilegedRole(t, "alice")
	pc := connectAs(t, env.P, app)
	ac := connectAs(t, env.P, alice)
	su := connect(t)
	mine, dist, victim := uniqueName("locked"), uniqueName("locked_dist"), uniqueName("victim")
	t.Cleanup(func() {
		su.Exec(context.Background(), fmt.Sprintf("DROP TABLE IF EXISTS %s, %s, %s", mine, dist, victim))
	})
	mustExec(t, pc,
		fmt.Sprintf("CREATE TABLE %s (id int)", mine),
		fmt.Sprintf("CREATE TABLE %s (id int)", dist),
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", dist))
	mustExec(t, ac, fmt.Sprintf("CREATE TABLE %s (id int)", victim))
	holder := connectAs(t, env.P, app)
	mustExec(t, holder, "BEGIN",
		fmt.Sprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", mine))
	callCtx, stopCalls := context.WithCancel(ctx)
	defer stopCalls()
	const calls = 12
	errs := floodCalls(t, callCtx, app, calls, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", mine))
	victimDistributes(t, ctx, ac, victim, app)
	for i := 0; i < calls; i++ {
		select {
		case err := <-errs:
			if i == 0 {
				wantSQLState(t, "distributing a table another session holds a lock on", err, "55P03", "")
			}
		case <-time.After(5 * time.Second):
			t.Errorf("master_create_distributed_table waits for a lock another session holds")
			i = calls
		}
	}
	mustExec(t, holder, "ROLLBACK")
	stopCalls()

	// A distributed table locked by its owner; a proxy starts.
	// (The proxy refuses LOCK TABLE of a distributed table; a function does not see it.)
	mustExec(t, holder,
		fmt.Sprintf(`CREATE FUNCTION %s_lock(t text) RETURNS void LANGUAGE plpgsql AS $$
			BEGIN EXECUTE pg_catalog.format('LOCK TABLE %%I IN ACCESS EXCLUSIVE MODE', t); END $$`, app),
		"BEGIN", fmt.Sprintf("SELECT %s_lock('%s')", app, dist))
	defer holder.Exec(context.Background(), "ROLLBACK")
	startCtx, cancelStart := context.WithTimeout(ctx, 15*time.Second)
	defer cancelStart()
	p, err := testproxy.Start(startCtx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatalf("a proxy starts while a role holds a lock on its own distributed table: %v", err)
	}
	p.Stop()
}

// A proxy's start serialized its schema migration with an advisory lock any role may take:
// an ordinary role holding it kept every new proxy from starting.
func TestHostileMigrationLockSquatted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := unprivilegedRole(t, "app")
	pc := connectAs(t, env.P, app)
	mustExec(t, pc, "SELECT pg_advisory_lock(hashtext('pgshard.migrate'))")
	startCtx, cancelStart := context.WithTimeout(ctx, 15*time.Second)
	defer cancelStart()
	p, err := testproxy.Start(startCtx, env.C.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		t.Fatalf("a proxy starts while an ordinary role holds the migration's advisory lock: %v", err)
	}
	p.Stop()
}

// floodCalls runs sql as role on n connections of its own at once, and gives 2 s for the
// calls to reach whatever they wait for; their errors arrive on the channel.
func floodCalls(t *testing.T, ctx context.Context, role string, n int, sql string) <-chan error {
	t.Helper()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		c := connectAs(t, env.P, role)
		go func() {
			_, err := c.Exec(ctx, sql)
			errs <- err
		}()
	}
	time.Sleep(2 * time.Second)
	return errs
}

// victimDistributes checks that another role (on conn ac) can still distribute its own
// table while attacker's calls are stuck.
func victimDistributes(t *testing.T, ctx context.Context, ac *pgx.Conn, victim, attacker string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := ac.Exec(ctx, fmt.Sprintf("select master_create_distributed_table('%s', 'id')", victim))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("alice distributes her table: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("alice's master_create_distributed_table waits for %s's calls, which wait for a lock %s holds", attacker, attacker)
	}
}
