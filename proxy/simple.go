package proxy

import (
	"context"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router"
)

// Query handles a Query message: one or more statements (ReadyForQuery follows).
func (h handler) Query(ctx context.Context, q string) {
	ss := h.ss
	ss.cancelled.Store(false)
	ss.txn.waits.startStatement()
	// PostgreSQL runs a simple query in the unnamed portal: the client's goes (an
	// Execute of it after the Query fails, also in a transaction block).
	ss.dropPortal("")
	start := time.Now()
	defer func() {
		ss.srv.stats.queries.Add(1)
		ss.srv.stats.queryTimeUs.Add(time.Since(start).Microseconds())
	}()
	if st := router.PlanAdmin(q); st != nil {
		// Before any planning work: the proxy answers it, in any transaction state.
		ss.admin(ctx, st, false, nil, ss.conn.Results())
		return
	}
	ss.srv.currentMetadata(ctx)
	snap := ss.snapshot()
	sess := ss.routerSession(ctx, snap, q)
	batch, in := ss.srv.router.Plan(q, snap, sess)
	switch {
	case len(batch.Stmts) == 0:
		ss.w.Raw('I', nil)
	case batch.AllCoordinator && ss.txn.tx != txFailed:
		ddl, temp, code := false, true, false
		for _, st := range batch.Stmts {
			if st.Listen {
				ss.listening = true
			}
			code = code || st.RunsCode
			if st.DDL {
				ddl, temp = true, temp && st.TempDDL
			}
		}
		// Statements that only concern the coordinator go there as one string, which
		// keeps PostgreSQL's semantics for multi-statement strings (one implicit
		// transaction).
		var err error
		prepares := false
		for _, st := range batch.Stmts {
			if err == nil {
				err = ss.txn.checkPrepareTx(st)
			}
			prepares = prepares || st.PrepareTx
		}
		if err == nil {
			err = ss.newExecution(nil, nil, nil, stmtCall{}, ss.conn.Results()).coordinatorStatement(ctx, q)
		}
		if prepares {
			ss.txn.prepared(ctx)
		}
		if err != nil {
			ss.statementFailed(err)
		}
		if ddl {
			ss.namesChanged(temp)
		}
		if code {
			ss.codeRan()
		}
	default:
		ss.escapeWarnings(batch, in)
		implicit := ss.txn.tx == txIdle && implicitBlock(batch)
		run := func() error {
			stmts := batch.Stmts
			for i := 0; i < len(stmts); i++ {
				st := stmts[i]
				switch {
				case i == 0:
				case !ss.planStale(snap, sess):
					// The plans hold; the placements are read from the newest snapshot.
					snap = ss.snapshot()
				default:
					// An earlier statement changed the distributed tables or where names
					// resolve: the rest is planned again, as PostgreSQL analyses each
					// statement of a string when it comes to run.
					snap = ss.snapshot()
					// The string is read as it was at first, as PostgreSQL reads a
					// whole query string before running any of it (a SET of
					// standard_conforming_strings in it changes nothing of it).
					lex := sess.Lex
					sess = ss.routerSession(ctx, snap, q)
					sess.Lex = lex
					var b *router.Batch
					b, in = ss.srv.router.Plan(q, snap, sess)
					if len(b.Stmts) != len(stmts) {
						return pgerr.New(pgerr.InternalError, "query string planned again into %d statements, was %d", len(b.Stmts), len(stmts))
					}
					stmts = b.Stmts
					st = stmts[i]
				}
				if i > 0 {
					// statement_timeout counts for each statement of the string anew, as
					// in PostgreSQL (exec_simple_query stops the statement timeout after
					// each statement and starts a fresh one for the next): for the
					// proxy's own waits (shard locks, pooled connections) too. A cancel
					// request stays: it ends the rest of the string.
					ss.txn.waits.stmtStart = time.Now()
				}
				if implicit && ss.txn.pipelineTx {
					// Transaction control changes the implicit block as in a pipeline.
					if err := ss.txn.pipelineBlock(ctx, st); err != nil {
						return ss.statementFailed(err)
					}
				}
				err := ss.newExecution(snap, st, in, stmtCall{}, ss.conn.Results()).run(ctx)
				ss.txn.endStatement(ctx)
				if err != nil {
					// The rest of the string does not run.
					return ss.statementFailed(err)
				}
				if implicit && ss.txn.tx == txIdle && i < len(stmts)-1 {
					// After COMMIT or ROLLBACK the rest of the string is a new implicit
					// transaction, as in PostgreSQL.
					ss.txn.beginBlock("BEGIN")
					ss.txn.pipelineTx = true
				}
			}
			return nil
		}
		if implicit {
			// Several statements outside a block are one transaction, as in
			// PostgreSQL: all of them apply, or none. It stands for PostgreSQL's
			// implicit block as a pipeline's does (pipelineTx): BEGIN in the string
			// makes it the client's block, COMMIT and ROLLBACK end it.
			ss.txn.beginBlock("BEGIN")
			ss.txn.pipelineTx = true
			run()
			if ss.txn.pipelineTx {
				if err := ss.txn.endPipelineBlock(ctx); err != nil && !errorSent(err) {
					ss.sendError(err)
				}
			}
		} else {
			run()
		}
	}
	ss.txn.undoFailed(ctx)
}

// implicitBlock reports whether a multi-statement string runs as one transaction block:
// when it has more than one statement and none that controls transactions, copies, or
// calls pgshard's functions (which run outside blocks only).
func implicitBlock(batch *router.Batch) bool {
	if len(batch.Stmts) < 2 {
		return false
	}
	for _, st := range batch.Stmts {
		control := st.Kind == router.Begin && !st.HasOptions || st.Kind == router.Commit || st.Kind == router.Rollback
		if !inImplicitBlock(st) && !control {
			return false
		}
	}
	return true
}

// inImplicitBlock reports whether a statement runs inside the implicit transaction block
// of a multi-statement string or a pipeline: a blockable statement, or a schema change
// of distributed tables that runs in a transaction block (not one of the maintenance
// forms, nor a rename of a table or schema), so that a later failure undoes it as in
// PostgreSQL.
func inImplicitBlock(st *router.Statement) bool {
	return st.Blockable() || st.Kind == router.DDL && st.Maint == nil && !st.RenamesTable
}

// planStale reports whether a plan made with snap and sess may be out of date: the
// distributed tables changed, or names may resolve differently.
func (ss *session) planStale(snap *metadata.Snapshot, sess *router.Session) bool {
	now := ss.snapshot()
	if now.SchemaVersion != snap.SchemaVersion || now.HasTables() != snap.HasTables() {
		return true
	}
	if !now.HasTables() {
		return false
	}
	st := ss.names
	return sess.Names == nil || st == nil || ss.namesDirty || st.snap != now || st.epoch != ss.srv.namesEpoch.Load() || st.key != sess.NamesKey
}
