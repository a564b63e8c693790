package router

import (
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/pgerr"
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
	if e := p.gatherable(root); e != nil {
		return p.errorf(e)
	}
	m, ok := p.gatherAll(refs)
	if !ok {
		return p.errorf(notSupported("The statement's table references could not be located."))
	}
	return &Statement{Kind: Gathered, Text: p.textTemplate(), Merge: m}
}

// gatherable reports why a statement cannot run over temporary copies of its tables.
func (p *planner) gatherable(root protoreflect.Message) *pgerr.Error {
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

// afterWhere is the first token after a single-table query's WHERE clause (or FROM
// clause, without WHERE).
func (c clauses) afterWhere() int {
	from := c.from
	if c.where >= 0 {
		from = c.where
	}
	return c.next(from, c.group, c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw)
}

// gatherRows plans a single-table query whose shape the shards cannot merge (window
// functions, DISTINCT ON, aggregates without partial forms, ...): each shard returns the
// rows its WHERE clause keeps, and the query, without WHERE, runs on the coordinator over
// their union.
func (p *planner) gatherRows(s *pg_query.SelectStmt, rv *pg_query.RangeVar, t *metadata.Table, alias string) (*Merge, *pgerr.Error) {
	c := p.clauses()
	if len(p.holes) != 1 || c.selectKw < 0 || c.from < 0 || c.forKw >= 0 {
		return nil, notSupported("The query's clauses could not be located.")
	}
	shard := newBuilder(p.in, p.litIdx)
	shard.gen("SELECT * ")
	if !p.fromWhere(shard, c, true) {
		return nil, notSupported("The query's FROM clause could not be located.")
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
