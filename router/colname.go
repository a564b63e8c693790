package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// colName is the name PostgreSQL gives a select-list entry without an alias
// (FigureColname in parse_target.c): a column's name, a function's name, a cast's target
// type when the operand has no name of its own, a few keywords, else "?column?".
func colName(n *pg_query.Node) string {
	name, _ := colNameStrength(n)
	if name == "" {
		return "?column?"
	}
	return name
}

// colNameStrength returns a name and its strength: 2 for names from columns and
// functions, 1 for fallbacks such as a cast's type, 0 for none.
func colNameStrength(n *pg_query.Node) (string, int) {
	switch v := unwrap(n).(type) {
	case *pg_query.ColumnRef:
		for i := len(v.Fields) - 1; i >= 0; i-- {
			if s, ok := unwrap(v.Fields[i]).(*pg_query.String); ok {
				return s.Sval, 2
			}
			break
		}
	case *pg_query.A_Indirection:
		for i := len(v.Indirection) - 1; i >= 0; i-- {
			if s, ok := unwrap(v.Indirection[i]).(*pg_query.String); ok {
				return s.Sval, 2
			}
			break
		}
		return colNameStrength(v.Arg)
	case *pg_query.FuncCall:
		return funcName(v), 2
	case *pg_query.A_Expr:
		if v.Kind == pg_query.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2
		}
	case *pg_query.TypeCast:
		if name, s := colNameStrength(v.Arg); s > 1 {
			return name, s
		}
		if v.TypeName != nil && len(v.TypeName.Names) > 0 {
			if s, ok := unwrap(v.TypeName.Names[len(v.TypeName.Names)-1]).(*pg_query.String); ok {
				return s.Sval, 1
			}
		}
	case *pg_query.CollateClause:
		return colNameStrength(v.Arg)
	case *pg_query.GroupingFunc:
		return "grouping", 2
	case *pg_query.SubLink:
		switch v.SubLinkType {
		case pg_query.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2
		case pg_query.SubLinkType_ARRAY_SUBLINK:
			return "array", 2
		case pg_query.SubLinkType_EXPR_SUBLINK:
			if sel, ok := unwrap(v.Subselect).(*pg_query.SelectStmt); ok && len(sel.TargetList) == 1 {
				if rt, ok := unwrap(sel.TargetList[0]).(*pg_query.ResTarget); ok {
					if rt.Name != "" {
						return rt.Name, 2
					}
					return colNameStrength(rt.Val)
				}
			}
		}
	case *pg_query.CaseExpr:
		if name, s := colNameStrength(v.Defresult); s > 0 {
			return name, s
		}
		return "case", 1
	case *pg_query.A_ArrayExpr:
		return "array", 2
	case *pg_query.RowExpr:
		return "row", 2
	case *pg_query.CoalesceExpr:
		return "coalesce", 2
	case *pg_query.MinMaxExpr:
		if v.Op == pg_query.MinMaxOp_IS_GREATEST {
			return "greatest", 2
		}
		return "least", 2
	case *pg_query.SQLValueFunction:
		switch v.Op {
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
			return "current_date", 2
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:
			return "current_time", 2
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N:
			return "current_timestamp", 2
		case pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME, pg_query.SQLValueFunctionOp_SVFOP_LOCALTIME_N:
			return "localtime", 2
		case pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg_query.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
			return "localtimestamp", 2
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:
			return "current_role", 2
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER:
			return "current_user", 2
		case pg_query.SQLValueFunctionOp_SVFOP_USER:
			return "user", 2
		case pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER:
			return "session_user", 2
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:
			return "current_catalog", 2
		case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
			return "current_schema", 2
		}
	}
	return "", 0
}
