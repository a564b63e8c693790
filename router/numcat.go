package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/router/pghash"
)

// numCat is what the planner can tell of an expression's type without the catalog.
type numCat uint8

const (
	catUnknown numCat = iota
	catFloat          // real or double precision
	catExact          // smallint, integer, bigint or numeric
	catOther          // a known type of another kind (interval, money, text, ...)
)

// typeCat is the category of a type name as the parser gives it.
func typeCat(tn *pg_query.TypeName) numCat {
	if tn == nil || len(tn.Names) == 0 || len(tn.ArrayBounds) > 0 {
		return catUnknown
	}
	s, ok := unwrap(tn.Names[len(tn.Names)-1]).(*pg_query.String)
	if !ok {
		return catUnknown
	}
	switch s.Sval {
	case "float4", "float8":
		return catFloat
	case "int2", "int4", "int8", "numeric":
		return catExact
	case "interval", "money", "text", "varchar", "bpchar", "date", "timestamp", "timestamptz", "bool":
		return catOther
	}
	return catUnknown
}

// oidCat is the category of a column's (base) type.
func oidCat(oid uint32) numCat {
	switch oid {
	case pghash.OIDFloat4, pghash.OIDFloat8:
		return catFloat
	case pghash.OIDInt2, pghash.OIDInt4, pghash.OIDInt8, pghash.OIDNumeric:
		return catExact
	case 0:
		return catUnknown
	}
	return catOther
}

// exprCat tells whether an expression over the query's tables is of a floating-point type, of an
// exact numeric one, of another known type, or cannot be told apart (catUnknown).
func (p *planner) exprCat(n *pg_query.Node) numCat {
	switch v := unwrap(n).(type) {
	case *pg_query.ColumnRef:
		if c := p.column(v); c != nil {
			return oidCat(c.HashType)
		}
	case *pg_query.TypeCast:
		return typeCat(v.TypeName)
	case *pg_query.A_Const:
		switch v.Val.(type) {
		case *pg_query.A_Const_Ival, *pg_query.A_Const_Fval:
			return catExact
		}
	case *pg_query.A_Expr:
		if v.Kind != pg_query.A_Expr_Kind_AEXPR_OP {
			return catUnknown
		}
		switch opName(v.Name) {
		case "+", "-", "*", "/", "%", "^":
		default:
			return catUnknown
		}
		cat := catExact
		for _, x := range []*pg_query.Node{v.Lexpr, v.Rexpr} {
			if x == nil {
				continue
			}
			switch c := p.exprCat(x); c {
			case catFloat:
				cat = catFloat
			case catExact:
			default:
				return catUnknown // interval * float8 is an interval, and so on
			}
		}
		return cat
	case *pg_query.FuncCall:
		switch funcName(v) {
		case "abs", "round", "trunc", "ceil", "ceiling", "floor":
			if len(v.Args) >= 1 && len(v.Funcname) == 1 {
				if c := p.exprCat(v.Args[0]); c == catFloat || c == catExact {
					return c
				}
			}
		}
	}
	return catUnknown
}

// column returns the column of one of the query's distributed tables (p.holes) that a
// column reference names, unqualified or qualified by the table's alias, or nil.
func (p *planner) column(cr *pg_query.ColumnRef) *metadata.Column {
	var names []string
	for _, f := range cr.Fields {
		s, ok := unwrap(f).(*pg_query.String)
		if !ok {
			return nil
		}
		names = append(names, s.Sval)
	}
	if len(names) != 1 && len(names) != 2 {
		return nil
	}
	var found *metadata.Column
	for _, r := range p.holes {
		if r.table == nil || len(names) == 2 && names[0] != aliasOf(r.rv) {
			continue
		}
		if i := r.table.ColumnIndex(names[len(names)-1]); i >= 0 {
			if found != nil {
				return nil
			}
			found = &r.table.Columns[i]
		}
	}
	return found
}
