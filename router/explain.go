package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/pgerr"
)

// explain plans EXPLAIN of a statement on distributed tables: the statement is planned
// as if it ran, and the executor shows that plan with the shards' own plans.
func (p *planner) explain(s *pg_query.ExplainStmt) *Statement {
	st := &Statement{Kind: Explain, Text: p.textTemplate()}
	for _, o := range s.Options {
		d, ok := unwrap(o).(*pg_query.DefElem)
		if !ok {
			continue
		}
		switch strings.ToLower(d.Defname) {
		case "analyze":
			st.Analyze = defTrue(d)
		case "format":
			if v := defString(d); strings.ToLower(v) != "text" {
				return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "EXPLAIN (FORMAT %s) of a distributed query is not supported", strings.ToUpper(v)).
					WithHint("Use FORMAT TEXT."))
			}
		}
	}
	// The options are the tokens between EXPLAIN and the statement.
	first := p.firstTok()
	if !p.kw(first, "explain") {
		return p.errorf(notSupported("The EXPLAIN statement could not be located."))
	}
	i := first + 1
	if p.is(i, "(") {
		if i = p.matchParen(i); i < 0 {
			return p.errorf(notSupported("The EXPLAIN options could not be located."))
		}
		i++
	} else {
		for p.kw(i, "analyze") || p.kw(i, "analyse") || p.kw(i, "verbose") {
			i++
		}
	}
	if i > first+1 {
		st.Options = p.in.Text[p.startOf(first+1):p.endOf(i-1)]
	}
	root := nodeMessage(s.Query)
	if root == nil {
		return p.errorf(notSupported("The explained statement could not be located."))
	}
	saved := p.start
	p.start = p.startOf(i)
	st.Inner = p.plan(root)
	p.start = saved
	switch st.Inner.Kind {
	case Select, Gathered, Insert, Update, Delete:
	case Error:
		return st.Inner
	default:
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "EXPLAIN of this statement on distributed tables is not supported"))
	}
	return st
}

func defTrue(d *pg_query.DefElem) bool {
	if d.Arg == nil {
		return true
	}
	switch v := unwrap(d.Arg).(type) {
	case *pg_query.Boolean:
		return v.Boolval
	case *pg_query.String:
		switch strings.ToLower(v.Sval) {
		case "true", "on", "yes", "1":
			return true
		}
		return false
	case *pg_query.Integer:
		return v.Ival != 0
	}
	return true
}

func defString(d *pg_query.DefElem) string {
	if d.Arg == nil {
		return ""
	}
	if v, ok := unwrap(d.Arg).(*pg_query.String); ok {
		return v.Sval
	}
	return ""
}
