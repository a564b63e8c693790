package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/router"
)

// params are a statement's bind parameters (extended protocol); nil for simple queries.
type params struct {
	values  [][]byte
	formats []int16  // per parameter, or one for all, or none (all text)
	oids    []uint32 // declared types; 0 = unspecified
	worker  []uint32 // oids as the workers know them (nil: the same)
}

// oidsFor returns the parameter types for a backend connection: the coordinator's own,
// or the workers'.
func (x *execution) oidsFor(c *backend.Conn, p *params) []uint32 {
	if p.worker == nil || (x.ss.txn.coord != nil && x.ss.txn.coord.Value() == c) {
		return p.oids
	}
	return p.worker
}

// format returns the format code of parameter i (0-based): 0 text, 1 binary.
func (p *params) format(i int) int16 { return bindParams(p).Format(i) }

// run executes the statement, writing its results (but not ReadyForQuery) to the client.
// An error return has not been sent yet.
func (x *execution) run(ctx context.Context) error {
	ss, st, in := x.ss, x.st, x.in
	if ss.txn.tx == txFailed && st.PrepareTx && !ss.txn.pipelineTx {
		// PostgreSQL ends a failed block at PREPARE TRANSACTION as at ROLLBACK.
		ss.dropBlockPortals(x.portal)
		ss.txn.endTx(ctx, false)
		x.out.CommandComplete("ROLLBACK")
		return nil
	}
	if ss.txn.tx == txFailed && !st.RunsWhenFailed() {
		return pgerr.New(pgerr.InFailedSQLTransaction, "current transaction is aborted, commands ignored until end of transaction block")
	}
	if st.DDL {
		defer ss.namesChanged(st.TempDDL)
	}
	switch st.Kind {
	case router.Coordinator:
		if err := ss.txn.checkPrepareTx(st); err != nil {
			return err
		}
		if st.Unparsed {
			return x.unparsedStatement(ctx, render(st.Text, in, nil, nil))
		}
		if st.Listen {
			ss.listening = true
		}
		if st.RunsCode {
			defer ss.codeRan()
		}
		if st.PrepareTx {
			defer ss.txn.prepared(ctx)
		}
		return x.coordinatorStatement(ctx, render(st.Text, in, nil, nil))
	case router.SetVar:
		return ss.setStatement(ctx, x, render(st.Text, in, nil, nil), st.Set)
	case router.Begin:
		if ss.txn.pipelineTx {
			// The pipeline's implicit block becomes the client's, silently as in
			// PostgreSQL (pipelineBlock).
			ss.txn.pipelineTx = false
			ss.srv.stats.xacts.Add(1)
			x.out.CommandComplete(st.Tag)
			return nil
		}
		if ss.txn.tx == txBlock && st.HasOptions {
			// In a block, PostgreSQL warns and then applies BEGIN's options as SET
			// TRANSACTION would (25001 once the block ran a query): the coordinator and
			// the block's workers run it, and it is replayed on those that join later.
			return ss.setStatement(ctx, x, render(st.Text, in, nil, nil), nil)
		}
		if ss.txn.tx != txIdle {
			x.out.Notice(pgerr.New(pgerr.ActiveSQLTransaction, "there is already a transaction in progress").WithSeverity("WARNING"))
		} else {
			ss.txn.beginBlock(render(st.Text, in, nil, nil))
			ss.srv.stats.xacts.Add(1)
		}
		x.out.CommandComplete(st.Tag)
		return nil
	case router.Commit, router.Rollback:
		if ss.txn.tx != txIdle && !ss.txn.pipelineTx {
			// The block's portals end with it, as in PostgreSQL (but the one running
			// this statement), and with them what they set aside.
			defer ss.dropBlockPortals(x.portal)
		}
		if st.Chain {
			if ss.txn.tx == txIdle || ss.txn.pipelineTx {
				return pgerr.New(pgerr.NoActiveSQLTransaction, "%s AND CHAIN can only be used in transaction blocks", st.Tag)
			}
			// The next block starts as this one did (BEGIN with its options, SET
			// TRANSACTION), right after this one ends.
			chain := []string{ss.txn.txReplay[0]}
			for _, s := range ss.txn.txReplay[1:] {
				if w := strings.Fields(strings.ToUpper(s)); len(w) >= 2 && w[0] == "SET" && w[1] == "TRANSACTION" || beginHasOptions(s) {
					chain = append(chain, s)
				}
			}
			// A failed block's characteristics carry over too: PostgreSQL saves them
			// before the abort is cleaned up (a chained block after a failed READ ONLY
			// one is read only).
			defer func() {
				ss.txn.beginBlock(chain...)
				ss.srv.stats.xacts.Add(1)
			}()
		}
		if st.Kind == router.Commit {
			return ss.txn.commit(ctx)
		}
		if ss.txn.tx == txIdle {
			x.out.Notice(pgerr.New(pgerr.NoActiveSQLTransaction, "there is no transaction in progress").WithSeverity("WARNING"))
		}
		ss.txn.endTx(ctx, false)
		x.out.CommandComplete("ROLLBACK")
		return nil
	case router.Savepoint, router.Release, router.RollbackTo:
		return ss.txn.savepoint(ctx, st, render(st.Text, in, nil, nil))
	case router.Select:
		return x.execSelect(ctx)
	case router.Explain:
		return x.explain(ctx)
	case router.Gathered:
		return x.gather(ctx, make([][]*metadata.Shard, len(st.Merge.Pulls)))
	case router.Insert, router.Update, router.Delete:
		return x.execWrite(ctx)
	case router.Function:
		return x.execFunction(ctx)
	case router.DropTable:
		return x.dropTables(ctx)
	case router.Truncate:
		return x.truncate(ctx)
	case router.DDL:
		return x.ddl(ctx)
	case router.Error:
		return st.Err
	case router.CopyIn:
		return x.copyIn(ctx)
	case router.CopyOut:
		return x.copyOut(ctx)
	case router.PrepareSQL:
		return ss.prepareSQL(ctx, st)
	case router.ExecuteSQL:
		return x.executeSQL(ctx)
	case router.DeallocateSQL:
		if st.Name == "" {
			ss.dropAllStmts()
		} else if _, ok := ss.stmts[st.Name]; !ok {
			return pgerr.New(pgerr.InvalidSQLStatementName, "prepared statement %q does not exist", st.Name)
		} else {
			ss.dropStmt(st.Name)
		}
		x.out.CommandComplete("DEALLOCATE")
		return nil
	}
	return pgerr.New(pgerr.InternalError, "unknown statement kind %v", st.Kind)
}

// with is the execution of st, a plan of the same statement (a merge's fallback, an
// EXPLAIN's inner statement), with the same inputs.
func (x *execution) with(st *router.Statement) *execution {
	y := *x
	y.st = st
	return &y
}

// render renders a template with a statement's constants, the tables its holes name and
// the values evaluated for it.
func render(t router.Template, in *router.Input, tables, evals []string) string {
	return string(t.Render(nil, &router.Holes{In: in, Tables: tables, Evals: evals}))
}

// ownStatement marks a statement that writes distributed tables' prototypes on the
// coordinator as pgshard's own, which the prototypes' triggers let through (for
// TRUNCATE, and for writes no shard can match, which the empty prototype answers).
func ownStatement(sql string) string { return sql + "\n" + router.InternalMark }

// coordinatorStatement runs sql, the statement's text as the coordinator runs it, there
// with the execution's parameters and relays the results.
func (x *execution) coordinatorStatement(ctx context.Context, sql string) error {
	c, err := x.conns().coordConn(ctx)
	if err != nil {
		return err
	}
	x.sendSQL(c, []byte(sql), x.prm)
	if err := x.ss.sendTo(c); err != nil {
		return err
	}
	// Sent as Parse/Bind/Execute/Sync, a COPY FROM STDIN has the server ignore that Sync
	// (it came during the copy): after CopyDone it waits for another.
	res, err := x.relay(ctx, c, relayOpts{coordinator: true, syncAfterCopy: x.prm != nil || x.extended})
	if err != nil {
		return err
	}
	return x.afterCoordinator(res)
}

// sendSQL queues the statement's SQL (as rewritten for c) on a backend connection with
// the bind parameters prm: a simple Query, or, with parameters or for an Execute,
// Parse/Bind/Execute/Sync with them and the client's result formats.
func (x *execution) sendSQL(c *backend.Conn, sql []byte, prm *params) {
	if prm == nil && !x.extended {
		c.QueryBytes(sql)
		return
	}
	if prm == nil {
		prm = &params{}
	}
	c.SendExtended(sql, x.oidsFor(c, prm), prm.formats, prm.values, x.results, false)
}

// sendInternal queues a query whose rows the proxy reads itself (partial aggregates):
// text results with their RowDescription, and the bind parameters prm if any.
func (x *execution) sendInternal(c *backend.Conn, sql []byte, prm *params) {
	if prm == nil {
		c.QueryBytes(sql)
		return
	}
	c.SendExtended(sql, x.oidsFor(c, prm), prm.formats, prm.values, nil, true)
}

// afterCoordinator brings the session's transaction state in line with the coordinator's
// after a statement relayed from it, and returns the error the client heard, if any.
func (x *execution) afterCoordinator(res relayResult) error {
	if res.err != nil {
		x.ss.txn.failBlock()
	}
	return res.failed()
}

// codeRan is called after a statement ran code of the client's on the coordinator: a
// function may have called set_config(), which PostgreSQL does not report for every
// setting (search_path), so the settings are read again before they reach a worker and
// names resolved again.
func (ss *session) codeRan() {
	ss.settingsDirty, ss.namesDirty = true, true
}

// setStatement runs SET/RESET/DISCARD (set, as the router read it), or a query calling
// set_config (set nil), on the coordinator; the session's other backends get the new
// settings before their next use (inside a transaction block, at once).
func (ss *session) setStatement(ctx context.Context, x *execution, sql string, set *router.SetPlan) error {
	if err := ss.setBound(sql); err != nil {
		return err
	}
	ss.noteCustomSettings(sql, set)
	// A statement whose error the coordinator answered may have changed settings
	// still (a multi-statement string): the settings are read back as after success.
	ranErr := x.coordinatorStatement(ctx, sql)
	if ranErr != nil && !errorSent(ranErr) {
		return ranErr
	}
	ss.settingsDirty = true
	ss.namesDirty = true // search_path may have changed
	ss.privOK = nil      // and the role
	// A SET, RESET or DISCARD that failed changed nothing to restore (and its
	// coordinator transaction may be aborted, refusing any query).
	var restore string
	if ranErr == nil {
		var err error
		if restore, err = ss.restoreStartup(ctx, set); err != nil {
			return err
		}
	}
	if ss.txn.coord != nil {
		ss.txn.idleSettingChanged(ctx, ss.txn.coord.Value(), sql)
	}
	if set != nil && set.Discards() {
		// DISCARD ALL and DISCARD PLANS drop prepared statements, here and on the
		// coordinator connection.
		if set.Action == router.DiscardAll {
			for name := range ss.portals {
				ss.dropPortal(name)
			}
			ss.dropAllStmts()
		}
		if ss.txn.coord != nil {
			ss.txn.coord.Value().ForgetStatements()
		}
	}
	if ss.txn.tx == txBlock && !proxyOnlySet(set) {
		// The workers' RESET returns to the server's defaults too: they take the
		// startup values the coordinator got back.
		replay := sql
		if restore != "" {
			replay += "; " + restore
		}
		if err := ss.txn.replayBound(replay); err != nil {
			return err
		}
		ss.txn.txReplay = append(ss.txn.txReplay, replay)
		for _, res := range ss.txn.txConns {
			if err := ss.txn.blockExec(ctx, res.Value(), replay, false); err != nil {
				return err
			}
		}
	}
	if ss.txn.tx == txIdle {
		ss.refreshSettings(ctx)
	}
	return ranErr
}

// restoreStartup re-applies startup-packet settings after RESET and DISCARD ALL: in
// PostgreSQL they reset to the startup values, but the proxy applied those with SET on a
// pooled connection, where RESET would return to the server's defaults. It returns the
// query it ran ("" if none), for the workers of a transaction block.
func (ss *session) restoreStartup(ctx context.Context, set *router.SetPlan) (string, error) {
	if len(ss.startupValues) == 0 || ss.txn.coord == nil || set == nil {
		return "", nil
	}
	var names []string
	switch name, all := set.ResetsToDefault(); {
	case all:
		for n := range ss.startupValues {
			names = append(names, n)
		}
	case name != "":
		if _, ok := ss.startupValues[name]; ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	// SET LOCAL name TO DEFAULT: the startup value until the transaction ends.
	local := "false"
	if set.Local {
		local = "true"
	}
	q := "SELECT "
	for i, n := range names {
		if i > 0 {
			q += ", "
		}
		q += "pg_catalog.set_config(" + router.QuoteLiteral(n) + ", " + router.QuoteLiteral(ss.startupValues[n]) + ", " + local + ")"
	}
	return q, ss.txn.coord.Value().Exec(ctx, q)
}

// sendTo flushes a backend connection, registering it as running for cancel requests.
func (ss *session) sendTo(c *backend.Conn) error {
	ss.startRunning(c)
	if err := c.Flush(); err != nil {
		ss.stopRunning(c)
		return err
	}
	return nil
}

// relayOpts configure relay.
type relayOpts struct {
	// coordinator: the backend is the session's coordinator connection, whose
	// ParameterStatus and notification messages concern the client.
	coordinator bool
	// quiet: drop result messages instead of forwarding them (errors still returned).
	quiet bool
	// mapPos maps an error position in the text the backend ran to the client's text.
	mapPos func(int32) int32
	// noComplete drops CommandComplete (the caller sends its own tag).
	noComplete bool
	// syncAfterCopy: the statement went with the extended protocol, whose Sync the
	// server ignored during COPY FROM STDIN; another follows the copy.
	syncAfterCopy bool
}

// relayResult is what relay saw.
type relayResult struct {
	err  *pgerr.Error // an ErrorResponse the backend sent (already forwarded unless quiet)
	tag  string       // the last CommandComplete tag
	rows int64
}

// failed is the backend's error, marked as already sent to the client (nil if none).
func (r relayResult) failed() error {
	if r.err == nil {
		return nil
	}
	return markSent(r.err)
}

// relay forwards a backend's response to the client until ReadyForQuery, frame by frame.
// It handles COPY in both directions. An error return means the backend connection
// failed (it is then broken); an ErrorResponse from the backend is in the result.
func (x *execution) relay(ctx context.Context, c *backend.Conn, o relayOpts) (relayResult, error) {
	ss := x.ss
	defer ss.stopRunning(c)
	stop := c.WatchContext(ctx)
	defer stop()
	var res relayResult
	for {
		t, b, err := c.Next()
		if err != nil {
			return res, err
		}
		switch t {
		case 'Z':
			return res, nil
		case 'D':
			res.rows++
			if !o.quiet {
				x.out.Raw(t, b)
			}
		case 'C':
			res.tag = string(trimZero(b))
			if !o.quiet && !o.noComplete {
				x.out.Raw(t, b)
			}
		case 'E':
			e := backend.DecodeError(b)
			changed := c.MapError != nil && c.MapError(e)
			if o.coordinator && scrubInternal(e, false) {
				changed = true
			}
			if o.mapPos != nil && e.Position > 0 {
				e.Position = o.mapPos(e.Position)
				changed = true
			}
			if changed && !o.quiet {
				x.out.Msg(errorResponse(e))
			} else if !o.quiet {
				x.out.Raw(t, b) // as the server sent it, with every field
			}
			if res.err == nil {
				res.err = e
			}
		case 'S':
			if o.coordinator {
				var ps pgproto3.ParameterStatus
				if ps.Decode(b) == nil {
					ss.params[ps.Name] = ps.Value
				}
				x.out.Raw(t, b)
			}
		case 'A':
			if o.coordinator {
				x.out.Raw(t, b)
			}
		case '1', '2', '3':
			// The client hears of its own Parse, Bind and Close from the proxy.
		case 'G':
			x.out.Raw(t, b)
			x.out.Flush()
			if err := ss.pumpCopyIn(c); err != nil {
				return res, err
			}
			if o.syncAfterCopy {
				c.Writer().Msg(&pgproto3.Sync{})
				if err := c.Flush(); err != nil {
					return res, err
				}
			}
		case 'N':
			forwardNotice(x.out.Writer, ss.srv, c, b)
		case 'W':
			c.MarkBroken()
			return res, pgerr.New(pgerr.FeatureNotSupported, "COPY BOTH is not supported by pgshard")
		default:
			// RowDescription, NoData, EmptyQueryResponse, PortalSuspended, notices,
			// CopyOutResponse, CopyData, CopyDone, ...
			if !o.quiet || t == 'N' {
				x.out.Raw(t, b)
			}
		}
	}
}

// forwardNotice writes a backend's NoticeResponse to w, the client's, a worker's in the
// client's names (srv knows them).
func forwardNotice(w *pgwire.Writer, srv *Server, c *backend.Conn, b []byte) {
	if c.MapError != nil {
		forwardShardNotice(w, srv, b)
		return
	}
	if bytes.Contains(b, []byte("pgs_distribution_metadata")) {
		// A notice raised inside the metadata schema's event triggers: without their
		// context lines.
		if e := backend.DecodeError(b); scrubInternal(e, false) {
			nr := pgproto3.NoticeResponse(*errorResponse(e))
			w.Msg(&nr)
			return
		}
	}
	w.Raw('N', b)
}

// forwardShardNotice writes a worker's NoticeResponse to w in the client's names.
func forwardShardNotice(w *pgwire.Writer, srv *Server, b []byte) {
	if e := backend.DecodeError(b); srv.unshardNames(e) {
		nr := pgproto3.NoticeResponse(*errorResponse(e))
		w.Msg(&nr)
		return
	}
	w.Raw('N', b)
}

func trimZero(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == 0 {
		return b[:len(b)-1]
	}
	return b
}

// pumpCopyIn forwards the client's COPY data to the backend until CopyDone or CopyFail.
func (ss *session) pumpCopyIn(c *backend.Conn) error {
	w := c.Writer()
	for {
		t, b, err := ss.readCopyData(false)
		if err != nil {
			// The client went away mid-COPY: abort it on the backend.
			w.Msg(&pgproto3.CopyFail{Message: "client connection lost during COPY"})
			c.Flush()
			return pgerr.Wrap(err, pgerr.ConnectionFailure, "client connection lost during COPY")
		}
		switch t {
		case 'd':
			w.Raw(t, b)
			if w.Len() > 64<<10 {
				if err := c.Flush(); err != nil {
					return err
				}
			}
		case 'c', 'f':
			w.Raw(t, b)
			return c.Flush()
		case 'H', 'S':
			// Ignored during COPY IN, as PostgreSQL does.
		default:
			w.Msg(&pgproto3.CopyFail{Message: fmt.Sprintf("unexpected message type 0x%02X during COPY from stdin", t)})
			return c.Flush()
		}
	}
}

// markInactive records that placements missed writes, on the coordinator and in this
// proxy's snapshot, and warns the client about each. It returns only when the change is
// committed.
func (s *Server) markInactive(ctx context.Context, ps []metadata.Placement, out *protocol.Results) error {
	states := map[int64]metadata.ShardState{}
	for _, p := range ps {
		states[p.ID] = metadata.StateInactive
	}
	if err := s.store.ChangePlacementStates(ctx, s.cache, states); err != nil {
		var last *store.LastPlacementError
		if errors.As(err, &last) {
			s.log.Error("could not mark placement inactive: it is the shard's last finalized one", "placement", last.PlacementID, "shard", last.ShardID)
			return pgerr.Wrap(err, pgerr.InternalError, "could not mark a placement of table %s inactive: no other placement of its rows is finalized", s.shardTableName(last.ShardID)).
				WithDetail("The placement missed a write that only placements already marked inactive took.").
				WithHint("The write is undone where it is still in a transaction; the shard keeps its last finalized placement.")
		}
		return pgerr.Wrap(err, pgerr.InternalError, "could not record failed placements: %v", err).
			WithDetail("The write may have been applied to some placements.")
	}
	for _, p := range ps {
		s.log.Warn("placement marked inactive", "placement", p.ID, "shard", p.ShardID, "node", p.Node.String())
		if out != nil {
			// The table, not the shard and placement ids (the log above has them).
			out.Notice(pgerr.New(pgerr.Warning, "a placement of table %s on %s is now inactive", s.shardTableName(p.ShardID), fmtNode(p.Node)).
				WithSeverity("WARNING").WithHint("It missed a write; it will be repaired when %s is reachable again.", fmtNode(p.Node)))
		}
	}
	return nil
}

// beginHasOptions reports whether a BEGIN or START TRANSACTION statement sets
// transaction characteristics (isolation level, read only, deferrable). A comment taken
// for an option costs only a trip to the coordinator, which then merely warns.
func beginHasOptions(sql string) bool {
	w := strings.Fields(strings.ToUpper(strings.TrimRight(strings.TrimSpace(sql), "; \t\n")))
	switch {
	case len(w) == 0:
		return false
	case w[0] == "BEGIN":
		w = w[1:]
	case w[0] == "START" && len(w) >= 2 && w[1] == "TRANSACTION":
		return len(w) > 2
	default:
		return false
	}
	return len(w) > 1 || len(w) == 1 && w[0] != "WORK" && w[0] != "TRANSACTION"
}
