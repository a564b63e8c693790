package proxy

import (
	"context"
	"log/slog"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/pgerr"
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
	// workerApply is apply without the settings the proxy keeps for itself (proxyOnly),
	// for worker connections.
	workerApply string
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
	// session_authorization first: setting it resets role.
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "session_authorization") != (names[j] == "session_authorization") {
			return names[i] == "session_authorization"
		}
		return names[i] < names[j]
	})
	var key, apply, workerApply strings.Builder
	for _, n := range names {
		key.WriteString(n)
		key.WriteByte('=')
		key.WriteString(values[n])
		key.WriteByte(0)
		call := "pg_catalog.set_config(" + router.QuoteLiteral(n) + ", " + router.QuoteLiteral(values[n]) + ", false)"
		for _, b := range []*strings.Builder{&apply, &workerApply} {
			if b == &workerApply && proxyOnly[n] {
				continue
			}
			if b.Len() == 0 {
				b.WriteString("SELECT ")
			} else {
				b.WriteString(", ")
			}
			b.WriteString(call)
		}
	}
	st.key, st.apply, st.workerApply = key.String(), apply.String(), workerApply.String()
	return st
}

// proxyOnly are the settings the proxy keeps for the session itself rather than give to
// the workers: the idle timeouts concern the client's silence (idle.go), while a worker
// connection of a block is idle whenever the block's statements go elsewhere. (The
// session's coordinator connection has them, where SHOW reads them.)
var proxyOnly = map[string]bool{"idle_in_transaction_session_timeout": true, "idle_session_timeout": true}

// staleSettings marks a connection whose settings are unknown (a transaction block that
// changed settings ended on it): the next use applies the session's settings afresh.
const staleSettings = "\x00stale"

// searchPath is the session's search_path as SHOW prints it.
func (st *settings) searchPath() string {
	if v, ok := st.values["search_path"]; ok {
		return v
	}
	return `"$user", public`
}

// sessionSettings are the session's settings and what keeps every backend connection it
// uses at them: SET and RESET run on the session's coordinator connection, which then
// holds the truth; they mark the settings dirty, and the next worker connection used
// outside a transaction block has them read back from there first (refreshSettings). It
// is the session's (embedded in it), used by its goroutine only.
type sessionSettings struct {
	settings settings
	// startupValues are the settings from the startup packet: RESET returns to them.
	startupValues map[string]string
	// settingsDirty is set when a statement may have changed session settings; they are
	// read back from the coordinator before the next worker connection is used.
	settingsDirty bool
	// settingsErr is set while the session's settings are too large to apply to worker
	// connections (bounds.go).
	settingsErr error
	setDeps     settingsDeps
	// customNames are the custom (placeholder) settings the session has SET or passed to
	// set_config by name ("app.tenant"): PostgreSQL lists none of them in pg_settings, so
	// refreshSettings asks for these by name (at most maxCustomSettings of them).
	customNames map[string]struct{}
}

// maxCustomSettings bounds the custom settings names a session's refresh asks for.
const maxCustomSettings = 256

// setConfigName finds set_config calls with a literal name in a query's text.
var setConfigName = regexp.MustCompile(`(?i)set_config\s*\(\s*'((?:[^']|'')+)'`)

// noteCustomSettings remembers the custom settings (names with a dot) that a SET or
// RESET statement (set) or a query calling set_config (sql) names, so that
// refreshSettings reads them back. pgshard's own (pgshard.*) stay the proxy's.
func (st *sessionSettings) noteCustomSettings(sql string, set *router.SetPlan) {
	var names []string
	if set != nil {
		names = append(names, set.Variable())
	} else {
		for _, m := range setConfigName.FindAllStringSubmatch(sql, -1) {
			names = append(names, strings.ToLower(strings.ReplaceAll(m[1], "''", "'")))
		}
	}
	for _, n := range names {
		if !strings.Contains(n, ".") || strings.HasPrefix(n, "pgshard.") || len(st.customNames) >= maxCustomSettings {
			continue
		}
		if st.customNames == nil {
			st.customNames = map[string]struct{}{}
		}
		st.customNames[n] = struct{}{}
	}
}

// customSettingsQuery is the part of refreshSettings' query that reads the custom
// settings named in customNames that are not in pg_settings (placeholders), "" for none.
func (st *sessionSettings) customSettingsQuery() string {
	if len(st.customNames) == 0 {
		return ""
	}
	lits := make([]string, 0, len(st.customNames))
	for n := range st.customNames {
		lits = append(lits, router.QuoteLiteral(n))
	}
	sort.Strings(lits)
	return `
		UNION ALL SELECT n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY[` + strings.Join(lits, ", ") + `]::pg_catalog.text[]) n
			WHERE pg_catalog.current_setting(n, true) IS NOT NULL
			  AND NOT EXISTS (SELECT FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) n)`
}

// settingsDeps are what the settings read of the rest of the session, wired when it is
// built (initState): the transaction layer's coordinator connection, where every SET
// ran, and its state (inside a block the coordinator's values include SET LOCAL and SETs
// the block may still roll back), both of which change over the session's life; the
// session's user, set at startup; the parameters the client was told (ParameterStatus:
// client_encoding is the coordinator's, as reported); and the log.
type settingsDeps struct {
	coord  *(*puddle.Resource[*backend.Conn])
	tx     *txStatus
	user   *string
	params *map[string]string
	log    *slog.Logger
}

// coordConn is the session's coordinator connection, nil while it has none.
func (d settingsDeps) coordConn() *backend.Conn {
	if *d.coord == nil {
		return nil
	}
	return (*d.coord).Value()
}

// applySettings brings a backend connection to the session's settings. Outside a
// transaction block these are the session-level values; a connection that joins a block
// then replays the block's SET, SET LOCAL and savepoint statements in order (txReplay),
// so inside the block it holds what the coordinator holds, and after the block it
// returns to the session-level values.
func (st *sessionSettings) applySettings(ctx context.Context, c *backend.Conn) error {
	return st.applySettingsFor(ctx, c, false)
}

// applySettingsFor is applySettings for a worker connection, or not.
func (st *sessionSettings) applySettingsFor(ctx context.Context, c *backend.Conn, worker bool) error {
	coord := st.setDeps.coordConn()
	if st.settingsDirty && *st.setDeps.tx == txIdle && coord != nil && c != coord {
		st.refreshSettings(ctx)
	}
	if st.settingsErr != nil && (coord == nil || c != coord) {
		return st.settingsErr
	}
	// On a worker connection, a reported setting that changed since the settings were
	// applied (a function of the client's turned standard_conforming_strings off, or set
	// TimeZone, with set_config on a shard) was not pgshard's doing: the connection is
	// back in the pool, so the next session would inherit it, and read statements as
	// pgshard does not. Apply the session's settings afresh.
	if c.Settings == st.settings.key && (!worker || c.SettingsSeq == c.ParamsSeq) {
		return nil
	}
	// RESET ALL leaves role and session_authorization alone; SET SESSION AUTHORIZATION
	// DEFAULT resets both (it is allowed to every user).
	sql := "SET SESSION AUTHORIZATION DEFAULT; RESET ALL"
	apply := st.settings.apply
	if worker {
		apply = st.settings.workerApply
	}
	if apply != "" {
		sql += "; " + apply
	}
	if err := resetSettings(ctx, c, sql); err != nil {
		return err
	}
	c.Settings, c.SettingsSeq = st.settings.key, c.ParamsSeq
	return nil
}

// noStatementTimeout goes before a reset of a connection's settings, in a Query of its
// own (resetSettings).
const noStatementTimeout = "SET statement_timeout = 0"

// resetAttempts bounds the runs of a reset cancelled by the statement_timeout it found.
const resetAttempts = 5

// resetSettings runs sql, which resets a connection's settings, under no statement
// timeout. The connection may have any statement_timeout: one a block SET and committed
// (its connections then go back to the pool stale), or another session's. PostgreSQL
// times each statement from its start, under the value it finds then: a short timeout
// would cancel the reset (and the statement the reset was for would fail with 57014,
// though the session's own timeout may be 0). So noStatementTimeout goes first, in a
// Query of its own, sent in the same round trip: once it is done, the reset's
// statements find no timeout (and RESET ALL and the session's settings then set the
// session's). A tiny timeout may cancel noStatementTimeout itself, and the reset after
// it (or, PostgreSQL's cancel being a signal, a timeout that ran out at its very end
// may cancel the reset): both are then sent again, a few times. A reset that fails
// otherwise fails.
func resetSettings(ctx context.Context, c *backend.Conn, sql string) error {
	var err error
	for range resetAttempts {
		c.Query(noStatementTimeout)
		c.Query(sql)
		if err = c.Flush(); err != nil {
			return err
		}
		if pre := c.ExecPending(ctx); c.Broken() {
			return pre
		}
		if err = c.ExecPending(ctx); err == nil || c.Broken() || pgerr.CodeOf(err) != pgerr.QueryCanceled || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// refreshSettings reads the session-level settings back from its coordinator connection,
// where every SET ran. It is called outside transaction blocks only: inside one, the
// coordinator's values include SET LOCAL and SETs the block may still roll back.
func (st *sessionSettings) refreshSettings(ctx context.Context) {
	st.settingsDirty = false
	c := st.setDeps.coordConn()
	if c == nil {
		return
	}
	// role and session_authorization are not listed in pg_settings.
	rows, err := c.ExecRows(ctx, `SELECT name, setting FROM pg_catalog.pg_settings
		WHERE source OPERATOR(pg_catalog.=) 'session' AND name OPERATOR(pg_catalog.!~~) 'transaction\_%' AND name OPERATOR(pg_catalog.<>) 'application_name'
		UNION ALL SELECT 'role', pg_catalog.current_setting('role') WHERE pg_catalog.current_setting('role') OPERATOR(pg_catalog.<>) 'none'
		UNION ALL SELECT 'session_authorization', pg_catalog.current_setting('session_authorization')
			WHERE pg_catalog.current_setting('session_authorization') OPERATOR(pg_catalog.<>) `+router.QuoteLiteral(*st.setDeps.user)+
		st.customSettingsQuery())
	if err != nil {
		st.setDeps.log.Warn("could not read session settings", "err", err)
		st.settingsDirty = true
		return
	}
	values := map[string]string{}
	size := 0
	for _, r := range rows {
		values[strings.ToLower(string(r[0]))] = string(r[1])
		size += len(r[0]) + len(r[1])
	}
	st.settingsErr = nil
	if size > maxSessionSettings {
		// Every worker connection the session uses would get them: the session uses
		// none until they are reset. The proxy keeps only what routing needs.
		st.settingsErr = settingsTooLarge()
		st.settingsDirty = true // read again after the next SET or RESET
		kept := map[string]string{}
		for _, n := range []string{"search_path", "role", "session_authorization"} {
			if v, ok := values[n]; ok {
				kept[n] = v
			}
		}
		values = kept
	}
	st.settings = newSettings(values)
	c.Settings = st.settings.key
}

func runtimeStack(buf []byte) int { return runtime.Stack(buf, false) }

// clientEncoding is the session's client_encoding, as the coordinator reported it.
func (st *sessionSettings) clientEncoding() string {
	if v := (*st.setDeps.params)["client_encoding"]; v != "" {
		return v
	}
	return "UTF8"
}
