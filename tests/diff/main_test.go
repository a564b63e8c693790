package diff

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

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
	c, p, err := testproxy.StartCluster(ctx, cluster.Options{Workers: 4}, testproxy.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "diff:", err)
		os.Exit(1)
	}
	env.c, env.p = c, p
	code := m.Run()
	p.Stop()
	c.Close()
	os.Exit(code)
}

// proxyURL is the proxy's database (postgres).
func proxyURL() string { return env.p.URL() }

// oracleURL is the plain database on the coordinator server holding the same data.
func oracleURL() string { return env.c.Coordinator.URL("oracle") }

// reversedURL is the oracle database with search_path set to the schema holding the same
// rows inserted in reverse order: a query whose result differs there is not deterministic.
func reversedURL() string { return env.c.Coordinator.URL("oracle") + "&search_path=rev" }
