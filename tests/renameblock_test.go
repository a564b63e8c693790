package tests

import (
	"fmt"
	"testing"
)

// TestRenameInBlock: RENAME TO and SET SCHEMA of a distributed table, and ALTER SCHEMA
// ... RENAME TO of its schema, inside a transaction block (psql --single-transaction, a
// migration tool's transaction): the block's later statements use the new names (the
// old ones are gone, 42P01, as in PostgreSQL), a ROLLBACK brings the old names back
// everywhere, a COMMIT makes the new ones everyone's.
func TestRenameInBlock(t *testing.T) {
	conn := connect(t)
	other := connect(t)
	schema := uniqueName("rnb_s")
	table := uniqueName("rnb_t")
	mustExec(t, conn, "CREATE SCHEMA "+schema)
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s.%s (k int PRIMARY KEY, v text)", schema, table), schema+"."+table, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s.%s SELECT g, 'v' || g FROM generate_series(1, 10) g", schema, table))

	// Table rename, rolled back.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER TABLE %s.%s RENAME TO %s_x", schema, table, table),
		fmt.Sprintf("INSERT INTO %s.%s_x VALUES (11, 'v11')", schema, table))
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s.%s_x", schema, table)); got != "11" {
		t.Fatalf("in the block, the renamed table has %s rows", got)
	}
	inBlockError(t, conn, fmt.Sprintf("SELECT count(*) FROM %s.%s", schema, table), "42P01", "")
	mustExec(t, conn, "ROLLBACK")
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*) FROM %s.%s", schema, table)); got != "10" {
		t.Fatalf("after ROLLBACK: %s rows", got)
	}
	checkMigrated(t, []string{schema + "." + table})

	// Schema rename and table rename, committed.
	mustExec(t, conn, "BEGIN",
		fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s_2", schema, schema),
		fmt.Sprintf("ALTER TABLE %s_2.%s RENAME TO %s_2", schema, table, table),
		fmt.Sprintf("UPDATE %s_2.%s_2 SET v = 'new' WHERE k = 3", schema, table))
	if got := queryString(t, conn, fmt.Sprintf("SELECT v FROM %s_2.%s_2 WHERE k = 3", schema, table)); got != "new" {
		t.Fatalf("in the block: %q", got)
	}
	mustExec(t, conn, "COMMIT")
	renamed := fmt.Sprintf("%s_2.%s_2", schema, table)
	checkMigrated(t, []string{renamed})
	for _, c := range []string{"this session", "another session"} {
		cc := conn
		if c != "this session" {
			cc = other
		}
		if got := queryString(t, cc, "SELECT count(*) FROM "+renamed); got != "10" {
			t.Fatalf("%s after COMMIT: %s rows", c, got)
		}
	}
	wantError(t, other, fmt.Sprintf("SELECT count(*) FROM %s.%s", schema, table), "42P01", "")

	// SET SCHEMA in a block.
	mustExec(t, conn, "CREATE SCHEMA "+schema+"_3")
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER TABLE %s SET SCHEMA %s_3", renamed, schema),
		fmt.Sprintf("INSERT INTO %s_3.%s_2 VALUES (12, 'moved')", schema, table), "COMMIT")
	moved := fmt.Sprintf("%s_3.%s_2", schema, table)
	checkMigrated(t, []string{moved})
	if got := queryString(t, other, "SELECT count(*) FROM "+moved); got != "11" {
		t.Fatalf("after SET SCHEMA: %s rows", got)
	}
}
