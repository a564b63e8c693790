package proxy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// Maintenance statements of distributed tables (router.Maint): CREATE INDEX CONCURRENTLY
// and DROP INDEX CONCURRENTLY (ddlconcurrent.go), REINDEX, CLUSTER, VACUUM and ANALYZE.
// Unlike the schema changes of ddlprop.go they take no shard write locks and run in no
// block of pgshard's: the coordinator runs the statement first, as the client's role
// (PostgreSQL's own privilege checks and ownership warnings), then every finalized
// placement runs it for its shard, one statement at a time, each a transaction of its
// own (CONCURRENTLY where the client asked for it), while writes go on. The placements'
// statements run as the client's role too, with the session's settings; their notices
// and warnings (which would name shard tables, and repeat the coordinator's) are
// dropped, and their errors have shard names mapped back (unshardNames).
//
//   - VACUUM and ANALYZE: the coordinator runs the client's statement (the prototypes and
//     any other tables it names); then each worker node runs one statement naming its
//     placements' shard tables (with the client's options and column lists). A bare
//     VACUUM or ANALYZE does so for every distributed table. VACUUM cannot run in a
//     transaction block (25001, as PostgreSQL); ANALYZE can: its placements are analyzed
//     at once, outside the block (statistics are not the block's to roll back). A worker
//     node that cannot be reached is skipped with a WARNING.
//   - REINDEX TABLE/INDEX and CLUSTER table [USING index]: the coordinator runs the
//     statement (without CONCURRENTLY: its table is an empty prototype) in a transaction
//     authorized by ddlguard.go, then each placement in turn. A failure stops the
//     statement and says how far it got; running it again does it all again. Inside a
//     transaction block (REINDEX CONCURRENTLY: 25001) they run as the schema changes of
//     ddlprop.go, under the shards' write locks, committed with the block.

// maint runs a maintenance statement.
func (x maintExec) maint(ctx context.Context) error {
	ss, st := x.ss, x.st
	m := st.Maint
	sql := render(st.Text, x.in, nil, nil)
	work, err := x.ddlTables(ctx, sql)
	if err != nil {
		return err
	}
	if m.All {
		for _, t := range x.snap.Tables() {
			work = append(work, &ddlWork{t: t, cat: &router.DDLCatalog{}})
		}
		sort.Slice(work, func(i, j int) bool { return work[i].t.OID < work[j].t.OID })
	}
	if len(work) == 0 {
		return x.coordinatorStatement(ctx, sql)
	}
	if ss.txn.tx != txIdle && !m.Block {
		if m.Form == router.MaintCluster || (m.Form == router.MaintReindex && !router.MaintConcurrent(sql)) {
			// In a block, as the schema changes of ddlprop.go: under the shards' write
			// locks, on every placement in the block, committed with it.
			plain := *x.st
			plain.Maint = nil
			return x.with(&plain).ddl(ctx)
		}
		return x.maintInBlock(sql)
	}
	switch m.Form {
	case router.MaintCreateIndex:
		return x.createIndexConcurrently(ctx, sql, work[0])
	case router.MaintDropIndex:
		return x.dropIndexConcurrently(ctx, sql, work[0])
	case router.MaintVacuum:
		return x.vacuum(ctx, sql, work)
	}
	return x.reindexOrCluster(ctx, sql, work)
}

// maintInBlock is the error of a maintenance statement that cannot run inside a
// transaction block, as PostgreSQL words it.
func (x maintExec) maintInBlock(sql string) error {
	what := x.st.Tag
	if x.st.Maint.Form != router.MaintVacuum {
		what += " CONCURRENTLY"
	}
	return pgerr.New(pgerr.ActiveSQLTransaction, "%s cannot run inside a transaction block", what)
}

// maintTargets returns the finalized placements of the shards of work, one target per
// placement, in shard order.
func maintTargets(work []*ddlWork) (targets []router.ShardTarget, nodes []metadata.Node) {
	for _, w := range work {
		for _, sh := range w.t.Shards {
			for _, p := range sh.Finalized() {
				targets = append(targets, router.ShardTarget{T: w.t, Shard: sh.ID})
				nodes = append(nodes, p.Node)
			}
		}
	}
	return targets, nodes
}

// vacuum runs VACUUM or ANALYZE.
func (x maintExec) vacuum(ctx context.Context, sql string, work []*ddlWork) error {
	c, err := x.ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	tag, err := x.coordinatorDDL(ctx, c, sql)
	if err != nil {
		return err
	}
	targets, nodes := maintTargets(work)
	byNode := map[metadata.Node][]router.ShardTarget{}
	var order []metadata.Node
	for i, n := range nodes {
		if byNode[n] == nil {
			order = append(order, n)
		}
		byNode[n] = append(byNode[n], targets[i])
	}
	for _, n := range order {
		err := x.withPlacement(ctx, n, func(c *backend.Conn) error {
			targets := byNode[n]
			if x.st.Maint.All {
				// Bare: the shard tables that are there (PostgreSQL's bare VACUUM
				// processes the tables there are).
				var err error
				if targets, err = existingShards(ctx, c, targets); err != nil || len(targets) == 0 {
					return err
				}
			}
			shardSQL, err := router.ShardMaint(sql, targets, "", x.st.Maint.RelTables)
			if err != nil {
				return err
			}
			return x.running(c, func() error { return c.Exec(ctx, shardSQL) })
		})
		var pe *pgerr.Error
		switch {
		case err == nil:
		case backend.Unavailable(err):
			x.ss.log.Warn("maintenance statement skipped an unavailable worker", "node", fmtNode(n), "err", err)
			x.out.Notice(pgerr.New(pgerr.Warning, "%s skipped the placements on a worker node that could not be reached", tag).WithSeverity("WARNING"))
		case x.st.Maint.All && errors.As(err, &pe) && pe.Code == pgerr.UndefinedTable:
			// A bare VACUUM or ANALYZE listed a table dropped since the metadata was read.
			x.out.Notice(pgerr.New(pgerr.Warning, "%s skipped the placements on a worker node: %s", tag, pe.Message).WithSeverity("WARNING"))
		default:
			return err
		}
	}
	x.out.CommandComplete(tag)
	return nil
}

// existingShards returns the targets whose shard tables exist on c's server.
func existingShards(ctx context.Context, c *backend.Conn, targets []router.ShardTarget) ([]router.ShardTarget, error) {
	lits := make([]string, len(targets))
	for i, tg := range targets {
		name, err := router.ShardTableName(tg.T, tg.Shard)
		if err != nil {
			return nil, err
		}
		lits[i] = router.QuoteLiteral(name)
	}
	rows, err := c.ExecRows(ctx, "SELECT n.pos::pg_catalog.int8 FROM pg_catalog.unnest(ARRAY["+strings.Join(lits, ", ")+
		"]::pg_catalog.text[]) WITH ORDINALITY n(name, pos) WHERE pg_catalog.to_regclass(n.name) IS NOT NULL ORDER BY 1")
	if err != nil {
		return nil, err
	}
	out := make([]router.ShardTarget, 0, len(rows))
	for _, r := range rows {
		if pos, err := strconv.Atoi(string(r[0])); err == nil && pos >= 1 && pos <= len(targets) {
			out = append(out, targets[pos-1])
		}
	}
	return out, nil
}

// reindexOrCluster runs REINDEX or CLUSTER (outside a transaction block).
func (x maintExec) reindexOrCluster(ctx context.Context, sql string, work []*ddlWork) error {
	index := ""
	if x.st.IndexLookup {
		var err error
		if index, err = x.indexRelname(ctx, sql); err != nil {
			return err
		}
	}
	coordSQL, err := router.CoordinatorMaint(sql)
	if err != nil {
		return err
	}
	tag, err := x.coordAuthorized(ctx, coordSQL, work, true)
	if err != nil {
		return err
	}
	concurrent := router.MaintConcurrent(sql)
	targets, nodes := maintTargets(work)
	for i, tg := range targets {
		shardSQL, err := router.ShardMaint(sql, []router.ShardTarget{tg}, index, nil)
		if err != nil {
			return err
		}
		if concurrent {
			tbl, err := router.ShardTableName(tg.T, tg.Shard)
			if err != nil {
				return err
			}
			err = x.withPlacement(ctx, nodes[i], func(c *backend.Conn) error {
				if err := x.dropLeftovers(ctx, c, tbl); err != nil {
					return err
				}
				return x.running(c, func() error { return c.Exec(ctx, shardSQL) })
			})
		} else {
			err = x.onPlacement(ctx, nodes[i], shardSQL)
		}
		if err != nil {
			return maintStopped(err, fmt.Sprintf("%s ran on the coordinator and on %d of the %d placements; run it again to finish.", tag, i, len(targets)))
		}
	}
	x.out.CommandComplete(tag)
	return nil
}

// dropLeftovers drops the invalid indexes a REINDEX CONCURRENTLY that failed left on
// shard table tbl (named <index>_ccnew[N], which PostgreSQL leaves for the user to drop),
// before REINDEX CONCURRENTLY runs on it again: a failed run's are dropped by the next.
func (x maintExec) dropLeftovers(ctx context.Context, c *backend.Conn, tbl string) error {
	rows, err := c.ExecRows(ctx, `SELECT pg_catalog.format('%I.%I', n.nspname, ic.relname) FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
		JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) ic.relnamespace
		WHERE i.indrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(`+router.QuoteLiteral(tbl)+`) AND NOT i.indisvalid
		  AND ic.relname OPERATOR(pg_catalog.~) '_ccnew[0-9]*$'`)
	for _, r := range rows {
		if err == nil {
			err = x.running(c, func() error { return c.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+string(r[0])) })
		}
	}
	return err
}

// coordAuthorized runs sql on the session's coordinator connection (outside a block) in
// a READ COMMITTED transaction authorized to change work's tables (ddlguard.go), and
// commits it; with commit false it rolls it back (a check of PostgreSQL's own: privileges,
// dependencies) and drops its notices. It returns the command tag.
//
// The prototype's lock is waited for without queueing ahead of writes (a session whose
// block described an INSERT on the coordinator holds ROW EXCLUSIVE on it until its block
// ends, and a DDL lock queued behind it would keep out the writes that come next): each
// try waits at most coordLockTry, and is tried again after a pause, until it gets the
// lock, the statement_timeout or a cancel request.
func (x maintExec) coordAuthorized(ctx context.Context, sql string, work []*ddlWork, commit bool) (string, error) {
	bounded := ctx
	if w, _ := ctx.Value(statementWaitsKey{}).(*lockWait); w != nil {
		b, stop, err := boundStatement(ctx, w)
		if err != nil {
			return "", err
		}
		defer stop()
		bounded = b
	}
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		tag, err := x.coordAuthorizedTry(ctx, sql, work, commit)
		var pe *pgerr.Error
		if !errors.As(err, &pe) || pe.Code != pgerr.LockNotAvailable {
			return tag, err
		}
		select {
		case <-bounded.Done():
			return "", context.Cause(bounded)
		case <-time.After(pause):
		}
	}
}

// coordLockTry is how long coordAuthorized waits for a lock at each try.
const coordLockTry = "100ms"

func (x maintExec) coordAuthorizedTry(ctx context.Context, sql string, work []*ddlWork, commit bool) (string, error) {
	c, err := x.ss.txn.coordConn(ctx)
	if err != nil {
		return "", err
	}
	if err := c.Exec(ctx, "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '"+coordLockTry+"'"); err != nil {
		if c.TxStatus != 'I' {
			c.Exec(ctx, "ROLLBACK")
		}
		return "", err
	}
	oids := make([]uint32, len(work))
	for i, w := range work {
		oids[i] = w.t.OID
	}
	tag := ""
	err = x.ss.authorizeDDL(ctx, c, oids)
	if err == nil && commit {
		tag, err = x.coordinatorDDL(ctx, c, sql)
	} else if err == nil {
		err = x.running(c, func() error { return c.Exec(ctx, sql) })
	}
	end := "COMMIT"
	if err != nil || !commit {
		end = "ROLLBACK"
	}
	if eerr := c.Exec(ctx, end); err == nil {
		err = eerr
	}
	return tag, err
}

// onPlacement runs sql on a connection of its own to node (not the block's), as the
// client's role with the session's settings; notices are dropped.
func (x maintExec) onPlacement(ctx context.Context, node metadata.Node, sql string) error {
	return x.withPlacement(ctx, node, func(c *backend.Conn) error {
		return x.running(c, func() error { return c.Exec(ctx, sql) })
	})
}

// withPlacement runs fn with a pooled connection to node, as the client's role with the
// session's settings.
func (x maintExec) withPlacement(ctx context.Context, node metadata.Node, fn func(c *backend.Conn) error) error {
	ss := x.ss
	res, err := ss.acquireWorker(ctx, node)
	if err != nil {
		return err
	}
	defer backend.Release(res)
	c := res.Value()
	if err := ss.txn.host.applySettingsFor(ctx, c, true); err != nil {
		return err
	}
	return fn(c)
}

// indexRelname is the name of the index a DROP INDEX or REINDEX INDEX names, as the
// coordinator's catalog has it.
func (x maintExec) indexRelname(ctx context.Context, sql string) (string, error) {
	names, _, err := router.DDLIndexNames(sql)
	if err != nil || len(names) == 0 {
		return "", err
	}
	rows, err := sessionQuery(ctx, x.ss, "SELECT relname FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass("+router.QuoteLiteral(names[0])+")")
	if err != nil {
		return "", err
	}
	if len(rows) != 1 {
		return "", pgerr.New(pgerr.UndefinedObject, "index %s does not exist", names[0])
	}
	return string(rows[0][0]), nil
}

// maintStopped is the error of a maintenance statement that stopped at a placement:
// the placement's error (or a connection failure) with hint, what was done.
func maintStopped(err error, hint string) error {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		e := *pe
		if e.Hint != "" {
			hint = e.Hint + "\n" + hint
		}
		e.Hint = hint
		return &e
	}
	if backend.Unavailable(err) {
		return pgerr.Wrap(err, pgerr.ConnectionFailure, "could not reach a placement's worker node").WithHint("%s", hint)
	}
	return err
}

// maintExec is the execution of a maintenance statement (maint.go, ddlconcurrent.go):
// its own type, apart from the execution's other concerns.
type maintExec struct{ *execution }
