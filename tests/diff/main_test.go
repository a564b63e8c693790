package diff

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// env is the cluster and proxy shared by the tests of this package.
var env struct {
	c *cluster.Cluster
	p *testproxy.Proxy
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() || !cluster.Available() {
		fmt.Println("diff: PostgreSQL server binaries not found (or -short); skipping the differential tests")
		os.Exit(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := cluster.Start(ctx, cluster.Options{Workers: 4})
	if err != nil {
		fmt.Fprintln(os.Stderr, "diff: start cluster:", err)
		os.Exit(1)
	}
	p, err := testproxy.Start(ctx, c.Coordinator.URL("postgres"), testproxy.Options{})
	if err != nil {
		c.Close()
		fmt.Fprintln(os.Stderr, "diff: start proxy:", err)
		os.Exit(1)
	}
	env.c, env.p = c, p
	err = registerWorkers(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "diff: register workers:", err)
		p.Stop()
		c.Close()
		os.Exit(1)
	}
	code := m.Run()
	p.Stop()
	c.Close()
	os.Exit(code)
}

// registerWorkers adds the workers through the proxy, as a user would.
func registerWorkers(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, proxyURL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, w := range env.c.Workers {
		sql := fmt.Sprintf("select master_add_node('%s', %d)", w.Host, w.Port)
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// proxyURL is the proxy's database (postgres).
func proxyURL() string { return env.p.URL() }

// oracleURL is the plain database on the coordinator server holding the same data.
func oracleURL() string { return env.c.Coordinator.URL("oracle") }

// reversedURL is the oracle database with search_path set to the schema holding the same
// rows inserted in reverse order: a query whose result differs there is not deterministic.
func reversedURL() string { return env.c.Coordinator.URL("oracle") + "&search_path=rev" }
