package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
	"github.com/pgshard/pgshard/router/sqllex"
)

// selectStmt plans a SELECT that reads a distributed table. The table must be the only
// relation of the query; the whole query is sent to the shards that can hold matching
// rows, and when that is more than one, Merge says how their results combine.
func (p *planner) selectStmt(s *pg_query.SelectStmt, refs, dist []tableRef) *Statement {
	var rv *pg_query.RangeVar
	if s.Op == pg_query.SetOperation_SETOP_NONE && s.WithClause == nil && s.IntoClause == nil &&
		len(refs) == 1 && len(s.FromClause) == 1 && !hasSubLink(s.ProtoReflect()) {
		rv, _ = unwrap(s.FromClause[0]).(*pg_query.RangeVar)
	}
	if rv == nil {
		if joined, ok := colocatedJoin(s, refs); ok {
			if st := p.colocatedSelect(s, joined, refs); st != nil {
				return st
			}
		}
		// Other joins, subqueries, set operations, CTEs, SELECT INTO: the coordinator
		// runs the statement over copies of the tables.
		p.holes = nil
		return p.gatherStatement(s.ProtoReflect(), refs)
	}
	t := dist[0].table
	alias := rv.Relname
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	st := &Statement{Kind: Select, Table: t.OID, Text: p.textTemplate(), Locking: len(s.LockingClause) > 0, LockNoWait: lockNoWait(s)}
	st.Filter = p.cond(s.WhereClause, t, alias)
	p.holes = refs
	b := newBuilder(p.in, p.litIdx)
	if !p.region(b, p.start, p.end) {
		return p.errorf(notSupported("The statement's table references could not be located."))
	}
	st.Shard = b.done()
	st.Merge, st.Err = p.selectMerge(s, t, rv, alias, refs)
	return st
}

// hasSubLink reports whether a subquery appears anywhere below m.
func hasSubLink(m protoreflect.Message) bool {
	found := false
	walk(m, func(n protoreflect.Message, _ []frame) bool {
		switch n.Interface().(type) {
		case *pg_query.SubLink, *pg_query.RangeSubselect:
			found = true
		}
		return !found
	})
	return found
}

// selectMerge decides how a SELECT's per-shard results combine: streamed as they come
// (Concat), combined from one row of partial aggregates per shard (Aggregate), or gathered
// on the coordinator, as partial aggregates per group or as the rows WHERE keeps (Gather).
// It returns a nil merge and an error for shapes that cannot span shards; such queries
// still run when their WHERE clause selects a single shard.
func (p *planner) selectMerge(s *pg_query.SelectStmt, t *metadata.Table, rv *pg_query.RangeVar, alias string, refs []tableRef) (*Merge, *pgerr.Error) {
	aggs, bare := p.aggregates(s)
	windowed := false
	walk(s.ProtoReflect(), func(m protoreflect.Message, _ []frame) bool {
		if f, ok := m.Interface().(*pg_query.FuncCall); ok && f.Over != nil {
			windowed = true
		}
		return true
	})
	grouped := len(s.GroupClause) > 0
	aggregated := len(aggs) > 0 || s.HavingClause != nil || grouped
	if len(s.LockingClause) > 0 {
		switch {
		case aggregated || windowed || len(s.DistinctClause) > 0:
			// PostgreSQL refuses these; its own message comes from the prototype.
			return &Merge{Kind: Prototype}, nil
		case (s.LimitCount != nil || s.LimitOffset != nil) && !skipLocked(s):
			// Each shard would lock its own first rows, where PostgreSQL locks only
			// those it returns: waiting for (or failing on) rows it leaves alone.
			return nil, notSupported("SELECT ... FOR UPDATE/SHARE with LIMIT or OFFSET over several shards is only supported with SKIP LOCKED.")
		case len(s.SortClause) > 0:
			if m := p.sortMerge(s, t, rv, alias); m != nil {
				return m, nil
			}
			return nil, notSupported("SELECT ... FOR UPDATE/SHARE with this ORDER BY over several shards is not supported.")
		}
		return p.concatMerge(s, t, refs)
	}
	if aggregated {
		if bare && !grouped {
			// A column outside any aggregate without GROUP BY is an error; the
			// coordinator's (empty) prototype table gives PostgreSQL's own message.
			return &Merge{Kind: Prototype}, nil
		}
		if !grouped && !windowed && len(s.DistinctClause) == 0 {
			if m := p.aggregateMerge(s, t, rv, aggs); m != nil {
				if m.Fallback = p.mergeFallback(s, t, rv, alias); m.Fallback != nil {
					return m, nil
				}
			}
		}
		if m := p.groupMerge(s, t, rv, alias, aggs); m != nil {
			return m, nil
		}
		return p.gatherRows(s, rv, t, alias)
	}
	if len(s.DistinctClause) > 0 && !windowed {
		if m := p.groupMerge(s, t, rv, alias, nil); m != nil {
			return m, nil
		}
	}
	if !windowed && len(s.DistinctClause) == 0 {
		if len(s.SortClause) > 0 {
			if m := p.sortMerge(s, t, rv, alias); m != nil {
				return m, nil
			}
		} else if m, err := p.concatMerge(s, t, refs); err == nil {
			return m, nil
		}
	}
	return p.gatherRows(s, rv, t, alias)
}

// skipLocked reports whether every locking clause of a SELECT skips locked rows.
func skipLocked(s *pg_query.SelectStmt) bool {
	for _, n := range s.LockingClause {
		lc, ok := unwrap(n).(*pg_query.LockingClause)
		if !ok || lc.WaitPolicy != pg_query.LockWaitPolicy_LockWaitSkip {
			return false
		}
	}
	return len(s.LockingClause) > 0
}

// lockNoWait reports whether every locking clause of a SELECT skips locked rows or
// fails on them (SKIP LOCKED, NOWAIT).
func lockNoWait(s *pg_query.SelectStmt) bool {
	for _, n := range s.LockingClause {
		lc, ok := unwrap(n).(*pg_query.LockingClause)
		if !ok || lc.WaitPolicy != pg_query.LockWaitPolicy_LockWaitSkip && lc.WaitPolicy != pg_query.LockWaitPolicy_LockWaitError {
			return false
		}
	}
	return len(s.LockingClause) > 0
}

// aggCall is an aggregate call in a select list, HAVING or ORDER BY clause.
type aggCall struct {
	call       *pg_query.FuncCall
	name       string
	from, to   int // token range of the whole call
	argFrom    int // token range of the arguments, inside the parentheses
	argTo      int
	filterFrom int // token range of FILTER (...), -1 when absent
	filterTo   int
}

// aggregates finds the aggregate calls of a SELECT (outside FROM and WHERE) and reports
// whether a column is referenced outside any aggregate.
func (p *planner) aggregates(s *pg_query.SelectStmt) (aggs []aggCall, bare bool) {
	var roots []*pg_query.Node
	roots = append(roots, s.DistinctClause...)
	roots = append(roots, s.TargetList...)
	roots = append(roots, s.HavingClause)
	// A bare name in ORDER BY names an output column first, as PostgreSQL resolves it
	// (SELECT count(*) AS n ... ORDER BY n): that is no column outside an aggregate.
	outputs := map[string]bool{}
	for _, n := range s.TargetList {
		if rt, ok := unwrap(n).(*pg_query.ResTarget); ok && rt.Val != nil {
			if rt.Name != "" {
				outputs[rt.Name] = true
			} else {
				outputs[colName(rt.Val)] = true
			}
		}
	}
	for _, sb := range s.SortClause {
		if by, ok := unwrap(sb).(*pg_query.SortBy); ok {
			if cr, ok := unwrap(by.Node).(*pg_query.ColumnRef); ok && len(cr.Fields) == 1 {
				if f, ok := unwrap(cr.Fields[0]).(*pg_query.String); ok && outputs[f.Sval] {
					continue
				}
			}
		}
		roots = append(roots, sb)
	}
	for _, r := range roots {
		if r == nil {
			continue
		}
		m := nodeMessage(r)
		if m == nil {
			continue
		}
		walk(m, func(n protoreflect.Message, path []frame) bool {
			switch v := n.Interface().(type) {
			case *pg_query.FuncCall:
				name := funcName(v)
				if v.Over == nil && (p.snap.IsAggregate(name) || v.AggStar || v.AggDistinct || len(v.AggOrder) > 0 || v.AggFilter != nil) {
					aggs = append(aggs, p.aggCall(v, name))
					return false
				}
			case *pg_query.ColumnRef:
				bare = true
			}
			return true
		})
	}
	return aggs, bare
}

func funcName(f *pg_query.FuncCall) string {
	if len(f.Funcname) == 0 {
		return ""
	}
	if s, ok := unwrap(f.Funcname[len(f.Funcname)-1]).(*pg_query.String); ok {
		return s.Sval
	}
	return ""
}

func (p *planner) aggCall(f *pg_query.FuncCall, name string) aggCall {
	a := aggCall{call: f, name: name, from: -1, filterFrom: -1}
	i := p.tok(f.Location)
	if i < 0 {
		return a
	}
	open := p.nameEnd(i)
	closeParen := p.matchParen(open)
	if !p.is(open, "(") || closeParen < 0 {
		return a
	}
	// What follows the arguments is what the parse tree says: WITHIN GROUP (...), then
	// FILTER (...). (A word after the call is otherwise an alias, even "filter".)
	j := closeParen + 1
	if f.AggWithinGroup {
		if !p.kw(j, "within") || !p.kw(j+1, "group") || !p.is(j+2, "(") {
			return a
		}
		j = p.matchParen(j+2) + 1
	}
	if f.AggFilter != nil {
		if !p.kw(j, "filter") || !p.is(j+1, "(") {
			return a
		}
		a.filterFrom = j
		j = p.matchParen(j+1) + 1
		a.filterTo = j
	}
	if j <= closeParen || f.Over != nil {
		return a
	}
	a.from, a.to = i, j
	a.argFrom, a.argTo = open+1, closeParen
	return a
}

// partials writes the partial aggregates of aggs to b, separated by commas and named
// pgshard_p<n>, and returns for each aggregate the writer of its final form over those
// columns. Partial column n has type hole typeHole(n). DISTINCT aggregates over a plain
// column are kept whole (distinctCol reports the column, which the caller must group the
// partials by); nil finals mean an aggregate without an exact partial form.
func (p *planner) partials(b *builder, aggs []aggCall, t *metadata.Table, typeHole func(n int) int, distinctCol func(a aggCall) bool) (finals []func(*builder), np int) {
	finals = make([]func(*builder), len(aggs))
	partial := func() int {
		if np > 0 {
			b.gen(", ")
		}
		np++
		return np
	}
	col := func(n int) string { return "pgshard_p" + itoa(n) }
	named := func(n int) { b.gen(" AS " + col(n)) }
	seen := map[string]int{}
	for i, a := range aggs {
		if a.from < 0 || len(a.call.AggOrder) > 0 {
			return nil, 0
		}
		// The same call written twice (in DISTINCT ON and ORDER BY, say) is one partial,
		// so that its final forms are equal expressions too.
		key := p.tokensKey(a.from, a.to)
		if j, ok := seen[key]; ok {
			finals[i] = finals[j]
			continue
		}
		seen[key] = i
		whole := func(b *builder) { b.text(p.startOf(a.from), p.endOf(a.to-1)) }
		if a.call.AggDistinct && a.name != "min" && a.name != "max" {
			if distinctCol == nil || !distinctCol(a) {
				return nil, 0
			}
			finals[i] = whole
			continue
		}
		switch a.name {
		case "count":
			n := partial()
			whole(b)
			named(n)
			finals[i] = func(b *builder) { b.gen("coalesce(pg_catalog.sum(" + col(n) + "), 0)::pg_catalog.int8") }
		case "sum":
			n := partial()
			whole(b)
			named(n)
			finals[i] = func(b *builder) {
				b.gen("pg_catalog.sum(" + col(n) + ")::")
				b.hole(SegType, typeHole(n))
			}
		case "min", "max", "bool_and", "bool_or", "every":
			if distinctCol == nil && len(a.call.Args) == 1 && !p.byteOrder(unwrap(a.call.Args[0])) {
				// Partials passed as parameters lose their collation: strings under
				// a locale's rules take the temporary-table route, which keeps it.
				return nil, 0
			}
			n := partial()
			whole(b)
			named(n)
			fn := a.name
			if fn == "every" {
				fn = "bool_and"
			}
			finals[i] = func(b *builder) { b.gen("pg_catalog." + fn + "(" + col(n) + ")") }
		case "avg":
			if len(a.call.Args) != 1 {
				return nil, 0
			}
			// PostgreSQL accumulates float averages in float8, where the sum of a
			// real would be a real: the partial sum of a float is taken in float8.
			// An argument whose type the planner cannot tell is checked at run time
			// (Aggregate), or gathered (grouped merges).
			cat := p.exprCat(a.call.Args[0])
			arg := func(b *builder) {
				if cat == catFloat {
					b.gen("(")
				}
				b.text(p.startOf(a.argFrom), p.endOf(a.argTo-1))
				if cat == catFloat {
					b.gen(")::pg_catalog.float8")
				}
			}
			filter := func(b *builder) {
				if a.filterFrom >= 0 {
					b.gen(" ")
					b.text(p.startOf(a.filterFrom), p.endOf(a.filterTo-1))
				}
			}
			ns := partial()
			if cat == catUnknown {
				if distinctCol != nil {
					return nil, 0
				}
				p.unsureSums = append(p.unsureSums, ns-1)
			}
			b.gen("pg_catalog.sum(")
			arg(b)
			b.gen(")")
			filter(b)
			named(ns)
			nc := partial()
			b.gen("pg_catalog.count(")
			arg(b)
			b.gen(")")
			filter(b)
			named(nc)
			finals[i] = func(b *builder) {
				b.gen("(CASE WHEN pg_catalog.sum(" + col(nc) + ") OPERATOR(pg_catalog.<>) 0 THEN pg_catalog.sum(" + col(ns) + ") OPERATOR(pg_catalog./) pg_catalog.sum(" + col(nc) + ") END)")
			}
		default:
			return nil, 0
		}
	}
	return finals, np
}

// finalList writes the select list of a merge's final query, aggregates replaced by
// their final forms, each entry keeping the column name PostgreSQL gives the original.
func (p *planner) finalList(b *builder, s *pg_query.SelectStmt, c clauses, aggs []aggCall, finals []func(*builder)) bool {
	entries, ok := p.targets(s, c)
	if !ok {
		return false
	}
	b.gen("SELECT ")
	if len(entries) > 0 && entries[0].from > c.selectKw+1 {
		// DISTINCT [ON (...)] as written, aggregates replaced.
		p.copyReplacing(b, c.selectKw+1, entries[0].from, aggs, finals)
		b.gen(" ")
	}
	for i, e := range entries {
		if i > 0 {
			b.gen(", ")
		}
		p.copyReplacing(b, e.from, e.to, aggs, finals)
		if rt, ok := unwrap(s.TargetList[i]).(*pg_query.ResTarget); ok && rt.Name == "" {
			b.gen(" AS " + QuoteIdent(colName(rt.Val)))
		}
	}
	return true
}

// copyReplacing writes tokens [from, to) with the aggregate calls among them replaced by
// their final forms.
func (q *stmtText) copyReplacing(b *builder, from, to int, aggs []aggCall, finals []func(*builder)) {
	if from >= to {
		return
	}
	pos := q.startOf(from)
	for i, a := range aggs {
		if a.from >= from && a.to <= to {
			b.text(pos, q.startOf(a.from))
			finals[i](b)
			pos = q.endOf(a.to - 1)
		}
	}
	b.text(pos, q.endOf(to-1))
}

// aggregateMerge plans an aggregate query without GROUP BY over several shards: each shard
// computes one row of partial aggregates, and the coordinator combines them with the
// original select list, HAVING, ORDER BY and LIMIT, so that result types and NULL handling
// are exactly PostgreSQL's. It returns nil when an aggregate has no exact partial form.
func (p *planner) aggregateMerge(s *pg_query.SelectStmt, t *metadata.Table, rv *pg_query.RangeVar, aggs []aggCall) *Merge {
	c, ok := p.clausesOf(s)
	if !ok || c.from < 0 {
		return nil
	}
	shard := newBuilder(p.in, p.litIdx)
	shard.gen("SELECT ")
	p.unsureSums = nil
	finals, np := p.partials(shard, aggs, t, func(n int) int { return n - 1 }, nil)
	if finals == nil || np == 0 {
		return nil
	}
	shard.gen(" ")
	if !p.fromWhere(shard, c, true) {
		return nil
	}

	// Final query: the select list, HAVING, ORDER BY, LIMIT and OFFSET over the partials.
	final := newBuilder(p.in, p.litIdx)
	if !p.finalList(final, s, c, aggs, finals) {
		return nil
	}
	final.gen(" FROM (VALUES ")
	final.hole(SegEval, 0)
	final.gen(") pgshard_partial(")
	for i := 1; i <= np; i++ {
		if i > 1 {
			final.gen(", ")
		}
		final.gen("pgshard_p" + itoa(i))
	}
	final.gen(") ")
	p.copyReplacing(final, c.afterWhere(), c.end, aggs, finals)
	return &Merge{Kind: Aggregate, Shard: shard.done(), Final: final.done(), Partials: np, NotFloat4: p.unsureSums}
}

// groupMerge plans a grouped aggregate query, or a SELECT DISTINCT of plain columns, over
// several shards: each shard groups its rows by the query's grouping columns and computes
// partial aggregates per group; the groups of all shards are gathered on the coordinator,
// which groups them again and combines the partials with the original select list,
// HAVING, ORDER BY and LIMIT. It returns nil for grouping expressions other than plain
// columns and for aggregates without an exact partial form.
func (p *planner) groupMerge(s *pg_query.SelectStmt, t *metadata.Table, rv *pg_query.RangeVar, alias string, aggs []aggCall) *Merge {
	c, ok := p.clausesOf(s)
	if !ok || len(p.holes) != 1 || c.from < 0 || c.forKw >= 0 {
		return nil
	}
	gc := &groupCols{p: p, t: t, alias: alias}
	if !gc.fromStatement(s, aggs) {
		return nil
	}
	distinctCol := func(a aggCall) bool {
		for i, arg := range a.call.Args {
			if _, ok := unwrap(arg).(*pg_query.A_Const); ok && i > 0 {
				continue
			}
			if !gc.add(arg) {
				return false
			}
		}
		return a.filterFrom < 0
	}
	// Aggregates first: DISTINCT aggregates add grouping columns.
	aggList := newBuilder(p.in, p.litIdx)
	ncols := 0
	finals, np := p.partials(aggList, aggs, t, func(n int) int { return ncols + n - 1 }, distinctCol)
	if finals == nil || len(gc.names) == 0 && np == 0 {
		return nil
	}
	ncols = len(gc.names)
	shard := newBuilder(p.in, p.litIdx)
	gc.partialList(shard, aggList, np)
	if !p.fromWhere(shard, c, true) {
		return nil
	}
	gc.groupBy(shard)
	proto := newBuilder(p.in, p.litIdx)
	gc.partialList(proto, aggList, np)
	p.fromWhere(proto, c, false)
	gc.groupBy(proto)

	final := newBuilder(p.in, p.litIdx)
	if !p.finalList(final, s, c, aggs, finals) {
		return nil
	}
	final.gen(" FROM ")
	final.hole(SegTable, 0)
	final.gen(" " + QuoteIdent(alias) + " ")
	p.copyReplacing(final, c.afterWhere(), c.end, aggs, finals)
	return &Merge{
		Kind:  Gather,
		Pulls: []Pull{{Table: t.OID, Shard: shard.done(), Proto: proto.done()}},
		Final: final.done(),
	}
}

// groupCols are the columns of table t (referenced as alias) a grouped merge's shards
// group by, each once, in order.
type groupCols struct {
	p     *planner
	t     *metadata.Table
	alias string
	names []string
}

// add adds n, when it is a column of the table; ok is false when it is not.
func (gc *groupCols) add(n *pg_query.Node) bool {
	cr, ok := unwrap(n).(*pg_query.ColumnRef)
	if !ok {
		return false
	}
	name, ok := columnOf(cr, gc.t, gc.alias)
	if !ok {
		return false
	}
	for _, x := range gc.names {
		if x == name {
			return true
		}
	}
	gc.names = append(gc.names, name)
	return true
}

// fromStatement adds the columns of s's GROUP BY (or of its SELECT DISTINCT list); it
// returns false when s's shape has no grouped merge: a grouping item that is not a
// column, DISTINCT ON, a "*" in the select list, an aggregate with parameters.
func (gc *groupCols) fromStatement(s *pg_query.SelectStmt, aggs []aggCall) bool {
	target := func(i int64) *pg_query.Node {
		if i < 1 || int(i) > len(s.TargetList) {
			return nil
		}
		if rt, ok := unwrap(s.TargetList[i-1]).(*pg_query.ResTarget); ok {
			return rt.Val
		}
		return nil
	}
	var group func(n *pg_query.Node) bool
	group = func(n *pg_query.Node) bool {
		switch g := unwrap(n).(type) {
		case *pg_query.ColumnRef:
			return gc.add(n)
		case *pg_query.A_Const:
			if iv, ok := g.Val.(*pg_query.A_Const_Ival); ok {
				return gc.add(target(int64(iv.Ival.Ival)))
			}
		case *pg_query.GroupingSet:
			for _, x := range g.Content {
				if !group(x) {
					return false
				}
			}
			return true
		case *pg_query.RowExpr:
			for _, x := range g.Args {
				if !group(x) {
					return false
				}
			}
			return true
		}
		return false
	}
	for _, g := range s.GroupClause {
		if !group(g) {
			return false
		}
	}
	if len(s.DistinctClause) > 0 && len(aggs) == 0 && len(s.GroupClause) == 0 {
		// SELECT DISTINCT of plain columns groups by them.
		if len(s.DistinctClause) != 1 || unwrap(s.DistinctClause[0]) != nil {
			return false // DISTINCT ON
		}
		for _, n := range s.TargetList {
			rt, ok := unwrap(n).(*pg_query.ResTarget)
			if !ok || !gc.add(rt.Val) {
				return false
			}
		}
	}
	for _, n := range s.TargetList {
		if rt, ok := unwrap(n).(*pg_query.ResTarget); ok {
			if cr, ok := unwrap(rt.Val).(*pg_query.ColumnRef); ok {
				if _, star := unwrap(cr.Fields[len(cr.Fields)-1]).(*pg_query.A_Star); star {
					return false
				}
			}
		}
	}
	for _, a := range aggs {
		if hasParam(a.call.ProtoReflect()) {
			return false // the temporary table's definition cannot take parameters
		}
	}
	return true
}

// partialList writes the select list of the shards' partial query: the grouping columns,
// then the np partial aggregates of aggList.
func (gc *groupCols) partialList(b, aggList *builder, np int) {
	b.gen("SELECT ")
	for i, col := range gc.names {
		if i > 0 {
			b.gen(", ")
		}
		b.gen(QuoteIdent(gc.alias) + "." + QuoteIdent(col))
	}
	if np > 0 {
		if len(gc.names) > 0 {
			b.gen(", ")
		}
		b.segs = append(b.segs, aggList.segs...)
	}
	b.gen(" ")
}

// groupBy writes the partial query's GROUP BY clause (none without grouping columns).
func (gc *groupCols) groupBy(b *builder) {
	if len(gc.names) == 0 {
		return
	}
	b.gen(" GROUP BY ")
	for i, col := range gc.names {
		if i > 0 {
			b.gen(", ")
		}
		b.gen(QuoteIdent(gc.alias) + "." + QuoteIdent(col))
	}
}

// columnOf returns the name of the column of t a column reference names (unqualified, or
// qualified by the table's alias).
func columnOf(cr *pg_query.ColumnRef, t *metadata.Table, alias string) (string, bool) {
	var names []string
	for _, f := range cr.Fields {
		s, ok := unwrap(f).(*pg_query.String)
		if !ok {
			return "", false
		}
		names = append(names, s.Sval)
	}
	switch {
	case len(names) == 2 && names[0] != alias:
		return "", false
	case len(names) != 1 && len(names) != 2:
		return "", false
	}
	name := names[len(names)-1]
	if t.ColumnIndex(name) < 0 {
		return "", false
	}
	return name, true
}

// hasParam reports whether a bind parameter appears below m.
func hasParam(m protoreflect.Message) bool {
	found := false
	walk(m, func(n protoreflect.Message, _ []frame) bool {
		if _, ok := n.Interface().(*pg_query.ParamRef); ok {
			found = true
		}
		return !found
	})
	return found
}

// tokensKey identifies the text of tokens [from, to), whatever the spacing.
func (q *stmtText) tokensKey(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(sqllex.IdentName(q.in.Text, q.in.Toks[i]))
		b.WriteByte(0)
	}
	return b.String()
}

func (q *stmtText) tokText(i int) string {
	t := q.in.Toks[i]
	return q.in.Text[t.Start:t.End]
}

// concatMerge plans a plain multi-shard SELECT: rows are streamed from every shard. A
// LIMIT (and OFFSET) is pushed down as LIMIT offset+limit and applied again by the proxy.
func (p *planner) concatMerge(s *pg_query.SelectStmt, t *metadata.Table, refs []tableRef) (*Merge, *pgerr.Error) {
	m := &Merge{Kind: Concat}
	if s.LimitOption == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return nil, notSupported("FETCH ... WITH TIES over several shards is not supported yet.")
	}
	if e := p.limits(s, m); e != nil {
		return nil, e
	}
	if !m.HasLimit && !m.HasOffset {
		return m, nil
	}
	c, ok := p.clausesOf(s)
	if !ok || c.from < 0 {
		return nil, notSupported("The query's clauses could not be located.")
	}
	cut := c.next(c.from, c.limit, c.offset, c.fetch, c.forKw)
	b := newBuilder(p.in, p.litIdx)
	end := p.end
	if cut < len(p.in.Toks) && p.startOf(cut) < p.end {
		end = p.endOf(cut - 1)
	}
	if !p.region(b, p.start, end) {
		return nil, notSupported("The statement's table references could not be located.")
	}
	if m.HasLimit {
		b.gen(" LIMIT ")
		b.hole(SegEval, 0)
	}
	p.lockingClause(b, c)
	m.Shard = b.done()
	return m, nil
}

// limits reads a SELECT's LIMIT and OFFSET into m.
func (p *planner) limits(s *pg_query.SelectStmt, m *Merge) *pgerr.Error {
	limitVal := func(n *pg_query.Node) (Value, bool, bool) {
		switch v := unwrap(n).(type) {
		case nil:
			return Value{}, false, true
		case *pg_query.A_Const:
			if v.Isnull {
				return Value{}, false, true // LIMIT ALL / LIMIT NULL
			}
			if ti := p.constToken(v.Location); ti >= 0 && int(p.in.Toks[ti].Start) == int(v.Location) {
				return Value{Kind: ValLit, Index: p.litIdx[int32(ti)], Type: pghash.OIDInt8}, true, true
			}
		case *pg_query.ParamRef:
			return Value{Kind: ValParam, Index: int(v.Number), Type: pghash.OIDInt8}, true, true
		}
		return Value{}, false, false
	}
	var ok bool
	if m.Limit, m.HasLimit, ok = limitVal(s.LimitCount); !ok {
		return notSupported("A LIMIT that is not a constant or parameter over several shards is not supported yet.")
	}
	if m.Offset, m.HasOffset, ok = limitVal(s.LimitOffset); !ok {
		return notSupported("An OFFSET that is not a constant or parameter over several shards is not supported yet.")
	}
	return nil
}
