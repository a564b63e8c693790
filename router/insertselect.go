package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
)

// insertSelect plans INSERT INTO distributed_table [(cols)] SELECT ... whose SELECT reads
// no distributed table: the coordinator evaluates the SELECT once (with the columns'
// defaults that must be evaluated there, and each row's partition key in canonical form),
// and the proxy splits the rows by shard.
func (p *planner) insertSelect(s *pg_query.InsertStmt, t *metadata.Table, refs []tableRef) *Statement {
	var cols []int
	if len(s.Cols) > 0 {
		for _, c := range s.Cols {
			rt := unwrap(c).(*pg_query.ResTarget)
			i := t.ColumnIndex(rt.Name)
			if i < 0 {
				return p.errorf(pgerr.New(pgerr.UndefinedColumn, "column %q of relation %q does not exist", rt.Name, t.Name))
			}
			if len(rt.Indirection) > 0 {
				return p.errorf(notSupported("INSERT ... SELECT into parts of columns is not supported for distributed tables."))
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
	// Identity columns: OVERRIDING USER VALUE replaces the values given for them by their
	// defaults; a value for a GENERATED ALWAYS one needs OVERRIDING SYSTEM VALUE.
	for _, ci := range cols {
		c := &t.Columns[ci]
		if c.Identity == 'a' && s.Override == pg_query.OverridingKind_OVERRIDING_NOT_SET {
			return p.errorf(identityAlways(c.Name))
		}
	}
	userValue := func(ci int) bool {
		return t.Columns[ci].Identity != 0 && s.Override == pg_query.OverridingKind_OVERRIDING_USER_VALUE
	}
	given := map[int]bool{}
	for _, c := range cols {
		given[c] = true
	}
	keyGiven := given[t.KeyIndex] && !userValue(t.KeyIndex)
	var added []int
	for i := range t.Columns {
		c := &t.Columns[i]
		if given[i] || c.Generated != 0 {
			continue
		}
		if i == t.KeyIndex || c.Default != "" && !c.DefaultOnShard {
			if i == t.KeyIndex && c.Default == "" {
				return p.errorf(pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column"))
			}
			added = append(added, i)
		}
	}

	// Locate the SELECT: after the column list (or the table), before ON CONFLICT or
	// RETURNING.
	relTok := p.tok(s.Relation.Location)
	if relTok < 0 {
		return p.errorf(notSupported("The INSERT's target could not be located."))
	}
	// The INSERT keyword: after the WITH clause, if any.
	insStart := p.start
	if s.WithClause != nil {
		kw := relTok - 2
		if kw <= p.firstTok() || !p.kw(kw, "insert") {
			return p.errorf(notSupported("The INSERT's WITH clause could not be located."))
		}
		insStart = p.startOf(kw)
	}
	last := p.lastTok()
	from := p.nameEnd(relTok)
	if p.kw(from, "as") {
		from += 2
	} else if rv := s.Relation; rv.Alias != nil {
		from++
	}
	if len(s.Cols) > 0 {
		if !p.is(from, "(") {
			return p.errorf(notSupported("The INSERT's column list could not be located."))
		}
		from = p.matchParen(from) + 1
	}
	if s.Override != pg_query.OverridingKind_OVERRIDING_NOT_SET {
		if !p.kw(from, "overriding") {
			return p.errorf(notSupported("The INSERT's OVERRIDING clause could not be located."))
		}
		from += 3 // OVERRIDING { SYSTEM | USER } VALUE
	}
	// The SELECT ends where ON CONFLICT or RETURNING begins, located from the parse tree
	// (a keyword scan would stop at a select-list alias named "returning").
	to := last + 1
	switch {
	case s.OnConflictClause != nil:
		to = p.tok(s.OnConflictClause.Location)
		if !p.kw(to, "on") || !p.kw(to+1, "conflict") {
			return p.errorf(notSupported("The INSERT's ON CONFLICT clause could not be located."))
		}
	case len(s.ReturningList) > 0:
		rt, _ := unwrap(s.ReturningList[0]).(*pg_query.ResTarget)
		if rt == nil {
			return p.errorf(notSupported("The INSERT's RETURNING clause could not be located."))
		}
		to = p.tok(rt.Location) - 1
		if !p.kw(to, "returning") {
			return p.errorf(notSupported("The INSERT's RETURNING clause could not be located."))
		}
	}
	if to <= from {
		return p.errorf(notSupported("The INSERT's query could not be located."))
	}
	st := &Statement{Kind: Insert, Table: t.OID, Text: p.textTemplate(), Returning: len(s.ReturningList) > 0}
	st.Commutes = !t.HasUnique && s.OnConflictClause == nil

	// The source query: every target column cast to its type, the added defaults, and the
	// partition key's canonical form.
	b := newBuilder(p.in, p.litIdx)
	// Distributed tables the WITH clause and the SELECT read are gathered on the
	// coordinator first (the target's own rows included, as they were before the
	// statement).
	var source []tableRef
	for _, r := range refs {
		if r.rv != s.Relation {
			source = append(source, r)
		}
	}
	g := p.newGatherer(source)
	if s.WithClause != nil {
		if !g.region(b, p.start, insStart) {
			return p.errorf(notSupported("The INSERT's WITH clause could not be located."))
		}
		b.gen(" ")
	}
	b.gen("SELECT ")
	var names []string
	keyExpr := ""
	for i, ci := range cols {
		c := &t.Columns[ci]
		if i > 0 {
			b.gen(", ")
		}
		src := "pgshard_src.s" + itoa(i+1)
		if userValue(ci) {
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
	for k, ci := range added {
		c := &t.Columns[ci]
		if k > 0 || len(cols) > 0 {
			b.gen(", ")
		}
		b.gen(c.Assign(c.Default))
	}
	keyCol := t.KeyColumn()
	canon := pghash.CanonicalExpr(keyCol.HashType)
	if keyGiven {
		b.gen(", " + replaceParam(canon, keyExpr))
	} else {
		// The key is an added default: the coordinator evaluates the default once in the
		// select list above; the proxy hashes that value.
		b.gen(", NULL")
	}
	b.gen(" FROM (")
	if !g.region(b, p.startOf(from), p.startOf(to-1)+len(p.tokText(to-1))) {
		return p.errorf(notSupported("The INSERT's SELECT could not be located."))
	}
	if len(g.pulls) > 0 {
		st.Merge = &Merge{Kind: Gather, Pulls: g.pulls}
	}
	b.gen(") pgshard_src(")
	for i, n := range names {
		if i > 0 {
			b.gen(", ")
		}
		b.gen(n)
	}
	b.gen(")")
	st.Source = b.done()
	for _, ci := range cols {
		st.SourceCols = append(st.SourceCols, ci)
	}
	st.SourceCols = append(st.SourceCols, added...)

	// INSERT INTO <shard> AS <name> (columns) VALUES, and the suffix.
	pre := newBuilder(p.in, p.litIdx)
	pre.text(insStart, p.startOf(relTok))
	pre.hole(SegTable, 0)
	pre.gen(" AS " + QuoteIdent(s.Relation.Relname) + " (")
	for i, ci := range st.SourceCols {
		if i > 0 {
			pre.gen(", ")
		}
		pre.gen(QuoteIdent(t.Columns[ci].Name))
	}
	pre.gen(") VALUES ")
	st.InsertPrefix = pre.done()
	suf := newBuilder(p.in, p.litIdx)
	if to <= last {
		var roots []*pg_query.Node
		if oc := s.OnConflictClause; oc != nil {
			roots = append(roots, oc.TargetList...)
			roots = append(roots, oc.WhereClause)
			for _, n := range oc.TargetList {
				if rt, ok := unwrap(n).(*pg_query.ResTarget); ok && rt.Name == t.Key {
					return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "modifying the partition value of rows is not allowed"))
				}
			}
		}
		suf.gen(" ")
		if !p.preEval(suf, p.startOf(to), p.end, roots, &st.Evals, p.conflictConstraint(s.OnConflictClause)...) {
			return p.errorf(notSupported("The INSERT's ON CONFLICT clause could not be located."))
		}
	}
	st.InsertSuffix = suf.done()
	return st
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
