package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// Objects a distributed table's columns depend on (types, collations) change with the
// table's migrations: a column of a type created after the table was distributed, an
// enum that gains a value. The workers hold the shards, so they must follow.

// alterEnumStmt plans ALTER TYPE ... ADD VALUE and RENAME VALUE. Which distributed
// tables use the enum the proxy finds in the catalog (DDLEnumName): the statement is a
// schema change of those tables, applied to every worker holding their shards.
func (p ddlPlanner) alterEnumStmt() *Statement {
	if !p.snap.HasTables() {
		return nil
	}
	return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "ALTER TYPE"}
}

// DDLEnumName returns the enum an ALTER TYPE ... ADD VALUE or RENAME VALUE changes, as a
// type name for to_regtype, and whether the statement renames a label; "" for other
// statements.
func DDLEnumName(sql string) (name string, rename bool) {
	root, _, err := parseOne(sql)
	if err != nil {
		return "", false
	}
	s, ok := root.Interface().(*pg_query.AlterEnumStmt)
	if !ok {
		return "", false
	}
	var parts []string
	for _, n := range s.TypeName {
		if str, ok := unwrap(n).(*pg_query.String); ok {
			parts = append(parts, QuoteIdent(str.Sval))
		}
	}
	return strings.Join(parts, "."), s.OldVal != ""
}

// DDLNeedsObjects reports whether sql, an ALTER TABLE, gives columns a type or collation
// (ADD COLUMN, ALTER COLUMN ... TYPE) that the workers may lack: the proxy then makes
// sure the shards' workers have the objects the table's columns need.
func DDLNeedsObjects(sql string) bool {
	root, _, err := parseOne(sql)
	if err != nil {
		return false
	}
	s, ok := root.Interface().(*pg_query.AlterTableStmt)
	if !ok {
		return false
	}
	for _, c := range s.Cmds {
		if cmd, ok := unwrap(c).(*pg_query.AlterTableCmd); ok &&
			(cmd.Subtype == pg_query.AlterTableType_AT_AddColumn || cmd.Subtype == pg_query.AlterTableType_AT_AlterColumnType) {
			return true
		}
	}
	return false
}

// rewriteAlterEnum makes an enum change safe to repeat on a worker, which receives it once
// per shard it holds: ADD VALUE gets IF NOT EXISTS (RENAME VALUE the proxy guards).
func rewriteAlterEnum(s *pg_query.AlterEnumStmt) {
	if s.OldVal == "" {
		s.SkipIfNewValExists = true
	}
}

// DDLEnumOldLabel returns the label an ALTER TYPE ... RENAME VALUE renames, "" for other
// statements.
func DDLEnumOldLabel(sql string) string {
	root, _, err := parseOne(sql)
	if err != nil {
		return ""
	}
	if s, ok := root.Interface().(*pg_query.AlterEnumStmt); ok {
		return s.OldVal
	}
	return ""
}

// createFunctionStmt plans CREATE OR REPLACE FUNCTION: a function that distributed tables'
// shards call (in CHECK constraints, index expressions, generated columns, triggers) exists
// on the workers too, and must change there with the coordinator's. Which tables call
// it the proxy finds in the catalog (DDLFunctionName); when none do, the statement is the
// coordinator's alone.
func (p ddlPlanner) createFunctionStmt(s *pg_query.CreateFunctionStmt) *Statement {
	if !s.Replace || s.IsProcedure || !p.snap.HasTables() {
		return nil
	}
	return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "CREATE FUNCTION"}
}

// DDLFunctionName returns the schema (or "" when not qualified) and name of the function
// a CREATE OR REPLACE FUNCTION replaces; "" for other statements.
func DDLFunctionName(sql string) (schema, name string) {
	root, _, err := parseOne(sql)
	if err != nil {
		return "", ""
	}
	s, ok := root.Interface().(*pg_query.CreateFunctionStmt)
	if !ok || !s.Replace || s.IsProcedure {
		return "", ""
	}
	var parts []string
	for _, n := range s.Funcname {
		if str, ok := unwrap(n).(*pg_query.String); ok {
			parts = append(parts, str.Sval)
		}
	}
	switch len(parts) {
	case 1:
		return "", parts[0]
	case 2:
		return parts[0], parts[1]
	case 3:
		return parts[1], parts[2]
	}
	return "", ""
}
