package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// unprivilegedRole creates, on the coordinator and on every worker, a LOGIN role with a
// unique name starting with prefix that may create objects in schema public and nothing
// more: the hostile ordinary user of the security tests. Extra statements (with %[1]s for
// the role's name) run on every server after the role exists.
func unprivilegedRole(t testing.TB, prefix string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	role := uniqueName(prefix)
	sqls := []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN", role),
		fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", role),
	}
	for _, e := range extra {
		sqls = append(sqls, fmt.Sprintf(e, role))
	}
	for _, s := range env.C.Servers() {
		for _, sql := range sqls {
			if _, err := s.Exec(ctx, "postgres", sql); err != nil {
				t.Fatalf("%s on %s: %v", sql, s.Name, err)
			}
		}
	}
	return role
}

// connectAs opens a simple-protocol pgx connection to proxy p as role (trust
// authentication, as the test servers are set up).
func connectAs(t testing.TB, p *testproxy.Proxy, role string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", role, p.Addr))
	if err != nil {
		t.Fatalf("connect to proxy as %s: %v", role, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
