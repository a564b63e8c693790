package router

// What the executor asks of a plan before running it. These answers used to be switches
// over Kind scattered in package proxy; they are properties of the plan, decided here
// with the kinds they depend on.

// Blockable reports whether a statement runs inside a transaction block as it would
// outside one, so that the proxy may give several statements the one implicit
// transaction PostgreSQL gives them (a multi-statement query string, an extended-protocol
// pipeline). pgshard's functions, COPY, TRUNCATE, DROP TABLE, SQL PREPARE/EXECUTE,
// admin statements and transaction control do not. SET, SET LOCAL and set_config do: a
// block's settings reach the backends that join it, and last as long as PostgreSQL's
// implicit transaction would keep them.
func (st *Statement) Blockable() bool {
	switch st.Kind {
	case Select, Gathered, Insert, Update, Delete, Coordinator, Explain, Error, SetVar:
		return true
	}
	return false
}

// OpensPipelineBlock reports whether a statement, run in an extended-protocol pipeline
// outside a transaction block, opens the block that the pipeline's Sync commits: a
// blockable statement that may change something. Distributed reads, EXPLAIN and errors
// change nothing that a later statement of the pipeline could need undone.
func (st *Statement) OpensPipelineBlock() bool {
	switch st.Kind {
	case Select, Explain, Error:
		return false
	}
	return st.Blockable()
}

// Streamable reports whether a statement may be suspended after a row limit (an
// Execute with a row count): reads of distributed tables (pushed down, merged or
// gathered) and statements passed to the coordinator. Writes to distributed tables with
// RETURNING run to completion first, as in PostgreSQL, and hand their rows out from the
// proxy.
func (st *Statement) Streamable() bool {
	switch st.Kind {
	case Select, Gathered, Coordinator:
		return true
	}
	return false
}

// RowLess reports whether a statement takes no parameters and returns no rows, so that
// Describe answers it without asking the coordinator: transaction control, SET, RESET
// and DISCARD (but not a query calling set_config, which returns its rows), DROP TABLE,
// TRUNCATE, SQL PREPARE and DEALLOCATE, and statements that only fail.
func (st *Statement) RowLess() bool {
	switch st.Kind {
	case Begin, Commit, Rollback, Savepoint, Release, RollbackTo,
		DropTable, Truncate, PrepareSQL, DeallocateSQL, Error, DDL:
		return true
	case SetVar:
		return !st.SetConfig
	}
	return false
}

// RunsWhenFailed reports whether a statement runs in a transaction block that an error
// aborted: those that end the block or roll back to a savepoint, as in PostgreSQL, and
// the admin statements, which the proxy answers without the block's backends.
func (st *Statement) RunsWhenFailed() bool {
	switch st.Kind {
	case Commit, Rollback, RollbackTo, Admin:
		return true
	}
	return false
}
