package router

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/metadata"
)

// Schema statements that reach distributed tables:
//
//   - ALTER SCHEMA s RENAME TO s2, s holding distributed tables: a DDL plan over every
//     distributed table in s (their shards' write locks, exclusively); each shard's
//     placement renames the schema on its worker, once per worker (the shard tables live
//     in the schema of the same name there), and checks that its shard table is in the
//     new schema. Refused inside a transaction block (25001), as a table's RENAME TO:
//     the proxy plans by the names it loaded, which change when the rename commits.
//   - DROP SCHEMA s ... CASCADE, s holding distributed tables: planned as DROP TABLE of
//     those tables (their shard tables dropped on the workers, their metadata deleted,
//     then the coordinator's DROP SCHEMA committed). The workers' schemas stay: they may
//     hold other tables' shards or the types those need, and pgshard does not record
//     whether it created them. DROP SCHEMA without CASCADE goes to the coordinator as it
//     is, which refuses it (2BP01) when a table is in the schema.

// tablesInSchemas returns the distributed tables in the named schemas.
func (p ddlPlanner) tablesInSchemas(schemas []string) []*metadata.Table {
	var out []*metadata.Table
	for _, t := range p.snap.Tables() {
		for _, s := range schemas {
			if t.Schema == s {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// schemaRename plans ALTER SCHEMA ... RENAME TO of a schema holding distributed tables;
// nil for any other statement.
func (p ddlPlanner) schemaRename(s *pg_query.RenameStmt) *Statement {
	if s.RenameType != pg_query.ObjectType_OBJECT_SCHEMA || !p.snap.HasTables() {
		return nil
	}
	tables := p.tablesInSchemas([]string{s.Subname})
	if len(tables) == 0 {
		return nil
	}
	st := &Statement{Kind: DDL, Text: p.textTemplate(), Tag: "ALTER SCHEMA", RenamesTable: true}
	for _, t := range tables {
		st.Tables = append(st.Tables, t.OID)
	}
	return st
}

// dropSchema plans DROP SCHEMA ... CASCADE of schemas holding distributed tables as a
// DROP TABLE of those tables (proxy: dropTables); nil for any other statement.
func (p ddlPlanner) dropSchema(s *pg_query.DropStmt) *Statement {
	if s.RemoveType != pg_query.ObjectType_OBJECT_SCHEMA || s.Behavior != pg_query.DropBehavior_DROP_CASCADE || !p.snap.HasTables() {
		return nil
	}
	var schemas []string
	for _, o := range s.Objects {
		if n, ok := unwrap(o).(*pg_query.String); ok {
			schemas = append(schemas, n.Sval)
		}
	}
	tables := p.tablesInSchemas(schemas)
	if len(tables) == 0 {
		return nil
	}
	st := &Statement{Kind: DropTable, Text: p.textTemplate(), Tag: "DROP SCHEMA"}
	for _, t := range tables {
		st.Tables = append(st.Tables, t.OID)
	}
	return st
}

// shardSchemaRename is the statement that renames the schema of shard shardID of t on a
// placement's worker: the first shard of the worker renames the schema, the others find
// it renamed; each checks that its shard table is in the new schema.
func shardSchemaRename(s *pg_query.RenameStmt, t *metadata.Table, shardID int64) (string, error) {
	name, err := shardSuffix(t.Name, shardID)
	if err != nil {
		return "", err
	}
	shard := QuoteIdent(s.Newname) + "." + QuoteIdent(name)
	body := "BEGIN\n" +
		"IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) " + QuoteLiteral(s.Subname) + ") THEN\n" +
		"ALTER SCHEMA " + QuoteIdent(s.Subname) + " RENAME TO " + QuoteIdent(s.Newname) + ";\nEND IF;\n" +
		"IF pg_catalog.to_regclass(" + QuoteLiteral(shard) + ") IS NULL THEN\n" +
		"RAISE EXCEPTION USING ERRCODE = 'undefined_table', MESSAGE = " + QuoteLiteral("shard table "+shard+" is not in the renamed schema on this worker") + ";\n" +
		"END IF;\nEND"
	return doStmt(body), nil
}

// doStmt wraps a PL/pgSQL body in DO with a dollar quote the body does not contain.
func doStmt(body string) string {
	tag := "$pgshard$"
	for i := 1; strings.Contains(body, strings.TrimSuffix(tag, "$")); i++ {
		tag = "$pgshard" + strings.Repeat("x", i) + "$"
	}
	return "DO " + tag + body + tag
}
