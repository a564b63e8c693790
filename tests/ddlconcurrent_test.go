package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// placementIndexes returns, for every finalized placement of table, the validity of the
// shard's copy of index ("" when the placement lacks it), as "shard@port=t|f|" lines.
func placementIndexes(t testing.TB, table, index string) []string {
	t.Helper()
	var out []string
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 {
				continue
			}
			c := connectServer(t, serverFor(p.port))
			v := queryString(t, c, `SELECT coalesce((SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass($1)
				AND indrelid = to_regclass($2)), '')`, fmt.Sprintf("%s_%d", index, s.id), fmt.Sprintf("%s_%d", table, s.id))
			c.Close(context.Background())
			out = append(out, fmt.Sprintf("%d@%d=%s", s.id, p.port, v))
		}
	}
	return out
}

// wantIndexEverywhere checks that the coordinator and every placement have a valid index.
func wantIndexEverywhere(t testing.TB, table, index string, want bool) {
	t.Helper()
	coord := connectServer(t, env.C.Coordinator)
	defer coord.Close(context.Background())
	wantV := ""
	if want {
		wantV = "true"
	}
	if v := queryString(t, coord, "SELECT coalesce((SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass($1)), '')", index); v != wantV {
		t.Fatalf("coordinator's index %s: %q, want %q", index, v, wantV)
	}
	for _, l := range placementIndexes(t, table, index) {
		if !strings.HasSuffix(l, "="+wantV) {
			t.Fatalf("placement index %s: %s, want %q (all: %v)", index, l, wantV, placementIndexes(t, table, index))
		}
	}
}

// noInvalidIndexes checks that no placement of table holds an invalid index.
func noInvalidIndexes(t testing.TB, table string) {
	t.Helper()
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			c := connectServer(t, serverFor(p.port))
			n := queryString(t, c, "SELECT count(*)::text FROM pg_index WHERE indrelid = to_regclass($1) AND NOT indisvalid", fmt.Sprintf("%s_%d", table, s.id))
			c.Close(context.Background())
			if n != "0" {
				t.Fatalf("shard %d on port %d holds %s invalid indexes", s.id, p.port, n)
			}
		}
	}
}

// TestDDLConcurrentIndex: CREATE INDEX CONCURRENTLY builds the index on the coordinator and
// on every placement while writes go on: a placement's build waits for an old snapshot
// held on its worker, and writes through pgshard to every shard succeed meanwhile. DROP
// INDEX CONCURRENTLY drops it everywhere; inside a transaction block both answer 25001.
func TestDDLConcurrentIndex(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("dcic")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, id bigint, v int)", table), table, "k", 4, 2)
	for i := 0; i < 100; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d, %d)", table, i, i, i%7))
	}

	// An old snapshot on the worker of the first shard's first placement: CONCURRENTLY
	// waits for it there.
	shards := shardsOf(t, table)
	port := shards[0].places[0].port
	blocker := connectServer(t, serverFor(port))
	mustExec(t, blocker, "BEGIN ISOLATION LEVEL REPEATABLE READ", fmt.Sprintf("SELECT count(*) FROM %s_%d", table, shards[0].id))

	done := make(chan error, 1)
	c := connect(t)
	go func() {
		_, err := c.Exec(ctx, fmt.Sprintf("CREATE INDEX CONCURRENTLY %[1]s_v ON %[1]s (v)", table))
		done <- err
	}()
	watch := connectServer(t, serverFor(port))
	deadline := time.Now().Add(60 * time.Second)
	for queryString(t, watch, "SELECT count(*)::text FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'") == "0" {
		select {
		case err := <-done:
			t.Fatalf("CREATE INDEX CONCURRENTLY ended before the old snapshot did: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("CREATE INDEX CONCURRENTLY never waited on the worker")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The build is under way: writes to every shard go through.
	writer := connect(t)
	for i := 0; i < 40; i++ {
		mustExec(t, writer, fmt.Sprintf("INSERT INTO %s VALUES ('w%d', %d, %d)", table, i, 1000+i, i%5),
			fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = 'k%d'", table, i))
	}
	mustExec(t, blocker, "COMMIT")
	if err := <-done; err != nil {
		t.Fatalf("CREATE INDEX CONCURRENTLY: %v", err)
	}
	wantIndexEverywhere(t, table, table+"_v", true)
	checkDefinitions(t, table, false)
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s WHERE v >= 0", table)); n != "140" {
		t.Fatalf("rows: %s, want 140", n)
	}

	// Straight on the coordinator, CONCURRENTLY is still refused (metadata/store/events.sql).
	coord := connectServer(t, env.C.Coordinator)
	wantError(t, coord, fmt.Sprintf("CREATE INDEX CONCURRENTLY %[1]s_direct ON %[1]s (v)", table), "0A000", "")
	wantError(t, coord, fmt.Sprintf("DROP INDEX CONCURRENTLY %s_v", table), "0A000", "")
	coord.Close(ctx)

	// An unnamed index gets the coordinator's name on the shards.
	mustExec(t, conn, fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (id)", table))
	wantIndexEverywhere(t, table, table+"_id_idx", true)
	checkDefinitions(t, table, false)

	// Not in a transaction block.
	mustExec(t, conn, "BEGIN")
	wantErrorNoCheck(t, conn, fmt.Sprintf("CREATE INDEX CONCURRENTLY %[1]s_w ON %[1]s (v)", table), "25001")
	mustExec(t, conn, "ROLLBACK", "BEGIN")
	wantErrorNoCheck(t, conn, fmt.Sprintf("DROP INDEX CONCURRENTLY %s_v", table), "25001")
	mustExec(t, conn, "ROLLBACK")

	mustExec(t, conn, fmt.Sprintf("DROP INDEX CONCURRENTLY %s_v", table))
	wantIndexEverywhere(t, table, table+"_v", false)
	mustExec(t, conn, fmt.Sprintf("DROP INDEX CONCURRENTLY IF EXISTS %s_v", table))
	wantError(t, conn, fmt.Sprintf("DROP INDEX CONCURRENTLY %s_v", table), "42704", "")
	checkDefinitions(t, table, false)
	noInvalidIndexes(t, table)
}

// TestDDLConcurrentIndexResume: a UNIQUE CREATE INDEX CONCURRENTLY whose build fails on the
// placements of one shard (duplicates there) stops with the placement's error and a hint;
// the coordinator keeps its index, no placement keeps an invalid one (nor the invalid one
// a crashed build left there before); once the duplicates are gone, the same statement
// builds the index on the placements that lack it. Run again it answers 42P07, or with
// IF NOT EXISTS its notice.
func TestDDLConcurrentIndexResume(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("dcicr")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
	for i := 0; i < 40; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d)", table, i, i))
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('dup', 1), ('dup', 1)", table))
	index := table + "_ux"
	// A build of the index that failed on one placement before (a crash would leave it
	// so): an invalid index of the shard's name.
	var dupShard int64
	var dupPort int
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			c := connectServer(t, serverFor(p.port))
			if queryString(t, c, fmt.Sprintf("SELECT count(*)::text FROM %s_%d WHERE k = 'dup'", table, s.id)) == "2" && dupPort == 0 {
				dupShard, dupPort = s.id, p.port
				_, err := c.Exec(ctx, fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY %s_%d ON %s_%d (k, v)", index, s.id, table, s.id))
				if err == nil {
					t.Fatal("the duplicates did not fail the build")
				}
			}
			c.Close(ctx)
		}
	}
	if dupPort == 0 {
		t.Fatal("no placement holds the duplicates")
	}
	w := connectServer(t, serverFor(dupPort))
	if n := queryString(t, w, "SELECT count(*)::text FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid", fmt.Sprintf("%s_%d", index, dupShard)); n != "1" {
		t.Fatalf("invalid index left by the failed build: %s", n)
	}

	stmt := fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY %s ON %s (k, v)", index, table)
	_, err := conn.Exec(ctx, stmt)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" || !strings.Contains(pe.Hint, "Run the same statement again") {
		t.Fatalf("build over duplicates: %v (hint %q)", err, func() string {
			if pe != nil {
				return pe.Hint
			}
			return ""
		}())
	}
	coord := connectServer(t, env.C.Coordinator)
	if v := queryString(t, coord, "SELECT indisvalid::text FROM pg_index WHERE indexrelid = to_regclass($1)", index); v != "true" {
		t.Fatalf("coordinator's index after the failure: %q", v)
	}
	noInvalidIndexes(t, table)
	missing := 0
	for _, l := range placementIndexes(t, table, index) {
		if strings.HasSuffix(l, "=") {
			missing++
		}
	}
	if missing == 0 {
		t.Fatalf("every placement has the index after the failure: %v", placementIndexes(t, table, index))
	}

	// Resumed: the duplicates gone, the same statement completes the placements.
	mustExec(t, conn, fmt.Sprintf("DELETE FROM %s WHERE k = 'dup'", table))
	mustExec(t, conn, stmt)
	wantIndexEverywhere(t, table, index, true)
	noInvalidIndexes(t, table)
	checkDefinitions(t, table, false)
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k1', 1)", table), "23505", "")

	// Complete: 42P07 as PostgreSQL; IF NOT EXISTS skips.
	wantError(t, conn, stmt, "42P07", "")
	mustExec(t, conn, fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (k, v)", index, table))
	// A placement that lost its index (dropped by hand) gets it back from IF NOT EXISTS.
	mustExec(t, w, fmt.Sprintf("DROP INDEX %s_%d", index, dupShard))
	mustExec(t, conn, fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (k, v)", index, table))
	wantIndexEverywhere(t, table, index, true)
	checkDefinitions(t, table, false)
}

// indexFilenodes returns the relfilenodes of every placement's copy of index.
func indexFilenodes(t testing.TB, table, index string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			c := connectServer(t, serverFor(p.port))
			out[fmt.Sprintf("%d@%d", s.id, p.port)] = queryString(t, c, "SELECT relfilenode::text FROM pg_class WHERE oid = to_regclass($1)", fmt.Sprintf("%s_%d", index, s.id))
			c.Close(context.Background())
		}
	}
	return out
}

// TestDDLReindexCluster: REINDEX TABLE/INDEX (CONCURRENTLY too) rebuilds every placement's
// indexes (new relfilenodes), and drops what a failed REINDEX CONCURRENTLY left; CLUSTER
// ... USING clusters every placement on its shard's index; inside a block both commit or
// roll back with it, and REINDEX CONCURRENTLY answers 25001.
func TestDDLReindexCluster(t *testing.T) {
	conn := connect(t)
	table := uniqueName("drix")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
	for i := 0; i < 40; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d)", table, i, i))
	}
	index := table + "_v"
	mustExec(t, conn, fmt.Sprintf("CREATE INDEX %s ON %s (v)", index, table))
	// What a failed REINDEX CONCURRENTLY leaves on a placement: an invalid <index>_ccnew,
	// which the next REINDEX CONCURRENTLY drops.
	sh := shardsOf(t, table)[0]
	w := connectServer(t, serverFor(sh.places[0].port))
	if _, err := w.Exec(context.Background(), fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_%d_ccnew ON %s_%d ((1 / (v - v)))", index, sh.id, table, sh.id)); err == nil {
		t.Fatal("the leftover's build did not fail")
	}
	w.Close(context.Background())
	for _, stmt := range []string{
		"REINDEX TABLE CONCURRENTLY %[1]s",
		"REINDEX TABLE %[1]s",
		"REINDEX INDEX %[1]s_v",
		"REINDEX (VERBOSE) TABLE CONCURRENTLY %[1]s",
		"REINDEX INDEX CONCURRENTLY %[1]s_v",
	} {
		before := indexFilenodes(t, table, index)
		mustExec(t, conn, fmt.Sprintf(stmt, table))
		after := indexFilenodes(t, table, index)
		for k, v := range before {
			if after[k] == v || after[k] == "" {
				t.Fatalf("%s: placement %s's index filenode %s -> %s", stmt, k, v, after[k])
			}
		}
		noInvalidIndexes(t, table)
		checkDefinitions(t, table, false)
	}
	mustExec(t, conn, fmt.Sprintf("CLUSTER %s USING %s", table, index))
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			c := connectServer(t, serverFor(p.port))
			if v := queryString(t, c, "SELECT indisclustered::text FROM pg_index WHERE indexrelid = to_regclass($1)", fmt.Sprintf("%s_%d", index, s.id)); v != "true" {
				t.Fatalf("shard %d on %d not clustered on its index: %s", s.id, p.port, v)
			}
			c.Close(context.Background())
		}
	}
	mustExec(t, conn, fmt.Sprintf("CLUSTER %s", table))
	// In a block: REINDEX and CLUSTER commit or roll back with it; CONCURRENTLY is 25001.
	before := indexFilenodes(t, table, index)
	mustExec(t, conn, "BEGIN", fmt.Sprintf("INSERT INTO %s VALUES ('in-block', 1)", table),
		fmt.Sprintf("REINDEX INDEX %s", index), fmt.Sprintf("CLUSTER %s", table), "ROLLBACK")
	if after := indexFilenodes(t, table, index); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("REINDEX rolled back changed filenodes: %v -> %v", before, after)
	}
	mustExec(t, conn, "BEGIN", fmt.Sprintf("REINDEX TABLE %s", table), fmt.Sprintf("CLUSTER %s USING %s", table, index), "COMMIT")
	after := indexFilenodes(t, table, index)
	for k, v := range before {
		if after[k] == v || after[k] == "" {
			t.Fatalf("REINDEX in a block: placement %s's index filenode %s -> %s", k, v, after[k])
		}
	}
	checkDefinitions(t, table, false)
	mustExec(t, conn, "BEGIN")
	wantErrorNoCheck(t, conn, fmt.Sprintf("REINDEX TABLE CONCURRENTLY %s", table), "25001")
	mustExec(t, conn, "ROLLBACK")
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s WHERE v >= 0", table)); n != "40" {
		t.Fatalf("rows: %s", n)
	}
}

// TestDDLConcurrentIndexWorkerDown: with a worker down, CREATE INDEX CONCURRENTLY stops
// with a connection error and a hint, marks no placement inactive and leaves the index on
// the coordinator; VACUUM skips the worker with a warning. With the worker back, the same
// statement completes the index on every placement.
func TestDDLConcurrentIndexWorkerDown(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("dcicdown")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text, v int)", table), table, "k", 4, 2)
	for i := 0; i < 20; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d)", table, i, i))
	}
	victim := sortedWorkers()[0]
	if err := victim.Crash(); err != nil {
		t.Fatal(err)
	}
	started := false
	defer func() {
		if !started {
			victim.Start(ctx)
		}
	}()
	stmt := fmt.Sprintf("CREATE INDEX CONCURRENTLY %[1]s_v ON %[1]s (v)", table)
	_, err := conn.Exec(ctx, stmt)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "08") || !strings.Contains(pe.Hint, "Run the same statement again") {
		t.Fatalf("CREATE INDEX CONCURRENTLY with a worker down: %v", err)
	}
	mustExec(t, conn, fmt.Sprintf("VACUUM %s", table))
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 {
				t.Fatalf("shard %d: placement on %d is %d", s.id, p.port, p.state)
			}
		}
	}
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started = true
	mustExec(t, conn, stmt)
	wantIndexEverywhere(t, table, table+"_v", true)
	noInvalidIndexes(t, table)
	checkDefinitions(t, table, false)
}

// TestDDLConcurrentIndexCancel: a CREATE INDEX CONCURRENTLY cancelled while a placement's
// build waits leaves that placement an INVALID index and stops with 57014 and the hint;
// the same statement run again drops the invalid index, builds it again and completes
// every placement.
func TestDDLConcurrentIndexCancel(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("dcicc")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
	for i := 0; i < 40; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d)", table, i, i))
	}
	shards := shardsOf(t, table)
	port := shards[0].places[0].port
	blocker := connectServer(t, serverFor(port))
	mustExec(t, blocker, "BEGIN ISOLATION LEVEL REPEATABLE READ", fmt.Sprintf("SELECT count(*) FROM %s_%d", table, shards[0].id))
	stmt := fmt.Sprintf("CREATE INDEX CONCURRENTLY %[1]s_v ON %[1]s (v)", table)
	done := make(chan error, 1)
	c := connect(t)
	go func() {
		_, err := c.Exec(ctx, stmt)
		done <- err
	}()
	watch := connectServer(t, serverFor(port))
	deadline := time.Now().Add(60 * time.Second)
	for queryString(t, watch, "SELECT count(*)::text FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'") == "0" {
		if time.Now().After(deadline) {
			t.Fatal("CREATE INDEX CONCURRENTLY never waited on the worker")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" || !strings.Contains(pe.Hint, "Run the same statement again") {
		t.Fatalf("cancelled CREATE INDEX CONCURRENTLY: %v", err)
	}
	mustExec(t, blocker, "COMMIT")
	if n := queryString(t, watch, "SELECT count(*)::text FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid", fmt.Sprintf("%s_v_%d", table, shards[0].id)); n != "1" {
		t.Fatalf("invalid indexes left by the cancelled build: %s, want 1 (for the retry to rebuild)", n)
	}
	mustExec(t, c, stmt)
	wantIndexEverywhere(t, table, table+"_v", true)
	noInvalidIndexes(t, table)
	checkDefinitions(t, table, false)
}

// TestDDLConcurrentIndexCoordinatorLock: while a transaction holds ROW EXCLUSIVE on the
// coordinator's prototype (as a block that described an INSERT does), CREATE INDEX
// CONCURRENTLY waits for it without queueing ahead of the next ROW EXCLUSIVE request,
// and completes once it ends.
func TestDDLConcurrentIndexCoordinatorLock(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("dcicl")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 2, 1)
	holder := connectServer(t, env.C.Coordinator)
	mustExec(t, holder, "BEGIN", fmt.Sprintf("LOCK TABLE %s IN ROW EXCLUSIVE MODE", table))
	done := make(chan error, 1)
	c := connect(t)
	go func() {
		_, err := c.Exec(ctx, fmt.Sprintf("CREATE INDEX CONCURRENTLY %[1]s_v ON %[1]s (v)", table))
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("CREATE INDEX CONCURRENTLY did not wait for the coordinator's lock: %v", err)
	default:
	}
	// The next writer's lock is not stuck behind the waiting index build.
	next := connectServer(t, env.C.Coordinator)
	mustExec(t, next, "BEGIN", "SET LOCAL lock_timeout = '10s'", fmt.Sprintf("LOCK TABLE %s IN ROW EXCLUSIVE MODE", table), "COMMIT")
	mustExec(t, holder, "COMMIT")
	if err := <-done; err != nil {
		t.Fatalf("CREATE INDEX CONCURRENTLY: %v", err)
	}
	wantIndexEverywhere(t, table, table+"_v", true)
}
