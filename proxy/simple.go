package proxy

import (
	"context"
	"time"

	"github.com/pgshard/pgshard/router"
)

// simpleQuery handles a Query message: one or more statements, then ReadyForQuery.
func (ss *session) simpleQuery(ctx context.Context, q string) {
	ss.cancelled.Store(false)
	start := time.Now()
	defer func() {
		ss.srv.stats.queries.Add(1)
		ss.srv.stats.queryTimeUs.Add(time.Since(start).Microseconds())
	}()
	if ss.admin(ctx, q) {
		ss.readyForQuery()
		return
	}
	snap := ss.srv.cache.Load()
	batch, in := ss.srv.router.Plan(q, snap, ss.routerSession())
	switch {
	case len(batch.Stmts) == 0:
		ss.w.Raw('I', nil)
	case batch.AllCoordinator && ss.tx != 'E':
		for _, st := range batch.Stmts {
			if st.Listen {
				ss.listening = true
			}
		}
		// Statements that only concern the coordinator go there as one string, which
		// keeps PostgreSQL's semantics for multi-statement strings (one implicit
		// transaction).
		if err := ss.coordinatorStatement(ctx, q, nil); err != nil {
			ss.statementFailed(err)
		}
	default:
		for _, st := range batch.Stmts {
			ss.relayedError = false
			err := ss.exec(ctx, snap, st, in, nil)
			ss.endStatement()
			if err != nil {
				ss.statementFailed(err)
				break
			}
			if ss.relayedError {
				// A backend's error already went to the client: the rest of the string
				// does not run.
				if ss.tx == 'T' {
					ss.tx = 'E'
				}
				break
			}
		}
	}
	ss.readyForQuery()
}

// routerSession is what the router needs to know of the session.
func (ss *session) routerSession() *router.Session {
	return &router.Session{User: ss.user, SearchPath: ss.settings.searchPath()}
}

// endStatement releases what a statement held until its end.
func (ss *session) endStatement() {
	for _, u := range ss.stmtUnlock {
		u()
	}
	ss.stmtUnlock = ss.stmtUnlock[:0]
}

// statementFailed reports a statement's error to the client and fails the transaction
// block, if any.
func (ss *session) statementFailed(err error) {
	ss.sendError(err)
	if ss.tx == 'T' {
		ss.tx = 'E'
	}
}
