package proxy

import (
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/control"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/router"
)

// stmtCall says how the statement being executed arrived: by a simple Query, or by an
// Execute of the extended protocol (with its parameters and result formats, and no
// RowDescription in the results: Describe gives it).
type stmtCall struct {
	extended bool
	prm      *params
	results  []int16
	// portal is the portal an Execute runs (nil for a simple query): a COMMIT that it
	// runs ends the block's other portals, not this one.
	portal *portal
}

// prepared is a prepared statement of the session (protocol-level or SQL PREPARE; they
// share one namespace, as in PostgreSQL).
type prepared struct {
	name  string
	sql   string
	oids  []uint32 // declared parameter types (0: to be inferred)
	batch *router.Batch
	in    *router.Input
	st    *router.Statement // nil for an empty query; kind Admin for an admin statement
	// snap and sess are what the statement was planned with: when the distributed
	// tables change or names resolve differently, it is planned again before it runs
	// (replan), as PostgreSQL analyses a prepared statement again.
	snap *metadata.Snapshot
	sess *router.Session
	// From Describe: every parameter's type, and the result columns (nil: no rows).
	described bool
	params    []uint32
	fields    []pgproto3.FieldDescription
	// workerParams are params for the workers, where user-defined types have other OIDs
	// (or do not exist): a domain becomes its base type, any other such type 0.
	workerParams []uint32
}

// portal is a bound statement, ready to execute.
type portal struct {
	name    string
	stmt    *prepared
	prm     *params
	results []int16
	// pending holds the rest of a result fetched in parts (Execute with a row limit)
	// when it was read ahead (the statement writes, or the session needed its connections
	// before the client had fetched everything); err is the statement's error, to report
	// once pending is served.
	pending *spool
	err     error
	started bool
	cost    int64 // counted against max-prepared-memory
}

// describeKey identifies a statement description in the session's cache.
func describeKey(sql string, oids []uint32) string {
	var b strings.Builder
	b.WriteString(sql)
	for _, o := range oids {
		b.WriteByte(0)
		b.WriteString(strconv.FormatUint(uint64(o), 10))
	}
	return b.String()
}

type description struct {
	params []uint32
	fields []pgproto3.FieldDescription
	worker []uint32 // params as the workers know them
}

// Parse handles Parse: the statement is planned now (plans are cached by text).
func (h handler) Parse(ctx context.Context, m *pgproto3.Parse) error {
	ss := h.ss
	if m.Name != "" {
		if _, ok := ss.stmts[m.Name]; ok {
			return pgerr.New(pgerr.DuplicatePStatement, "prepared statement %q already exists", m.Name)
		}
	}
	ps, err := ss.prepare(ctx, m.Name, m.Query, append([]uint32(nil), m.ParameterOIDs...))
	if err != nil {
		return err
	}
	// PostgreSQL reports syntax and analysis errors at Parse: so does the description.
	if err := ss.describeStatement(ctx, ps); err != nil {
		return err
	}
	if err := ss.putStmt(m.Name, ps); err != nil {
		return err
	}
	if ps.batch != nil {
		ss.escapeWarnings(ps.batch, ps.in)
	}
	ss.w.Raw('1', nil)
	return nil
}

// prepare plans a statement text for the session's namespace.
func (ss *session) prepare(ctx context.Context, name, sql string, oids []uint32) (*prepared, error) {
	ps := &prepared{name: name, sql: sql, oids: oids}
	if st := router.PlanAdmin(sql); st != nil {
		// Answered by the proxy: neither planned with the session's names nor ever
		// planned again.
		ps.st = st
		return ps, nil
	}
	snap := ss.snapshot()
	ps.sess = ss.routerSession(ctx, snap, sql)
	ps.snap = snap
	ps.batch, ps.in = ss.srv.router.Plan(sql, snap, ps.sess)
	switch len(ps.batch.Stmts) {
	case 0:
	case 1:
		ps.st = ps.batch.Stmts[0]
	default:
		return nil, pgerr.New(pgerr.SyntaxError, "cannot insert multiple commands into a prepared statement")
	}
	return ps, nil
}

// replan plans a prepared statement again if what it was planned with changed.
func (ss *session) replan(ctx context.Context, ps *prepared) {
	if ps.st == nil || ps.snap == nil || !ss.planStale(ps.snap, ps.sess) {
		return
	}
	snap := ss.snapshot()
	sess := ss.routerSession(ctx, snap, ps.sql)
	sess.Lex = ps.sess.Lex // read as at Parse, as PostgreSQL keeps the parse tree
	batch, in := ss.srv.router.Plan(ps.sql, snap, sess)
	if len(batch.Stmts) != 1 {
		return
	}
	ps.snap, ps.sess, ps.batch, ps.in, ps.st = snap, sess, batch, in, batch.Stmts[0]
}

// Bind handles Bind: it creates a portal with the parameter values.
func (h handler) Bind(ctx context.Context, m *pgproto3.Bind) error {
	ss := h.ss
	ps := ss.stmts[m.PreparedStatement]
	if ps == nil {
		return pgerr.New(pgerr.InvalidSQLStatementName, "prepared statement %q does not exist", m.PreparedStatement)
	}
	if m.DestinationPortal != "" {
		if _, ok := ss.portals[m.DestinationPortal]; ok {
			return pgerr.New(pgerr.DuplicateCursor, "portal %q already exists", m.DestinationPortal)
		}
	}
	if err := ss.describeStatement(ctx, ps); err != nil {
		return err
	}
	if len(m.Parameters) != len(ps.params) {
		return pgerr.New(pgerr.ProtocolViolation, "bind message supplies %d parameters, but prepared statement %q requires %d",
			len(m.Parameters), m.PreparedStatement, len(ps.params))
	}
	if n := len(m.ParameterFormatCodes); n > 1 && n != len(m.Parameters) {
		return pgerr.New(pgerr.ProtocolViolation, "bind message has %d parameter formats but %d parameters", n, len(m.Parameters))
	}
	if n := len(m.ResultFormatCodes); n > 1 && n != len(ps.fields) {
		return pgerr.New(pgerr.ProtocolViolation, "bind message has %d result formats but query has %d columns", n, len(ps.fields))
	}
	for i := range m.Parameters {
		// PostgreSQL reads each parameter in its format at Bind: a format it does not
		// know fails the Bind, not the Execute on a backend after a BindComplete.
		if f := (&router.Params{Formats: m.ParameterFormatCodes}).Format(i); f != 0 && f != 1 {
			return pgerr.New(pgerr.InvalidParameterValue, "unsupported format code: %d", f)
		}
	}
	if m.DestinationPortal == "" {
		ss.dropPortal("") // replaced
	}
	cost := portalCost(m.Parameters)
	if err := ss.preparedBound(cost); err != nil {
		return err
	}
	values := make([][]byte, len(m.Parameters))
	for i, v := range m.Parameters {
		if v != nil {
			values[i] = append([]byte{}, v...)
		}
	}
	ss.portals[m.DestinationPortal] = &portal{
		name: m.DestinationPortal, stmt: ps,
		prm:     &params{values: values, formats: append([]int16(nil), m.ParameterFormatCodes...), oids: ps.params, worker: ps.workerParams},
		results: append([]int16(nil), m.ResultFormatCodes...),
		cost:    cost,
	}
	ss.preparedBytes += cost
	ss.w.Raw('2', nil)
	return nil
}

// Describe handles Describe of a statement or a portal.
func (h handler) Describe(ctx context.Context, m *pgproto3.Describe) error {
	ss := h.ss
	switch m.ObjectType {
	case 'S':
		ps := ss.stmts[m.Name]
		if ps == nil {
			return pgerr.New(pgerr.InvalidSQLStatementName, "prepared statement %q does not exist", m.Name)
		}
		if err := ss.describeStatement(ctx, ps); err != nil {
			return err
		}
		ss.w.Msg(&pgproto3.ParameterDescription{ParameterOIDs: ps.params})
		rowDescription(ss.w, ps.fields, nil)
	case 'P':
		pt := ss.portals[m.Name]
		if pt == nil {
			return pgerr.New(pgerr.InvalidCursorName, "portal %q does not exist", m.Name)
		}
		rowDescription(ss.w, pt.stmt.fields, pt.results)
	default:
		return pgerr.New(pgerr.ProtocolViolation, "invalid DESCRIBE message subtype %d", m.ObjectType)
	}
	return nil
}

// rowDescription sends a RowDescription with the given result formats, or NoData.
func rowDescription(w *pgwire.Writer, fields []pgproto3.FieldDescription, formats []int16) {
	if fields == nil {
		w.Raw('n', nil)
		return
	}
	rd := &pgproto3.RowDescription{Fields: make([]pgproto3.FieldDescription, len(fields))}
	copy(rd.Fields, fields)
	for i := range rd.Fields {
		rd.Fields[i].Format = formatOf(formats, i)
	}
	w.Msg(rd)
}

func formatOf(formats []int16, i int) int16 {
	switch {
	case len(formats) == 0:
		return 0
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return 0
}

// describeStatement learns a statement's parameter types and result columns. The
// coordinator describes the statement as written (its prototype tables have the
// distributed tables' columns); descriptions are cached per session.
func (ss *session) describeStatement(ctx context.Context, ps *prepared) error {
	if ps.described {
		return nil
	}
	key := describeKey(ps.sql, ps.oids)
	if ps.sess != nil {
		// The same text may name other relations under another search_path, and be
		// other statements under another standard_conforming_strings.
		key += "\x00" + ps.sess.SearchPath + "\x00" + ps.sess.NamesKey + "\x00" + string(rune('0'+ps.sess.Lex))
	}
	if d, ok := ss.descCache[key]; ok {
		ps.params, ps.fields, ps.workerParams, ps.described = d.params, d.fields, d.worker, true
		return nil
	}
	var d description
	var err error
	switch {
	case ps.st == nil:
	default:
		switch {
		case ps.st.RowLess():
			// No parameters, no rows.
		case ps.st.Kind == router.Admin:
			d.fields = control.Fields(ps.st.Command.Name)
		case ps.st.Kind == router.ExecuteSQL:
			target := ss.stmts[ps.st.Name]
			if target == nil {
				return pgerr.New(pgerr.InvalidSQLStatementName, "prepared statement %q does not exist", ps.st.Name)
			}
			if err := ss.describeStatement(ctx, target); err != nil {
				return err
			}
			d.fields = target.fields
		case ps.st.Kind == router.Function:
			d, err = ss.describeFunction(ctx, ps)
		default:
			d, err = ss.describeOnCoordinator(ctx, ps.sql, ps.oids)
		}
	}
	if err != nil {
		return err
	}
	if len(d.params) < len(ps.oids) {
		d.params = append(d.params, ps.oids[len(d.params):]...)
	}
	if d.worker, err = ss.workerOIDs(ctx, d.params); err != nil {
		return err
	}
	ss.cacheDescription(key, d)
	ps.params, ps.fields, ps.workerParams, ps.described = d.params, d.fields, d.worker, true
	return nil
}

// workerOIDs maps parameter types to the workers' OIDs: built-in types keep theirs, a
// domain (whose OID differs on every server) becomes its base type, which assigns to
// the domain with its checks, and any other user-defined type becomes 0, for the worker
// to infer from the statement as PostgreSQL infers an unspecified type.
func (ss *session) workerOIDs(ctx context.Context, oids []uint32) ([]uint32, error) {
	var user []string
	for _, o := range oids {
		if o >= firstNormalOID {
			user = append(user, strconv.FormatUint(uint64(o), 10))
		}
	}
	if len(user) == 0 {
		return oids, nil
	}
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := c.ExecRows(ctx, `WITH RECURSIVE chain(start, oid, depth) AS (
			SELECT t.oid, t.oid, 0 FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) ANY ('{`+strings.Join(user, ", ")+`}'::pg_catalog.oid[])
			UNION ALL
			SELECT ch.start, t.typbasetype, ch.depth OPERATOR(pg_catalog.+) 1 FROM chain ch JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) ch.oid WHERE t.typtype OPERATOR(pg_catalog.=) 'd')
		SELECT DISTINCT ON (start) start, oid FROM chain ORDER BY start, depth DESC`)
	if err != nil {
		return nil, err
	}
	base := map[uint32]uint32{}
	for _, r := range rows {
		s, _ := strconv.ParseUint(string(r[0]), 10, 32)
		b, _ := strconv.ParseUint(string(r[1]), 10, 32)
		if b < firstNormalOID {
			base[uint32(s)] = uint32(b)
		}
	}
	out := make([]uint32, len(oids))
	for i, o := range oids {
		out[i] = o
		if o >= firstNormalOID {
			out[i] = base[o] // 0 when not a domain over a built-in type
		}
	}
	return out, nil
}

// describeOnCoordinator asks the coordinator to describe sql.
func (ss *session) describeOnCoordinator(ctx context.Context, sql string, oids []uint32) (description, error) {
	var d description
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return d, err
	}
	w := c.Writer()
	w.Msg(&pgproto3.Parse{Query: sql, ParameterOIDs: oids})
	w.Msg(&pgproto3.Describe{ObjectType: 'S'})
	w.Msg(&pgproto3.Sync{})
	if err := ss.sendTo(c); err != nil {
		return d, err
	}
	defer ss.stopRunning(c)
	stop := c.WatchContext(ctx)
	defer stop()
	var first error
	for {
		t, b, err := c.Next()
		if err != nil {
			return d, err
		}
		switch t {
		case 't':
			var pd pgproto3.ParameterDescription
			if err := pd.Decode(b); err != nil {
				return d, err
			}
			d.params = append([]uint32{}, pd.ParameterOIDs...)
		case 'T':
			var rd pgproto3.RowDescription
			if err := rd.Decode(b); err != nil {
				return d, err
			}
			d.fields = make([]pgproto3.FieldDescription, len(rd.Fields))
			for i, f := range rd.Fields {
				f.Name = append([]byte{}, f.Name...)
				d.fields[i] = f
			}
		case 'E':
			if first == nil {
				first = decodeClientError(b)
			}
		case 'Z':
			if first != nil {
				ss.txn.failBlock()
			}
			return d, first
		}
	}
}

// describeFunction describes a statement calling pgshard's SQL functions.
func (ss *session) describeFunction(ctx context.Context, ps *prepared) (description, error) {
	if ps.st.Outer != nil {
		return ss.describeOnCoordinator(ctx, inlineNulls(ps.st, ps.in), ps.oids) // sizes.go
	}
	d, err := ss.describeOnCoordinator(ctx, string(ps.st.ArgQuery.Render(nil, &router.Holes{In: ps.in})), ps.oids)
	if err != nil {
		return d, err
	}
	args := d.fields
	d.fields = nil
	for _, col := range ps.st.Columns {
		if col.Call >= 0 {
			d.fields = append(d.fields, callField(col.Name, ps.st.Calls[col.Call].Func))
		} else if col.ArgIndex < len(args) {
			f := args[col.ArgIndex]
			f.Name = []byte(col.Name)
			d.fields = append(d.fields, f)
		}
	}
	return d, nil
}

// Execute handles Execute: it runs the portal's statement, or continues a result fetched
// in parts.
func (h handler) Execute(ctx context.Context, m *pgproto3.Execute) error {
	ss, name, maxRows := h.ss, m.Portal, m.MaxRows
	pt := ss.portals[name]
	if pt == nil {
		return pgerr.New(pgerr.InvalidCursorName, "portal %q does not exist", name)
	}
	ss.cancelled.Store(false)
	ss.txn.waits.startStatement()
	start := time.Now()
	defer func() {
		ss.srv.stats.queries.Add(1)
		ss.srv.stats.queryTimeUs.Add(time.Since(start).Microseconds())
	}()
	if pt.started {
		if s := ss.suspended; s != nil && s.pt == pt {
			return h.resume(s, maxRows)
		}
		if pt.pending == nil {
			// A finished portal answers with an empty result.
			ss.commandComplete("SELECT 0")
			return nil
		}
		return h.serveChunk(pt, maxRows)
	}
	pt.started = true
	ps := pt.stmt
	if ps.st != nil && ps.st.Kind == router.Admin {
		ss.admin(ctx, ps.st, true, pt.results, ss.conn.Results())
		return nil
	}
	ss.srv.currentMetadata(ctx)
	ss.replan(ctx, ps)
	if ps.st == nil {
		ss.w.Raw('I', nil)
		return nil
	}
	if err := ss.txn.pipelineBlock(ctx, ps.st); err != nil {
		return err
	}
	call := stmtCall{extended: true, prm: pt.prm, results: pt.results, portal: pt}
	snap := ss.snapshot()
	if maxRows == 0 || ps.fields == nil {
		err := ss.newExecution(snap, ps.st, ps.in, call, ss.conn.Results()).run(ctx)
		ss.txn.endStatement(ctx)
		return err
	}
	if ps.st.Streamable() {
		return h.startSuspendable(ctx, snap, pt, call, maxRows)
	}
	// A write with a row limit: run it to completion into a spool, and hand the rows
	// out in parts (PortalSuspended between them).
	sp := ss.newSpool()
	// What the write answers was set aside within the session's temp-file-limit while
	// its placements answered (applyWrites); once it is done, its rows must be kept.
	sp.limit = -1
	out := protocol.NewResults(pgwire.NewWriter(sp))
	err := ss.newExecution(snap, ps.st, ps.in, call, out).run(ctx)
	ss.txn.endStatement(ctx)
	out.Flush()
	if err == nil {
		err = sp.Err()
	}
	if err != nil && !errorSent(err) {
		sp.Close()
		return err
	}
	// The write's error, if it failed, is set aside with its results: the client
	// hears it when the portal's results reach it.
	pt.pending, pt.err = sp, err
	return h.serveChunk(pt, maxRows)
}

// serveChunk sends up to maxRows rows of a result set aside, then PortalSuspended, or the
// rest and its CommandComplete (or the statement's error).
func (h handler) serveChunk(pt *portal, maxRows uint32) error {
	ss := h.ss
	sp := pt.pending
	var rows uint32
	var relayed *pgerr.Error // a backend's ErrorResponse, set aside, that reached the client
	for {
		t, body, err := sp.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			ss.dropPortal(pt.name)
			return err
		}
		if t == 'D' && maxRows > 0 && rows == maxRows {
			sp.Unread(t, body)
			ss.w.Raw('s', nil)
			return nil
		}
		switch t {
		case 'D':
			rows++
			ss.w.Raw(t, body)
		case 'C':
			tag := string(trimZero(body))
			if strings.HasPrefix(tag, "SELECT ") {
				tag = "SELECT " + strconv.FormatUint(uint64(rows), 10)
			}
			ss.commandComplete(tag)
		case 'E':
			ss.w.Raw(t, body)
			relayed = backend.DecodeError(body)
		default:
			ss.w.Raw(t, body)
		}
	}
	sp.Close()
	pt.pending = nil
	err := pt.err
	pt.err = nil
	if err == nil && relayed != nil {
		err = markSent(relayed)
	}
	return err
}

// Close handles Close of a statement or a portal.
func (h handler) Close(_ context.Context, m *pgproto3.Close) error {
	ss := h.ss
	switch m.ObjectType {
	case 'S':
		ss.dropStmt(m.Name)
	case 'P':
		if s := ss.suspended; s != nil && s.pt.name == m.Name {
			ss.settle(false)
		}
		ss.dropPortal(m.Name)
	default:
		return pgerr.New(pgerr.ProtocolViolation, "invalid CLOSE message subtype %d", m.ObjectType)
	}
	ss.w.Raw('3', nil)
	return nil
}

// decodeClientError decodes a backend ErrorResponse for the client.
func decodeClientError(b []byte) error {
	e := decodeBackendError(b)
	e.Position = 0
	return e
}

func decodeBackendError(b []byte) *pgerr.Error { return backend.DecodeError(b) }

// prepareSQL handles SQL PREPARE name [(types)] AS statement.
func (ss *session) prepareSQL(ctx context.Context, st *router.Statement) error {
	if _, ok := ss.stmts[st.Name]; ok {
		return pgerr.New(pgerr.DuplicatePStatement, "prepared statement %q already exists", st.Name)
	}
	var oids []uint32
	if len(st.ParamTypes) > 0 {
		c, err := ss.txn.coordConn(ctx)
		if err != nil {
			return err
		}
		q := "SELECT "
		for i, t := range st.ParamTypes {
			if i > 0 {
				q += ", "
			}
			q += router.QuoteLiteral(t) + "::pg_catalog.regtype::pg_catalog.oid"
		}
		rows, err := c.ExecRows(ctx, q)
		if err != nil {
			return err
		}
		for _, v := range rows[0] {
			o, _ := strconv.ParseUint(string(v), 10, 32)
			oids = append(oids, uint32(o))
		}
	}
	ps, err := ss.prepare(ctx, st.Name, st.Query, oids)
	if err != nil {
		return err
	}
	if err := ss.describeStatement(ctx, ps); err != nil {
		return err
	}
	if err := ss.putStmt(st.Name, ps); err != nil {
		return err
	}
	ss.commandComplete("PREPARE")
	return nil
}

// executeSQL runs SQL EXECUTE name(args): the coordinator evaluates the arguments as
// the parameters' types, then the prepared statement runs as an Execute would, with
// text results, where the EXECUTE's go.
func (x *execution) executeSQL(ctx context.Context) error {
	ss, st, in := x.ss, x.st, x.in
	ps := ss.stmts[st.Name]
	if ps == nil {
		return pgerr.New(pgerr.InvalidSQLStatementName, "prepared statement %q does not exist", st.Name)
	}
	if err := ss.describeStatement(ctx, ps); err != nil {
		return err
	}
	if len(st.Args) != len(ps.params) {
		return pgerr.New(pgerr.SyntaxError, "wrong number of parameters for prepared statement %q", st.Name).
			WithDetail("Expected %d parameters but got %d.", len(ps.params), len(st.Args))
	}
	prm := &params{oids: ps.params, worker: ps.workerParams, values: make([][]byte, len(st.Args))}
	if len(st.Args) > 0 {
		values, err := ss.evalArgs(ctx, st.Args, in)
		if err != nil {
			return err
		}
		prm.values = values
	}
	ss.replan(ctx, ps)
	snap := ss.snapshot()
	if ps.st != nil && ps.st.Kind == router.Admin {
		ss.admin(ctx, ps.st, x.extended, x.results, x.out)
		return nil
	}
	if ps.st == nil {
		x.out.Raw('I', nil)
		return nil
	}
	// The results carry no RowDescription: it is sent here (or was, by Describe).
	call := stmtCall{prm: prm, extended: true, portal: x.portal}
	if ps.fields != nil && !x.extended {
		rowDescription(x.out.Writer, ps.fields, nil)
	}
	return ss.newExecution(snap, ps.st, ps.in, call, x.out).run(ctx)
}

// evalArgs evaluates EXECUTE's argument expressions on the coordinator, in text form
// (which the parameters' types then read back, in the same session settings).
func (ss *session) evalArgs(ctx context.Context, args []router.Template, in *router.Input) ([][]byte, error) {
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return nil, err
	}
	var q strings.Builder
	q.WriteString("SELECT ")
	for i, a := range args {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("CAST((")
		q.Write(a.Render(nil, &router.Holes{In: in}))
		q.WriteString(") AS pg_catalog.text)")
	}
	rows, err := c.ExecRows(ctx, q.String())
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, pgerr.New(pgerr.InternalError, "unexpected answer evaluating EXECUTE's arguments")
	}
	return rows[0], nil
}
