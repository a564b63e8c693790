// Package router turns client SQL into plans: for each statement of a query string, what
// runs where (the coordinator, which shards of which distributed table, with what SQL)
// and how the shards' answers are put together. It is pure: it reads the metadata
// snapshot and the session's name resolution it is given, and does no I/O. Execution
// lives in package proxy.
//
// # Pipeline
//
//	text ──an admin statement (SHOW NODES, REPAIR SHARD, ...)?──▶ kind Admin, unparsed (admin.go)
//	  │
//	text ──Tokenize (sqllex)──▶ Input ──plan cache──▶ hit: shared *Batch
//	                                       │ miss
//	                                       ▼
//	          pgparse.Parse (PostgreSQL's raw parser, depth-bounded)
//	                                       ▼
//	          analyze: planner.statement per raw statement (analyze.go):
//	          survey the tree (table references, pgshard functions),
//	          resolve names against the search path, refuse what pg_shard refuses
//	                                       ▼
//	          plan per kind → *Statement (plan.go):
//	            transaction control, PREPARE/EXECUTE                     analyze.go
//	            SET/RESET/DISCARD: what they change (SetPlan)            set.go
//	            SELECT on one table: shard template, Filter, Merge       select.go, sorted.go
//	            co-located joins                                         colocate.go
//	            anything else reading distributed tables: Gather         gather.go
//	            INSERT ... VALUES / INSERT ... SELECT                   insert.go, insertselect.go
//	            UPDATE, DELETE (single-table, or gathered)               dml.go, modify.go
//	            DROP TABLE, TRUNCATE                                     dml.go
//	            COPY, EXPLAIN, pgshard's SQL functions                   copy.go, explain.go, functions.go
//	                                       ▼
//	          *Batch, then executed by proxy with the Input's literals
//
// The planner (analyze.go and the per-family files) makes the decisions; where a clause,
// a name or an expression sits in the statement's text, and the templates that copy it,
// are stmtText's (text.go; its methods live beside the planning code that uses them,
// clauses.go holding the general ones), which the planner embeds. Helpers that need
// neither are plain functions.
//
// What the executor asks of every plan before running it (may it join a transaction
// block, be suspended after a row limit, be described without the coordinator, run in
// a failed block) is answered by the plan's methods (kinds.go), not by switches over
// its Kind in the proxy.
//
// A plan refers to the statement's text only through Templates (template.go): text
// segments, holes for the input's literals (SegLit), shard or temporary table names
// (SegTable), values the coordinator evaluates once per execution (SegEval) and partial
// result types (SegType). Partition-key values are Values (a literal, a parameter, NULL,
// or an evaluated value) and a WHERE clause's pruning condition is a Cond (keys.go).
// Which expressions count as a partition-key value, and how AND/OR/IN/ANY combine them,
// is decided in keys.go. At execution, Bind (bind.go) binds the values to the
// statement's constants and the client's parameters, still without I/O: it hashes every
// value pghash reads with certainty (PostgreSQL's own hash functions) and returns the
// rest — evaluated expressions (EvalQuery), text whose reading depends on the session's
// settings, values a type modifier or assignment coercion may change — for the proxy to
// ask the coordinator in one round trip; Cond.Select then picks the shards whose hash
// range holds them.
//
// # Plan cache
//
// Router caches batches by statement shape: the text with every literal replaced by a
// marker of its kind (shape), together with the search path (or the session's name
// resolution, Session.NamesKey), the metadata's SchemaVersion and the scanner mode. A plan
// whose meaning depends on a literal's value (ORDER BY 1, ...) is cached under the exact
// text instead. Plans are immutable and shared between sessions; the cache is bounded in
// entries and in bytes of statement text.
//
// # Sub-packages
//
//   - sqllex: PostgreSQL's tokenizer rules, in both standard_conforming_strings modes.
//   - pgparse: PostgreSQL's raw parser (pg_query, in C), bounded so that no statement can
//     overflow its stack.
//   - pghash: PostgreSQL's hash of a partition-key value, bit for bit, without the server.
//
// # Tests
//
// router_test.go checks individual plan properties; golden_test.go prints the whole plan
// of every statement of testdata/*.sql against a fixed metadata snapshot and compares it
// with testdata/*.golden (go test ./router -run TestGolden -update rewrites them: review
// the diff). The differential suite tests/diff checks the executed results against
// plain PostgreSQL.
package router
