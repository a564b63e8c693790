package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// Issue 13: ALTER SCHEMA ... RENAME TO and DROP SCHEMA of schemas holding distributed
// tables, through pgshard, compared with what plain PostgreSQL does with the same schema.

// shardTablesIn counts the shard tables of table's placements that exist on their
// workers in schema.
func shardTablesIn(t *testing.T, shards []shardInfo, schema, name string) (found, total int) {
	t.Helper()
	for _, s := range shards {
		for _, p := range s.places {
			total++
			rel := fmt.Sprintf("%s.%s_%d", schema, name, s.id)
			if queryString(t, connectServer(t, serverFor(p.port)), "SELECT (to_regclass($1) IS NOT NULL)::text", rel) == "true" {
				found++
			}
		}
	}
	return found, total
}

func TestDDLSchemaRenameAndDrop(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	s1, s2 := uniqueName("dsch"), uniqueName("dsch_renamed")
	mustExec(t, conn, "CREATE SCHEMA "+s1)
	t.Cleanup(func() {
		c := connect(t)
		c.Exec(ctx, "DROP SCHEMA IF EXISTS "+s1+" CASCADE")
		c.Exec(ctx, "DROP SCHEMA IF EXISTS "+s2+" CASCADE")
	})
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s.orders (id int PRIMARY KEY, v text)", s1), s1+".orders", "id", 4, 2)
	mustExec(t, conn, fmt.Sprintf("CREATE TYPE %s.mood AS ENUM ('sad', 'happy')", s1))
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %[1]s.items (id int, n int, m %[1]s.mood DEFAULT 'happy')", s1), s1+".items", "id", 2, 2)
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s.local (x int)", s1), fmt.Sprintf("INSERT INTO %s.local VALUES (1)", s1))
	for i := 1; i <= 30; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s.orders VALUES (%d, 'v%d')", s1, i, i),
			fmt.Sprintf("INSERT INTO %s.items VALUES (%d, %d)", s1, i, i))
	}
	orders, items := shardsOf(t, s1+".orders"), shardsOf(t, s1+".items")

	// Inside a transaction block, rolled back: nothing changes.
	mustExec(t, conn, "BEGIN", fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s", s1, s2), "ROLLBACK")

	tag, err := conn.Exec(ctx, fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s", s1, s2))
	if err != nil {
		t.Fatalf("ALTER SCHEMA ... RENAME: %v", err)
	}
	if tag.String() != "ALTER SCHEMA" {
		t.Errorf("command tag %q, want ALTER SCHEMA", tag)
	}
	// Plain PostgreSQL: the tables are under the new name only, with their rows.
	wantError(t, conn, fmt.Sprintf("SELECT count(*) FROM %s.orders", s1), "42P01", "")
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s.orders", s2)); n != "30" {
		t.Fatalf("rows of %s.orders after the rename: %s, want 30", s2, n)
	}
	if n := queryString(t, conn, fmt.Sprintf("SELECT sum(n)::text FROM %s.items", s2)); n != "465" {
		t.Fatalf("sum(n) of %s.items after the rename: %s, want 465", s2, n)
	}
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s.local", s2)); n != "1" {
		t.Fatalf("the coordinator table of the renamed schema: %s rows", n)
	}
	for _, c := range []struct {
		name   string
		shards []shardInfo
	}{{"orders", orders}, {"items", items}} {
		if found, total := shardTablesIn(t, c.shards, s2, c.name); found != total {
			t.Fatalf("%d of %d shard tables of %s are in schema %s on their workers", found, total, c.name, s2)
		}
		checkDefinitions(t, s2+"."+c.name, false)
	}
	// Writes go to the shards, under the new name.
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s.orders VALUES (100, 'new')", s2),
		fmt.Sprintf("UPDATE %s.items SET n = n + 1 WHERE id = 1", s2),
		// The enum moved with the schema, on the workers too.
		fmt.Sprintf("INSERT INTO %[1]s.items VALUES (100, 1, 'sad'::%[1]s.mood)", s2))
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s.items WHERE m = 'sad'", s2)); n != "1" {
		t.Fatalf("rows with the renamed schema's enum: %s", n)
	}
	if n := checkPlacements(t, s2+".orders", "hashint4(id)"); n != 31 {
		t.Fatalf("rows on the placements of %s.orders: %d, want 31", s2, n)
	}
	if fin, inact, _ := placementStates(t, s2+".orders"); inact != 0 || fin != 8 {
		t.Fatalf("after the rename: %d finalized, %d inactive placements", fin, inact)
	}
	if rows := showDrift(t, conn, s2+".orders"); len(rows) != 0 {
		t.Fatalf("SHOW DRIFT after the rename: %v", rows)
	}

	// DROP SCHEMA without CASCADE: PostgreSQL's own refusal.
	wantError(t, conn, "DROP SCHEMA "+s2, "2BP01", "")
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s.orders", s2)); n != "31" {
		t.Fatalf("rows after the refused DROP SCHEMA: %s", n)
	}
	// In a block: as DROP TABLE in a block (refused with 25001, or run in the block); a
	// ROLLBACK leaves everything as it was.
	mustExec(t, conn, "BEGIN")
	if _, err := conn.Exec(ctx, "DROP SCHEMA "+s2+" CASCADE"); err != nil && !strings.Contains(err.Error(), "25001") {
		t.Fatalf("DROP SCHEMA ... CASCADE in a block: %v", err)
	}
	mustExec(t, conn, "ROLLBACK")
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s.orders", s2)); n != "31" {
		t.Fatalf("rows after a rolled back DROP SCHEMA: %s", n)
	}
	if found, total := shardTablesIn(t, orders, s2, "orders"); found != total {
		t.Fatalf("after a rolled back DROP SCHEMA, %d of %d shard tables are there", found, total)
	}

	tag, err = conn.Exec(ctx, "DROP SCHEMA "+s2+" CASCADE")
	if err != nil {
		t.Fatalf("DROP SCHEMA ... CASCADE: %v", err)
	}
	if tag.String() != "DROP SCHEMA" {
		t.Errorf("command tag %q, want DROP SCHEMA", tag)
	}
	coord := connectServer(t, env.C.Coordinator)
	if n := queryString(t, coord, "SELECT count(*)::text FROM pg_namespace WHERE nspname = $1", s2); n != "0" {
		t.Fatalf("schema %s still on the coordinator", s2)
	}
	for _, c := range []struct {
		name   string
		shards []shardInfo
	}{{"orders", orders}, {"items", items}} {
		if found, _ := shardTablesIn(t, c.shards, s2, c.name); found != 0 {
			t.Fatalf("%d shard tables of %s left on the workers", found, c.name)
		}
		for _, s := range c.shards {
			if n := queryString(t, coord, "SELECT count(*)::text FROM pgs_distribution_metadata.shard WHERE id = $1", s.id); n != "0" {
				t.Fatalf("metadata of shard %d left behind", s.id)
			}
		}
	}
	wantError(t, conn, fmt.Sprintf("SELECT count(*) FROM %s.orders", s2), "42P01", "")
	// The proxy still serves a table of the same name created afterwards.
	mustExec(t, conn, "CREATE SCHEMA "+s2, fmt.Sprintf("CREATE TABLE %s.orders (id int)", s2), fmt.Sprintf("INSERT INTO %s.orders VALUES (1)", s2))
	if n := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s.orders", s2)); n != "1" {
		t.Fatalf("a coordinator table named like the dropped one: %s rows", n)
	}
}

// TestDDLSchemaRenameUnrelated: renaming a schema that holds no distributed table is the
// coordinator's business, in a block too.
func TestDDLSchemaRenameUnrelated(t *testing.T) {
	conn := connect(t)
	s1, s2 := uniqueName("dsch_plain"), uniqueName("dsch_plain2")
	mustExec(t, conn, "CREATE SCHEMA "+s1, fmt.Sprintf("CREATE TABLE %s.t (x int)", s1),
		"BEGIN", fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s", s1, s2), "COMMIT",
		fmt.Sprintf("INSERT INTO %s.t VALUES (1)", s2), "DROP SCHEMA "+s2+" CASCADE")
}

// TestDDLSchemaRenameWorkerDown: a worker down during ALTER SCHEMA ... RENAME has its
// placements marked inactive while the rename commits everywhere else; REPAIR SHARD
// recreates them in the renamed schema (the old schema's shard tables stay on that
// worker, orphaned).
func TestDDLSchemaRenameWorkerDown(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	s1, s2 := uniqueName("dschd"), uniqueName("dschd_renamed")
	mustExec(t, conn, "CREATE SCHEMA "+s1)
	t.Cleanup(func() {
		c := connect(t)
		c.Exec(ctx, "DROP SCHEMA IF EXISTS "+s1+" CASCADE")
		c.Exec(ctx, "DROP SCHEMA IF EXISTS "+s2+" CASCADE")
	})
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s.readings (k text, v int)", s1), s1+".readings", "k", 4, 2)
	for i := 0; i < 20; i++ {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s.readings VALUES ('k%d', %d)", s1, i, i))
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
	mustExec(t, conn, fmt.Sprintf("ALTER SCHEMA %s RENAME TO %s", s1, s2))
	table := s2 + ".readings"
	inactive := 0
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.port == victim.Port && p.state != 1 {
				inactive++
			}
			if p.port != victim.Port && p.state != 1 {
				t.Fatalf("shard %d: placement on %d is %d", s.id, p.port, p.state)
			}
		}
	}
	if inactive == 0 {
		t.Fatalf("no placement on the stopped worker was marked inactive")
	}
	if s := queryString(t, conn, fmt.Sprintf("SELECT sum(v)::text FROM %s", table)); s != "190" {
		t.Fatalf("sum(v) with a worker down: %s", s)
	}
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started = true
	for _, s := range shardsOf(t, table) {
		for _, p := range s.places {
			if p.state != 1 {
				if _, err := conn.Exec(ctx, fmt.Sprintf("REPAIR SHARD %d", s.id)); err != nil {
					t.Fatalf("REPAIR SHARD %d: %v", s.id, err)
				}
				break
			}
		}
	}
	if fin, inact, _ := placementStates(t, table); inact != 0 || fin != 8 {
		t.Fatalf("after the repairs: %d finalized, %d inactive placements", fin, inact)
	}
	checkDefinitions(t, table, true)
	if total := checkPlacements(t, table, "hashtext(k)"); total != 20 {
		t.Fatalf("rows after repair: %d", total)
	}
}
