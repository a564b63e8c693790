package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/pgerr"
)

// ADD COLUMN with a default that is not a constant (now(), current_date, current_user,
// an expression of them): PostgreSQL fills the table's existing rows with the default's
// value, computed once when it is not volatile. The shards must get that same value:
// the coordinator computes it, in the statement's transaction, after its own ADD COLUMN
// (the proxy, with DDLColumnDefaults), and each shard adds the column with the value as
// a constant default, then drops the default (the coordinator evaluates the column's
// default for later INSERTs, as for every default that is not a constant). A volatile
// default (random(), nextval(), clock_timestamp()) gives each row its own value: the
// proxy refuses it (the coordinator says whether it filled the column with one value).

// DDLColumnDefaults returns, for an ALTER TABLE, the ADD COLUMN defaults that are not
// constants, as expression texts by column name; nil for none.
func DDLColumnDefaults(sql string) map[string]string {
	root, _, err := parseOne(sql)
	if err != nil {
		return nil
	}
	s, ok := root.Interface().(*pg_query.AlterTableStmt)
	if !ok {
		return nil
	}
	var out map[string]string
	for _, c := range s.Cmds {
		cmd, ok := unwrap(c).(*pg_query.AlterTableCmd)
		if !ok || cmd.Subtype != pg_query.AlterTableType_AT_AddColumn {
			continue
		}
		cd, ok := unwrap(cmd.Def).(*pg_query.ColumnDef)
		if !ok {
			continue
		}
		for _, n := range cd.Constraints {
			con, ok := unwrap(n).(*pg_query.Constraint)
			if !ok || con.Contype != pg_query.ConstrType_CONSTR_DEFAULT || constExpr(con.RawExpr) {
				continue
			}
			text, err := deparseExpr(con.RawExpr)
			if err != nil {
				continue
			}
			if out == nil {
				out = map[string]string{}
			}
			out[cd.Colname] = text
		}
	}
	return out
}

// deparseExpr prints an expression (as the select list of a SELECT, taken back out).
func deparseExpr(n *pg_query.Node) (string, error) {
	sel := &pg_query.SelectStmt{TargetList: []*pg_query.Node{{Node: &pg_query.Node_ResTarget{ResTarget: &pg_query.ResTarget{Val: n}}}}}
	out, err := pg_query.Deparse(&pg_query.ParseResult{Stmts: []*pg_query.RawStmt{{Stmt: &pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}}}})
	if err != nil {
		return "", err
	}
	const prefix = "SELECT "
	if len(out) < len(prefix) || out[:len(prefix)] != prefix {
		return "", errUnexpectedDeparse
	}
	return out[len(prefix):], nil
}

// computedDefault gives a shard's ADD COLUMN the value the coordinator computed for the
// column's default (DDLCatalog.Defaults), and drops the default after it.
func (r *rewriter) computedDefault(c *pg_query.Constraint, col string) error {
	value, ok := r.cat.Defaults[col]
	if !ok {
		return errUnexpectedDeparse
	}
	tree, err := pg_query.Parse("SELECT " + value)
	if err != nil {
		return err
	}
	sel, ok := unwrap(tree.Stmts[0].Stmt).(*pg_query.SelectStmt)
	if !ok || len(sel.TargetList) != 1 {
		return errUnexpectedDeparse
	}
	c.RawExpr = unwrap(sel.TargetList[0]).(*pg_query.ResTarget).Val
	rv, err := shardRangeVar(r.t, r.shard, true)
	if err != nil {
		return err
	}
	drop := &pg_query.AlterTableStmt{Relation: rv, Objtype: pg_query.ObjectType_OBJECT_TABLE, Cmds: []*pg_query.Node{{Node: &pg_query.Node_AlterTableCmd{
		AlterTableCmd: &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_ColumnDefault, Name: col, Behavior: pg_query.DropBehavior_DROP_RESTRICT}}}}}
	r.postlude = append(r.postlude, &pg_query.Node{Node: &pg_query.Node_AlterTableStmt{AlterTableStmt: drop}})
	return nil
}

// errUnexpectedDeparse is an internal error of the default's rewrite.
var errUnexpectedDeparse = pgerr.New(pgerr.InternalError, "could not write the computed default of a new column for the shards")
