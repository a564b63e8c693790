package control

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/repair"
)

// Client is the calling client's session, as the control plane sees it.
type Client interface {
	// User is the client's login user: the user of its backend connections and pools.
	User() string
	// Query runs one query in the client's own coordinator session, as its current role
	// (after SET ROLE), and returns the rows' values in text form.
	Query(ctx context.Context, sql string, args [][]byte) ([][][]byte, error)
	// InTransactionBlock reports whether the session is inside a transaction block.
	InTransactionBlock() bool
	// Notice queues a NOTICE or WARNING for the client; Flush sends what is queued.
	Notice(e *pgerr.Error)
	Flush()
	// Rows answers a statement with a result set: its RowDescription (unless a Describe
	// already gave it), the rows (nil is NULL) and the command tag.
	Rows(tag string, fields []pgproto3.FieldDescription, rows [][][]byte)
}

// Nodes opens connections for the client, with pgshard's credentials for the client's
// user (never as pgshard's metadata role).
type Nodes interface {
	// DialWorker connects to node as the client's user.
	DialWorker(ctx context.Context, node metadata.Node) (*pgconn.PgConn, error)
	// DialCoordinator connects to the coordinator as the client's user, outside its
	// session (so none of its settings apply).
	DialCoordinator(ctx context.Context) (*pgconn.PgConn, error)
	// RunOnNode runs statements on a worker in one transaction as the client's user; with
	// role set, as that role (SET LOCAL ROLE), with pgshard's search_path.
	RunOnNode(ctx context.Context, node metadata.Node, role string, cmds []string) error
}

// Store is the metadata store on the coordinator, written over pgshard's own
// connections: callers check the client's rights first.
type Store interface {
	AddNode(ctx context.Context, n metadata.Node) (bool, error)
	AddPartition(ctx context.Context, relid uint32, method byte, key string) error
	CreateShards(ctx context.Context, relid uint32, ranges []store.ShardRange,
		place func(ctx context.Context, shardIDs []int64) ([][]metadata.Node, error)) (bool, error)
	Repairs(ctx context.Context, limit int) ([]store.Repair, error)
	// Reload reads the metadata again and publishes it as the current snapshot.
	Reload(ctx context.Context) error
}

// Snapshots gives the current metadata snapshot (*metadata.Cache).
type Snapshots interface {
	Load() *metadata.Snapshot
}

// Pools lists the backend pools for SHOW POOLS (*backend.Pools).
type Pools interface {
	Stats() []backend.Stats
}

// Repairer copies placements (*repair.Repairer); it runs over pgshard's connections.
type Repairer interface {
	Copy(ctx context.Context, req repair.Request) (repair.Result, error)
	RepairShard(ctx context.Context, shardID int64, trigger, user string, progress func(repair.Progress)) ([]repair.Result, error)
}

// Block is the client's transaction block, for the SQL functions called inside one
// (distributing a table there, blockdist.go): the block's worker connections and the
// session's own view of the metadata until the block ends.
type Block interface {
	// RunOnWorker runs cmds on node over the block's connection to it (which joins the
	// block on first use), as role with pgshard's search_path; the session's role and
	// search_path are back as they were afterwards.
	RunOnWorker(ctx context.Context, node metadata.Node, role string, cmds []string) error
	// Wrote records placements the block wrote: their nodes take part in its commit.
	Wrote(ps []metadata.Placement)
	// AddTable makes t part of the session's view of the metadata (Env.Snapshots) until
	// the block ends, or a ROLLBACK TO a savepoint taken before undoes it.
	AddTable(t *metadata.Table)
}

// Counters are the proxy's activity counters for SHOW STATS.
type Counters struct {
	Database                                                     string
	Clients, Xacts, Queries, Received, Sent, QueryTimeUs, Errors int64
	PlanCacheHits, PlanCacheMisses                               uint64
}

// Env is what one control-plane statement runs with: the calling client and the
// proxy's shared parts. The session builds one per statement.
type Env struct {
	Client    Client
	Nodes     Nodes
	Store     Store
	Snapshots Snapshots
	Pools     Pools
	Repairer  Repairer
	// Block is the client's transaction block, nil outside one. Inside one, Snapshots is
	// the session's own view of the metadata.
	Block Block
	// Transactions shows and recovers prepared transactions (SHOW TRANSACTIONS,
	// RECOVER TRANSACTIONS).
	Transactions Transactions
	// Stats reads the counters for SHOW STATS.
	Stats func() Counters
	// Version is pgshard's version, for SHOW VERSION.
	Version string
	Log     *slog.Logger
}
