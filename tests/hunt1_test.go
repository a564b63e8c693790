package tests

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// hunt1Pair makes a distributed table and a plain coordinator table of the same
// definition, for comparing pgshard with PostgreSQL.
func hunt1Pair(t *testing.T, conn *pgx.Conn, prefix string) (dist, plain string) {
	t.Helper()
	dist, plain = uniqueName(prefix), uniqueName(prefix+"_plain")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", dist), dist, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k text NOT NULL, v int)", plain))
	return dist, plain
}

// hunt1Same checks that the distributed table has the plain table's columns, every
// placement matches the coordinator's table, and SHOW DRIFT is empty.
func hunt1Same(t *testing.T, conn *pgx.Conn, dist, plain string) {
	t.Helper()
	if got, want := coordColumns(t, dist), coordColumns(t, plain); got != want {
		t.Errorf("%s has columns %s, the plain PostgreSQL table %s", dist, got, want)
	}
	checkMigrated(t, []string{"public." + dist})
	if d := showDrift(t, conn, dist); len(d) != 0 {
		t.Errorf("SHOW DRIFT %s: %v", dist, d)
	}
}

// TestHunt1MultiStatementDDLAtomic: a multi-statement query string is one implicit
// transaction in PostgreSQL (psql -c, many migration tools send a whole file as one
// string): when its second statement fails, the first one's schema change is undone.
// pgshard ran a schema change of a distributed table in such a string on its own and
// kept it after the string failed.
func TestHunt1MultiStatementDDLAtomic(t *testing.T) {
	conn := connect(t)
	dist, plain := hunt1Pair(t, conn, "h1ms")
	for _, tbl := range []string{dist, plain} {
		wantError(t, conn, fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN z int; ALTER TABLE %[1]s ADD COLUMN z int", tbl), "42701", "")
		wantError(t, conn, fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN y int; CREATE INDEX ON %[1]s (y); INSERT INTO %[1]s (k, nosuch) VALUES ('a', 1)", tbl), "42703", "")
	}
	hunt1Same(t, conn, dist, plain)
	// A string that succeeds applies everywhere, and the session plans with the new
	// definition afterwards.
	for _, tbl := range []string{dist, plain} {
		mustExec(t, conn, fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN w int DEFAULT 7; INSERT INTO %[1]s (k, w) VALUES ('b', 8); CREATE INDEX ON %[1]s (w)", tbl))
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('c', 1, 9)", tbl))
		if s := queryString(t, conn, fmt.Sprintf("SELECT string_agg(k || w, ',' ORDER BY k) FROM %s", tbl)); s != "b8,c9" {
			t.Errorf("%s: %s, want b8,c9", tbl, s)
		}
	}
	hunt1Same(t, conn, dist, plain)
}

// TestHunt1PipelineDDLAtomic: statements of an extended-protocol pipeline up to its
// Sync are one implicit transaction (pgx batches): a failure undoes the schema change
// that came before it.
func TestHunt1PipelineDDLAtomic(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	ext, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close(ctx)
	dist, plain := hunt1Pair(t, conn, "h1pl")
	for _, tbl := range []string{dist, plain} {
		b := &pgx.Batch{}
		b.Queue(fmt.Sprintf("ALTER TABLE %s ADD COLUMN z int", tbl))
		b.Queue(fmt.Sprintf("INSERT INTO %s (k, v) VALUES ('a', 1)", tbl))
		b.Queue(fmt.Sprintf("ALTER TABLE %s ADD COLUMN z int", tbl))
		if err := ext.SendBatch(ctx, b).Close(); pgErrorOf(err) == nil || pgErrorOf(err).Code != "42701" {
			t.Errorf("batch on %s: got %v, want 42701", tbl, err)
		}
	}
	hunt1Same(t, conn, dist, plain)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+dist).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows after the failed batch: %d, %v (want 0)", n, err)
	}
}
