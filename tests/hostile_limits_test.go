package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// The proxy's client limits, with PgBouncer's names: max_client_conn,
// client_login_timeout and client_idle_timeout. Each test starts a proxy of its own with
// small limits against the shared cluster.

func startLimitedProxy(t *testing.T, opts testproxy.Options) *testproxy.Proxy {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := testproxy.Start(ctx, env.C.Coordinator.URL("postgres"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// silentConn opens a TCP connection to the proxy that sends nothing.
func silentConn(t *testing.T, p *testproxy.Proxy) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// waitClosed reports whether the proxy closes nc within d (it reads until EOF).
func waitClosed(nc net.Conn, d time.Duration) bool {
	nc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// TestHostileLimitsLoginTimeout: connections that send nothing, or only part of a
// startup packet, are dropped after client_login_timeout.
func TestHostileLimitsLoginTimeout(t *testing.T) {
	p := startLimitedProxy(t, testproxy.Options{ClientLoginTimeout: time.Second})
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		conns = append(conns, silentConn(t, p))
	}
	// Half a startup packet: a length that promises more than is sent.
	partial := silentConn(t, p)
	if _, err := partial.Write([]byte{0, 0, 0, 40, 0, 3, 0, 0}); err != nil {
		t.Fatal(err)
	}
	conns = append(conns, partial)
	start := time.Now()
	for i, nc := range conns {
		if !waitClosed(nc, 5*time.Second-time.Since(start)) {
			t.Fatalf("silent connection %d still open %s after it was opened (client_login_timeout 1s)", i, time.Since(start).Round(time.Millisecond))
		}
	}
	// A client that logs in in time is served.
	conn := connectTo(t, p)
	if s := queryString(t, conn, "select 'served'"); s != "served" {
		t.Errorf("got %q", s)
	}
}

// TestHostileLimitsMaxClientConn: with max_client_conn clients connected, one more is
// refused with PostgreSQL's "sorry, too many clients already" while the others are
// served; connections that have not logged in count too, until client_login_timeout
// drops them.
func TestHostileLimitsMaxClientConn(t *testing.T) {
	const max = 3
	p := startLimitedProxy(t, testproxy.Options{MaxClientConn: max, ClientLoginTimeout: 2 * time.Second})
	role := unprivilegedRole(t, "limit_conn")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", role, p.Addr)
	var conns []*pgx.Conn
	for i := 0; i < max; i++ {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, max, err)
		}
		defer c.Close(context.Background())
		conns = append(conns, c)
	}
	tooMany := func(what string) {
		t.Helper()
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			c.Close(ctx)
			t.Fatalf("%s: connection accepted beyond max_client_conn %d", what, max)
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53300" || pe.Message != "sorry, too many clients already" || pe.Severity != "FATAL" {
			t.Fatalf("%s: got %v, want FATAL 53300 \"sorry, too many clients already\"", what, err)
		}
	}
	tooMany("one more client")
	// libpq's default sslmode=prefer asks for TLS first: declined, then refused.
	if _, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=prefer", role, p.Addr)); err == nil {
		t.Fatal("sslmode=prefer: accepted beyond max_client_conn")
	} else if pe := pgErrorOf(err); pe == nil || pe.Code != "53300" {
		t.Fatalf("sslmode=prefer: got %v, want 53300", err)
	}
	for i, c := range conns {
		var n int
		if err := c.QueryRow(ctx, "select $1::int", i).Scan(&n); err != nil || n != i {
			t.Errorf("connection %d not served while another was refused: %v", i+1, err)
		}
	}
	// A cancel request still gets through: it is how a client stops its own statement.
	done := make(chan error, 1)
	go func() {
		_, err := conns[0].Exec(ctx, "select pg_sleep(20)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	if err := conns[0].PgConn().CancelRequest(cctx); err != nil {
		t.Errorf("cancel request at max_client_conn: %v", err)
	}
	ccancel()
	select {
	case err := <-done:
		if pe := pgErrorOf(err); pe == nil || pe.Code != "57014" {
			t.Errorf("cancelled statement: got %v, want 57014", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel request at max_client_conn did not stop the statement")
	}

	// A client that leaves frees its place.
	conns[max-1].Close(ctx)
	time.Sleep(100 * time.Millisecond)
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("after a client left: %v", err)
	}
	defer c.Close(context.Background())
	c.Close(ctx)
	time.Sleep(100 * time.Millisecond)

	// A silent connection holds a place until client_login_timeout drops it.
	silent := silentConn(t, p)
	time.Sleep(100 * time.Millisecond)
	tooMany("with a silent connection")
	if !waitClosed(silent, 5*time.Second) {
		t.Fatal("silent connection not dropped after client_login_timeout")
	}
	time.Sleep(100 * time.Millisecond)
	c, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("after the silent connection was dropped: %v", err)
	}
	c.Close(ctx)
}

// TestHostileLimitsIdleTimeout: a logged-in client that sends nothing for longer than
// client_idle_timeout is disconnected with a FATAL error (PostgreSQL's
// idle_session_timeout error); one that keeps talking is not.
func TestHostileLimitsIdleTimeout(t *testing.T) {
	p := startLimitedProxy(t, testproxy.Options{ClientIdleTimeout: time.Second})
	role := unprivilegedRole(t, "limit_idle")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	busy := connectAs(t, p, role)
	for i := 0; i < 6; i++ {
		if _, err := busy.Exec(ctx, "select 1"); err != nil {
			t.Fatalf("a client that keeps talking was disconnected: %v", err)
		}
		time.Sleep(400 * time.Millisecond)
	}
	idle, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", role, p.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(context.Background())
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	err = idle.WaitForNotification(wctx)
	pe := pgErrorOf(err)
	if pe == nil || pe.Severity != "FATAL" || pe.Code != "57P05" {
		t.Fatalf("idle client after %s: got %v, want FATAL 57P05 (terminating connection due to idle-session timeout)", time.Since(start).Round(time.Millisecond), err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("closed after %s, before client_idle_timeout (1s)", el)
	}
}
