package router

import (
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/sqllex"
)

// planner holds the state of planning one query string: the decisions (what runs where,
// how results combine). Finding things in the statement's text and turning text into
// templates is stmtText's (text.go), which the planner embeds.
type planner struct {
	stmtText
	snap       *metadata.Snapshot
	sess       *Session
	searchPath []string
	aconst     map[int32]bool // literal tokens the parser turned into constants
	exact      bool           // the plan depends on literal values

	// Per statement.
	ctes map[string]bool
	// holes are the table references a SELECT's shard queries replace with SegTable
	// holes, in text order (the hole number is the index).
	holes []tableRef
	// unsureSums are the partial columns of an aggregate merge that sum an avg()
	// argument of a type the planner could not tell (see Merge.NotFloat4).
	unsureSums []int
}

// tableRef is a reference to a relation in a statement.
type tableRef struct {
	rv    *pg_query.RangeVar
	table *metadata.Table // nil when the relation is not distributed
	path  []frame
}

// statement plans one raw statement.
func (p *planner) statement(raw *pg_query.RawStmt) *Statement {
	p.start = int(raw.StmtLocation)
	p.end = len(p.in.Text)
	if raw.StmtLen > 0 {
		p.end = p.start + int(raw.StmtLen)
	}
	p.ctes = map[string]bool{}
	p.holes = nil
	root := nodeMessage(raw.Stmt)
	if root == nil {
		return p.coordinator()
	}
	st := p.plan(root)
	st.DDL = changesNames(root)
	st.TempDDL = st.DDL && createsTemp(root)
	st.RunsCode = st.Kind == Coordinator && runsCode(root)
	return st
}

// runsCode reports whether a statement may run code of the client's on the coordinator
// (a function, an operator, a cast to a domain with a CHECK, a view's or a trigger's
// function, a DO block, a procedure), which may change session settings with
// set_config() behind the proxy's back: anything but constants and utility statements
// that run none.
func runsCode(root protoreflect.Message) bool {
	switch root.Interface().(type) {
	case *pg_query.DoStmt, *pg_query.CallStmt, *pg_query.InsertStmt, *pg_query.UpdateStmt,
		*pg_query.DeleteStmt, *pg_query.MergeStmt, *pg_query.CopyStmt:
		return true
	}
	found := false
	walk(root, func(m protoreflect.Message, _ []frame) bool {
		switch m.Interface().(type) {
		case *pg_query.FuncCall, *pg_query.A_Expr, *pg_query.TypeCast, *pg_query.RangeVar,
			*pg_query.RangeFunction, *pg_query.SubLink, *pg_query.DoStmt, *pg_query.CallStmt:
			found = true
		}
		return !found
	})
	return found
}

// createsTemp reports a statement that creates a temporary table (which changes where
// names resolve in its session only).
func createsTemp(root protoreflect.Message) bool {
	switch s := root.Interface().(type) {
	case *pg_query.CreateStmt:
		return s.Relation != nil && s.Relation.Relpersistence == "t"
	case *pg_query.CreateTableAsStmt:
		return s.Into != nil && s.Into.Rel != nil && s.Into.Rel.Relpersistence == "t"
	}
	return false
}

// changesNames reports whether a statement may create, drop or rename relations or
// schemas (so that a name may resolve differently after it): any statement but queries,
// writes and the statements known to leave names alone.
func changesNames(root protoreflect.Message) bool {
	switch root.Interface().(type) {
	case *pg_query.SelectStmt, *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt,
		*pg_query.MergeStmt, *pg_query.ExplainStmt, *pg_query.VariableShowStmt, *pg_query.VariableSetStmt,
		*pg_query.DiscardStmt, *pg_query.ConstraintsSetStmt, *pg_query.TransactionStmt,
		*pg_query.ListenStmt, *pg_query.UnlistenStmt, *pg_query.NotifyStmt, *pg_query.CopyStmt,
		*pg_query.FetchStmt, *pg_query.ClosePortalStmt, *pg_query.DeclareCursorStmt,
		*pg_query.PrepareStmt, *pg_query.ExecuteStmt, *pg_query.DeallocateStmt, *pg_query.LockStmt,
		*pg_query.VacuumStmt, *pg_query.CommentStmt, *pg_query.GrantStmt, *pg_query.GrantRoleStmt,
		*pg_query.CheckPointStmt, *pg_query.SecLabelStmt, *pg_query.TruncateStmt:
		return false
	}
	return true
}

// plan plans the statement root, whose text is p.start to p.end.
func (p *planner) plan(root protoreflect.Message) *Statement {
	refs, funcs := p.survey(root)

	switch s := root.Interface().(type) {
	case *pg_query.TransactionStmt:
		return p.transaction(s)
	case *pg_query.VariableSetStmt, *pg_query.DiscardStmt:
		return &Statement{Kind: SetVar, Text: p.textTemplate(), Set: setPlan(s)}
	case *pg_query.PrepareStmt:
		return p.prepareStmt(s)
	case *pg_query.ExecuteStmt:
		return p.executeStmt(s)
	case *pg_query.DeallocateStmt:
		return &Statement{Kind: DeallocateSQL, Name: s.Name, Text: p.textTemplate(), Tag: "DEALLOCATE"}
	}
	if _, ok := root.Interface().(*pg_query.ListenStmt); ok {
		st := p.coordinator()
		st.Listen = true
		return st
	}
	if callsSetConfig(root) {
		for _, r := range refs {
			if r.table != nil {
				// It would run on the coordinator, over the empty prototype: no rows,
				// and no call of set_config either.
				return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "set_config() in a statement over distributed table %s is not supported", QuoteIdent(r.table.Name)).
					WithHint("Call set_config() in a statement of its own."))
			}
		}
		// set_config() changes settings like SET does.
		return &Statement{Kind: SetVar, Text: p.textTemplate(), SetConfig: true}
	}
	if len(funcs) > 0 {
		return p.functionCall(root, funcs, refs)
	}
	var dist []tableRef
	for _, r := range refs {
		if r.table != nil {
			dist = append(dist, r)
		}
	}
	p.omitSchemas(root, dist)
	if st := (ddlPlanner{p}).policyStmt(root, dist); st != nil { // ddltrigger.go
		return st
	}
	if st := p.coordinatorCode(root, dist); st != nil {
		return st
	}
	if st := p.queryTextCall(root); st != nil {
		return st
	}
	if st := (ddlPlanner{p}).ddlStmt(root, dist); st != nil {
		return st
	}
	dropped := p.droppedTables(root)
	if len(dist) == 0 && len(dropped) == 0 {
		return p.coordinator()
	}
	if _, explain := root.Interface().(*pg_query.ExplainStmt); !explain {
		// (EXPLAIN plans its statement as a root of its own.)
		if t := nestedWriteTarget(root, dist); t != nil {
			// Gathering would write to a temporary copy, not to the shards.
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "data-modifying statements on distributed table %s are not supported in WITH or subqueries", QuoteIdent(t.Name)).
				WithHint("Run the INSERT, UPDATE or DELETE as a statement of its own, in the same transaction block."))
		}
	}
	switch s := root.Interface().(type) {
	case *pg_query.SelectStmt:
		return p.selectStmt(s, refs, dist)
	case *pg_query.InsertStmt:
		return p.insertStmt(s, refs, dist)
	case *pg_query.UpdateStmt:
		return p.updateStmt(s, refs, dist)
	case *pg_query.DeleteStmt:
		return p.deleteStmt(s, refs, dist)
	case *pg_query.DropStmt:
		return p.dropStmt(s, dropped)
	case *pg_query.TruncateStmt:
		return p.truncateStmt(s, dist)
	case *pg_query.LockStmt:
		if s.Mode >= shareLock {
			// The prototype's lock would keep out no write or read through pgshard,
			// which go to the shards: refuse rather than pretend.
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "LOCK TABLE IN %s MODE on distributed table %s is not supported", lockModeNames[s.Mode], QuoteIdent(dist[0].table.Name)).
				WithDetail("The lock would be taken on the coordinator's prototype table only, where it keeps out no read or write of the shards.").
				WithHint("Use SELECT ... FOR UPDATE on the rows, or an advisory lock, to keep other sessions out."))
		}
		return p.coordinator()
	case *pg_query.VacuumStmt, *pg_query.GrantStmt, *pg_query.CommentStmt,
		*pg_query.SecLabelStmt, *pg_query.VariableShowStmt:
		// These only touch the coordinator's prototype table, which is what they mean there.
		return p.coordinator()
	case *pg_query.CreateTableAsStmt:
		if s.Objtype == pg_query.ObjectType_OBJECT_TABLE {
			return p.gatherStatement(root, refs)
		}
	case *pg_query.DeclareCursorStmt:
		// The cursor reads temporary copies on the coordinator, which stay until the
		// transaction ends; FETCH, MOVE and CLOSE then go to the coordinator as they are.
		st := p.gatherStatement(root, refs)
		if st.Merge != nil {
			st.Merge.Keep = true
			st.Merge.Hold = s.Options&cursorOptHold != 0
		}
		return st
	case *pg_query.CreateStmt:
		if likeOnly(s, dist) {
			// CREATE TABLE ... (LIKE t) copies the definition, which the coordinator's
			// prototype table holds.
			return p.coordinator()
		}
	case *pg_query.ExplainStmt:
		return p.explain(s)
	case *pg_query.CopyStmt:
		return p.copyStmt(s, refs, dist)
	case *pg_query.PrepareStmt:
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "PREPARE commands on distributed tables are unsupported"))
	}
	return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "%s on distributed table %s is not supported",
		commandName(root), QuoteIdent(dist0(dist, dropped).Name)))
}

// nestedWriteTarget returns the distributed table that an INSERT, UPDATE, DELETE or
// MERGE inside the statement (in WITH, not the statement itself) writes, if any.
func nestedWriteTarget(root protoreflect.Message, dist []tableRef) *metadata.Table {
	var found *metadata.Table
	walk(root, func(m protoreflect.Message, _ []frame) bool {
		if found != nil {
			return false
		}
		var rel *pg_query.RangeVar
		switch s := m.Interface().(type) {
		case *pg_query.InsertStmt:
			rel = s.Relation
		case *pg_query.UpdateStmt:
			rel = s.Relation
		case *pg_query.DeleteStmt:
			rel = s.Relation
		case *pg_query.MergeStmt:
			rel = s.Relation
		}
		if rel == nil || m.Interface() == root.Interface() {
			return true
		}
		for _, r := range dist {
			if r.rv == rel {
				found = r.table
			}
		}
		return true
	})
	return found
}

// cursorOptHold is PostgreSQL's CURSOR_OPT_HOLD flag of DECLARE ... WITH HOLD.
const cursorOptHold = 0x0020

// likeOnly reports whether a CREATE TABLE names the distributed tables only in LIKE
// clauses.
func likeOnly(s *pg_query.CreateStmt, dist []tableRef) bool {
	likes := map[*pg_query.RangeVar]bool{}
	for _, e := range s.TableElts {
		if l := e.GetTableLikeClause(); l != nil {
			likes[l.Relation] = true
		}
	}
	for _, r := range dist {
		if !likes[r.rv] {
			return false
		}
	}
	return true
}

func dist0(dist []tableRef, dropped []*metadata.Table) *metadata.Table {
	if len(dist) > 0 {
		return dist[0].table
	}
	return dropped[0]
}

// commandName names a statement's command for messages ("ALTER TABLE", ...).
// PostgreSQL's lock modes (LockStmt.Mode): from SHARE up they keep out writers.
const shareLock = 5

var lockModeNames = map[int32]string{1: "ACCESS SHARE", 2: "ROW SHARE", 3: "ROW EXCLUSIVE",
	4: "SHARE UPDATE EXCLUSIVE", 5: "SHARE", 6: "SHARE ROW EXCLUSIVE", 7: "EXCLUSIVE", 8: "ACCESS EXCLUSIVE"}

func commandName(m protoreflect.Message) string {
	name := string(m.Descriptor().Name())
	name = strings.TrimSuffix(name, "Stmt")
	switch name {
	case "AlterTable":
		return "ALTER TABLE"
	case "Index":
		return "CREATE INDEX"
	case "CreateTableAs":
		return "CREATE TABLE AS"
	case "View":
		return "CREATE VIEW"
	case "Rename":
		return "ALTER ... RENAME"
	case "Cluster":
		return "CLUSTER"
	case "Reindex":
		return "REINDEX"
	case "Declare":
		return "DECLARE CURSOR"
	case "Merge":
		return "MERGE"
	case "CreateTrig":
		return "CREATE TRIGGER"
	case "CreateStats":
		return "CREATE STATISTICS"
	case "AlterObjectSchema":
		return "ALTER ... SET SCHEMA"
	case "RefreshMatView":
		return "REFRESH MATERIALIZED VIEW"
	}
	return strings.ToUpper(name)
}

// survey walks the statement once: it records which literal tokens are parser constants
// (and whether any constant's value shapes the plan), collects relation references and
// resolves them, and finds calls of pgshard's SQL functions.
func (p *planner) survey(root protoreflect.Message) (refs []tableRef, funcs []funcRef) {
	// CTE names shadow tables of the same name.
	walk(root, func(m protoreflect.Message, path []frame) bool {
		if c, ok := m.Interface().(*pg_query.CommonTableExpr); ok {
			p.ctes[c.Ctename] = true
		}
		return true
	})
	walk(root, func(m protoreflect.Message, path []frame) bool {
		switch n := m.Interface().(type) {
		case *pg_query.LockingClause:
			// FOR UPDATE OF x names FROM items by their alias: not table references.
			return false
		case *pg_query.A_Const:
			if ti := p.constToken(n.Location); ti >= 0 {
				p.aconst[int32(ti)] = true
				if len(path) > 0 {
					parent := path[len(path)-1]
					if _, ok := parent.msg.Interface().(*pg_query.SortBy); ok {
						p.exact = true // ORDER BY <position>
					}
					if _, ok := parent.msg.Interface().(*pg_query.SelectStmt); ok && parent.field == "group_clause" {
						p.exact = true // GROUP BY <position>
					}
				}
			}
		case *pg_query.RangeVar:
			r := tableRef{rv: n, path: append([]frame(nil), path...)}
			r.table = p.resolve(n)
			refs = append(refs, r)
		case *pg_query.FuncCall:
			if name := pgshardFunction(n); name != "" {
				funcs = append(funcs, funcRef{call: n, name: name, path: append([]frame(nil), path...)})
			}
		}
		return true
	})
	return refs, funcs
}

// constToken returns the literal token of a parser constant at byte offset loc: the token
// there, or the one after a unary minus the parser folded into the constant.
func (q *stmtText) constToken(loc int32) int {
	if loc < 0 {
		return -1
	}
	ti := sqllex.Find(q.in.Toks, int(loc))
	if ti < 0 {
		return -1
	}
	t := q.in.Toks[ti]
	if t.Kind == sqllex.Op && q.in.Text[t.Start:t.End] == "-" && ti+1 < len(q.in.Toks) {
		ti++
	}
	if !q.in.Toks[ti].Literal() {
		return -1
	}
	return ti
}

// resolve returns the distributed table a relation reference names, or nil.
func (p *planner) resolve(rv *pg_query.RangeVar) *metadata.Table {
	if !p.snap.HasTables() || rv.Relpersistence == "t" {
		return nil
	}
	if rv.Schemaname != "" {
		return p.snap.Table(rv.Schemaname, rv.Relname)
	}
	if p.ctes[rv.Relname] {
		return nil
	}
	if p.sess.Names != nil {
		schema, ok := p.sess.Names[rv.Relname]
		if !ok {
			return nil
		}
		return p.snap.Table(schema, rv.Relname)
	}
	for _, s := range p.searchPath {
		if t := p.snap.Table(s, rv.Relname); t != nil {
			return t
		}
	}
	return nil
}

// droppedTables returns the distributed tables a DROP TABLE names.
func (p *planner) droppedTables(root protoreflect.Message) []*metadata.Table {
	d, ok := root.Interface().(*pg_query.DropStmt)
	if !ok || d.RemoveType != pg_query.ObjectType_OBJECT_TABLE {
		return nil
	}
	var out []*metadata.Table
	for _, obj := range d.Objects {
		l, ok := unwrap(obj).(*pg_query.List)
		if !ok {
			continue
		}
		var names []string
		for _, it := range l.Items {
			if s, ok := unwrap(it).(*pg_query.String); ok {
				names = append(names, s.Sval)
			}
		}
		rv := &pg_query.RangeVar{}
		switch len(names) {
		case 1:
			rv.Relname = names[0]
		case 2:
			rv.Schemaname, rv.Relname = names[0], names[1]
		case 3:
			rv.Schemaname, rv.Relname = names[1], names[2]
		default:
			continue
		}
		if t := p.resolve(rv); t != nil {
			out = append(out, t)
		}
	}
	return out
}

// callsSetConfig reports a call of set_config, which changes session settings.
func callsSetConfig(root protoreflect.Message) bool {
	found := false
	walk(root, func(m protoreflect.Message, _ []frame) bool {
		if f, ok := m.Interface().(*pg_query.FuncCall); ok && funcName(f) == "set_config" {
			found = true
		}
		return !found
	})
	return found
}

// prepareStmt plans SQL PREPARE: the proxy keeps the statement (it shares the namespace
// of protocol-level prepared statements, as in PostgreSQL).
func (p *planner) prepareStmt(s *pg_query.PrepareStmt) *Statement {
	// The statement follows AS.
	i := p.firstTok()
	for i < len(p.in.Toks) && !p.kw(i, "as") {
		i++
	}
	if i >= len(p.in.Toks) {
		return p.errorf(notSupported("The prepared statement's text could not be located."))
	}
	st := &Statement{Kind: PrepareSQL, Name: s.Name, Text: p.textTemplate(), Tag: "PREPARE",
		Query: p.in.Text[p.startOf(i+1):p.end]}
	for _, n := range s.Argtypes {
		tn, ok := unwrap(n).(*pg_query.TypeName)
		if !ok {
			return p.errorf(notSupported("Unrecognised parameter type."))
		}
		t := p.typeText(tn)
		if t == "" {
			return p.errorf(notSupported("A parameter type could not be located."))
		}
		st.ParamTypes = append(st.ParamTypes, t)
	}
	// The text of a prepared statement is not a shape: its literals are part of it.
	p.exact = true
	return st
}

// typeText returns the source text of a type name.
func (q *stmtText) typeText(tn *pg_query.TypeName) string {
	i := q.tok(tn.Location)
	if i < 0 {
		return ""
	}
	depth := 0
	j := i
	for ; j < len(q.in.Toks); j++ {
		switch {
		case q.is(j, "(") || q.is(j, "["):
			depth++
		case q.is(j, ")") || q.is(j, "]"):
			if depth == 0 {
				return q.in.Text[q.startOf(i):q.endOf(j-1)]
			}
			depth--
		case depth == 0 && q.is(j, ","):
			return q.in.Text[q.startOf(i):q.endOf(j-1)]
		}
	}
	return ""
}

// executeStmt plans SQL EXECUTE name(args).
func (p *planner) executeStmt(s *pg_query.ExecuteStmt) *Statement {
	st := &Statement{Kind: ExecuteSQL, Name: s.Name, Text: p.textTemplate()}
	if len(s.Params) == 0 {
		return st
	}
	i := p.firstTok()
	for i < len(p.in.Toks) && !p.is(i, "(") {
		i++
	}
	if i >= len(p.in.Toks) {
		return p.errorf(notSupported("EXECUTE's arguments could not be located."))
	}
	end := p.matchParen(i)
	spans := p.splitTop(i+1, end)
	if end < 0 || len(spans) != len(s.Params) {
		return p.errorf(notSupported("EXECUTE's arguments could not be located."))
	}
	for _, sp := range spans {
		b := newBuilder(p.in, p.litIdx)
		b.text(p.startOf(sp[0]), p.endOf(sp[1]-1))
		st.Args = append(st.Args, b.done())
	}
	return st
}

func (p *planner) coordinator() *Statement {
	return &Statement{Kind: Coordinator, Text: p.textTemplate()}
}

func (p *planner) errorf(e *pgerr.Error) *Statement {
	return &Statement{Kind: Error, Err: e, Text: p.textTemplate()}
}

// textTemplate is the statement's own text as a template.
func (q *stmtText) textTemplate() Template {
	b := newBuilder(q.in, q.litIdx)
	b.text(q.start, q.end)
	return b.done()
}

func (p *planner) transaction(s *pg_query.TransactionStmt) *Statement {
	st := &Statement{Text: p.textTemplate(), Name: s.SavepointName}
	switch s.Kind {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		st.Kind, st.Tag, st.HasOptions = Begin, "BEGIN", len(s.Options) > 0
		if s.Kind == pg_query.TransactionStmtKind_TRANS_STMT_START {
			st.Tag = "START TRANSACTION"
		}
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		st.Kind, st.Tag, st.Chain = Commit, "COMMIT", s.Chain
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		st.Kind, st.Tag, st.Chain = Rollback, "ROLLBACK", s.Chain
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		st.Kind, st.Tag = Savepoint, "SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		st.Kind, st.Tag = Release, "RELEASE"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		st.Kind, st.Tag = RollbackTo, "ROLLBACK"
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE, pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
		pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		// Two-phase commit commands act on the coordinator's transaction only.
		st.Kind = Coordinator
		st.PrepareTx = s.Kind == pg_query.TransactionStmtKind_TRANS_STMT_PREPARE
	}
	return st
}

// --- token spans ---

// tok returns the index of the token starting at byte offset off, or -1.
func (q *stmtText) tok(off int32) int { return sqllex.Find(q.in.Toks, int(off)) }

// startOf and endOf are the byte offsets where token i starts and ends.
func (q *stmtText) startOf(i int) int {
	if i >= len(q.in.Toks) {
		return len(q.in.Text)
	}
	return int(q.in.Toks[i].Start)
}

func (q *stmtText) endOf(i int) int { return int(q.in.Toks[i].End) }

// is reports whether token i is the punctuation or operator s.
func (q *stmtText) is(i int, s string) bool {
	if i < 0 || i >= len(q.in.Toks) {
		return false
	}
	t := q.in.Toks[i]
	return (t.Kind == sqllex.Punct || t.Kind == sqllex.Op) && q.in.Text[t.Start:t.End] == s
}

// kw reports whether token i is the keyword k (lower case).
func (q *stmtText) kw(i int, k string) bool {
	return i >= 0 && i < len(q.in.Toks) && sqllex.Keyword(q.in.Text, q.in.Toks[i], k)
}

// matchParen returns the index of the ")" matching the "(" at token i, or -1.
func (q *stmtText) matchParen(i int) int {
	depth := 0
	for j := i; j < len(q.in.Toks); j++ {
		switch {
		case q.is(j, "(") || q.is(j, "["):
			depth++
		case q.is(j, ")") || q.is(j, "]"):
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// firstTok returns the index of the statement's first token.
func (q *stmtText) firstTok() int {
	i := 0
	for i < len(q.in.Toks) && int(q.in.Toks[i].Start) < q.start {
		i++
	}
	return i
}

// lastTok returns the index of the statement's last token (before any ";").
func (q *stmtText) lastTok() int {
	i := sqllex.Find(q.in.Toks, q.start)
	if i < 0 {
		// The statement starts in whitespace: find the first token after it.
		i = 0
		for i < len(q.in.Toks) && int(q.in.Toks[i].Start) < q.start {
			i++
		}
	}
	last := -1
	for ; i < len(q.in.Toks) && int(q.in.Toks[i].End) <= q.end; i++ {
		last = i
	}
	return last
}

// splitTop splits tokens [from, to) at top-level commas into [start, end) ranges.
func (q *stmtText) splitTop(from, to int) [][2]int {
	var out [][2]int
	depth := 0
	s := from
	for j := from; j < to; j++ {
		switch {
		case q.is(j, "(") || q.is(j, "["):
			depth++
		case q.is(j, ")") || q.is(j, "]"):
			depth--
		case depth == 0 && q.is(j, ","):
			out = append(out, [2]int{s, j})
			s = j + 1
		}
	}
	if s < to {
		out = append(out, [2]int{s, to})
	}
	return out
}

// nameEnd returns the token index after a possibly qualified name starting at token i.
func (q *stmtText) nameEnd(i int) int {
	j := i + 1
	for j+1 < len(q.in.Toks) && q.is(j, ".") {
		k := q.in.Toks[j+1].Kind
		if k != sqllex.Ident && k != sqllex.QIdent {
			break
		}
		j += 2
	}
	return j
}

// funcEnd returns the token index after a function call that starts at token i (the
// name), including FILTER (...) and OVER ... clauses; -1 if the shape is not recognised.
func (q *stmtText) funcEnd(i int) int {
	j := q.nameEnd(i)
	if !q.is(j, "(") {
		// SQL-standard value functions without parentheses (CURRENT_DATE, ...).
		return j
	}
	j = q.matchParen(j)
	if j < 0 {
		return -1
	}
	j++
	if q.kw(j, "within") && q.kw(j+1, "group") && q.is(j+2, "(") {
		if j = q.matchParen(j + 2); j < 0 {
			return -1
		}
		j++
	}
	if q.kw(j, "filter") && q.is(j+1, "(") {
		if j = q.matchParen(j + 1); j < 0 {
			return -1
		}
		j++
	}
	if q.kw(j, "over") {
		if q.is(j+1, "(") {
			if j = q.matchParen(j + 1); j < 0 {
				return -1
			}
			return j + 1
		}
		return j + 2
	}
	return j
}

// tableSegs writes a table reference: the shard table (SegTable hole index) in place of
// the name tokens of rv, plus an alias with the table's own name when rv has none, so that
// column references qualified by the table name keep working.
func (p *planner) tableSegs(b *builder, rv *pg_query.RangeVar, hole int, asKeyword bool) (from, to int, ok bool) {
	ti := p.tok(rv.Location)
	if ti < 0 {
		return 0, 0, false
	}
	end := p.nameEnd(ti)
	b.hole(SegTable, hole)
	// "TABLE name" takes no alias.
	bare := p.kw(ti-1, "table") || p.kw(ti-1, "only") && p.kw(ti-2, "table")
	if rv.Alias == nil && !bare {
		if asKeyword {
			b.gen(" AS " + QuoteIdent(rv.Relname))
		} else {
			b.gen(" " + QuoteIdent(rv.Relname))
		}
	}
	return p.startOf(ti), p.endOf(end - 1), true
}

// notSupported is the error for a query shape pgshard does not plan.
func notSupported(detail string, args ...any) *pgerr.Error {
	return pgerr.New(pgerr.FeatureNotSupported, "cannot perform distributed planning for the given query").WithDetail(detail, args...)
}

// omitSchemas leaves the schema out of column references "schema.table.column" (and
// "schema.table.*") to distributed tables referenced without an alias: the statement
// text reaches the shards (and gathers) with the table renamed and given its own name as
// an alias, under which "table.column" means what the client wrote.
func (p *planner) omitSchemas(root protoreflect.Message, dist []tableRef) {
	walk(root, func(m protoreflect.Message, _ []frame) bool {
		cr, ok := m.Interface().(*pg_query.ColumnRef)
		if !ok || len(cr.Fields) != 3 {
			return true
		}
		schema, ok1 := unwrap(cr.Fields[0]).(*pg_query.String)
		table, ok2 := unwrap(cr.Fields[1]).(*pg_query.String)
		if !ok1 || !ok2 {
			return false
		}
		for _, r := range dist {
			if r.rv.Alias != nil || r.rv.Relname != table.Sval || r.table.Schema != schema.Sval {
				continue
			}
			i := p.tok(cr.Location)
			if i < 0 || !p.is(i+1, ".") || i+2 >= len(p.in.Toks) {
				return false
			}
			p.in.omit = append(p.in.omit, [2]int{p.startOf(i), p.startOf(i + 2)})
			break
		}
		return false
	})
	sort.Slice(p.in.omit, func(i, j int) bool { return p.in.omit[i][0] < p.in.omit[j][0] })
}
