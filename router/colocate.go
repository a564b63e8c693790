package router

import (
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/metadata"
)

// colocatedJoin reports whether a SELECT joins distributed tables so that each shard
// index can answer for itself: every FROM item is a distributed table or a join of them,
// every table is hash-distributed on a key of the same type with the same shard ranges,
// and equalities between partition keys (in ON, USING or WHERE) connect all of them. Rows
// that join then always sit in shards of the same index. It returns the references in text
// order.
func colocatedJoin(s *pg_query.SelectStmt, refs []tableRef) ([]tableRef, bool) {
	if s.Op != pg_query.SetOperation_SETOP_NONE || s.WithClause != nil || s.IntoClause != nil ||
		len(refs) < 2 || hasSubLink(s.ProtoReflect()) {
		return nil, false
	}
	for _, r := range refs {
		if r.table == nil || r.table.KeyColumn() == nil || !sameShards(refs[0].table, r.table) {
			return nil, false
		}
	}
	sorted := append([]tableRef(nil), refs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].rv.Location < sorted[j].rv.Location })

	parent := make([]int, len(sorted))
	for i := range parent {
		parent[i] = i
	}
	var find func(i int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	union := func(i, j int) { parent[find(i)] = find(j) }
	index := func(rv *pg_query.RangeVar) int {
		for i, r := range sorted {
			if r.rv == rv {
				return i
			}
		}
		return -1
	}
	keyRef := func(n *pg_query.Node) int { return keyRefIndex(sorted, n) }
	var conjuncts func(n *pg_query.Node)
	conjuncts = func(n *pg_query.Node) {
		switch v := unwrap(n).(type) {
		case *pg_query.BoolExpr:
			if v.Boolop == pg_query.BoolExprType_AND_EXPR {
				for _, a := range v.Args {
					conjuncts(a)
				}
			}
		case *pg_query.A_Expr:
			if v.Kind == pg_query.A_Expr_Kind_AEXPR_OP && opName(v.Name) == "=" {
				if i, j := keyRef(v.Lexpr), keyRef(v.Rexpr); i >= 0 && j >= 0 {
					union(i, j)
				}
			}
		}
	}
	// items returns the references below a FROM item, or false for anything but tables
	// and joins of tables.
	var items func(n *pg_query.Node) ([]int, bool)
	items = func(n *pg_query.Node) ([]int, bool) {
		switch v := unwrap(n).(type) {
		case *pg_query.RangeVar:
			i := index(v)
			return []int{i}, i >= 0
		case *pg_query.JoinExpr:
			if v.IsNatural {
				return nil, false
			}
			l, ok := items(v.Larg)
			if !ok {
				return nil, false
			}
			r, ok := items(v.Rarg)
			if !ok {
				return nil, false
			}
			conjuncts(v.Quals)
			for _, u := range v.UsingClause {
				name, _ := unwrap(u).(*pg_query.String)
				if name == nil {
					continue
				}
				// USING (k) joins on k, which must then be the key on both sides.
				li, ri := -1, -1
				for _, i := range l {
					if sorted[i].table.Key == name.Sval {
						li = i
					}
				}
				for _, i := range r {
					if sorted[i].table.Key == name.Sval {
						ri = i
					}
				}
				if li >= 0 && ri >= 0 {
					union(li, ri)
				}
			}
			return append(l, r...), true
		}
		return nil, false
	}
	for _, f := range s.FromClause {
		if _, ok := items(f); !ok {
			return nil, false
		}
	}
	conjuncts(s.WhereClause)
	for i := range sorted {
		if find(i) != find(0) {
			return nil, false
		}
	}
	return sorted, true
}

// keyRefIndex returns the index in refs of the reference whose partition key the column
// reference n names, or -1.
func keyRefIndex(refs []tableRef, n *pg_query.Node) int {
	cr, ok := unwrap(n).(*pg_query.ColumnRef)
	if !ok {
		return -1
	}
	if len(cr.Fields) == 1 {
		// An unqualified column: the key of the only table that has it.
		c, ok := unwrap(cr.Fields[0]).(*pg_query.String)
		if !ok {
			return -1
		}
		found := -1
		for i, r := range refs {
			if r.table.ColumnIndex(c.Sval) >= 0 {
				if found >= 0 {
					return -1
				}
				found = i
			}
		}
		if found >= 0 && refs[found].table.Key == c.Sval {
			return found
		}
		return -1
	}
	if len(cr.Fields) != 2 {
		return -1
	}
	q, ok1 := unwrap(cr.Fields[0]).(*pg_query.String)
	c, ok2 := unwrap(cr.Fields[1]).(*pg_query.String)
	if !ok1 || !ok2 {
		return -1
	}
	for i, r := range refs {
		if aliasOf(r.rv) == q.Sval && r.table.Key == c.Sval {
			return i
		}
	}
	return -1
}

// sameShards reports whether two tables' shards cover the same hash ranges, index by
// index, with keys of the same type (so that equal keys hash alike).
func sameShards(a, b *metadata.Table) bool {
	if a.KeyColumn() == nil || b.KeyColumn() == nil || a.KeyColumn().HashType != b.KeyColumn().HashType ||
		len(a.Shards) != len(b.Shards) || len(a.Shards) == 0 {
		return false
	}
	for i := range a.Shards {
		if a.Shards[i].Min != b.Shards[i].Min || a.Shards[i].Max != b.Shards[i].Max {
			return false
		}
	}
	return true
}

// SameShards is sameShards for the executor, which checks co-location again against the
// metadata it runs with.
func SameShards(a, b *metadata.Table) bool { return sameShards(a, b) }

// aliasOf is the name a table reference is known by in its query.
func aliasOf(rv *pg_query.RangeVar) string {
	if rv.Alias != nil {
		return rv.Alias.Aliasname
	}
	return rv.Relname
}

// colocatedSelect plans a join of co-located tables: each shard index runs the query over
// its shards, and the results merge as for a single table. It returns nil for shapes that
// only a gather answers.
func (p *planner) colocatedSelect(s *pg_query.SelectStmt, joined, refs []tableRef) *Statement {
	t := joined[0].table
	alias := aliasOf(joined[0].rv)
	st := &Statement{Kind: Select, Table: t.OID, Text: p.textTemplate(), Locking: len(s.LockingClause) > 0, LockNoWait: lockNoWait(s)}
	st.Filter = p.cond(s.WhereClause, t, alias)
	p.holes = joined
	b := newBuilder(p.in, p.litIdx)
	if !p.region(b, p.start, p.end) {
		return nil
	}
	st.Shard = b.done()
	for _, r := range joined {
		st.Colocated = append(st.Colocated, r.table.OID)
	}
	st.Merge, st.Err = p.selectMerge(s, t, nil, alias, joined)
	if st.Merge == nil || st.Merge.Kind == Gather {
		return nil
	}
	var ok bool
	if st.Fallback, ok = p.gatherAll(refs); !ok {
		return nil
	}
	return st
}
