package router

import (
	"strings"
	"unicode"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
)

// coordinatorCode refuses statements that define code running inside the coordinator —
// views, rules, policies, functions, DO blocks — over distributed tables: there it would
// read and write the tables' empty prototypes, not the shards. It returns nil for any
// other statement. (The coordinator refuses the same objects when they are created
// without pgshard, and the prototypes refuse writes: see metadata/store.)
//
// A function or DO block with its body in a string is refused when a word of the body
// is the name of a distributed table (in any schema, in any case): the body's names are
// only resolved when it runs, and it may build its statements from strings.
func (p *planner) coordinatorCode(root protoreflect.Message, dist []tableRef) *Statement {
	var what string
	var body string
	switch s := root.Interface().(type) {
	case *pg_query.ViewStmt:
		what = "views"
	case *pg_query.RuleStmt:
		what = "rules"
	case *pg_query.CreatePolicyStmt, *pg_query.AlterPolicyStmt:
		what = "policies"
	case *pg_query.CreateTableAsStmt:
		if s.Objtype != pg_query.ObjectType_OBJECT_MATVIEW {
			return nil
		}
		what = "materialized views"
	case *pg_query.CreateFunctionStmt:
		what = "functions"
		if s.IsProcedure {
			what = "procedures"
		}
		if s.SqlBody == nil && !nativeLanguage(s.Options) {
			body = stringOption(s.Options, "as")
		}
	case *pg_query.DoStmt:
		what = "DO blocks"
		body = stringOption(s.Args, "as")
	default:
		return nil
	}
	var t *metadata.Table
	if len(dist) > 0 {
		t = dist[0].table
	} else if body != "" {
		t = p.namedTable(body)
	}
	if t == nil {
		return nil
	}
	return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "pgshard does not support %s over distributed table %s", what, QuoteIdent(t.Name)).
		WithDetail("Functions, views, rules, policies and DO blocks run inside the coordinator, which holds only an empty prototype of a distributed table; its rows live on the shards.").
		WithHint("Query and write distributed tables with statements of their own, sent through pgshard."))
}

// stringOption returns the text of a DefElem option (for a function's AS, all of its
// strings).
func stringOption(opts []*pg_query.Node, name string) string {
	var b strings.Builder
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.Defname != name || d.Arg == nil {
			continue
		}
		if s := d.Arg.GetString_(); s != nil {
			b.WriteString(s.Sval)
		}
		if l := d.Arg.GetList(); l != nil {
			for _, it := range l.Items {
				if s := it.GetString_(); s != nil {
					b.WriteString(s.Sval)
					b.WriteByte('\n')
				}
			}
		}
	}
	return b.String()
}

// nativeLanguage reports whether a function's LANGUAGE is C or internal, whose AS names
// an object file and a symbol rather than code.
func nativeLanguage(opts []*pg_query.Node) bool {
	l := strings.ToLower(stringOption(opts, "language"))
	return l == "c" || l == "internal"
}

// namedTable returns a distributed table whose name is a word of body, compared without
// regard to case.
func (p *planner) namedTable(body string) *metadata.Table {
	tables := p.snap.Tables()
	if len(tables) == 0 {
		return nil
	}
	byName := make(map[string]*metadata.Table, len(tables))
	for _, t := range tables {
		byName[strings.ToLower(t.Name)] = t
	}
	isWord := func(r rune) bool { return r == '_' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r) }
	for _, w := range strings.FieldsFunc(body, func(r rune) bool { return !isWord(r) }) {
		if t := byName[strings.ToLower(w)]; t != nil {
			return t
		}
	}
	return nil
}

// queryTextFuncs are functions that run SQL given as a string (or read a table given by
// name) inside the coordinator: over a distributed table they would read its empty
// prototype.
var queryTextFuncs = map[string]bool{
	"query_to_xml": true, "query_to_xml_and_xmlschema": true,
	"table_to_xml": true, "table_to_xml_and_xmlschema": true,
	"ts_stat": true, "ts_rewrite": true,
	"dblink": true, "dblink_exec": true, "dblink_open": true, "dblink_send_query": true,
}

// wholeSchemaFuncs export every table of a schema or of the database.
var wholeSchemaFuncs = map[string]bool{
	"schema_to_xml": true, "schema_to_xml_and_xmlschema": true,
	"database_to_xml": true, "database_to_xml_and_xmlschema": true,
}

// queryTextCall refuses a statement that calls a function of queryTextFuncs with a
// string naming a distributed table (or with an argument whose value the plan cannot
// see), or one of wholeSchemaFuncs over a schema holding distributed tables. It returns
// nil for any other statement.
func (p *planner) queryTextCall(root protoreflect.Message) *Statement {
	if !p.snap.HasTables() {
		return nil
	}
	var refused *Statement
	walk(root, func(m protoreflect.Message, _ []frame) bool {
		f, ok := m.Interface().(*pg_query.FuncCall)
		if !ok || refused != nil || len(f.Funcname) == 0 {
			return refused == nil
		}
		name := f.Funcname[len(f.Funcname)-1].GetString_().GetSval()
		switch {
		case queryTextFuncs[name]:
			if name == "ts_rewrite" && len(f.Args) != 2 {
				return true // ts_rewrite(query, target, substitute) runs no SQL
			}
			p.exact = true // the decision depends on the literals' values
			for _, a := range f.Args {
				v, ok := constString(a)
				if !ok {
					refused = p.queryTextError(name, nil)
					return false
				}
				if t := p.namedTable(v); t != nil {
					refused = p.queryTextError(name, t)
					return false
				}
			}
		case wholeSchemaFuncs[name]:
			p.exact = true
			var schema string
			if strings.HasPrefix(name, "schema_") {
				if len(f.Args) == 0 {
					return true
				}
				v, ok := constString(f.Args[0])
				if !ok {
					refused = p.queryTextError(name, nil)
					return false
				}
				schema = v
			}
			for _, t := range p.snap.Tables() {
				if schema == "" || t.Schema == schema {
					refused = p.queryTextError(name, t)
					return false
				}
			}
		}
		return true
	})
	return refused
}

// constString returns the value of a constant argument (a literal, possibly cast).
func constString(n *pg_query.Node) (string, bool) {
	for {
		if tc := n.GetTypeCast(); tc != nil {
			n = tc.Arg
			continue
		}
		if na := n.GetNamedArgExpr(); na != nil {
			n = na.Arg
			continue
		}
		break
	}
	c := n.GetAConst()
	if c == nil {
		return "", false
	}
	if s := c.GetSval(); s != nil {
		return s.Sval, true
	}
	return "", true // a number, a Boolean or NULL
}

func (p *planner) queryTextError(fn string, t *metadata.Table) *Statement {
	e := pgerr.New(pgerr.FeatureNotSupported, "pgshard does not support %s over distributed tables", fn)
	if t != nil {
		e = pgerr.New(pgerr.FeatureNotSupported, "pgshard does not support %s over distributed table %s", fn, QuoteIdent(t.Name))
	} else {
		e = e.WithDetail("pgshard cannot tell which tables a %s call whose arguments are not constants reads.", fn)
	}
	return p.errorf(e.WithHint("Functions run inside the coordinator, which holds only an empty prototype of a distributed table; query the table with a statement of its own, sent through pgshard."))
}
