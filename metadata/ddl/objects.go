package ddl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/router/sqllex"
)

// ErrUnsupported is wrapped by Load's error for a table whose shards would need an object
// pgshard cannot create on a worker (a range type, a base type of no extension, a table's
// row type as a column type).
var ErrUnsupported = errors.New("unsupported object")

// Type is a user-defined type that a shard table needs (a column's type, or a type under
// one: an array's element, a domain's base, a composite's attributes), created on a worker
// before the shard when it is missing there.
type Type struct {
	// Schema is the type's schema (not quoted); QuotedSchema and Qualified (schema.name)
	// are quoted.
	Schema       string
	QuotedSchema string
	Name         string
	Qualified    string
	// Kind is pg_type.typtype: 'e' (enum), 'd' (domain), 'c' (composite), or 'x' for a
	// member of an extension (Extension), whatever its kind.
	Kind byte
	// Create is the CREATE TYPE / CREATE DOMAIN statement, then the statements that
	// complete it (NOT VALID domain constraints).
	Create []string
	// Labels are an enum's labels, as quoted literals, in order.
	Labels []string
	// Extension and ExtensionSchema name the extension of a member type (not quoted);
	// ExtensionSchema is the extension's schema.
	Extension       string
	ExtensionSchema string
}

// Function is a user-defined function that a shard's CHECK constraints, generated
// columns, index expressions or its types' domain constraints and defaults call. It must
// exist on the worker: a shard is not created (nor repaired) where it does not.
type Function struct {
	// Signature is regprocedure's text, schema-qualified ("public.f(integer)").
	Signature string
	// Schema is the function's schema (not quoted); Def its definition
	// (pg_get_functiondef), "" for a function in C or of an extension, which the
	// workers must have.
	Schema, Def string
}

// objectsSQL reads the types and functions that table $1 needs, types in dependency order
// (a type after those it is made of).
const objectsSQL = `
WITH RECURSIVE deps(oid, depth, path) AS (
  SELECT a.atttypid, 0, ARRAY[a.atttypid]
  FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT x.dep, d.depth + 1, d.path || x.dep
  FROM deps d
  JOIN pg_type t ON t.oid = d.oid
  CROSS JOIN LATERAL unnest(CASE
      WHEN t.typtype = 'd' THEN ARRAY[t.typbasetype]
      WHEN t.typtype = 'c' THEN ARRAY(SELECT ca.atttypid FROM pg_attribute ca
                                      WHERE ca.attrelid = t.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped)
      WHEN t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1 THEN ARRAY[t.typelem]
      ELSE '{}'::oid[] END) x(dep)
  WHERE d.depth < 50 AND NOT x.dep = ANY(d.path)
),
needed AS (
  SELECT d.oid, max(d.depth) AS depth FROM deps d
  JOIN pg_type t ON t.oid = d.oid JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND NOT (t.typtype = 'b' AND t.typelem <> 0 AND t.typlen = -1)
  GROUP BY d.oid
)
SELECT json_build_object(
  'types', (SELECT coalesce(json_agg(json_build_object(
      'schema', n.nspname,
      'qschema', quote_ident(n.nspname),
      'name', t.typname,
      'qname', quote_ident(t.typname),
      'kind', t.typtype,
      'relkind', (SELECT r.relkind FROM pg_class r WHERE r.oid = t.typrelid),
      'extension', (SELECT e.extname FROM pg_depend dp JOIN pg_extension e ON e.oid = dp.refobjid
                    WHERE dp.classid = 'pg_type'::regclass AND dp.objid = t.oid
                      AND dp.refclassid = 'pg_extension'::regclass AND dp.deptype = 'e' LIMIT 1),
      'extension_schema', (SELECT en.nspname FROM pg_depend dp JOIN pg_extension e ON e.oid = dp.refobjid
                           JOIN pg_namespace en ON en.oid = e.extnamespace
                           WHERE dp.classid = 'pg_type'::regclass AND dp.objid = t.oid
                             AND dp.refclassid = 'pg_extension'::regclass AND dp.deptype = 'e' LIMIT 1),
      'labels', (SELECT json_agg(quote_literal(e.enumlabel) ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid),
      'attributes', (SELECT json_agg(quote_ident(ca.attname) || ' ' || format_type(ca.atttypid, ca.atttypmod) ||
                                     CASE WHEN ca.attcollation <> 0 AND ca.attcollation <> ct.typcollation THEN
                                       (SELECT ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                                        FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                        WHERE co.oid = ca.attcollation) ELSE '' END
                                     ORDER BY ca.attnum)
                     FROM pg_attribute ca JOIN pg_type ct ON ct.oid = ca.atttypid
                     WHERE t.typtype = 'c' AND ca.attrelid = t.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped),
      'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
      'collation', CASE WHEN t.typtype = 'd' AND t.typcollation <> 0
                         AND t.typcollation <> (SELECT bt.typcollation FROM pg_type bt WHERE bt.oid = t.typbasetype) THEN
                     (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                      FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                      WHERE co.oid = t.typcollation) END,
      'default', CASE WHEN t.typtype = 'd' THEN coalesce(pg_get_expr(t.typdefaultbin, 0), t.typdefault) END,
      'not_null', t.typnotnull,
      'checks', (SELECT json_agg(json_build_object('qname', quote_ident(co.conname), 'def', pg_get_constraintdef(co.oid),
                                                   'validated', co.convalidated) ORDER BY co.conname)
                 FROM pg_constraint co WHERE co.contypid = t.oid AND co.contype = 'c')
    ) ORDER BY nd.depth DESC, n.nspname, t.typname), '[]')
    FROM needed nd JOIN pg_type t ON t.oid = nd.oid JOIN pg_namespace n ON n.oid = t.typnamespace),
  'triggers', (SELECT coalesce(json_agg(json_build_object(
      'qname', quote_ident(tg.tgname),
      'def', pg_get_triggerdef(tg.oid),
      'enabled', tg.tgenabled,
      'fschema', fn.nspname,
      'fsig', quote_ident(fn.nspname) || '.' || quote_ident(fp.proname) || '(' || pg_get_function_identity_arguments(fp.oid) || ')',
      'fdef', CASE WHEN fn.nspname <> 'pg_catalog' THEN pg_get_functiondef(fp.oid) END
    ) ORDER BY tg.tgname), '[]')
    FROM pg_trigger tg JOIN pg_proc fp ON fp.oid = tg.tgfoid JOIN pg_namespace fn ON fn.oid = fp.pronamespace
    WHERE tg.tgrelid = $1 AND NOT tg.tgisinternal AND tg.tgname NOT LIKE 'pgshard\_%'),
  'policies', (SELECT coalesce(json_agg(json_build_object(
      'qname', quote_ident(po.polname),
      'permissive', po.polpermissive,
      'cmd', po.polcmd,
      'roles', (SELECT json_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END ORDER BY o)
                FROM unnest(po.polroles) WITH ORDINALITY u(r, o)),
      'qual', pg_get_expr(po.polqual, po.polrelid),
      'check', pg_get_expr(po.polwithcheck, po.polrelid)
    ) ORDER BY po.polname), '[]')
    FROM pg_policy po WHERE po.polrelid = $1),
  'rls', (SELECT r.relrowsecurity FROM pg_class r WHERE r.oid = $1),
  'force_rls', (SELECT r.relforcerowsecurity FROM pg_class r WHERE r.oid = $1),
  'functions', (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('sig', p.oid::regprocedure::text, 'schema', pn.nspname,
        'def', CASE WHEN l.lanname NOT IN ('c', 'internal')
                     AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e')
                    THEN pg_get_functiondef(p.oid) END)), '[]')
    FROM pg_depend dp
    JOIN pg_proc p ON p.oid = dp.refobjid
    JOIN pg_namespace pn ON pn.oid = p.pronamespace
    JOIN pg_language l ON l.oid = p.prolang
    WHERE dp.refclassid = 'pg_proc'::regclass
      AND pn.nspname NOT IN ('pg_catalog', 'information_schema')
      AND ((dp.classid = 'pg_constraint'::regclass
            AND dp.objid IN (SELECT co.oid FROM pg_constraint co
                             WHERE co.conrelid = $1 AND co.contype IN ('c', 'p', 'u', 'x')
                                OR co.contypid IN (SELECT oid FROM needed)))
        OR (dp.classid = 'pg_class'::regclass AND dp.objid IN (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = $1))
        OR (dp.classid = 'pg_attrdef'::regclass
            AND dp.objid IN (SELECT ad.oid FROM pg_attrdef ad JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
                             WHERE ad.adrelid = $1 AND a.attgenerated <> ''))
        OR (dp.classid = 'pg_type'::regclass AND dp.objid IN (SELECT oid FROM needed))))
)`

type (
	jsonObjects struct {
		Types     []jsonType `json:"types"`
		Functions []struct {
			Sig    string  `json:"sig"`
			Schema string  `json:"schema"`
			Def    *string `json:"def"`
		} `json:"functions"`
		Triggers []jsonTrigger `json:"triggers"`
		Policies []jsonPolicy  `json:"policies"`
		RLS      bool          `json:"rls"`
		ForceRLS bool          `json:"force_rls"`
	}
	jsonTrigger struct {
		QName   string  `json:"qname"`
		Def     string  `json:"def"`
		Enabled string  `json:"enabled"`
		FSchema string  `json:"fschema"`
		FSig    string  `json:"fsig"`
		FDef    *string `json:"fdef"`
	}
	jsonPolicy struct {
		QName      string   `json:"qname"`
		Permissive bool     `json:"permissive"`
		Cmd        string   `json:"cmd"`
		Roles      []string `json:"roles"`
		Qual       *string  `json:"qual"`
		Check      *string  `json:"check"`
	}
	jsonType struct {
		Schema          string          `json:"schema"`
		QSchema         string          `json:"qschema"`
		Name            string          `json:"name"`
		QName           string          `json:"qname"`
		Kind            string          `json:"kind"`
		Relkind         *string         `json:"relkind"`
		Extension       *string         `json:"extension"`
		ExtensionSchema *string         `json:"extension_schema"`
		Labels          []string        `json:"labels"`
		Attributes      []string        `json:"attributes"`
		Base            *string         `json:"base"`
		Collation       *string         `json:"collation"`
		Default         *string         `json:"default"`
		NotNull         bool            `json:"not_null"`
		Checks          []jsonTypeCheck `json:"checks"`
	}
	jsonTypeCheck struct {
		QName     string `json:"qname"`
		Def       string `json:"def"`
		Validated bool   `json:"validated"`
	}
)

// loadObjects reads the types and functions table relid needs; conn's search_path is
// pg_catalog (Load's), so every name outside it is qualified.
func loadObjects(ctx context.Context, conn *pgconn.PgConn, relid uint32, display string) ([]Type, []Function, *Security, error) {
	r := conn.ExecParams(ctx, objectsSQL, [][]byte{[]byte(strconv.FormatUint(uint64(relid), 10))}, nil, nil, nil).Read()
	if r.Err != nil {
		return nil, nil, nil, fmt.Errorf("ddl: load the types of relation %d: %w", relid, r.Err)
	}
	return objectsFrom(relid, display, r.Rows)
}

// objectsFrom reads loadObjects's answer (objectsSQL's rows).
func objectsFrom(relid uint32, display string, rows [][][]byte) ([]Type, []Function, *Security, error) {
	if len(rows) != 1 {
		return nil, nil, nil, fmt.Errorf("ddl: load the types of relation %d: %d rows", relid, len(rows))
	}
	var jo jsonObjects
	if err := json.Unmarshal(rows[0][0], &jo); err != nil {
		return nil, nil, nil, fmt.Errorf("ddl: decode the types of relation %d: %w", relid, err)
	}
	var types []Type
	for _, jt := range jo.Types {
		ty := Type{Schema: jt.Schema, QuotedSchema: jt.QSchema, Name: jt.Name, Qualified: jt.QSchema + "." + jt.QName, Kind: firstByte(jt.Kind)}
		if jt.Extension != nil {
			ty.Kind = 'x'
			ty.Extension = *jt.Extension
			ty.ExtensionSchema = deref(jt.ExtensionSchema)
			types = append(types, ty)
			continue
		}
		switch ty.Kind {
		case 'e':
			ty.Labels = jt.Labels
			ty.Create = []string{"CREATE TYPE " + ty.Qualified + " AS ENUM (" + strings.Join(jt.Labels, ", ") + ")"}
		case 'c':
			if jt.Relkind == nil || *jt.Relkind != "c" {
				return nil, nil, nil, fmt.Errorf("ddl: %w: column type %s of %s is the row type of a table", ErrUnsupported, ty.Qualified, display)
			}
			ty.Create = []string{"CREATE TYPE " + ty.Qualified + " AS (" + strings.Join(jt.Attributes, ", ") + ")"}
		case 'd':
			var b strings.Builder
			b.WriteString("CREATE DOMAIN " + ty.Qualified + " AS " + deref(jt.Base))
			if jt.Collation != nil {
				b.WriteString(" COLLATE " + *jt.Collation)
			}
			if jt.Default != nil {
				b.WriteString(" DEFAULT " + *jt.Default)
			}
			if jt.NotNull {
				b.WriteString(" NOT NULL")
			}
			var later []string
			for _, ck := range jt.Checks {
				if ck.Validated {
					b.WriteString(" CONSTRAINT " + ck.QName + " " + ck.Def)
				} else {
					// CREATE DOMAIN takes no NOT VALID; Def ends with it.
					later = append(later, "ALTER DOMAIN "+ty.Qualified+" ADD CONSTRAINT "+ck.QName+" "+ck.Def)
				}
			}
			ty.Create = append([]string{b.String()}, later...)
		case 'r', 'm':
			return nil, nil, nil, fmt.Errorf("ddl: %w: column type %s of %s is a range type, which pgshard does not create on the workers", ErrUnsupported, ty.Qualified, display)
		default:
			return nil, nil, nil, fmt.Errorf("ddl: %w: column type %s of %s is a base type of no extension, which pgshard cannot create on the workers", ErrUnsupported, ty.Qualified, display)
		}
		types = append(types, ty)
	}
	var funcs []Function
	for _, f := range jo.Functions {
		fn := Function{Signature: f.Sig, Schema: f.Schema}
		if f.Def != nil {
			fn.Def = *f.Def
		}
		funcs = append(funcs, fn)
	}
	return types, funcs, securityFrom(&jo), nil
}

// literal quotes s as a standard SQL string literal.
func literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// doBlock wraps a PL/pgSQL body in DO with a dollar quote that the body does not contain.
// The body is made portable first (sqllex.PortableText): PL/pgSQL reads its strings with
// the session's standard_conforming_strings.
func doBlock(body string) string {
	body = sqllex.PortableText(body)
	tag := "$pgshard$"
	for i := 1; strings.Contains(body, tag[:len(tag)-1]); i++ {
		tag = "$pgshard" + strconv.Itoa(i) + "$"
	}
	return "DO " + tag + body + tag
}

// ensureSchema creates a schema unless it exists: unlike CREATE SCHEMA IF NOT EXISTS, it
// needs no CREATE privilege on the database when the schema is there, and a session that
// loses a race to create it goes on. The statements in then (each ending in ";\n") run
// after the schema is created.
func ensureSchema(schema, quoted string, then ...string) string {
	return doBlock("BEGIN\n" +
		"IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) " + literal(schema) + ") THEN\n" +
		"CREATE SCHEMA " + quoted + ";\n" + strings.Join(then, "") + "END IF;\n" +
		"EXCEPTION WHEN unique_violation OR duplicate_schema THEN NULL;\nEND")
}

// typeExists is the condition that a type named schema.name exists (by name, as the shard's
// DDL will find it).
func typeExists(schema, name string) string {
	return "EXISTS (SELECT FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace " +
		"WHERE n.nspname OPERATOR(pg_catalog.=) " + literal(schema) + " AND t.typname OPERATOR(pg_catalog.=) " + literal(name) + ")"
}

// objectCommands are the commands that make sure the objects the shard needs exist on the
// worker, before the shard table: the types' schemas and the types themselves where they
// are missing (in dependency order; an existing enum must have the same labels), the
// extensions of extension types (if available on the worker), and a check that each
// function the shard calls exists. Each runs in a DO block that lets a concurrent session
// win a race to create the same object (a unique violation on the catalogs, or
// duplicate_object) and go on with the winner's. The errors they raise are 0A000 or 42804
// with the object's name.
func (t *Table) objectCommands() []string {
	var cmds []string
	schemas := map[string]bool{"public": true, t.Schema: true}
	for _, ty := range t.Types {
		if ty.Kind == 'x' {
			if !schemas[ty.ExtensionSchema] {
				schemas[ty.ExtensionSchema] = true
				cmds = append(cmds, ensureSchema(ty.ExtensionSchema, quoteAlways(ty.ExtensionSchema)))
			}
			ext := literal(ty.Extension)
			cmds = append(cmds, doBlock("BEGIN\n"+
				"IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) "+ext+") THEN\n"+
				"IF NOT EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name OPERATOR(pg_catalog.=) "+ext+") THEN\n"+
				"RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', MESSAGE = "+
				literal(fmt.Sprintf("extension %q, which type %s of table %s.%s belongs to, is not available on this worker", ty.Extension, ty.Qualified, t.QuotedSchema, t.QuotedName))+
				", HINT = 'Install the extension on every worker.';\nEND IF;\n"+
				"CREATE EXTENSION IF NOT EXISTS "+quoteAlways(ty.Extension)+" SCHEMA "+quoteAlways(ty.ExtensionSchema)+";\nEND IF;\n"+
				"EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL;\nEND"))
			continue
		}
		if !schemas[ty.Schema] {
			schemas[ty.Schema] = true
			cmds = append(cmds, ensureSchema(ty.Schema, ty.QuotedSchema))
		}
		exists := typeExists(ty.Schema, ty.Name)
		var b strings.Builder
		b.WriteString("BEGIN\nIF NOT " + exists + " THEN\n")
		for _, c := range ty.Create {
			b.WriteString(c + ";\n")
		}
		b.WriteString("END IF;\nEXCEPTION WHEN unique_violation OR duplicate_object THEN NULL;\nEND")
		cmds = append(cmds, doBlock(b.String()))
		if ty.Kind == 'e' {
			// An enum of the same name with other labels would take or refuse other
			// values than the coordinator's (binary COPY sends labels).
			cmds = append(cmds, doBlock("BEGIN\n"+
				"IF (SELECT pg_catalog.array_agg(e.enumlabel::pg_catalog.text ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e "+
				"WHERE e.enumtypid OPERATOR(pg_catalog.=) "+literal(ty.Qualified)+"::pg_catalog.regtype) "+
				"IS DISTINCT FROM ARRAY["+strings.Join(ty.Labels, ", ")+"]::pg_catalog.text[] THEN\n"+
				"RAISE EXCEPTION USING ERRCODE = 'datatype_mismatch', MESSAGE = "+
				literal(fmt.Sprintf("type %s exists on this worker with other labels than on the coordinator", ty.Qualified))+
				", HINT = 'Make the enum''s labels the same on every worker.';\nEND IF;\nEND"))
		}
	}
	for _, f := range t.Functions {
		if f.Def != "" {
			// Created from the coordinator's definition where missing or different.
			cmds = append(cmds, doBlock(EnsureFunction(f.Schema, f.Signature, f.Def)))
			continue
		}
		cmds = append(cmds, doBlock("BEGIN\n"+
			"IF pg_catalog.to_regprocedure("+literal(f.Signature)+") IS NULL THEN\n"+
			"RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', MESSAGE = "+
			literal(fmt.Sprintf("function %s, which table %s.%s needs, does not exist on this worker", f.Signature, t.QuotedSchema, t.QuotedName))+
			", HINT = 'Create the function on every worker (pgshard copies functions in SQL and procedural languages only).';\nEND IF;\nEND"))
	}
	return cmds
}

// quoteAlways quotes a name in double quotes, which is correct for any name.
func quoteAlways(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// Security is what a shard carries of its table's triggers and row-level security: the
// RLS flags, the policies and the triggers with their functions.
type Security struct {
	RLS, ForceRLS bool
	Policies      []Policy
	Triggers      []Trigger
}

// Policy is a row-level security policy of the table.
type Policy struct {
	QuotedName string
	Permissive bool
	// Command is pg_policy.polcmd: '*' (ALL), 'r', 'a', 'w' or 'd'.
	Command byte
	// Roles are quoted role names, or PUBLIC.
	Roles        []string
	Using, Check string
}

// Trigger is a trigger of the table (not pgshard's own, not internal ones).
type Trigger struct {
	QuotedName string
	// Def is pg_get_triggerdef's text, naming the coordinator's table.
	Def string
	// Enabled is pg_trigger.tgenabled: 'O', 'D', 'R' or 'A'.
	Enabled byte
	// FunctionSchema, FunctionSignature (qualified, quoted) and FunctionDef
	// (pg_get_functiondef's text; "" for a function of pg_catalog) are its function's.
	FunctionSchema, FunctionSignature, FunctionDef string
}

func securityFrom(jo *jsonObjects) *Security {
	if !jo.RLS && !jo.ForceRLS && len(jo.Policies) == 0 && len(jo.Triggers) == 0 {
		return nil
	}
	s := &Security{RLS: jo.RLS, ForceRLS: jo.ForceRLS}
	for _, p := range jo.Policies {
		s.Policies = append(s.Policies, Policy{QuotedName: p.QName, Permissive: p.Permissive, Command: firstByte(p.Cmd),
			Roles: p.Roles, Using: deref(p.Qual), Check: deref(p.Check)})
	}
	for _, tg := range jo.Triggers {
		s.Triggers = append(s.Triggers, Trigger{QuotedName: tg.QName, Def: tg.Def, Enabled: firstByte(tg.Enabled),
			FunctionSchema: tg.FSchema, FunctionSignature: tg.FSig, FunctionDef: deref(tg.FDef)})
	}
	return s
}

var policyCommands = map[byte]string{'*': "ALL", 'r': "SELECT", 'a': "INSERT", 'w': "UPDATE", 'd': "DELETE"}

var triggerStates = map[byte]string{'D': "DISABLE TRIGGER ", 'R': "ENABLE REPLICA TRIGGER ", 'A': "ENABLE ALWAYS TRIGGER "}

// securityCommands are the commands that give shard (qualified, quoted) its table's
// row-level security flags, policies and triggers, in that order; the triggers (with
// their functions) and FORCE ROW LEVEL SECURITY come last (afterCopy counts them): a
// repair runs those only after it copied the rows, which the triggers must not change
// and which a forced policy could hide.
func (t *Table) securityCommands(shard string) ([]string, error) {
	s := t.Security
	if s == nil {
		return nil, nil
	}
	var cmds []string
	alter := "ALTER TABLE " + shard + " "
	if s.RLS {
		cmds = append(cmds, alter+"ENABLE ROW LEVEL SECURITY")
	}
	for _, p := range s.Policies {
		var b strings.Builder
		b.WriteString("CREATE POLICY " + p.QuotedName + " ON " + shard + " AS ")
		if p.Permissive {
			b.WriteString("PERMISSIVE")
		} else {
			b.WriteString("RESTRICTIVE")
		}
		b.WriteString(" FOR " + policyCommands[p.Command])
		if len(p.Roles) > 0 {
			b.WriteString(" TO " + strings.Join(p.Roles, ", "))
		}
		if p.Using != "" {
			b.WriteString(" USING (" + p.Using + ")")
		}
		if p.Check != "" {
			b.WriteString(" WITH CHECK (" + p.Check + ")")
		}
		cmds = append(cmds, b.String())
	}
	after, err := t.afterCopy(shard)
	if err != nil {
		return nil, err
	}
	return append(cmds, after...), nil
}

// afterCopy are the last of securityCommands: the triggers' functions, the triggers and
// their states, and FORCE ROW LEVEL SECURITY.
func (t *Table) afterCopy(shard string) ([]string, error) {
	s := t.Security
	if s == nil {
		return nil, nil
	}
	var cmds []string
	alter := "ALTER TABLE " + shard + " "
	on := " ON " + t.QuotedSchema + "." + t.QuotedName + " "
	for _, tg := range s.Triggers {
		if tg.FunctionDef != "" {
			cmds = append(cmds, doBlock("BEGIN\n"+EnsureFunction(tg.FunctionSchema, tg.FunctionSignature, tg.FunctionDef)+"END"))
		}
		i := strings.Index(tg.Def, on)
		if i < 0 {
			return nil, fmt.Errorf("ddl: could not find the table in the definition of trigger %s of %s.%s", tg.QuotedName, t.QuotedSchema, t.QuotedName)
		}
		cmds = append(cmds, tg.Def[:i]+" ON "+shard+" "+tg.Def[i+len(on):])
		if st, ok := triggerStates[tg.Enabled]; ok {
			cmds = append(cmds, alter+st+tg.QuotedName)
		}
	}
	if s.ForceRLS {
		cmds = append(cmds, alter+"FORCE ROW LEVEL SECURITY")
	}
	return cmds, nil
}

// RepairCommands are CreateCommands split for a repair: create makes the empty shard,
// afterCopy (its triggers and FORCE ROW LEVEL SECURITY) runs once its rows are copied.
func (t *Table) RepairCommands(shardID int64) (create, afterCopy []string, err error) {
	all, err := t.CreateCommands(shardID)
	if err != nil {
		return nil, nil, err
	}
	shard, err := t.QualifiedShardName(shardID)
	if err != nil {
		return nil, nil, err
	}
	after, err := t.afterCopy(shard)
	if err != nil {
		return nil, nil, err
	}
	n := len(all) - len(after)
	return all[:n], all[n:], nil
}

// EnsureFunction is PL/pgSQL, statements for a block's body, that creates the function
// signature (qualified, quoted) of schema from def, pg_get_functiondef's text on the
// coordinator, where it is missing or defined otherwise (its schema too, where missing).
// A concurrent session that creates it first wins.
func EnsureFunction(schema, signature, def string) string {
	return "BEGIN\n" +
		"IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) " + literal(schema) + ") THEN\n" +
		"CREATE SCHEMA " + quoteAlways(schema) + ";\nEND IF;\n" +
		"IF pg_catalog.to_regprocedure(" + literal(signature) + ") IS NULL OR pg_catalog.pg_get_functiondef(pg_catalog.to_regprocedure(" + literal(signature) + ")) " +
		"IS DISTINCT FROM " + literal(def) + " THEN\n" +
		"EXECUTE " + literal(def) + ";\nEND IF;\n" +
		"EXCEPTION WHEN unique_violation OR duplicate_schema OR duplicate_function THEN NULL;\nEND;\n"
}

// DoBlock wraps a PL/pgSQL body in DO, with a dollar quote the body does not contain.
func DoBlock(body string) string { return doBlock(body) }
