package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestNotifications: LISTEN through the proxy receives NOTIFY from another session while
// idle, as on PostgreSQL.
func TestNotifications(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *pgconn.Notification, 1)
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { got <- n }
	a, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	if _, err := a.Exec(ctx, "LISTEN pgshard_test").ReadAll(); err != nil {
		t.Fatal(err)
	}
	b := connect(t)
	notified := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, err := b.Exec(ctx, "NOTIFY pgshard_test, 'hello'")
		notified <- err
	}()
	defer func() {
		if err := <-notified; err != nil {
			t.Errorf("NOTIFY: %v", err)
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The client is idle: the notification must come on its own.
	if err := a.WaitForNotification(wctx); err != nil {
		t.Fatalf("waiting for the notification: %v", err)
	}
	select {
	case n := <-got:
		if n.Channel != "pgshard_test" || n.Payload != "hello" {
			t.Errorf("notification %+v", n)
		}
	default:
		t.Error("no notification delivered")
	}
}

// TestSessionSettings: startup parameters and SET reach the workers that answer
// distributed queries (dates formatted by DateStyle, floats by extra_float_digits), and
// RESET / DISCARD ALL undo them.
func TestSessionSettings(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("settings")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, d date, f float8)", table), table, "k", 4, 1)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, '2024-03-05', 0.1)", table))
	q := fmt.Sprintf("SELECT d::text || ' ' || f::text FROM %s WHERE k = 1", table)
	if got := queryString(t, conn, q); got != "2024-03-05 0.1" {
		t.Errorf("default: %q", got)
	}
	mustExec(t, conn, "SET DateStyle = 'German, DMY'", "SET extra_float_digits = 0")
	if got := queryString(t, conn, q); got != "05.03.2024 0.1" {
		t.Errorf("after SET: %q", got)
	}
	mustExec(t, conn, "RESET DateStyle")
	if got := queryString(t, conn, q); got != "2024-03-05 0.1" {
		t.Errorf("after RESET: %q", got)
	}
	// Startup parameters, including options=-c ...
	cfg, err := pgx.ParseConfig(simpleURL(env.P))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["DateStyle"] = "SQL, DMY"
	cfg.RuntimeParams["options"] = "-c search_path=pg_catalog,public -c statement_timeout=5min"
	cfg.RuntimeParams["application_name"] = "settings-test"
	c2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if got := queryString(t, c2, q); got != "05/03/2024 0.1" {
		t.Errorf("startup DateStyle: %q", got)
	}
	if got := queryString(t, c2, "SHOW statement_timeout"); got != "5min" {
		t.Errorf("options: statement_timeout = %q", got)
	}
	if got := c2.PgConn().ParameterStatus("application_name"); got != "settings-test" {
		t.Errorf("application_name = %q", got)
	}
	if got := queryString(t, c2, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"); got != "settings-test" {
		t.Errorf("coordinator application_name = %q", got)
	}
	// A session's settings do not leak into another session's workers.
	if got := queryString(t, conn, q); got != "2024-03-05 0.1" {
		t.Errorf("other session: %q", got)
	}
	mustExec(t, c2, "DISCARD ALL")
	if got := queryString(t, c2, q); got != "05/03/2024 0.1" {
		// DISCARD ALL resets to the startup values, as in PostgreSQL.
		t.Errorf("after DISCARD ALL: %q", got)
	}
}
