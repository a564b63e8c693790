package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/protocol"
)

// reportedParams are the settings PostgreSQL reports with ParameterStatus (GUC_REPORT).
var reportedParams = map[string]string{
	"application_name": "application_name", "client_encoding": "client_encoding", "datestyle": "DateStyle",
	"intervalstyle": "IntervalStyle", "timezone": "TimeZone", "standard_conforming_strings": "standard_conforming_strings",
	"default_transaction_read_only": "default_transaction_read_only", "in_hot_standby": "in_hot_standby",
	"is_superuser": "is_superuser", "session_authorization": "session_authorization",
}

// startup runs the startup phase. It reports false when the connection must close.
func (ss *session) startup(ctx context.Context) bool {
	// client_login_timeout (PostgreSQL's authentication_timeout): a client that does
	// not finish logging in by then is disconnected, whatever it is waiting for.
	if t := ss.srv.cfg.ClientLoginTimeout; t > 0 || ss.refused {
		if ss.refused && (t <= 0 || t > 5*time.Second) {
			t = 5 * time.Second
		}
		ss.nc.SetDeadline(time.Now().Add(t))
		defer ss.nc.SetDeadline(time.Time{})
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	// A server shutting down does not wait for clients still logging in.
	stop := context.AfterFunc(ctx, func() { ss.nc.SetDeadline(time.Now()) })
	defer stop()
	opt := protocol.StartupOptions{Cancel: ss.srv.cancel}
	if ss.refused {
		opt.Refuse = pgerr.New(pgerr.TooManyConnections, "sorry, too many clients already")
	}
	params, ok := ss.conn.Startup(opt)
	if !ok {
		return false
	}
	return ss.authenticate(ctx, params)
}

// authenticate checks the user and database, authenticates the client (trust: the
// coordinator decides whether the user may connect) and sends the parameters.
func (ss *session) authenticate(ctx context.Context, params map[string]string) bool {
	ss.user = params["user"]
	if ss.user == "" {
		ss.conn.Fatal(pgerr.New(pgerr.InvalidAuthorization, "no PostgreSQL user name specified in startup packet"))
		return false
	}
	db := params["database"]
	if db == "" {
		db = ss.user
	}
	if params["replication"] != "" && params["replication"] != "false" && params["replication"] != "off" && params["replication"] != "0" {
		ss.conn.Fatal(pgerr.New(pgerr.FeatureNotSupported, "replication connections are not supported by pgshard"))
		return false
	}
	values := map[string]string{}
	for name, v := range params {
		switch name {
		case "user", "database", "replication":
		case "options":
			for n, val := range parseOptions(v) {
				values[strings.ToLower(n)] = val
			}
		case "application_name":
			ss.appName = v
		default:
			values[strings.ToLower(name)] = v
		}
	}
	if err := ss.srv.register(ss); err != nil {
		ss.conn.Fatal(pgerr.From(err))
		return false
	}

	// A coordinator connection for the user proves the user may connect and tells what
	// the settings become.
	pool, err := ss.srv.pools.Get(ss.srv.coordKey(ss.user))
	if err != nil {
		ss.conn.Fatal(pgerr.From(err))
		return false
	}
	res, err := pool.Acquire(ctx)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			e := pgerr.FromPg(pe)
			e.Severity = "FATAL"
			ss.conn.Fatal(e)
		} else {
			// The cause names the coordinator's address: for the log, not for a
			// client that has not logged in.
			ss.log.Warn("coordinator connection for a client failed", "user", ss.user, "err", err)
			ss.conn.Fatal(pgerr.New(pgerr.CannotConnectNow, "pgshard could not connect to the coordinator"))
		}
		return false
	}
	c := res.Value()
	if ss.reserved && c.Params["is_superuser"] != "on" {
		backend.Release(res)
		ss.conn.Fatal(pgerr.New(pgerr.TooManyConnections, "sorry, too many clients already"))
		return false
	}
	if db != ss.srv.Database() {
		// As PostgreSQL: once the user is known to be allowed in, and without naming
		// the database this proxy serves.
		backend.Release(res)
		ss.conn.Fatal(pgerr.New(pgerr.InvalidCatalogName, "database \"%s\" does not exist", db))
		return false
	}
	ss.settings = newSettings(values)
	ss.startupValues = values
	var names []string
	for n := range values {
		if canon, ok := reportedParams[n]; ok {
			names = append(names, canon)
		}
	}
	// Also without settings of its own: a pooled connection may hold another session's
	// (and then reports them).
	if err := ss.applySettings(ctx, c); err != nil {
		backend.Release(res)
		e := pgerr.From(err)
		e.Severity = "FATAL"
		ss.conn.Fatal(e)
		return false
	}
	reported := map[string]string{}
	for k, v := range c.Params {
		reported[k] = v
	}
	if _, ok := values["standard_conforming_strings"]; !ok && reported["standard_conforming_strings"] == "off" {
		// Off by the role's or the database's default: every connection of the session
		// gets it, so that each reads the session's statements as the first one did.
		values["standard_conforming_strings"] = "off"
		ss.settings = newSettings(values)
	}
	if len(values) > 0 {
		if len(names) > 0 {
			sort.Strings(names)
			q := "SELECT "
			for i, n := range names {
				if i > 0 {
					q += ", "
				}
				q += "pg_catalog.current_setting('" + n + "')"
			}
			rows, err := c.ExecRows(ctx, q)
			if err == nil && len(rows) == 1 {
				for i, n := range names {
					reported[n] = string(rows[0][i])
				}
			}
		}
	}
	ss.txn.readIdleTimeouts(ctx, c)
	backend.Release(res)
	if ss.appName != "" {
		reported["application_name"] = ss.appName
	}
	ss.params = reported

	ss.w.Msg(&pgproto3.AuthenticationOk{})
	keys := make([]string, 0, len(reported))
	for k := range reported {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ss.w.Msg(&pgproto3.ParameterStatus{Name: k, Value: reported[k]})
	}
	ss.w.Msg(&pgproto3.BackendKeyData{ProcessID: ss.pid, SecretKey: binary.BigEndian.AppendUint32(nil, ss.secret)})
	ss.conn.ReadyForQuery(handler{ss}.Ready())
	return ss.w.Err() == nil
}

// parseOptions reads the "options" startup parameter: command-line style "-c name=value"
// and "--name=value" switches separated by spaces (a backslash escapes the next byte).
func parseOptions(s string) map[string]string {
	var words []string
	var cur []byte
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur = append(cur, s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, string(cur))
				cur, inWord = nil, false
			}
		default:
			cur = append(cur, c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, string(cur))
	}
	out := map[string]string{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			continue
		}
		if eq := strings.IndexByte(kv, '='); eq > 0 {
			out[strings.ReplaceAll(kv[:eq], "-", "_")] = kv[eq+1:]
		}
	}
	return out
}
