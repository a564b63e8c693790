// Package proxy is pgshard's client-facing server: it speaks the PostgreSQL wire protocol
// to clients (psql, drivers, applications), plans each statement with package router, and
// executes the plan against the coordinator and the worker placements.
//
// A client connection goes through three layers, each with its own types, and a session
// that ties them together:
//
//	client bytes
//	    |
//	package protocol   Conn: startup framing, the message loop, the simple and extended
//	    |              protocols' state (an error skips to Sync, ReadyForQuery), Results
//	    v              (where a statement's results go, redirectable mid-statement)
//	session            handler.go: what each message means (protocol.Handler); prepared
//	    |              statements and portals (stmtStore), settings (sessionSettings),
//	    |              names (sessionNames), spool budget (spoolBudget)
//	    v
//	executor           execution: one run of one plan with its inputs (the plan, its
//	    |              constants, the bind parameters, how it arrived, where its results
//	    |              go) as an explicit value; reaches connections through backends
//	    v
//	transaction layer  txnState (ss.txn): the block's typed state and transitions, its
//	                   backend connections, replay, savepoints, shard locks, idle
//	                   timeouts, and the commit point (endTx)
//
// Files:
//
//   - server.go: Server accepts connections, tracks sessions (for cancel requests and
//     shutdown), owns the backend pools, the shard locks and the metadata cache.
//   - handler.go, simple.go, extended.go, portal.go: the session as protocol.Handler:
//     what Query, Parse, Bind, Describe, Execute, Close and Sync mean; portals fetched in
//     parts (a suspension runs as a coroutine and is settled into a spool by redirecting
//     its Results, never by swapping writers).
//   - startup.go: authentication after the protocol's startup framing, ParameterStatus,
//     BackendKeyData.
//   - session.go: one client session: its protocol.Conn, its layers, cancel and cleanup.
//   - bounds.go, spool.go, settings.go, names.go: the session's own state, each a small
//     type embedded in the session whose methods touch only its fields and the
//     dependencies it declares (initState wires them).
//   - execution.go, conns.go: the execution value and backends, the executor's only way
//     to backend connections; tests give it scripted PostgreSQL servers (scripted_test.go).
//   - exec.go, read.go, gather.go, sorted.go, explain.go: the read executor: dispatch on
//     the plan's kind (run), pass-through to the coordinator, single-shard reads relayed
//     frame by frame (failing over to another placement while nothing reached the
//     client), multi-shard reads concatenated, merged in order, aggregated from partials
//     or gathered into temporary tables on the coordinator.
//   - write.go, source.go, ddl.go, ddlprop.go, copy.go, functions.go: the write executor
//     (ddlprop.go: schema changes of distributed tables, on the coordinator and then on
//     every placement as a write, in the session's block or one of their own; ddlschema.go:
//     what wraps a CREATE TRIGGER's shard statements, its function; maint.go,
//     ddlconcurrent.go: CONCURRENTLY, REINDEX, CLUSTER, VACUUM, ANALYZE, placement by
//     placement without shard locks): a write
//     locks its shards, a writeRun sends it to every finalized placement, collects the
//     answers, decides with outcome.go, marks through a placementMarker before
//     committing, and forwards the chosen placement's answer.
//   - outcome.go: the write failure model as pure decisions: from what each placement
//     answered, the client's answer and the placements to mark inactive (outcome_test.go
//     goes by the README's failure-model rows; writerun_test.go drives the write
//     executor against scripted servers).
//   - route.go: partition keys at execution: router.Bind hashes what needs no I/O, the
//     coordinator reads the rest and evaluates the plan's expressions in one round trip
//     (keyHasher, evaluate), and shards picks the shards a condition selects.
//   - txn.go, txnconns.go, locks.go, idle.go: the transaction layer. txnState reaches the
//     session only through txnHost and the server's shardLocker; endTx is the commit
//     point (commitBlock: one phase for one writing connection, else two-phase commit),
//     and statementFailed with sentError is the one error channel.
//   - twophase.go, recovery.go: atomic commit. twoPhase runs PREPARE TRANSACTION on the
//     worker participants, records the decision in the coordinator transaction
//     (pgs_commit.record) and runs COMMIT PREPARED, for blocks and for implicit writes
//     to several placements; the server's recoverer finishes prepared transactions left
//     behind from the records (SHOW TRANSACTIONS, RECOVER TRANSACTIONS).
//   - functions.go and control.go: the session's side of pgshard's SQL functions
//     (master_add_node, ...) and admin statements (SHOW NODES, REPAIR SHARD, ...), which
//     the router plans (kind Admin) and package control (proxy/control) runs;
//     blockdist.go is the session's side of distributing a table inside a transaction
//     block (the block's connections, and the session's own view of the metadata, which
//     it plans with, snapshot, until the block ends); ddlblock.go adds to that view the
//     tables a schema change in the block changed; sizes.go the size functions
//     (pgshard_table_size, ...: PostgreSQL's, summed over one placement of each shard).
//   - ddlguard.go, drift.go: no drift between a distributed table and its shards.
//     authorizeDDL records, for the coordinator's event triggers (metadata/store
//     events.sql), that the current coordinator transaction may change a distributed
//     table (pgshard's own DDL: DROP TABLE, propagated schema changes); SHOW DRIFT
//     compares every placement's definition (and, WITH CHECKSUM, contents) with the
//     coordinator's table.
//
// A session runs on one goroutine, which owns all of its state; fan-out to several
// backends runs on goroutines that the statement waits for before it returns.
package proxy
