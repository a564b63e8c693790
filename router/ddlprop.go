package router

import (
	"fmt"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/sqllex"
)

// Schema changes of distributed tables (kind DDL). The coordinator runs the client's
// statement on its table; every placement of every shard runs the same statement
// rewritten for its shard table, from the parse tree: the table's name replaced by the
// shard's (name_<shard id>, in the table's schema), and the names of indexes and of the
// constraints an index backs (PRIMARY KEY, UNIQUE, EXCLUDE) suffixed with _<shard id>,
// as metadata/ddl names them when it creates a shard. CHECK constraints keep their
// names. What a shard does not carry (foreign keys, defaults that are not constants:
// the proxy evaluates those on the coordinator) is left out of its statement.
//
// Planning (ddlStmt) decides whether a statement is such a change and refuses, with
// 0A000, the forms that cannot be applied to the shards; executing it (the proxy)
// rewrites the statement once per shard with ShardDDL, after the coordinator ran it,
// from what the coordinator's catalog says (DDLCatalog): the kinds of the constraints
// the statement names and the names PostgreSQL chose for the unnamed ones it created.

// Statement-level facts of a DDL plan, in Statement:
//   - Tables: the distributed tables whose shards the statement changes;
//   - DDLCatalog: the proxy reads the tables' constraints and indexes before and after
//     the coordinator's statement (DDLCatalog);
//   - IndexLookup: the statement names indexes (DROP INDEX, ALTER INDEX ... RENAME):
//     the proxy finds their tables on the coordinator (DDLIndexNames); a statement none
//     of whose indexes belongs to a distributed table runs on the coordinator as it is.

// DDLCatalog is what the coordinator's catalog says about a table around a DDL
// statement, for rewriting it for the shards.
type DDLCatalog struct {
	// Kinds are the contype of the table's constraints before the statement, by name.
	Kinds map[string]byte
	// Added are the constraints and indexes the statement created on the coordinator's
	// table, in creation order (their OIDs).
	Added []DDLObject
	// Objects are the positions, in a DROP INDEX's list, of the indexes of this table.
	Objects []int
	// Refs are the tables the statement's foreign keys refer to, in the statement's
	// order (Statement.References): shard i's constraint refers to shard i of its table.
	Refs []*metadata.Table
	// ShardFKs are the table's foreign keys (of Kinds) that refer to distributed tables:
	// the shards carry them, under the same names.
	ShardFKs map[string]bool
	// Defaults are the values the coordinator computed for the statement's ADD COLUMN
	// defaults that are not constants (DDLColumnDefaults), as SQL constants by column:
	// each shard fills its existing rows with them, then drops the default.
	Defaults map[string]string
}

// DDLObject is a constraint or index a statement created: Kind is the constraint's
// contype ('c', 'p', 'u', 'x', 'f', ...) or 'i' for an index that backs no constraint.
type DDLObject struct {
	Name string
	Kind byte
}

// shardSuffix is name_<shardID>, refused when longer than PostgreSQL keeps (it would be
// truncated into another shard's name).
func shardSuffix(name string, shardID int64) (string, error) {
	s := name + "_" + strconv.FormatInt(shardID, 10)
	if len(s) > 63 {
		return "", pgerr.New(pgerr.NameTooLong, "the shard name of %q would be longer than 63 bytes", name).
			WithDetail("Shards name their tables, indexes and index-backed constraints <name>_<shard id>; PostgreSQL would truncate longer names.").
			WithHint("Choose a shorter name.")
	}
	return s, nil
}

func shardRangeVar(t *metadata.Table, shardID int64, inh bool) (*pg_query.RangeVar, error) {
	name, err := shardSuffix(t.Name, shardID)
	if err != nil {
		return nil, err
	}
	return &pg_query.RangeVar{Schemaname: t.Schema, Relname: name, Inh: inh, Relpersistence: "p", Location: -1}, nil
}

// indexBacked reports a constraint kind whose shard copy is named with the shard suffix.
func indexBacked(kind byte) bool { return kind == 'p' || kind == 'u' || kind == 'x' }

// ddlStmt plans a schema change that names a distributed table: nil when the statement is
// not one (the caller plans it as before).
func (p ddlPlanner) ddlStmt(root protoreflect.Message, dist []tableRef) *Statement {
	if st := p.maintStmt(root, dist); st != nil {
		return st // CONCURRENTLY, REINDEX, CLUSTER, VACUUM, ANALYZE (ddlmaint.go)
	}
	switch s := root.Interface().(type) {
	case *pg_query.AlterTableStmt:
		switch s.Objtype {
		case pg_query.ObjectType_OBJECT_TABLE:
		case pg_query.ObjectType_OBJECT_INDEX:
			if !p.snap.HasTables() {
				return nil
			}
			// ALTER INDEX ... SET/RESET (...): the proxy finds the index's table.
			return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "ALTER INDEX", IndexLookup: true}
		default:
			return nil
		}
		t := p.resolve(s.Relation)
		if t == nil {
			if err := p.foreignKeyToDist(s.Relation, s.Cmds); err != nil {
				return p.errorf(err)
			}
			return nil
		}
		st := &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "ALTER TABLE", Tables: []uint32{t.OID}}
		targets := []*pg_query.RangeVar{s.Relation}
		for _, c := range s.Cmds {
			cmd, ok := unwrap(c).(*pg_query.AlterTableCmd)
			if !ok {
				return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "ALTER TABLE on distributed table %s is not supported", QuoteIdent(t.Name)))
			}
			if err := alterCmdAllowed(t, cmd); err != nil {
				return p.errorf(err)
			}
			for _, fk := range foreignKeys(cmd) {
				ref, err := p.foreignKey(t, fk)
				if err != nil {
					return p.errorf(err)
				}
				st.References = append(st.References, ref.OID)
				targets = append(targets, fk.con.Pktable)
			}
			st.DDLCatalog = st.DDLCatalog || cmd.Subtype == pg_query.AlterTableType_AT_AddConstraint || cmd.Subtype == pg_query.AlterTableType_AT_AddColumn ||
				cmd.Subtype == pg_query.AlterTableType_AT_DropConstraint || cmd.Subtype == pg_query.AlterTableType_AT_ValidateConstraint
		}
		if err := otherDist(dist, targets...); err != nil {
			return p.errorf(err)
		}
		return st
	case *pg_query.CreateStmt:
		// A new table's foreign key to a distributed table: the new table is not
		// distributed (nor co-located) yet.
		for _, e := range s.TableElts {
			var cons []*pg_query.Node
			switch d := unwrap(e).(type) {
			case *pg_query.Constraint:
				cons = []*pg_query.Node{e}
			case *pg_query.ColumnDef:
				cons = d.Constraints
			}
			for _, n := range cons {
				c, ok := unwrap(n).(*pg_query.Constraint)
				if !ok || c.Contype != pg_query.ConstrType_CONSTR_FOREIGN {
					continue
				}
				if ref := p.resolve(c.Pktable); ref != nil {
					return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "CREATE TABLE with a foreign key to distributed table %s is not supported", QuoteIdent(ref.Name)).
						WithDetail("Only a distributed table co-located with %s can refer to it, and the new table is not distributed yet.", QuoteIdent(ref.Name)).
						WithHint("Create the table without the foreign key, distribute it on the referencing column with the same shard count and replication factor (master_create_distributed_table, master_create_worker_shards), then add the constraint with ALTER TABLE ... ADD FOREIGN KEY."))
				}
			}
		}
		return nil
	case *pg_query.AlterObjectSchemaStmt:
		if s.ObjectType != pg_query.ObjectType_OBJECT_TABLE || s.Relation == nil {
			return nil
		}
		t := p.resolve(s.Relation)
		if t == nil {
			return nil
		}
		// The table's name changes as with RENAME TO: refused inside a block (the proxy).
		return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "ALTER TABLE", Tables: []uint32{t.OID}, RenamesTable: true}
	case *pg_query.IndexStmt:
		t := p.resolve(s.Relation)
		if t == nil {
			return nil
		}
		if s.Unique && !indexHasKey(t, s.IndexParams) {
			return p.errorf(uniqueWithoutKey(t, "unique index"))
		}
		if err := otherDist(dist, s.Relation); err != nil {
			return p.errorf(err)
		}
		return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "CREATE INDEX", Tables: []uint32{t.OID}, DDLCatalog: s.Idxname == ""}
	case *pg_query.RenameStmt:
		if st := p.renameObjectStmt(s); st != nil { // ddltrigger.go
			return st
		}
		return p.renameStmt(s, dist)
	case *pg_query.CreateTrigStmt:
		return p.triggerStmt(s, dist) // ddltrigger.go
	case *pg_query.DropStmt:
		if st := p.dropObjectStmt(s); st != nil { // ddltrigger.go
			return st
		}
		if s.RemoveType != pg_query.ObjectType_OBJECT_INDEX || !p.snap.HasTables() {
			return nil
		}
		return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "DROP INDEX", IndexLookup: true}
	case *pg_query.GrantStmt:
		return p.grantStmt(s)
	case *pg_query.AlterEnumStmt:
		return p.alterEnumStmt()
	case *pg_query.CreateFunctionStmt:
		return p.createFunctionStmt(s)
	case *pg_query.CommentStmt:
		switch s.Objtype {
		case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_COLUMN, pg_query.ObjectType_OBJECT_TABCONSTRAINT:
		case pg_query.ObjectType_OBJECT_INDEX:
			// The proxy finds the index's table (DDLIndexNames).
			if !p.snap.HasTables() {
				return nil
			}
			return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "COMMENT", IndexLookup: true}
		default:
			return nil
		}
		names := stringList(s.Object)
		if s.Objtype != pg_query.ObjectType_OBJECT_TABLE && len(names) > 1 {
			names = names[:len(names)-1]
		}
		rv := rangeVarOf(names)
		if rv == nil {
			return nil
		}
		t := p.resolve(rv)
		if t == nil {
			return nil
		}
		// A constraint's kind decides its name on the shards (DDLCatalog.Kinds).
		return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "COMMENT", Tables: []uint32{t.OID},
			DDLCatalog: s.Objtype == pg_query.ObjectType_OBJECT_TABCONSTRAINT}
	}
	return nil
}

// otherDist refuses a statement that names a distributed table other than its targets
// (the altered table and the tables its co-located foreign keys refer to).
func otherDist(dist []tableRef, targets ...*pg_query.RangeVar) *pgerr.Error {
next:
	for _, r := range dist {
		for _, t := range targets {
			if r.rv == t {
				continue next
			}
		}
		return pgerr.New(pgerr.FeatureNotSupported, "a schema change referring to distributed table %s is not supported", QuoteIdent(r.table.Name)).
			WithDetail("Only foreign keys between co-located distributed tables can refer to another distributed table.")
	}
	return nil
}

// fkSpec is a foreign key an ALTER TABLE subcommand adds: its constraint and its
// referencing columns.
type fkSpec struct {
	con  *pg_query.Constraint
	cols []string
}

// foreignKeys returns the foreign keys a subcommand adds, in the statement's order (the
// order the rewriter meets them in).
func foreignKeys(cmd *pg_query.AlterTableCmd) []fkSpec {
	var out []fkSpec
	switch cmd.Subtype {
	case pg_query.AlterTableType_AT_AddConstraint:
		if c, ok := unwrap(cmd.Def).(*pg_query.Constraint); ok && c.Contype == pg_query.ConstrType_CONSTR_FOREIGN {
			out = append(out, fkSpec{con: c, cols: stringsOf(c.FkAttrs)})
		}
	case pg_query.AlterTableType_AT_AddColumn:
		if cd, ok := unwrap(cmd.Def).(*pg_query.ColumnDef); ok {
			for _, n := range cd.Constraints {
				if c, ok := unwrap(n).(*pg_query.Constraint); ok && c.Contype == pg_query.ConstrType_CONSTR_FOREIGN {
					out = append(out, fkSpec{con: c, cols: []string{cd.Colname}})
				}
			}
		}
	}
	return out
}

// foreignKey checks that a foreign key of distributed table t can be enforced by each
// shard alone: it refers to a distributed table co-located with t (the same shard
// count and hash ranges, partition columns of the same type, the shards of the same
// index placed on the same workers) and pairs t's partition column with the referenced
// table's. Shard i's constraint then refers to shard i of the referenced table, on the
// same worker, which holds every row the shard's rows can refer to.
func (p ddlPlanner) foreignKey(t *metadata.Table, fk fkSpec) (*metadata.Table, *pgerr.Error) {
	name := QuoteIdent(t.Name)
	ref := p.resolve(fk.con.Pktable)
	if ref == nil {
		return nil, pgerr.New(pgerr.FeatureNotSupported, "a foreign key from distributed table %s to table %s, which is not distributed, is not supported", name, QuoteIdent(fk.con.Pktable.Relname)).
			WithDetail("The distributed table's rows live on the workers, where the referenced table is not: no server could check them.").
			WithHint("Distribute the referenced table co-located with %s (hash-distributed on the referenced column, with the same shard count), or check the reference in the application.", name)
	}
	refName := QuoteIdent(ref.Name)
	if !sameShards(t, ref) {
		return nil, pgerr.New(pgerr.FeatureNotSupported, "a foreign key from distributed table %s to distributed table %s, which is not co-located with it, is not supported", name, refName).
			WithDetail("Each shard checks its rows against the matching shard of the referenced table only, so both tables need the same shard count and hash ranges and partition columns of the same type.").
			WithHint("Create both tables' shards with the same shard count (master_create_worker_shards).")
	}
	pk := stringsOf(fk.con.PkAttrs)
	if len(pk) == 0 {
		for _, i := range ref.PrimaryKey {
			pk = append(pk, ref.Columns[i].Name)
		}
	}
	paired := len(pk) == 0 // no primary key: the coordinator refuses the statement
	for i, c := range fk.cols {
		paired = paired || (c == t.Key && i < len(pk) && pk[i] == ref.Key)
	}
	if !paired {
		return nil, pgerr.New(pgerr.FeatureNotSupported, "a foreign key of distributed table %s must pair its partition column %q with the partition column %q of %s", name, t.Key, ref.Key, refName).
			WithDetail("Each shard checks its rows against the matching shard of the referenced table only, which holds the referenced rows only when the partition columns are equal.").
			WithHint("Include the partition columns at the same position: FOREIGN KEY (%s, ...) REFERENCES %s (%s, ...); a column added with REFERENCES cannot do that: add the column, then the constraint.", QuoteIdent(t.Key), refName, QuoteIdent(ref.Key))
	}
	if err := fkActionAllowed(t, fk); err != nil {
		return nil, err
	}
	for i := range t.Shards {
		if !sameNodes(t.Shards[i], ref.Shards[i]) {
			return nil, pgerr.New(pgerr.FeatureNotSupported, "a foreign key from distributed table %s to %s is not supported: shard %d and shard %d are placed on different workers", name, refName, t.Shards[i].ID, ref.Shards[i].ID).
				WithDetail("A shard's constraint refers to the matching shard of the referenced table, which must be on each worker that holds the shard.").
				WithHint("Create both tables' shards with the same shard count and replication factor on the same workers.")
		}
	}
	return ref, nil
}

// fkActionAllowed refuses ON DELETE/UPDATE SET NULL and SET DEFAULT actions that the
// shards cannot run as the coordinator's table would: those that set the partition
// column (the row would stay in a shard its new key does not hash to; ON UPDATE's set
// every column of the key), and SET DEFAULT of a column whose default is not a constant
// (the shards carry constant defaults only; pgshard evaluates the others).
func fkActionAllowed(t *metadata.Table, fk fkSpec) *pgerr.Error {
	check := func(action, when string, cols []string) *pgerr.Error {
		if action != "n" && action != "d" {
			return nil
		}
		form := map[string]string{"n": "SET NULL", "d": "SET DEFAULT"}[action]
		for _, c := range cols {
			if c == t.Key {
				return pgerr.New(pgerr.FeatureNotSupported, "ON %s %s of the partition column %q of distributed table %s is not supported", when, form, c, QuoteIdent(t.Name)).
					WithDetail("The row would stay in the shard its old partition key hashes to.").
					WithHint("Use CASCADE, RESTRICT or NO ACTION, or name the other columns: ON DELETE %s (column, ...).", form)
			}
			if i := t.ColumnIndex(c); action == "d" && i >= 0 && (t.Columns[i].Default != "" || t.Columns[i].Identity != 0) && !t.Columns[i].DefaultOnShard {
				return pgerr.New(pgerr.FeatureNotSupported, "ON %s SET DEFAULT of column %q of distributed table %s, whose default is not a constant, is not supported", when, c, QuoteIdent(t.Name)).
					WithDetail("The shards run the foreign key's action, and carry only constant defaults (pgshard evaluates the others on the coordinator).")
			}
		}
		return nil
	}
	delCols := stringsOf(fk.con.FkDelSetCols)
	if len(delCols) == 0 {
		delCols = fk.cols
	}
	if err := check(fk.con.FkDelAction, "DELETE", delCols); err != nil {
		return err
	}
	return check(fk.con.FkUpdAction, "UPDATE", fk.cols)
}

// sameNodes reports whether two shards have placements on the same workers.
func sameNodes(a, b *metadata.Shard) bool {
	nodes := func(s *metadata.Shard) map[metadata.Node]int {
		m := map[metadata.Node]int{}
		for _, p := range s.Placements {
			m[p.Node]++
		}
		return m
	}
	na, nb := nodes(a), nodes(b)
	if len(na) != len(nb) {
		return false
	}
	for n, c := range na {
		if nb[n] != c {
			return false
		}
	}
	return true
}

// foreignKeyToDist refuses an ALTER TABLE of a table that is not distributed that adds a
// foreign key to a distributed table (whose coordinator table is always empty).
func (p ddlPlanner) foreignKeyToDist(rel *pg_query.RangeVar, cmds []*pg_query.Node) *pgerr.Error {
	for _, c := range cmds {
		cmd, ok := unwrap(c).(*pg_query.AlterTableCmd)
		if !ok {
			continue
		}
		for _, fk := range foreignKeys(cmd) {
			if ref := p.resolve(fk.con.Pktable); ref != nil {
				return pgerr.New(pgerr.FeatureNotSupported, "a foreign key from table %s, which is not distributed, to distributed table %s is not supported", QuoteIdent(rel.Relname), QuoteIdent(ref.Name)).
					WithDetail("The distributed table's rows live on the workers; its table on the coordinator is empty.").
					WithHint("Distribute %s co-located with %s first, then add the foreign key.", QuoteIdent(rel.Relname), QuoteIdent(ref.Name))
			}
		}
	}
	return nil
}

func (p ddlPlanner) renameStmt(s *pg_query.RenameStmt, dist []tableRef) *Statement {
	switch s.RenameType {
	case pg_query.ObjectType_OBJECT_INDEX:
		if !p.snap.HasTables() {
			return nil
		}
		return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "ALTER INDEX", IndexLookup: true}
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_COLUMN, pg_query.ObjectType_OBJECT_TABCONSTRAINT:
	default:
		return nil
	}
	if s.Relation == nil || (s.RenameType == pg_query.ObjectType_OBJECT_COLUMN && s.RelationType != pg_query.ObjectType_OBJECT_TABLE) {
		return nil
	}
	t := p.resolve(s.Relation)
	if t == nil {
		return nil
	}
	if err := otherDist(dist, s.Relation); err != nil {
		return p.errorf(err)
	}
	st := &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "ALTER TABLE", Tables: []uint32{t.OID}}
	switch s.RenameType {
	case pg_query.ObjectType_OBJECT_TABLE:
		for _, sh := range t.Shards {
			if _, err := shardSuffix(s.Newname, sh.ID); err != nil {
				return p.errorf(pgerr.New(pgerr.NameTooLong, "the shard names of distributed table %s would be longer than 63 bytes", QuoteIdent(t.Name)).
					WithDetail("Shard tables are named <table>_<shard id>; PostgreSQL would truncate longer names, which could then name other tables."))
			}
		}
		st.RenamesTable = true
	case pg_query.ObjectType_OBJECT_COLUMN:
		if s.Subname == t.Key {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "renaming the partition column of distributed table %s is not supported", QuoteIdent(t.Name)))
		}
	case pg_query.ObjectType_OBJECT_TABCONSTRAINT:
		st.DDLCatalog = true
	}
	return st
}

func (p ddlPlanner) grantStmt(s *pg_query.GrantStmt) *Statement {
	if s.Objtype == pg_query.ObjectType_OBJECT_SCHEMA {
		return p.schemaGrantStmt(s)
	}
	if s.Objtype != pg_query.ObjectType_OBJECT_TABLE {
		return nil
	}
	var oids []uint32
	seen := map[uint32]bool{}
	add := func(t *metadata.Table) {
		if t != nil && !seen[t.OID] {
			seen[t.OID] = true
			oids = append(oids, t.OID)
		}
	}
	switch s.Targtype {
	case pg_query.GrantTargetType_ACL_TARGET_OBJECT:
		for _, o := range s.Objects {
			if rv, ok := unwrap(o).(*pg_query.RangeVar); ok {
				add(p.resolve(rv))
			}
		}
	case pg_query.GrantTargetType_ACL_TARGET_ALL_IN_SCHEMA:
		for _, o := range s.Objects {
			if sch, ok := unwrap(o).(*pg_query.String); ok {
				for _, t := range p.snap.Tables() {
					if t.Schema == sch.Sval {
						add(t)
					}
				}
			}
		}
	}
	if len(oids) == 0 {
		return nil
	}
	tag := "GRANT"
	if !s.IsGrant {
		tag = "REVOKE"
	}
	return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: tag, Tables: oids}
}

// alterCmdAllowed refuses the ALTER TABLE subcommands that cannot be applied to the
// shards.
func alterCmdAllowed(t *metadata.Table, cmd *pg_query.AlterTableCmd) *pgerr.Error {
	name := QuoteIdent(t.Name)
	refuse := func(form string) *pgerr.Error {
		return pgerr.New(pgerr.FeatureNotSupported, "ALTER TABLE ... %s on distributed table %s is not supported", form, name)
	}
	if ok, err := triggerCmdAllowed(t, cmd); ok { // ddltrigger.go
		return err
	}
	switch cmd.Subtype {
	case pg_query.AlterTableType_AT_AddColumn:
		cd, ok := unwrap(cmd.Def).(*pg_query.ColumnDef)
		if !ok {
			return refuse("ADD COLUMN")
		}
		return addColumnAllowed(t, cd)
	case pg_query.AlterTableType_AT_DropColumn:
		if cmd.Name == t.Key {
			return pgerr.New(pgerr.FeatureNotSupported, "cannot drop the partition column %q of distributed table %s", cmd.Name, name)
		}
	case pg_query.AlterTableType_AT_AlterColumnType:
		if cmd.Name == t.Key {
			return pgerr.New(pgerr.FeatureNotSupported, "cannot change the type of the partition column %q of distributed table %s", cmd.Name, name).
				WithDetail("The type decides the hash of every row, and so the shard that holds it.")
		}
	case pg_query.AlterTableType_AT_ColumnDefault, pg_query.AlterTableType_AT_DropNotNull, pg_query.AlterTableType_AT_SetNotNull,
		pg_query.AlterTableType_AT_SetStatistics, pg_query.AlterTableType_AT_SetStorage, pg_query.AlterTableType_AT_SetCompression,
		pg_query.AlterTableType_AT_DropConstraint, pg_query.AlterTableType_AT_ValidateConstraint,
		pg_query.AlterTableType_AT_ChangeOwner, pg_query.AlterTableType_AT_SetRelOptions, pg_query.AlterTableType_AT_ResetRelOptions,
		pg_query.AlterTableType_AT_ReplicaIdentity, pg_query.AlterTableType_AT_SetLogged, pg_query.AlterTableType_AT_SetUnLogged,
		pg_query.AlterTableType_AT_ClusterOn, pg_query.AlterTableType_AT_DropCluster:
	case pg_query.AlterTableType_AT_AddConstraint:
		c, ok := unwrap(cmd.Def).(*pg_query.Constraint)
		if !ok {
			return refuse("ADD CONSTRAINT")
		}
		switch c.Contype {
		case pg_query.ConstrType_CONSTR_CHECK:
		case pg_query.ConstrType_CONSTR_PRIMARY, pg_query.ConstrType_CONSTR_UNIQUE:
			// USING INDEX names a unique index of the table, which has the partition
			// column (CREATE UNIQUE INDEX and master_create_distributed_table see to it).
			if c.Indexname == "" && !keysHaveKey(t, c.Keys) {
				return uniqueWithoutKey(t, "constraint")
			}
		case pg_query.ConstrType_CONSTR_FOREIGN:
			// ddlStmt checks co-location (foreignKey).
		case pg_query.ConstrType_CONSTR_EXCLUSION:
			if !exclusionHasKey(t, c.Exclusions) {
				return uniqueWithoutKey(t, "EXCLUDE constraint")
			}
		default:
			return refuse("ADD CONSTRAINT")
		}
	default:
		form := strings.TrimPrefix(cmd.Subtype.String(), "AT_")
		if f, ok := alterForms[cmd.Subtype]; ok {
			form = f
		}
		return refuse(form)
	}
	return nil
}

var alterForms = map[pg_query.AlterTableType]string{
	pg_query.AlterTableType_AT_ChangeOwner:               "OWNER TO",
	pg_query.AlterTableType_AT_SetTableSpace:             "SET TABLESPACE",
	pg_query.AlterTableType_AT_SetRelOptions:             "SET (...)",
	pg_query.AlterTableType_AT_ResetRelOptions:           "RESET (...)",
	pg_query.AlterTableType_AT_EnableRowSecurity:         "ENABLE ROW LEVEL SECURITY",
	pg_query.AlterTableType_AT_ForceRowSecurity:          "FORCE ROW LEVEL SECURITY",
	pg_query.AlterTableType_AT_DisableRowSecurity:        "DISABLE ROW LEVEL SECURITY",
	pg_query.AlterTableType_AT_NoForceRowSecurity:        "NO FORCE ROW LEVEL SECURITY",
	pg_query.AlterTableType_AT_ReplicaIdentity:           "REPLICA IDENTITY",
	pg_query.AlterTableType_AT_ClusterOn:                 "CLUSTER ON",
	pg_query.AlterTableType_AT_SetLogged:                 "SET LOGGED",
	pg_query.AlterTableType_AT_SetUnLogged:               "SET UNLOGGED",
	pg_query.AlterTableType_AT_AddIdentity:               "ADD GENERATED ... AS IDENTITY",
	pg_query.AlterTableType_AT_DropExpression:            "DROP EXPRESSION",
	pg_query.AlterTableType_AT_EnableTrig:                "ENABLE TRIGGER",
	pg_query.AlterTableType_AT_DisableTrig:               "DISABLE TRIGGER",
	pg_query.AlterTableType_AT_AddInherit:                "INHERIT",
	pg_query.AlterTableType_AT_AttachPartition:           "ATTACH PARTITION",
	pg_query.AlterTableType_AT_SetOptions:                "ALTER COLUMN ... SET (...)",
	pg_query.AlterTableType_AT_ResetOptions:              "ALTER COLUMN ... RESET (...)",
	pg_query.AlterTableType_AT_AlterConstraint:           "ALTER CONSTRAINT",
	pg_query.AlterTableType_AT_SetAccessMethod:           "SET ACCESS METHOD",
	pg_query.AlterTableType_AT_DisableTrigAll:            "DISABLE TRIGGER ALL",
	pg_query.AlterTableType_AT_EnableTrigAll:             "ENABLE TRIGGER ALL",
	pg_query.AlterTableType_AT_SetIdentity:               "ALTER COLUMN ... SET (identity option)",
	pg_query.AlterTableType_AT_DropIdentity:              "ALTER COLUMN ... DROP IDENTITY",
	pg_query.AlterTableType_AT_EnableAlwaysTrig:          "ENABLE ALWAYS TRIGGER",
	pg_query.AlterTableType_AT_EnableReplicaTrig:         "ENABLE REPLICA TRIGGER",
	pg_query.AlterTableType_AT_AlterColumnGenericOptions: "ALTER COLUMN ... OPTIONS",
}

// addColumnAllowed refuses what ADD COLUMN cannot give the shards' existing rows the way
// PostgreSQL gives the coordinator's: a default that is not a constant (each placement
// would compute its own values, and sequences and functions live on the coordinator),
// identity and serial columns, foreign keys, and unique columns (a new column is not the
// partition column).
func addColumnAllowed(t *metadata.Table, cd *pg_query.ColumnDef) *pgerr.Error {
	name := QuoteIdent(t.Name)
	if cd.TypeName != nil && len(cd.TypeName.Names) > 0 {
		if s, ok := unwrap(cd.TypeName.Names[len(cd.TypeName.Names)-1]).(*pg_query.String); ok {
			switch strings.ToLower(s.Sval) {
			case "serial", "bigserial", "smallserial", "serial2", "serial4", "serial8":
				return pgerr.New(pgerr.FeatureNotSupported, "ADD COLUMN of type %s on distributed table %s is not supported", s.Sval, name).
					WithHint("Add the column with its integer type, then give it a DEFAULT nextval(...) with ALTER COLUMN ... SET DEFAULT (the coordinator evaluates it for new rows).")
			}
		}
	}
	for _, n := range cd.Constraints {
		c, ok := unwrap(n).(*pg_query.Constraint)
		if !ok {
			continue
		}
		switch c.Contype {
		case pg_query.ConstrType_CONSTR_DEFAULT:
			// One that is not a constant is evaluated once on the coordinator, and the
			// shards fill their rows with the value (ddldefault.go); a volatile one is
			// refused there.
		case pg_query.ConstrType_CONSTR_IDENTITY:
			return pgerr.New(pgerr.FeatureNotSupported, "ADD COLUMN ... GENERATED AS IDENTITY on distributed table %s is not supported", name)
		case pg_query.ConstrType_CONSTR_FOREIGN:
			// ddlStmt checks co-location (foreignKey), which a new column cannot have.
		case pg_query.ConstrType_CONSTR_PRIMARY, pg_query.ConstrType_CONSTR_UNIQUE:
			return uniqueWithoutKey(t, "constraint")
		case pg_query.ConstrType_CONSTR_EXCLUSION:
			return pgerr.New(pgerr.FeatureNotSupported, "ALTER TABLE ... ADD EXCLUDE on distributed table %s is not supported", name)
		}
	}
	return nil
}

// constExpr reports a default expression that PostgreSQL stores as a constant (the
// only defaults shard tables carry): a literal, possibly cast, possibly negated.
func constExpr(n *pg_query.Node) bool {
	switch e := unwrap(n).(type) {
	case *pg_query.A_Const:
		return true
	case *pg_query.TypeCast:
		return constExpr(e.Arg)
	}
	return false
}

func uniqueWithoutKey(t *metadata.Table, what string) *pgerr.Error {
	return pgerr.New(pgerr.FeatureNotSupported, "cannot create a %s on distributed table %s without the partition column %q", what, QuoteIdent(t.Name), t.Key).
		WithDetail("Each shard enforces uniqueness only among its own rows, so a PRIMARY KEY, UNIQUE or EXCLUDE constraint must include the partition column (compared with = in an EXCLUDE).")
}

func keysHaveKey(t *metadata.Table, keys []*pg_query.Node) bool {
	for _, k := range keys {
		if s, ok := unwrap(k).(*pg_query.String); ok && s.Sval == t.Key {
			return true
		}
	}
	return false
}

// exclusionHasKey reports an EXCLUDE constraint that compares the partition column with =
// (so that conflicting rows are in the same shard).
func exclusionHasKey(t *metadata.Table, excl []*pg_query.Node) bool {
	for _, n := range excl {
		l, ok := unwrap(n).(*pg_query.List)
		if !ok || len(l.Items) != 2 {
			continue
		}
		e, ok := unwrap(l.Items[0]).(*pg_query.IndexElem)
		if !ok || e.Expr != nil || e.Name != t.Key {
			continue
		}
		if op := stringList(l.Items[1]); len(op) > 0 && op[len(op)-1] == "=" {
			return true
		}
	}
	return false
}

func indexHasKey(t *metadata.Table, params []*pg_query.Node) bool {
	for _, n := range params {
		if e, ok := unwrap(n).(*pg_query.IndexElem); ok && e.Expr == nil && e.Name == t.Key {
			return true
		}
	}
	return false
}

// stringList returns the strings of a List node (a qualified name).
func stringList(n *pg_query.Node) []string {
	l, ok := unwrap(n).(*pg_query.List)
	if !ok {
		return nil
	}
	var out []string
	for _, it := range l.Items {
		s, ok := unwrap(it).(*pg_query.String)
		if !ok {
			return nil
		}
		out = append(out, s.Sval)
	}
	return out
}

// rangeVarOf is the relation a qualified name names ([catalog.]schema.name or name).
func rangeVarOf(names []string) *pg_query.RangeVar {
	switch len(names) {
	case 1:
		return &pg_query.RangeVar{Relname: names[0]}
	case 2:
		return &pg_query.RangeVar{Schemaname: names[0], Relname: names[1]}
	case 3:
		return &pg_query.RangeVar{Schemaname: names[1], Relname: names[2]}
	}
	return nil
}

func stringNodes(ss ...string) *pg_query.Node {
	items := make([]*pg_query.Node, len(ss))
	for i, s := range ss {
		items[i] = pg_query.MakeStrNode(s)
	}
	return pg_query.MakeListNode(items)
}

// parseOne parses a statement's text, which must hold exactly one statement.
func parseOne(sql string) (protoreflect.Message, *pg_query.ParseResult, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, nil, pgerr.New(pgerr.InternalError, "could not parse the schema change for the shards: %v", err)
	}
	if len(tree.Stmts) != 1 {
		return nil, nil, pgerr.New(pgerr.InternalError, "the schema change for the shards is not one statement")
	}
	return nodeMessage(tree.Stmts[0].Stmt), tree, nil
}

// DDLIndexNames returns the indexes a DROP INDEX or ALTER INDEX ... RENAME names, each as
// text for regclass (quoted, qualified as written), in the statement's order, and whether
// the statement is DROP INDEX CONCURRENTLY.
func DDLIndexNames(sql string) (names []string, concurrent bool, err error) {
	root, _, err := parseOne(sql)
	if err != nil {
		return nil, false, err
	}
	quote := func(parts []string) string {
		q := make([]string, len(parts))
		for i, s := range parts {
			q[i] = QuoteIdent(s)
		}
		return strings.Join(q, ".")
	}
	var rel *pg_query.RangeVar
	switch s := root.Interface().(type) {
	case *pg_query.DropStmt:
		for _, o := range s.Objects {
			names = append(names, quote(stringList(o)))
		}
		return names, s.Concurrent, nil
	case *pg_query.RenameStmt:
		rel = s.Relation
	case *pg_query.AlterTableStmt: // ALTER INDEX ... SET/RESET
		rel = s.Relation
	case *pg_query.ReindexStmt: // REINDEX INDEX (ddlmaint.go)
		rel = s.Relation
	case *pg_query.CommentStmt: // COMMENT ON INDEX
		if s.Objtype == pg_query.ObjectType_OBJECT_INDEX {
			return []string{quote(stringList(s.Object))}, false, nil
		}
	}
	if rel != nil {
		return []string{quote(relParts(rel))}, false, nil
	}
	return nil, false, pgerr.New(pgerr.InternalError, "not a statement naming indexes")
}

func relParts(rv *pg_query.RangeVar) []string {
	if rv.Schemaname != "" {
		return []string{rv.Schemaname, rv.Relname}
	}
	return []string{rv.Relname}
}

// ShardDDL returns the DDL statement sql (the client's, as the coordinator ran it)
// rewritten for shard shardID of table t; "" when the shard has nothing to change (the
// statement touches only what shards do not carry, a foreign key).
func ShardDDL(sql string, t *metadata.Table, shardID int64, cat *DDLCatalog) (string, error) {
	root, tree, err := parseOne(sql)
	if err != nil {
		return "", err
	}
	if out, handled, err := shardObjectDDL(root, tree, t, shardID); handled { // ddltrigger.go
		return out, err
	}
	if cat == nil {
		cat = &DDLCatalog{}
	}
	stmt := proto.Clone(tree.Stmts[0].Stmt).(*pg_query.Node)
	root = nodeMessage(stmt)
	r := &rewriter{t: t, shard: shardID, cat: cat}
	keep, err := r.rewrite(root)
	if err != nil || !keep {
		return "", err
	}
	var stmts []*pg_query.RawStmt
	for _, n := range r.prelude {
		stmts = append(stmts, &pg_query.RawStmt{Stmt: n})
	}
	stmts = append(stmts, &pg_query.RawStmt{Stmt: stmt})
	for _, n := range r.postlude {
		stmts = append(stmts, &pg_query.RawStmt{Stmt: n})
	}
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: tree.Version, Stmts: stmts})
	if err != nil {
		return "", pgerr.New(pgerr.InternalError, "could not write the schema change for the shards: %v", err)
	}
	// Deparsed strings are read with standard_conforming_strings on; the shards'
	// sessions may have it off.
	return sqllex.PortableText(out), nil
}

// rewriter rewrites one statement for one shard.
type rewriter struct {
	t     *metadata.Table
	shard int64
	cat   *DDLCatalog
	// added are cat.Added not named in the statement, by class ('c' checks, 'k' index-
	// backed constraints, 'i' indexes, 'f' foreign keys), in order: the names PostgreSQL
	// chose for the statement's unnamed ones.
	added map[byte][]string
	// fks counts the foreign keys met, an index into cat.Refs.
	fks int
	// prelude are statements the shard runs before the rewritten one, postlude after.
	prelude, postlude []*pg_query.Node
}

func (r *rewriter) suffix(name string) (string, error) { return shardSuffix(name, r.shard) }

func class(kind byte) byte {
	switch {
	case kind == 'c':
		return 'c'
	case indexBacked(kind):
		return 'k'
	}
	return kind
}

// chosen returns the name PostgreSQL chose for the statement's next unnamed object of
// class c: the first one left whose name is base (the name PostgreSQL derives from the
// table and columns, ChooseConstraintName) or base followed by digits (its way around a
// name taken), else the first one left. (PostgreSQL does not create them in the
// statement's order: a new column's CHECK comes after the table's.)
func (r *rewriter) chosen(c byte, base string) (string, error) {
	left := r.added[c]
	if len(left) == 0 {
		return "", pgerr.New(pgerr.InternalError, "could not find the name the coordinator chose for an unnamed constraint or index")
	}
	pick := 0
	for i, name := range left {
		if rest, ok := strings.CutPrefix(name, base); ok && strings.Trim(rest, "0123456789") == "" {
			pick = i
			break
		}
	}
	name := left[pick]
	r.added[c] = append(left[:pick:pick], left[pick+1:]...)
	return name, nil
}

// checkBase is the name PostgreSQL gives an unnamed CHECK constraint: <table>_<column>_check
// when its expression reads exactly one column (col, for a column's constraint), else
// <table>_check.
func (r *rewriter) checkBase(c *pg_query.Constraint, col string) string {
	if col == "" {
		cols := map[string]bool{}
		if m := nodeMessage(c.RawExpr); m != nil {
			walk(m, func(x protoreflect.Message, _ []frame) bool {
				if cr, ok := x.Interface().(*pg_query.ColumnRef); ok && len(cr.Fields) > 0 {
					if s, ok := unwrap(cr.Fields[len(cr.Fields)-1]).(*pg_query.String); ok {
						cols[s.Sval] = true
					}
				}
				return true
			})
		}
		if len(cols) == 1 {
			for k := range cols {
				col = k
			}
		}
	}
	if col == "" {
		return r.t.Name + "_check"
	}
	return r.t.Name + "_" + col + "_check"
}

// collectChosen fills added with the objects the statement created but did not name.
func (r *rewriter) collectChosen(explicit map[string]bool) {
	r.added = map[byte][]string{}
	for _, o := range r.cat.Added {
		if !explicit[o.Name] {
			r.added[class(o.Kind)] = append(r.added[class(o.Kind)], o.Name)
		}
	}
}

func (r *rewriter) rewrite(root protoreflect.Message) (bool, error) {
	t := r.t
	switch s := root.Interface().(type) {
	case *pg_query.AlterTableStmt:
		if s.Objtype == pg_query.ObjectType_OBJECT_INDEX {
			return r.alterIndex(s)
		}
		rv, err := shardRangeVar(t, r.shard, s.Relation.Inh)
		if err != nil {
			return false, err
		}
		s.Relation = rv
		explicit := map[string]bool{}
		for _, c := range s.Cmds {
			cmd := unwrap(c).(*pg_query.AlterTableCmd)
			if con, ok := unwrap(cmd.Def).(*pg_query.Constraint); ok && con.Conname != "" {
				explicit[con.Conname] = true
			}
			if cd, ok := unwrap(cmd.Def).(*pg_query.ColumnDef); ok {
				for _, n := range cd.Constraints {
					if con, ok := unwrap(n).(*pg_query.Constraint); ok && con.Conname != "" {
						explicit[con.Conname] = true
					}
				}
			}
		}
		r.collectChosen(explicit)
		var cmds []*pg_query.Node
		for _, c := range s.Cmds {
			keep, err := r.alterCmd(unwrap(c).(*pg_query.AlterTableCmd))
			if err != nil {
				return false, err
			}
			if keep {
				cmds = append(cmds, c)
			}
		}
		s.Cmds = cmds
		return len(cmds) > 0, nil
	case *pg_query.IndexStmt:
		rv, err := shardRangeVar(t, r.shard, s.Relation.Inh)
		if err != nil {
			return false, err
		}
		s.Relation = rv
		name := s.Idxname
		if name == "" {
			r.collectChosen(nil)
			if name, err = r.chosen('i', r.t.Name+"_"); err != nil {
				return false, err
			}
		}
		s.Idxname, err = r.suffix(name)
		return err == nil, err
	case *pg_query.RenameStmt:
		return r.rename(s)
	case *pg_query.AlterObjectSchemaStmt:
		// The shard table moves to the same schema, which the worker may lack: created
		// first, as shard creation creates a table's schema.
		rv, err := shardRangeVar(t, r.shard, s.Relation.Inh)
		if err != nil {
			return false, err
		}
		s.Relation = rv
		r.prelude = append(r.prelude, &pg_query.Node{Node: &pg_query.Node_CreateSchemaStmt{CreateSchemaStmt: &pg_query.CreateSchemaStmt{Schemaname: s.Newschema, IfNotExists: true}}})
		return true, nil
	case *pg_query.ReindexStmt, *pg_query.ClusterStmt:
		return r.reindexCluster(root) // in a transaction block (ddlmaint.go)
	case *pg_query.DropStmt:
		var objs []*pg_query.Node
		for _, i := range r.cat.Objects {
			if i < 0 || i >= len(s.Objects) {
				continue
			}
			names := stringList(s.Objects[i])
			name, err := r.suffix(names[len(names)-1])
			if err != nil {
				return false, err
			}
			objs = append(objs, stringNodes(t.Schema, name))
		}
		s.Objects = objs
		return len(objs) > 0, nil
	case *pg_query.GrantStmt:
		if s.Objtype == pg_query.ObjectType_OBJECT_SCHEMA {
			// The table's schema on the worker, once per shard (GRANT and REVOKE
			// repeat harmlessly): the statement's other schemas hold no shard there.
			s.Objects = []*pg_query.Node{pg_query.MakeStrNode(t.Schema)}
			return true, nil
		}
		rv, err := shardRangeVar(t, r.shard, true)
		if err != nil {
			return false, err
		}
		s.Targtype = pg_query.GrantTargetType_ACL_TARGET_OBJECT
		s.Objects = []*pg_query.Node{{Node: &pg_query.Node_RangeVar{RangeVar: rv}}}
		return true, nil
	case *pg_query.AlterEnumStmt:
		rewriteAlterEnum(s)
		return true, nil
	case *pg_query.CreateFunctionStmt:
		// The same function on the worker: CREATE OR REPLACE repeats harmlessly, once
		// per shard the worker holds.
		return true, nil
	case *pg_query.CommentStmt:
		parts := stringList(s.Object)
		last := parts[len(parts)-1]
		if s.Objtype == pg_query.ObjectType_OBJECT_INDEX {
			name, err := r.suffix(last)
			if err != nil {
				return false, err
			}
			s.Object = stringNodes(t.Schema, name)
			return true, nil
		}
		name, err := r.suffix(t.Name)
		if err != nil {
			return false, err
		}
		names := []string{t.Schema, name}
		switch s.Objtype {
		case pg_query.ObjectType_OBJECT_COLUMN:
			names = append(names, last)
		case pg_query.ObjectType_OBJECT_TABCONSTRAINT:
			kind := r.cat.Kinds[last]
			switch {
			case indexBacked(kind):
				if last, err = r.suffix(last); err != nil {
					return false, err
				}
			case kind == 'f' && !r.cat.ShardFKs[last], kind == 't':
				return false, nil // not on the shards
			}
			names = append(names, last)
		}
		s.Object = stringNodes(names...)
		return true, nil
	}
	return false, pgerr.New(pgerr.InternalError, "unexpected statement for the shards: %s", root.Descriptor().Name())
}

// alterCmd rewrites one ALTER TABLE subcommand; false leaves it out of the shard's
// statement.
func (r *rewriter) alterCmd(cmd *pg_query.AlterTableCmd) (bool, error) {
	switch cmd.Subtype {
	case pg_query.AlterTableType_AT_AddColumn:
		cd := unwrap(cmd.Def).(*pg_query.ColumnDef)
		for _, n := range cd.Constraints {
			if c, ok := unwrap(n).(*pg_query.Constraint); ok {
				if c.Contype == pg_query.ConstrType_CONSTR_DEFAULT && !constExpr(c.RawExpr) {
					if err := r.computedDefault(c, cd.Colname); err != nil { // ddldefault.go
						return false, err
					}
					continue
				}
				if err := r.constraint(c, cd.Colname); err != nil {
					return false, err
				}
			}
		}
	case pg_query.AlterTableType_AT_AddConstraint:
		return true, r.constraint(unwrap(cmd.Def).(*pg_query.Constraint), "")
	case pg_query.AlterTableType_AT_DropConstraint, pg_query.AlterTableType_AT_ValidateConstraint:
		kind, known := r.cat.Kinds[cmd.Name]
		switch {
		case !known && cmd.Subtype == pg_query.AlterTableType_AT_DropConstraint && cmd.MissingOk:
			// Not on the coordinator's table: IF EXISTS lets the shard skip it too.
		case kind == 'f' && r.cat.ShardFKs[cmd.Name]:
			// A foreign key to a distributed table, on the shards under its own name
			// (IF EXISTS: one added on the coordinator alone before pgshard copied them).
			cmd.MissingOk = cmd.MissingOk || cmd.Subtype == pg_query.AlterTableType_AT_DropConstraint
		case kind == 'f' || kind == 't':
			// Foreign keys and constraint triggers are not on the shards.
			return false, nil
		case indexBacked(kind):
			name, err := r.suffix(cmd.Name)
			if err != nil {
				return false, err
			}
			cmd.Name = name
		}
	case pg_query.AlterTableType_AT_ClusterOn:
		// The shard's copy of the index.
		name, err := r.suffix(cmd.Name)
		if err != nil {
			return false, err
		}
		cmd.Name = name
	case pg_query.AlterTableType_AT_ReplicaIdentity:
		if ri, ok := unwrap(cmd.Def).(*pg_query.ReplicaIdentityStmt); ok && ri.Name != "" {
			name, err := r.suffix(ri.Name)
			if err != nil {
				return false, err
			}
			ri.Name = name
		}
	case pg_query.AlterTableType_AT_ColumnDefault:
		if cmd.Def != nil && !constExpr(cmd.Def) {
			// Evaluated on the coordinator: the shard column has no default.
			cmd.Def = nil
		}
	}
	return true, nil
}

// constraint names a constraint a statement adds (col: the new column it is declared
// on, if any) as the shard's copy is named.
func (r *rewriter) constraint(c *pg_query.Constraint, col string) error {
	var err error
	switch c.Contype {
	case pg_query.ConstrType_CONSTR_CHECK:
		if c.Conname == "" {
			c.Conname, err = r.chosen('c', r.checkBase(c, col))
		}
	case pg_query.ConstrType_CONSTR_FOREIGN:
		return r.foreignKey(c, col)
	case pg_query.ConstrType_CONSTR_PRIMARY, pg_query.ConstrType_CONSTR_UNIQUE, pg_query.ConstrType_CONSTR_EXCLUSION:
		if c.Indexname != "" {
			// USING INDEX: the shard's copy of the index; an unnamed constraint takes
			// the index's name, on the coordinator as on the shard.
			if c.Conname != "" {
				if c.Conname, err = r.suffix(c.Conname); err != nil {
					return err
				}
			}
			c.Indexname, err = r.suffix(c.Indexname)
			return err
		}
		name := c.Conname
		if name == "" {
			base := r.t.Name + "_pkey"
			if c.Contype != pg_query.ConstrType_CONSTR_PRIMARY {
				base = r.t.Name + "_"
			}
			if name, err = r.chosen('k', base); err != nil {
				return err
			}
		}
		c.Conname, err = r.suffix(name)
	}
	return err
}

// foreignKey points a foreign key at the matching shard of the table it refers to (the
// shard of the same index: the planner checked that the tables are co-located) and
// names it as the coordinator named it.
func (r *rewriter) foreignKey(c *pg_query.Constraint, col string) error {
	if r.fks >= len(r.cat.Refs) {
		return pgerr.New(pgerr.InternalError, "a foreign key's referenced table is unknown")
	}
	ref := r.cat.Refs[r.fks]
	r.fks++
	idx := -1
	for i, sh := range r.t.Shards {
		if sh.ID == r.shard {
			idx = i
		}
	}
	if idx < 0 || idx >= len(ref.Shards) || len(ref.Shards) != len(r.t.Shards) {
		return pgerr.New(pgerr.FeatureNotSupported, "distributed tables %s and %s are no longer co-located", QuoteIdent(r.t.Name), QuoteIdent(ref.Name))
	}
	rv, err := shardRangeVar(ref, ref.Shards[idx].ID, true)
	if err != nil {
		return err
	}
	c.Pktable = rv
	if c.Conname == "" {
		cols := col
		if cols == "" {
			cols = strings.Join(stringsOf(c.FkAttrs), "_")
		}
		c.Conname, err = r.chosen('f', r.t.Name+"_"+cols+"_fkey")
	}
	return err
}

// stringsOf returns the strings among nodes (a column list).
func stringsOf(ns []*pg_query.Node) []string {
	var out []string
	for _, n := range ns {
		if s, ok := unwrap(n).(*pg_query.String); ok {
			out = append(out, s.Sval)
		}
	}
	return out
}

// alterIndex rewrites ALTER INDEX ... SET/RESET (...) of an index of the table.
func (r *rewriter) alterIndex(s *pg_query.AlterTableStmt) (bool, error) {
	if len(r.cat.Objects) == 0 {
		return false, nil
	}
	for _, c := range s.Cmds {
		cmd, ok := unwrap(c).(*pg_query.AlterTableCmd)
		if !ok || (cmd.Subtype != pg_query.AlterTableType_AT_SetRelOptions && cmd.Subtype != pg_query.AlterTableType_AT_ResetRelOptions) {
			return false, pgerr.New(pgerr.FeatureNotSupported, "ALTER INDEX of an index of distributed table %s is not supported in this form", QuoteIdent(r.t.Name)).
				WithDetail("ALTER INDEX ... SET (...), RESET (...) and RENAME TO reach the shards' indexes.")
		}
	}
	name, err := r.suffix(s.Relation.Relname)
	if err != nil {
		return false, err
	}
	s.Relation = &pg_query.RangeVar{Schemaname: r.t.Schema, Relname: name, Inh: true, Relpersistence: "p", Location: -1}
	return true, nil
}

func (r *rewriter) rename(s *pg_query.RenameStmt) (bool, error) {
	t := r.t
	var err error
	switch s.RenameType {
	case pg_query.ObjectType_OBJECT_TABLE:
		if s.Relation, err = shardRangeVar(t, r.shard, s.Relation.Inh); err != nil {
			return false, err
		}
		s.Newname, err = r.suffix(s.Newname)
	case pg_query.ObjectType_OBJECT_COLUMN:
		s.Relation, err = shardRangeVar(t, r.shard, s.Relation.Inh)
	case pg_query.ObjectType_OBJECT_TABCONSTRAINT:
		kind, known := r.cat.Kinds[s.Subname]
		if known && ((kind == 'f' && !r.cat.ShardFKs[s.Subname]) || kind == 't') {
			return false, nil
		}
		if s.Relation, err = shardRangeVar(t, r.shard, s.Relation.Inh); err != nil {
			return false, err
		}
		if indexBacked(kind) {
			if s.Subname, err = r.suffix(s.Subname); err != nil {
				return false, err
			}
			s.Newname, err = r.suffix(s.Newname)
		}
	case pg_query.ObjectType_OBJECT_INDEX:
		if len(r.cat.Objects) == 0 {
			return false, nil
		}
		var old string
		if old, err = r.suffix(s.Relation.Relname); err != nil {
			return false, err
		}
		s.Relation = &pg_query.RangeVar{Schemaname: t.Schema, Relname: old, Inh: true, Relpersistence: "p", Location: -1}
		s.Newname, err = r.suffix(s.Newname)
	default:
		return false, pgerr.New(pgerr.InternalError, "unexpected RENAME for the shards")
	}
	return err == nil, err
}

// String describes a DDL object for logs and tests.
func (o DDLObject) String() string { return fmt.Sprintf("%s(%c)", o.Name, o.Kind) }

// ddlPlanner is the planner at work on a schema change of distributed tables (ddlStmt
// and the statements it plans): its own type, so that the planner's other concerns stay
// apart from this one.
type ddlPlanner struct{ *planner }
