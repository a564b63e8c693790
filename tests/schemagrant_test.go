package tests

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestSchemaGrantPropagation: GRANT and REVOKE on a schema that holds a distributed table
// reach the workers, where the shard tables live in the same schema; a schema created on
// a worker for a shard gets the coordinator's schema privileges.
func TestSchemaGrantPropagation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	owner := connect(t)
	role := unprivilegedRole(t, "sg_role")
	early := unprivilegedRole(t, "sg_early")
	schema := uniqueName("sg_schema")
	table := schema + ".sg_t"
	// A grant made before the table is distributed reaches the schema the shards'
	// creation makes on the workers.
	mustExec(t, owner, "CREATE SCHEMA "+schema, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", schema, early))
	distribute(t, owner, "CREATE TABLE "+table+" (k int PRIMARY KEY, v text)", table, "k", 4, 2)
	mustExec(t, owner, "INSERT INTO "+table+" SELECT g, 'v' || g FROM generate_series(1, 10) g",
		fmt.Sprintf("GRANT SELECT ON %s TO %s, %s", table, role, early))

	earlyConn := connectAs(t, env.P, early)
	if n := queryString(t, earlyConn, "SELECT count(*) FROM "+table); n != "10" {
		t.Fatalf("role granted USAGE before distribution reads %s rows, want 10", n)
	}

	roleConn := connectAs(t, env.P, role)
	wantError(t, roleConn, "SELECT count(*) FROM "+table, "42501", "permission denied for schema "+schema)
	mustExec(t, owner, fmt.Sprintf("GRANT USAGE ON SCHEMA %s, public TO %s", schema, role))
	if n := queryString(t, roleConn, "SELECT count(*) FROM "+table); n != "10" {
		t.Fatalf("after GRANT USAGE ON SCHEMA: %s rows, want 10", n)
	}
	if v := queryString(t, roleConn, "SELECT v FROM "+table+" WHERE k = 3"); v != "v3" {
		t.Fatalf("single-shard read after GRANT USAGE ON SCHEMA: %q", v)
	}

	// In a block that rolls back, the grant is undone everywhere.
	mustExec(t, owner, "BEGIN", fmt.Sprintf("REVOKE USAGE ON SCHEMA %s FROM %s", schema, role), "ROLLBACK")
	if v := queryString(t, roleConn, "SELECT v FROM "+table+" WHERE k = 4"); v != "v4" {
		t.Fatalf("after a rolled-back REVOKE: %q", v)
	}

	mustExec(t, owner, fmt.Sprintf("REVOKE USAGE ON SCHEMA %s FROM %s", schema, role))
	wantError(t, roleConn, "SELECT v FROM "+table+" WHERE k = 3", "42501", "permission denied for schema "+schema)
	for _, w := range env.C.Workers {
		c := connectServer(t, w)
		var has bool
		if err := c.QueryRow(ctx, "SELECT has_schema_privilege($1, $2, 'USAGE')", role, schema).Scan(&has); err != nil {
			t.Fatal(err)
		}
		if has {
			t.Errorf("worker %s: %s still has USAGE on %s after REVOKE", w.Name, role, schema)
		}
		if err := c.QueryRow(ctx, "SELECT has_schema_privilege($1, $2, 'USAGE')", early, schema).Scan(&has); err != nil {
			t.Fatal(err)
		}
		if !has {
			t.Errorf("worker %s: %s lacks USAGE on %s granted before distribution", w.Name, early, schema)
		}
	}
}

// TestOwnFunctionsNotTableUsers: a table named like an alias in pgshard's own functions
// ("t") is not taken for one they refer to (which once refused its distribution: those
// functions are never a table's users). Other tests' functions may name "t", so only
// pgshard's own are looked for.
func TestOwnFunctionsNotTableUsers(t *testing.T) {
	conn := connect(t)
	schema := uniqueName("own_fn")
	mustExec(t, conn, "CREATE SCHEMA "+schema, fmt.Sprintf("CREATE TABLE %s.t (k int)", schema))
	got := queryString(t, connectServer(t, env.C.Coordinator), fmt.Sprintf(
		"SELECT count(*) FROM pgs_distribution_metadata.prototype_users('%s.t'::regclass) u WHERE u LIKE '%%pgs\\_%%'", schema))
	if got != "0" {
		t.Fatalf("%s of pgshard's own functions are taken for users of a table named t", got)
	}
}
