package router

import (
	"strings"
	"unicode"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/pgerr"
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
