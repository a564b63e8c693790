package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
)

// insertSelect plans INSERT INTO distributed_table [(cols)] SELECT ... whose SELECT reads
// no distributed table: the coordinator evaluates the SELECT once (with the columns'
// defaults that must be evaluated there, and each row's partition key in canonical form),
// and the proxy splits the rows by shard.
func (p *planner) insertSelect(s *pg_query.InsertStmt, t *metadata.Table, refs []tableRef) *Statement {
	si := &selectInsert{s: s, t: t, refs: refs}
	for _, step := range []func(*selectInsert) *pgerr.Error{selectTargets, p.locateSelect} {
		if err := step(si); err != nil {
			return p.errorf(err)
		}
	}
	st := &Statement{Kind: Insert, Table: t.OID, Text: p.textTemplate(), Returning: len(s.ReturningList) > 0}
	st.Commutes = !t.HasUnique && s.OnConflictClause == nil
	if err := p.insertSource(si, refs, st); err != nil {
		return p.errorf(err)
	}
	st.InsertPrefix = p.insertSelectPrefix(si, st.SourceCols)
	var err *pgerr.Error
	if st.InsertSuffix, err = p.insertSelectSuffix(si, &st.Evals); err != nil {
		return p.errorf(err)
	}
	return st
}

// selectInsert is what planning an INSERT ... SELECT learns, step by step.
type selectInsert struct {
	s    *pg_query.InsertStmt
	t    *metadata.Table
	refs []tableRef

	// cols are the target columns the SELECT gives values for; added the columns it
	// leaves out whose defaults the coordinator evaluates (and the partition key's);
	// keyGiven is set when the SELECT gives the partition key.
	cols     []int
	added    []int
	keyGiven bool

	// relTok is the target table's token; insStart the offset of the INSERT keyword
	// (after any WITH clause); the SELECT is tokens [from, to).
	relTok   int
	insStart int
	from, to int
}

// userValue reports whether the SELECT's value for column ci is replaced by the column's
// default (an identity column with OVERRIDING USER VALUE).
func (si *selectInsert) userValue(ci int) bool {
	return si.t.Columns[ci].Identity != 0 && si.s.Override == pg_query.OverridingKind_OVERRIDING_USER_VALUE
}

// selectTargets finds the target columns and the columns left to coordinator-evaluated
// defaults, with the rules of identity columns: OVERRIDING USER VALUE replaces the
// values given for them by their defaults; a value for a GENERATED ALWAYS one needs
// OVERRIDING SYSTEM VALUE.
func selectTargets(si *selectInsert) *pgerr.Error {
	s, t := si.s, si.t
	var cols []int
	if len(s.Cols) > 0 {
		for _, c := range s.Cols {
			rt := unwrap(c).(*pg_query.ResTarget)
			i := t.ColumnIndex(rt.Name)
			if i < 0 {
				return pgerr.New(pgerr.UndefinedColumn, "column %q of relation %q does not exist", rt.Name, t.Name)
			}
			if len(rt.Indirection) > 0 {
				return notSupported("INSERT ... SELECT into parts of columns is not supported for distributed tables.")
			}
			cols = append(cols, i)
		}
	} else {
		for i, c := range t.Columns {
			if c.Generated == 0 {
				cols = append(cols, i)
			}
		}
	}
	// As PostgreSQL: without a column list the SELECT's expressions fill the first
	// columns in order; with one, their numbers must match. When the SELECT's width is
	// not known from its text (a *), all the columns are named, as before.
	// (PostgreSQL's implicit list has the generated columns too: a value for one is
	// an error.)
	if n := selectWidth(s.SelectStmt, si.refs); n >= 0 {
		if len(s.Cols) == 0 {
			cols = cols[:0]
			for i := range t.Columns {
				cols = append(cols, i)
			}
		}
		switch {
		case n > len(cols):
			return pgerr.New(pgerr.SyntaxError, "INSERT has more expressions than target columns")
		case n < len(cols) && len(s.Cols) > 0:
			return pgerr.New(pgerr.SyntaxError, "INSERT has more target columns than expressions")
		}
		cols = cols[:n]
		for _, ci := range cols {
			if c := &t.Columns[ci]; c.Generated != 0 {
				return pgerr.New(pgerr.GeneratedAlways, "cannot insert a non-DEFAULT value into column %q", c.Name).
					WithDetail("Column %q is a generated column.", c.Name)
			}
		}
	}
	for _, ci := range cols {
		c := &t.Columns[ci]
		if c.Identity == 'a' && s.Override == pg_query.OverridingKind_OVERRIDING_NOT_SET {
			return identityAlways(c.Name)
		}
	}
	given := map[int]bool{}
	for _, c := range cols {
		given[c] = true
	}
	si.keyGiven = given[t.KeyIndex] && !si.userValue(t.KeyIndex)
	for i := range t.Columns {
		c := &t.Columns[i]
		if given[i] || c.Generated != 0 {
			continue
		}
		if i == t.KeyIndex || c.Default != "" && !c.DefaultOnShard {
			if i == t.KeyIndex && c.Default == "" {
				return pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
			}
			si.added = append(si.added, i)
		}
	}
	si.cols = cols
	return nil
}

// selectWidth is the number of expressions the query n yields, or -1 when its text does
// not tell (a * in its select list over anything but one subquery or distributed table;
// refs are the statement's table references).
func selectWidth(n *pg_query.Node, refs []tableRef) int {
	sel, _ := unwrap(n).(*pg_query.SelectStmt)
	if sel == nil {
		return -1
	}
	if sel.Op != pg_query.SetOperation_SETOP_NONE {
		return selectWidth(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel.Larg}}, refs)
	}
	if len(sel.ValuesLists) > 0 {
		l, _ := unwrap(sel.ValuesLists[0]).(*pg_query.List)
		if l == nil {
			return -1
		}
		return len(l.Items)
	}
	width := 0
	for _, t := range sel.TargetList {
		rt, _ := unwrap(t).(*pg_query.ResTarget)
		if rt == nil {
			return -1
		}
		width++
		if cr, ok := unwrap(rt.Val).(*pg_query.ColumnRef); ok && len(cr.Fields) > 0 {
			if _, star := unwrap(cr.Fields[len(cr.Fields)-1]).(*pg_query.A_Star); star {
				// Only a bare * over one subquery (or VALUES) or one distributed
				// table in FROM is counted.
				if len(cr.Fields) != 1 || len(sel.FromClause) != 1 {
					return -1
				}
				n := -1
				switch from := unwrap(sel.FromClause[0]).(type) {
				case *pg_query.RangeSubselect:
					n = selectWidth(from.Subquery, refs)
				case *pg_query.RangeVar:
					for _, r := range refs {
						if r.rv == from && r.table != nil {
							n = len(r.table.Columns)
						}
					}
				}
				if n < 0 {
					return -1
				}
				width += n - 1
			}
		}
	}
	return width
}

// locateSelect locates the SELECT: after the column list (or the table), before ON
// CONFLICT or RETURNING.
func (q *stmtText) locateSelect(si *selectInsert) *pgerr.Error {
	s := si.s
	relTok := q.tok(s.Relation.Location)
	if relTok < 0 {
		return notSupported("The INSERT's target could not be located.")
	}
	// The INSERT keyword: after the WITH clause, if any.
	insStart := q.start
	if s.WithClause != nil {
		kw := relTok - 2
		if kw <= q.firstTok() || !q.kw(kw, "insert") {
			return notSupported("The INSERT's WITH clause could not be located.")
		}
		insStart = q.startOf(kw)
	}
	last := q.lastTok()
	from := q.nameEnd(relTok)
	if q.kw(from, "as") {
		from += 2
	} else if rv := s.Relation; rv.Alias != nil {
		from++
	}
	if len(s.Cols) > 0 {
		if !q.is(from, "(") {
			return notSupported("The INSERT's column list could not be located.")
		}
		from = q.matchParen(from) + 1
	}
	if s.Override != pg_query.OverridingKind_OVERRIDING_NOT_SET {
		if !q.kw(from, "overriding") {
			return notSupported("The INSERT's OVERRIDING clause could not be located.")
		}
		from += 3 // OVERRIDING { SYSTEM | USER } VALUE
	}
	// The SELECT ends where ON CONFLICT or RETURNING begins, located from the parse tree
	// (a keyword scan would stop at a select-list alias named "returning").
	to := last + 1
	switch {
	case s.OnConflictClause != nil:
		to = q.tok(s.OnConflictClause.Location)
		if !q.kw(to, "on") || !q.kw(to+1, "conflict") {
			return notSupported("The INSERT's ON CONFLICT clause could not be located.")
		}
	case len(s.ReturningList) > 0:
		rt, _ := unwrap(s.ReturningList[0]).(*pg_query.ResTarget)
		if rt == nil {
			return notSupported("The INSERT's RETURNING clause could not be located.")
		}
		to = q.tok(rt.Location) - 1
		if !q.kw(to, "returning") {
			return notSupported("The INSERT's RETURNING clause could not be located.")
		}
	}
	if to <= from {
		return notSupported("The INSERT's query could not be located.")
	}
	si.relTok, si.insStart, si.from, si.to = relTok, insStart, from, to
	return nil
}

// insertSource builds st's Source, SourceCols and Merge: the source query (every target
// column cast to its type, the added defaults, and the partition key's canonical form),
// over the distributed tables the WITH clause and the SELECT read, gathered on the
// coordinator first (the target's own rows included, as they were before the statement).
func (p *planner) insertSource(si *selectInsert, refs []tableRef, st *Statement) *pgerr.Error {
	s, t := si.s, si.t
	b := newBuilder(p.in, p.litIdx)
	var source []tableRef
	for _, r := range refs {
		if r.rv != s.Relation {
			source = append(source, r)
		}
	}
	g := p.newGatherer(source)
	if s.WithClause != nil {
		if !g.region(b, p.start, si.insStart) {
			return notSupported("The INSERT's WITH clause could not be located.")
		}
		b.gen(" ")
	}
	b.gen("SELECT ")
	var names []string
	keyExpr := ""
	for i, ci := range si.cols {
		c := &t.Columns[ci]
		if i > 0 {
			b.gen(", ")
		}
		src := "pgshard_src.s" + itoa(i+1)
		if si.userValue(ci) {
			// The source's value is ignored: the identity's next value goes in.
			b.gen(c.Assign(c.Default))
			names = append(names, "s"+itoa(i+1))
			continue
		}
		// As INSERT assigns it: a value too long for varchar(n) is an error, not cut.
		b.gen(c.Assign(src))
		names = append(names, "s"+itoa(i+1))
		if ci == t.KeyIndex {
			keyExpr = "(" + c.Assign(src) + ")::pg_catalog.text"
		}
	}
	for k, ci := range si.added {
		c := &t.Columns[ci]
		if k > 0 || len(si.cols) > 0 {
			b.gen(", ")
		}
		b.gen(c.Assign(c.Default))
	}
	keyCol := t.KeyColumn()
	canon := pghash.CanonicalExpr(keyCol.HashType)
	if si.keyGiven {
		b.gen(", " + replaceParam(canon, keyExpr))
	} else {
		// The key is an added default: the coordinator evaluates the default once in the
		// select list above; the proxy hashes that value.
		b.gen(", NULL")
	}
	b.gen(" FROM (")
	if !g.region(b, p.startOf(si.from), p.startOf(si.to-1)+len(p.tokText(si.to-1))) {
		return notSupported("The INSERT's SELECT could not be located.")
	}
	if len(g.pulls) > 0 {
		st.Merge = &Merge{Kind: Gather, Pulls: g.pulls}
	}
	b.gen(") pgshard_src")
	for i, n := range names {
		if i == 0 {
			b.gen("(")
		} else {
			b.gen(", ")
		}
		b.gen(n)
	}
	if len(names) > 0 {
		b.gen(")")
	}
	st.Source = b.done()
	st.SourceCols = append(st.SourceCols, si.cols...)
	st.SourceCols = append(st.SourceCols, si.added...)
	return nil
}

// insertSelectPrefix builds "INSERT INTO <shard> AS <name> (columns) VALUES ".
func (p *planner) insertSelectPrefix(si *selectInsert, cols []int) Template {
	pre := newBuilder(p.in, p.litIdx)
	pre.text(si.insStart, p.startOf(si.relTok))
	pre.hole(SegTable, 0)
	pre.gen(" AS " + QuoteIdent(si.s.Relation.Relname) + " (")
	for i, ci := range cols {
		if i > 0 {
			pre.gen(", ")
		}
		pre.gen(QuoteIdent(si.t.Columns[ci].Name))
	}
	pre.gen(") VALUES ")
	return pre.done()
}

// insertSelectSuffix builds what follows the rows (ON CONFLICT ..., RETURNING ...), with
// volatile values evaluated once (into evals).
func (p *planner) insertSelectSuffix(si *selectInsert, evals *[]Eval) (Template, *pgerr.Error) {
	s := si.s
	if err := p.conflictReads(s.ReturningList); err != nil {
		return nil, err
	}
	suf := newBuilder(p.in, p.litIdx)
	if si.to <= p.lastTok() {
		var roots []*pg_query.Node
		if oc := s.OnConflictClause; oc != nil {
			roots = append(roots, oc.TargetList...)
			roots = append(roots, oc.WhereClause)
			for _, n := range oc.TargetList {
				if rt, ok := unwrap(n).(*pg_query.ResTarget); ok && rt.Name == si.t.Key {
					return nil, pgerr.New(pgerr.FeatureNotSupported, "modifying the partition value of rows is not allowed")
				}
			}
		}
		if err := p.conflictReads(roots); err != nil {
			return nil, err
		}
		suf.gen(" ")
		if !p.preEval(suf, p.startOf(si.to), p.end, roots, evals, p.conflictConstraint(s.OnConflictClause)...) {
			return nil, notSupported("The INSERT's ON CONFLICT clause could not be located.")
		}
	}
	return suf.done(), nil
}

// replaceParam substitutes expr for $1 in a canonical-form expression.
func replaceParam(canon, expr string) string {
	out := ""
	for i := 0; i < len(canon); i++ {
		if canon[i] == '$' && i+1 < len(canon) && canon[i+1] == '1' {
			out += expr
			i++
			continue
		}
		out += string(canon[i])
	}
	return out
}
