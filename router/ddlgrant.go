package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// schemaGrantStmt plans GRANT and REVOKE on schemas. A schema that holds distributed
// tables exists on the workers too (the shard tables live in it), and a role needs USAGE
// there as much as on the coordinator: the statement is a schema change of every
// distributed table in the named schemas, run on the coordinator and then, rewritten to
// name only the table's schema, once per shard on every placement. Schemas without
// distributed tables are the coordinator's business alone.
func (p ddlPlanner) schemaGrantStmt(s *pg_query.GrantStmt) *Statement {
	schemas := map[string]bool{}
	for _, o := range s.Objects {
		if sch, ok := unwrap(o).(*pg_query.String); ok {
			schemas[sch.Sval] = true
		}
	}
	var oids []uint32
	for _, t := range p.snap.Tables() {
		if schemas[t.Schema] {
			oids = append(oids, t.OID)
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
