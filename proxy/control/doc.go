// Package control runs pgshard's control-plane statements: its SQL functions and its
// admin statements. It knows the proxy's session only through the small interfaces of
// env.go (Client, Nodes, Store, Snapshots, Pools, Repairer), which the session adapts; an
// Env carries them for one statement.
//
// The SQL functions (functions.go), called in a query that the client's coordinator
// session evaluates (FROM, WHERE, arguments), once per row; inside a transaction block
// only master_create_distributed_table and master_create_worker_shards (the session
// refuses the others before calling here), which then write the metadata in the block's
// coordinator transaction and create the shard tables over its worker connections
// (blockdist.go, Env.Block):
//
//   - master_add_node(name, port): superusers only. Validates the name (a host name or an
//     IP address, nothing libpq reads as a socket directory, host list or options) and
//     the port, refuses a second name for a registered server, connects to the node once
//     as the client's user with pgshard's credentials for it, then registers it in the
//     metadata store (pgshard's connection) and reloads the snapshot.
//   - master_create_distributed_table(table, column, method): the table's owner. Reads the
//     table, its column's hash operator class, emptiness, unique indexes and row security
//     in the client's coordinator session as its current role, then records the
//     partition in the metadata store.
//   - master_create_worker_shards(table, shard_count, replication_factor): the table's
//     owner. Reads the table's definition over a new coordinator connection as the
//     client's user, places replica k of shard i on node (i+k) mod N
//     (metadata.PlacementNodes, one more candidate when a node fails) and creates the
//     shard tables on each worker as the client's user under SET LOCAL ROLE of the
//     table's owner; the metadata is written in one store transaction.
//   - master_copy_shard_placement(shard, source, port, target, port): superusers only.
//     Runs the repairer (pgshard's connections to the coordinator, the client's user for
//     the workers).
//
// The admin statements (admin.go, repair.go), which the router recognises before any
// parsing (router.PlanAdmin: a plan of kind Admin with the command and its argument):
// SHOW NODES, SHOW PLACEMENTS, SHOW REPAIRS, SHOW STATS and REPAIR SHARD are for
// superusers only; SHOW SHARDS and SHOW VERSION for everyone; SHOW POOLS shows an
// ordinary role only its own pools, without addresses. The SHOW statements read the
// current snapshot, the pools and the counters inside the proxy (SHOW REPAIRS the
// metadata store); REPAIR SHARD runs the repairer, outside a transaction block.
//
// Security checks come first, in this package, each marked "Security check": superuser
// rights (is_superuser in the client's coordinator session, which follows SET ROLE) are
// checked before any argument is evaluated or any connection opened; ownership as soon as
// the table is resolved, before its contents, definition or metadata are read; a node's
// name before anything connects to it.
package control
