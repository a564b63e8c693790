// Package qualify names pg_catalog explicitly in SQL expressions that PostgreSQL
// deparsed with only pg_catalog on the search_path (column defaults, type names): there,
// an unqualified function, operator or type name means pg_catalog's. pgshard evaluates
// such text again in a client's session, whose search_path may put another schema
// first, or hold a function or operator that matches the argument types better than
// pg_catalog's own (an exact match beats an implicit coercion); qualified, the text
// means what it meant to PostgreSQL when the table was defined.
package qualify

import (
	"fmt"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxLen bounds the text parsed here (the parser's stack grows with nesting).
const maxLen = 16 << 10

// maxCached bounds the results Expr keeps: past it the cache starts over.
const maxCached = 4096

// cache holds Expr's results by text. Every metadata load qualifies every column of every
// distributed table (its type names and default), mostly the same few texts, and a parse
// and deparse costs far more than the lookup: without it a cluster with many tables spent
// most of each reload here.
var cache struct {
	sync.Mutex
	m map[string]result
}

type result struct {
	text string
	err  error
}

// Expr returns the expression text with every unqualified function, operator and type
// name qualified with pg_catalog. Text that does not parse as one expression is an error.
func Expr(text string) (string, error) {
	cache.Lock()
	r, ok := cache.m[text]
	cache.Unlock()
	if ok {
		return r.text, r.err
	}
	q, err := expr(text)
	cache.Lock()
	if cache.m == nil || len(cache.m) >= maxCached {
		cache.m = make(map[string]result)
	}
	cache.m[text] = result{q, err}
	cache.Unlock()
	return q, err
}

// expr is Expr without the cache.
func expr(text string) (string, error) {
	if strings.TrimSpace(text) == "" {
		return text, nil
	}
	if len(text) > maxLen {
		return "", fmt.Errorf("qualify: expression of %d bytes is too long", len(text))
	}
	tree, err := pg_query.Parse("SELECT (" + text + ")")
	if err != nil {
		return "", fmt.Errorf("qualify: %w", err)
	}
	if len(tree.Stmts) != 1 {
		return "", fmt.Errorf("qualify: not one expression: %q", text)
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	if sel == nil || len(sel.TargetList) != 1 || len(sel.FromClause) > 0 {
		return "", fmt.Errorf("qualify: not one expression: %q", text)
	}
	walk(tree.ProtoReflect())
	out, err := pg_query.Deparse(tree)
	if err != nil {
		return "", fmt.Errorf("qualify: %w", err)
	}
	expr, ok := strings.CutPrefix(out, "SELECT ")
	if !ok {
		return "", fmt.Errorf("qualify: unexpected deparse %q", out)
	}
	return expr, nil
}

// TypeName returns a type name (format_type's output) with pg_catalog named.
func TypeName(name string) (string, error) {
	e, err := Expr("NULL::" + name)
	if err != nil {
		return "", err
	}
	t, ok := strings.CutPrefix(e, "NULL::")
	if !ok {
		return "", fmt.Errorf("qualify: unexpected type cast %q", e)
	}
	return t, nil
}

func catalog() *pg_query.Node { return pg_query.MakeStrNode("pg_catalog") }

// walk qualifies the names in every node under m.
func walk(m protoreflect.Message) {
	switch n := m.Interface().(type) {
	case *pg_query.FuncCall:
		if len(n.Funcname) == 1 {
			n.Funcname = append([]*pg_query.Node{catalog()}, n.Funcname...)
		}
	case *pg_query.A_Expr:
		switch n.Kind {
		case pg_query.A_Expr_Kind_AEXPR_OP, pg_query.A_Expr_Kind_AEXPR_OP_ANY, pg_query.A_Expr_Kind_AEXPR_OP_ALL:
			if len(n.Name) == 1 {
				n.Name = append([]*pg_query.Node{catalog()}, n.Name...)
			}
		}
	case *pg_query.TypeName:
		if len(n.Names) == 1 {
			n.Names = append([]*pg_query.Node{catalog()}, n.Names...)
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil:
			walk(v.Message())
		}
		return true
	})
}
