package ddl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// QueryFunc runs one query with text parameters in some session and returns its rows'
// values in text form.
type QueryFunc func(ctx context.Context, sql string, args [][]byte) ([][][]byte, error)

// LoadVia is Load (the table with the types and functions it needs) through q, a session that may see the table when no other can (the
// transaction block that created it); major is the coordinator's major version. The
// session's search_path and standard_conforming_strings are set for the reading, locally
// to its transaction, and restored.
func LoadVia(ctx context.Context, q QueryFunc, major int, relid uint32) (t *Table, err error) {
	if relid == 0 {
		return nil, errors.New("ddl: invalid relation OID 0")
	}
	if major < 12 {
		return nil, fmt.Errorf("ddl: PostgreSQL %d is not supported (12 or later is required)", major)
	}
	compression := `''::"char"`
	if major >= 14 {
		compression = "a.attcompression"
	}
	rows, err := q(ctx, `SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('standard_conforming_strings'),
		pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true), pg_catalog.set_config('standard_conforming_strings', 'on', true)`, nil)
	if err != nil {
		return nil, fmt.Errorf("ddl: set search_path: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return nil, errors.New("ddl: unexpected answer reading search_path")
	}
	saved, savedSCS := rows[0][0], rows[0][1]
	defer func() {
		_, rerr := q(context.WithoutCancel(ctx), "SELECT pg_catalog.set_config('search_path', $1, true), pg_catalog.set_config('standard_conforming_strings', $2, true)",
			[][]byte{saved, savedSCS})
		if rerr != nil && err == nil {
			t, err = nil, fmt.Errorf("ddl: restore search_path: %w", rerr)
		}
	}()
	oid := []byte(strconv.FormatUint(uint64(relid), 10))
	rows, err = q(ctx, fmt.Sprintf(loadSQL, compression, aclSQL("c.relacl"), aclSQL("a.attacl"), aclSQL("n.nspacl")), [][]byte{oid})
	if err != nil {
		return nil, fmt.Errorf("ddl: load relation %d: %w", relid, err)
	}
	if len(rows) == 0 || len(rows[0]) == 0 {
		return nil, fmt.Errorf("ddl: relation with OID %d does not exist", relid)
	}
	var jt jsonTable
	if err := json.Unmarshal(rows[0][0], &jt); err != nil {
		return nil, fmt.Errorf("ddl: decode relation %d: %w", relid, err)
	}
	if t, err = fromJSON(relid, &jt); err != nil {
		return nil, err
	}
	rows, err = q(ctx, objectsSQL, [][]byte{oid})
	if err != nil {
		return nil, fmt.Errorf("ddl: load the types of relation %d: %w", relid, err)
	}
	if t.Types, t.Functions, t.Security, err = objectsFrom(relid, t.QuotedSchema+"."+t.QuotedName, rows); err != nil {
		return nil, err
	}
	if t.Collations, err = loadCollations(ctx, q, relid); err != nil {
		return nil, err
	}
	return t, nil
}
