package router

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/pgshard/pgshard/pgerr"
)

// Kind says how a statement is executed.
type Kind uint8

// Statement kinds.
const (
	// Coordinator statements run on the coordinator exactly as written.
	// Requires: Text.
	Coordinator Kind = iota
	// Begin starts a transaction block. Requires: Text (the BEGIN statement, with its
	// options, for the coordinator and every backend that joins the block).
	Begin
	// Commit ends a transaction block. Requires: Tag ("COMMIT").
	Commit
	// Rollback aborts a transaction block. Requires: Tag ("ROLLBACK").
	Rollback
	// Savepoint, Release and RollbackTo manage savepoints on every backend of the block.
	// Requires: Text, Name.
	Savepoint
	Release
	RollbackTo
	// SetVar changes session state (SET, RESET, DISCARD) on the coordinator; the proxy
	// then brings the session's worker connections to the same settings. Requires: Text;
	// Set, unless SetConfig (a query calling set_config).
	SetVar
	// Select reads a distributed table. Requires: Table, Shard, Filter; Merge when it
	// may span shards.
	Select
	// Insert writes rows to a distributed table. Requires: Table, InsertPrefix, Rows,
	// InsertSuffix.
	Insert
	// Update and Delete modify rows of a distributed table. Requires: Table, Shard,
	// Filter.
	Update
	Delete
	// Function calls pgshard's SQL functions (master_add_node, ...) once per row of
	// ArgQuery. Requires: Calls, ArgQuery, Columns.
	Function
	// DropTable drops distributed tables (shards, metadata, then the coordinator table).
	// Requires: Tables, Text.
	DropTable
	// Truncate empties distributed tables on every placement and runs the statement on the
	// coordinator. Requires: Tables, Text.
	Truncate
	// Error is a statement that must fail with Err (cached like any plan).
	Error
	// PrepareSQL is SQL PREPARE: Name, Query (the statement's text), ParamTypes.
	PrepareSQL
	// ExecuteSQL is SQL EXECUTE: Name and Args (one template per argument).
	ExecuteSQL
	// DeallocateSQL is DEALLOCATE: Name ("" for ALL).
	DeallocateSQL
	// CopyIn is COPY distributed_table [(cols)] FROM STDIN: Table, CopyCols,
	// CopyOptions.
	CopyIn
	// CopyOut is COPY distributed_table TO STDOUT or COPY (SELECT ...) TO STDOUT: Table,
	// Shard (the COPY statement each shard runs), Filter, CopyHeader.
	CopyOut
	// Gathered is a statement that reads distributed tables in a shape no shard can answer
	// alone (joins, subqueries, set operations, ...), or that only reads them while
	// writing coordinator tables: it runs on the coordinator over temporary copies of the
	// tables. Requires: Merge (of kind Gather).
	Gathered
	// Explain shows the distributed plan of Inner; Options are the EXPLAIN options as
	// written ("(ANALYZE, VERBOSE)" or "ANALYZE VERBOSE"), Analyze is set when the
	// statement is to be executed.
	Explain
	// Admin is one of pgshard's admin statements (SHOW NODES, REPAIR SHARD, ...; see
	// admin.go), which the proxy answers itself. Requires: Command.
	Admin
	// DDL is a schema change of distributed tables (ALTER TABLE, CREATE/DROP INDEX,
	// ALTER INDEX ... RENAME, GRANT/REVOKE, COMMENT): the coordinator runs Text, every
	// placement of every shard of Tables the statement rewritten for it (ddlprop.go).
	// Requires: Text, Tag, Tables unless IndexLookup.
	DDL
)

var kindNames = [...]string{"Coordinator", "Begin", "Commit", "Rollback", "Savepoint", "Release",
	"RollbackTo", "SetVar", "Select", "Insert", "Update", "Delete", "Function", "DropTable", "Truncate", "Error",
	"PrepareSQL", "ExecuteSQL", "DeallocateSQL", "CopyIn", "CopyOut", "Gathered", "Explain", "Admin", "DDL"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// MarshalJSON writes the kind's name.
func (k Kind) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// Statement is the plan of one SQL statement. Plans are immutable and shared by every
// execution of the same statement shape; per-execution values (literals, parameters, shard
// choice) are bound late, by the executor.
type Statement struct {
	Kind Kind
	// Text is the statement's own text (as a template over the input's literals).
	Text Template
	// Tag is the command tag of statements answered by the proxy.
	Tag string
	// Name is the savepoint name of savepoint statements.
	Name string
	// Err is the error of Error statements.
	Err *pgerr.Error
	// DDL marks statements that may create, drop or rename relations or schemas: names
	// may resolve differently after them.
	DDL bool
	// TempDDL marks DDL that creates a temporary table: only its session's names change.
	TempDDL bool
	// RunsCode marks a Coordinator statement that may run the client's code there (see
	// runsCode): settings it changes with set_config() are not all reported (search_path
	// is not), so the session reads them back before the next worker or name lookup.
	RunsCode bool
	// Chain marks COMMIT AND CHAIN and ROLLBACK AND CHAIN.
	Chain bool
	// HasOptions marks BEGIN and START TRANSACTION with transaction characteristics.
	HasOptions bool
	// PrepareTx marks PREPARE TRANSACTION (a Coordinator statement).
	PrepareTx bool
	// Locking marks a Select with FOR UPDATE, FOR SHARE and the like: it locks rows on
	// the shards until the transaction ends.
	Locking bool
	// LockNoWait marks a Locking Select whose every locking clause is SKIP LOCKED or
	// NOWAIT: it never waits for a row lock.
	LockNoWait bool
	// Set says what a SetVar statement that is SET, RESET or DISCARD changes.
	Set *SetPlan
	// SetConfig marks a SetVar statement that is a query calling set_config (it returns
	// rows).
	SetConfig bool
	// Unparsed marks a Coordinator statement that the router could not parse while
	// distributed tables exist: the coordinator may only parse it, never run it (see
	// plan).
	Unparsed bool

	// Table is the OID of the distributed table a Select/Insert/Update/Delete works on.
	Table uint32
	// Shard is the statement as each shard runs it; SegTable 0 is the shard table.
	Shard Template
	// Filter selects shards from the WHERE clause.
	Filter *Cond
	// Evals are values the coordinator evaluates once per execution (volatile functions,
	// column defaults, non-literal partition keys) before the statement is sent to any
	// placement, so that every placement receives the same constants.
	Evals []Eval
	// Commutes marks writes that may reach a shard's placements in any order relative to
	// other commuting writes (INSERT into a table without unique indexes).
	Commutes bool
	// Returning marks writes that return rows.
	Returning bool

	// InsertPrefix, Rows and InsertSuffix make up an INSERT: the prefix up to VALUES, one
	// template per row, and the rest (ON CONFLICT, RETURNING).
	InsertPrefix Template
	Rows         []Row
	InsertSuffix Template

	// Source is the coordinator query of INSERT ... SELECT: it returns the SourceCols
	// values of each row (text) and, last, the partition key's canonical form (NULL when
	// the key is among SourceCols as an evaluated default). When Source is set, Rows is
	// empty.
	Source     Template
	SourceCols []int // table column indexes, in the order of Source's columns

	// Merge combines the results of a Select that reads several shards.
	Merge *Merge
	// Colocated, for a Select joining co-located tables, are the tables of the Shard
	// template's holes (hole i is Colocated[i]'s shard of the same index as the others);
	// Fallback gathers the tables instead, for when they are no longer co-located.
	Colocated []uint32
	Fallback  *Merge

	// Calls, ArgQuery and Columns describe a Function statement.
	Calls    []Call
	ArgQuery Template
	Columns  []OutColumn
	// Outer is set for a Function statement whose calls (size functions of constant
	// arguments) stand anywhere in it: ArgQuery is one row of their arguments, and
	// Outer the statement, run on the coordinator, with call k replaced by Evals[k],
	// its result as a literal (inlineCalls).
	Outer Template

	// Tables are the OIDs of the distributed tables a DropTable/Truncate/DDL affects.
	Tables []uint32
	// DDLCatalog marks a DDL statement whose shard statements depend on the
	// coordinator's catalog (router.DDLCatalog); IndexLookup one that names indexes,
	// whose tables the proxy finds (DDLIndexNames); RenamesTable one that renames a
	// distributed table.
	DDLCatalog, IndexLookup, RenamesTable bool
	// References are the OIDs of the distributed tables the foreign keys of an ALTER
	// TABLE refer to, one per foreign key in the statement's order (router.DDLCatalog.Refs).
	References []uint32
	// Maint is the plan of a maintenance statement of kind DDL (ddlmaint.go).
	Maint *Maint
	// Listen is set on LISTEN (true) and UNLISTEN * (false is not reported).
	Listen bool

	// CopyCols are the table column indexes a COPY names (all columns when it names
	// none); CopyOptions its option list; CopyHeader is set when COPY TO writes a header
	// line (which only the first shard's output keeps).
	CopyCols    []int
	CopyOptions []CopyOption
	CopyHeader  bool

	// Inner, Options and Analyze describe EXPLAIN.
	Inner   *Statement
	Options string
	Analyze bool

	// Command is the admin statement of an Admin plan.
	Command *AdminCommand

	// Query, ParamTypes and Args describe SQL PREPARE and EXECUTE.
	Query      string
	ParamTypes []string
	Args       []Template
}

// Row is one row of an INSERT's VALUES list.
type Row struct {
	Text Template // "(v1, v2, ...)"; SegEval i is Evals[i]
	Key  Value    // the partition key's value
	// Evals are the row's values to evaluate on the coordinator.
	Evals []Eval
}

// ValueKind is the source of a partition-key value.
type ValueKind uint8

// Value sources.
const (
	// ValLit is literal token Index of the input (Neg: preceded by a unary minus).
	ValLit ValueKind = iota
	// ValParam is bind parameter $Index.
	ValParam
	// ValNull is SQL NULL.
	ValNull
	// ValEval is evaluated value Index (see Statement.Evals).
	ValEval
)

// Value is a partition-key value, bound at execution.
type Value struct {
	Kind  ValueKind
	Index int
	Neg   bool
	// Type is the type whose hash function applies.
	Type uint32
	// Assign is set for a value an INSERT assigns to the partition column: the column's
	// type modifier (char(n), numeric(p,s), ...) applies before hashing.
	Assign bool
}

// CondKind is the kind of a shard-pruning condition.
type CondKind uint8

// Condition kinds.
const (
	// CondAll keeps every shard.
	CondAll CondKind = iota
	// CondEq keeps the shards holding Val.
	CondEq
	// CondAnd keeps the shards every argument keeps.
	CondAnd
	// CondOr keeps the shards any argument keeps.
	CondOr
	// CondNone keeps no shard (a contradiction such as "k = NULL").
	CondNone
)

// Cond is a shard-pruning condition over the partition key, derived from a WHERE clause.
type Cond struct {
	Kind CondKind
	Val  Value
	Args []*Cond
}

// Eval is an expression the coordinator evaluates once per execution. The executor
// renders Expr, asks the coordinator for its value as a typed SQL literal (and, for a
// partition key, its canonical form for hashing), and fills SegEval hole i with it.
type Eval struct {
	Expr Template
	// Key is set when the value is a partition key whose base type is KeyType. The
	// value goes to the placements with its own type, which assign it to the column as
	// PostgreSQL would; Assign (SQL over $1) coerces it the same way on the coordinator,
	// for its hash.
	Key     bool
	KeyType uint32
	Assign  string
	// Column and ColumnType name the partition column and its type, and Pos is the
	// byte offset of the expression in the statement (0: none), for errors.
	Column     string
	ColumnType uint32
	Pos        int
	// Unknown is set for a string constant (U&'...', say), which PostgreSQL reads as the
	// column's type: it goes to the placements without a type.
	Unknown bool
	// ColumnTypeName is the type of the column the value goes to (format_type with the
	// modifier), "" for none: an anonymous record value (ROW(...)) is sent as that type.
	ColumnTypeName string
}

// MergeKind says how the results of several shards are combined.
type MergeKind uint8

// Merge kinds.
const (
	// Concat streams every shard's rows, up to Limit after skipping Offset.
	Concat MergeKind = iota
	// Aggregate runs Final on the coordinator over one row of partial aggregates from each
	// shard.
	Aggregate
	// Prototype runs the statement on the coordinator, against the distributed table's
	// empty prototype: used for statements PostgreSQL rejects, so that the client gets
	// PostgreSQL's own error.
	Prototype
	// Gather copies rows from the shards into temporary tables on the coordinator (one per
	// Pull) and runs Final there: the complete fallback for shapes the shards cannot
	// answer themselves, and the way grouped aggregates combine their partial results.
	Gather
	// Sorted merges the shards' ordered streams: each shard runs Shard, whose rows carry
	// len(Keys) hidden sort columns (binary) after the Visible ones, and the proxy
	// repeatedly sends the least row, up to Limit after skipping Offset. When a hidden
	// column's type cannot be compared by the proxy, Fallback runs instead.
	Sorted
)

// SortKey is one ORDER BY item of a Sorted merge.
type SortKey struct {
	Desc       bool
	NullsFirst bool
	// ByteOrder is set when strings of this key compare byte by byte (the collation is
	// C or the like); otherwise string keys make the merge fall back.
	ByteOrder bool
}

// Pull is one temporary table of a Gather: the rows Shard returns from every shard of
// Table (those Filter keeps, when set), copied into a temporary table on the coordinator
// whose columns are those of Shard run against the coordinator's prototype table.
type Pull struct {
	Table uint32
	// Shard is the query each shard runs; SegTable 0 is the shard (or, to define the
	// temporary table, the prototype).
	Shard Template
	// Proto, when set, replaces Shard for defining the temporary table (Shard without
	// its WHERE clause, when that clause has bind parameters).
	Proto Template
	// Filter prunes shards (nil: all of them).
	Filter *Cond
}

// GatherTable names the temporary table of pull i on the coordinator.
func GatherTable(i int) string { return "pg_temp.pgshard_gather_" + strconv.Itoa(i+1) }

// Merge describes how a multi-shard Select is put together.
type Merge struct {
	Kind MergeKind
	// Shard is the query each shard runs (replaces Statement.Shard when several shards
	// are read). For Concat with a limit, SegEval 0 is the per-shard row limit.
	Shard Template
	// Limit and Offset (Concat), when HasLimit/HasOffset.
	HasLimit, HasOffset bool
	Limit, Offset       Value
	// Final is the coordinator query of an Aggregate merge: SegEval 0 is the VALUES list of
	// partial rows, and the SegType holes name the partial columns' types.
	Final Template
	// Partials is the number of partial columns each shard returns.
	Partials int
	// NotFloat4 are partial columns (0-based) that sum an avg() argument of a type the
	// planner could not tell: PostgreSQL accumulates a real's average in double
	// precision, so a shard that reports type real for one of them makes the merge run
	// its Fallback instead.
	NotFloat4 []int

	// Pulls are the temporary tables of a Gather merge. Its Final query names them with
	// SegTable holes (hole i is GatherTable(i)); its SegType holes name the types of
	// pull 0's columns.
	Pulls []Pull

	// Keep marks a Gather whose temporary tables outlive the statement (DECLARE CURSOR
	// reads them later): they are dropped when the transaction ends; Hold is set for
	// WITH HOLD, which may run outside a transaction block.
	Keep, Hold bool

	// Keys and Visible describe a Sorted merge.
	Keys    []SortKey
	Visible int
	// Fallback is the gather a Sorted or Aggregate merge runs instead when the proxy
	// finds at run time that it cannot merge the shards' results itself.
	Fallback *Merge
}

// Call is one call of a pgshard SQL function in a Function statement's select list.
type Call struct {
	Func   string // function name
	Column int    // output column it produces
	Arg0   int    // first ArgQuery column holding its arguments
	NArgs  int
}

// OutColumn is an output column of a Function statement: a call's result or a column of
// ArgQuery passed through.
type OutColumn struct {
	Name     string
	Call     int // index into Calls, or -1
	ArgIndex int // ArgQuery column, when Call is -1
}

// Batch is the plan of a query string: its statements, in order.
type Batch struct {
	Stmts []*Statement
	// AllCoordinator is set when every statement runs on the coordinator as written, so
	// that the whole string can be sent there as one (keeping PostgreSQL's
	// implicit-transaction semantics for multi-statement strings).
	AllCoordinator bool
}

// CopyOption is one COPY option as the parser gives it.
type CopyOption struct {
	Name  string
	Kind  CopyArgKind
	Value string
	List  []string
}

// CopyArgKind is the kind of a COPY option's argument.
type CopyArgKind uint8

// COPY option argument kinds (as PostgreSQL's grammar builds them).
const (
	CopyArgNone   CopyArgKind = iota // no argument (HEADER, FREEZE)
	CopyArgString                    // a string, identifier or keyword (or a Boolean)
	CopyArgNumber                    // an integer or float literal
	CopyArgList                      // (col, ...)
	CopyArgStar                      // *
)
