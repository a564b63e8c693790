package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/router/sqllex"
)

// This file locates the pieces of a SELECT (its clauses, select-list entries, ORDER BY
// items and WHERE conjuncts) in the statement's tokens from the parse tree, never by
// looking for keywords in the text: a keyword may also be an alias (AS limit), part of
// an expression (IS DISTINCT FROM, CASE WHEN a AND b), or an identifier. Each piece is
// anchored at the parser's location of its first node; only the keywords the grammar
// puts right before it (FROM, WHERE, ORDER BY, a separating comma or AND) are checked
// there, so a mismatch means the plan falls back rather than splices the wrong text.

// clauses holds the token indexes of a SELECT's clause keywords (-1 when absent).
type clauses struct {
	selectKw, from, where, group, having, window, order, limit, offset, fetch, forKw int
	end                                                                              int // token after the statement
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

// afterWhere is the first token after a single-table query's WHERE clause (or FROM
// clause, without WHERE).
func (c clauses) afterWhere() int {
	from := c.from
	if c.where >= 0 {
		from = c.where
	}
	return c.next(from, c.group, c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw)
}

// whereEnd is the first token after the WHERE clause.
func (c clauses) whereEnd() int {
	return c.next(c.where, c.group, c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw)
}

// orderEnd is the first token after the ORDER BY clause.
func (c clauses) orderEnd() int {
	return c.next(c.order, c.limit, c.offset, c.fetch, c.forKw)
}

// nodeStart returns the index of the first token of the expression below m (nil: -1):
// the token at the least parse location in it. Parentheses around it are not included.
func (q *stmtText) nodeStart(m protoreflect.Message) int {
	if m == nil {
		return -1
	}
	best := -1
	walk(m, func(n protoreflect.Message, _ []frame) bool {
		if fd := n.Descriptor().Fields().ByName("location"); fd != nil && fd.Kind() == protoreflect.Int32Kind {
			if loc := int(n.Get(fd).Int()); loc >= 0 && (best < 0 || loc < best) {
				best = loc
			}
		}
		return true
	})
	if best < 0 {
		return -1
	}
	return sqllex.Find(q.in.Toks, best)
}

// exprStart is nodeStart of a Node.
func (q *stmtText) exprStart(n *pg_query.Node) int { return q.nodeStart(nodeMessage(n)) }

// openParen returns the index of the "(" matching the ")" at token i, or -1.
func (q *stmtText) openParen(i int) int {
	depth := 0
	for j := i; j >= 0; j-- {
		switch {
		case q.is(j, ")") || q.is(j, "]"):
			depth++
		case q.is(j, "(") || q.is(j, "["):
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// before returns the token before i, skipping opening parentheses (which belong to the
// expression starting at i).
func (q *stmtText) before(i int) int {
	j := i - 1
	for q.is(j, "(") {
		j--
	}
	return j
}

// clausesOf locates the clauses of a SELECT without set operations from its parse tree.
// It reports false when a clause cannot be located where the grammar puts it.
func (q *stmtText) clausesOf(s *pg_query.SelectStmt) (clauses, bool) {
	c := clauses{selectKw: -1, from: -1, where: -1, group: -1, having: -1, window: -1, order: -1, limit: -1, offset: -1, fetch: -1, forKw: -1}
	first, last := q.firstTok(), q.lastTok()
	c.end = last + 1
	if s.Op != pg_query.SetOperation_SETOP_NONE || last < first || q.is(first, "(") {
		// A set operation, or a SELECT in parentheses, whose pieces (and the ORDER BY or
		// LIMIT written after the parentheses, which the parser folds into it) do not
		// sit in one run of text.
		return c, false
	}
	// SELECT [ALL | DISTINCT [ON (...)]] before the first entry (WITH ... may come first).
	c.selectKw = first
	if len(s.TargetList) > 0 {
		rt, isTarget := unwrap(s.TargetList[0]).(*pg_query.ResTarget)
		if !isTarget {
			return c, false
		}
		j := sqllex.Find(q.in.Toks, int(rt.Location)) - 1
		switch {
		case q.kw(j, "all") || q.kw(j, "distinct"):
			j--
		case q.is(j, ")"):
			k := q.openParen(j)
			if !q.kw(k-1, "on") || !q.kw(k-2, "distinct") {
				return c, false
			}
			j = k - 3
		}
		c.selectKw = j
	}
	if c.selectKw < first || !q.kw(c.selectKw, "select") {
		return c, false
	}
	ok := true
	// anchor finds the keyword(s) kws right before the expression n (skipping its opening
	// parentheses and the given optional words) and returns the first keyword's index.
	anchor := func(n protoreflect.Message, optional []string, kws ...string) int {
		i := q.nodeStart(n)
		if i < 0 {
			ok = false
			return -1
		}
		j := q.before(i)
		for skipped := true; skipped; {
			skipped = false
			for _, w := range optional {
				if q.kw(j, w) {
					j = q.before(j)
					skipped = true
				}
			}
		}
		for k := len(kws) - 1; k >= 0; k-- {
			if !q.kw(j, kws[k]) {
				ok = false
				return -1
			}
			if k > 0 {
				j--
			}
		}
		return j
	}
	if len(s.FromClause) > 0 {
		c.from = anchor(nodeMessage(s.FromClause[0]), []string{"only", "lateral"}, "from")
	}
	if s.WhereClause != nil {
		c.where = anchor(nodeMessage(s.WhereClause), nil, "where")
	}
	if len(s.GroupClause) > 0 {
		c.group = anchor(nodeMessage(s.GroupClause[0]), []string{"all", "distinct"}, "group", "by")
	}
	if s.HavingClause != nil {
		c.having = anchor(nodeMessage(s.HavingClause), nil, "having")
	}
	if len(s.WindowClause) > 0 {
		// WINDOW name AS (...): the definition's location is its "(".
		i := q.nodeStart(nodeMessage(s.WindowClause[0]))
		if i < 2 || !q.kw(i-1, "as") || !q.kw(i-3, "window") {
			return c, false
		}
		c.window = i - 3
	}
	if len(s.SortClause) > 0 {
		sb, isSort := unwrap(s.SortClause[0]).(*pg_query.SortBy)
		if !isSort {
			return c, false
		}
		c.order = anchor(nodeMessage(sb.Node), nil, "order", "by")
	}
	if !ok {
		return c, false
	}
	if s.LimitCount != nil {
		if i := q.exprStart(s.LimitCount); i >= 0 {
			switch j := q.before(i); {
			case q.kw(j, "limit"):
				c.limit = j
			case (q.kw(j, "first") || q.kw(j, "next")) && q.kw(j-1, "fetch"):
				c.fetch = j - 1
			default:
				return c, false
			}
		}
	}
	if s.LimitOffset != nil {
		if c.offset = anchor(nodeMessage(s.LimitOffset), nil, "offset"); !ok {
			return c, false
		}
	}
	if !q.locateUnanchored(s, &c) {
		return c, false
	}
	return c, c.inOrder()
}

// locateUnanchored finds FOR UPDATE/SHARE and FETCH FIRST ROW ONLY (no count), which
// carry no location, after the last located clause, where no expression can hold them.
// It returns false when s has them and they are not found.
func (q *stmtText) locateUnanchored(s *pg_query.SelectStmt, c *clauses) bool {
	tail := max(c.selectKw, c.from, c.where, c.group, c.having, c.window, c.order)
	if len(s.LockingClause) == 0 && (s.LimitCount == nil || c.limit >= 0 || c.fetch >= 0) {
		return true
	}
	depth := 0
	for i := tail + 1; i < c.end; i++ {
		switch {
		case q.is(i, "(") || q.is(i, "["):
			depth++
		case q.is(i, ")") || q.is(i, "]"):
			depth--
		case depth != 0:
		case c.forKw < 0 && len(s.LockingClause) > 0 && q.kw(i, "for") &&
			(q.kw(i+1, "update") || q.kw(i+1, "share") || q.kw(i+1, "no") || q.kw(i+1, "key")):
			c.forKw = i
		case c.fetch < 0 && c.limit < 0 && q.kw(i, "fetch") && (q.kw(i+1, "first") || q.kw(i+1, "next")):
			c.fetch = i
		}
	}
	return !(len(s.LockingClause) > 0 && c.forKw < 0 || s.LimitCount != nil && c.limit < 0 && c.fetch < 0)
}

// inOrder reports whether the located clauses come in the grammar's order.
func (c *clauses) inOrder() bool {
	prev := c.selectKw
	for _, x := range []int{c.from, c.where, c.group, c.having, c.window, c.order} {
		if x < 0 {
			continue
		}
		if x <= prev {
			return false
		}
		prev = x
	}
	for _, x := range []int{c.limit, c.offset, c.fetch, c.forKw} {
		if x >= 0 && x <= prev {
			return false
		}
	}
	return true
}

// target is one select-list entry: its tokens [from, to), and those of its expression
// without the alias [exprFrom, exprTo).
type target struct {
	from, to         int
	exprFrom, exprTo int
}

// targets locates the select-list entries of a SELECT whose clauses are c.
func (q *stmtText) targets(s *pg_query.SelectStmt, c clauses) ([]target, bool) {
	if s.IntoClause != nil || c.selectKw < 0 {
		return nil, false
	}
	end := c.next(c.selectKw, c.from, c.where, c.group, c.having, c.window, c.order, c.limit, c.offset, c.fetch, c.forKw)
	out := make([]target, len(s.TargetList))
	for i, n := range s.TargetList {
		rt, isTarget := unwrap(n).(*pg_query.ResTarget)
		if !isTarget {
			return nil, false
		}
		from := sqllex.Find(q.in.Toks, int(rt.Location))
		if from <= c.selectKw || from >= end || i > 0 && (from <= out[i-1].from || !q.is(from-1, ",")) {
			return nil, false
		}
		out[i].from = from
		if i > 0 {
			out[i-1].to = from - 1
		}
	}
	if len(out) == 0 {
		return out, true
	}
	out[len(out)-1].to = end
	for i, n := range s.TargetList {
		rt := unwrap(n).(*pg_query.ResTarget)
		t := &out[i]
		t.exprFrom, t.exprTo = t.from, t.to
		if rt.Name != "" {
			// "expr AS name" or "expr name": the alias is the entry's last token.
			a := t.to - 1
			if a <= t.from || sqllex.IdentName(q.in.Text, q.in.Toks[a]) != rt.Name {
				return nil, false
			}
			t.exprTo = a
			if q.kw(a-1, "as") && a-1 > t.from {
				t.exprTo = a - 1
			}
		}
		if t.exprFrom >= t.exprTo {
			return nil, false
		}
	}
	return out, true
}

// sortItems locates the expressions of a SELECT's ORDER BY items (without ASC, DESC and
// NULLS FIRST/LAST), as token ranges [from, to).
func (q *stmtText) sortItems(s *pg_query.SelectStmt, c clauses) ([][2]int, bool) {
	if c.order < 0 {
		return nil, false
	}
	n := len(s.SortClause)
	starts := make([]int, n)
	for i, x := range s.SortClause {
		sb, isSort := unwrap(x).(*pg_query.SortBy)
		if !isSort {
			return nil, false
		}
		j := q.before(q.nodeStart(nodeMessage(sb.Node)))
		switch {
		case i == 0 && j != c.order+1, i > 0 && (!q.is(j, ",") || j <= starts[i-1]):
			return nil, false
		}
		starts[i] = j + 1
	}
	out := make([][2]int, n)
	for i, x := range s.SortClause {
		sb := unwrap(x).(*pg_query.SortBy)
		to := c.orderEnd()
		if i+1 < n {
			to = starts[i+1] - 1
		}
		if sb.SortbyNulls != pg_query.SortByNulls_SORTBY_NULLS_DEFAULT {
			if !q.kw(to-2, "nulls") {
				return nil, false
			}
			to -= 2
		}
		switch sb.SortbyDir {
		case pg_query.SortByDir_SORTBY_ASC, pg_query.SortByDir_SORTBY_DESC:
			if !q.kw(to-1, "asc") && !q.kw(to-1, "desc") {
				return nil, false
			}
			to--
		case pg_query.SortByDir_SORTBY_USING:
			return nil, false
		}
		if starts[i] >= to {
			return nil, false
		}
		out[i] = [2]int{starts[i], to}
	}
	return out, true
}

// conjunctSpans locates the conjuncts of a SELECT's WHERE clause (the arguments of its
// top-level AND, which the parser flattens also across parentheses, or the whole clause)
// as token ranges [from, to), each without parentheses that are not its own.
func (q *stmtText) conjunctSpans(s *pg_query.SelectStmt, conjuncts []*pg_query.Node) [][2]int {
	c, ok := q.clausesOf(s)
	if !ok || c.where < 0 {
		return nil
	}
	n := len(conjuncts)
	// Region i runs from after the AND before conjunct i (WHERE for the first) to the
	// AND before the next one.
	seps := make([]int, n+1)
	seps[0], seps[n] = c.where, c.whereEnd()
	for i := 1; i < n; i++ {
		j := q.before(q.exprStart(conjuncts[i]))
		if !q.kw(j, "and") || j <= seps[i-1] {
			return nil
		}
		seps[i] = j
	}
	out := make([][2]int, n)
	for i := range out {
		from, to, ok := q.trimParens(seps[i]+1, seps[i+1])
		if !ok {
			return nil
		}
		out[i] = [2]int{from, to}
	}
	return out
}

// trimParens drops the opening parentheses at the start of tokens [from, to) and the
// closing ones at its end that have no partner inside the range.
func (q *stmtText) trimParens(from, to int) (int, int, bool) {
	var open []int
	closers := 0
	firstCloser := -1
	for i := from; i < to; i++ {
		switch {
		case q.is(i, "(") || q.is(i, "["):
			open = append(open, i)
		case q.is(i, ")") || q.is(i, "]"):
			if len(open) > 0 {
				open = open[:len(open)-1]
			} else {
				if closers == 0 {
					firstCloser = i
				}
				closers++
			}
		}
	}
	for k, i := range open {
		if i != from+k {
			return 0, 0, false
		}
	}
	if closers > 0 && firstCloser != to-closers {
		return 0, 0, false
	}
	from, to = from+len(open), to-closers
	return from, to, from < to
}
