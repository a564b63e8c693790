package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
)

// modifyParts are the clauses of an UPDATE or DELETE after its target.
type modifyParts struct {
	from      []*pg_query.Node // FROM (UPDATE) or USING (DELETE)
	where     *pg_query.Node
	returning []*pg_query.Node
}

// modifyGathered plans an UPDATE or DELETE of a distributed table whose rows to change
// depend on other tables (UPDATE ... FROM, DELETE ... USING, subqueries, WITH): the
// coordinator finds them, over temporary copies of every distributed table involved, as
// the values of their identity (the primary key, or every column without one) and, for
// UPDATE, their new values; each shard then changes exactly those rows, joined with the
// list of them.
//
// The rows are found and changed in two steps. The proxy takes the table's write locks
// before the first (modifySelected), so no write that takes locks comes between them; an
// autocommit write to a shard with a single placement takes none (lockShards), and a
// write of the same rows by one between the steps is not seen by the first.
func (p *planner) modifyGathered(kind Kind, rv *pg_query.RangeVar, t *metadata.Table, set []*pg_query.Node, parts modifyParts, refs []tableRef) *Statement {
	if err := p.conflictReads(parts.returning); err != nil {
		return p.errorf(err)
	}
	mc, err := p.locateModify(kind, rv, set, parts)
	if err != nil {
		return p.errorf(err)
	}
	alias := rv.Relname
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	qa := QuoteIdent(alias)
	ident, byKey := rowIdentity(t)
	g := p.newGatherer(refs)
	src, cols, setCols, err := p.modifySource(kind, t, qa, ident, set, mc, g)
	if err != nil {
		return p.errorf(err)
	}
	return &Statement{
		Kind: kind, Table: t.OID, Text: p.textTemplate(), Returning: len(parts.returning) > 0,
		Source: src, SourceCols: cols, Shard: p.modifyShard(kind, t, qa, ident, byKey, cols, setCols, mc),
		Merge: &Merge{Kind: Gather, Pulls: g.pulls},
	}
}

// modifyClauses are the tokens of an UPDATE's or DELETE's parts: the statement keyword,
// SET, FROM/USING, WHERE and RETURNING (-1 when absent), and the token after the
// statement.
type modifyClauses struct {
	kwTok, setTok, fromTok, whereTok, retTok int
	end                                      int
}

// next returns the first of cands after token i (the end of the statement when none is).
func (mc *modifyClauses) next(i int, cands ...int) int {
	best := mc.end
	for _, c := range cands {
		if c > i && c < best {
			best = c
		}
	}
	return best
}

// locateModify locates the statement keyword and the clauses after the target, from the
// parse tree (a keyword scan would take the FROM of "SET x = a IS DISTINCT FROM b" for
// the FROM clause).
func (q *stmtText) locateModify(kind Kind, rv *pg_query.RangeVar, set []*pg_query.Node, parts modifyParts) (*modifyClauses, *pgerr.Error) {
	ti := q.tok(rv.Location)
	if ti < 0 {
		return nil, notSupported("The statement's table could not be located.")
	}
	// The statement keyword, and the end of the target (with its alias).
	kwTok := ti - 1
	for kwTok > 0 && !q.kw(kwTok, "update") && !q.kw(kwTok, "delete") {
		kwTok--
	}
	after := q.nameEnd(ti)
	if q.kw(after, "as") {
		after += 2
	} else if rv.Alias != nil {
		after++
	}
	mc := &modifyClauses{kwTok: kwTok, setTok: -1, fromTok: -1, whereTok: -1, retTok: -1, end: q.lastTok() + 1}
	anchor := func(m protoreflect.Message, kws ...string) (int, bool) {
		j := q.before(q.nodeStart(m))
		for q.kw(j, "only") || q.kw(j, "lateral") {
			j = q.before(j)
		}
		for _, kw := range kws {
			if q.kw(j, kw) {
				return j, j >= after
			}
		}
		return -1, false
	}
	ok := true
	if kind == Update && len(set) > 0 {
		mc.setTok, ok = anchor(nodeMessage(set[0]), "set")
	}
	if ok && len(parts.from) > 0 {
		mc.fromTok, ok = anchor(nodeMessage(parts.from[0]), "from", "using")
	}
	if ok && parts.where != nil {
		mc.whereTok, ok = anchor(nodeMessage(parts.where), "where")
	}
	if ok && len(parts.returning) > 0 {
		mc.retTok, ok = anchor(nodeMessage(parts.returning[0]), "returning")
	}
	if !ok {
		return nil, notSupported("The statement's clauses could not be located.")
	}
	if kind == Update && mc.setTok < 0 {
		return nil, notSupported("The UPDATE's SET clause could not be located.")
	}
	return mc, nil
}

// rowIdentity returns the columns that identify a row of t: the primary key (with the
// partition key; byKey), or every column.
func rowIdentity(t *metadata.Table) (ident []int, byKey bool) {
	byKey = len(t.PrimaryKey) > 0
	if byKey {
		ident = append(ident, t.PrimaryKey...)
		found := false
		for _, c := range ident {
			found = found || c == t.KeyIndex
		}
		if !found {
			ident = append(ident, t.KeyIndex)
		}
	} else {
		for i := range t.Columns {
			ident = append(ident, i)
		}
	}
	return ident, byKey
}

// modifySource builds the coordinator query that finds the rows to change, over the
// gathered tables: each row's identity (ident), for UPDATE its new values (setCols,
// each cast to its column's type), and the partition key's canonical form. cols are the
// table columns of its values (ident, then setCols).
func (p *planner) modifySource(kind Kind, t *metadata.Table, qa string, ident []int, set []*pg_query.Node, mc *modifyClauses, g *gatherer) (src Template, cols, setCols []int, err *pgerr.Error) {
	b := newBuilder(p.in, p.litIdx)
	if mc.kwTok > p.firstTok() {
		// WITH ...
		if !g.region(b, p.start, p.startOf(mc.kwTok)) {
			return nil, nil, nil, notSupported("The statement's WITH clause could not be located.")
		}
		b.gen(" ")
	}
	// Each row once, however many rows of the other tables it joins (PostgreSQL changes
	// it once): the rows go to the shards in batches, and a row met again in a later
	// batch would be counted, and returned, twice.
	var identCols []string
	for _, c := range ident {
		identCols = append(identCols, qa+"."+QuoteIdent(t.Columns[c].Name))
	}
	b.gen("SELECT DISTINCT ON (" + strings.Join(identCols, ", ") + ") " + strings.Join(identCols, ", "))
	cols = append([]int(nil), ident...)
	// UPDATE: the new values, each cast to its column's type.
	if kind == Update {
		entries := p.splitTop(mc.setTok+1, mc.next(mc.setTok, mc.fromTok, mc.whereTok, mc.retTok))
		if len(entries) != len(set) {
			return nil, nil, nil, notSupported("The UPDATE's SET clause could not be located.")
		}
		for i, e := range entries {
			rt, ok := unwrap(set[i]).(*pg_query.ResTarget)
			if !ok || len(rt.Indirection) > 0 || !p.is(e[0]+1, "=") {
				return nil, nil, nil, notSupported("Only SET column = expression is supported when an UPDATE reads other tables.")
			}
			c := t.ColumnIndex(rt.Name)
			if c < 0 {
				return nil, nil, nil, notSupported("The UPDATE's column %q could not be found.", rt.Name)
			}
			b.gen(", (")
			if _, def := unwrap(rt.Val).(*pg_query.SetToDefault); def {
				if t.Columns[c].Default == "" {
					b.gen("NULL")
				} else {
					b.gen(t.Columns[c].Default)
				}
			} else if !g.region(b, p.startOf(e[0]+2), p.endOf(e[1]-1)) {
				return nil, nil, nil, notSupported("The UPDATE's SET clause could not be located.")
			}
			b.gen(")::" + t.Columns[c].TypeName)
			setCols = append(setCols, c)
			cols = append(cols, c)
		}
	}
	// The partition key's canonical form, for the proxy to hash.
	key := t.KeyColumn()
	b.gen(", " + replaceParam(pghash.CanonicalExpr(key.HashType), "("+qa+"."+QuoteIdent(key.Name)+"::"+key.TypeName+")::pg_catalog.text"))
	b.gen(" FROM ")
	b.hole(SegTable, g.pull(t))
	b.gen(" " + qa)
	if mc.fromTok >= 0 {
		b.gen(", ")
		if !g.region(b, p.startOf(mc.fromTok+1), p.endOf(mc.next(mc.fromTok, mc.whereTok, mc.retTok)-1)) {
			return nil, nil, nil, notSupported("The statement's FROM clause could not be located.")
		}
	}
	if mc.whereTok >= 0 {
		b.gen(" ")
		if !g.region(b, p.startOf(mc.whereTok), p.endOf(mc.next(mc.whereTok, mc.retTok)-1)) {
			return nil, nil, nil, notSupported("The statement's WHERE clause could not be located.")
		}
	}
	return b.done(), cols, setCols, nil
}

// modifyShard builds the statement each shard runs: the UPDATE or DELETE joined with the
// list of its rows to change (SegEval 0), whose columns are cols.
func (p *planner) modifyShard(kind Kind, t *metadata.Table, qa string, ident []int, byKey bool, cols, setCols []int, mc *modifyClauses) Template {
	sh := newBuilder(p.in, p.litIdx)
	values := func() {
		sh.gen("(VALUES ")
		sh.hole(SegEval, 0)
		sh.gen(") pgshard_v(")
		for i := range cols {
			if i > 0 {
				sh.gen(", ")
			}
			sh.gen("pgshard_c" + itoa(i+1))
		}
		sh.gen(")")
	}
	if kind == Update {
		sh.gen("UPDATE ")
		sh.hole(SegTable, 0)
		sh.gen(" AS " + qa + " SET ")
		for i, c := range setCols {
			if i > 0 {
				sh.gen(", ")
			}
			sh.gen(QuoteIdent(t.Columns[c].Name) + " = pgshard_v.pgshard_c" + itoa(len(ident)+i+1))
		}
		sh.gen(" FROM ")
		values()
	} else {
		sh.gen("DELETE FROM ")
		sh.hole(SegTable, 0)
		sh.gen(" AS " + qa + " USING ")
		values()
	}
	sh.gen(" WHERE ")
	for i, c := range ident {
		if i > 0 {
			sh.gen(" AND ")
		}
		sh.gen(identMatch(qa+"."+QuoteIdent(t.Columns[c].Name), "pgshard_v.pgshard_c"+itoa(i+1), t.Columns[c].TypeOID, !byKey))
	}
	if mc.retTok >= 0 {
		sh.gen(" ")
		sh.text(p.startOf(mc.retTok), p.endOf(mc.end-1))
	}
	return sh.done()
}

// identMatch is the condition that a shard row's column a holds the value b: equality
// (or, when NULLs may match, equality or both NULL). The equality of a built-in type is
// pg_catalog's, named so that no operator on the session's search_path can stand in for
// it; a user-defined type's is found by name, as the client's own SQL would.
func identMatch(a, b string, typ uint32, nulls bool) string {
	if typ >= firstNormalOID {
		if nulls {
			return a + " IS NOT DISTINCT FROM " + b
		}
		return a + " = " + b
	}
	if nulls {
		return "(" + a + " OPERATOR(pg_catalog.=) " + b + " OR (" + a + " IS NULL AND " + b + " IS NULL))"
	}
	return a + " OPERATOR(pg_catalog.=) " + b
}

// firstNormalOID is PostgreSQL's FirstNormalObjectId: objects with lower OIDs are built in.
const firstNormalOID = 16384
