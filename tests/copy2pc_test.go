package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// COPY into replicated distributed tables commits atomically (proxy/copycommit.go):
// outside a transaction block with two-phase commit over its placement streams, inside
// one as part of the block's two-phase commit (no temporary staging table).
// tests/faults/copy2pc_test.go kills the proxy between the steps.

// recordWatch counts the commit records written on the coordinator from now on (a
// trigger on the records' table logs each), whatever recovery deletes meanwhile.
func recordWatch(t *testing.T) func() int {
	t.Helper()
	coord := connectServer(t, env.C.Coordinator)
	log := uniqueName("copy2pc_log")
	fn := uniqueName("copy2pc_fn")
	trg := uniqueName("copy2pc_trg")
	mustExec(t, coord, fmt.Sprintf("CREATE TABLE public.%s (gid text)", log),
		fmt.Sprintf("GRANT INSERT ON public.%s TO PUBLIC", log),
		fmt.Sprintf(`CREATE FUNCTION public.%s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
			BEGIN INSERT INTO public.%s VALUES (NEW.gid); RETURN NEW; END $$`, fn, log),
		fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT ON pgs_distribution_metadata.transaction FOR EACH ROW EXECUTE FUNCTION public.%s()", trg, fn))
	t.Cleanup(func() {
		c := connectServer(t, env.C.Coordinator)
		mustExec(t, c, fmt.Sprintf("DROP TRIGGER %s ON pgs_distribution_metadata.transaction", trg),
			fmt.Sprintf("DROP FUNCTION public.%s()", fn), fmt.Sprintf("DROP TABLE public.%s", log))
	})
	return func() int {
		var n int
		if err := coord.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM public.%s", log)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// copy2pcRows is COPY text data for rows k = lo..hi, v = k.
func copy2pcRows(lo, hi int) string {
	var b strings.Builder
	for k := lo; k <= hi; k++ {
		fmt.Fprintf(&b, "%d\t%d\n", k, k)
	}
	return b.String()
}

// TestCopyTwoPhaseOutsideBlock: a COPY over several shards (two placements each) commits
// with two-phase commit: a decision is recorded, every placement agrees, nothing is
// left prepared.
func TestCopyTwoPhaseOutsideBlock(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	records := recordWatch(t)
	tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(copy2pcRows(1, 500)), fmt.Sprintf("COPY %s (k, v) FROM STDIN", tbl))
	if err != nil || tag.RowsAffected() != 500 {
		t.Fatalf("COPY: %v %v", tag, err)
	}
	if n := records(); n < 2 {
		t.Fatalf("%d commit records written, want one per placement stream", n)
	}
	if n := placementsAgree(t, tbl); n != 500 {
		t.Fatalf("%d rows, want 500", n)
	}
	if n := preparedOnWorkers(t); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
}

// TestCopyTwoPhaseInBlock: COPY in a block, an UPDATE, COMMIT: the block commits with
// two-phase commit (no temporary table keeps it from PREPARE), atomically.
func TestCopyTwoPhaseInBlock(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	records := recordWatch(t)
	mustExec(t, conn, "BEGIN")
	tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(copy2pcRows(1, 300)), fmt.Sprintf("COPY %s (k, v) FROM STDIN", tbl))
	if err != nil || tag.RowsAffected() != 300 {
		t.Fatalf("COPY: %v %v", tag, err)
	}
	// The block sees its rows.
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s", tbl)); n != "300" {
		t.Fatalf("%s rows in the block", n)
	}
	mustExec(t, conn, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE k <= 10", tbl), "COMMIT")
	if n := records(); n < 2 {
		t.Fatalf("%d commit records written: the block did not commit in two phases", n)
	}
	if n := placementsAgree(t, tbl); n != 300 {
		t.Fatalf("%d rows, want 300", n)
	}
	if v := queryString(t, conn, fmt.Sprintf("SELECT sum(v)::text FROM %s", tbl)); v != fmt.Sprint(300*301/2+10*1000) {
		t.Fatalf("sum(v) = %s", v)
	}
	// ROLLBACK leaves nothing of a COPY in a block.
	mustExec(t, conn, "BEGIN")
	if _, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(copy2pcRows(1001, 1100)), fmt.Sprintf("COPY %s (k, v) FROM STDIN", tbl)); err != nil {
		t.Fatal(err)
	}
	mustExec(t, conn, "ROLLBACK")
	if n := placementsAgree(t, tbl); n != 300 {
		t.Fatalf("%d rows after ROLLBACK, want 300", n)
	}
	if n := preparedOnWorkers(t); n != 0 {
		t.Fatalf("%d prepared transactions left", n)
	}
}

// TestCopyInBlockBadRow: a bad value in a COPY in a block fails as on PostgreSQL (22P02,
// CONTEXT naming the table and the client's line), the block is aborted, and nothing is
// stored.
func TestCopyInBlockBadRow(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	plain := connectServer(t, env.C.Coordinator)
	// The same table on a plain server (the coordinator, in a schema of its own).
	schema := uniqueName("copy2pc_plain")
	mustExec(t, plain, "CREATE SCHEMA "+schema, fmt.Sprintf("CREATE TABLE %s.%s (k int NOT NULL, v int NOT NULL)", schema, tbl),
		"SET search_path = "+schema)
	defer mustExec(t, plain, "DROP SCHEMA "+schema+" CASCADE")
	data := copy2pcRows(1, 40) + "41\tnot a number\n" + copy2pcRows(42, 80)
	run := func(c *pgx.Conn) *pgconn.PgError {
		mustExec(t, c, "BEGIN")
		_, err := c.PgConn().CopyFrom(ctx, strings.NewReader(data), fmt.Sprintf("COPY %s (k, v) FROM STDIN", tbl))
		var pe *pgconn.PgError
		if !asPg(err, &pe) {
			t.Fatalf("COPY: %v", err)
		}
		if _, err := c.Exec(ctx, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "25P02") {
			t.Errorf("after the failed COPY: %v, want 25P02", err)
		}
		mustExec(t, c, "ROLLBACK")
		return pe
	}
	want, got := run(plain), run(conn)
	if got.Code != want.Code || got.Message != want.Message || got.Where != want.Where {
		t.Errorf("pgshard: %s %q (%q); PostgreSQL: %s %q (%q)", got.Code, got.Message, got.Where, want.Code, want.Message, want.Where)
	}
	if n := placementsAgree(t, tbl); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}

// TestCopyInBlockLarge: 200,000 rows in a block go through the session's spool and
// commit on every placement.
func TestCopyInBlockLarge(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	tbl := tpTable(t, conn, "")
	mustExec(t, conn, "BEGIN")
	tag, err := conn.PgConn().CopyFrom(ctx, strings.NewReader(copy2pcRows(1, 200000)), fmt.Sprintf("COPY %s (k, v) FROM STDIN", tbl))
	if err != nil || tag.RowsAffected() != 200000 {
		t.Fatalf("COPY: %v %v", tag, err)
	}
	mustExec(t, conn, "COMMIT")
	if n := placementsAgree(t, tbl); n != 200000 {
		t.Fatalf("%d rows, want 200000", n)
	}
}
