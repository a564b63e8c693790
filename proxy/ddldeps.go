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
	return x.distributedWork(rows), nil
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

// functionTables returns the distributed tables whose shards call a function of that name
// (in schema, or the first of that name on the session's search_path when schema is ""):
// through their CHECK constraints, index expressions, generated columns or triggers, or
// the domain constraints of their columns' types. Column defaults other than constants
// are evaluated on the coordinator and do not count.
func (x *execution) functionTables(ctx context.Context, schema, name string) ([]*ddlWork, error) {
	ns := "(SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) " + router.QuoteLiteral(schema) + ")"
	if schema == "" {
		ns = `(SELECT n.oid FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY s(name, pos)
			JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) s.name
			WHERE EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) n.oid AND p.proname OPERATOR(pg_catalog.=) ` + router.QuoteLiteral(name) + `)
			ORDER BY s.pos LIMIT 1)`
	}
	rows, err := sessionQuery(ctx, x.ss, `WITH f AS (SELECT p.oid FROM pg_catalog.pg_proc p
			WHERE p.proname OPERATOR(pg_catalog.=) `+router.QuoteLiteral(name)+` AND p.pronamespace OPERATOR(pg_catalog.=) `+ns+`),
		dep AS (SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, f
			WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.=) f.oid)
		SELECT co.conrelid::pg_catalog.int8 FROM dep JOIN pg_catalog.pg_constraint co
			ON dep.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass AND co.oid OPERATOR(pg_catalog.=) dep.objid
		UNION SELECT a.attrelid::pg_catalog.int8 FROM dep JOIN pg_catalog.pg_constraint co
			ON dep.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_constraint'::pg_catalog.regclass AND co.oid OPERATOR(pg_catalog.=) dep.objid
			JOIN pg_catalog.pg_attribute a ON a.atttypid OPERATOR(pg_catalog.=) co.contypid AND co.contypid OPERATOR(pg_catalog.<>) 0
		UNION SELECT i.indrelid::pg_catalog.int8 FROM dep JOIN pg_catalog.pg_index i
			ON dep.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND i.indexrelid OPERATOR(pg_catalog.=) dep.objid
		UNION SELECT tg.tgrelid::pg_catalog.int8 FROM dep JOIN pg_catalog.pg_trigger tg
			ON dep.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass AND tg.oid OPERATOR(pg_catalog.=) dep.objid
		UNION SELECT ad.adrelid::pg_catalog.int8 FROM dep JOIN pg_catalog.pg_attrdef ad
			ON dep.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND ad.oid OPERATOR(pg_catalog.=) dep.objid
			JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) ad.adrelid AND a.attnum OPERATOR(pg_catalog.=) ad.adnum
			WHERE a.attgenerated OPERATOR(pg_catalog.<>) ''
		ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return x.distributedWork(rows), nil
}

// distributedWork is the DDL work of the distributed tables among rows (a relation OID
// in each row's first column).
func (x *execution) distributedWork(rows [][][]byte) []*ddlWork {
	var work []*ddlWork
	for _, r := range rows {
		oid, _ := strconv.ParseUint(string(r[0]), 10, 32)
		if t := x.snap.TableByOID(uint32(oid)); t != nil {
			work = append(work, &ddlWork{t: t, cat: &router.DDLCatalog{}})
		}
	}
	return work
}
