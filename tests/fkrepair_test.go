package tests

import (
	"context"
	"fmt"
	"regexp"
	"testing"
)

// repairPlacement marks placement p of shard sh inactive on the coordinator, waits until
// the proxy sees it, and repairs the shard with REPAIR SHARD.
func repairPlacement(t *testing.T, sh shardInfo, p placementInfo) {
	t.Helper()
	mustExec(t, connectServer(t, env.C.Coordinator), fmt.Sprintf(
		"UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3 WHERE id = %d", p.id))
	awaitProxySeesInactive(t, p.id)
	if _, err := connect(t).Exec(context.Background(), fmt.Sprintf("REPAIR SHARD %d", sh.id)); err != nil {
		t.Fatalf("REPAIR SHARD %d: %v", sh.id, err)
	}
}

// TestForeignKeyRepair: a repair recreates the foreign keys between co-located
// distributed tables on the target worker, of both sides: the repaired shard's own (to
// the referenced table's shard of the same index) and those of the shards there that
// refer to the repaired one (its DROP cascades to them). After each repair every
// placement's definition, foreign keys included, equals the coordinator's, and the
// constraint acts on the repaired placement.
func TestForeignKeyRepair(t *testing.T) {
	conn := connect(t)
	cust, ord := uniqueName("fkr_cust"), uniqueName("fkr_ord")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, name text)", cust), cust, "id", 4, 2)
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (cid bigint, id bigint, PRIMARY KEY (cid, id))", ord), ord, "cid", 4, 2)
	mustExec(t, conn,
		fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s_fk FOREIGN KEY (cid) REFERENCES %s (id) ON DELETE CASCADE", ord, ord, cust),
		fmt.Sprintf("INSERT INTO %s SELECT g, 'c' || g FROM generate_series(1, 20) g", cust),
		fmt.Sprintf("INSERT INTO %s SELECT g %% 20 + 1, g FROM generate_series(1, 60) g", ord))
	both := []string{"public." + cust, "public." + ord}
	checkMigrated(t, both)

	fkCount := func(port int, rel string) string {
		return queryString(t, connectServer(t, serverFor(port)), "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = $1::regclass", rel)
	}
	// The referencing side: its own foreign key comes back.
	osh := shardsOf(t, ord)[1]
	repairPlacement(t, osh, osh.places[0])
	checkMigrated(t, both)
	if n := fkCount(osh.places[0].port, fmt.Sprintf("%s_%d", ord, osh.id)); n != "1" {
		t.Fatalf("repaired referencing shard has %s foreign keys", n)
	}

	// The referenced side: the repair's drop cascades to the referencing shard on the
	// worker, whose constraint is added again.
	csh := shardsOf(t, cust)[1]
	repairPlacement(t, csh, csh.places[0])
	checkMigrated(t, both)
	if n := fkCount(csh.places[0].port, fmt.Sprintf("%s_%d", ord, osh.id)); n != "1" {
		t.Fatalf("the referencing shard on the repaired worker has %s foreign keys", n)
	}
	if got := queryString(t, conn, "SELECT count(*) FROM "+ord); got != "60" {
		t.Fatalf("%s rows after the repairs", got)
	}
	// The constraint acts everywhere: cascades and refusals are the same on every placement.
	mustExec(t, conn, fmt.Sprintf("DELETE FROM %s WHERE id <= 10", cust))
	if got := queryString(t, conn, "SELECT count(*) FROM "+ord); got != "30" {
		t.Fatalf("%s rows after the cascade", got)
	}
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (5, 1000)", ord), "23503", "")
	for _, tbl := range []string{cust, ord} {
		for _, s := range shardsOf(t, tbl) {
			var counts []string
			for _, p := range s.places {
				counts = append(counts, queryString(t, connectServer(t, serverFor(p.port)), fmt.Sprintf("SELECT count(*) FROM %s_%d", tbl, s.id)))
			}
			if len(counts) == 2 && counts[0] != counts[1] {
				t.Fatalf("%s shard %d: placements hold %v rows", tbl, s.id, counts)
			}
		}
	}
	for _, tbl := range []string{cust, ord} {
		rows, err := conn.Query(context.Background(), "SHOW DRIFT "+tbl)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals, _ := rows.Values()
			t.Errorf("SHOW DRIFT: %v", vals)
		}
		rows.Close()
	}

	// A placement of the referencing table whose foreign key is gone is drift.
	victim := osh.places[1]
	mustExec(t, connectServer(t, serverFor(victim.port)), fmt.Sprintf("ALTER TABLE %s_%d DROP CONSTRAINT %s_fk", ord, osh.id, ord))
	rows, err := conn.Query(context.Background(), "SHOW DRIFT "+ord)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for rows.Next() {
		vals, _ := rows.Values()
		found = found || regexp.MustCompile(`foreign key`).MatchString(fmt.Sprint(vals...))
	}
	rows.Close()
	if !found {
		t.Fatal("SHOW DRIFT does not report a placement that lost its foreign key")
	}
}

// TestDropTablesWithForeignKey: DROP TABLE naming a referenced table before the table
// that refers to it drops both, as in PostgreSQL (the shard tables of both go in one
// statement on each worker), outside and inside a block.
func TestDropTablesWithForeignKey(t *testing.T) {
	conn := connect(t)
	for _, block := range []bool{false, true} {
		ref, child := uniqueName("fkd_ref"), uniqueName("fkd_child")
		distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY)", ref), ref, "id", 2, 2)
		distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (rid bigint, id int)", child), child, "rid", 2, 2)
		mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s ADD FOREIGN KEY (rid) REFERENCES %s (id)", child, ref),
			fmt.Sprintf("INSERT INTO %s VALUES (1), (2)", ref), fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", child))
		drop := fmt.Sprintf("DROP TABLE %s, %s", ref, child)
		if block {
			mustExec(t, conn, "BEGIN", drop, "COMMIT")
		} else {
			mustExec(t, conn, drop)
		}
		if n := shardTablesLeft(t, ref) + shardTablesLeft(t, child); n != 0 {
			t.Fatalf("block %v: %d shard tables left", block, n)
		}
	}
}

// TestTruncateWithForeignKey: TRUNCATE of a referenced distributed table together with
// the table that refers to it, or with CASCADE, empties both on every placement, as in
// PostgreSQL; alone and without CASCADE, PostgreSQL's 0A000 from the coordinator.
func TestTruncateWithForeignKey(t *testing.T) {
	conn := connect(t)
	ref, child := uniqueName("fkt_ref"), uniqueName("fkt_child")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY)", ref), ref, "id", 2, 2)
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (rid bigint, id int)", child), child, "rid", 2, 2)
	fill := func() {
		mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g FROM generate_series(1, 10) g", ref),
			fmt.Sprintf("INSERT INTO %s SELECT g, g FROM generate_series(1, 10) g", child))
	}
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s ADD FOREIGN KEY (rid) REFERENCES %s (id)", child, ref))
	fill()
	wantError(t, conn, "TRUNCATE "+ref, "0A000", "")
	for _, sql := range []string{
		fmt.Sprintf("TRUNCATE %s, %s", ref, child),
		fmt.Sprintf("TRUNCATE %s CASCADE", ref),
	} {
		mustExec(t, conn, sql)
		for _, tbl := range []string{ref, child} {
			for _, s := range shardsOf(t, tbl) {
				for _, p := range s.places {
					if n := queryString(t, connectServer(t, serverFor(p.port)), fmt.Sprintf("SELECT count(*) FROM %s_%d", tbl, s.id)); n != "0" {
						t.Fatalf("%s: %s rows left in %s_%d on port %d", sql, n, tbl, s.id, p.port)
					}
				}
			}
		}
		fill()
	}
	mustExec(t, conn, "BEGIN", fmt.Sprintf("TRUNCATE %s CASCADE", ref), "ROLLBACK")
	if n := queryString(t, conn, "SELECT count(*) FROM "+child); n != "10" {
		t.Fatalf("after a rolled-back TRUNCATE: %s rows", n)
	}
}

// TestDropReferencedTable: DROP TABLE of a distributed table that another one's foreign
// key refers to gets PostgreSQL's 2BP01, and DROP TABLE ... CASCADE pgshard's clear 0A000
// (it would drop the other table's constraint too); both leave everything as it was.
func TestDropReferencedTable(t *testing.T) {
	conn := connect(t)
	ref, child := uniqueName("fkc_ref"), uniqueName("fkc_child")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY)", ref), ref, "id", 2, 2)
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (rid bigint, id int)", child), child, "rid", 2, 2)
	mustExec(t, conn, fmt.Sprintf("ALTER TABLE %s ADD FOREIGN KEY (rid) REFERENCES %s (id)", child, ref),
		fmt.Sprintf("INSERT INTO %s VALUES (1), (2)", ref), fmt.Sprintf("INSERT INTO %s VALUES (1, 1), (2, 2)", child))
	wantError(t, conn, "DROP TABLE "+ref, "2BP01", "")
	wantError(t, conn, fmt.Sprintf("DROP TABLE %s CASCADE", ref), "0A000", "")
	checkMigrated(t, []string{"public." + ref, "public." + child})
	if n := shardTablesLeft(t, ref); n != 4 {
		t.Fatalf("%d shard tables of the referenced table, want 4", n)
	}
}
