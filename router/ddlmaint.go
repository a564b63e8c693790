package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/sqllex"
)

// Maintenance and non-transactional statements of distributed tables: CREATE INDEX
// CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX, CLUSTER, VACUUM and ANALYZE. They are
// planned as DDL statements with a Maint plan; the proxy (proxy/maint.go,
// proxy/ddlconcurrent.go) runs them on the coordinator and then placement by placement,
// outside any transaction of its own and without the shards' write locks, each
// placement's statement written here from the client's (or, for CREATE INDEX
// CONCURRENTLY, from the coordinator's index definition).

// MaintForm is the kind of a maintenance statement.
type MaintForm int

const (
	// MaintCreateIndex is CREATE INDEX CONCURRENTLY.
	MaintCreateIndex MaintForm = iota + 1
	// MaintDropIndex is DROP INDEX CONCURRENTLY.
	MaintDropIndex
	// MaintReindex is REINDEX TABLE or INDEX (CONCURRENTLY or not).
	MaintReindex
	// MaintCluster is CLUSTER with a table.
	MaintCluster
	// MaintVacuum is VACUUM or ANALYZE.
	MaintVacuum
)

// Maint is the plan of a maintenance statement (Statement.Maint); Statement.Tables are
// the distributed tables it names (none for the forms naming an index, whose tables the
// proxy finds on the coordinator).
type Maint struct {
	Form MaintForm
	// Block: the statement may run inside a transaction block (ANALYZE).
	Block bool
	// RelTables are, for VACUUM and ANALYZE, the OID of the distributed table each
	// relation of the statement's list names (0 for the others); All: the statement names
	// none, and processes every table.
	RelTables []uint32
	All       bool
}

// maintStmt plans a maintenance statement of distributed tables: nil when the statement
// is not one (or names none).
func (p ddlPlanner) maintStmt(root protoreflect.Message, dist []tableRef) *Statement {
	if !p.snap.HasTables() {
		return nil
	}
	ddl := func(tag string, m *Maint, oids ...uint32) *Statement {
		return &Statement{Kind: DDL, Text: p.textTemplate(), Tag: tag, Tables: oids, Maint: m}
	}
	switch s := root.Interface().(type) {
	case *pg_query.IndexStmt:
		t := p.resolve(s.Relation)
		if t == nil || !s.Concurrent {
			return nil
		}
		if s.Unique && !indexHasKey(t, s.IndexParams) {
			return p.errorf(uniqueWithoutKey(t, "unique index"))
		}
		if err := otherDist(dist, s.Relation); err != nil {
			return p.errorf(err)
		}
		return ddl("CREATE INDEX", &Maint{Form: MaintCreateIndex}, t.OID)
	case *pg_query.DropStmt:
		if s.RemoveType != pg_query.ObjectType_OBJECT_INDEX || !s.Concurrent {
			return nil
		}
		// PostgreSQL's own refusals, which the coordinator's plain DROP INDEX would not make.
		if len(s.Objects) > 1 {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "DROP INDEX CONCURRENTLY does not support dropping multiple objects"))
		}
		if s.Behavior == pg_query.DropBehavior_DROP_CASCADE {
			return p.errorf(pgerr.New(pgerr.FeatureNotSupported, "DROP INDEX CONCURRENTLY does not support CASCADE"))
		}
		st := ddl("DROP INDEX", &Maint{Form: MaintDropIndex})
		st.IndexLookup = true
		return st
	case *pg_query.ReindexStmt:
		switch s.Kind {
		case pg_query.ReindexObjectType_REINDEX_OBJECT_TABLE:
			if t := p.resolve(s.Relation); t != nil {
				return ddl("REINDEX", &Maint{Form: MaintReindex}, t.OID)
			}
		case pg_query.ReindexObjectType_REINDEX_OBJECT_INDEX:
			st := ddl("REINDEX", &Maint{Form: MaintReindex})
			st.IndexLookup = true
			return st
		}
	case *pg_query.ClusterStmt:
		if s.Relation == nil {
			return nil
		}
		if t := p.resolve(s.Relation); t != nil {
			return ddl("CLUSTER", &Maint{Form: MaintCluster}, t.OID)
		}
	case *pg_query.VacuumStmt:
		m := &Maint{Form: MaintVacuum, Block: !s.IsVacuumcmd, All: len(s.Rels) == 0}
		var oids []uint32
		for _, n := range s.Rels {
			var oid uint32
			if vr, ok := unwrap(n).(*pg_query.VacuumRelation); ok && vr.Relation != nil {
				if t := p.resolve(vr.Relation); t != nil {
					oid = t.OID
					oids = append(oids, oid)
				}
			}
			m.RelTables = append(m.RelTables, oid)
		}
		if len(oids) == 0 && !m.All {
			return nil
		}
		tag := "VACUUM"
		if !s.IsVacuumcmd {
			tag = "ANALYZE"
		}
		return ddl(tag, m, oids...)
	}
	return nil
}

// rewriteOne parses sql (one statement), lets edit change a copy of its tree and returns
// the copy's text, portable to sessions with standard_conforming_strings off.
func rewriteOne(sql string, edit func(stmt protoreflect.Message) error) (string, error) {
	_, tree, err := parseOne(sql)
	if err != nil {
		return "", err
	}
	stmt := proto.Clone(tree.Stmts[0].Stmt).(*pg_query.Node)
	if err := edit(nodeMessage(stmt)); err != nil {
		return "", err
	}
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: tree.Version, Stmts: []*pg_query.RawStmt{{Stmt: stmt}}})
	if err != nil {
		return "", pgerr.New(pgerr.InternalError, "could not write the statement for the shards: %v", err)
	}
	return sqllex.PortableText(out), nil
}

// dropConcurrently removes CONCURRENTLY from a list of REINDEX, CLUSTER or VACUUM options.
func dropConcurrently(params []*pg_query.Node) []*pg_query.Node {
	out := params[:0:0]
	for _, n := range params {
		if d, ok := unwrap(n).(*pg_query.DefElem); ok && d.Defname == "concurrently" {
			continue
		}
		out = append(out, n)
	}
	return out
}

// MaintConcurrent reports whether a REINDEX statement has the CONCURRENTLY option.
func MaintConcurrent(sql string) bool {
	root, _, err := parseOne(sql)
	if err != nil {
		return false
	}
	if s, ok := root.Interface().(*pg_query.ReindexStmt); ok {
		return len(dropConcurrently(s.Params)) != len(s.Params)
	}
	return false
}

// CoordinatorMaint is the form of a CREATE INDEX, DROP INDEX or REINDEX statement the
// coordinator runs: without CONCURRENTLY (its table is an empty prototype, quick to
// index, and a statement in one transaction can be authorized: proxy/ddlguard.go).
func CoordinatorMaint(sql string) (string, error) {
	return rewriteOne(sql, func(m protoreflect.Message) error {
		switch s := m.Interface().(type) {
		case *pg_query.IndexStmt:
			s.Concurrent = false
		case *pg_query.DropStmt:
			s.Concurrent = false
		case *pg_query.ReindexStmt:
			s.Params = dropConcurrently(s.Params)
		}
		return nil
	})
}

// ShardIndexDef returns the coordinator's index definition def (pg_get_indexdef) as a
// CREATE INDEX CONCURRENTLY of the index on shard shardID of t (index and table named
// with the shard suffix).
func ShardIndexDef(def string, t *metadata.Table, shardID int64) (string, error) {
	return rewriteOne(def, func(m protoreflect.Message) error {
		s, ok := m.Interface().(*pg_query.IndexStmt)
		if !ok {
			return pgerr.New(pgerr.InternalError, "not an index definition")
		}
		s.Concurrent = true
		_, err := (&rewriter{t: t, shard: shardID, cat: &DDLCatalog{}}).rewrite(m)
		return err
	})
}

// ShardIndexName is index (of table t) as named on shard shardID: schema-qualified and
// quoted.
func ShardIndexName(t *metadata.Table, index string, shardID int64) (string, error) {
	name, err := shardSuffix(index, shardID)
	if err != nil {
		return "", err
	}
	return QuoteIdent(t.Schema) + "." + QuoteIdent(name), nil
}

// ShardTableName is the shard table of shard shardID of t, schema-qualified and quoted.
func ShardTableName(t *metadata.Table, shardID int64) (string, error) {
	return ShardIndexName(t, t.Name, shardID)
}

// ShardTarget is a shard of a distributed table.
type ShardTarget struct {
	T     *metadata.Table
	Shard int64
}

// ShardMaint rewrites a REINDEX or CLUSTER statement for shard target (index: the name of
// the index the statement names, for REINDEX INDEX and CLUSTER ... USING), or a VACUUM or
// ANALYZE statement for the shards targets (all on one node), each in place of its table
// (with the statement's column list for it; relTables: Maint.RelTables). Relations that
// are not distributed tables are left out.
func ShardMaint(sql string, targets []ShardTarget, index string, relTables []uint32) (string, error) {
	return rewriteOne(sql, func(m protoreflect.Message) error {
		switch s := m.Interface().(type) {
		case *pg_query.ReindexStmt, *pg_query.ClusterStmt:
			return shardReindexCluster(m, targets[0], index)
		case *pg_query.VacuumStmt:
			var rels []*pg_query.Node
			for _, tg := range targets {
				r, err := shardRangeVar(tg.T, tg.Shard, true)
				if err != nil {
					return err
				}
				if len(relTables) == 0 {
					rels = append(rels, &pg_query.Node{Node: &pg_query.Node_VacuumRelation{VacuumRelation: &pg_query.VacuumRelation{Relation: r}}})
					continue
				}
				for i, oid := range relTables {
					if oid != tg.T.OID || i >= len(s.Rels) {
						continue
					}
					vr := proto.Clone(unwrap(s.Rels[i]).(*pg_query.VacuumRelation)).(*pg_query.VacuumRelation)
					vr.Relation = r
					rels = append(rels, &pg_query.Node{Node: &pg_query.Node_VacuumRelation{VacuumRelation: vr}})
				}
			}
			s.Rels = rels
			return nil
		}
		return pgerr.New(pgerr.InternalError, "unexpected maintenance statement for the shards: %s", m.Descriptor().Name())
	})
}

// shardReindexCluster rewrites a REINDEX or CLUSTER statement for shard tg (index: the
// name of the index a REINDEX INDEX names).
func shardReindexCluster(m protoreflect.Message, tg ShardTarget, index string) error {
	var err error
	switch s := m.Interface().(type) {
	case *pg_query.ReindexStmt:
		if s.Kind == pg_query.ReindexObjectType_REINDEX_OBJECT_INDEX {
			name, err := shardSuffix(index, tg.Shard)
			if err != nil {
				return err
			}
			s.Relation = &pg_query.RangeVar{Schemaname: tg.T.Schema, Relname: name, Inh: true, Relpersistence: "p", Location: -1}
			return nil
		}
		s.Relation, err = shardRangeVar(tg.T, tg.Shard, true)
	case *pg_query.ClusterStmt:
		if s.Relation, err = shardRangeVar(tg.T, tg.Shard, true); err == nil && s.Indexname != "" {
			s.Indexname, err = shardSuffix(s.Indexname, tg.Shard)
		}
	}
	return err
}

// reindexCluster is the rewriter's REINDEX and CLUSTER (inside a transaction block they
// run as the schema changes of ddlprop.go do).
func (r *rewriter) reindexCluster(root protoreflect.Message) (bool, error) {
	index := ""
	if s, ok := root.Interface().(*pg_query.ReindexStmt); ok && s.Relation != nil {
		index = s.Relation.Relname
	}
	return true, shardReindexCluster(root, ShardTarget{T: r.t, Shard: r.shard}, index)
}

// CreateIndexName returns the name a CREATE INDEX statement gives its index ("" when it
// lets PostgreSQL choose) and whether it says IF NOT EXISTS.
func CreateIndexName(sql string) (name string, ifNotExists bool) {
	root, _, err := parseOne(sql)
	if err != nil {
		return "", false
	}
	if s, ok := root.Interface().(*pg_query.IndexStmt); ok {
		return s.Idxname, s.IfNotExists
	}
	return "", false
}
