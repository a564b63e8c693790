package router

import (
	"sort"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/pgerr"
)

// FunctionSignature describes one of pgshard's SQL functions: its parameter types, and
// how many trailing parameters have defaults (and what they are).
type FunctionSignature struct {
	Params   []string // parameter type names, for casting the arguments
	Defaults []string // SQL text of the defaults of the last len(Defaults) parameters
	// Result is the OID of the result type, 0 for void. A regclass parameter reaches
	// the function as the relation's OID (the coordinator resolves the name).
	Result uint32
}

// int8OID is bigint's type OID.
const int8OID = 20

// Functions are the SQL functions the proxy implements, by name. They are called like
// ordinary functions in a SELECT list, once per row.
var Functions = map[string]FunctionSignature{
	"master_add_node":                 {Params: []string{"text", "integer"}},
	"master_create_distributed_table": {Params: []string{"text", "text", `"char"`}, Defaults: []string{`'h'`}},
	"master_create_worker_shards":     {Params: []string{"text", "integer", "integer"}, Defaults: []string{"2"}},
	"master_copy_shard_placement":     {Params: []string{"bigint", "text", "integer", "text", "integer"}},
	// Sizes and row estimates of distributed tables, summed over their shards
	// (proxy/sizes.go), with Citus's names for the sizes.
	"pgshard_table_size":          {Params: []string{"regclass"}, Result: int8OID},
	"pgshard_relation_size":       {Params: []string{"regclass"}, Result: int8OID},
	"pgshard_total_relation_size": {Params: []string{"regclass"}, Result: int8OID},
	"pgshard_estimated_rows":      {Params: []string{"regclass"}, Result: int8OID},
	"citus_table_size":            {Params: []string{"regclass"}, Result: int8OID},
	"citus_relation_size":         {Params: []string{"regclass"}, Result: int8OID},
	"citus_total_relation_size":   {Params: []string{"regclass"}, Result: int8OID},
}

type funcRef struct {
	call *pg_query.FuncCall
	name string
	path []frame
}

// pgshardFunction returns the name of a pgshard SQL function a call invokes, or "".
func pgshardFunction(f *pg_query.FuncCall) string {
	var names []string
	for _, n := range f.Funcname {
		s, ok := unwrap(n).(*pg_query.String)
		if !ok {
			return ""
		}
		names = append(names, s.Sval)
	}
	switch len(names) {
	case 1:
	case 2:
		if names[0] != "pgs_distribution_metadata" && names[0] != "public" {
			return ""
		}
	default:
		return ""
	}
	if _, ok := Functions[names[len(names)-1]]; ok {
		return names[len(names)-1]
	}
	return ""
}

// functionCall plans a SELECT whose select list calls pgshard functions. The rest of the
// query (FROM, WHERE, other columns) runs on the coordinator as ArgQuery, which returns the
// calls' arguments, cast to the parameter types, and the other columns; the proxy then
// calls the functions once per row.
func (p *planner) functionCall(root protoreflect.Message, funcs []funcRef, refs []tableRef) *Statement {
	sel, ok := root.Interface().(*pg_query.SelectStmt)
	if !ok {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "%s can only be called in the select list of a SELECT", funcs[0].name))
	}
	for _, r := range refs {
		if r.table != nil {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "%s cannot be called in a query that reads distributed tables", funcs[0].name))
		}
	}
	if !wholeEntries(sel, funcs) {
		if st := p.inlineCalls(funcs); st != nil {
			return st
		}
	}
	if sel.Op != pg_query.SetOperation_SETOP_NONE || len(sel.ValuesLists) > 0 {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "%s cannot be called in a set operation", funcs[0].name))
	}
	// Each call must be a whole select-list entry.
	entryCall := map[int]funcRef{}
	for _, f := range funcs {
		if len(f.path) < 1 {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "%s must be called at the top level of a select list", f.name))
		}
		parent := f.path[len(f.path)-1]
		rt, isTarget := parent.msg.Interface().(*pg_query.ResTarget)
		if !isTarget || len(f.path) < 2 || f.path[len(f.path)-2].msg.Interface() != sel {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "%s must be called at the top level of a select list", f.name))
		}
		for i, n := range sel.TargetList {
			if unwrap(n) == rt {
				entryCall[i] = f
			}
		}
	}
	c, ok := p.clausesOf(sel)
	var entries []target
	if ok {
		entries, ok = p.targets(sel, c)
	}
	if !ok {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "the select list could not be located"))
	}
	listEnd := c.end
	if len(entries) > 0 {
		listEnd = entries[len(entries)-1].to
	}
	st := &Statement{Kind: Function, Text: p.textTemplate()}
	b := newBuilder(p.in, p.litIdx)
	b.gen("SELECT ")
	ncol := 0
	col := func() {
		if ncol > 0 {
			b.gen(", ")
		}
		ncol++
	}
	for i, n := range sel.TargetList {
		rt := unwrap(n).(*pg_query.ResTarget)
		f, isCall := entryCall[i]
		if !isCall {
			col()
			b.text(p.startOf(entries[i].from), p.endOf(entries[i].to-1))
			name := rt.Name
			if name == "" {
				name = "?column?"
			}
			st.Columns = append(st.Columns, OutColumn{Name: name, Call: -1, ArgIndex: ncol - 1})
			continue
		}
		sig := Functions[f.name]
		if f.call.AggStar || f.call.AggDistinct || len(f.call.AggOrder) > 0 || f.call.Over != nil || f.call.FuncVariadic {
			return p.errorf(pgerr.New(pgerr.SyntaxError, "%s is not an aggregate or window function", f.name))
		}
		for _, a := range f.call.Args {
			if _, named := unwrap(a).(*pg_query.NamedArgExpr); named {
				return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "named arguments are not supported for %s", f.name))
			}
		}
		nargs := len(f.call.Args)
		if nargs > len(sig.Params) || nargs < len(sig.Params)-len(sig.Defaults) {
			return p.errorf(pgerr.New(pgerr.UndefinedFunction, "function %s with %d arguments does not exist", f.name, nargs).
				WithHint("No function matches the given name and argument types. You might need to add explicit type casts."))
		}
		ci := p.tok(f.call.Location)
		open := p.nameEnd(ci)
		closeParen := p.matchParen(open)
		if ci < 0 || !p.is(open, "(") || closeParen < 0 {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "the call of %s could not be located", f.name))
		}
		args := p.splitTop(open+1, closeParen)
		if len(args) != nargs {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "the arguments of %s could not be located", f.name))
		}
		call := Call{Func: f.name, Column: len(st.Columns), Arg0: ncol, NArgs: len(sig.Params)}
		for k, typ := range sig.Params {
			col()
			b.gen("(")
			if k < nargs {
				b.text(p.startOf(args[k][0]), p.endOf(args[k][1]-1))
			} else {
				b.gen(sig.Defaults[k-(len(sig.Params)-len(sig.Defaults))])
			}
			// text and "char" are names, looked up on the search_path: pg_catalog's
			// (integer and bigint are keywords, always pg_catalog's).
			switch typ {
			case "text", `"char"`:
				typ = "pg_catalog." + typ
			case "regclass":
				typ = "pg_catalog.regclass::pg_catalog.oid"
			}
			b.gen(")::" + typ)
		}
		name := rt.Name
		if name == "" {
			name = f.name
		}
		st.Calls = append(st.Calls, call)
		st.Columns = append(st.Columns, OutColumn{Name: name, Call: len(st.Calls) - 1})
	}
	if listEnd < c.end {
		b.gen(" ")
		b.text(p.startOf(listEnd), p.end)
	}
	st.ArgQuery = b.done()
	return st
}

// wholeEntries reports whether every call is a whole select-list entry of sel.
func wholeEntries(sel *pg_query.SelectStmt, funcs []funcRef) bool {
	for _, f := range funcs {
		if len(f.path) < 2 || f.path[len(f.path)-2].msg.Interface() != sel {
			return false
		}
		if _, ok := f.path[len(f.path)-1].msg.Interface().(*pg_query.ResTarget); !ok {
			return false
		}
	}
	return true
}

// inlineCalls plans a SELECT whose calls of functions with a result (the size functions)
// stand inside expressions, anywhere in it (pg_size_pretty(pgshard_table_size('t'))):
// when every call has one constant argument (no column, parameter or subquery), the
// proxy evaluates the arguments (ArgQuery, one row), runs the functions, and then the
// statement on the coordinator with each call replaced by its result (Outer). It
// returns nil when the calls do not qualify.
func (p *planner) inlineCalls(funcs []funcRef) *Statement {
	calls := append([]funcRef(nil), funcs...)
	sort.Slice(calls, func(i, j int) bool { return calls[i].call.Location < calls[j].call.Location })
	for _, f := range calls {
		c := f.call
		if Functions[f.name].Result == 0 || len(c.Args) != 1 || c.AggStar || c.AggDistinct || len(c.AggOrder) > 0 || c.Over != nil || c.FuncVariadic || c.AggFilter != nil {
			return nil
		}
		// A call in FROM (SELECT * FROM pgshard_table_size('t')) would leave its value, a
		// literal, where PostgreSQL reads a table: not inlined (refused below, 0A000).
		for _, fr := range f.path {
			if _, inFrom := fr.msg.Interface().(*pg_query.RangeFunction); inFrom {
				return nil
			}
		}
		constant := true
		walk(c.Args[0].ProtoReflect(), func(m protoreflect.Message, _ []frame) bool {
			switch n := m.Interface().(type) {
			case *pg_query.ColumnRef, *pg_query.ParamRef, *pg_query.SubLink, *pg_query.NamedArgExpr:
				constant = false
			case *pg_query.FuncCall:
				if pgshardFunction(n) != "" {
					constant = false
				}
			}
			return constant
		})
		if !constant {
			return nil
		}
	}
	st := &Statement{Kind: Function, Text: p.textTemplate()}
	args, outer := newBuilder(p.in, p.litIdx), newBuilder(p.in, p.litIdx)
	args.gen("SELECT ")
	pos := p.start
	for k, f := range calls {
		ci := p.tok(f.call.Location)
		open := p.nameEnd(ci)
		closeParen := p.matchParen(open)
		if ci < 0 || !p.is(open, "(") || closeParen < 0 || p.startOf(ci) < pos {
			return nil
		}
		a := p.splitTop(open+1, closeParen)
		if len(a) != 1 {
			return nil
		}
		if k > 0 {
			args.gen(", ")
		}
		args.gen("(")
		args.text(p.startOf(a[0][0]), p.endOf(a[0][1]-1))
		args.gen(")::pg_catalog.regclass::pg_catalog.oid")
		outer.text(pos, p.startOf(ci))
		outer.hole(SegEval, k)
		pos = p.endOf(closeParen)
		st.Calls = append(st.Calls, Call{Func: f.name, Column: -1, Arg0: k, NArgs: 1})
	}
	outer.text(pos, p.end)
	st.ArgQuery, st.Outer = args.done(), outer.done()
	return st
}
