package proxy

import (
	"context"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/sqllex"
)

// How a session's statements are read. PostgreSQL's scanner depends on two settings:
// standard_conforming_strings (off: a backslash escapes the next character in '...'
// strings, so 'a\'b' is one string) and backslash_quote (off: \' in a string is an
// error). pgshard reads every statement as the session's coordinator connection will:
// standard_conforming_strings is reported by the server (ParameterStatus) whenever it
// changes, by SET, RESET, SET LOCAL, the end of a transaction block, a role's or
// database's default or the startup packet, and backend.Conn keeps the last value.

// lexMode is how the session's coordinator reads a statement now.
func (ss *session) lexMode() sqllex.Mode {
	scs := ss.params["standard_conforming_strings"]
	if ss.txn.coord != nil {
		if v, ok := ss.txn.coord.Value().Params["standard_conforming_strings"]; ok {
			scs = v
		}
	}
	var m sqllex.Mode
	if scs == "off" {
		m |= sqllex.NonStandard
	}
	enc := ss.clientEncoding()
	clientOnly := clientOnlyEncoding(enc)
	switch {
	case clientOnly:
		m |= sqllex.ClientOnlyEncoding
	case enc != "" && enc != "UTF8" && enc != "SQL_ASCII":
		m |= sqllex.ConvertedEncoding
	}
	bq := strings.ToLower(ss.settings.values["backslash_quote"])
	switch {
	case bq == "off" || bq == "false" || bq == "no" || bq == "0":
		m |= sqllex.NoBackslashQuote
	case bq == "on" || bq == "true" || bq == "yes" || bq == "1":
	case clientOnly:
		// safe_encoding (the default) refuses \' when the client encoding may hide a
		// backslash in the second byte of a character.
		m |= sqllex.NoBackslashQuote
	}
	return m
}

// clientOnlyEncoding reports the client encodings whose multibyte characters may contain
// an ASCII byte (PostgreSQL's PG_ENCODING_IS_CLIENT_ONLY).
// enc is the name the server reports (ParameterStatus), which is canonical.
func clientOnlyEncoding(enc string) bool {
	switch enc {
	case "SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB":
		return true
	}
	return false
}

// reportParams tells the client of the settings the coordinator reported while the proxy
// itself talked to it (ending a transaction block, applying the session's settings): the
// client's driver escapes strings by standard_conforming_strings as it was last told.
func (ss *session) reportParams() {
	if ss.txn.coord == nil || ss.params == nil {
		return
	}
	c := ss.txn.coord.Value()
	if c.Broken() || c == ss.reportedConn && c.ParamsSeq == ss.reportedSeq {
		return
	}
	ss.reportedConn, ss.reportedSeq = c, c.ParamsSeq
	var changed []string
	for name, v := range c.Params {
		if _, ok := reportedParamNames[name]; !ok {
			continue
		}
		if old, ok := ss.params[name]; !ok || old != v {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	for _, name := range changed {
		ss.params[name] = c.Params[name]
		ss.w.Msg(&pgproto3.ParameterStatus{Name: name, Value: c.Params[name]})
	}
}

// reportedParamNames are the names ParameterStatus uses for reportedParams.
var reportedParamNames = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, canon := range reportedParams {
		m[canon] = struct{}{}
	}
	return m
}()

// errUnreadable refuses a statement that pgshard's parser cannot read while the
// coordinator's can: pgshard cannot tell what it does, and it may name a distributed
// table, so it runs nowhere.
func errUnreadable() error {
	return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot parse this statement").
		WithDetail("PostgreSQL's parser reads it, but pgshard's does not; it was not run.")
}

// unparsedStatement handles a statement that pgshard failed to parse while distributed
// tables exist. Run on the coordinator, it could write a distributed table's prototype
// (or read it) if the coordinator read it otherwise than pgshard did, so it only goes
// there as a Parse, which runs nothing: the coordinator's syntax error is the statement's
// error, with PostgreSQL's own message, code and position; if the coordinator parses it,
// pgshard refuses it.
func (x *execution) unparsedStatement(ctx context.Context, sql string) error {
	ss := x.ss
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	w := c.Writer()
	w.Msg(&pgproto3.Parse{Query: sql})
	w.Msg(&pgproto3.Sync{})
	if err := ss.sendTo(c); err != nil {
		return err
	}
	defer ss.stopRunning(c)
	stop := c.WatchContext(ctx)
	defer stop()
	var first *pgerr.Error
	for {
		t, b, err := c.Next()
		if err != nil {
			return err
		}
		switch t {
		case 'E':
			if first == nil {
				first = c.DecodeError(b)
			}
		case 'N':
			forwardNotice(x.out.Writer, ss.srv, c, b)
		case 'Z':
			if first == nil || first.Code == pgerr.SyntaxError && strings.HasPrefix(first.Message, "cannot insert multiple commands") {
				return errUnreadable()
			}
			return first
		}
	}
}

// escapeWarnings sends the warnings PostgreSQL's scanner gives when it reads a statement
// whose plain strings hold backslash escapes with standard_conforming_strings off, for
// statements the coordinator does not read itself (those sent to the workers, which get
// their strings as E'...', and never warn).
func (ss *session) escapeWarnings(batch *router.Batch, in *router.Input) {
	if in == nil || in.Mode&sqllex.NonStandard == 0 || batch.AllCoordinator ||
		len(batch.Stmts) == 1 && batch.Stmts[0].Unparsed {
		return
	}
	switch strings.ToLower(ss.settings.values["escape_string_warning"]) {
	case "off", "false", "no", "0":
		return
	}
	for _, w := range sqllex.EscapeWarnings(in.Text, in.Toks) {
		e := pgerr.New("22P06", "%s", w.Message).WithHint("%s", w.Hint).WithSeverity("WARNING")
		e.Position = int32(charPos(in.Text, w.Offset))
		ss.sendNotice(e)
	}
}
