package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
)

// blockDistSQL creates the functions that write a table's distribution metadata in the
// calling session's transaction (distributing inside a transaction block).
//
//go:embed blockdist.sql
var blockDistSQL string

// QueryFunc runs one query with text parameters in some session and returns its rows'
// values in text form (NULL is nil).
type QueryFunc func(ctx context.Context, sql string, args [][]byte) ([][][]byte, error)

// LoadTableVia reads the description of table relid (not its shards) as Load would
// describe a distributed table, through q: a session that may see the table when no
// other can (the transaction block that created it). method and key are its partition
// method and column. The session's search_path and standard_conforming_strings are set
// for the reading (as Load sets them) and restored, locally to its transaction.
func LoadTableVia(ctx context.Context, q QueryFunc, relid uint32, method byte, key string) (t *metadata.Table, err error) {
	rows, err := q(ctx, `SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('standard_conforming_strings'),
		pg_catalog.set_config('search_path', 'pg_catalog', true), pg_catalog.set_config('standard_conforming_strings', 'on', true)`, nil)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 || len(rows[0]) < 2 {
		return nil, errors.New("store: unexpected answer reading the session's settings")
	}
	savedPath, savedSCS := rows[0][0], rows[0][1]
	defer func() {
		_, rerr := q(context.WithoutCancel(ctx), `SELECT pg_catalog.set_config('search_path', $1, true), pg_catalog.set_config('standard_conforming_strings', $2, true)`,
			[][]byte{savedPath, savedSCS})
		if rerr != nil && err == nil {
			t, err = nil, rerr
		}
	}()
	oid := []byte(strconv.FormatUint(uint64(relid), 10))
	rows, err = q(ctx, `SELECT n.nspname, c.relname,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid`, [][]byte{oid})
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("store: relation %d does not exist", relid)
	}
	t = &metadata.Table{OID: relid, Schema: string(rows[0][0]), Name: string(rows[0][1]), Method: method, Key: key,
		KeyIndex: -1, HasUnique: string(rows[0][2]) == "t"}
	const allTables = "a.attrelid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)"
	if !strings.Contains(columnsSQL, allTables) {
		return nil, errors.New("store: the columns query changed")
	}
	rows, err = q(ctx, strings.Replace(columnsSQL, allTables, "a.attrelid = $1::oid", 1), [][]byte{oid})
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		if len(r) < 15 {
			return nil, errors.New("store: short row describing a column")
		}
		var c metadata.Column
		c.Name = string(r[1])
		c.TypeOID = parseOID(r[2])
		c.HashType = parseOID(r[3])
		c.TypeName = string(r[4])
		c.NotNull = string(r[5]) == "t"
		ident, gen := string(r[6]), string(r[7])
		c.Default = string(r[8])
		c.DefaultOnShard = string(r[9]) == "t"
		c.ByteOrder = string(r[10]) == "t"
		c.BaseName = string(r[11])
		typmod, _ := strconv.ParseInt(string(r[12]), 10, 32)
		c.Typmod = int32(typmod)
		c.LengthFunc = string(r[13])
		c.LengthArgs, _ = strconv.Atoi(string(r[14]))
		portableColumn(&c, ident, gen)
		if c.Name == key {
			t.KeyIndex = len(t.Columns)
		}
		t.Columns = append(t.Columns, c)
	}
	const allKeys = "i.indrelid IN (SELECT relation_id FROM pgs_distribution_metadata.partition)"
	if !strings.Contains(primaryKeysSQL, allKeys) {
		return nil, errors.New("store: the primary keys query changed")
	}
	rows, err = q(ctx, strings.Replace(primaryKeysSQL, allKeys, "i.indrelid = $1::oid", 1), [][]byte{oid})
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		if i := t.ColumnIndex(string(r[1])); i >= 0 {
			t.PrimaryKey = append(t.PrimaryKey, i)
		}
	}
	return t, nil
}

func parseOID(b []byte) uint32 {
	n, _ := strconv.ParseUint(string(b), 10, 32)
	return uint32(n)
}
