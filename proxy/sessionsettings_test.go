package proxy

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/proxy/backend"
)

// testSettings returns settings without a coordinator connection, outside a block.
func testSettings(values map[string]string) *sessionSettings {
	var coord *puddle.Resource[*backend.Conn]
	tx, user := txIdle, "alice"
	var params map[string]string
	return &sessionSettings{settings: newSettings(values), setDeps: settingsDeps{coord: &coord, tx: &tx, user: &user, params: &params}}
}

// A connection already at the session's settings is left alone; while the settings are
// too large for the workers, every connection but the coordinator's is refused them
// (the session has none of its own here: the pooled coordinator connection is refused
// too).
func TestSessionSettingsApply(t *testing.T) {
	st := testSettings(map[string]string{"timezone": "UTC"})
	c := &backend.Conn{Settings: st.settings.key}
	if err := st.applySettings(context.Background(), c); err != nil {
		t.Fatalf("a connection at the session's settings: %v", err)
	}
	if err := st.applySettingsFor(context.Background(), c, true); err != nil {
		t.Fatalf("a worker connection at the session's settings: %v", err)
	}
	st.settingsErr = settingsTooLarge()
	if err := st.applySettingsFor(context.Background(), c, true); err != st.settingsErr {
		t.Fatalf("settings too large: %v, want %v", err, st.settingsErr)
	}
	// Without a coordinator connection there is nothing to read back: refreshing only
	// clears the mark.
	st.settingsDirty = true
	st.refreshSettings(context.Background())
	if st.settingsDirty || st.settings.key != newSettings(map[string]string{"timezone": "UTC"}).key {
		t.Fatalf("refresh without a coordinator connection: dirty %v, key %q", st.settingsDirty, st.settings.key)
	}
}

// client_encoding is what the coordinator reported, UTF8 before any report.
func TestSessionSettingsClientEncoding(t *testing.T) {
	st := testSettings(nil)
	if got := st.clientEncoding(); got != "UTF8" {
		t.Fatalf("before any report: %q", got)
	}
	*st.setDeps.params = map[string]string{"client_encoding": "LATIN1"}
	if got := st.clientEncoding(); got != "LATIN1" {
		t.Fatalf("after a report: %q", got)
	}
}

// A SET longer than the bound on a session's settings is refused before it runs.
func TestSessionSettingsSetBound(t *testing.T) {
	st := testSettings(nil)
	if err := st.setBound("SET search_path = a"); err != nil {
		t.Fatal(err)
	}
	if err := st.setBound("SET application_name = '" + strings.Repeat("x", maxSessionSettings) + "'"); err == nil {
		t.Fatal("a SET past maxSessionSettings was let through")
	}
}
