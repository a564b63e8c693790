package ddl

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// ObjectCommands returns the commands that create, on a worker, the objects the table's
// shard needs and the worker lacks (its schema, collations, types and the extensions and
// schemas they live in), each a no-op where the object exists: what CreateCommands runs
// before CREATE TABLE, for a schema change that gives a column a type or collation the
// workers may not have yet.
func (t *Table) ObjectCommands() []string {
	var cmds []string
	if t.Schema != "public" {
		cmds = append(cmds, ensureSchema(t.Schema, t.QuotedSchema, t.schemaGrants()...))
	}
	cmds = append(cmds, t.collationCommands()...)
	return append(cmds, t.objectCommands()...)
}

// Collation is a user-defined collation a column of the table uses.
type Collation struct {
	Schema, QuotedSchema, QuotedName string
	// Provider is pg_collation.collprovider: 'c' (libc), 'i' (ICU) or 'd' (default).
	Provider byte
	// Collate and Ctype are libc's locales; Locale is ICU's.
	Collate, Ctype, Locale string
	Deterministic          bool
}

// collationsSQL reads the user-defined collations (not an extension's) of a table's
// columns. to_jsonb of the catalog row keeps it independent of the server's version
// (colliculocale in 15 and 16, colllocale from 17).
const collationsSQL = `
SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('schema', n.nspname, 'qschema', quote_ident(n.nspname),
                                                       'qname', quote_ident(co.collname)) || to_jsonb(co)), '[]')
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
JOIN pg_catalog.pg_namespace n ON n.oid = co.collnamespace
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND co.oid >= 16384
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_collation'::regclass
                  AND d.objid = co.oid AND d.deptype = 'e')`

// loadCollations reads the collations of table relid's columns through q.
func loadCollations(ctx context.Context, q QueryFunc, relid uint32) ([]Collation, error) {
	rows, err := q(ctx, collationsSQL, [][]byte{[]byte(strconv.FormatUint(uint64(relid), 10))})
	if err != nil {
		return nil, fmt.Errorf("ddl: load the collations of relation %d: %w", relid, err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return nil, fmt.Errorf("ddl: load the collations of relation %d: %d rows", relid, len(rows))
	}
	var js []struct {
		Schema        string  `json:"schema"`
		QSchema       string  `json:"qschema"`
		QName         string  `json:"qname"`
		Provider      string  `json:"collprovider"`
		Collate       *string `json:"collcollate"`
		Ctype         *string `json:"collctype"`
		ICULocale     *string `json:"colliculocale"`
		Locale        *string `json:"colllocale"`
		Deterministic bool    `json:"collisdeterministic"`
	}
	if err := json.Unmarshal(rows[0][0], &js); err != nil {
		return nil, fmt.Errorf("ddl: decode the collations of relation %d: %w", relid, err)
	}
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	out := make([]Collation, 0, len(js))
	for _, j := range js {
		c := Collation{Schema: j.Schema, QuotedSchema: j.QSchema, QuotedName: j.QName, Provider: firstByte(j.Provider),
			Collate: str(j.Collate), Ctype: str(j.Ctype), Locale: str(j.ICULocale), Deterministic: j.Deterministic}
		if c.Locale == "" {
			c.Locale = str(j.Locale)
		}
		out = append(out, c)
	}
	return out, nil
}

// pgconnQuery is a QueryFunc over a pgconn connection.
func pgconnQuery(conn *pgconn.PgConn) QueryFunc {
	return func(ctx context.Context, sql string, args [][]byte) ([][][]byte, error) {
		r := conn.ExecParams(ctx, sql, args, nil, nil, nil).Read()
		return r.Rows, r.Err
	}
}

// collationCommands creates the table's collations on a worker that lacks them (CREATE
// COLLATION IF NOT EXISTS, in their schema, made if missing).
func (t *Table) collationCommands() []string {
	var cmds []string
	schemas := map[string]bool{"public": true}
	for _, c := range t.Collations {
		if !schemas[c.Schema] {
			schemas[c.Schema] = true
			cmds = append(cmds, ensureSchema(c.Schema, c.QuotedSchema))
		}
		var opts string
		switch c.Provider {
		case 'i':
			opts = "provider = icu, locale = " + literal(c.Locale)
		default:
			opts = "provider = libc, lc_collate = " + literal(c.Collate) + ", lc_ctype = " + literal(c.Ctype)
		}
		if !c.Deterministic {
			opts += ", deterministic = false"
		}
		cmds = append(cmds, "CREATE COLLATION IF NOT EXISTS "+c.QuotedSchema+"."+c.QuotedName+" ("+opts+")")
	}
	return cmds
}
