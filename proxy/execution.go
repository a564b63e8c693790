package proxy

import (
	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/pgwire"
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
	// CommandComplete, notices): the client, or a spool that holds them back.
	out *pgwire.Writer
	// be are the backend connections the execution uses (conns.go); nil means the
	// session's own.
	be backends
}

// newExecution is the execution of st for the statement the session is running now.
//
// Transitional: it still takes how the statement arrived from ss.call and where its
// results go from ss.w; the protocol layer will pass both explicitly.
func (ss *session) newExecution(snap *metadata.Snapshot, st *router.Statement, in *router.Input, prm *params) *execution {
	return &execution{ss: ss, snap: snap, st: st, in: in, prm: prm,
		extended: ss.call.extended, results: ss.call.results, out: ss.w}
}
