package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
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
	if st := p.systemColumnWrite(t, s.TargetList, s.FromClause, []*pg_query.Node{s.WhereClause}); st != nil {
		return st
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
	}
	if st := p.systemColumnWrite(t, s.UsingClause, []*pg_query.Node{s.WhereClause}); st != nil {
		return st
	}
	switch {
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

// systemColumns are the columns every row has that differ between the placements of a
// shard (its physical position, its transaction and command ids). tableoid is left out:
// each shard table has one, the shard's name is the same on every placement
// (tableoid::regclass), and its value is the worker's.
var systemColumns = map[string]bool{"ctid": true, "xmin": true, "xmax": true, "cmin": true, "cmax": true}

// systemColumnWrite refuses an UPDATE or DELETE of a distributed table whose rows or new
// values depend on a system column: each placement (and a gathered copy) would pick its
// own rows, so that placements silently diverge, or identical rows that PostgreSQL tells
// apart by ctid (DELETE ... USING t b WHERE a.ctid < b.ctid) are all changed. RETURNING
// may read them.
func (p *planner) systemColumnWrite(t *metadata.Table, parts ...[]*pg_query.Node) *Statement {
	name := ""
	for _, part := range parts {
		for _, n := range part {
			if n == nil || name != "" {
				continue
			}
			m := nodeMessage(n)
			if m == nil {
				continue
			}
			walk(m, func(x protoreflect.Message, _ []frame) bool {
				if cr, ok := x.Interface().(*pg_query.ColumnRef); ok && len(cr.Fields) > 0 {
					if f, ok := unwrap(cr.Fields[len(cr.Fields)-1]).(*pg_query.String); ok && systemColumns[f.Sval] {
						name = f.Sval
					}
				}
				return name == ""
			})
		}
	}
	if name == "" {
		return nil
	}
	return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "system column %q in an UPDATE or DELETE of distributed table %s is not supported", name, QuoteIdent(t.Name)).
		WithDetail("Each placement of a shard stores its rows at its own positions and with its own transaction ids, so the rows it picks would differ from its siblings'.").
		WithHint("Pick the rows by their key or other columns."))
}
