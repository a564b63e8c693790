package proxy

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// The transaction layer. txnState, embedded in the session, owns everything a
// transaction block is made of: its state (txStatus) and the transitions that are the
// only writers of it (beginBlock, failBlock, resumeBlock, endBlock), the statements that
// bring a backend joining the block mid-way to its state (txReplay), its savepoints, the
// backend connections that joined it (the coordinator's and one per worker node), the
// placements it wrote, its shard locks (locks.go), the implicit block of an
// extended-protocol pipeline, the idle timeouts that bound a client holding it (idle.go),
// and the end of it all: endTx, where the block commits or rolls back on every backend
// that joined it.
//
// endTx is the commit point, and the home of atomic commit: a block that wrote through
// more than one backend connection commits with two-phase commit (commitBlock,
// twophase.go: PREPARE TRANSACTION on every worker that wrote, the decision recorded in
// the coordinator's transaction, COMMIT PREPARED), one that wrote through one connection
// in one phase (finishOnNodes; decideBlockCommit, outcome.go, decides from the outcomes
// what the client hears). Nothing in this layer reads the session: what it needs from
// it is declared in txnHost.
//
//	          beginBlock                failBlock
//	txIdle ───────────────▶ txBlock ─────────────▶ txFailed
//	   ▲                      ▲  │                    │
//	   │                      │  └── resumeBlock ◀────┘ (ROLLBACK TO)
//	   └──────── endBlock (COMMIT, ROLLBACK, endTx) ───┘
//
// The block's connections are taken in txnconns.go (coordConn, workerConn), its shard
// locks in locks.go (lockShardIDs); where a statement fails (statementFailed, sentError)
// is at the end of this file.

// txStatus is the state of the session's transaction block, as ReadyForQuery reports it.
type txStatus byte

const (
	txIdle   txStatus = 'I' // no transaction block
	txBlock  txStatus = 'T' // in a transaction block
	txFailed txStatus = 'E' // in a failed transaction block: only ROLLBACK (TO) runs
)

func (s txStatus) String() string {
	switch s {
	case txIdle:
		return "idle"
	case txBlock:
		return "in transaction block"
	case txFailed:
		return "in failed transaction block"
	}
	return "txStatus(" + string(rune(s)) + ")"
}

// wire is the status byte of ReadyForQuery.
func (s txStatus) wire() byte { return byte(s) }

// txnState is the session's transaction layer: the block, what it holds, and how it
// ends. It is embedded in session, so that the executor reads ss.tx and takes
// ss.txConns as before, but its methods touch only its own fields, their arguments and
// the dependencies declared here (host, locker); a change to how blocks lock, commit or
// recover (atomic commit, row-level locks) reads this type, not the session.
type txnState struct {
	// tx is the transaction block's state; only the transitions set it.
	tx txStatus
	// txReplay are the statements that bring a backend joining the block mid-way to the
	// block's state: BEGIN with its options, SET LOCAL, SAVEPOINT ...
	txReplay []string
	// txSavepoints are the block's savepoints, innermost last; txSavepointAt their
	// SAVEPOINT statements' places in txReplay.
	txSavepoints  []string
	txSavepointAt []int
	// coord is the session's coordinator connection, taken on first use and kept
	// (coordConn); it outlives blocks.
	coord *puddle.Resource[*backend.Conn]
	// coordInTx is set when the coordinator connection has joined the block.
	coordInTx bool
	// stmtCoordTx is set, outside a transaction block, while the coordinator connection
	// is in a transaction of the current statement's own (coordTx): the one that holds
	// the statement's locks and records its commit decision. endStatement ends it.
	stmtCoordTx bool
	// coordWork is set once the coordinator's part of the block (or of the statement's
	// own coordinator transaction) was used for anything but taking locks (lockConn): it
	// may have written, so it is a participant of the commit like the workers that wrote.
	coordWork bool
	// txConns are the worker connections that joined the block, by node.
	txConns map[metadata.Node]*puddle.Resource[*backend.Conn]
	// txWrites are the placements written in the block, by node: if a node fails to
	// commit while others succeed, these placements missed writes. Its nodes are the
	// block's worker participants in two-phase commit (commitBlock).
	txWrites map[metadata.Node][]metadata.Placement
	// txLocks are the shard locks held until the end of the block (or until the writes
	// that took them are rolled back: locks.go); txHeld are those shards (a block holds
	// its locks exclusively, so it never waits for itself).
	txLocks []txLock
	txHeld  map[int64]bool
	// txRowLocks is set once the block locked rows of distributed tables (SELECT ... FOR
	// UPDATE): the first writer of such a row waits for the block on the worker while
	// holding the shard's write lock, so the block keeps the shard's writers out as if it
	// held that lock (holdsShardLocks).
	txRowLocks bool
	// coordXid is the coordinator transaction's txid_current(), when takeLocks fetched
	// it (asked by wantXid: needXid) for the two-phase commit to come.
	coordXid txXid
	wantXid  bool
	// stmtUnlock releases the shard locks held until the end of the statement.
	stmtUnlock []func()
	// failedUndone is set when the backends' part of the failed block was rolled back
	// (undoFailed), until the block ends or goes on after ROLLBACK TO.
	failedUndone bool
	// pipelineTx is set while the statements of an extended-protocol pipeline run in
	// the transaction block that stands for PostgreSQL's implicit one (pipelineBlock).
	pipelineTx bool
	// idleInTx and idleSession are the session's idle_in_transaction_session_timeout
	// and idle_session_timeout (idle.go); idleInBlock is set when the block changed
	// them; waitingClient is set from ReadyForQuery until the client's next message.
	idleInTx, idleSession time.Duration
	idleInBlock           bool
	waitingClient         bool
	// waits bounds the statement's shard lock waits by the session's lock_timeout,
	// statement_timeout and cancel requests (locks.go).
	waits lockWait

	// locker is the server's side of taking write locks (locks.go).
	locker shardLocker
	// idleTxLimit is pgshard's IdleTransactionTimeout (idleDeadline).
	idleTxLimit time.Duration
	// txLog is the server's logger.
	txLog *slog.Logger
	// host is the session holding the block.
	host txnHost
}

// txnHost is what the transaction layer needs from the session that holds it: the
// protocol's view (results, notices, whether the pipeline goes on) and the session's
// state derived from what the block ran (settings, name resolution, privileges).
type txnHost interface {
	// commandComplete and sendNotice write to the client.
	commandComplete(tag string)
	sendNotice(e *pgerr.Error)
	// moreBeforeSync reports whether the client may send another statement before Sync.
	moreBeforeSync() bool
	// settingsChanged reports whether the block may have changed session settings: a
	// backend's settings are unknown once the block ends there.
	settingsChanged() bool
	// blockUndone is told that the block ended (ended) or that ROLLBACK TO undid part of
	// it, which may have undone its SETs and DDL: what the session derived from them is
	// to be found again.
	blockUndone(ctx context.Context, ended bool)
	// markMissed marks placements that missed the block's writes inactive, durably,
	// warning the client (Server.markInactive).
	markMissed(ctx context.Context, ps []metadata.Placement) error
	// finishPrepared runs COMMIT PREPARED or ROLLBACK PREPARED on a node as pgshard's
	// own role (recoverer.exec).
	finishPrepared(ctx context.Context, n metadata.Node, sql string) error
	// acquireCoord and acquireWorker take a connection from the session's pools, for its
	// role (txnconns.go); applySettingsFor brings a connection to the session's settings.
	acquireCoord(ctx context.Context) (*puddle.Resource[*backend.Conn], error)
	acquireWorker(ctx context.Context, node metadata.Node) (*puddle.Resource[*backend.Conn], error)
	applySettingsFor(ctx context.Context, c *backend.Conn, worker bool) error
}

// shardLocker is what taking write locks needs from the server (locks.go): the OID of
// the placements' epoch sequence, and bringing the placements up to date when the epoch
// read with the locks moved.
type shardLocker interface {
	epochOID() uint32
	placementsCurrent(ctx context.Context, epoch int64) error
}

// newTxnState is the transaction layer of a new session: idle, holding nothing.
func newTxnState(host txnHost, locker shardLocker, idleTxLimit time.Duration, log *slog.Logger) txnState {
	return txnState{tx: txIdle, host: host, locker: locker, idleTxLimit: idleTxLimit, txLog: log}
}

// beginBlock opens a transaction block; replay are the statements that start it on each
// backend that joins it (BEGIN with its options, SET TRANSACTION ...).
func (t *txnState) beginBlock(replay ...string) {
	t.tx = txBlock
	t.txReplay = replay
}

// failBlock fails the transaction block, if one is open and has not failed yet: until
// ROLLBACK (or ROLLBACK TO a savepoint) every statement is refused.
func (t *txnState) failBlock() {
	if t.tx == txBlock {
		t.tx = txFailed
	}
}

// resumeBlock brings the block back after ROLLBACK TO a savepoint.
func (t *txnState) resumeBlock() {
	t.tx = txBlock
	t.failedUndone = false
}

// endBlock returns to the idle state (endTx releases what the block held first).
func (t *txnState) endBlock() {
	t.tx = txIdle
	t.failedUndone = false
}

// inBlock runs fn inside a transaction block: the session's, or, outside one, a block
// opened for fn and committed when it succeeds (rolled back when it fails). Placements
// that could not commit are marked inactive, as at COMMIT.
func (t *txnState) inBlock(ctx context.Context, fn func() error) error {
	if t.tx != txIdle {
		err := fn()
		if err != nil {
			t.failBlock()
		}
		return err
	}
	t.beginBlock("BEGIN")
	err := fn()
	missed, endErr := t.endTx(ctx, err == nil)
	if err != nil {
		return err
	}
	if len(missed) > 0 {
		if err := t.host.markMissed(ctx, missed); err != nil {
			return err
		}
	}
	return endErr
}

// joinTx starts the session's transaction block on a backend: the statements that open
// it go out with the backend's next statement, in the same write (backend.Conn.QueueJoin),
// not in a round trip of their own.
func (t *txnState) joinTx(_ context.Context, c *backend.Conn) error {
	c.QueueJoin(strings.Join(t.txReplay, "; "))
	return nil
}

// commit ends a transaction block with COMMIT on every backend that joined it (the
// client's COMMIT; a failed block rolls back, as in PostgreSQL).
func (t *txnState) commit(ctx context.Context) error {
	switch t.tx {
	case txIdle:
		t.host.sendNotice(pgerr.New(pgerr.NoActiveSQLTransaction, "there is no transaction in progress").WithSeverity("WARNING"))
		t.host.commandComplete("COMMIT")
		return nil
	case txFailed:
		t.endTx(ctx, false)
		t.host.commandComplete("ROLLBACK")
		return nil
	}
	missed, err := t.endTx(ctx, true)
	if len(missed) > 0 {
		if merr := t.host.markMissed(ctx, missed); merr != nil {
			return merr
		}
	}
	if err != nil {
		return err
	}
	t.host.commandComplete("COMMIT")
	return nil
}

// endTx commits or rolls back the block on every backend that joined it, releases the
// block's connections and locks, and returns to the idle state. A COMMIT of a block that
// wrote through more than one connection is atomic (commitBlock: two-phase commit,
// twophase.go); one through a single connection commits in one phase. After a COMMIT it
// returns the placements that missed the block's writes (the caller marks them: only
// the one-phase commit leaves any, the two-phase one marks them itself before its
// decision) and the client's error; after a ROLLBACK, the first failure.
func (t *txnState) endTx(ctx context.Context, commit bool) (missed []metadata.Placement, err error) {
	if t.tx == txIdle {
		return nil, nil
	}
	if commit && t.tx == txBlock {
		// The commit is finished even when the session is cancelled meanwhile (a
		// cancel request, the proxy's shutdown): only a bound on each step stops it.
		cctx, cancel := commitContext(ctx)
		missed, err = t.commitBlock(cctx)
		cancel()
	} else {
		results, coordErr := t.finishOnNodes(ctx, "ROLLBACK")
		for _, n := range sortedNodes(results) {
			if results[n] != nil {
				err = results[n]
				break
			}
		}
		if coordErr != nil && err == nil {
			err = coordErr
		}
	}
	t.releaseBlock(t.host.settingsChanged())
	t.host.blockUndone(ctx, true)
	t.idleAfterBlock(ctx)
	return missed, err
}

// commitBlock commits the block: in one phase when one connection wrote (a worker's,
// whose placements are then the only ones the block wrote, or the coordinator's), else
// with two-phase commit over the worker connections that wrote and the coordinator's
// transaction, which records the decision. Worker connections that only read commit in
// one phase after the decision.
func (t *txnState) commitBlock(ctx context.Context) ([]metadata.Placement, error) {
	var parts []*commitPart
	var readers []*backend.Conn
	for n, ps := range t.txWrites {
		p := &commitPart{node: n, placements: ps}
		res := t.txConns[n]
		switch {
		case res == nil || res.Value().Broken():
			p.lost = &backend.UnavailableError{Addr: n.Addr(), Err: errors.New("connection lost")}
		case partAborted(t.tx, res.Value()):
			// Its writes are lost, for certain: the part is rolled back and its
			// placements are treated as unavailable (marked if a sibling prepared).
			res.Value().Exec(ctx, "ROLLBACK")
			p.lost = &backend.UnavailableError{Addr: n.Addr(), Err: errPartAborted}
		default:
			p.conn = res.Value()
		}
		parts = append(parts, p)
	}
	for n, res := range t.txConns {
		if _, wrote := t.txWrites[n]; !wrote {
			readers = append(readers, res.Value())
		}
	}
	if len(parts) == 0 || len(parts) == 1 && !t.coordWork {
		return t.commitOnePhase(ctx)
	}
	sortParts(parts)
	c, open, err := t.decisionConn(ctx)
	if err != nil {
		tp := &twoPhase{parts: parts, readers: readers, log: t.txLog}
		tp.abort(ctx)
		if t.coord != nil && !t.coord.Value().Broken() && t.coord.Value().TxStatus != 'I' {
			// The block's coordinator transaction failed (a statement of the proxy's
			// cancelled there): it ends with the block.
			t.coord.Value().Exec(ctx, "ROLLBACK")
		}
		return nil, err
	}
	tp := &twoPhase{parts: parts, readers: readers, coord: c, coordOpen: open, mark: t.host.markMissed, log: t.txLog, finishAs: t.host.finishPrepared,
		holdSQL: holdLocksSQL(t.heldLocks()), releaseSQL: releaseHeldLocksSQL(t.heldLocks())}
	if tp.xid = t.knownXid(c); !open || tp.xid == 0 {
		if err := tp.beginXid(); err != nil {
			tp.abort(ctx)
			return nil, coordUnavailable(err)
		}
	}
	t.coordInTx = true
	return nil, tp.run(ctx)
}

// decisionConn is the coordinator connection that records a two-phase commit's
// decision: the block's (open says it is in the block's transaction) or, when the block
// did not reach the coordinator, the session's connection outside any transaction. A
// block that lost its coordinator connection cannot commit: its locks (and any change
// of its own there) went with it.
func (t *txnState) decisionConn(ctx context.Context) (c *backend.Conn, open bool, err error) {
	if t.coord != nil && t.coord.Value().Broken() {
		if t.coordInTx {
			return nil, false, pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator was lost during the transaction").
				WithDetail("The transaction was rolled back.")
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
	if len(t.txLocks) > 0 && (!t.coordInTx || c.TxStatus != 'T') {
		// The transaction holding the block's write locks is gone (locks.go).
		return nil, false, pgerr.New(pgerr.ConnectionFailure, "the connection to the coordinator holding the transaction's write locks was lost").
			WithDetail("The transaction was rolled back.")
	}
	return c, t.coordInTx && c.TxStatus != 'I', nil
}

// commitOnePhase commits a block that wrote through one connection at most: the workers
// first, then the coordinator (whose part holds the block's locks, or is the one that
// wrote). decideBlockCommit decides from the workers' outcomes what the client hears.
func (t *txnState) commitOnePhase(ctx context.Context) ([]metadata.Placement, error) {
	// A block whose write locks are gone (their coordinator connection was lost) must
	// not commit: another writer may have taken them meanwhile (locks.go).
	if lockErr := t.checkLocksHeld(ctx, true); lockErr != nil {
		t.finishOnNodes(ctx, "ROLLBACK")
		return nil, lockErr
	}
	results, coordErr := t.finishOnNodes(ctx, "COMMIT")
	d := decideBlockCommit(t.txWrites, results, backend.Unavailable)
	if coordErr != nil && d.err == nil {
		d.err = coordErr
	}
	return d.marks, d.err
}

// finishOnNodes runs cmd (COMMIT or ROLLBACK) on every backend of the block: the worker
// connections in parallel, then the coordinator's. It returns each worker node's outcome
// and the coordinator's. It is one-phase: commitBlock uses it only when one connection
// wrote.
func (t *txnState) finishOnNodes(ctx context.Context, cmd string) (map[metadata.Node]error, error) {
	nodes := make([]metadata.Node, 0, len(t.txConns))
	for n := range t.txConns {
		nodes = append(nodes, n)
	}
	outcomes := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := t.txConns[n].Value()
			if c.Broken() {
				outcomes[i] = &backend.UnavailableError{Addr: n.Addr(), Err: errors.New("connection lost")}
				return
			}
			if cmd == "COMMIT" && partAborted(t.tx, c) {
				// COMMIT would answer ROLLBACK there: the node's writes are lost, for
				// certain (not an unknown outcome: its placements are never kept as the
				// only copy that may hold them).
				c.Exec(ctx, "ROLLBACK")
				outcomes[i] = pgerr.Wrap(errPartAborted, pgerr.InFailedSQLTransaction, "the transaction block's part on %s was aborted by an earlier error", n.Addr())
				return
			}
			outcomes[i] = c.Exec(ctx, cmd)
		}()
	}
	// The coordinator's part ends after the workers': it holds the block's write locks
	// (locks.go), which must outlast the writes' commits on every placement, else a
	// writer that takes them next sees the block's rows on one placement and not yet on
	// its sibling.
	wg.Wait()
	var coordErr error
	if t.coordInTx && t.coord != nil {
		coordErr = t.coord.Value().Exec(ctx, cmd)
	}
	results := make(map[metadata.Node]error, len(nodes))
	for i, n := range nodes {
		results[n] = outcomes[i]
	}
	return results, coordErr
}

// sortedNodes are the nodes of m in order.
func sortedNodes(m map[metadata.Node]error) []metadata.Node {
	nodes := make([]metadata.Node, 0, len(m))
	for n := range m {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Less(nodes[j]) })
	return nodes
}

// releaseBlock gives back what the ended block held, its worker connections and shard
// locks, and forgets it: the state is idle again. settingsStale says the block may have
// changed settings, which its end then committed or undid on the connections.
func (t *txnState) releaseBlock(settingsStale bool) {
	for _, res := range t.txConns {
		if settingsStale {
			// The block's SETs committed or rolled back there: what the connection holds
			// now is known only to the session's next refresh.
			res.Value().Settings = staleSettings
		}
		backend.Release(res)
	}
	for _, l := range t.txLocks {
		l.unlock()
	}
	t.txConns, t.txWrites, t.txLocks, t.txReplay, t.txHeld, t.txSavepoints = nil, nil, nil, nil, nil, nil
	t.txRowLocks = false
	t.txSavepointAt = nil
	t.coordInTx = false
	t.coordWork = false
	t.endBlock()
}

// noteTxWrite records a placement written inside the transaction block.
func (t *txnState) noteTxWrite(p metadata.Placement) {
	if t.txWrites == nil {
		t.txWrites = map[metadata.Node][]metadata.Placement{}
	}
	for _, q := range t.txWrites[p.Node] {
		if q.ID == p.ID {
			return
		}
	}
	t.txWrites[p.Node] = append(t.txWrites[p.Node], p)
}

// checkPrepareTx refuses PREPARE TRANSACTION in a block that has worker connections: it
// would prepare the coordinator's part of the block alone, which then outlives the
// session holding its locks, and leave the workers' part (and the shard locks) in a
// block the client believes ended.
func (t *txnState) checkPrepareTx(st *router.Statement) error {
	if st.PrepareTx && len(t.txConns) > 0 {
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard does not support PREPARE TRANSACTION in a transaction block that used distributed tables")
	}
	return nil
}

// prepared ends the session's block after PREPARE TRANSACTION ended the coordinator's
// part of it (prepared, or rolled back when it failed): checkPrepareTx lets it run only
// in a block without worker connections, so PostgreSQL's block is over, and so is the
// session's (the client is told idle, as by PostgreSQL).
func (t *txnState) prepared(ctx context.Context) {
	if t.tx == txIdle || t.pipelineTx || !t.coordInTx || len(t.txConns) > 0 || t.coord == nil || t.coord.Value().TxStatus != 'I' {
		return
	}
	t.releaseBlock(t.host.settingsChanged())
	t.host.blockUndone(ctx, true)
	t.idleAfterBlock(ctx)
}

// errPartAborted is why a node can no longer serve a transaction block that goes on: a
// statement failed on a placement there while a sibling placement took it, which aborted
// the node's part of the block, and with it every write the block made on that node.
var errPartAborted = errors.New("its part of the transaction block was aborted by an earlier error")

// partAborted reports whether c, a connection of the session's block, is in a failed
// transaction while the block itself goes on (the session's block state is tx).
func partAborted(tx txStatus, c *backend.Conn) bool {
	return tx == txBlock && c.TxStatus == 'E'
}

// blockExec runs a statement that every worker connection of the block must run (SET,
// SAVEPOINT, RELEASE, ROLLBACK TO). A node the block lost (its connection broke, or its
// part of the block aborted) is skipped and loses nothing more: its writes are marked at
// COMMIT. rejoin lets an aborted part run the statement anyway: ROLLBACK TO a savepoint
// taken before the abort brings it back in step with the others.
func (t *txnState) blockExec(ctx context.Context, c *backend.Conn, sql string, rejoin bool) error {
	if c.Broken() {
		return nil
	}
	if partAborted(t.tx, c) {
		if rejoin {
			c.Exec(ctx, sql)
		}
		return nil
	}
	if err := c.Exec(ctx, sql); err != nil && !backend.Unavailable(err) {
		return err
	}
	return nil
}

// savepoint runs SAVEPOINT, RELEASE or ROLLBACK TO on every backend of the block and
// remembers it for backends that join later.
func (t *txnState) savepoint(ctx context.Context, st *router.Statement, sql string) error {
	if t.tx == txIdle {
		name := map[router.Kind]string{router.Savepoint: "SAVEPOINT", router.Release: "RELEASE SAVEPOINT", router.RollbackTo: "ROLLBACK TO SAVEPOINT"}[st.Kind]
		return pgerr.New(pgerr.NoActiveSQLTransaction, "%s can only be used in transaction blocks", name)
	}
	cut, err := t.noteSavepoint(st, sql)
	if err != nil {
		return err
	}
	var first error
	for _, res := range t.txConns {
		if err := t.blockExec(ctx, res.Value(), sql, st.Kind == router.RollbackTo); err != nil && first == nil {
			first = err
		}
	}
	if t.coordInTx && t.coord != nil {
		if err := t.coord.Value().Exec(ctx, sql); err != nil && first == nil {
			first = coordLost(err)
		}
	}
	if first != nil {
		return first
	}
	if cut >= 0 && cut <= len(t.txReplay) {
		t.txReplay = t.txReplay[:cut]
	}
	switch st.Kind {
	case router.Release:
		t.releaseSavepointLocks(len(t.txSavepoints), false)
	case router.RollbackTo:
		t.releaseSavepointLocks(len(t.txSavepoints)-1, true)
		t.resumeBlock()
		t.idleAfterBlock(ctx)
		t.host.blockUndone(ctx, false) // a SET, SET ROLE or DDL may have been undone
	}
	t.host.commandComplete(st.Tag)
	return nil
}

// noteSavepoint checks a SAVEPOINT, RELEASE or ROLLBACK TO against the block's
// savepoints, as PostgreSQL checks them (the block may not have reached any backend
// yet), and brings txSavepoints and txReplay in line with it. For ROLLBACK TO it returns
// the replay's length once the statement succeeded (else -1).
//
// The replay keeps only what a backend joining the block now needs: a savepoint released
// is dropped from it (what ran after it stays), and what ran after the savepoint a
// ROLLBACK TO returns to was undone, so it goes (txSavepointAt are the savepoints' places
// in txReplay). Repeated savepoints (psql's ON_ERROR_ROLLBACK, ORMs' nested transactions)
// then cost nothing however long the block.
func (t *txnState) noteSavepoint(st *router.Statement, sql string) (cut int, err error) {
	cut = -1
	switch st.Kind {
	case router.Savepoint:
		if err := t.replayBound(sql); err != nil {
			return -1, err
		}
		t.txSavepoints = append(t.txSavepoints, st.Name)
		t.txSavepointAt = append(t.txSavepointAt, len(t.txReplay))
		t.txReplay = append(t.txReplay, sql)
	case router.Release, router.RollbackTo:
		i := len(t.txSavepoints) - 1
		for i >= 0 && t.txSavepoints[i] != st.Name {
			i--
		}
		if i < 0 {
			return -1, pgerr.New(pgerr.Code("3B001"), "savepoint \"%s\" does not exist", st.Name)
		}
		if st.Kind == router.Release {
			t.txSavepoints = t.txSavepoints[:i]
			if i < len(t.txSavepointAt) {
				t.txReplay = dropEntries(t.txReplay, t.txSavepointAt[i:])
				t.txSavepointAt = t.txSavepointAt[:i]
			}
		} else {
			t.txSavepoints = t.txSavepoints[:i+1]
			if i < len(t.txSavepointAt) {
				cut = t.txSavepointAt[i] + 1
				t.txSavepointAt = t.txSavepointAt[:i+1]
			}
		}
	}
	return cut, nil
}

// pipelineBlock gives the statements an extended-protocol client sends before one Sync
// the implicit transaction PostgreSQL gives them: all apply at Sync, or none. Outside a
// block, a statement that may change something and is not known to be the pipeline's
// last (the client's next buffered message is not Sync) opens a transaction block that
// Sync commits (or rolls back after an error). The common case of one statement per Sync
// (Parse, Bind, Execute and Sync in one write) runs as before, without a block. A
// statement that cannot run in a block first ends the one open.
func (t *txnState) pipelineBlock(ctx context.Context, st *router.Statement) error {
	if t.pipelineTx && st.Kind == router.Begin && !st.HasOptions {
		// BEGIN turns PostgreSQL's implicit block into the client's block, with what
		// the pipeline wrote so far (the Begin statement takes it over). With options
		// (which PostgreSQL applies, or refuses with 25001 after a query) the pipeline's
		// block still ends first.
		return nil
	}
	if t.pipelineTx && (st.Kind == router.Rollback || st.Kind == router.Commit && st.Chain) {
		// ROLLBACK undoes the implicit block (and AND CHAIN, an error there, aborts it).
		t.failBlock()
	}
	if t.pipelineTx && !inImplicitBlock(st) {
		return t.endPipelineBlock(ctx)
	}
	opens := st.OpensPipelineBlock() || st.Kind == router.DDL && inImplicitBlock(st)
	if t.tx != txIdle || !opens || !t.host.moreBeforeSync() {
		return nil
	}
	t.beginBlock("BEGIN")
	t.pipelineTx = true
	return nil
}

// endPipelineBlock commits the pipeline's block, or rolls it back after an error.
func (t *txnState) endPipelineBlock(ctx context.Context) error {
	t.pipelineTx = false
	commit := t.tx == txBlock
	missed, err := t.endTx(ctx, commit)
	if commit && len(missed) > 0 {
		if merr := t.host.markMissed(ctx, missed); err == nil {
			err = merr
		}
	}
	return err
}

// The session's side of txnHost: what the block's end means for the session's state.

// settingsChanged reports whether the session's settings may have changed (txnHost).
func (ss *session) settingsChanged() bool { return ss.settingsDirty }

// blockUndone brings the session's state in line with the end of its block (ended), or
// with a ROLLBACK TO (txnHost): SET LOCAL ends with the block, and what it set or created
// may have been undone, so name resolution, privileges and settings are found again.
func (ss *session) blockUndone(ctx context.Context, ended bool) {
	ss.blockTablesUndone(ctx, ended)
	if ss.settingsDirty || ss.txNames || ss.txNamesOwn {
		// SET LOCAL ended, SETs or DDL of the block committed or were undone.
		ss.namesDirty = true
	}
	if !ended {
		ss.privOK = nil // a SET ROLE may have been undone
		return
	}
	if ss.txNames {
		ss.srv.namesEpoch.Add(1)
	}
	ss.txNames, ss.txNamesOwn = false, false
	if ss.ddlReload {
		// The block changed distributed tables' definitions (ddlprop.go): an implicit
		// block of a string or pipeline too, which no COMMIT ends.
		ss.reloadAfterDDL(ctx)
	}
	if ss.settingsDirty {
		// SET LOCAL and rolled-back SETs end with the block (and a SET ROLE with them).
		ss.privOK = nil
		ss.refreshSettings(ctx)
	}
}

// finishPrepared finishes a prepared part as pgshard's own role (txnHost).
func (ss *session) finishPrepared(ctx context.Context, n metadata.Node, sql string) error {
	return ss.srv.recovery.exec(ctx, n, sql)
}

// markMissed marks placements inactive, warning the client (txnHost).
func (ss *session) markMissed(ctx context.Context, ps []metadata.Placement) error {
	// A mark is finished even when the session is cancelled meanwhile (commitContext).
	ctx, cancel := commitContext(ctx)
	defer cancel()
	return ss.srv.markInactive(ctx, ps, ss.conn.Results())
}

// sentError is a statement's error whose ErrorResponse already reached the client (a
// backend's error relayed as it came): the statement failed, and the rest of its query
// string or pipeline must not run, but the error is not to be sent again.
type sentError struct{ err error }

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// markSent says that err (if any) already reached the client.
func markSent(err error) error {
	if err == nil || errorSent(err) {
		return err
	}
	return &sentError{err}
}

// errorSent reports whether err already reached the client.
func errorSent(err error) bool {
	var se *sentError
	return errors.As(err, &se)
}

// statementFailed is where a statement fails: its error reaches the client (unless it
// did already) and the transaction block, if any, fails. It returns the error marked as
// sent.
func (ss *session) statementFailed(err error) error {
	if !errorSent(err) {
		ss.sendError(err)
	}
	ss.txn.failBlock()
	return markSent(err)
}
