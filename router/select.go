package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
)

// selectStmt plans a SELECT that reads a distributed table. The table must be the only
// relation of the query; the whole query is sent to the shards that can hold matching
// rows, and when that is more than one, Merge says how their results combine.
func (p *planner) selectStmt(s *pg_query.SelectStmt, refs, dist []tableRef) *Statement {
	switch {
	case s.Op != pg_query.SetOperation_SETOP_NONE:
		return p.errorf(notSupported("Set operations over distributed tables are not supported yet."))
	case s.WithClause != nil:
		return p.errorf(notSupported("Common table expressions are not supported in distributed queries yet."))
	case len(refs) != 1 || len(s.FromClause) != 1:
		return p.errorf(notSupported("Joins are not supported in distributed queries yet."))
	case s.IntoClause != nil:
		return p.errorf(notSupported("SELECT INTO a table from a distributed table is not supported."))
	case hasSubLink(s.ProtoReflect()):
		return p.errorf(notSupported("Subqueries are not supported in distributed queries yet."))
	}
	rv, ok := unwrap(s.FromClause[0]).(*pg_query.RangeVar)
	if !ok {
		return p.errorf(notSupported("Only a distributed table itself may appear in the FROM clause."))
	}
	t := dist[0].table
	alias := rv.Relname
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	st := &Statement{Kind: Select, Table: t.OID, Text: p.textTemplate()}
	st.Filter = p.cond(s.WhereClause, t, alias)
	if st.Shard, ok = p.shardTemplate(refs, t, false); !ok {
		return p.errorf(notSupported("The statement's table references could not be located."))
	}
	st.Merge, st.Err = p.selectMerge(s, t, rv, refs)
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

// clauses locates the top-level clause keywords of a simple SELECT by token index (-1
// when absent). Subqueries are excluded before this runs, so nesting depth is only that of
// parentheses.
type clauses struct {
	selectKw, from, where, group, having, window, order, limit, offset, fetch, forKw int
	end                                                                              int // token after the statement
}

func (p *planner) clauses() clauses {
	c := clauses{selectKw: -1, from: -1, where: -1, group: -1, having: -1, window: -1, order: -1, limit: -1, offset: -1, fetch: -1, forKw: -1}
	first := p.lastTok()
	last := first
	for first > 0 && int(p.in.Toks[first-1].End) > p.start {
		first--
	}
	c.end = last + 1
	depth := 0
	set := func(f *int, i int) {
		if *f < 0 {
			*f = i
		}
	}
	for i := first; i <= last; i++ {
		switch {
		case p.is(i, "(") || p.is(i, "["):
			depth++
			continue
		case p.is(i, ")") || p.is(i, "]"):
			depth--
			continue
		}
		if depth != 0 {
			continue
		}
		switch {
		case p.kw(i, "select"):
			set(&c.selectKw, i)
		case p.kw(i, "from"):
			set(&c.from, i)
		case p.kw(i, "where"):
			set(&c.where, i)
		case p.kw(i, "group"):
			set(&c.group, i)
		case p.kw(i, "having"):
			set(&c.having, i)
		case p.kw(i, "window"):
			set(&c.window, i)
		case p.kw(i, "order"):
			set(&c.order, i)
		case p.kw(i, "limit"):
			set(&c.limit, i)
		case p.kw(i, "offset"):
			set(&c.offset, i)
		case p.kw(i, "fetch"):
			set(&c.fetch, i)
		case p.kw(i, "for"):
			set(&c.forKw, i)
		}
	}
	return c
}

// next returns the first of the given clause positions after i, or c.end.
func (c clauses) next(i int, cands ...int) int {
	best := c.end
	for _, x := range cands {
		if x > i && x < best {
			best = x
		}
	}
	return best
}

// selectMerge decides how a SELECT's per-shard results combine. It returns a nil merge and
// an error for shapes that cannot yet span shards; such queries still run when their WHERE
// clause selects a single shard.
func (p *planner) selectMerge(s *pg_query.SelectStmt, t *metadata.Table, rv *pg_query.RangeVar, refs []tableRef) (*Merge, *pgerr.Error) {
	aggs, bare := p.aggregates(s)
	windowed := false
	walk(s.ProtoReflect(), func(m protoreflect.Message, _ []frame) bool {
		if f, ok := m.Interface().(*pg_query.FuncCall); ok && f.Over != nil {
			windowed = true
		}
		return true
	})
	switch {
	case windowed:
		return nil, notSupported("Window functions over several shards are not supported yet.")
	case len(s.GroupClause) > 0:
		return nil, notSupported("GROUP BY over several shards is not supported yet.")
	case len(s.DistinctClause) > 0:
		return nil, notSupported("DISTINCT over several shards is not supported yet.")
	case len(s.LockingClause) > 0 && (s.LimitCount != nil || s.LimitOffset != nil):
		return nil, notSupported("FOR UPDATE with LIMIT over several shards is not supported.")
	}
	if len(aggs) > 0 || s.HavingClause != nil {
		if bare {
			// A column outside any aggregate without GROUP BY is an error; the
			// coordinator's (empty) prototype table gives PostgreSQL's own message.
			return &Merge{Kind: Prototype}, nil
		}
		return p.aggregateMerge(s, t, rv, aggs)
	}
	if len(s.SortClause) > 0 {
		return nil, notSupported("ORDER BY over several shards is not supported yet.")
	}
	return p.concatMerge(s, t, refs)
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
	roots = append(roots, s.TargetList...)
	roots = append(roots, s.HavingClause)
	for _, sb := range s.SortClause {
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
	end := p.funcEnd(i)
	open := p.nameEnd(i)
	if end < 0 || !p.is(open, "(") {
		return a
	}
	closeParen := p.matchParen(open)
	a.from, a.to = i, end
	a.argFrom, a.argTo = open+1, closeParen
	if p.kw(closeParen+1, "filter") {
		a.filterFrom, a.filterTo = closeParen+1, p.matchParen(closeParen+2)+1
	}
	return a
}

// aggregateMerge plans an aggregate query without GROUP BY over several shards: each shard
// computes partial aggregates, and the coordinator combines them with the original select
// list, HAVING, ORDER BY and LIMIT, so that result types and NULL handling are exactly
// PostgreSQL's.
func (p *planner) aggregateMerge(s *pg_query.SelectStmt, t *metadata.Table, rv *pg_query.RangeVar, aggs []aggCall) (*Merge, *pgerr.Error) {
	c := p.clauses()
	if c.selectKw < 0 || c.from < 0 {
		return nil, notSupported("The query's clauses could not be located.")
	}
	shard := newBuilder(p.in, p.litIdx)
	shard.gen("SELECT ")
	finals := make([]func(b *builder), len(aggs))
	np := 0
	partial := func(b *builder) int {
		if np > 0 {
			b.gen(", ")
		}
		np++
		return np
	}
	for i, a := range aggs {
		if a.from < 0 {
			return nil, notSupported("An aggregate call could not be located.")
		}
		if a.call.AggDistinct && a.name != "min" && a.name != "max" {
			return nil, notSupported("%s(DISTINCT ...) over several shards is not supported yet.", a.name)
		}
		whole := func(b *builder) { b.text(p.startOf(a.from), p.endOf(a.to-1)) }
		switch a.name {
		case "count":
			n := partial(shard)
			whole(shard)
			finals[i] = func(b *builder) { b.gen("coalesce(sum(p" + itoa(n) + "), 0)::int8") }
		case "sum":
			n := partial(shard)
			whole(shard)
			finals[i] = func(b *builder) {
				b.gen("sum(p" + itoa(n) + ")::")
				b.hole(SegType, n-1)
			}
		case "min", "max", "bool_and", "bool_or", "every":
			n := partial(shard)
			whole(shard)
			fn := a.name
			if fn == "every" {
				fn = "bool_and"
			}
			finals[i] = func(b *builder) { b.gen(fn + "(p" + itoa(n) + ")") }
		case "avg":
			if a.call.AggDistinct || len(a.call.Args) != 1 {
				return nil, notSupported("This form of avg over several shards is not supported yet.")
			}
			arg := func(b *builder) {
				b.text(p.startOf(a.argFrom), p.endOf(a.argTo-1))
				if p.argType(a.call.Args[0], t) == pghash.OIDFloat4 {
					// PostgreSQL accumulates float4 averages in float8.
					b.gen("::float8")
				}
			}
			filter := func(b *builder) {
				if a.filterFrom >= 0 {
					b.gen(" ")
					b.text(p.startOf(a.filterFrom), p.endOf(a.filterTo-1))
				}
			}
			ns := partial(shard)
			shard.gen("sum(")
			arg(shard)
			shard.gen(")")
			filter(shard)
			nc := partial(shard)
			shard.gen("count(")
			arg(shard)
			shard.gen(")")
			filter(shard)
			finals[i] = func(b *builder) {
				b.gen("(sum(p" + itoa(ns) + ") / nullif(sum(p" + itoa(nc) + "), 0))")
			}
		default:
			return nil, notSupported("The aggregate %s over several shards is not supported yet.", a.name)
		}
	}
	// Shard query: FROM and WHERE as written.
	shard.gen(" ")
	fromEnd := c.next(c.from, c.group, c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw)
	pos := p.startOf(c.from)
	ti := p.tok(rv.Location)
	shard.text(pos, p.startOf(ti))
	_, to, _ := p.tableSegs(shard, rv, 0, false)
	shard.text(to, p.startOf(fromEnd-1)+len(p.tokText(fromEnd-1)))

	// Final query: the select list, HAVING, ORDER BY, LIMIT and OFFSET over the partials.
	final := newBuilder(p.in, p.litIdx)
	copyReplacing := func(from, to int) {
		pos := p.startOf(from)
		for i, a := range aggs {
			if a.from >= from && a.to <= to {
				final.text(pos, p.startOf(a.from))
				finals[i](final)
				pos = p.endOf(a.to - 1)
			}
		}
		final.text(pos, p.startOf(to-1)+len(p.tokText(to-1)))
	}
	final.gen("SELECT ")
	entries := p.splitTop(c.selectKw+1, c.from)
	if len(entries) != len(s.TargetList) {
		return nil, notSupported("The select list could not be located.")
	}
	for i, e := range entries {
		if i > 0 {
			final.gen(", ")
		}
		copyReplacing(e[0], e[1])
		// The combined expression must keep the column name PostgreSQL gives the
		// original one.
		if rt, ok := unwrap(s.TargetList[i]).(*pg_query.ResTarget); ok && rt.Name == "" {
			final.gen(" AS " + QuoteIdent(colName(rt.Val)))
		}
	}
	final.gen(" FROM (VALUES ")
	final.hole(SegEval, 0)
	final.gen(") pgshard_partial(")
	for i := 1; i <= np; i++ {
		if i > 1 {
			final.gen(", ")
		}
		final.gen("p" + itoa(i))
	}
	final.gen(")")
	if c.having >= 0 {
		final.gen(" ")
		copyReplacing(c.having, c.next(c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw))
	}
	if rest := c.next(c.from, c.order, c.limit, c.offset, c.fetch); rest < c.end {
		final.gen(" ")
		copyReplacing(rest, c.next(rest, c.forKw))
	}
	return &Merge{Kind: Aggregate, Shard: shard.done(), Final: final.done(), Partials: np}, nil
}

func (p *planner) tokText(i int) string {
	t := p.in.Toks[i]
	return p.in.Text[t.Start:t.End]
}

// argType returns the hash type of an aggregate argument that is a plain column of t, or 0.
func (p *planner) argType(n *pg_query.Node, t *metadata.Table) uint32 {
	cr, ok := unwrap(n).(*pg_query.ColumnRef)
	if !ok || len(cr.Fields) == 0 {
		return 0
	}
	s, ok := unwrap(cr.Fields[len(cr.Fields)-1]).(*pg_query.String)
	if !ok {
		return 0
	}
	if i := t.ColumnIndex(s.Sval); i >= 0 {
		return t.Columns[i].HashType
	}
	return 0
}

// concatMerge plans a plain multi-shard SELECT: rows are streamed from every shard. A
// LIMIT (and OFFSET) is pushed down as LIMIT offset+limit and applied again by the proxy.
func (p *planner) concatMerge(s *pg_query.SelectStmt, t *metadata.Table, refs []tableRef) (*Merge, *pgerr.Error) {
	m := &Merge{Kind: Concat}
	if s.LimitOption == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return nil, notSupported("FETCH ... WITH TIES over several shards is not supported yet.")
	}
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
		return nil, notSupported("A LIMIT that is not a constant or parameter over several shards is not supported yet.")
	}
	if m.Offset, m.HasOffset, ok = limitVal(s.LimitOffset); !ok {
		return nil, notSupported("An OFFSET that is not a constant or parameter over several shards is not supported yet.")
	}
	if !m.HasLimit && !m.HasOffset {
		return m, nil
	}
	c := p.clauses()
	cut := c.next(c.from, c.limit, c.offset, c.fetch)
	b := newBuilder(p.in, p.litIdx)
	b.segs = append(b.segs, p.shardUpTo(refs, t, cut)...)
	if m.HasLimit {
		b.gen(" LIMIT ")
		b.hole(SegEval, 0)
	}
	if c.forKw >= 0 {
		b.gen(" ")
		b.text(p.startOf(c.forKw), p.end)
	}
	m.Shard = b.done()
	return m, nil
}

// shardUpTo returns the shard template of the statement's tokens before token cut.
func (p *planner) shardUpTo(refs []tableRef, t *metadata.Table, cut int) Template {
	saved := p.end
	if cut < len(p.in.Toks) && p.startOf(cut) < p.end {
		p.end = int(p.in.Toks[cut-1].End)
	}
	defer func() { p.end = saved }()
	tpl, _ := p.shardTemplate(refs, t, false)
	return tpl
}
