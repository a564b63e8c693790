package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/sqllex"
)

// Triggers and row-level security of distributed tables (kind DDL), applied to the
// coordinator's table and to every shard table, like the other schema changes:
//
//   - CREATE [OR REPLACE] TRIGGER, DROP TRIGGER, ALTER TRIGGER ... RENAME, and ALTER
//     TABLE ... ENABLE/DISABLE TRIGGER name (ENABLE REPLICA/ALWAYS too). The trigger
//     fires on every placement of the shard that holds the row (never on the
//     coordinator, whose prototype holds no rows): its function is created on the
//     workers from the coordinator's definition (pg_get_functiondef) where it is
//     missing or differs. A BEFORE ... FOR EACH ROW trigger (which can only change the
//     row it is given) is always accepted; any other (AFTER, statement-level, on
//     TRUNCATE) only with the coordinator setting pgshard.enable_unsafe_triggers on,
//     as Citus gates its own with citus.enable_unsafe_triggers: such a trigger runs
//     once per placement and its side effects land on the worker. Constraint triggers
//     are refused, and so are pgshard's own triggers (named pgshard_...).
//   - ALTER TABLE ... ENABLE/DISABLE/FORCE/NO FORCE ROW LEVEL SECURITY and CREATE, ALTER
//     and DROP POLICY, ALTER POLICY ... RENAME: the workers evaluate the policies, as the
//     client's role (pgshard connects to them as the client's user). A policy whose
//     expressions read another distributed table is refused.

// pgshardTrigger reports a trigger name pgshard reserves for its own triggers on the
// coordinator's prototypes.
func pgshardTrigger(name string) bool { return strings.HasPrefix(name, "pgshard_") }

func reservedTrigger(name string, t *metadata.Table) *pgerr.Error {
	return pgerr.New(pgerr.FeatureNotSupported, "trigger %s of distributed table %s belongs to pgshard", QuoteIdent(name), QuoteIdent(t.Name)).
		WithDetail("Triggers named pgshard_... guard the coordinator's prototype of the table.")
}

// triggerStmt plans CREATE TRIGGER on a distributed table.
func (p ddlPlanner) triggerStmt(s *pg_query.CreateTrigStmt, dist []tableRef) *Statement {
	t := p.resolve(s.Relation)
	if t == nil {
		return nil
	}
	if err := otherDist(dist, s.Relation); err != nil {
		return p.errorf(err)
	}
	if s.Isconstraint {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "CREATE CONSTRAINT TRIGGER on distributed table %s is not supported", QuoteIdent(t.Name)))
	}
	if pgshardTrigger(s.Trigname) {
		return p.errorf(reservedTrigger(s.Trigname, t))
	}
	return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "CREATE TRIGGER", Tables: []uint32{t.OID}}
}

// policyStmt plans CREATE POLICY and ALTER POLICY on a distributed table; nil for any
// other statement. (It comes before coordinatorCode, which refuses policies over
// distributed tables other than their own table.)
func (p ddlPlanner) policyStmt(root protoreflect.Message, dist []tableRef) *Statement {
	var rv *pg_query.RangeVar
	tag := "CREATE POLICY"
	switch s := root.Interface().(type) {
	case *pg_query.CreatePolicyStmt:
		rv = s.Table
	case *pg_query.AlterPolicyStmt:
		rv, tag = s.Table, "ALTER POLICY"
	default:
		return nil
	}
	if rv == nil {
		return nil
	}
	t := p.resolve(rv)
	if t == nil {
		return nil
	}
	if err := otherDist(dist, rv); err != nil {
		return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "a policy of distributed table %s that reads another distributed table is not supported", QuoteIdent(t.Name)).
			WithDetail("Each shard evaluates the policy on its worker, where the other table's rows are not."))
	}
	return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: tag, Tables: []uint32{t.OID}}
}

// dropObjectStmt plans DROP SCHEMA ... CASCADE (ddlschema.go), DROP TRIGGER and DROP
// POLICY of distributed tables; nil for any other statement.
func (p ddlPlanner) dropObjectStmt(s *pg_query.DropStmt) *Statement {
	if st := p.dropSchema(s); st != nil {
		return st
	}
	var tag string
	switch s.RemoveType {
	case pg_query.ObjectType_OBJECT_TRIGGER:
		tag = "DROP TRIGGER"
	case pg_query.ObjectType_OBJECT_POLICY:
		tag = "DROP POLICY"
	default:
		return nil
	}
	if !p.snap.HasTables() || len(s.Objects) != 1 {
		return nil
	}
	names := stringList(s.Objects[0])
	if len(names) < 2 {
		return nil
	}
	t := p.resolve(rangeVarOf(names[:len(names)-1]))
	if t == nil {
		return nil
	}
	if s.RemoveType == pg_query.ObjectType_OBJECT_TRIGGER && pgshardTrigger(names[len(names)-1]) {
		return p.errorf(reservedTrigger(names[len(names)-1], t))
	}
	return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: tag, Tables: []uint32{t.OID}}
}

// renameObjectStmt plans ALTER SCHEMA ... RENAME (ddlschema.go), ALTER TRIGGER ... RENAME
// and ALTER POLICY ... RENAME of distributed tables; nil for any other statement.
func (p ddlPlanner) renameObjectStmt(s *pg_query.RenameStmt) *Statement {
	if st := p.schemaRename(s); st != nil {
		return st
	}
	tag := "ALTER TRIGGER"
	switch s.RenameType {
	case pg_query.ObjectType_OBJECT_TRIGGER:
	case pg_query.ObjectType_OBJECT_POLICY:
		tag = "ALTER POLICY"
	default:
		return nil
	}
	if s.Relation == nil {
		return nil
	}
	t := p.resolve(s.Relation)
	if t == nil {
		return nil
	}
	if s.RenameType == pg_query.ObjectType_OBJECT_TRIGGER && (pgshardTrigger(s.Subname) || pgshardTrigger(s.Newname)) {
		return p.errorf(reservedTrigger(s.Subname, t))
	}
	return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: tag, Tables: []uint32{t.OID}}
}

// triggerCmdAllowed refuses the ALTER TABLE ... ENABLE/DISABLE TRIGGER forms that would
// reach pgshard's own triggers (ALL, USER, or one named pgshard_...); ok reports that
// cmd is one of the trigger or row-level security subcommands this file propagates.
func triggerCmdAllowed(t *metadata.Table, cmd *pg_query.AlterTableCmd) (ok bool, err *pgerr.Error) {
	switch cmd.Subtype {
	case pg_query.AlterTableType_AT_EnableRowSecurity, pg_query.AlterTableType_AT_DisableRowSecurity,
		pg_query.AlterTableType_AT_ForceRowSecurity, pg_query.AlterTableType_AT_NoForceRowSecurity:
		return true, nil
	case pg_query.AlterTableType_AT_EnableTrig, pg_query.AlterTableType_AT_DisableTrig,
		pg_query.AlterTableType_AT_EnableAlwaysTrig, pg_query.AlterTableType_AT_EnableReplicaTrig:
		if pgshardTrigger(cmd.Name) {
			return true, reservedTrigger(cmd.Name, t)
		}
		return true, nil
	case pg_query.AlterTableType_AT_EnableTrigAll, pg_query.AlterTableType_AT_DisableTrigAll,
		pg_query.AlterTableType_AT_EnableTrigUser, pg_query.AlterTableType_AT_DisableTrigUser:
		return true, pgerr.New(pgerr.FeatureNotSupported, "ALTER TABLE ... ENABLE/DISABLE TRIGGER ALL or USER on distributed table %s is not supported", QuoteIdent(t.Name)).
			WithDetail("It would reach pgshard's own triggers, which guard the coordinator's prototype of the table.").
			WithHint("Name the triggers one by one.")
	}
	return false, nil
}

// UnsafeTrigger reports a CREATE TRIGGER that is not BEFORE ... FOR EACH ROW.
func UnsafeTrigger(sql string) bool {
	root, _, err := parseOne(sql)
	if err != nil {
		return true
	}
	s, ok := root.Interface().(*pg_query.CreateTrigStmt)
	if !ok {
		return false
	}
	const before = 1 << 1 // TRIGGER_TYPE_BEFORE
	return !s.Row || s.Timing != before
}

// TriggerName returns the name a CREATE TRIGGER creates, "" for any other statement.
func TriggerName(sql string) string {
	root, _, err := parseOne(sql)
	if err != nil {
		return ""
	}
	if s, ok := root.Interface().(*pg_query.CreateTrigStmt); ok {
		return s.Trigname
	}
	return ""
}

// shardObjectDDL rewrites the statements of this file and of ddlschema.go for shard
// shardID of t; handled is false for any other statement.
func shardObjectDDL(root protoreflect.Message, tree *pg_query.ParseResult, t *metadata.Table, shardID int64) (sql string, handled bool, err error) {
	stmt := proto.Clone(tree.Stmts[0].Stmt).(*pg_query.Node)
	switch s := nodeMessage(stmt).Interface().(type) {
	case *pg_query.RenameStmt:
		switch s.RenameType {
		case pg_query.ObjectType_OBJECT_SCHEMA:
			sql, err = shardSchemaRename(s, t, shardID)
			return sql, true, err
		case pg_query.ObjectType_OBJECT_TRIGGER, pg_query.ObjectType_OBJECT_POLICY:
			if s.Relation, err = shardRangeVar(t, shardID, s.Relation.Inh); err != nil {
				return "", true, err
			}
		default:
			return "", false, nil
		}
	case *pg_query.CreateTrigStmt:
		if s.Relation, err = shardRangeVar(t, shardID, s.Relation.Inh); err != nil {
			return "", true, err
		}
	case *pg_query.CreatePolicyStmt:
		if s.Table, err = shardRangeVar(t, shardID, s.Table.Inh); err != nil {
			return "", true, err
		}
	case *pg_query.AlterPolicyStmt:
		if s.Table, err = shardRangeVar(t, shardID, s.Table.Inh); err != nil {
			return "", true, err
		}
	case *pg_query.DropStmt:
		if s.RemoveType != pg_query.ObjectType_OBJECT_TRIGGER && s.RemoveType != pg_query.ObjectType_OBJECT_POLICY {
			return "", false, nil
		}
		names := stringList(s.Objects[0])
		name, err := shardSuffix(t.Name, shardID)
		if err != nil {
			return "", true, err
		}
		s.Objects = []*pg_query.Node{stringNodes(t.Schema, name, names[len(names)-1])}
	default:
		return "", false, nil
	}
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: tree.Version, Stmts: []*pg_query.RawStmt{{Stmt: stmt}}})
	if err != nil {
		return "", true, pgerr.New(pgerr.InternalError, "could not write the schema change for the shards: %v", err)
	}
	return sqllex.PortableText(out), true, nil
}
