// Package proxy is pgshard's client-facing server: it speaks the PostgreSQL wire protocol
// to clients (psql, drivers, applications), plans each statement with package router, and
// executes the plan against the coordinator and the worker placements.
//
// Layers, each in its own file:
//
//   - server.go: Server accepts connections, tracks sessions (for cancel requests and
//     shutdown), owns the backend pools and the metadata cache.
//   - startup.go: the startup phase: SSLRequest/GSSENCRequest ('N'), CancelRequest,
//     StartupMessage, authentication, ParameterStatus, BackendKeyData.
//   - session.go: one client session: the message loop, the session's backend
//     connections (a pinned coordinator connection, worker connections taken from the
//     pools per statement or per transaction block) and session settings.
//   - txn.go: the transaction layer: the block's typed state (txIdle, txBlock, txFailed)
//     and its only transitions (beginBlock, failBlock, resumeBlock, endBlock), joining
//     backends to the block, ending it on all of them (endTx), and the one error channel:
//     statementFailed, and sentError for an error the client already heard.
//   - simple.go: the simple query protocol, including multi-statement strings.
//   - exec.go, read.go, write.go: execution of router plans: pass-through to the
//     coordinator, single-shard statements relayed frame by frame, multi-shard reads
//     merged, and replicated writes with placement failure handling.
//   - route.go: partition keys at execution: router.Bind hashes what needs no I/O, the
//     coordinator reads the rest and evaluates the plan's expressions in one round trip
//     (keyHasher, evaluate), and shards picks the shards a condition selects.
//   - outcome.go: the write failure model as pure decisions: from what each placement
//     answered, the client's answer and the placements to mark inactive.
//   - functions.go and control.go: the session's side of pgshard's SQL functions
//     (master_add_node, ...) and admin statements (SHOW NODES, REPAIR SHARD, ...): the
//     argument query, and adapters to package control (proxy/control), which runs them.
//
// A session runs on one goroutine, which owns all of its state; fan-out to several
// backends runs on goroutines that the statement waits for before it returns.
package proxy
