package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
	"github.com/pgshard/pgshard/router/sqllex"
)

// insertStmt plans INSERT ... VALUES into a distributed table. Rows are split by shard;
// every value that could differ between evaluations (volatile functions, sequence
// defaults) and every partition key that is not a plain constant is evaluated once on the
// coordinator, so that all placements of a shard receive identical rows.
func (p *planner) insertStmt(s *pg_query.InsertStmt, refs, dist []tableRef) *Statement {
	t := p.resolve(s.Relation)
	switch {
	case t == nil:
		// A coordinator table filled from distributed data.
		return p.gatherStatement(s.ProtoReflect(), refs)
	case t.KeyColumn() == nil:
		return p.errorf(pgerr.New(pgerr.UndefinedColumn, "partition column %q of distributed table %s does not exist", t.Key, QuoteIdent(t.Name)))
	}
	if s.WithClause != nil && s.SelectStmt != nil {
		// The coordinator evaluates the WITH clause with the SELECT.
		return p.insertSelect(s, t, refs)
	}
	if s.WithClause != nil {
		return p.errorf(notSupported("Common table expressions are not supported in distributed queries yet."))
	}
	vi := &valuesInsert{s: s, t: t}
	if s.SelectStmt != nil {
		var ok bool
		vi.sel, ok = unwrap(s.SelectStmt).(*pg_query.SelectStmt)
		if !ok {
			return p.errorf(notSupported("Unrecognised INSERT source."))
		}
		sel := vi.sel
		if len(sel.ValuesLists) == 0 || sel.Op != pg_query.SetOperation_SETOP_NONE || len(sel.SortClause) > 0 || sel.LimitCount != nil || len(dist) > 1 {
			return p.insertSelect(s, t, refs)
		}
	}
	for _, step := range []func(*valuesInsert) *pgerr.Error{
		insertTargets, insertAdded, insertIdentity, p.locateValues,
	} {
		if err := step(vi); err != nil {
			return p.errorf(err)
		}
	}

	st := &Statement{Kind: Insert, Table: t.OID, Text: p.textTemplate(), Returning: len(s.ReturningList) > 0}
	st.Commutes = !t.HasUnique && s.OnConflictClause == nil
	var err *pgerr.Error
	if st.InsertPrefix, err = p.insertPrefix(vi); err != nil {
		return p.errorf(err)
	}
	for ri := range vi.rows {
		row, err := p.insertRow(vi, ri)
		if err != nil {
			return p.errorf(err)
		}
		st.Rows = append(st.Rows, row)
	}
	if st.InsertSuffix, err = p.insertSuffix(vi, &st.Evals); err != nil {
		return p.errorf(err)
	}
	return st
}

// valuesInsert is what planning an INSERT ... VALUES (or DEFAULT VALUES) learns, step by
// step: its target columns, its rows, and where they are in the text.
type valuesInsert struct {
	s   *pg_query.InsertStmt
	t   *metadata.Table
	sel *pg_query.SelectStmt // the VALUES list; nil for DEFAULT VALUES

	// cols are the table columns the rows give values for, in order; rows the rows'
	// expressions (one empty row for DEFAULT VALUES).
	cols []int
	rows [][]*pg_query.Node
	// added are the columns the statement leaves out whose defaults the coordinator
	// evaluates (sequences, volatile expressions, and the partition key's).
	added []int
	// userValue marks the values OVERRIDING USER VALUE replaces by their defaults.
	userValue []bool

	// Tokens: the target table, VALUES (or DEFAULT VALUES), OVERRIDING (VALUES without
	// it), the first after the rows; rowSpans are the token ranges of the rows' "( ... )".
	relTok, valuesTok, overTok, suffixTok int
	rowSpans                              [][2]int
}

// insertTargets finds the target columns and the rows, with PostgreSQL's checks of their
// shapes.
func insertTargets(vi *valuesInsert) *pgerr.Error {
	s, t, sel := vi.s, vi.t, vi.sel
	cols := []int{}
	if len(s.Cols) > 0 {
		for _, c := range s.Cols {
			rt := unwrap(c).(*pg_query.ResTarget)
			i := t.ColumnIndex(rt.Name)
			if i < 0 {
				return pgerr.New(pgerr.UndefinedColumn, "column %q of relation %q does not exist", rt.Name, t.Name)
			}
			if i == t.KeyIndex && len(rt.Indirection) > 0 {
				return notSupported("Assigning to a part of the partition column is not supported.")
			}
			cols = append(cols, i)
		}
	}
	var rows [][]*pg_query.Node
	if sel != nil {
		for _, vl := range sel.ValuesLists {
			l, _ := unwrap(vl).(*pg_query.List)
			if l == nil {
				return notSupported("Unrecognised VALUES list.")
			}
			rows = append(rows, l.Items)
		}
	} else {
		rows = [][]*pg_query.Node{nil} // DEFAULT VALUES
	}
	width := len(rows[0])
	for _, r := range rows {
		if len(r) != width {
			return pgerr.New(pgerr.SyntaxError, "VALUES lists must all be the same length")
		}
	}
	if len(s.Cols) == 0 {
		if width > len(t.Columns) {
			return pgerr.New(pgerr.SyntaxError, "INSERT has more expressions than target columns")
		}
		for i := 0; i < width; i++ {
			cols = append(cols, i)
		}
	} else if width > len(cols) {
		return pgerr.New(pgerr.SyntaxError, "INSERT has more expressions than target columns")
	} else if width < len(cols) && sel != nil {
		return pgerr.New(pgerr.SyntaxError, "INSERT has more target columns than expressions")
	}
	if sel == nil {
		cols = cols[:0]
	}
	vi.cols, vi.rows = cols, rows
	return nil
}

// insertAdded finds the columns the statement leaves to their defaults but whose defaults
// must be evaluated on the coordinator (sequences, volatile expressions), and the
// partition key when the statement does not give it.
func insertAdded(vi *valuesInsert) *pgerr.Error {
	t := vi.t
	given := map[int]bool{}
	for _, c := range vi.cols {
		given[c] = true
	}
	for i := range t.Columns {
		c := &t.Columns[i]
		if given[i] || c.Generated != 0 {
			continue
		}
		if i == t.KeyIndex {
			if c.Default == "" {
				return pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
			}
			vi.added = append(vi.added, i)
		} else if c.Default != "" && !c.DefaultOnShard {
			vi.added = append(vi.added, i)
		}
	}
	return nil
}

// insertIdentity applies the rules of identity columns: OVERRIDING USER VALUE replaces
// the values given for them by their defaults; a value for a GENERATED ALWAYS one needs
// OVERRIDING SYSTEM VALUE.
func insertIdentity(vi *valuesInsert) *pgerr.Error {
	s := vi.s
	vi.userValue = make([]bool, len(vi.cols))
	for i, ci := range vi.cols {
		col := &vi.t.Columns[ci]
		if col.Identity == 0 {
			continue
		}
		if s.Override == pg_query.OverridingKind_OVERRIDING_USER_VALUE {
			vi.userValue[i] = true
			continue
		}
		if col.Identity != 'a' || s.Override == pg_query.OverridingKind_OVERRIDING_SYSTEM_VALUE {
			continue
		}
		for _, r := range vi.rows {
			if _, isDefault := unwrap(r[i]).(*pg_query.SetToDefault); !isDefault {
				return identityAlways(col.Name)
			}
		}
	}
	return nil
}

// locateValues locates the target, VALUES (or DEFAULT VALUES), OVERRIDING and the rows in
// the text.
func (q *stmtText) locateValues(vi *valuesInsert) *pgerr.Error {
	s, sel := vi.s, vi.sel
	relTok := q.tok(s.Relation.Location)
	if relTok < 0 {
		return notSupported("The INSERT's target could not be located.")
	}
	// VALUES, located from the parse tree: right before the first row's first value (and
	// its parentheses); DEFAULT VALUES, with no rows, ends the statement before any
	// ON CONFLICT or RETURNING. (A scan for the word would stop at an alias "values".)
	last := q.lastTok()
	valuesTok := -1
	if sel != nil && len(sel.ValuesLists) > 0 {
		first := nodeMessage(sel.ValuesLists[0])
		if l, ok := unwrap(sel.ValuesLists[0]).(*pg_query.List); ok && len(l.Items) > 0 {
			first = nodeMessage(l.Items[0])
		}
		if i := q.before(q.nodeStart(first)); q.kw(i, "values") && i > relTok {
			valuesTok = i
		}
	} else if sel == nil {
		end := last + 1
		switch {
		case s.OnConflictClause != nil:
			end = q.tok(s.OnConflictClause.Location)
		case len(s.ReturningList) > 0:
			if rt, ok := unwrap(s.ReturningList[0]).(*pg_query.ResTarget); ok {
				end = q.tok(rt.Location) - 1
			}
		}
		if q.kw(end-2, "default") && q.kw(end-1, "values") && end-2 > relTok {
			valuesTok = end - 2
		}
	}
	if valuesTok < 0 {
		return notSupported("The INSERT's VALUES list could not be located.")
	}
	// OVERRIDING ... VALUE, which the shard tables (without identity columns) do not
	// need: the identity values are evaluated here. It comes right before VALUES.
	overTok := valuesTok
	if s.Override != pg_query.OverridingKind_OVERRIDING_NOT_SET {
		if !q.kw(valuesTok-3, "overriding") || !q.kw(valuesTok-1, "value") {
			return notSupported("The INSERT's OVERRIDING clause could not be located.")
		}
		overTok = valuesTok - 3
	}
	var rowSpans [][2]int // token ranges of "( ... )"
	suffixTok := valuesTok + 2
	if sel != nil {
		i := valuesTok + 1
		for len(rowSpans) < len(vi.rows) {
			if !q.is(i, "(") {
				return notSupported("The INSERT's VALUES list could not be located.")
			}
			j := q.matchParen(i)
			if j < 0 {
				return notSupported("The INSERT's VALUES list could not be located.")
			}
			rowSpans = append(rowSpans, [2]int{i, j + 1})
			i = j + 1
			if len(rowSpans) < len(vi.rows) {
				if !q.is(i, ",") {
					return notSupported("The INSERT's VALUES list could not be located.")
				}
				i++
			}
		}
		suffixTok = i
	}
	vi.relTok, vi.valuesTok, vi.overTok, vi.suffixTok, vi.rowSpans = relTok, valuesTok, overTok, suffixTok, rowSpans
	return nil
}

// insertPrefix builds "INSERT INTO <shard> AS <name> (columns) VALUES ", with the added
// columns after the given ones.
func (p *planner) insertPrefix(vi *valuesInsert) (Template, *pgerr.Error) {
	s, t, cols, added := vi.s, vi.t, vi.cols, vi.added
	pre := newBuilder(p.in, p.litIdx)
	pre.text(p.start, p.startOf(vi.relTok))
	_, relEnd, _ := p.tableSegs(pre, s.Relation, 0, true)
	colNames := func() string {
		out := ""
		for _, c := range added {
			if out != "" || len(cols) > 0 {
				out += ", "
			}
			out += QuoteIdent(t.Columns[c].Name)
		}
		return out
	}
	if len(s.Cols) > 0 {
		open := -1
		for i := p.nameEnd(vi.relTok); i < vi.valuesTok; i++ {
			if p.is(i, "(") {
				open = i
				break
			}
		}
		if open < 0 {
			return nil, notSupported("The INSERT's column list could not be located.")
		}
		closeParen := p.matchParen(open)
		pre.text(relEnd, p.startOf(closeParen))
		pre.gen(colNames())
		pre.text(p.startOf(closeParen), p.startOf(vi.overTok))
	} else {
		pre.text(relEnd, p.startOf(vi.overTok))
		if len(cols) > 0 || len(added) > 0 {
			names := ""
			for _, c := range cols {
				if names != "" {
					names += ", "
				}
				names += QuoteIdent(t.Columns[c].Name)
			}
			pre.gen("(" + names + colNames() + ") ")
		}
	}
	pre.gen("VALUES ")
	return pre.done(), nil
}

// insertRow plans row ri: its text, with the values the coordinator evaluates as holes,
// and its partition key.
func (p *planner) insertRow(vi *valuesInsert, ri int) (Row, *pgerr.Error) {
	t, r := vi.t, vi.rows[ri]
	row := Row{}
	b := newBuilder(p.in, p.litIdx)
	b.gen("(")
	var spans [][2]int
	if vi.sel != nil {
		spans = p.splitTop(vi.rowSpans[ri][0]+1, vi.rowSpans[ri][1]-1)
		if len(spans) != len(r) {
			return row, notSupported("A VALUES row could not be located.")
		}
	}
	evalOf := func(e Eval) int {
		row.Evals = append(row.Evals, e)
		return len(row.Evals) - 1
	}
	keyEval := func(e Eval, col *metadata.Column) {
		e.Key, e.KeyType, e.Assign, e.Column, e.ColumnType, e.ColumnTypeName = true, col.HashType, col.Assign("$1"), col.Name, col.TypeOID, col.TypeName
		i := evalOf(e)
		row.Key = Value{Kind: ValEval, Index: i, Type: col.HashType}
		b.hole(SegEval, i)
	}
	for i, v := range r {
		ci := vi.cols[i]
		col := &t.Columns[ci]
		if i > 0 {
			b.gen(", ")
		}
		span := spans[i]
		exprText := func() Template {
			eb := newBuilder(p.in, p.litIdx)
			eb.text(p.startOf(span[0]), p.endOf(span[1]-1))
			return eb.done()
		}
		_, isDefault := unwrap(v).(*pg_query.SetToDefault)
		isDefault = isDefault || vi.userValue[i]
		switch {
		case isDefault && ci == t.KeyIndex:
			if col.Default == "" {
				return row, pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
			}
			keyEval(Eval{Expr: genTemplate(col.Default)}, col)
		case isDefault && col.Default != "" && !col.DefaultOnShard:
			b.hole(SegEval, evalOf(Eval{Expr: genTemplate(col.Default), ColumnTypeName: col.TypeName}))
		case ci == t.KeyIndex:
			kv, ok := p.insertKey(v, col)
			if ok && kv.Kind == ValNull {
				return row, pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
			}
			if ok {
				row.Key = kv
				b.text(p.startOf(span[0]), p.endOf(span[1]-1))
			} else {
				c, isConst := unwrap(v).(*pg_query.A_Const)
				unknown := isConst && c.GetSval() != nil
				keyEval(Eval{Expr: exprText(), Pos: p.startOf(span[0]), Unknown: unknown}, col)
			}
		case needsEval(v):
			b.hole(SegEval, evalOf(Eval{Expr: exprText(), ColumnTypeName: col.TypeName}))
		default:
			b.text(p.startOf(span[0]), p.endOf(span[1]-1))
		}
	}
	for k, ci := range vi.added {
		col := &t.Columns[ci]
		if k > 0 || len(r) > 0 {
			b.gen(", ")
		}
		if ci == t.KeyIndex {
			keyEval(Eval{Expr: genTemplate(col.Default)}, col)
		} else {
			b.hole(SegEval, evalOf(Eval{Expr: genTemplate(col.Default), ColumnTypeName: col.TypeName}))
		}
	}
	b.gen(")")
	row.Text = b.done()
	return row, nil
}

// insertSuffix builds what follows the rows (ON CONFLICT ..., RETURNING ...), with
// volatile values evaluated once (into evals).
func (p *planner) insertSuffix(vi *valuesInsert, evals *[]Eval) (Template, *pgerr.Error) {
	s := vi.s
	if err := p.conflictReads(s.ReturningList); err != nil {
		return nil, err
	}
	suf := newBuilder(p.in, p.litIdx)
	if vi.suffixTok <= p.lastTok() {
		var roots []*pg_query.Node
		if oc := s.OnConflictClause; oc != nil {
			roots = append(roots, oc.TargetList...)
			roots = append(roots, oc.WhereClause)
		}
		from := p.startOf(vi.suffixTok)
		if len(vi.rowSpans) > 0 {
			from = p.endOf(vi.rowSpans[len(vi.rowSpans)-1][1] - 1)
		}
		if err := p.conflictReads(roots); err != nil {
			return nil, err
		}
		if !p.preEval(suf, from, p.end, roots, evals, p.conflictConstraint(s.OnConflictClause)...) {
			return nil, notSupported("The INSERT's ON CONFLICT clause could not be located.")
		}
		if oc := s.OnConflictClause; oc != nil {
			for _, n := range oc.TargetList {
				if rt, ok := unwrap(n).(*pg_query.ResTarget); ok && rt.Name == vi.t.Key {
					return nil, pgerr.New(pgerr.FeatureNotSupported, "modifying the partition value of rows is not allowed")
				}
			}
		}
	}
	return suf.done(), nil
}

// conflictReads refuses an ON CONFLICT or RETURNING clause (roots) that reads a distributed
// table: it runs on each placement, where the table's name is not the shard's.
func (p *planner) conflictReads(roots []*pg_query.Node) *pgerr.Error {
	var found *metadata.Table
	for _, r := range roots {
		if r == nil || found != nil {
			continue
		}
		walk(r.ProtoReflect(), func(m protoreflect.Message, _ []frame) bool {
			if rv, ok := m.Interface().(*pg_query.RangeVar); ok && found == nil {
				found = p.resolve(rv)
			}
			return found == nil
		})
	}
	if found != nil {
		return notSupported("Subqueries over distributed table %s in ON CONFLICT or RETURNING are not supported.", QuoteIdent(found.Name))
	}
	return nil
}

// identityAlways is PostgreSQL's error for a value given to a GENERATED ALWAYS identity
// column without OVERRIDING SYSTEM VALUE.
func identityAlways(col string) *pgerr.Error {
	return pgerr.New(pgerr.GeneratedAlways, "cannot insert a non-DEFAULT value into column %q", col).
		WithDetail("Column %q is an identity column defined as GENERATED ALWAYS.", col).
		WithHint("Use OVERRIDING SYSTEM VALUE to override.")
}

// genTemplate is generated text as a template.
func genTemplate(s string) Template { return Template{{Kind: SegText, Text: s, Anchor: -1}} }

// insertKey interprets an INSERT's partition-key expression. Values are assigned to the
// column (PostgreSQL's assignment coercion), so only forms whose text is the column
// value are taken as they are: string constants, integer constants for numeric columns,
// decimal constants for numeric and float columns, casts to the column's own type, and
// parameters. Anything else is evaluated on the coordinator. The value is marked as
// assigned: a type modifier (char(10), numeric(5,1), timestamp(0), ...) applies to it
// before it is hashed, as it does before it is stored.
func (p *planner) insertKey(n *pg_query.Node, col *metadata.Column) (Value, bool) {
	v, ok := p.insertKeyValue(n, col)
	v.Assign = true
	return v, ok
}

func (p *planner) insertKeyValue(n *pg_query.Node, col *metadata.Column) (Value, bool) {
	keyType := col.HashType
	switch v := unwrap(n).(type) {
	case *pg_query.A_Const:
		if v.Isnull {
			return Value{Kind: ValNull}, true
		}
		return p.insertLiteral(v, keyType)
	case *pg_query.TypeCast:
		if castType(v.TypeName) != keyType {
			return Value{}, false
		}
		switch inner := unwrap(v.Arg).(type) {
		case *pg_query.A_Const:
			if inner.Isnull {
				return Value{Kind: ValNull}, true
			}
			return p.insertLiteral(inner, keyType)
		case *pg_query.ParamRef:
			return Value{Kind: ValParam, Index: int(inner.Number), Type: keyType}, true
		}
	case *pg_query.ParamRef:
		return Value{Kind: ValParam, Index: int(v.Number), Type: keyType}, true
	}
	return Value{}, false
}

func (q *stmtText) insertLiteral(c *pg_query.A_Const, keyType uint32) (Value, bool) {
	ti := q.constToken(c.Location)
	if ti < 0 {
		return Value{}, false
	}
	neg := int(q.in.Toks[ti].Start) != int(c.Location)
	v := Value{Kind: ValLit, Index: q.litIdx[int32(ti)], Neg: neg, Type: keyType}
	tok := q.in.Toks[ti]
	switch tok.Kind {
	case sqllex.String:
		if _, ok := sqllex.StringValue(q.in.Text, tok); !ok || neg {
			return Value{}, false
		}
		return v, true
	case sqllex.Number:
		integer := true
		for _, ch := range q.in.Text[tok.Start:tok.End] {
			if ch < '0' || ch > '9' {
				integer = false
			}
		}
		switch keyType {
		case pghash.OIDInt2, pghash.OIDInt4, pghash.OIDInt8, pghash.OIDOid:
			return v, integer
		case pghash.OIDNumeric, pghash.OIDFloat4, pghash.OIDFloat8:
			return v, true
		}
	}
	return Value{}, false
}

// needsEval reports whether a value expression must be evaluated on the coordinator
// before being sent to placements: it calls a function (which may be volatile, like
// now(), random() or nextval()), uses an SQL value function (CURRENT_TIMESTAMP, ...) or a
// subquery. Expressions with parameters are left to the placements.
func needsEval(n *pg_query.Node) bool {
	m := nodeMessage(n)
	if m == nil {
		return false
	}
	calls, params := false, false
	walk(m, func(x protoreflect.Message, _ []frame) bool {
		switch x.Interface().(type) {
		case *pg_query.FuncCall, *pg_query.SQLValueFunction, *pg_query.SubLink:
			calls = true
		case *pg_query.ParamRef:
			params = true
		}
		return true
	})
	return calls && !params
}

// nameSpan is a constraint name in the statement text, which each shard knows by its own
// name (SegShardName).
type nameSpan struct {
	from, to int
	name     string
}

// conflictConstraint locates the constraint name of ON CONFLICT ON CONSTRAINT.
func (p *planner) conflictConstraint(oc *pg_query.OnConflictClause) []nameSpan {
	if oc == nil || oc.Infer == nil || oc.Infer.Conname == "" {
		return nil
	}
	// The clause's location is at ON; the name follows CONSTRAINT.
	i := p.tok(oc.Infer.Location)
	if i < 0 || i+2 >= len(p.in.Toks) {
		return nil
	}
	return []nameSpan{{p.startOf(i + 2), p.endOf(i + 2), oc.Infer.Conname}}
}

// preEval copies input bytes [from, to) into b, replacing each outermost function call or
// SQL value function that references no column and no parameter (found under roots) with
// an evaluated value, whose Eval is appended to evals, and each of names with the shard's
// own name for it (SegShardName).
func (p *planner) preEval(b *builder, from, to int, roots []*pg_query.Node, evals *[]Eval, names ...nameSpan) bool {
	type span struct {
		from, to int
		name     string
	}
	var spans []span
	for _, n := range names {
		spans = append(spans, span{n.from, n.to, n.name})
	}
	for _, r := range roots {
		m := nodeMessage(r)
		if m == nil {
			continue
		}
		walk(m, func(x protoreflect.Message, _ []frame) bool {
			var loc int32
			switch v := x.Interface().(type) {
			case *pg_query.FuncCall:
				loc = v.Location
			case *pg_query.SQLValueFunction:
				loc = v.Location
			default:
				return true
			}
			if !columnFree(x) {
				return true // look for column-free calls inside
			}
			i := p.tok(loc)
			if i < 0 {
				return true
			}
			e := p.funcEnd(i)
			if e < 0 {
				return true
			}
			spans = append(spans, span{from: p.startOf(i), to: p.endOf(e - 1)})
			return false
		})
	}
	// Spans come from the tree in document order per root; sort them.
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j].from < spans[j-1].from; j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
	pos := from
	for _, s := range spans {
		if s.from < pos || s.to > to {
			return false
		}
		b.text(pos, s.from)
		if s.name != "" {
			b.segs = append(b.segs, Seg{Kind: SegShardName, Text: s.name, Anchor: -1})
			pos = s.to
			continue
		}
		eb := newBuilder(p.in, p.litIdx)
		eb.text(s.from, s.to)
		*evals = append(*evals, Eval{Expr: eb.done()})
		b.hole(SegEval, len(*evals)-1)
		pos = s.to
	}
	b.text(pos, to)
	return true
}

// columnFree reports whether an expression references no column, parameter or
// aggregate: it can then be evaluated anywhere, once.
func columnFree(m protoreflect.Message) bool {
	free := true
	walk(m, func(x protoreflect.Message, _ []frame) bool {
		switch v := x.Interface().(type) {
		case *pg_query.ColumnRef, *pg_query.ParamRef, *pg_query.SubLink:
			free = false
		case *pg_query.FuncCall:
			if v.Over != nil || v.AggStar || v.AggDistinct {
				free = false
			}
		}
		return free
	})
	return free
}
