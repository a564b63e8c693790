package proxy

import (
	"context"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/backend"
)

// backends is what the executor needs of backend connections: the coordinator
// connection, a worker connection to a node for one statement, and giving that back. The
// session's transaction layer implements it (txnState, txnconns.go): inside a
// transaction block its connections join the block on first use and stay pinned to it,
// outside one they come from the pools. The executor decides nothing about where a
// connection comes from, so its decisions (failover, which error reaches the client,
// what to mark) can be tested against a scripted backend that implements this instead.
type backends interface {
	// coordConn returns the session's coordinator connection, with the session's
	// settings applied and, inside a transaction block, joined to the block.
	coordConn(ctx context.Context) (*backend.Conn, error)
	// workerConn returns a connection to node for the current statement; an
	// unreachable node answers an error for which backend.Unavailable is true.
	workerConn(ctx context.Context, node metadata.Node) (workerConn, error)
	// release gives back a connection workerConn returned, unless it belongs to the
	// transaction block (which keeps it until it ends).
	release(w workerConn)
}

var _ backends = (*txnState)(nil)

// conns are the backend connections this execution runs on: the session's, unless a test
// gave it others.
func (x *execution) conns() backends {
	if x.be != nil {
		return x.be
	}
	return &x.ss.txn
}
