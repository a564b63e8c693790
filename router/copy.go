package router

import (
	"strconv"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/pgerr"
)

// copyStmt plans COPY with a distributed table: COPY table FROM STDIN (rows split by
// shard by the proxy), COPY table TO STDOUT and COPY (SELECT ...) TO STDOUT (each shard's
// output in turn).
func (p *planner) copyStmt(s *pg_query.CopyStmt, refs, dist []tableRef) *Statement {
	if s.Filename != "" || s.IsProgram {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "COPY of a distributed table to or from a server file or program is not supported").
			WithHint("Use COPY ... FROM STDIN or TO STDOUT (psql's \\copy)."))
	}
	if s.Relation == nil {
		return p.copyQuery(s, refs, dist)
	}
	t := p.resolve(s.Relation)
	if t == nil {
		return p.coordinator()
	}
	if s.WhereClause != nil {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "COPY FROM ... WHERE is not supported for distributed tables"))
	}
	st := &Statement{Table: t.OID, Text: p.textTemplate(), Tag: "COPY"}
	for _, n := range s.Attlist {
		name := ""
		if str, ok := unwrap(n).(*pg_query.String); ok {
			name = str.Sval
		}
		i := t.ColumnIndex(name)
		if i < 0 {
			return p.errorf(pgerr.New(pgerr.UndefinedColumn, "column %q of relation %q does not exist", name, t.Name))
		}
		for _, c := range st.CopyCols {
			if c == i {
				return p.errorf(pgerr.New("42701", "column %q specified more than once", name))
			}
		}
		st.CopyCols = append(st.CopyCols, i)
	}
	if len(st.CopyCols) == 0 {
		for i, c := range t.Columns {
			if c.Generated == 0 {
				st.CopyCols = append(st.CopyCols, i)
			}
		}
	}
	opts, err := copyOptions(s.Options)
	if err != nil {
		return p.errorf(err)
	}
	st.CopyOptions = opts
	if s.IsFrom {
		st.Kind = CopyIn
		return st
	}
	st.Kind = CopyOut
	st.CopyHeader = headerOn(opts)
	// Each shard runs the statement as written, on its shard table.
	b := newBuilder(p.in, p.litIdx)
	ti := p.tok(s.Relation.Location)
	if ti < 0 {
		return p.errorf(notSupported("The COPY's table could not be located."))
	}
	b.text(p.start, p.startOf(ti))
	b.hole(SegTable, 0)
	b.text(p.endOf(p.nameEnd(ti)-1), p.end)
	st.Shard = b.done()
	st.Filter = &Cond{Kind: CondAll}
	return st
}

// copyQuery plans COPY (SELECT ...) TO STDOUT over distributed tables. A plain selection
// runs on each shard and the shards' outputs are concatenated; any other SELECT (ORDER BY,
// LIMIT, aggregates, DISTINCT, joins, subqueries, ...) runs on its shard when it reads one
// table and its WHERE clause leaves one shard, and is otherwise gathered (Merge): the
// coordinator runs the COPY itself over temporary copies of the tables, so that the rows,
// their order and their format are PostgreSQL's.
func (p *planner) copyQuery(s *pg_query.CopyStmt, refs, dist []tableRef) *Statement {
	sel, ok := unwrap(s.Query).(*pg_query.SelectStmt)
	if !ok {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "COPY (INSERT/UPDATE/DELETE ... RETURNING) on distributed tables is not supported"))
	}
	opts, err := copyOptions(s.Options)
	if err != nil {
		return p.errorf(err)
	}
	inner := p.selectStmt(sel, refs, dist)
	if inner.Kind == Error {
		return inner
	}
	st := &Statement{Kind: CopyOut, Table: inner.Table, Text: p.textTemplate(), Tag: "COPY",
		Shard: inner.Shard, Filter: inner.Filter, CopyOptions: opts, CopyHeader: headerOn(opts)}
	if inner.Kind == Select && inner.Err == nil && plainSelection(sel) {
		return st
	}
	p.holes = nil
	g := p.gatherStatement(s.ProtoReflect(), refs)
	if inner.Kind != Select || g.Kind != Gathered {
		return g
	}
	// One table: when the WHERE clause leaves one shard, it answers any SELECT alone;
	// several shards are gathered.
	st.Merge = g.Merge
	return st
}

// plainSelection reports whether a SELECT of one table only filters and computes rows, so
// that the shards' answers concatenated are the answer: no ORDER BY, LIMIT, OFFSET,
// DISTINCT, GROUP BY, HAVING, WINDOW or locking, and no function call in the select list
// (which may be an aggregate, a window function or a set-returning function).
func plainSelection(s *pg_query.SelectStmt) bool {
	if len(s.SortClause) > 0 || s.LimitCount != nil || s.LimitOffset != nil || len(s.DistinctClause) > 0 ||
		len(s.GroupClause) > 0 || s.HavingClause != nil || len(s.WindowClause) > 0 || len(s.LockingClause) > 0 {
		return false
	}
	plain := true
	for _, n := range s.TargetList {
		if m := nodeMessage(n); m != nil {
			walk(m, func(x protoreflect.Message, _ []frame) bool {
				if _, ok := x.Interface().(*pg_query.FuncCall); ok {
					plain = false
				}
				return plain
			})
		}
	}
	return plain
}

// copyOptions converts COPY's DefElem list.
func copyOptions(list []*pg_query.Node) ([]CopyOption, *pgerr.Error) {
	var out []CopyOption
	for _, n := range list {
		d, ok := unwrap(n).(*pg_query.DefElem)
		if !ok {
			return nil, pgerr.New(pgerr.SyntaxError, "unrecognised COPY option")
		}
		o := CopyOption{Name: d.Defname}
		switch a := unwrap(d.Arg).(type) {
		case nil:
			o.Kind = CopyArgNone
		case *pg_query.String:
			o.Kind, o.Value = CopyArgString, a.Sval
		case *pg_query.Boolean:
			o.Kind, o.Value = CopyArgString, strconv.FormatBool(a.Boolval)
		case *pg_query.Integer:
			o.Kind, o.Value = CopyArgNumber, strconv.Itoa(int(a.Ival))
		case *pg_query.Float:
			o.Kind, o.Value = CopyArgNumber, a.Fval
		case *pg_query.A_Star:
			o.Kind = CopyArgStar
		case *pg_query.List:
			o.Kind = CopyArgList
			for _, it := range a.Items {
				if s, ok := unwrap(it).(*pg_query.String); ok {
					o.List = append(o.List, s.Sval)
				}
			}
		default:
			return nil, pgerr.New(pgerr.SyntaxError, "unrecognised argument of COPY option %q", d.Defname)
		}
		out = append(out, o)
	}
	return out, nil
}

// headerOn reports whether COPY options ask for a header line.
func headerOn(opts []CopyOption) bool {
	on := false
	for _, o := range opts {
		if o.Name != "header" {
			continue
		}
		switch o.Kind {
		case CopyArgNone:
			on = true
		case CopyArgString, CopyArgNumber:
			switch o.Value {
			case "true", "on", "1", "t", "yes", "y", "match":
				on = true
			default:
				on = false
			}
		}
	}
	return on
}
