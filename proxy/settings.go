package proxy

import (
	"context"
	"runtime"
	"sort"
	"strings"

	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// settings are a session's configuration settings (from its startup packet and SET
// statements). Every backend connection a session uses is brought to them first, so that
// a worker formats dates, rounds floats and times out exactly as the coordinator would.
// application_name is left out (it would make every session's settings distinct and force
// a reset on every pooled connection); only the session's coordinator connection carries
// it.
type settings struct {
	values map[string]string // lower-case name -> value
	key    string            // identifies values; "" for none
	apply  string            // SQL that applies values after RESET ALL
}

func newSettings(values map[string]string) settings {
	st := settings{values: values}
	if len(values) == 0 {
		return st
	}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	var key, apply strings.Builder
	apply.WriteString("SELECT ")
	for i, n := range names {
		key.WriteString(n)
		key.WriteByte('=')
		key.WriteString(values[n])
		key.WriteByte(0)
		if i > 0 {
			apply.WriteString(", ")
		}
		apply.WriteString("pg_catalog.set_config(" + router.QuoteLiteral(n) + ", " + router.QuoteLiteral(values[n]) + ", false)")
	}
	st.key, st.apply = key.String(), apply.String()
	return st
}

// searchPath is the session's search_path as SHOW prints it.
func (st *settings) searchPath() string {
	if v, ok := st.values["search_path"]; ok {
		return v
	}
	return `"$user", public`
}

// applySettings brings a backend connection to the session's settings.
func (ss *session) applySettings(ctx context.Context, c *backend.Conn) error {
	if ss.settingsDirty && ss.coord != nil && c != ss.coord.Value() {
		ss.refreshSettings(ctx)
	}
	if c.Settings == ss.settings.key {
		return nil
	}
	sql := "RESET ALL"
	if ss.settings.apply != "" {
		sql += "; " + ss.settings.apply
	}
	if err := c.Exec(ctx, sql); err != nil {
		return err
	}
	c.Settings = ss.settings.key
	return nil
}

// refreshSettings reads the session's settings back from its coordinator connection,
// where every SET ran.
func (ss *session) refreshSettings(ctx context.Context) {
	ss.settingsDirty = false
	if ss.coord == nil {
		return
	}
	c := ss.coord.Value()
	rows, err := c.ExecRows(ctx, `SELECT name, setting FROM pg_catalog.pg_settings
		WHERE source = 'session' AND name NOT LIKE 'transaction\_%' AND name <> 'application_name'`)
	if err != nil {
		ss.log.Warn("could not read session settings", "err", err)
		ss.settingsDirty = true
		return
	}
	values := map[string]string{}
	for _, r := range rows {
		values[strings.ToLower(string(r[0]))] = string(r[1])
	}
	ss.settings = newSettings(values)
	c.Settings = ss.settings.key
}

func runtimeStack(buf []byte) int { return runtime.Stack(buf, false) }

// clientEncoding is the session's client_encoding, as the coordinator reported it.
func (ss *session) clientEncoding() string {
	if v := ss.params["client_encoding"]; v != "" {
		return v
	}
	return "UTF8"
}
