package proxy

import (
	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/router"
)

// An execution is one run of one planned statement: the plan, the values it runs with
// and where its results go, passed as one explicit value instead of being read from the
// session. The executor's methods (read.go, write.go, gather.go, ...) take their inputs
// from it; what they need of the session beyond that — backend connections, the
// transaction block, shard locks, settings — they reach through ss.
type execution struct {
	ss   *session
	snap *metadata.Snapshot // the metadata the statement was planned with
	st   *router.Statement
	in   *router.Input // the statement's constants, as the router found them
	// prm are the client's bind parameters (extended protocol), nil for a simple query.
	prm *params
	// extended is set when the statement arrived by the extended protocol (an Execute,
	// or EXECUTE of a prepared statement): its results go out without RowDescription,
	// which Describe sent, and backends are sent Parse/Bind/Execute.
	extended bool
	// results are the client's result format codes (Bind), nil for all text.
	results []int16
	// out receives the statement's result frames (RowDescription, DataRow,
	// CommandComplete, notices): the client, or a spool that holds them back. Whoever
	// runs the statement may redirect it while it runs (settle).
	out *protocol.Results
	// portal is the portal an Execute runs (nil for a simple query).
	portal *portal
	// be are the backend connections the execution uses (conns.go); nil means the
	// session's own.
	be backends
}

// newExecution is the execution of st as call says it arrived, its results going to out.
func (ss *session) newExecution(snap *metadata.Snapshot, st *router.Statement, in *router.Input, call stmtCall, out *protocol.Results) *execution {
	return &execution{ss: ss, snap: snap, st: st, in: in, prm: call.prm,
		extended: call.extended, results: call.results, portal: call.portal, out: out}
}
