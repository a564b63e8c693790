package proxy

import (
	"context"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// The objects a distributed table's columns need, kept in step on the workers by schema
// changes (ddlprop.go):
//
//   - an ALTER TABLE that adds a column or changes a column's type may name a type (an
//     enum, a domain, a composite type) or a collation created after the table was
//     distributed: the shard statements are preceded, on every placement and in the same
//     transaction, by the commands that create what the table's columns need and the
//     worker lacks (metadata/ddl's ObjectCommands, as at the shards' creation);
//   - ALTER TYPE ... ADD VALUE and RENAME VALUE of an enum that distributed tables use
//     are schema changes of those tables, run on every worker holding their shards.

// enumTables returns the distributed tables whose columns use enum name (directly, in
// an array, a domain or a composite type), as DDL work.
func (x *execution) enumTables(ctx context.Context, name string) ([]*ddlWork, error) {
	rows, err := sessionQuery(ctx, x.ss, `WITH RECURSIVE ty(oid) AS (
		SELECT pg_catalog.to_regtype(`+router.QuoteLiteral(name)+`)::pg_catalog.oid
		UNION
		SELECT t.oid FROM pg_catalog.pg_type t, ty
		WHERE t.typbasetype OPERATOR(pg_catalog.=) ty.oid OR t.typelem OPERATOR(pg_catalog.=) ty.oid
		   OR (t.typtype OPERATOR(pg_catalog.=) 'c' AND EXISTS (SELECT FROM pg_catalog.pg_attribute a
		       WHERE a.attrelid OPERATOR(pg_catalog.=) t.typrelid AND a.atttypid OPERATOR(pg_catalog.=) ty.oid)))
		SELECT DISTINCT a.attrelid::pg_catalog.int8 FROM pg_catalog.pg_attribute a, ty
		WHERE a.atttypid OPERATOR(pg_catalog.=) ty.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	var work []*ddlWork
	for _, r := range rows {
		oid, _ := strconv.ParseUint(string(r[0]), 10, 32)
		if t := x.snap.TableByOID(uint32(oid)); t != nil {
			work = append(work, &ddlWork{t: t, cat: &router.DDLCatalog{}})
		}
	}
	return work, nil
}

// shardStatements adapts the shard statements of a schema change: the objects the
// table's columns need go first when the change gives a column a type or collation, and
// an enum's RENAME VALUE runs only while the old label is there (a worker gets it once
// per shard it holds). c is the coordinator connection that ran the client's statement.
type shardStatements struct {
	sql      string
	preludes map[*ddlWork]string
	enum     string
	old      string
}

func (x *execution) newShardStatements(ctx context.Context, c *backend.Conn, sql string, work []*ddlWork) (*shardStatements, error) {
	s := &shardStatements{sql: sql}
	if name, rename := router.DDLEnumName(sql); rename {
		s.enum, s.old = name, router.DDLEnumOldLabel(sql)
	}
	if !router.DDLNeedsObjects(sql) {
		return s, nil
	}
	s.preludes = map[*ddlWork]string{}
	for _, w := range work {
		p, err := shardObjectCommands(ctx, c, w.t.OID)
		if err != nil {
			return nil, err
		}
		s.preludes[w] = p
	}
	return s, nil
}

// adapt returns the statement for one shard of w's table.
func (s *shardStatements) adapt(w *ddlWork, shardSQL string) string {
	if s.old != "" {
		shardSQL = "DO $pgshard$BEGIN\nIF EXISTS (SELECT FROM pg_catalog.pg_enum WHERE enumtypid OPERATOR(pg_catalog.=) " +
			router.QuoteLiteral(s.enum) + "::pg_catalog.regtype AND enumlabel OPERATOR(pg_catalog.=) " + router.QuoteLiteral(s.old) + ") THEN\n" +
			shardSQL + ";\nEND IF;\nEND$pgshard$"
	}
	return s.preludes[w] + shardSQL
}

// shardObjectCommands returns the commands that create, on a worker that lacks them, the
// objects table oid's columns need, read in the block (c, the coordinator connection
// that just ran the client's ALTER TABLE): "" when there are none.
func shardObjectCommands(ctx context.Context, c *backend.Conn, oid uint32) (string, error) {
	rows, err := c.ExecRows(ctx, "SELECT pg_catalog.current_setting('server_version_num')")
	if err != nil {
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return "", pgerr.New(pgerr.InternalError, "unexpected answer to server_version_num")
	}
	num, _ := strconv.Atoi(string(rows[0][0]))
	q := func(ctx context.Context, sql string, args [][]byte) ([][][]byte, error) {
		return c.QueryParams(ctx, sql, args, nil)
	}
	def, err := ddl.LoadVia(ctx, q, num/10000, oid)
	if err != nil {
		return "", pgerr.New(pgerr.FeatureNotSupported, "cannot change the shards: %s", strings.TrimPrefix(err.Error(), "ddl: "))
	}
	cmds := def.ObjectCommands()
	if len(cmds) == 0 {
		return "", nil
	}
	return strings.Join(cmds, ";\n") + ";\n", nil
}
