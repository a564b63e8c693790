package proxy

import (
	"testing"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/router"
)

func TestParseMillis(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "1500ms": 1500 * time.Millisecond, "1500": 1500 * time.Millisecond, "2s": 2 * time.Second,
		"5min": 5 * time.Minute, "1h": time.Hour, "1d": 24 * time.Hour, "-1": 0, "x": 0, "3 weeks": 0,
	} {
		if got := parseMillis(in); got != want {
			t.Errorf("parseMillis(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestProxyOnlySet(t *testing.T) {
	r, snap := router.New(router.Config{}), metadata.NewSnapshot(nil, nil)
	for in, want := range map[string]bool{
		"SET idle_in_transaction_session_timeout = '1s'":        true,
		"set local idle_in_transaction_session_timeout=1":       true,
		"SET SESSION idle_session_timeout TO 0;":                true,
		"RESET idle_session_timeout":                            true,
		"SET statement_timeout = '1s'":                          false,
		"RESET ALL":                                             false,
		"SELECT set_config('idle_session_timeout', '1', false)": false,
	} {
		b, _ := r.Plan(in, snap, &router.Session{})
		if got := proxyOnlySet(b.Stmts[0].Set); got != want {
			t.Errorf("proxyOnlySet(%q) = %v, want %v", in, got, want)
		}
	}
}
