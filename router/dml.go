package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/pgerr"
)

// updateStmt plans an UPDATE of a distributed table: it runs on the shards the WHERE
// clause selects (all of them without a usable key), with volatile values evaluated once on
// the coordinator.
func (p *planner) updateStmt(s *pg_query.UpdateStmt, refs, dist []tableRef) *Statement {
	t := p.resolve(s.Relation)
	switch {
	case t == nil:
		// A coordinator table updated from distributed data.
		return p.gatherStatement(s.ProtoReflect(), refs)
	}
	gathered := len(refs) != 1 || len(s.FromClause) > 0 || s.WithClause != nil || hasSubLink(s.ProtoReflect())
	var roots []*pg_query.Node
	for _, n := range s.TargetList {
		rt, ok := unwrap(n).(*pg_query.ResTarget)
		if !ok {
			continue
		}
		if i := t.ColumnIndex(rt.Name); i >= 0 && t.Columns[i].Identity == 'a' {
			// The shard tables have no identity: PostgreSQL's check is made here.
			if _, ok := unwrap(rt.Val).(*pg_query.SetToDefault); !ok {
				return p.errorf(pgerr.New(pgerr.GeneratedAlways, "column %q can only be updated to DEFAULT", rt.Name).
					WithDetail("Column %q is an identity column defined as GENERATED ALWAYS.", rt.Name))
			}
		}
		if rt.Name == t.Key {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "modifying the partition value of rows is not allowed"))
		}
		if gathered {
			continue
		}
		if _, ok := unwrap(rt.Val).(*pg_query.SetToDefault); ok {
			if i := t.ColumnIndex(rt.Name); i >= 0 && t.Columns[i].Default != "" && !t.Columns[i].DefaultOnShard {
				return p.errorf(notSupported("SET %s = DEFAULT needs the default evaluated on the coordinator, which is not supported yet.", rt.Name))
			}
		}
		roots = append(roots, rt.Val)
	}
	if gathered {
		return p.modifyGathered(Update, s.Relation, t, s.TargetList, modifyParts{s.FromClause, s.WhereClause, s.ReturningList}, refs)
	}
	return p.modify(Update, s.Relation, s.WhereClause, roots, refs, t, len(s.ReturningList) > 0)
}

// deleteStmt plans a DELETE from a distributed table.
func (p *planner) deleteStmt(s *pg_query.DeleteStmt, refs, dist []tableRef) *Statement {
	t := p.resolve(s.Relation)
	switch {
	case t == nil:
		return p.gatherStatement(s.ProtoReflect(), refs)
	case len(refs) != 1 || len(s.UsingClause) > 0 || s.WithClause != nil || hasSubLink(s.ProtoReflect()):
		return p.modifyGathered(Delete, s.Relation, t, nil, modifyParts{s.UsingClause, s.WhereClause, s.ReturningList}, refs)
	}
	return p.modify(Delete, s.Relation, s.WhereClause, nil, refs, t, len(s.ReturningList) > 0)
}

// modify builds the plan shared by UPDATE and DELETE.
func (p *planner) modify(kind Kind, rv *pg_query.RangeVar, where *pg_query.Node, values []*pg_query.Node, refs []tableRef, t *metadata.Table, returning bool) *Statement {
	if cursorOf(where) {
		return p.errorf(notSupported("WHERE CURRENT OF is not supported for distributed tables."))
	}
	alias := rv.Relname
	if rv.Alias != nil {
		alias = rv.Alias.Aliasname
	}
	st := &Statement{Kind: kind, Table: t.OID, Text: p.textTemplate(), Returning: returning}
	st.Filter = p.cond(where, t, alias)
	b := newBuilder(p.in, p.litIdx)
	ti := p.tok(rv.Location)
	if ti < 0 {
		return p.errorf(notSupported("The statement's table could not be located."))
	}
	b.text(p.start, p.startOf(ti))
	_, to, _ := p.tableSegs(b, rv, 0, false)
	roots := append(append([]*pg_query.Node(nil), values...), where)
	if !p.preEval(b, to, p.end, roots, &st.Evals) {
		return p.errorf(notSupported("A value of the statement could not be located."))
	}
	st.Shard = b.done()
	return st
}

func cursorOf(n *pg_query.Node) bool {
	_, ok := unwrap(n).(*pg_query.CurrentOfExpr)
	return ok
}

// dropStmt plans DROP TABLE naming distributed tables. Mixing distributed and
// coordinator tables is fine: the coordinator runs the statement as written after the
// shards are gone.
func (p *planner) dropStmt(s *pg_query.DropStmt, tables []*metadata.Table) *Statement {
	if s.Behavior == pg_query.DropBehavior_DROP_CASCADE {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "DROP TABLE ... CASCADE of distributed tables is not supported"))
	}
	st := &Statement{Kind: DropTable, Text: p.textTemplate(), Tag: "DROP TABLE"}
	for _, t := range tables {
		st.Tables = append(st.Tables, t.OID)
	}
	return st
}

// truncateStmt plans TRUNCATE of distributed (and possibly coordinator) tables.
func (p *planner) truncateStmt(s *pg_query.TruncateStmt, dist []tableRef) *Statement {
	st := &Statement{Kind: Truncate, Text: p.textTemplate(), Tag: "TRUNCATE TABLE"}
	seen := map[uint32]bool{}
	for _, r := range dist {
		if !seen[r.table.OID] {
			seen[r.table.OID] = true
			st.Tables = append(st.Tables, r.table.OID)
		}
	}
	return st
}
