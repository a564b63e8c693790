// Package tests holds pgshard's end-to-end tests: real PostgreSQL servers (a coordinator
// and workers started by package cluster), real proxies, real clients.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// env is the cluster and proxy shared by the tests of this package.
var env testproxy.Env

func TestMain(m *testing.M) { testproxy.Main(m, "tests", &env, testproxy.Options{BatchRows: 10000}) }

func simpleURL(p *testproxy.Proxy) string {
	return p.URL() + "&default_query_exec_mode=simple_protocol"
}

// connect opens a pgx connection to the shared proxy (simple protocol).
func connect(t testing.TB) *pgx.Conn {
	t.Helper()
	return connectTo(t, env.P)
}

func connectTo(t testing.TB, p *testproxy.Proxy) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, simpleURL(p))
	if err != nil {
		t.Fatalf("connect to proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// connectServer opens a pgx connection straight to a PostgreSQL server.
func connectServer(t testing.TB, s *cluster.Server) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// mustExec runs statements and fails the test on error.
func mustExec(t testing.TB, conn *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		if _, err := conn.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// queryString returns the first column of the first row as text.
func queryString(t testing.TB, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s *string
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return "<NULL>"
	}
	return *s
}

var names atomic.Int64

// uniqueName returns a table name no other test uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, names.Add(1))
}

// psql runs psql against the proxy with the given script and returns its output.
func psql(t testing.TB, p *testproxy.Proxy, script string, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", "postgres", "-d", "postgres"}, extra...)
	cmd := exec.Command("psql", args...)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "PGAPPNAME=psql-test")
	err := cmd.Run()
	return out.String(), err
}

// worker returns the cluster server for a node port.
func serverFor(port int) *cluster.Server {
	for _, w := range env.C.Workers {
		if w.Port == port {
			return w
		}
	}
	return nil
}
