package localpg

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	needServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, s := range c.Servers() {
		res, err := s.Exec(ctx, "postgres", "select current_setting('port')")
		if err != nil {
			t.Fatal(err)
		}
		if got := string(res[0].Rows[0][0]); got != itoa(s.Port) {
			t.Fatalf("%s: port %s, want %d", s.Name, got, s.Port)
		}
	}
	w := c.Workers[0]
	if err := w.Crash(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(ctx, "postgres", "select 1"); err == nil {
		t.Fatal("crashed server still answers")
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(ctx, "postgres", "select 1"); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// needServers skips the test without PostgreSQL's server binaries or with -short (make
// unit runs no servers).
func needServers(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no PostgreSQL servers")
	}
	if !Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
}
