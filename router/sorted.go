package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
)

// sortMerge plans an ordered single-table SELECT over several shards as a streaming
// merge: every shard sorts its own rows (and stops at LIMIT offset+limit), returning the
// sort keys once more as hidden trailing columns in binary form, and the proxy merges the
// streams. It returns nil for shapes it cannot merge (ORDER BY ... USING, FETCH WITH TIES,
// a LIMIT that is an expression); the caller then gathers.
func (p *planner) sortMerge(s *pg_query.SelectStmt, t *metadata.Table, rv *pg_query.RangeVar, alias string) *Merge {
	c, ok := p.clausesOf(s)
	if !ok || c.from < 0 || c.order < 0 || s.LimitOption == pg_query.LimitOption_LIMIT_OPTION_WITH_TIES {
		return nil
	}
	m := &Merge{Kind: Sorted}
	if p.limits(s, m) != nil {
		return nil
	}
	entries, ok := p.targets(s, c)
	if !ok {
		return nil
	}
	items, ok := p.sortItems(s, c)
	if !ok {
		return nil
	}
	// The visible columns, and each entry's output name (as PostgreSQL names it).
	names := make([]string, len(entries))
	star := false
	for i := range entries {
		rt := unwrap(s.TargetList[i]).(*pg_query.ResTarget)
		if cr, ok := unwrap(rt.Val).(*pg_query.ColumnRef); ok {
			if _, isStar := unwrap(cr.Fields[len(cr.Fields)-1]).(*pg_query.A_Star); isStar {
				if len(p.holes) != 1 || len(cr.Fields) != 1 {
					return nil // the width of a join's * depends on USING
				}
				m.Visible += len(t.Columns)
				star = true
				continue
			}
		}
		m.Visible++
		names[i] = rt.Name
		if names[i] == "" {
			names[i] = colName(rt.Val)
		}
	}
	shard := newBuilder(p.in, p.litIdx)
	shard.gen("SELECT ")
	shard.text(p.startOf(c.selectKw+1), p.endOf(entries[len(entries)-1].to-1))
	for i, n := range s.SortClause {
		sb, ok := unwrap(n).(*pg_query.SortBy)
		if !ok || sb.SortbyDir == pg_query.SortByDir_SORTBY_USING {
			return nil
		}
		// The key's expression: a select-list entry (by position, or by output name as
		// PostgreSQL resolves a bare name first), or the item as written.
		from, to := items[i][0], items[i][1]
		expr := unwrap(sb.Node)
		target := -1
		switch v := expr.(type) {
		case *pg_query.A_Const:
			if iv, ok := v.Val.(*pg_query.A_Const_Ival); ok {
				target = int(iv.Ival.Ival) - 1
			}
			if target < 0 || target >= len(entries) {
				return nil
			}
		case *pg_query.ColumnRef:
			if len(v.Fields) == 1 {
				if f, ok := unwrap(v.Fields[0]).(*pg_query.String); ok {
					if star && t.ColumnIndex(f.Sval) >= 0 {
						return nil // a column of * may match too (or be ambiguous)
					}
					for j := range entries {
						if names[j] != f.Sval {
							continue
						}
						if target >= 0 {
							return nil // ambiguous unless equal: PostgreSQL decides
						}
						target = j
					}
				}
			}
		}
		if target >= 0 {
			if names[target] == "" {
				return nil // *
			}
			from, to = entries[target].exprFrom, entries[target].exprTo
			expr = unwrap(unwrap(s.TargetList[target]).(*pg_query.ResTarget).Val)
		}
		if from >= to {
			return nil
		}
		key := SortKey{Desc: sb.SortbyDir == pg_query.SortByDir_SORTBY_DESC}
		switch sb.SortbyNulls {
		case pg_query.SortByNulls_SORTBY_NULLS_FIRST:
			key.NullsFirst = true
		case pg_query.SortByNulls_SORTBY_NULLS_LAST:
		default:
			key.NullsFirst = key.Desc
		}
		key.ByteOrder = p.byteOrder(expr)
		if !key.ByteOrder {
			// A column or COLLATE clause that sorts by a locale's rules is a string the
			// proxy cannot compare: gather. (Other expressions are decided by the type
			// the shards report.)
			switch expr.(type) {
			case *pg_query.ColumnRef, *pg_query.CollateClause:
				return nil
			}
		}
		m.Keys = append(m.Keys, key)
		shard.gen(", ")
		shard.text(p.startOf(from), p.endOf(to-1))
		shard.gen(" AS pgshard_s" + itoa(i+1))
	}
	shard.gen(" ")
	if !p.fromTo(shard, c, c.orderEnd()) {
		return nil
	}
	if m.HasLimit {
		shard.gen(" LIMIT ")
		shard.hole(SegEval, 0)
	}
	p.lockingClause(shard, c)
	m.Shard = shard.done()
	if len(s.LockingClause) > 0 {
		// Rows cannot be locked through a gather: without a fallback, the executor
		// merges the shards' rows itself or refuses.
		return m
	}
	if m.Fallback = p.mergeFallback(s, t, rv, alias); m.Fallback == nil {
		return nil
	}
	return m
}

// lockingClause writes a SELECT's FOR UPDATE/SHARE clauses, if any.
func (p *planner) lockingClause(b *builder, c clauses) {
	if c.forKw < 0 {
		return
	}
	b.gen(" ")
	b.text(p.startOf(c.forKw), p.endOf(c.next(c.forKw, c.limit, c.offset, c.fetch)-1))
}

// mergeFallback plans the gather a merge falls back to when the proxy finds at run time
// that it cannot merge the shards' results itself (a type it cannot compare or carry).
func (p *planner) mergeFallback(s *pg_query.SelectStmt, t *metadata.Table, rv *pg_query.RangeVar, alias string) *Merge {
	if len(p.holes) > 1 {
		m, ok := p.gatherAll(p.holes)
		if !ok {
			return nil
		}
		return m
	}
	m, e := p.gatherRows(s, rv, t, alias)
	if e != nil {
		return nil
	}
	return m
}

// byteOrder reports whether strings of an expression over t compare byte by byte: its
// collation, derived as PostgreSQL derives it, is C-like. It errs on the side of false.
func (p *planner) byteOrder(expr any) bool {
	pm, isMsg := expr.(interface{ ProtoReflect() protoreflect.Message })
	if !isMsg {
		return false
	}
	m := pm.ProtoReflect()
	ok, explicit := true, false
	walk(m, func(n protoreflect.Message, _ []frame) bool {
		switch v := n.Interface().(type) {
		case *pg_query.CollateClause:
			name := ""
			if len(v.Collname) > 0 {
				if s, isStr := unwrap(v.Collname[len(v.Collname)-1]).(*pg_query.String); isStr {
					name = s.Sval
				}
			}
			switch strings.ToLower(name) {
			case "c", "posix", "ucs_basic":
			default:
				ok = false
			}
			// An explicit collation decides whatever is below it.
			explicit = true
			return false
		case *pg_query.ColumnRef:
			if !p.columnByteOrder(v) {
				ok = false
			}
		case *pg_query.SubLink:
			ok = false
		}
		return ok
	})
	if !explicit && !p.snap.DefaultByteOrder {
		// Without COLLATE, only a column keeps its own collation: an expression over
		// columns of non-collatable types (qty::text, to_char(ts, ...)) takes the
		// database's default one.
		if _, isCol := m.Interface().(*pg_query.ColumnRef); !isCol {
			return false
		}
	}
	return ok
}

// columnByteOrder reports whether a column reference names a column, of one of the
// query's distributed tables, whose strings compare byte by byte.
func (p *planner) columnByteOrder(cr *pg_query.ColumnRef) bool {
	var names []string
	for _, f := range cr.Fields {
		s, ok := unwrap(f).(*pg_query.String)
		if !ok {
			return false
		}
		names = append(names, s.Sval)
	}
	if len(names) != 1 && len(names) != 2 {
		return false
	}
	found, byteOrder := 0, false
	for _, r := range p.holes {
		if r.table == nil || len(names) == 2 && names[0] != aliasOf(r.rv) {
			continue
		}
		if i := r.table.ColumnIndex(names[len(names)-1]); i >= 0 {
			found++
			byteOrder = r.table.Columns[i].ByteOrder
		}
	}
	return found == 1 && byteOrder
}
