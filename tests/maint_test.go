package tests

import (
	"context"
	"fmt"
	"testing"
)

// placementStats returns, for every finalized placement of table, what column (of
// pg_stat_user_tables) says about its shard table, as "shard@port=value".
func placementStats(t testing.TB, table, column string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 {
				continue
			}
			c := connectServer(t, serverFor(p.port))
			out[fmt.Sprintf("%d@%d", s.id, p.port)] = queryString(t, c, fmt.Sprintf("SELECT coalesce((SELECT %s::text FROM pg_stat_user_tables WHERE relid = to_regclass($1)), '')", column),
				fmt.Sprintf("%s_%d", table, s.id))
			c.Close(context.Background())
		}
	}
	return out
}

// wantStats checks that every placement of table has column set (not empty) and, when
// before is given, changed since.
func wantStats(t testing.TB, what, table, column string, before map[string]string) map[string]string {
	t.Helper()
	after := placementStats(t, table, column)
	for k, v := range after {
		if v == "" || (before != nil && before[k] == v) {
			t.Fatalf("%s: placement %s of %s: %s %q (before %q)", what, k, table, column, v, before[k])
		}
	}
	return after
}

// TestMaintVacuumAnalyze: VACUUM and ANALYZE of distributed tables (with options and column
// lists, several tables, and bare) reach every placement's shard table, as
// pg_stat_user_tables shows; VACUUM refuses a transaction block with 25001 and ANALYZE
// runs in one.
func TestMaintVacuumAnalyze(t *testing.T) {
	conn := connect(t)
	a, b := uniqueName("mvac"), uniqueName("mvac")
	for _, table := range []string{a, b} {
		distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", table), table, "k", 4, 2)
		for i := 0; i < 40; i++ {
			mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('k%d', %d)", table, i, i))
		}
	}
	local := uniqueName("mvac_local")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (x int)", local))

	mustExec(t, conn, fmt.Sprintf("VACUUM %s", a))
	va := wantStats(t, "VACUUM", a, "last_vacuum", nil)
	mustExec(t, conn, fmt.Sprintf("VACUUM (ANALYZE, VERBOSE) %s (v), %s, %s", a, b, local))
	wantStats(t, "VACUUM (ANALYZE)", a, "last_vacuum", va)
	wantStats(t, "VACUUM (ANALYZE)", b, "last_vacuum", nil)
	aa := wantStats(t, "VACUUM (ANALYZE)", a, "last_analyze", nil)
	ab := wantStats(t, "VACUUM (ANALYZE)", b, "last_analyze", nil)
	coord := connectServer(t, env.C.Coordinator)
	if v := queryString(t, coord, "SELECT (last_vacuum IS NOT NULL)::text FROM pg_stat_user_tables WHERE relid = $1::regclass", local); v != "true" {
		t.Fatalf("the coordinator's table was not vacuumed: %s", v)
	}

	mustExec(t, conn, fmt.Sprintf("ANALYZE %s (k, v)", a))
	aa = wantStats(t, "ANALYZE", a, "last_analyze", aa)
	// Bare ANALYZE: every distributed table, even when a shard table is missing on its
	// worker (dropped there by hand: drift, which SHOW DRIFT reports).
	gone := uniqueName("mvac_gone")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", gone), gone, "k", 2, 1)
	for _, s := range shardsOf(t, gone) {
		w := connectServer(t, serverFor(s.places[0].port))
		mustExec(t, w, fmt.Sprintf("DROP TABLE %s_%d", gone, s.id))
		w.Close(context.Background())
		break
	}
	mustExec(t, conn, "ANALYZE")
	aa = wantStats(t, "bare ANALYZE", a, "last_analyze", aa)
	ab = wantStats(t, "bare ANALYZE", b, "last_analyze", ab)
	mustExec(t, conn, "DROP TABLE "+gone)

	// VACUUM cannot run in a block; ANALYZE can (its placements are analyzed at once).
	mustExec(t, conn, "BEGIN")
	wantErrorNoCheck(t, conn, fmt.Sprintf("VACUUM %s", a), "25001")
	mustExec(t, conn, "ROLLBACK", "BEGIN", fmt.Sprintf("ANALYZE %s", b), "COMMIT")
	wantStats(t, "ANALYZE in a block", b, "last_analyze", ab)
	wantError(t, conn, fmt.Sprintf("ANALYZE %s (nosuch)", a), "42703", "")
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", a)); n != "40" {
		t.Fatalf("rows: %s", n)
	}
}
