package testproxy

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
)

// StartCluster starts a coordinator and workers, a proxy in front of them, and registers
// the workers through the proxy with master_add_node, as a user would. The caller stops
// the proxy and closes the cluster.
func StartCluster(ctx context.Context, copts cluster.Options, opts Options) (*cluster.Cluster, *Proxy, error) {
	c, err := cluster.Start(ctx, copts)
	if err != nil {
		return nil, nil, fmt.Errorf("start cluster: %w", err)
	}
	p, err := Start(ctx, c.Coordinator.URL("postgres"), opts)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("start proxy: %w", err)
	}
	var addrs [][2]any
	for _, w := range c.Workers {
		addrs = append(addrs, [2]any{w.Host, w.Port})
	}
	if err := p.AddNodes(ctx, addrs); err != nil {
		p.Stop()
		c.Close()
		return nil, nil, err
	}
	return c, p, nil
}

// AddNodes registers workers (host, port) through the proxy.
func (p *Proxy) AddNodes(ctx context.Context, nodes [][2]any) error {
	conn, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, n := range nodes {
		sql := fmt.Sprintf("select master_add_node('%v', %v)", n[0], n[1])
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// Env is a cluster and a proxy in front of it, shared by the tests of a package.
type Env struct {
	C *cluster.Cluster
	P *Proxy
}

// Main runs a package's tests with env holding a coordinator, four workers and a proxy
// started for them, and stops them afterwards; it does not return. Without PostgreSQL's
// server binaries (or with -short) it skips the package with a message. name prefixes
// the messages.
func Main(m *testing.M, name string, env *Env, opts Options) {
	flag.Parse()
	if testing.Short() || !cluster.Available() {
		fmt.Printf("%s: PostgreSQL server binaries not found (or -short); skipping\n", name)
		os.Exit(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, p, err := StartCluster(ctx, cluster.Options{Workers: 4}, opts)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
	env.C, env.P = c, p
	code := m.Run()
	p.Stop()
	c.Close()
	os.Exit(code)
}
