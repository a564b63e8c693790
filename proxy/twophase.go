package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// Atomic commit. A transaction that wrote through more than one backend connection (two
// worker connections, or a worker connection and the coordinator's own changes) commits
// with two-phase commit, the decision recorded on the coordinator:
//
//  1. the coordinator transaction (the block's, or the statement's own, holding its
//     locks; opened now if there is none) is asked for its txid_current(): each worker
//     participant's part gets the gid pgshard_<xid>_<n>;
//  2. PREPARE TRANSACTION on every worker participant, in parallel;
//  3. the commit records (one per prepared part) are written in the coordinator
//     transaction, with pgs_commit.record, and it commits: that commit is the decision;
//  4. COMMIT PREPARED on every prepared part, in parallel.
//
// A participant that refuses PREPARE with an error aborts the transaction (ROLLBACK
// PREPARED of the parts prepared, ROLLBACK of the coordinator's) and the client gets the
// error; nothing is marked. A participant that is unavailable (connection lost, server
// shutting down) while every shard it wrote has a placement whose part prepared has its
// placements marked inactive, durably, before step 3; a shard without such a placement
// aborts the transaction. The client hears COMMIT only once step 3 succeeded; a lost
// coordinator connection during it leaves the outcome unknown (08006): the recovery
// loop (recovery.go) decides from txid_status and the records. Failures in step 4 are
// not the client's: the decision is durable, recovery finishes those parts.
//
// The protocol's steps run under a context detached from the session's cancellation
// (commitContext): a client's cancel request or the proxy's shutdown must not stop a
// commit half-way, only a bound on each step does.

// commitStepTimeout bounds each step of the commit protocol and each mark of a placement
// that missed a write, once they no longer follow the session's cancellation.
const commitStepTimeout = 30 * time.Second

// commitContext is ctx without its cancellation (a commit or a mark, once started, is
// finished even when the session is cancelled or the proxy shuts down), bounded by
// commitStepTimeout.
func commitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), commitStepTimeout)
}

// commitPart is one worker participant of a two-phase commit: a connection in a
// transaction that wrote the placements listed.
type commitPart struct {
	node       metadata.Node
	conn       *backend.Conn // nil: lost before the commit
	placements []metadata.Placement
	lost       error // why the part was lost before PREPARE (unavailable)
	gid        string
	prepErr    error // PREPARE's outcome
	prepared   bool
	finErr     error // COMMIT PREPARED's or ROLLBACK PREPARED's outcome
}

// twoPhase is one run of the protocol.
type twoPhase struct {
	parts []*commitPart
	// coord is the coordinator connection; coordOpen says it is in a transaction already
	// (the block's, or the statement's own) rather than idle.
	coord     *backend.Conn
	coordOpen bool
	xid       int64
	// xidPending says beginXid's answer is still to be read (readXid).
	xidPending bool
	// holdSQL takes session-level copies of the write locks the coordinator transaction
	// holds, run just before its COMMIT (holdLocksSQL): the locks then outlast the
	// decision until COMMIT PREPARED reached every placement (releaseHeldLocksSQL).
	holdSQL string
	// releaseSQL releases those copies (releaseHeldLocksSQL); sent once COMMIT PREPARED
	// is done, without waiting for its answer (backend.Conn.SendDiscard): the
	// connection's next use reads it.
	releaseSQL string
	// copies says how many of the copies a failed decision took (dropCopies).
	copies int
	// mark marks placements inactive durably (the server's markInactive).
	mark func(ctx context.Context, ps []metadata.Placement) error
	log  *slog.Logger
	// readers are worker connections that took part only by reading: committed (or
	// rolled back) in one phase once the decision is made.
	readers []*backend.Conn
	// finishAs runs COMMIT PREPARED or ROLLBACK PREPARED on a node as pgshard's own
	// role, for a part the session's role may not finish (it prepared under SET LOCAL
	// ROLE: PostgreSQL lets only the role that prepared a transaction, or a superuser,
	// finish it). Nil: such a part is left to recovery.
	finishAs func(ctx context.Context, n metadata.Node, sql string) error
}

// finishPart runs COMMIT PREPARED or ROLLBACK PREPARED (cmd) for a prepared part: on its
// connection, or, when the session's current role may not (42501) or the connection was
// lost (the worker may well be up: a prepared transaction outlives its connection), as
// pgshard's role on a new connection, so that the client's next statement sees the
// outcome. A part already finished (by recovery) counts as done; one that recovery is
// finishing at this very moment ("is busy") is waited for.
func (tp *twoPhase) finishPart(ctx context.Context, p *commitPart, cmd string) error {
	sql := cmd + " " + router.QuoteLiteral(p.gid)
	run := func() error {
		err := p.conn.Exec(ctx, sql)
		if (pgerr.CodeOf(err) == insufficientPrivilege || backend.Unavailable(err)) && tp.finishAs != nil {
			err = tp.finishAs(ctx, p.node, sql)
		}
		return err
	}
	err := run()
	for i := 0; preparedBusy(err) && i < busyRetries; i++ {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(busyPause):
		}
		err = run()
	}
	if notPrepared(err) {
		return nil
	}
	return err
}

// busyRetries and busyPause bound the wait for a prepared transaction that another
// backend (a recovery pass) is finishing.
const (
	busyRetries = 100
	busyPause   = 20 * time.Millisecond
)

// preparedBusy reports PostgreSQL's answer to COMMIT/ROLLBACK PREPARED of a prepared
// transaction another backend is finishing (55000, "... is busy").
func preparedBusy(err error) bool {
	return pgerr.CodeOf(err) == pgerr.ObjectNotInPrereqState && strings.Contains(err.Error(), "is busy")
}

// errCommitUnknown is the client's answer when the coordinator connection was lost while
// the decision committed.
func errCommitUnknown(err error) error {
	return pgerr.Wrap(err, pgerr.ConnectionFailure, "the connection to the coordinator was lost while the transaction committed").
		WithDetail("The transaction may or may not have been committed: pgshard's transaction recovery finishes it either way on every node.")
}

// beginXid starts step 1 on the coordinator: BEGIN (when it is not in a transaction) and
// txid_current(), sent now; readXid reads the answer. Between the two, the workers'
// answers may be read (the round trips overlap). It is skipped when the xid is known
// already: takeLocks fetched it with the locks, in the same transaction (knownXid).
func (tp *twoPhase) beginXid() error {
	sql := "SELECT pg_catalog.txid_current()"
	if !tp.coordOpen {
		// READ WRITE: the session's default_transaction_read_only must not keep the
		// decision from being recorded (the workers wrote in blocks that said so).
		sql = "BEGIN READ WRITE; " + sql
	}
	tp.coord.Query(sql)
	if err := tp.coord.Flush(); err != nil {
		return err
	}
	tp.xidPending = true
	return nil
}

// readXid reads the answer to beginXid (nothing when the xid was known already).
func (tp *twoPhase) readXid(ctx context.Context) error {
	if !tp.xidPending && tp.xid != 0 {
		return nil
	}
	tp.xidPending = false
	stop := tp.coord.WatchContext(ctx)
	defer stop()
	var first error
	for {
		t, b, err := tp.coord.Next()
		if err != nil {
			return err
		}
		switch t {
		case 'D':
			row, err := backend.RowValues(b)
			if err != nil || len(row) != 1 {
				return fmt.Errorf("txid_current: unexpected row: %v", err)
			}
			if tp.xid, err = strconv.ParseInt(string(row[0]), 10, 64); err != nil {
				return fmt.Errorf("txid_current: %w", err)
			}
		case 'E':
			if first == nil {
				first = backend.DecodeError(b)
			}
		case 'Z':
			if first == nil && tp.xid == 0 {
				first = errors.New("txid_current: no answer")
			}
			return first
		}
	}
}

// gids names each part's prepared transaction after the coordinator's xid.
func (tp *twoPhase) gids() {
	for i, p := range tp.parts {
		if p.gid != "" {
			// Named when it prepared with its write: so are all the others (send).
			continue
		}
		p.gid = "pgshard_" + strconv.FormatInt(tp.xid, 10) + "_" + strconv.Itoa(i+1)
	}
}

// prepare runs PREPARE TRANSACTION on every part that is still there, in parallel.
func (tp *twoPhase) prepare(ctx context.Context) {
	tp.each(func(p *commitPart) {
		if p.prepared || p.prepErr != nil {
			return // prepared (or refused to) with its write
		}
		if p.conn == nil || p.lost != nil {
			p.prepErr = p.lost
			return
		}
		if p.conn.Broken() {
			p.prepErr = &backend.UnavailableError{Addr: p.node.Addr(), Err: errors.New("connection lost")}
			return
		}
		p.prepErr = p.conn.Exec(ctx, "PREPARE TRANSACTION "+router.QuoteLiteral(p.gid))
		if p.prepErr == nil && p.conn.TxStatus == 'I' {
			p.prepared = true
		} else if p.prepErr == nil {
			// PREPARE answered ROLLBACK: the part had been aborted.
			p.prepErr = pgerr.New(pgerr.InFailedSQLTransaction, "the transaction's part on %s was aborted by an earlier error", fmtNode(p.node))
		}
	})
}

// each runs fn for every part in parallel and waits.
func (tp *twoPhase) each(fn func(p *commitPart)) {
	var wg sync.WaitGroup
	for _, p := range tp.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(p)
		}()
	}
	wg.Wait()
}

// prepareError is the client's error when a part refused PREPARE with an error: its own,
// with a hint when prepared transactions are disabled or exhausted on the worker.
func prepareError(p *commitPart) error {
	e := pgerr.From(p.prepErr)
	msg := e.Message
	switch {
	case strings.Contains(msg, "prepared transactions are disabled"), strings.Contains(msg, "maximum number of prepared transactions reached"):
		return pgerr.Wrap(p.prepErr, e.Code, "could not prepare the transaction on %s: %s", fmtNode(p.node), msg).
			WithDetail("pgshard commits a transaction that wrote through several connections with two-phase commit.").
			WithHint("Raise max_prepared_transactions on %s (at least max_connections) and restart it.", fmtNode(p.node))
	case strings.Contains(msg, "temporary objects"):
		return pgerr.Wrap(p.prepErr, e.Code, "could not prepare the transaction on %s: %s", fmtNode(p.node), msg)
	}
	return p.prepErr
}

// decideParts decides after step 2: an error to abort with, or the placements to mark
// inactive (those of unavailable parts, when every shard they wrote has a prepared
// placement).
func (tp *twoPhase) decideParts() (marks []metadata.Placement, err error) {
	prepared := map[int64]bool{}
	for _, p := range tp.parts {
		if p.prepErr != nil && !backend.Unavailable(p.prepErr) {
			return nil, prepareError(p)
		}
		if p.prepared {
			for _, pl := range p.placements {
				prepared[pl.ShardID] = true
			}
		}
	}
	for _, p := range tp.parts {
		if p.prepared {
			continue
		}
		for _, pl := range p.placements {
			if !prepared[pl.ShardID] {
				return nil, pgerr.Wrap(p.prepErr, pgerr.ConnectionFailure, "could not prepare the transaction on any placement of a shard: the connection to %s was lost", fmtNode(p.node)).
					WithDetail("The transaction was rolled back on every node.")
			}
			marks = append(marks, pl)
		}
	}
	return marks, nil
}

// abort rolls back every part (ROLLBACK PREPARED where prepared) and the coordinator's
// transaction. A part that cannot be rolled back now has no commit record: recovery
// rolls it back.
func (tp *twoPhase) abort(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if c := tp.coord; c != nil && !c.Broken() && c.TxStatus != 'I' {
			c.Exec(ctx, "ROLLBACK")
		}
	}()
	tp.each(func(p *commitPart) {
		switch {
		case p.prepared:
			p.finErr = tp.finishPart(ctx, p, "ROLLBACK PREPARED")
			if p.finErr != nil {
				tp.log.Warn("two-phase commit: ROLLBACK PREPARED failed; recovery rolls it back", "gid", p.gid, "node", p.node.String(), "err", p.finErr)
			}
		case p.conn != nil && !p.conn.Broken() && p.conn.TxStatus != 'I':
			p.conn.Exec(ctx, "ROLLBACK")
		}
	})
	for _, c := range tp.readers {
		if !c.Broken() && c.TxStatus != 'I' {
			c.Exec(ctx, "ROLLBACK")
		}
	}
	wg.Wait()
}

// notPrepared reports whether err says the prepared transaction is gone (recovery, or
// another proxy's, finished it first).
func notPrepared(err error) bool { return pgerr.CodeOf(err) == pgerr.UndefinedObject }

// decide runs step 3: the records and the coordinator's COMMIT, in one round trip.
// unknown says the coordinator connection was lost while it ran. A failure that leaves
// the connection usable may leave the session-level copies of the write locks taken
// (PostgreSQL keeps session-level advisory locks through the abort of the transaction
// that took them): decide gives them back (dropCopies) before it returns, once abort is
// done with the parts.
func (tp *twoPhase) decide(ctx context.Context) (unknown bool, err error) {
	var gids, names, ports []string
	for _, p := range tp.parts {
		if p.prepared {
			gids = append(gids, router.QuoteLiteral(p.gid))
			names = append(names, router.QuoteLiteral(p.node.Name))
			ports = append(ports, strconv.Itoa(p.node.Port))
		}
	}
	sql := "SELECT " + store.RecordFunction + "(ARRAY[" + strings.Join(gids, ", ") + "]::pg_catalog.text[], ARRAY[" +
		strings.Join(names, ", ") + "]::pg_catalog.text[], ARRAY[" + strings.Join(ports, ", ") + "]::pg_catalog.int4[]); "
	// The decision must be durable before COMMIT PREPARED makes the parts durable: a
	// client's synchronous_commit = off (its own, for its one-server transactions) would
	// let a coordinator crash lose the decision, and the xid naming the parts, after the
	// workers committed.
	sql += durableDecisionSQL + "; "
	if tp.holdSQL != "" {
		// The markers around the copies say, after a failure, whether none, some or all
		// of them were taken.
		sql += "SELECT " + copiesTaking + "; " + tp.holdSQL + "; SELECT " + copiesTaken + "; "
	}
	sql += "COMMIT"
	rows, err := tp.coord.ExecRows(ctx, sql)
	switch {
	case backend.Unavailable(err):
		return true, err
	case err != nil:
		tp.copies = copiesState(rows)
		return false, err
	case tp.coord.TxStatus != 'I':
		return false, pgerr.New(pgerr.InternalError, "the coordinator did not commit the transaction's decision")
	}
	return false, nil
}

// copiesTaking and copiesTaken are the markers decide's query returns before and after
// it takes the session-level copies of the write locks.
const (
	copiesTaking = "'pgshard: taking lock copies'"
	copiesTaken  = "'pgshard: lock copies taken'"
)

// Whether a failed decision took the session-level copies of the write locks.
const (
	copiesNone = iota
	copiesSome // the statement taking them failed: some may be held
	copiesAll
)

// copiesState reads decide's markers from the rows its query returned.
func copiesState(rows [][][]byte) int {
	st := copiesNone
	for _, r := range rows {
		if len(r) != 1 {
			continue
		}
		switch "'" + string(r[0]) + "'" {
		case copiesTaking:
			st = copiesSome
		case copiesTaken:
			st = copiesAll
		}
	}
	return st
}

// dropCopies gives back the session-level copies of the write locks a failed decision
// took (once abort is done with the parts, which they protect until then): all of
// them, with releaseSQL; some, unknown which, by closing the connection.
func (tp *twoPhase) dropCopies(ctx context.Context) {
	c := tp.coord
	switch {
	case c == nil || c.Broken() || tp.copies == copiesNone:
	case tp.copies == copiesAll && tp.releaseSQL != "":
		sql := releaseUntimedSQL(tp.releaseSQL)
		if err := c.Exec(ctx, sql); err != nil {
			releaseAgain(ctx, c, sql, err, tp.log)
		}
	default:
		c.Close()
	}
	tp.copies = copiesNone
}

// durableDecisionSQL raises the coordinator transaction's synchronous_commit to on when
// the session set it off, for the decision's COMMIT alone (SET LOCAL); any other value
// (local, remote_write, remote_apply) flushes the commit locally and is kept.
const durableDecisionSQL = "SELECT pg_catalog.set_config('synchronous_commit', 'on', true) WHERE pg_catalog.current_setting('synchronous_commit') OPERATOR(pg_catalog.=) 'off'"

// finish runs step 4: COMMIT PREPARED on every prepared part, and COMMIT on the readers.
// It returns the placements whose part could not be committed now while a sibling's
// was: they are to be marked (recovery commits them later, but writes in between would
// find them behind their siblings).
func (tp *twoPhase) finish(ctx context.Context) []metadata.Placement {
	var wg sync.WaitGroup
	for _, c := range tp.readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !c.Broken() && c.TxStatus != 'I' {
				c.Exec(ctx, "COMMIT")
			}
		}()
	}
	tp.each(func(p *commitPart) {
		if !p.prepared {
			return
		}
		// A part already gone was committed by recovery (a record exists).
		p.finErr = tp.finishPart(ctx, p, "COMMIT PREPARED")
		if p.finErr != nil {
			tp.log.Warn("two-phase commit: COMMIT PREPARED failed; recovery commits it", "gid", p.gid, "node", p.node.String(), "err", p.finErr)
		}
	})
	wg.Wait()
	committed := map[int64]bool{}
	for _, p := range tp.parts {
		if p.prepared && p.finErr == nil {
			for _, pl := range p.placements {
				committed[pl.ShardID] = true
			}
		}
	}
	var behind []metadata.Placement
	for _, p := range tp.parts {
		if p.prepared && p.finErr != nil {
			for _, pl := range p.placements {
				if committed[pl.ShardID] {
					behind = append(behind, pl)
				}
			}
		}
	}
	return behind
}

// run runs the protocol once step 1 was sent (beginXid): it returns the client's error,
// or nil when the transaction committed.
func (tp *twoPhase) run(ctx context.Context) error {
	start := time.Now()
	var xidAt, prepAt, decideAt time.Time
	defer func() {
		if !decideAt.IsZero() && tp.log.Enabled(ctx, slog.LevelDebug) {
			tp.log.Debug("two-phase commit", "parts", len(tp.parts), "xid", xidAt.Sub(start), "prepare", prepAt.Sub(xidAt),
				"decide", decideAt.Sub(prepAt), "commit_prepared", time.Since(decideAt))
		}
	}()
	if err := tp.readXid(ctx); err != nil {
		tp.abort(ctx)
		if backend.Unavailable(err) {
			return coordUnavailable(err)
		}
		return err
	}
	xidAt = time.Now()
	tp.gids()
	tp.prepare(ctx)
	prepAt = time.Now()
	marks, err := tp.decideParts()
	if err != nil {
		tp.abort(ctx)
		return err
	}
	if len(marks) > 0 {
		if err := tp.mark(ctx, marks); err != nil {
			tp.abort(ctx)
			return err
		}
	}
	unknown, err := tp.decide(ctx)
	if unknown {
		// Recovery decides: the parts stay prepared until it does.
		return errCommitUnknown(err)
	}
	if err != nil {
		tp.abort(ctx)
		tp.dropCopies(ctx)
		return err
	}
	decideAt = time.Now()
	if behind := tp.finish(ctx); len(behind) > 0 {
		if err := tp.mark(ctx, behind); err != nil {
			tp.log.Warn("two-phase commit: could not mark placements whose part recovery will commit", "err", err)
		}
	}
	if tp.releaseSQL != "" && !tp.coord.Broken() {
		sendRelease(ctx, tp.coord, tp.releaseSQL, tp.log)
	}
	return nil
}

// The release of the write locks' session-level copies (releaseSQL) is sent once COMMIT
// PREPARED is done without waiting for its answer (sendRelease). Its answer is read
// (settleRelease) while the client is idle (handler.go's Relay), or at the coordinator
// connection's next use (coordConnFor) if that comes first. It must not be lost: the
// copies would be held for as long as the connection lives, and every other session's
// write to those shards would wait. It runs on the session's coordinator connection,
// under the session's statement_timeout, which a client may set as short as it likes:
// the release sets it to 0 for itself (releaseUntimedSQL); what cancels it still (its
// first statement is timed from the Query's arrival) is seen in its answer, and it is
// then run again, waiting (releaseAgain), or else the connection is closed.

// releaseUntimedSQL is sql, a release of the copies, run under no statement_timeout.
// PostgreSQL times each statement of a Query apart, with the value it finds at the
// statement's start; set_config's local value lasts until the end of the Query's
// implicit transaction (and the session's statement_timeout is back after it).
func releaseUntimedSQL(sql string) string {
	return "SELECT pg_catalog.set_config('statement_timeout', '0', true); " + sql
}

// pendingReleases are the releases sent without waiting for their answer, by
// coordinator connection (*backend.Conn -> the release's SQL), until the connection's
// next use reads it; releasesSent counts them, for sweeping out the entries of
// connections closed meanwhile.
var (
	pendingReleases sync.Map
	releasesSent    atomic.Uint64
)

// sendRelease sends the release sql on c, the coordinator connection, without waiting
// for its answer, and records it: settleRelease reads the answer at c's next use.
func sendRelease(ctx context.Context, c *backend.Conn, sql string, log *slog.Logger) {
	if c.Discarding() {
		// An earlier release's answer is still to come (Drain reports the first
		// error of all): settle it first.
		settleRelease(ctx, c, log)
		if c.Broken() {
			return
		}
	}
	sql = releaseUntimedSQL(sql)
	if err := c.SendDiscard(ctx, sql); err != nil || !c.Discarding() {
		// Run at once, waiting (c had an answer still to come); a lost connection
		// released them.
		if err != nil && !c.Broken() {
			releaseAgain(ctx, c, sql, err, log)
		}
		return
	}
	pendingReleases.Store(c, sql)
	if releasesSent.Add(1)%64 == 0 {
		pendingReleases.Range(func(k, _ any) bool {
			if k.(*backend.Conn).Broken() {
				pendingReleases.Delete(k)
			}
			return true
		})
	}
}

// settleRelease reads the answer to a release sent without waiting (sendRelease) on
// c, if one is still to come, and runs again a release that failed.
func settleRelease(ctx context.Context, c *backend.Conn, log *slog.Logger) {
	err := c.Drain(ctx)
	sql, pending := pendingReleases.LoadAndDelete(c)
	if err == nil || !pending {
		return
	}
	releaseAgain(ctx, c, sql.(string), err, log)
}

// releaseAttempts bounds the runs of a release that keeps failing.
const releaseAttempts = 5

// releaseAgain runs a release that failed with err (cancelled, say) again, waiting for
// it, a few times; if it still fails, it closes c, which releases the copies too.
func releaseAgain(ctx context.Context, c *backend.Conn, sql string, err error, log *slog.Logger) {
	for range releaseAttempts {
		if c.Broken() {
			break
		}
		if err = c.Exec(ctx, sql); err == nil {
			return
		}
	}
	if log != nil && !c.Broken() {
		log.Warn("two-phase commit: could not release the write locks' copies; closing the connection", "err", err)
	}
	c.Close()
}

// sortParts orders parts by node (gids then follow the node order).
func sortParts(parts []*commitPart) {
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].node.Less(parts[j].node) })
}

// commitTwoPhase commits an implicit write that more than one placement took, with
// two-phase commit: each placement's connection is a participant, the decision is
// recorded in the statement's coordinator transaction (the one holding its locks, or
// one opened for it). Placements that refused the write while a sibling took it were
// marked already (apply): their part is rolled back.
func (wr *writeRun) commitTwoPhase(ctx context.Context, all, live []*placementWrite) error {
	var refused []*placementWrite
	for _, w := range all {
		if w.wc.res != nil && w.err == nil && w.pgErr != nil {
			refused = append(refused, w)
		}
	}
	finishImplicit(ctx, refused, false)
	parts := make([]*commitPart, len(live))
	for i, w := range live {
		// A part that prepared with the write (send) has its name, and its PREPARE's
		// outcome, already.
		parts[i] = &commitPart{node: w.p.Node, conn: w.wc.conn(), placements: []metadata.Placement{w.p},
			gid: w.gid, prepared: w.prepared, prepErr: w.prepErr}
	}
	sortParts(parts)
	if tp := wr.tp; tp != nil && (tp.xidPending || tp.xid != 0) {
		// Step 1 went out with the write (startDecision).
		wr.tp = nil
		tp.parts = parts
		return tp.run(ctx)
	}
	tp := &twoPhase{parts: parts, mark: wr.marker.markInactive, log: wr.x.ss.srv.log, finishAs: wr.x.ss.srv.recovery.exec,
		holdSQL: holdLocksSQL(wr.x.ss.txn.heldLocks()), releaseSQL: releaseHeldLocksSQL(wr.x.ss.txn.heldLocks())}
	c, open, err := wr.decider.stmtDecisionConn(ctx)
	if err != nil {
		tp.abort(ctx)
		return err
	}
	tp.coord, tp.coordOpen = c, open
	if tp.xid = wr.x.ss.txn.knownXid(c); !open || tp.xid == 0 {
		if err := tp.beginXid(); err != nil {
			tp.abort(ctx)
			return coordUnavailable(err)
		}
	}
	return tp.run(ctx)
}

// stmtDecisionConn is the coordinator connection in which a statement outside a block
// records its decision: in the statement's own coordinator transaction (open says it is
// one already, holding the statement's locks); else the session's connection, whose
// transaction the protocol opens (and which then is the statement's: endStatement ends
// what the protocol left open). A statement that lost the coordinator connection
// holding its locks cannot commit.
func (t *txnState) stmtDecisionConn(ctx context.Context) (c *backend.Conn, open bool, err error) {
	if t.coord != nil && t.coord.Value().Broken() {
		if t.stmtCoordTx {
			return nil, false, pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator was lost during the statement").
				WithDetail("The statement was rolled back.")
		}
		backend.Release(t.coord)
		t.coord = nil
	}
	if t.coord == nil {
		res, err := t.host.acquireCoord(ctx)
		if res == nil {
			return nil, false, err
		}
		t.coord = res
		if err != nil {
			return nil, false, err
		}
	}
	c = t.coord.Value()
	open = t.stmtCoordTx && c.TxStatus != 'I'
	if len(t.waits.stmt) > 0 && (!open || c.TxStatus != 'T') {
		// The transaction holding the statement's write locks is gone (locks.go).
		return nil, false, pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator holding the statement's write locks was lost").
			WithDetail("The statement was rolled back.")
	}
	t.stmtCoordTx = true
	return c, open, nil
}

// startDecision sends step 1 of two-phase commit (the coordinator's txid_current()) while
// the placements run a write that will need it (an implicit write to several
// placements), so that the round trips overlap. Whatever happens to the write, the
// answer is read: by the commit (commitTwoPhase), else when the write's connections are
// released (endDecision). A failure here only leaves step 1 to the commit.
func (wr *writeRun) startDecision(ctx context.Context) {
	c, open, err := wr.decider.stmtDecisionConn(ctx)
	if err != nil {
		return
	}
	tp := &twoPhase{coord: c, coordOpen: open, mark: wr.marker.markInactive, log: wr.x.ss.srv.log, finishAs: wr.x.ss.srv.recovery.exec,
		holdSQL: holdLocksSQL(wr.x.ss.txn.heldLocks()), releaseSQL: releaseHeldLocksSQL(wr.x.ss.txn.heldLocks())}
	if open {
		// Fetched with the statement's locks, in this transaction: no step 1.
		if tp.xid = wr.x.ss.txn.knownXid(c); tp.xid != 0 {
			wr.tp = tp
			return
		}
	}
	if tp.beginXid() == nil {
		wr.tp = tp
	}
}

// endDecision reads step 1's answer when the commit did not: the coordinator
// connection is back in step, in the statement's coordinator transaction (which
// endStatement ends).
func (wr *writeRun) endDecision(ctx context.Context) {
	if wr.tp == nil || !wr.tp.xidPending {
		return
	}
	ctx, cancel := commitContext(ctx)
	defer cancel()
	wr.tp.readXid(ctx)
	wr.tp = nil
}
