package router

import (
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
)

// This file plans gathers: statements the shards cannot answer alone run on the
// coordinator over temporary copies of the distributed tables they read. A gather is
// exact by construction (PostgreSQL itself evaluates the statement, with the prototype
// tables' column types and collations); what the planner decides is how little has to be
// copied: the rows a single-table query's WHERE clause keeps, or only per-group partial
// aggregates.

// gatherStatement plans a statement that reads distributed tables in a shape no shard
// can answer alone: every distributed table it references is copied whole into a
// temporary table and the statement runs on the coordinator with its references renamed.
func (p *planner) gatherStatement(root protoreflect.Message, refs []tableRef) *Statement {
	if e := gatherable(root); e != nil {
		return p.errorf(e)
	}
	m, ok := p.gatherAll(refs)
	if !ok {
		return p.errorf(notSupported("The statement's table references could not be located."))
	}
	if s, ok := root.Interface().(*pg_query.SelectStmt); ok {
		p.pushFilters(s, refs, m)
	}
	return &Statement{Kind: Gathered, Text: p.textTemplate(), Merge: m}
}

// pushFilters narrows the pulls of a gathered multi-table SELECT: a WHERE conjunct that
// reads one distributed table alone (its columns, qualified by its name or alias,
// constants, parameters and operators) is also applied on that table's shards, so that
// only the rows that can matter are copied, and prunes its shards. The coordinator still
// applies the whole WHERE clause. It is done only where it cannot change the answer: the
// table is referenced once in the statement, which has no WITH clause, and a table on
// the nullable side of an outer join takes only conjuncts that reject its NULL-extended
// rows anyway (a filter that kept them, such as IS NULL, would turn rows it removed from
// the copy into NULL-extended rows that pass).
func (p *planner) pushFilters(s *pg_query.SelectStmt, refs []tableRef, m *Merge) {
	if s.Op != pg_query.SetOperation_SETOP_NONE || s.WithClause != nil || s.WhereClause == nil {
		return
	}
	// The FROM clause's tables, and which of them outer joins may extend with NULLs.
	var top []*pg_query.RangeVar
	nullable := map[*pg_query.RangeVar]bool{}
	var walkFrom func(n *pg_query.Node, null bool)
	walkFrom = func(n *pg_query.Node, null bool) {
		switch v := unwrap(n).(type) {
		case *pg_query.RangeVar:
			top = append(top, v)
			nullable[v] = null
		case *pg_query.JoinExpr:
			t := v.Jointype
			walkFrom(v.Larg, null || t == pg_query.JoinType_JOIN_RIGHT || t == pg_query.JoinType_JOIN_FULL)
			walkFrom(v.Rarg, null || t == pg_query.JoinType_JOIN_LEFT || t == pg_query.JoinType_JOIN_FULL)
		}
	}
	for _, n := range s.FromClause {
		walkFrom(n, false)
	}
	uses := map[*metadata.Table]int{}
	for _, r := range refs {
		if r.table != nil {
			uses[r.table]++
		}
	}
	conjuncts := []*pg_query.Node{s.WhereClause}
	if b, ok := unwrap(s.WhereClause).(*pg_query.BoolExpr); ok && b.Boolop == pg_query.BoolExprType_AND_EXPR {
		conjuncts = b.Args
	}
	spans := p.conjunctSpans(s, conjuncts)
	if spans == nil {
		return
	}
	for _, rv := range top {
		var t *metadata.Table
		for _, r := range refs {
			if r.rv == rv {
				t = r.table
			}
		}
		if t == nil || uses[t] != 1 {
			continue
		}
		pi := -1
		for i := range m.Pulls {
			if m.Pulls[i].Table == t.OID {
				pi = i
			}
		}
		alias := rv.Relname
		if rv.Alias != nil {
			alias = rv.Alias.Aliasname
		}
		var mine []int
		for i, c := range conjuncts {
			if readsOnly(c, t, alias) && (!nullable[rv] || rejectsNulls(c)) {
				mine = append(mine, i)
			}
		}
		if pi < 0 || len(mine) == 0 {
			continue
		}
		sb, proto := newBuilder(p.in, p.litIdx), newBuilder(p.in, p.litIdx)
		for _, b := range []*builder{sb, proto} {
			b.gen("SELECT * FROM ")
			b.hole(SegTable, 0)
			b.gen(" " + QuoteIdent(alias))
		}
		and := &pg_query.BoolExpr{Boolop: pg_query.BoolExprType_AND_EXPR}
		for k, i := range mine {
			if k == 0 {
				sb.gen(" WHERE (")
			} else {
				sb.gen(" AND (")
			}
			sb.text(p.startOf(spans[i][0]), p.endOf(spans[i][1]-1))
			sb.gen(")")
			and.Args = append(and.Args, conjuncts[i])
		}
		m.Pulls[pi].Shard, m.Pulls[pi].Proto = sb.done(), proto.done()
		m.Pulls[pi].Filter = p.cond(&pg_query.Node{Node: &pg_query.Node_BoolExpr{BoolExpr: and}}, t, alias)
	}
}

// rejectsNulls reports whether a filter that passes readsOnly is never true when the
// table's columns are all NULL (a NULL-extended row of an outer join).
func rejectsNulls(n *pg_query.Node) bool {
	switch e := unwrap(n).(type) {
	case *pg_query.BoolExpr:
		switch e.Boolop {
		case pg_query.BoolExprType_AND_EXPR:
			for _, a := range e.Args {
				if rejectsNulls(a) {
					return true
				}
			}
			return false
		case pg_query.BoolExprType_OR_EXPR:
			for _, a := range e.Args {
				if !rejectsNulls(a) {
					return false
				}
			}
			return true
		default: // NOT: NOT of NULL is NULL, NOT of false is true
			return len(e.Args) == 1 && nullOnNulls(e.Args[0])
		}
	case *pg_query.NullTest:
		return e.Nulltesttype == pg_query.NullTestType_IS_NOT_NULL && nullOnNulls(e.Arg)
	case *pg_query.BooleanTest:
		return (e.Booltesttype == pg_query.BoolTestType_IS_TRUE || e.Booltesttype == pg_query.BoolTestType_IS_FALSE) && nullOnNulls(e.Arg)
	}
	return nullOnNulls(n)
}

// nullOnNulls reports whether an expression that passes readsOnly is NULL when the
// table's columns are all NULL: a column, or an operator, cast, IN, BETWEEN or LIKE
// with such an operand (the built-in operators return NULL on a NULL input).
func nullOnNulls(n *pg_query.Node) bool {
	switch e := unwrap(n).(type) {
	case *pg_query.ColumnRef:
		return true
	case *pg_query.TypeCast:
		return nullOnNulls(e.Arg)
	case *pg_query.CollateClause:
		return nullOnNulls(e.Arg)
	case *pg_query.A_Expr:
		switch e.Kind {
		case pg_query.A_Expr_Kind_AEXPR_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg_query.A_Expr_Kind_AEXPR_NULLIF:
			return false
		}
		return e.Lexpr != nil && nullOnNulls(e.Lexpr) || e.Rexpr != nil && nullOnNulls(e.Rexpr)
	case *pg_query.BoolExpr:
		for _, a := range e.Args {
			if !nullOnNulls(a) {
				return false
			}
		}
		return len(e.Args) > 0
	}
	return false
}

// readsOnly reports whether an expression reads nothing but columns of t qualified by
// alias, constants and parameters, with operators, casts, NULL and boolean tests, and at
// least one such column: a filter on that table alone.
func readsOnly(n *pg_query.Node, t *metadata.Table, alias string) bool {
	m := nodeMessage(n)
	if m == nil {
		return false
	}
	ok, cols := true, 0
	walk(m, func(x protoreflect.Message, _ []frame) bool {
		switch v := x.Interface().(type) {
		case *pg_query.ColumnRef:
			if len(v.Fields) != 2 {
				ok = false
				return false
			}
			q, qok := unwrap(v.Fields[0]).(*pg_query.String)
			c, cok := unwrap(v.Fields[1]).(*pg_query.String)
			if !qok || !cok || q.Sval != alias || t.ColumnIndex(c.Sval) < 0 {
				ok = false
			}
			cols++
			return false
		case *pg_query.A_Expr, *pg_query.BoolExpr, *pg_query.NullTest, *pg_query.BooleanTest, *pg_query.TypeCast,
			*pg_query.TypeName, *pg_query.A_Const, *pg_query.ParamRef, *pg_query.A_ArrayExpr, *pg_query.List,
			*pg_query.String, *pg_query.Integer, *pg_query.Float, *pg_query.Boolean, *pg_query.BitString,
			*pg_query.CollateClause, *pg_query.Node:
			return ok
		default:
			ok = false
			return false
		}
	})
	return ok && cols > 0
}

// gatherable reports why a statement cannot run over temporary copies of its tables.
func gatherable(root protoreflect.Message) *pgerr.Error {
	var e *pgerr.Error
	walk(root, func(m protoreflect.Message, _ []frame) bool {
		if s, ok := m.Interface().(*pg_query.SelectStmt); ok && len(s.LockingClause) > 0 {
			e = notSupported("SELECT ... FOR UPDATE/SHARE is only supported on a single distributed table.")
		}
		return e == nil
	})
	return e
}

// gatherAll copies every distributed table the statement references.
func (p *planner) gatherAll(refs []tableRef) (*Merge, bool) {
	final := newBuilder(p.in, p.litIdx)
	pulls, ok := p.gatherRegion(final, p.start, p.end, refs)
	if !ok {
		return nil, false
	}
	return &Merge{Kind: Gather, Pulls: pulls, Final: final.done()}, true
}

// gatherer renames the references to distributed tables in regions of a statement to
// temporary tables, one pull per table (hole i of the rewritten text is pull i's table).
type gatherer struct {
	p     *planner
	refs  []tableRef // distributed references, in text order
	pulls []Pull
	index map[*metadata.Table]int
}

func (p *planner) newGatherer(refs []tableRef) *gatherer {
	g := &gatherer{p: p, index: map[*metadata.Table]int{}}
	for _, r := range refs {
		if r.table != nil {
			g.refs = append(g.refs, r)
		}
	}
	sort.Slice(g.refs, func(i, j int) bool { return g.refs[i].rv.Location < g.refs[j].rv.Location })
	return g
}

// pull returns the pull (hole) of table t, adding it on first use.
func (g *gatherer) pull(t *metadata.Table) int {
	if i, ok := g.index[t]; ok {
		return i
	}
	i := len(g.pulls)
	g.index[t] = i
	sb := newBuilder(g.p.in, g.p.litIdx)
	sb.gen("SELECT * FROM ")
	sb.hole(SegTable, 0)
	g.pulls = append(g.pulls, Pull{Table: t.OID, Shard: sb.done()})
	return i
}

// region writes the statement text between byte offsets from and to with every
// distributed reference inside renamed.
func (g *gatherer) region(b *builder, from, to int) bool {
	return g.p.rename(b, from, to, g.refs, func(_ int, r tableRef) int { return g.pull(r.table) })
}

// gatherRegion writes the statement text between byte offsets from and to, with every
// reference to a distributed table inside it renamed to a temporary table (hole i for
// pull i), and returns the pulls.
func (p *planner) gatherRegion(b *builder, from, to int, refs []tableRef) ([]Pull, bool) {
	g := p.newGatherer(refs)
	ok := g.region(b, from, to)
	return g.pulls, ok
}

// fromWhere writes a single-table (or co-located join) query's FROM and WHERE clauses,
// with the table references as holes (withWhere false stops before WHERE).
func (p *planner) fromWhere(b *builder, c clauses, withWhere bool) bool {
	end := c.next(c.from, c.where, c.group, c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw)
	if withWhere && c.where >= 0 {
		end = c.next(c.where, c.group, c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw)
	}
	return p.fromTo(b, c, end)
}

// fromTo writes the query's text from FROM up to token end, with the table references as
// holes.
func (p *planner) fromTo(b *builder, c clauses, end int) bool {
	if end <= c.from {
		return false
	}
	return p.region(b, p.startOf(c.from), p.endOf(end-1))
}

// region writes the statement text between byte offsets from and to, with each table
// reference of p.holes inside it replaced by its hole (its index in p.holes).
func (p *planner) region(b *builder, from, to int) bool {
	return p.rename(b, from, to, p.holes, func(i int, _ tableRef) int { return i })
}

// rename writes the statement text between byte offsets from and to, with each of refs
// (in text order) that starts inside it replaced by hole(i, ref) and given an alias with
// its own name when it has none.
func (p *planner) rename(b *builder, from, to int, refs []tableRef, hole func(int, tableRef) int) bool {
	pos := from
	for i, r := range refs {
		ti := p.tok(r.rv.Location)
		if ti < 0 {
			return false
		}
		start := p.startOf(ti)
		if start < from || start >= to {
			continue
		}
		if start < pos {
			return false
		}
		b.text(pos, start)
		_, end, ok := p.tableSegs(b, r.rv, hole(i, r), false)
		if !ok {
			return false
		}
		pos = end
	}
	b.text(pos, to)
	return true
}

// gatherRows plans a single-table query whose shape the shards cannot merge (window
// functions, DISTINCT ON, aggregates without partial forms, ...): each shard returns the
// rows its WHERE clause keeps, and the query, without WHERE, runs on the coordinator over
// their union.
func (p *planner) gatherRows(s *pg_query.SelectStmt, rv *pg_query.RangeVar, t *metadata.Table, alias string) (*Merge, *pgerr.Error) {
	if len(s.LockingClause) > 0 {
		return nil, notSupported("SELECT ... FOR UPDATE/SHARE is only supported on a single distributed table.")
	}
	c, ok := p.clausesOf(s)
	shard := newBuilder(p.in, p.litIdx)
	shard.gen("SELECT * ")
	if !ok || len(p.holes) != 1 || c.from < 0 || !p.fromWhere(shard, c, true) {
		// A shape whose clauses are not where the grammar puts them: the coordinator
		// runs the whole statement over a copy of the table.
		if m, ok := p.gatherAll(p.holes); ok {
			return m, nil
		}
		return nil, notSupported("The query's clauses could not be located.")
	}
	proto := newBuilder(p.in, p.litIdx)
	proto.gen("SELECT * ")
	p.fromWhere(proto, c, false)

	final := newBuilder(p.in, p.litIdx)
	final.text(p.start, p.startOf(c.from))
	final.gen("FROM ")
	final.hole(SegTable, 0)
	final.gen(" " + QuoteIdent(alias) + " ")
	final.text(p.startOf(c.afterWhere()), p.end)
	return &Merge{
		Kind:  Gather,
		Pulls: []Pull{{Table: t.OID, Shard: shard.done(), Proto: proto.done()}},
		Final: final.done(),
	}, nil
}
