package proxy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/pghash"
)

// writeTask is a write to one shard: the SQL every finalized placement runs.
type writeTask struct {
	shard *metadata.Shard
	sql   []byte
	// rows are the positions, in the statement's own order, of the rows an INSERT sends
	// this shard (nil for other writes): RETURNING answers in that order, as PostgreSQL
	// does for one table.
	rows []int
	// keys are the hashes of the partition-key values of the rows the write touches, when
	// the statement pins them (INSERT ... VALUES, a filter on the partition key); nil when
	// it does not (locks.go: such a write locks the whole shard).
	keys []int32
}

// execWrite runs an INSERT, UPDATE or DELETE on a distributed table.
func (x *execution) execWrite(ctx context.Context) error {
	t, err := shardedTable(x.snap, x.st.Table)
	if err != nil {
		return err
	}
	switch {
	case x.st.Kind == router.Insert && x.st.Source != nil:
		return x.insertSelect(ctx, t)
	case x.st.Source != nil:
		return x.modifySelected(ctx, t)
	}
	tasks, err := x.writeTasks(ctx, t)
	if err != nil || tasks == nil {
		return err
	}
	return x.runWrites(ctx, tasks)
}

// writeTasks computes the statements each shard of a write receives. A nil result with no
// error means the statement was answered already (no row to insert, or no shard can hold
// a matching row).
func (x *execution) writeTasks(ctx context.Context, t *metadata.Table) ([]writeTask, error) {
	st, in, prm := x.st, x.in, x.prm
	// Values the coordinator evaluates once for every placement.
	groups := make([][]router.Eval, 0, len(st.Rows)+1)
	for _, r := range st.Rows {
		groups = append(groups, r.Evals)
	}
	groups = append(groups, st.Evals)
	ev, err := x.evaluate(ctx, groups, prm)
	if err != nil {
		return nil, err
	}
	stEvals := ev[len(ev)-1]

	var tasks []writeTask
	switch {
	case st.Kind == router.Insert:
		tasks, err = x.insertTasks(ctx, t, ev)
	default:
		shards, pinned, serr := x.pinnedShards(ctx, t, st.Filter, stEvals)
		if serr != nil {
			return nil, serr
		}
		if len(shards) == 0 {
			// No shard can hold a matching row: the coordinator's empty prototype
			// answers UPDATE 0 / DELETE 0 (and RETURNING's columns).
			return nil, x.coordinatorStatement(ctx, ownStatement(render(st.Text, in, nil, nil)))
		}
		lits := literals(stEvals)
		for _, sh := range shards {
			holes := &router.Holes{In: in, Tables: []string{router.ShardName(t.Schema, t.Name, sh.ID)}, Evals: lits}
			task := writeTask{shard: sh, sql: st.Shard.Render(nil, holes)}
			if pinned != nil {
				task.keys = hashesIn(sh, pinned)
			}
			tasks = append(tasks, task)
		}
	}
	return tasks, err
}

// insertTasks splits an INSERT's rows by shard.
func (x *execution) insertTasks(ctx context.Context, t *metadata.Table, ev [][]evaluated) ([]writeTask, error) {
	ss, st, in, prm := x.ss, x.st, x.in, x.prm
	hashes := make([]int32, len(st.Rows))
	kh := keyHasher{ss: ss, col: t.KeyColumn()}
	for i, r := range st.Rows {
		if r.Key.Kind == router.ValParam && prm != nil && r.Key.Index-1 < len(prm.values) && prm.values[r.Key.Index-1] == nil {
			return nil, pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
		}
		if err := kh.add(r.Key, in, prm, ev[i], &hashes[i]); err != nil {
			return nil, err
		}
	}
	if err := kh.flush(ctx); err != nil {
		return nil, err
	}
	byShard := map[int64][]int{}
	var order []*metadata.Shard
	for i := range st.Rows {
		shards := t.ShardsFor(hashes[i])
		switch len(shards) {
		case 0:
			return nil, pgerr.New(pgerr.ObjectNotInPrereqState, "could not find destination shard for new row").
				WithDetail("Target relation does not contain any shards capable of storing the new row.")
		case 1:
		default:
			return nil, pgerr.New(pgerr.FeatureNotSupported, "cannot modify multiple shards during a single query").
				WithDetail("The shards' hash ranges overlap.")
		}
		id := shards[0].ID
		if byShard[id] == nil {
			order = append(order, shards[0])
		}
		byShard[id] = append(byShard[id], i)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].ID < order[j].ID })
	suffix := literals(ev[len(ev)-1])
	tasks := make([]writeTask, 0, len(order))
	for _, sh := range order {
		holes := &router.Holes{In: in, Tables: []string{router.ShardName(t.Schema, t.Name, sh.ID)}, Shard: sh.ID}
		sql := st.InsertPrefix.Render(nil, holes)
		for k, ri := range byShard[sh.ID] {
			if k > 0 {
				sql = append(sql, ", "...)
			}
			holes.Evals = literals(ev[ri])
			sql = st.Rows[ri].Text.Render(sql, holes)
		}
		holes.Evals = suffix
		sql = st.InsertSuffix.Render(sql, holes)
		keys := make([]int32, 0, len(byShard[sh.ID]))
		for _, ri := range byShard[sh.ID] {
			keys = append(keys, hashes[ri])
		}
		tasks = append(tasks, writeTask{shard: sh, sql: sql, rows: byShard[sh.ID], keys: keys})
	}
	return tasks, nil
}

// rowsByShard groups source rows by the shard their partition key hashes to (the value
// at keyPos, or its canonical form in the last column).
func (x *execution) rowsByShard(ctx context.Context, t *metadata.Table, rows [][][]byte, keyPos int) ([]*metadata.Shard, map[int64][]int, error) {
	n := len(rows)
	hashes := make([]int32, n)
	kh := keyHasher{ss: x.ss}
	keyType := t.KeyColumn().HashType
	for i, r := range rows {
		if r[keyPos] == nil {
			return nil, nil, pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
		}
		if canon := r[len(r)-1]; canon != nil {
			h, ok := pghash.HashCanonical(keyType, canon)
			if !ok {
				return nil, nil, pgerr.New(pgerr.InternalError, "could not hash a value of type %s", typeNameOf(keyType))
			}
			hashes[i] = h
		} else if err := kh.addText(keyType, r[keyPos], &hashes[i]); err != nil {
			return nil, nil, err
		}
	}
	if err := kh.flush(ctx); err != nil {
		return nil, nil, err
	}
	byShard := map[int64][]int{}
	var order []*metadata.Shard
	for i := range rows {
		shards := t.ShardsFor(hashes[i])
		if len(shards) != 1 {
			return nil, nil, pgerr.New(pgerr.ObjectNotInPrereqState, "could not find destination shard for new row").
				WithDetail("Target relation does not contain any shards capable of storing the new row.")
		}
		if byShard[shards[0].ID] == nil {
			order = append(order, shards[0])
		}
		byShard[shards[0].ID] = append(byShard[shards[0].ID], i)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].ID < order[j].ID })
	return order, byShard, nil
}

// appendValues appends rows (the first len(types) values of each) as a VALUES list of
// typed literals.
func appendValues(sql []byte, rows [][][]byte, which []int, types []string) []byte {
	for k, ri := range which {
		if k > 0 {
			sql = append(sql, ", "...)
		}
		sql = append(sql, '(')
		for ci, v := range rows[ri][:len(types)] {
			if ci > 0 {
				sql = append(sql, ", "...)
			}
			if v == nil {
				sql = append(sql, "NULL::"...)
			} else {
				sql = append(sql, router.QuoteLiteral(string(v))...)
				sql = append(sql, "::"...)
			}
			sql = append(sql, types[ci]...)
		}
		sql = append(sql, ')')
	}
	return sql
}

// sourceTypes are the type names of st.SourceCols.
func sourceTypes(t *metadata.Table, st *router.Statement) (types []string, keyPos int) {
	keyPos = -1
	types = make([]string, len(st.SourceCols))
	for i, ci := range st.SourceCols {
		types[i] = t.Columns[ci].TypeName
		if ci == t.KeyIndex && keyPos < 0 {
			keyPos = i
		}
	}
	return types, keyPos
}

// placementWrite is one placement's part of a write.
type placementWrite struct {
	task       int
	p          metadata.Placement
	wc         workerConn
	err        error        // the placement was unavailable
	sent       bool         // the statement reached the connection before it failed (err != nil: outcome unknown)
	extraReady bool         // a separate BEGIN was sent: one more ReadyForQuery to read
	pgErr      *pgerr.Error // the placement answered with an error
	commitErr  error        // the COMMIT of the statement's own transaction failed
	tag        string
	// gid names the prepared transaction when PREPARE TRANSACTION went out with the
	// write, in the same query text (an implicit write through several connections whose
	// decision's xid was known: send); prepared says the placement prepared it, prepErr
	// that it refused to (the statement itself succeeded).
	gid      string
	prepared bool
	prepErr  error
	cmds     int // CommandCompletes read so far
	// out holds the RowDescription, DataRow and NoticeResponse frames to forward (in
	// memory up to a share of work-mem, beyond in a temporary file); rows are the
	// offsets of its DataRows.
	out  *spool
	rows []int64
}

// runWrites applies write tasks to every finalized placement of their shards. A placement
// that is unavailable while another placement of its shard took the write is marked
// inactive before the client hears of success; an error every placement gives goes to the
// client and marks nothing; a placement whose answer differs from its siblings' is marked
// inactive with a warning. Writes that span several shards run in one transaction on
// every placement, so they apply everywhere or nowhere.
func (x *execution) runWrites(ctx context.Context, tasks []writeTask) error {
	sentDesc := false
	n, err := x.applyWrites(ctx, tasks, &sentDesc)
	if err != nil {
		return err
	}
	x.writeComplete(n)
	return nil
}

// writeComplete sends a write's CommandComplete with its total row count.
func (x *execution) writeComplete(n int64) {
	switch x.st.Kind {
	case router.Truncate:
		// The caller completes TRUNCATE.
	case router.Insert:
		x.out.CommandComplete("INSERT 0 " + strconv.FormatInt(n, 10))
	case router.Update:
		x.out.CommandComplete("UPDATE " + strconv.FormatInt(n, 10))
	case router.Delete:
		x.out.CommandComplete("DELETE " + strconv.FormatInt(n, 10))
	}
}

// applyWrites does runWrites' work but for the CommandComplete: it forwards the
// RETURNING rows (with the RowDescription unless *sentDesc) and returns the row count.
//
// Its steps (writeRun's methods): lock the shards and take their current placements,
// send the statement to every placement, collect the answers, decide each shard's outcome
// (with outcome.go's rules), then either fail the statement everywhere or mark the
// placements that missed it, commit, and forward the chosen answers.
func (x *execution) applyWrites(ctx context.Context, tasks []writeTask, sentDesc *bool) (int64, error) {
	if err := x.lockShards(ctx, tasks); err != nil {
		return 0, err
	}
	// With the locks held, the placements are what they are now: a repair that held the
	// lock may have finalized one since the statement was planned.
	currentShards(x.ss.snapshot(), tasks)
	return x.newWriteRun(tasks).apply(ctx, sentDesc)
}

// newWriteRun is the run of tasks over the session's backend connections, marking
// placements in the coordinator's metadata.
func (x *execution) newWriteRun(tasks []writeTask) *writeRun {
	return &writeRun{x: x, marker: sessionMarker{x.ss.srv, x.out}, tasks: tasks, implicit: implicitWrite(x.ss.txn.tx, x.st, tasks), decider: &x.ss.txn}
}

// apply is applyWrites once the shards are locked: it sends the tasks, collects and
// decides the answers, marks, commits and forwards the chosen answers.
func (wr *writeRun) apply(ctx context.Context, sentDesc *bool) (int64, error) {
	ss, tasks := wr.x.ss, wr.tasks
	if wr.implicit && wr.decider != nil && finalizedCount(tasks) > 1 {
		// Two-phase commit's first step on the coordinator, before the write goes out:
		// when the xid is known already, each placement prepares right after the write,
		// in the same query text (send); else step 1's round trip overlaps the write's.
		wr.startDecision(ctx)
		defer wr.endDecision(ctx)
	}
	wr.send(ctx)
	defer wr.release()
	if len(wr.writes) == 0 {
		return 0, pgerr.New(pgerr.InternalError, "could not modify any active placements").
			WithDetail("Shard %d has no finalized placement.", tasks[0].shard.ID)
	}
	if err := wr.collect(ctx); err != nil {
		// The answers did not fit in the session's temporary files, or the coordinator
		// connection holding the write locks was lost meanwhile: the statement fails,
		// and is undone (the implicit transaction rolls back, a block is failed).
		wr.undo(ctx)
		return 0, err
	}
	if ss.txn.tx == txBlock {
		for _, w := range wr.writes {
			if w.err == nil && w.pgErr == nil {
				ss.txn.noteTxWrite(w.p)
			}
		}
	}

	d := wr.decide()
	if d.failErr != nil {
		return 0, wr.fail(ctx, d)
	}
	// Marks are committed on the coordinator before the write is: a proxy that dies in
	// between leaves a placement marked that is merely repaired, never one that silently
	// misses a write.
	for _, w := range d.warnings {
		wr.x.out.Notice(w)
	}
	if len(d.marks) > 0 {
		if err := wr.marker.markInactive(ctx, d.marks); err != nil {
			wr.undo(ctx)
			return 0, err
		}
	}
	if wr.implicit {
		if err := wr.commitImplicit(ctx, d.byTask); err != nil {
			return 0, err
		}
	}
	// Results: RETURNING rows of the chosen placement of each shard; counts summed.
	var n int64
	for _, w := range d.chosen {
		n += tagCount(w.tag)
	}
	if err := forwardReturning(wr.x, tasks, d.chosen, sentDesc); err != nil {
		return 0, err
	}
	return n, nil
}

// finalizedCount is the number of placements the tasks go to.
func finalizedCount(tasks []writeTask) int {
	n := 0
	for _, task := range tasks {
		n += len(task.shard.Finalized())
	}
	return n
}

// currentShards replaces the tasks' shards by their state in snap (if still there).
func currentShards(snap *metadata.Snapshot, tasks []writeTask) {
	for i := range tasks {
		if cur := snap.Shard(tasks[i].shard.ID); cur != nil {
			tasks[i].shard = cur
		}
	}
}

// implicitWrite reports whether a write runs in a transaction of its own on each
// placement. Outside a transaction block a write that goes to several placements does,
// committed only once every placement has answered: an error on one placement then undoes
// the statement everywhere.
func implicitWrite(tx txStatus, st *router.Statement, tasks []writeTask) bool {
	if tx != txIdle {
		return false
	}
	n := 0
	for _, task := range tasks {
		n += len(task.shard.Finalized())
	}
	// A write with RETURNING runs in a transaction of its own even on one placement:
	// its rows are set aside until it ends (spool), and when they exceed the
	// session's temp-file-limit the write must be undone, as in PostgreSQL.
	return n > 1 || st.Returning
}

// writeRun is one write statement's work on its placements (applyWrites' steps): its
// tasks, whether it runs in a transaction of its own on each placement, and one
// placementWrite per placement, in task order.
type writeRun struct {
	// x is the statement's execution, whose backends (x.conns()) the placements'
	// connections come from.
	x *execution
	// marker marks the placements that missed the write: the server's metadata
	// (newWriteRun), or a recorder in the executor's unit tests.
	marker   placementMarker
	tasks    []writeTask
	implicit bool
	writes   []*placementWrite
	// decider gives the coordinator connection that records the decision of an
	// implicit write committed on several placements (two-phase commit); nil (the
	// executor's unit tests) commits each placement in one phase.
	decider decisionConner
	// tp is the two-phase commit whose first step went out with the write
	// (startDecision).
	tp *twoPhase
}

// decisionConner gives the coordinator connection in which a statement outside a
// transaction block records its two-phase commit decision (txnState.stmtDecisionConn).
type decisionConner interface {
	stmtDecisionConn(ctx context.Context) (c *backend.Conn, open bool, err error)
}

// placementMarker marks placements inactive: committed on the coordinator (and told to
// the client) before the write that they missed is.
type placementMarker interface {
	markInactive(ctx context.Context, ps []metadata.Placement) error
}

// sessionMarker marks placements in the server's metadata, warning the client among the
// statement's results.
type sessionMarker struct {
	srv *Server
	out *protocol.Results
}

func (m sessionMarker) markInactive(ctx context.Context, ps []metadata.Placement) error {
	// A mark is finished even when the session is cancelled meanwhile (a client's
	// cancel, the proxy's shutdown): the write it guards may be committed already.
	ctx, cancel := commitContext(ctx)
	defer cancel()
	return m.srv.markInactive(ctx, ps, m.out)
}

// send sends each task's statement to every finalized placement of its shard (after a
// BEGIN if implicit), adding a placementWrite per placement. A placement that could not
// be reached or refused the session has err or pgErr set; the others hold their
// connection (release gives them back).
func (wr *writeRun) send(ctx context.Context) {
	x, ss, implicit := wr.x, wr.x.ss, wr.implicit
	prepared := 0
	for ti, task := range wr.tasks {
		for _, p := range task.shard.Finalized() {
			w := &placementWrite{task: ti, p: p}
			wr.writes = append(wr.writes, w)
			wc, err := x.conns().workerConn(ctx, p.Node)
			if err != nil {
				if !backend.Unavailable(err) {
					// The client's error (a session setting the worker refused, say):
					// decided with the others' answers, so that it undoes the write.
					w.pgErr = pgerr.From(err)
					continue
				}
				w.err = err
				continue
			}
			w.wc = wc
			c := wc.conn()
			switch {
			case implicit && x.prm == nil && !x.extended && wr.tp != nil && wr.tp.xid != 0 && !wr.tp.xidPending:
				// Two-phase commit's name is known: the placement prepares at once, and
				// its answer says whether it did (collectOne). One round trip less.
				prepared++
				w.gid = "pgshard_" + strconv.FormatInt(wr.tp.xid, 10) + "_" + strconv.Itoa(prepared)
				q := append([]byte("BEGIN;"), task.sql...)
				c.QueryBytes(append(q, "; PREPARE TRANSACTION "+router.QuoteLiteral(w.gid)...))
			case implicit && x.prm == nil && !x.extended:
				// One Query message: the placement answers both with one ReadyForQuery.
				c.QueryBytes(append([]byte("BEGIN;"), task.sql...))
			case implicit:
				// BEGIN before the statement, in the same pipeline and before its Sync.
				c.Writer().Msg(&pgproto3.Query{String: "BEGIN"})
				x.sendSQL(c, task.sql, x.prm)
				w.extraReady = true
			default:
				if x.prm == nil && !x.extended {
					if join, ok := c.TakeJoin(); ok {
						// The placement joins the block with this write: one Query
						// message, the block's opening at its head.
						c.QueryBytes(append([]byte(join+"; "), task.sql...))
						break
					}
				}
				x.sendSQL(c, task.sql, x.prm)
			}
			if err := ss.sendTo(c); err != nil {
				w.err = err
			} else {
				w.sent = true
			}
		}
	}
}

// sentCount is the number of placements the write went out to.
func (wr *writeRun) sentCount() int {
	n := 0
	for _, w := range wr.writes {
		if w.sent && w.err == nil {
			n++
		}
	}
	return n
}

// release closes the writes' spools and gives their connections back; a connection given
// up with its answer unread is marked broken.
func (wr *writeRun) release() {
	ss := wr.x.ss
	for _, w := range wr.writes {
		w.out.Close()
		if w.wc.res != nil {
			ss.stopRunning(w.wc.conn())
			if w.wc.conn().Busy() {
				// Given up with its answer unread (an early error return): the
				// connection is not at a statement boundary, also inside a block.
				w.wc.conn().MarkBroken()
			}
			wr.x.conns().release(w.wc)
		}
	}
}

// collect reads every placement's answer into its spool. It fails when the coordinator
// connection holding the write locks is lost meanwhile (watchLocks), and when the answers
// do not fit in the session's temporary files, unless they are only the notices of a
// write already committed on its one placement (those past the limit are then dropped
// with a warning).
func (wr *writeRun) collect(ctx context.Context) error {
	ss, writes, implicit := wr.x.ss, wr.writes, wr.implicit
	// What the placements answer is set aside until every one has: each keeps a share
	// of work-mem in memory.
	memShare := max(64<<10, ss.srv.workMem()/len(writes))
	var spoolErr error
	// A lost coordinator connection lost the write locks: the write must not wait on.
	stopWatch := wr.watchLocks()
	for _, w := range writes {
		w.out = ss.newSpool()
		w.out.memMax = memShare
		if w.err == nil && w.wc.res != nil {
			wr.collectOne(ctx, w)
		}
		if err := w.out.Err(); err != nil && spoolErr == nil {
			spoolErr = err
		}
	}
	if stopWatch() {
		return errLocksLost()
	}
	if spoolErr != nil && !implicit && ss.txn.tx == txIdle {
		// Only notices (no RETURNING) of a write already committed on its one placement:
		// the ones past the limit are dropped, not the write.
		wr.x.out.Notice(pgerr.New(pgerr.Warning, "notices of the statement were dropped: %v", spoolErr).WithSeverity("WARNING"))
		spoolErr = nil
	}
	return spoolErr
}

// undo undoes a failed statement: its implicit transaction rolls back on every
// placement; a transaction block is now failed, and its ROLLBACK (or ROLLBACK TO) undoes
// it.
func (wr *writeRun) undo(ctx context.Context) {
	if wr.implicit {
		finishImplicit(ctx, wr.writes, false)
	}
	wr.x.ss.txn.failBlock()
}

// tasksDecision is what writeRun.decide made of a write's answers.
type tasksDecision struct {
	byTask   [][]*placementWrite // the writes of each task
	chosen   []*placementWrite   // each task's canonical placement (nil when failErr)
	marks    []metadata.Placement
	warnings []*pgerr.Error // one per mark
	// failErr is the first task's error that fails the statement, failNotices the
	// notices of the placement that gave it.
	failErr     error
	failNotices *spool
}

// decide decides each task from its placements' outcomes (outcome.go has the rules):
// the canonical placement, the placements to mark inactive with their warnings, and the
// error that fails the statement, if any.
func (wr *writeRun) decide() tasksDecision {
	ss, tasks, writes, implicit := wr.x.ss, wr.tasks, wr.writes, wr.implicit
	inBlock := ss.txn.tx != txIdle
	d := tasksDecision{
		chosen: make([]*placementWrite, len(tasks)),
		byTask: make([][]*placementWrite, len(tasks)),
	}
	for _, w := range writes {
		d.byTask[w.task] = append(d.byTask[w.task], w)
	}
	for ti, ws := range d.byTask {
		outs := make([]writeOutcome, len(ws))
		for i, w := range ws {
			outs[i] = w.outcome()
		}
		td := decideWrite(outs, inBlock, inBlock || implicit)
		var canon *placementWrite
		if td.chosen >= 0 {
			canon = ws[td.chosen]
		}
		for k, i := range td.marks {
			d.marks = append(d.marks, ws[i].p)
			d.warnings = append(d.warnings, markWarning(ws[i], td.reasons[k], canon))
		}
		if td.err != nil {
			if d.failErr == nil {
				d.failErr = taskError(td.err, ss.shardRef(tasks[ti].shard.ID), ws)
				for _, w := range ws {
					if w.pgErr != nil && w.pgErr == td.err {
						d.failNotices = w.out
					}
				}
			}
			continue
		}
		d.chosen[ti] = canon
	}
	return d
}

// fail ends a statement that failed on some task: it is undone on every placement,
// the warnings are sent and the placements to mark are marked, then the notices of the
// failing placement and the error (returned) go to the client.
func (wr *writeRun) fail(ctx context.Context, d tasksDecision) error {
	wr.undo(ctx)
	for _, w := range d.warnings {
		wr.x.out.Notice(w)
	}
	if len(d.marks) > 0 {
		if err := wr.marker.markInactive(ctx, d.marks); err != nil {
			return err
		}
	}
	forwardNotices(wr.x, d.failNotices)
	return d.failErr
}

// forwardReturning forwards the chosen placements' answers: the RowDescription once, the
// notices, and the RETURNING rows. An INSERT's rows go back in the order of its VALUES
// (or of its SELECT), as from one table, when every shard returned one row per row it
// was sent; otherwise (ON CONFLICT DO NOTHING skipped some) shard by shard.
func forwardReturning(x *execution, tasks []writeTask, chosen []*placementWrite, sentDesc *bool) error {
	total, inOrder := 0, true
	for ti, w := range chosen {
		total += len(tasks[ti].rows)
		inOrder = inOrder && tasks[ti].rows != nil && len(w.rows) == len(tasks[ti].rows)
	}
	// The RowDescription and the notices first, then the rows.
	for _, w := range chosen {
		if err := w.out.each(func(t byte, body []byte) {
			if t != 'D' {
				forwardFrame(x, t, body, sentDesc)
			}
		}); err != nil {
			return err
		}
	}
	if inOrder && len(chosen) > 1 {
		// The positions of all tasks together are 0 .. total-1, each once.
		type at struct{ w, k int }
		ordered := make([]at, total)
		for i := range ordered {
			ordered[i].w = -1
		}
		for ti, w := range chosen {
			for k := range w.rows {
				if i := tasks[ti].rows[k]; i < total {
					ordered[i] = at{ti, k}
				}
			}
		}
		for _, a := range ordered {
			if a.w < 0 {
				continue
			}
			w := chosen[a.w]
			_, body, err := w.out.FrameAt(w.rows[a.k])
			if err != nil {
				return err
			}
			x.out.Raw('D', body)
		}
		return nil
	}
	for _, w := range chosen {
		if err := w.out.each(func(t byte, body []byte) {
			if t == 'D' {
				x.out.Raw('D', body)
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

// outcome is what the placement did with the statement.
func (w *placementWrite) outcome() writeOutcome {
	switch {
	case w.err != nil:
		return writeOutcome{kind: outcomeUnavailable, cause: w.err, sent: w.sent}
	case w.pgErr != nil:
		return writeOutcome{kind: outcomeError, err: w.pgErr}
	}
	return writeOutcome{kind: outcomeOK, tag: w.tag}
}

// markWarning is the WARNING that tells the client why a placement is marked inactive.
func markWarning(w *placementWrite, r markReason, canon *placementWrite) *pgerr.Error {
	node := fmtNode(w.p.Node)
	switch r {
	case markError:
		return pgerr.New(pgerr.Warning, "Bad result from %s", node).WithSeverity("WARNING").
			WithDetail("Remote message: %s (its sibling placement succeeded)", w.pgErr.Message)
	case markRowCount:
		return pgerr.New(pgerr.Warning, "modified %s, but expected %s", tagRows(w.tag), tagRows(canon.tag)).WithSeverity("WARNING").
			WithDetail("modified placement on %s", node)
	case markUnknown:
		return pgerr.New(pgerr.Warning, "Connection failed to %s", node).WithSeverity("WARNING").
			WithDetail("The write's outcome is unknown on a sibling placement, which is kept as the shard's copy.")
	}
	return pgerr.New(pgerr.Warning, "Connection failed to %s", node).WithSeverity("WARNING").WithDetail("%v", w.err)
}

// taskError is the client's error for decideUnavailable's verdicts, naming the table
// (the client asked about rows of a table, not about shards; the log has the shard).
func taskError(err error, table string, ws []*placementWrite) error {
	details := func() string {
		var out []string
		for _, w := range ws {
			if w.err != nil {
				out = append(out, fmt.Sprintf("%s: %v", fmtNode(w.p.Node), w.err))
			}
		}
		return strings.Join(out, "; ")
	}
	switch err {
	case errNoPlacement:
		if len(ws) == 0 {
			return pgerr.New(pgerr.InternalError, "could not modify any active placements").
				WithDetail("The rows of table %s written here have no finalized placement.", table).
				WithHint("An administrator repairs the table's placements (SHOW PLACEMENTS, REPAIR SHARD) once a copy of their data is available.")
		}
		return pgerr.New(pgerr.InternalError, "could not modify any active placements").
			WithDetail("All placements of the rows of table %s written here are unavailable: %s", table, details())
	case errOutcomeUnknown:
		return pgerr.New(pgerr.ConnectionFailure, "the connection to a placement of table %s was lost during the write", table).
			WithDetail("The write may or may not have been applied: %s", details())
	}
	return err
}

// commitImplicit commits the statement's own transaction on every placement that took the
// write. A placement that fails to commit while a sibling committed misses the write and
// is marked; a shard none of whose placements is known to have committed makes the
// statement fail (the client must not hear of success), marking all but one placement
// that may have committed.
//
// When more than one placement took the write (and a decider is set), the commit is
// atomic: two-phase commit (commitTwoPhase). The commit runs under commitContext: it is
// finished even when the session is cancelled meanwhile.
func (wr *writeRun) commitImplicit(ctx context.Context, byTask [][]*placementWrite) error {
	ctx, cancel := commitContext(ctx)
	defer cancel()
	ss, tasks := wr.x.ss, wr.tasks
	var all, live []*placementWrite
	for _, ws := range byTask {
		all = append(all, ws...)
		for _, w := range ws {
			if w.wc.res != nil && w.err == nil && w.pgErr == nil {
				live = append(live, w)
			}
		}
	}
	if wr.decider != nil && len(live) > 1 {
		return wr.commitTwoPhase(ctx, all, live)
	}
	outcomes := finishImplicit(ctx, all, true)
	var marks []metadata.Placement
	var failErr error
	for ti, ws := range byTask {
		outs := make([]commitOutcome, len(ws))
		for i, w := range ws {
			outs[i] = outcomes[w]
		}
		m, committed, unknown := decideCommit(outs)
		for _, i := range m {
			w := ws[i]
			marks = append(marks, w.p)
			wr.x.out.Notice(pgerr.New(pgerr.Warning, "Connection failed to %s", fmtNode(w.p.Node)).WithSeverity("WARNING").
				WithDetail("COMMIT failed: %v", w.commitErr))
		}
		if !committed && failErr == nil {
			switch {
			case unknown:
				failErr = pgerr.New(pgerr.ConnectionFailure, "could not commit the write on any placement of table %s", ss.shardRef(tasks[ti].shard.ID)).
					WithDetail("The connections were lost while committing: the write may or may not have been applied.")
			default:
				for _, w := range ws {
					if w.commitErr != nil && !backend.Unavailable(w.commitErr) {
						failErr = w.commitErr
						break
					}
				}
				if failErr == nil {
					failErr = pgerr.New(pgerr.InternalError, "could not commit the write on any placement of table %s", ss.shardRef(tasks[ti].shard.ID))
				}
			}
		}
	}
	if len(marks) > 0 {
		if err := wr.marker.markInactive(ctx, marks); err != nil && failErr == nil {
			failErr = err
		}
	}
	return failErr
}

// collectOne reads one placement's answer to a write.
func (wr *writeRun) collectOne(ctx context.Context, w *placementWrite) {
	c := w.wc.conn()
	defer wr.x.ss.stopRunning(c)
	stop := c.WatchContext(ctx)
	defer stop()
	for {
		t, b, err := c.Next()
		if err != nil {
			w.err = err
			return
		}
		switch t {
		case 'Z':
			if w.extraReady {
				w.extraReady = false
				continue
			}
			if w.gid != "" && w.prepErr == nil && w.cmds == 3 && c.TxStatus == 'I' {
				w.prepared = true
			}
			return
		case 'T', 'D', 'N':
			// Past the session's temp-file-limit the rest is read and dropped (the
			// connection stays in step); the caller fails the statement.
			if t == 'D' {
				w.rows = append(w.rows, w.out.Len())
			}
			w.out.WriteFrame(t, b)
		case 'C':
			w.cmds++
			if w.gid != "" && w.cmds == 3 {
				continue // PREPARE TRANSACTION's, after BEGIN's and the statement's
			}
			w.tag = string(trimZero(b))
		case 'E':
			if w.gid != "" && w.cmds == 2 && w.pgErr == nil {
				// The statement succeeded; PREPARE TRANSACTION refused (prepared
				// transactions disabled or exhausted), which rolled the part back.
				w.prepErr = c.DecodeError(b)
				if backend.Unavailable(w.prepErr) {
					w.err, w.prepErr = w.prepErr, nil
				}
				continue
			}
			if w.pgErr == nil {
				w.pgErr = c.DecodeError(b)
				w.pgErr.Position = 0
				if backend.Unavailable(w.pgErr) {
					// The server is shutting down or crashing: unavailable, not an answer.
					w.err, w.pgErr = w.pgErr, nil
				}
			}
		}
	}
}

// finishImplicit ends the statement's own transaction on every placement that took part:
// with commit, COMMIT where the statement succeeded (ROLLBACK elsewhere); without, ROLLBACK
// everywhere. It reports how each placement's COMMIT ended.
func finishImplicit(ctx context.Context, writes []*placementWrite, commit bool) map[*placementWrite]commitOutcome {
	out := make(map[*placementWrite]commitOutcome, len(writes))
	var sent []*placementWrite
	for _, w := range writes {
		out[w] = commitNone
		if w.wc.res == nil || w.err != nil {
			continue
		}
		cmd := "ROLLBACK"
		if commit && w.pgErr == nil {
			cmd = "COMMIT"
			out[w] = commitUnknown
		}
		switch {
		case w.prepared && cmd == "COMMIT":
			// The one placement left of a write that prepared with it (send): its
			// part alone commits, in one phase as far as the decision goes.
			cmd = "COMMIT PREPARED " + router.QuoteLiteral(w.gid)
		case w.prepared:
			cmd = "ROLLBACK PREPARED " + router.QuoteLiteral(w.gid)
		case w.prepErr != nil:
			// PREPARE refused: the part is rolled back already.
			if out[w] == commitUnknown {
				out[w], w.commitErr = commitFailed, w.prepErr
			}
			continue
		}
		c := w.wc.conn()
		c.Query(cmd)
		if err := c.Flush(); err != nil {
			w.err = err
			if out[w] == commitUnknown {
				// Not sent: the transaction dies with the connection.
				out[w] = commitFailed
				w.commitErr = err
			}
			continue
		}
		sent = append(sent, w)
	}
	for _, w := range sent {
		err := w.wc.conn().ExecPending(ctx)
		if out[w] != commitUnknown {
			continue
		}
		switch {
		case err == nil:
			out[w] = commitDone
		case backend.Unavailable(err):
			w.err, w.commitErr = err, err // the COMMIT may have been applied
		default:
			out[w], w.commitErr = commitFailed, pgerr.From(err)
		}
	}
	return out
}

// forwardFrame sends a frame set aside: only the first RowDescription, notices as the
// shard's.
func forwardFrame(x *execution, t byte, body []byte, sentDesc *bool) {
	switch t {
	case 'T':
		if *sentDesc {
			return
		}
		*sentDesc = true
	case 'N':
		forwardShardNotice(x.out.Writer, x.ss.srv, body)
		return
	}
	x.out.Raw(t, body)
}

// forwardNotices sends the notices set aside.
func forwardNotices(x *execution, sp *spool) {
	if sp == nil {
		return
	}
	sp.Rewind()
	for {
		t, body, err := sp.Next()
		if err != nil {
			return
		}
		if t == 'N' {
			forwardShardNotice(x.out.Writer, x.ss.srv, body)
		}
	}
}

// tagCount is the row count of a command tag ("INSERT 0 3" -> 3).
func tagCount(tag string) int64 {
	i := strings.LastIndexByte(tag, ' ')
	n, _ := strconv.ParseInt(tag[i+1:], 10, 64)
	return n
}

func tagRows(tag string) string {
	n := tagCount(tag)
	if n == 1 {
		return "1 tuple"
	}
	return strconv.FormatInt(n, 10) + " tuples"
}

// lockShards takes the write locks a write needs (locks.go): placements of a replicated
// shard must apply writes of the same rows in the same order, and a repair must not miss
// a write. A write to several shards holds row locks on one placement while it waits for
// another, and a transaction block holds its row locks until it ends: such waits cross
// workers, where PostgreSQL cannot see a cycle, so multi-shard writes and every write in a
// block lock too, on the coordinator, whose deadlock detector sees them all. Only an
// autocommit write to one shard with a single placement needs none (PostgreSQL orders its
// writes, and there is nothing to repair). A write that pins its rows to partition-key
// values (task.keys) takes the shard lock shared and a key lock per value; any other
// takes the shard lock exclusively.
func (x *execution) lockShards(ctx context.Context, tasks []writeTask) error {
	ss, st := x.ss, x.st
	need := ss.txn.tx != txIdle || len(tasks) > 1
	for _, t := range tasks {
		need = need || len(t.shard.Placements) > 1
	}
	if !need {
		return nil
	}
	if st.Kind != router.Truncate {
		// (TRUNCATE ran on the coordinator's table first, which checked it.)
		if err := x.checkWritePrivilege(ctx, tasks[0].shard.TableID, st.Kind); err != nil {
			return err
		}
	}
	var reqs []lockReq
	for _, t := range tasks {
		reqs = shardLockReqs(reqs, t.shard.ID, t.keys, t.keys != nil)
	}
	if ss.txn.twoPhaseAhead(tasks) {
		ss.txn.needXid()
	}
	return ss.txn.takeLocks(ctx, reqs)
}

// sessionQuery runs a query that reads the session's state (its role, its settings) on
// the coordinator without making the coordinator join a transaction block that has not
// reached it yet: such a block ran no SET there, so its state is the session's before the
// block, which a query outside the block reads as well (on a pooled connection with the
// session's settings when the session has no coordinator connection of its own).
func sessionQuery(ctx context.Context, ss *session, sql string) ([][][]byte, error) {
	var c *backend.Conn
	switch {
	case ss.txn.coord == nil:
		pool, err := ss.srv.pools.Get(ss.srv.coordKey(ss.user))
		if err != nil {
			return nil, err
		}
		res, err := acquirePooled(ctx, pool)
		if err != nil {
			return nil, coordUnavailable(err)
		}
		defer backend.Release(res)
		c = res.Value()
		if err := ss.applySettings(ctx, c); err != nil {
			return nil, err
		}
	case ss.txn.tx == txIdle || ss.txn.coordInTx:
		var err error
		if c, err = ss.txn.coordConn(ctx); err != nil {
			return nil, err
		}
	default:
		if c = ss.txn.coord.Value(); c.Broken() {
			return nil, &backend.UnavailableError{Addr: c.Addr, Err: errors.New("connection lost")}
		}
	}
	ss.startRunning(c)
	rows, err := c.ExecRows(ctx, sql)
	ss.stopRunning(c)
	if err != nil && ss.txn.coordInTx && c == ss.txn.coord.Value() && !backend.Unavailable(err) {
		ss.txn.failBlock() // the coordinator's part of the block failed with it
	}
	return rows, err
}

// privCheck is a privilege the client's role was found to have on a distributed table.
type privCheck struct {
	table uint32
	kind  router.Kind
}

// checkWritePrivilege refuses a write the client's role may not make on a distributed
// table before the write takes any shard lock: the shards refuse it only when it runs
// there, and until then a role that may not write the table would hold its shards' locks
// and make the table's writers wait. The coordinator is asked, in the client's session
// (sessionQuery: as its current role, so that SET ROLE counts), whether the role has the
// privilege the statement needs on the table, or for INSERT and UPDATE on any of its
// columns. That is a necessary condition only, so it refuses nothing PostgreSQL allows;
// the shards still make PostgreSQL's whole check (column privileges of the columns
// written and read, row security). The coordinator's table decides, as it does for GRANT
// (which reaches only it). A privilege found is remembered until a SET or ROLLBACK TO, or
// the end of a block that ran a SET; a stale answer only lets the shards refuse the
// write, whose locks then go with it (releaseFailedLocks). The check is skipped when the
// coordinator cannot answer.
func (x *execution) checkWritePrivilege(ctx context.Context, table uint32, kind router.Kind) error {
	ss := x.ss
	var fn, priv string
	switch kind {
	case router.Insert:
		fn, priv = "has_any_column_privilege", "INSERT"
	case router.Update:
		fn, priv = "has_any_column_privilege", "UPDATE"
	case router.Delete:
		fn, priv = "has_table_privilege", "DELETE"
	default:
		return nil
	}
	key := privCheck{table, kind}
	if _, ok := ss.privOK[key]; ok {
		return nil
	}
	// The schema first, as PostgreSQL looks the name up before it checks the table: a
	// role that may not use the schema hears of the schema only.
	rows, err := sessionQuery(ctx, ss, fmt.Sprintf("SELECT pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE'), pg_catalog.%s(c.oid, '%s') FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) %d::pg_catalog.oid", fn, priv, table))
	if err != nil {
		if backend.Unavailable(err) {
			return nil
		}
		return err
	}
	if len(rows) == 1 && len(rows[0]) == 2 && (string(rows[0][0]) == "f" || string(rows[0][1]) == "f") {
		schema, name := "?", "?"
		if t := ss.snapshot().TableByOID(table); t != nil {
			schema, name = t.Schema, t.Name
		}
		if string(rows[0][0]) == "f" {
			return pgerr.New(insufficientPrivilege, "permission denied for schema %s", schema)
		}
		return pgerr.New(insufficientPrivilege, "permission denied for table %s", name)
	}
	if ss.privOK == nil {
		ss.privOK = map[privCheck]struct{}{}
	}
	ss.privOK[key] = struct{}{}
	return nil
}
