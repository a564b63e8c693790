package ddl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotTable is wrapped by Load's error for a relation that cannot have shards: anything but
// an ordinary, permanent table that is neither a partition nor a system catalog.
var ErrNotTable = errors.New("relation is not an ordinary table")

// Table is what is needed to recreate a coordinator table's shard copies. It is plain data,
// loaded once and rendered per shard; quoted forms follow PostgreSQL's quote_ident.
type Table struct {
	OID          uint32
	Schema       string // not quoted
	Name         string // not quoted
	QuotedSchema string
	QuotedName   string

	Unlogged bool
	// AccessMethod is the quoted table access method, "" for heap.
	AccessMethod string
	// Options are the storage parameters as name='value', toast ones prefixed "toast.".
	Options []string
	// ReplicaIdentity is pg_class.relreplident: 'd' (default), 'n', 'f' or 'i' (the index
	// or constraint whose ReplicaIdentity is set).
	ReplicaIdentity byte

	// Columns are the live columns in attnum order.
	Columns []Column
	// Checks are the CHECK constraints, by name.
	Checks []Check
	// Constraints are the PRIMARY KEY, UNIQUE and EXCLUDE constraints, primary key first.
	Constraints []Constraint
	// Indexes are the valid indexes that back no constraint, by name.
	Indexes []Index

	// Owner is the quoted name of the table's owner. The shard is made the owner's (ALTER
	// TABLE ... OWNER TO, a no-op when the shard's creator is the owner, as pgshard's are).
	Owner string
	// ACL is the table's privileges as grants, nil when the table has the default
	// privileges (a NULL relacl): then the shard keeps its own defaults.
	ACL []Grant
	// SchemaACL is the privileges on the table's schema, given to the schema when a
	// shard's creation creates it on a worker (nil: the default privileges).
	SchemaACL []Grant
	// Comment is the table's comment as a quoted literal, "" for none.
	Comment string

	// Types are the user-defined types the columns need, a type after those it is made
	// of; Functions the user-defined functions the shard's constraints, generated columns,
	// indexes and types call. CreateCommands makes sure they exist on the worker.
	Types     []Type
	Functions []Function
	// Collations are the user-defined collations the columns use.
	Collations []Collation
	// Security are the table's triggers, policies and row-level security flags
	// (objects.go), nil when it has none.
	Security *Security

	// HasUnique reports a unique index (primary key, unique constraint or unique index) or an
	// exclusion constraint: two INSERTs into the table do not commute.
	HasUnique bool
}

// Column is a live column of a table.
type Column struct {
	Num        int16 // attnum
	Name       string
	QuotedName string
	TypeOID    uint32
	TypeName   string // format_type(atttypid, atttypmod), schema-qualified outside pg_catalog
	// Collation is the quoted, qualified collation when it is not the type's default, else "".
	Collation string
	NotNull   bool

	// HasDefault reports a column default (not a generation expression); DefaultExpr is its
	// text (pg_get_expr). DefaultOnShard is true when the default is a plain constant that
	// the shard tables carry; other defaults must be evaluated on the coordinator.
	HasDefault     bool
	DefaultExpr    string
	DefaultOnShard bool

	// Identity is attidentity: 'a' (ALWAYS), 'd' (BY DEFAULT) or 0. Shard columns are plain:
	// the proxy supplies identity values.
	Identity byte
	// Generated is attgenerated: 's' (stored) or 0; GeneratedExpr is its expression, kept on
	// the shard.
	Generated     byte
	GeneratedExpr string

	// Storage is attstorage when it differs from the type's default ('p', 'e', 'm', 'x'),
	// else 0. Statistics is the column's statistics target, nil for the default.
	// Compression is attcompression: 'p' (pglz), 'l' (lz4) or 0 for the default.
	Storage     byte
	Statistics  *int
	Compression byte

	// ACL is the column's own privileges (attacl), nil for none. Comment is its comment as
	// a quoted literal, "" for none.
	ACL     []Grant
	Comment string
}

// Grant is one grantee's privileges on a table or a column, as GRANT renders them: the
// grantor is not kept (the shard's grants are all made by its owner).
type Grant struct {
	// Grantee is the quoted role name, or PUBLIC; Role the role's name (not quoted), ""
	// for PUBLIC.
	Grantee string
	Role    string
	// Privileges is the comma-separated privilege list ("INSERT, SELECT").
	Privileges string
	// Grantable is WITH GRANT OPTION.
	Grantable bool
}

// Check is a CHECK constraint. Its name is not suffixed on shards.
type Check struct {
	Name       string
	QuotedName string
	// Def is pg_get_constraintdef: "CHECK (...)" [NO INHERIT] [NOT VALID].
	Def       string
	Validated bool
	// Comment is the constraint's comment as a quoted literal, "" for none.
	Comment string
}

// Constraint is a PRIMARY KEY ('p'), UNIQUE ('u') or EXCLUDE ('x') constraint. On a shard
// it is named <Name>_<shardid>.
type Constraint struct {
	Type       byte
	Name       string
	QuotedName string
	// Def is the constraint definition (pg_get_constraintdef, completed with the index's
	// storage parameters, which that function leaves out for PRIMARY KEY and UNIQUE).
	Def string
	// Clustered and ReplicaIdentity describe the constraint's index.
	Clustered       bool
	ReplicaIdentity bool
	// Comment is the constraint's comment and IndexComment its index's, as quoted
	// literals, "" for none.
	Comment      string
	IndexComment string
}

// Index is an index that backs no constraint. On a shard it is named <Name>_<shardid>.
type Index struct {
	Name       string
	QuotedName string
	// Def is pg_get_indexdef on the coordinator.
	Def    string
	Unique bool
	// Only reports "ON ONLY" in Def; Body is Def after the table name (" USING ...").
	Only bool
	Body string
	// Clustered and ReplicaIdentity describe the index.
	Clustered       bool
	ReplicaIdentity bool
	// Comment is the index's comment as a quoted literal, "" for none.
	Comment string
}

// loadSQL reads everything in one statement, so under one snapshot. %s is the expression for
// attcompression, which PostgreSQL 13 and older lack; %[2]s and %[3]s the expressions that
// explode the table's and a column's ACL into grants (aclSQL).
const loadSQL = `
SELECT json_build_object(
  'relkind', c.relkind,
  'persistence', c.relpersistence,
  'is_partition', c.relispartition,
  'replident', c.relreplident,
  'schema', n.nspname,
  'name', c.relname,
  'qschema', quote_ident(n.nspname),
  'qname', quote_ident(c.relname),
  'owner', quote_ident(pg_get_userbyid(c.relowner)),
  'acl', %[2]s,
  'schema_acl', %[4]s,
  'comment', (SELECT quote_literal(d.description) FROM pg_description d
              WHERE d.classoid = 'pg_class'::regclass AND d.objoid = c.oid AND d.objsubid = 0),
  'am', (SELECT CASE WHEN am.amname = 'heap' THEN '' ELSE quote_ident(am.amname) END
         FROM pg_am am WHERE am.oid = c.relam),
  'options', (SELECT coalesce(json_agg(quote_ident(o.option_name) || '=' || quote_literal(coalesce(o.option_value, ''))
                                       ORDER BY o.n), '[]')
              FROM pg_options_to_table(c.reloptions) WITH ORDINALITY o(option_name, option_value, n)),
  'toast_options', (SELECT coalesce(json_agg('toast.' || quote_ident(o.option_name) || '=' || quote_literal(coalesce(o.option_value, ''))
                                             ORDER BY o.n), '[]')
                    FROM pg_class tc, pg_options_to_table(tc.reloptions) WITH ORDINALITY o(option_name, option_value, n)
                    WHERE tc.oid = c.reltoastrelid),
  'columns', (SELECT coalesce(json_agg(json_build_object(
                  'num', a.attnum,
                  'name', a.attname,
                  'qname', quote_ident(a.attname),
                  'type_oid', a.atttypid::int8,
                  'type', format_type(a.atttypid, a.atttypmod),
                  'collation', CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
                                 (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                                  FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                                  WHERE co.oid = a.attcollation) END,
                  'not_null', a.attnotnull,
                  'identity', a.attidentity,
                  'generated', a.attgenerated,
                  'expr', pg_get_expr(d.adbin, d.adrelid),
                  'const', coalesce(d.adbin::text LIKE '{CONST %%', false),
                  'storage', CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END,
                  'statistics', CASE WHEN a.attstattarget >= 0 THEN a.attstattarget END,
                  'compression', %[1]s,
                  'acl', %[3]s,
                  'comment', (SELECT quote_literal(ds.description) FROM pg_description ds
                              WHERE ds.classoid = 'pg_class'::regclass AND ds.objoid = c.oid AND ds.objsubid = a.attnum)
                ) ORDER BY a.attnum), '[]')
              FROM pg_attribute a
              JOIN pg_type t ON t.oid = a.atttypid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  'checks', (SELECT coalesce(json_agg(json_build_object(
                 'name', co.conname,
                 'qname', quote_ident(co.conname),
                 'def', pg_get_constraintdef(co.oid),
                 'validated', co.convalidated,
                 'comment', (SELECT quote_literal(ds.description) FROM pg_description ds
                             WHERE ds.classoid = 'pg_constraint'::regclass AND ds.objoid = co.oid AND ds.objsubid = 0)
               ) ORDER BY co.conname), '[]')
             FROM pg_constraint co
             WHERE co.conrelid = c.oid AND co.contype = 'c'),
  'constraints', (SELECT coalesce(json_agg(json_build_object(
                      'type', co.contype,
                      'name', co.conname,
                      'qname', quote_ident(co.conname),
                      'def', pg_get_constraintdef(co.oid),
                      'deferrable', co.condeferrable,
                      'deferred', co.condeferred,
                      'index_options', (SELECT string_agg(quote_ident(o.option_name) || '=' || quote_literal(coalesce(o.option_value, '')),
                                                          ', ' ORDER BY o.n)
                                        FROM pg_class ic, pg_options_to_table(ic.reloptions) WITH ORDINALITY o(option_name, option_value, n)
                                        WHERE ic.oid = co.conindid),
                      'clustered', coalesce(i.indisclustered, false),
                      'replident', coalesce(i.indisreplident, false),
                      'comment', (SELECT quote_literal(ds.description) FROM pg_description ds
                                  WHERE ds.classoid = 'pg_constraint'::regclass AND ds.objoid = co.oid AND ds.objsubid = 0),
                      'index_comment', (SELECT quote_literal(ds.description) FROM pg_description ds
                                        WHERE ds.classoid = 'pg_class'::regclass AND ds.objoid = co.conindid AND ds.objsubid = 0)
                    ) ORDER BY co.contype <> 'p', co.conname), '[]')
                  FROM pg_constraint co
                  LEFT JOIN pg_index i ON i.indexrelid = co.conindid
                  WHERE co.conrelid = c.oid AND co.contype IN ('p', 'u', 'x')),
  'indexes', (SELECT coalesce(json_agg(json_build_object(
                  'name', ic.relname,
                  'qname', quote_ident(ic.relname),
                  'def', pg_get_indexdef(i.indexrelid),
                  'unique', i.indisunique,
                  'clustered', i.indisclustered,
                  'replident', i.indisreplident,
                  'comment', (SELECT quote_literal(ds.description) FROM pg_description ds
                              WHERE ds.classoid = 'pg_class'::regclass AND ds.objoid = ic.oid AND ds.objsubid = 0)
                ) ORDER BY ic.relname), '[]')
              FROM pg_index i
              JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = c.oid AND i.indisvalid
                AND NOT EXISTS (SELECT 1 FROM pg_constraint co
                                WHERE co.conrelid = i.indrelid AND co.conindid = i.indexrelid
                                  AND co.contype IN ('p', 'u', 'x'))),
  'has_unique', EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion))
)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1`

// aclSQL is the expression that explodes an ACL (acl, an aclitem[] expression) into a JSON
// array of grants: one per grantee (quoted, or PUBLIC) and grant option, with its privileges
// (DISTINCT: several grantors may have granted one privilege); NULL for a NULL ACL (the
// default privileges).
func aclSQL(acl string) string {
	return `CASE WHEN ` + acl + ` IS NOT NULL THEN
                 (SELECT coalesce(json_agg(json_build_object('grantee', g.grantee, 'role', g.role, 'privs', g.privs, 'grantable', g.grantable)
                                           ORDER BY g.grantee, g.grantable), '[]')
                  FROM (SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END AS grantee,
                               CASE WHEN x.grantee <> 0 THEN pg_get_userbyid(x.grantee) END AS role,
                               x.is_grantable AS grantable,
                               string_agg(DISTINCT x.privilege_type, ', ' ORDER BY x.privilege_type) AS privs
                        FROM aclexplode(` + acl + `) x GROUP BY 1, 2, 3) g) END`
}

// Shapes of loadSQL's JSON.
type (
	jsonTable struct {
		Relkind      string       `json:"relkind"`
		Persistence  string       `json:"persistence"`
		IsPartition  bool         `json:"is_partition"`
		Replident    string       `json:"replident"`
		Schema       string       `json:"schema"`
		Name         string       `json:"name"`
		QSchema      string       `json:"qschema"`
		QName        string       `json:"qname"`
		Owner        string       `json:"owner"`
		ACL          *[]jsonGrant `json:"acl"`
		SchemaACL    *[]jsonGrant `json:"schema_acl"`
		Comment      *string      `json:"comment"`
		AM           *string      `json:"am"`
		Options      []string     `json:"options"`
		ToastOptions []string     `json:"toast_options"`
		Columns      []jsonColumn `json:"columns"`
		Checks       []jsonCheck  `json:"checks"`
		Constraints  []jsonCons   `json:"constraints"`
		Indexes      []jsonIndex  `json:"indexes"`
		HasUnique    bool         `json:"has_unique"`
	}
	jsonColumn struct {
		Num         int16        `json:"num"`
		Name        string       `json:"name"`
		QName       string       `json:"qname"`
		TypeOID     uint32       `json:"type_oid"`
		Type        string       `json:"type"`
		Collation   *string      `json:"collation"`
		NotNull     bool         `json:"not_null"`
		Identity    string       `json:"identity"`
		Generated   string       `json:"generated"`
		Expr        *string      `json:"expr"`
		Const       bool         `json:"const"`
		Storage     *string      `json:"storage"`
		Statistics  *int         `json:"statistics"`
		Compression string       `json:"compression"`
		ACL         *[]jsonGrant `json:"acl"`
		Comment     *string      `json:"comment"`
	}
	jsonGrant struct {
		Grantee   string `json:"grantee"`
		Role      string `json:"role"`
		Privs     string `json:"privs"`
		Grantable bool   `json:"grantable"`
	}
	jsonCheck struct {
		Name      string  `json:"name"`
		QName     string  `json:"qname"`
		Def       string  `json:"def"`
		Validated bool    `json:"validated"`
		Comment   *string `json:"comment"`
	}
	jsonCons struct {
		Type         string  `json:"type"`
		Name         string  `json:"name"`
		QName        string  `json:"qname"`
		Def          string  `json:"def"`
		Deferrable   bool    `json:"deferrable"`
		Deferred     bool    `json:"deferred"`
		IndexOptions *string `json:"index_options"`
		Clustered    bool    `json:"clustered"`
		Replident    bool    `json:"replident"`
		Comment      *string `json:"comment"`
		IndexComment *string `json:"index_comment"`
	}
	jsonIndex struct {
		Name      string  `json:"name"`
		QName     string  `json:"qname"`
		Def       string  `json:"def"`
		Unique    bool    `json:"unique"`
		Clustered bool    `json:"clustered"`
		Replident bool    `json:"replident"`
		Comment   *string `json:"comment"`
	}
)

// Load reads the definition of the table with the given OID from the coordinator's catalogs.
// conn is connected to the coordinator database and must not be in a failed transaction.
//
// Load sets the session's search_path to pg_catalog while it reads, so that every type,
// function and operator outside pg_catalog in the deparsed definitions is schema-qualified
// and means the same on a worker whatever its search_path; the previous search_path is
// restored before Load returns.
func Load(ctx context.Context, conn *pgconn.PgConn, relid uint32) (t *Table, err error) {
	if relid == 0 {
		return nil, errors.New("ddl: invalid relation OID 0")
	}
	major, err := serverMajor(conn)
	if err != nil {
		return nil, err
	}
	compression := `''::"char"`
	if major >= 14 {
		compression = "a.attcompression"
	}

	// standard_conforming_strings on: the deparsed definitions' strings are then written
	// as PostgreSQL reads them by default (CreateCommands makes them portable).
	res, err := conn.Exec(ctx, "SHOW search_path; SHOW standard_conforming_strings; "+
		"SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false), pg_catalog.set_config('standard_conforming_strings', 'on', false)").ReadAll()
	if err != nil {
		return nil, fmt.Errorf("ddl: set search_path: %w", err)
	}
	if len(res) != 3 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 || len(res[1].Rows) != 1 || len(res[1].Rows[0]) != 1 {
		return nil, errors.New("ddl: unexpected answer to SHOW search_path")
	}
	saved, savedSCS := string(res[0].Rows[0][0]), string(res[1].Rows[0][0])
	defer func() {
		// Restore even when ctx is done; a broken connection makes this fail fast.
		rctx := context.WithoutCancel(ctx)
		rerr := conn.ExecParams(rctx, "SELECT pg_catalog.set_config('search_path', $1, false), pg_catalog.set_config('standard_conforming_strings', $2, false)",
			[][]byte{[]byte(saved), []byte(savedSCS)}, nil, nil, nil).Read().Err
		if rerr != nil && err == nil {
			t, err = nil, fmt.Errorf("ddl: restore search_path: %w", rerr)
		}
	}()

	r := conn.ExecParams(ctx, fmt.Sprintf(loadSQL, compression, aclSQL("c.relacl"), aclSQL("a.attacl"), aclSQL("n.nspacl")),
		[][]byte{[]byte(strconv.FormatUint(uint64(relid), 10))}, nil, nil, nil).Read()
	if r.Err != nil {
		return nil, fmt.Errorf("ddl: load relation %d: %w", relid, r.Err)
	}
	if len(r.Rows) == 0 {
		return nil, fmt.Errorf("ddl: relation with OID %d does not exist", relid)
	}
	var jt jsonTable
	if err := json.Unmarshal(r.Rows[0][0], &jt); err != nil {
		return nil, fmt.Errorf("ddl: decode relation %d: %w", relid, err)
	}
	if t, err = fromJSON(relid, &jt); err != nil {
		return nil, err
	}
	if t.Types, t.Functions, t.Security, err = loadObjects(ctx, conn, relid, t.QuotedSchema+"."+t.QuotedName); err != nil {
		return nil, err
	}
	if t.Collations, err = loadCollations(ctx, pgconnQuery(conn), relid); err != nil {
		return nil, err
	}
	return t, nil
}

// serverMajor is the coordinator's major version, from the server_version parameter.
func serverMajor(conn *pgconn.PgConn) (int, error) {
	v := conn.ParameterStatus("server_version")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(v)
	}
	major, err := strconv.Atoi(v[:end])
	if err != nil {
		return 0, fmt.Errorf("ddl: unrecognized server_version %q: %w", v, err)
	}
	if major < 12 {
		return 0, fmt.Errorf("ddl: PostgreSQL %s is not supported (12 or later is required)", v)
	}
	return major, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// grants converts a loaded ACL; nil stays nil (the default privileges), an empty ACL (all
// privileges revoked, the owner's too) becomes an empty, non-nil slice.
func grants(acl *[]jsonGrant) []Grant {
	if acl == nil {
		return nil
	}
	out := make([]Grant, 0, len(*acl))
	for _, g := range *acl {
		out = append(out, Grant{Grantee: g.Grantee, Role: g.Role, Privileges: g.Privs, Grantable: g.Grantable})
	}
	return out
}

func firstByte(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

var relkinds = map[string]string{
	"i": "an index",
	"S": "a sequence",
	"t": "a TOAST table",
	"v": "a view",
	"m": "a materialized view",
	"c": "a composite type",
	"f": "a foreign table",
	"p": "a partitioned table",
	"I": "a partitioned index",
}

func fromJSON(relid uint32, jt *jsonTable) (*Table, error) {
	display := jt.QSchema + "." + jt.QName
	if jt.Relkind != "r" {
		kind := relkinds[jt.Relkind]
		if kind == "" {
			kind = fmt.Sprintf("of relkind %q", jt.Relkind)
		}
		return nil, fmt.Errorf("ddl: %w: %s is %s", ErrNotTable, display, kind)
	}
	if jt.IsPartition {
		return nil, fmt.Errorf("ddl: %w: %s is a partition", ErrNotTable, display)
	}
	if jt.Schema == "pg_catalog" || jt.Schema == "pg_toast" {
		return nil, fmt.Errorf("ddl: %w: %s is a system catalog", ErrNotTable, display)
	}
	if jt.Persistence == "t" {
		return nil, fmt.Errorf("ddl: %w: %s is a temporary table", ErrNotTable, display)
	}
	t := &Table{
		OID:             relid,
		Schema:          jt.Schema,
		Name:            jt.Name,
		QuotedSchema:    jt.QSchema,
		QuotedName:      jt.QName,
		Unlogged:        jt.Persistence == "u",
		ReplicaIdentity: firstByte(jt.Replident),
		HasUnique:       jt.HasUnique,
		Owner:           jt.Owner,
		ACL:             grants(jt.ACL),
		SchemaACL:       grants(jt.SchemaACL),
		Comment:         deref(jt.Comment),
	}
	if jt.AM != nil {
		t.AccessMethod = *jt.AM
	}
	t.Options = append(append([]string{}, jt.Options...), jt.ToastOptions...)
	for _, jc := range jt.Columns {
		c := Column{
			Num:         jc.Num,
			Name:        jc.Name,
			QuotedName:  jc.QName,
			TypeOID:     jc.TypeOID,
			TypeName:    jc.Type,
			NotNull:     jc.NotNull,
			Identity:    firstByte(jc.Identity),
			Generated:   firstByte(jc.Generated),
			Statistics:  jc.Statistics,
			Compression: firstByte(jc.Compression),
			ACL:         grants(jc.ACL),
			Comment:     deref(jc.Comment),
		}
		if jc.Collation != nil {
			c.Collation = *jc.Collation
		}
		if jc.Storage != nil {
			c.Storage = firstByte(*jc.Storage)
		}
		if jc.Expr != nil {
			if c.Generated != 0 {
				c.GeneratedExpr = *jc.Expr
			} else {
				c.HasDefault = true
				c.DefaultExpr = *jc.Expr
				c.DefaultOnShard = jc.Const
			}
		}
		if c.Generated != 0 && c.Generated != 's' {
			return nil, fmt.Errorf("ddl: column %s of %s: unsupported generated column kind %q", c.QuotedName, display, c.Generated)
		}
		t.Columns = append(t.Columns, c)
	}
	for _, jc := range jt.Checks {
		t.Checks = append(t.Checks, Check{Name: jc.Name, QuotedName: jc.QName, Def: jc.Def, Validated: jc.Validated, Comment: deref(jc.Comment)})
	}
	for _, jc := range jt.Constraints {
		def := jc.Def
		typ := firstByte(jc.Type)
		if (typ == 'p' || typ == 'u') && jc.IndexOptions != nil && *jc.IndexOptions != "" {
			var err error
			if def, err = addIndexOptions(def, *jc.IndexOptions, jc.Deferrable, jc.Deferred); err != nil {
				return nil, fmt.Errorf("ddl: constraint %s of %s: %w", jc.QName, display, err)
			}
		}
		t.Constraints = append(t.Constraints, Constraint{
			Type:            typ,
			Name:            jc.Name,
			QuotedName:      jc.QName,
			Def:             def,
			Clustered:       jc.Clustered,
			ReplicaIdentity: jc.Replident,
			Comment:         deref(jc.Comment),
			IndexComment:    deref(jc.IndexComment),
		})
	}
	qualified := jt.QSchema + "." + jt.QName
	for _, ji := range jt.Indexes {
		unique, only, body, err := parseIndexDef(ji.Def, ji.QName, qualified)
		if err != nil {
			return nil, fmt.Errorf("ddl: index %s of %s: %w", ji.QName, display, err)
		}
		if unique != ji.Unique {
			return nil, fmt.Errorf("ddl: index %s of %s: definition %q disagrees with pg_index.indisunique", ji.QName, display, ji.Def)
		}
		t.Indexes = append(t.Indexes, Index{
			Name:            ji.Name,
			QuotedName:      ji.QName,
			Def:             ji.Def,
			Unique:          ji.Unique,
			Only:            only,
			Body:            body,
			Clustered:       ji.Clustered,
			ReplicaIdentity: ji.Replident,
			Comment:         deref(ji.Comment),
		})
	}
	return t, nil
}

// addIndexOptions inserts " WITH (options)" into a PRIMARY KEY or UNIQUE constraint
// definition from pg_get_constraintdef, which omits the index's storage parameters. Such a
// definition ends with the constraint's index columns and INCLUDE list, then
// " DEFERRABLE" and " INITIALLY DEFERRED" as the constraint has them: the parameters go
// between the two.
func addIndexOptions(def, options string, deferrable, deferred bool) (string, error) {
	suffix := ""
	if deferrable {
		suffix += " DEFERRABLE"
	}
	if deferred {
		suffix += " INITIALLY DEFERRED"
	}
	head, ok := strings.CutSuffix(def, suffix)
	if !ok || !strings.HasSuffix(head, ")") {
		return "", fmt.Errorf("unexpected constraint definition %q", def)
	}
	return head + " WITH (" + options + ")" + suffix, nil
}
