package tests

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// keyType is a partition-key type of the matrix: the column's type as declared, the base
// type a binary parameter is encoded as, the expression PostgreSQL's own hash function
// computes for a value k of the column, and values to write (some of which PostgreSQL
// rejects for the column: too long, out of range).
type keyType struct {
	name   string // short name for table names and messages
	decl   string // column type as declared (or a domain created by setup)
	setup  string // DDL run first (domains), with %s for a unique suffix
	base   string // the base type without modifier (binary parameters are sent as it)
	hash   string // PostgreSQL's hash of k, as the type's default hash opclass computes it
	values []string
}

var keyTypes = []keyType{
	{name: "int2", decl: "smallint", base: "int2", hash: "hashint2(k)", values: []string{"42", "-7", "40000"}},
	{name: "int4", decl: "integer", base: "int4", hash: "hashint4(k)", values: []string{"12345", "-1", " 17 "}},
	{name: "int8", decl: "bigint", base: "int8", hash: "hashint8(k)", values: []string{"9000000000", "-3"}},
	{name: "numeric", decl: "numeric", base: "numeric", hash: "hash_numeric(k)", values: []string{"1.25", "1.250", "-0.0", "1e3"}},
	{name: "numeric51", decl: "numeric(5,1)", base: "numeric", hash: "hash_numeric(k)", values: []string{"1.25", "12.35", "-1.05", "9999.96", "123456"}},
	{name: "numeric20", decl: "numeric(4,0)", base: "numeric", hash: "hash_numeric(k)", values: []string{"2.5", "99.49", "-0.4"}},
	{name: "float4", decl: "real", base: "float4", hash: "hashfloat4(k)", values: []string{"1.5", "-0", "0.1"}},
	{name: "float8", decl: "double precision", base: "float8", hash: "hashfloat8(k)", values: []string{"2.25", "1e300", "0.1"}},
	{name: "text", decl: "text", base: "text", hash: "hashtext(k)", values: []string{"tomato", "a b  ", "é"}},
	{name: "varchar", decl: "varchar", base: "varchar", hash: "hashtext(k)", values: []string{"hello  ", "x"}},
	{name: "varchar5", decl: "varchar(5)", base: "varchar", hash: "hashtext(k)", values: []string{"abc", "abc    ", "abcdefg", "éèêëē", "abcde  "}},
	{name: "char", decl: "char", base: "bpchar", hash: "hashbpchar(k)", values: []string{"x", "y  ", "xy"}},
	{name: "char10", decl: "char(10)", base: "bpchar", hash: "hashbpchar(k)", values: []string{"xyz", "abc       ", "hello", "abcdefghijklm", "abcdefghij   "}},
	{name: "bpchar", decl: "bpchar", base: "bpchar", hash: "hashbpchar(k)", values: []string{"xyz  ", "q"}},
	{name: "name", decl: "name", base: "name", hash: "hashname(k)", values: []string{"somename", strings.Repeat("n", 70)}},
	{name: "bytea", decl: "bytea", base: "bytea", hash: "hashtext(convert_from(k, 'UTF8'))", values: []string{`\x0102`, "abc", `\xc3a9`}},
	{name: "bool", decl: "boolean", base: "bool", hash: `hashchar(k::int::"char")`, values: []string{"true", "f"}},
	{name: "qchar", decl: `"char"`, base: `"char"`, hash: "hashchar(k)", values: []string{"q", "zz"}},
	{name: "oid", decl: "oid", base: "oid", hash: "hashoid(k)", values: []string{"123", "4000000000"}},
	{name: "uuid", decl: "uuid", base: "uuid", hash: "uuid_hash(k)", values: []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{A0EEBC999C0B4EF8BB6D6BB9BD380A12}"}},
	{name: "date", decl: "date", base: "date", hash: "hashint4(k - date '2000-01-01')", values: []string{"2024-01-02", "1999-12-31"}},
	{name: "time", decl: "time", base: "time", hash: "time_hash(k)", values: []string{"12:34:56.789", "23:59:59.9999999"}},
	{name: "time0", decl: "time(0)", base: "time", hash: "time_hash(k)", values: []string{"12:34:56.789", "12:34:56.2"}},
	{name: "timestamp", decl: "timestamp", base: "timestamp", hash: "timestamp_hash(k)", values: []string{"2024-01-02 03:04:05.678901", "2024-01-02"}},
	{name: "timestamp2", decl: "timestamp(2)", base: "timestamp", hash: "timestamp_hash(k)", values: []string{"2024-01-02 03:04:05.678901", "2024-01-02 03:04:05.005"}},
	{name: "timestamptz", decl: "timestamptz", base: "timestamptz", hash: "timestamp_hash(k AT TIME ZONE 'UTC')", values: []string{"2024-01-02 03:04:05.5+02", "2024-06-01 12:00:00.123456+00"}},
	{name: "timestamptz0", decl: "timestamptz(0)", base: "timestamptz", hash: "timestamp_hash(k AT TIME ZONE 'UTC')", values: []string{"2024-01-02 03:04:05.5+02", "2024-06-01 12:00:00.4+00"}},
	// Domains over the types, with and without modifiers, and a domain over a domain.
	{name: "dint", decl: "dint_%s", setup: "CREATE DOMAIN dint_%s AS integer CHECK (VALUE > 0)", base: "int4", hash: "hashint4(k)", values: []string{"5", "-5"}},
	{name: "dvarchar", decl: "dvc_%s", setup: "CREATE DOMAIN dvc_%s AS varchar(4)", base: "varchar", hash: "hashtext(k)", values: []string{"ab", "abcd  ", "abcdef"}},
	{name: "dchar", decl: "dch_%s", setup: "CREATE DOMAIN dch_%s AS char(6)", base: "bpchar", hash: "hashbpchar(k)", values: []string{"ab", "abcdefgh"}},
	{name: "dnumeric", decl: "dnum_%s", setup: "CREATE DOMAIN dnum_%s AS numeric(4,2)", base: "numeric", hash: "hash_numeric(k)", values: []string{"1.005", "99.999"}},
	{name: "dts", decl: "dts_%s", setup: "CREATE DOMAIN dts_%s AS timestamp(0)", base: "timestamp", hash: "timestamp_hash(k)", values: []string{"2024-01-02 03:04:05.5"}},
	{name: "ddomain", decl: "ddd_%s", setup: "CREATE DOMAIN ddd0_%[1]s AS varchar(6); CREATE DOMAIN ddd_%[1]s AS ddd0_%[1]s CHECK (VALUE <> 'no')", base: "varchar", hash: "hashtext(k)", values: []string{"ok", "no", "abcdefgh"}},
	{name: "dtext", decl: "dtext_%s", setup: "CREATE DOMAIN dtext_%s AS text", base: "text", hash: "hashtext(k)", values: []string{"tomato"}},
}

// keyWay is one way of writing a value into the partition key: it runs the write for
// value v (m and m+1 are the row numbers it may use) on conn against table tbl, whose key
// column has type decl, and returns the number of rows it meant to write.
type keyWay struct {
	name string
	run  func(ctx context.Context, conn *pgx.Conn, tbl, decl, base, v string, m int) (int, error)
	// only restricts the way to values it can write (nil: all).
	only func(v string) bool
}

var bareNumber = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?(e[0-9]+)?$`)

func lit(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

func execSimple(ctx context.Context, conn *pgx.Conn, sql string) error {
	_, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	return err
}

// copyText escapes a value for COPY's text format.
func copyText(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(v)
}

// binaryOf returns the binary send form of v read as type base, from a plain server.
func binaryOf(ctx context.Context, plain *pgx.Conn, base, v string) ([]byte, error) {
	rr := plain.PgConn().ExecParams(ctx, "SELECT $1::"+base, [][]byte{[]byte(v)}, nil, nil, []int16{1}).Read()
	if rr.Err != nil {
		return nil, rr.Err
	}
	return rr.Rows[0][0], nil
}

func keyWays(plain *pgx.Conn) []keyWay {
	return []keyWay{
		{name: "quoted literal", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) VALUES (%s, %d)", tbl, lit(v), m))
		}},
		{name: "Unicode-escaped literal", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			var u strings.Builder
			for _, r := range v {
				fmt.Fprintf(&u, "\\%04X", r)
			}
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) VALUES (U&'%s', %d)", tbl, u.String(), m))
		}},
		{name: "bare literal", only: func(v string) bool { return bareNumber.MatchString(v) || v == "true" }, run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) VALUES (%s, %d)", tbl, v, m))
		}},
		{name: "cast to the column type", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) VALUES (%s::%s, %d)", tbl, lit(v), decl, m))
		}},
		{name: "cast to text", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) VALUES (CAST(%s AS text), %d)", tbl, lit(v), m))
		}},
		{name: "expression", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) VALUES ((SELECT %s::%s), %d)", tbl, lit(v), base, m))
		}},
		{name: "columns in another order", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (m, k) VALUES (%d, %s)", tbl, m, lit(v)))
		}},
		{name: "multi-row VALUES", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 2, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) VALUES (%s, %d), (%s::%s, %d)", tbl, lit(v), m, lit(v), base, m+1))
		}},
		{name: "extended protocol, literal", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, c.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO %s (k, m) VALUES (%s, %d)", tbl, lit(v), m), nil, nil, nil, nil).Read().Err
		}},
		{name: "extended protocol, text parameter", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, c.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO %s (k, m) VALUES ($1, $2)", tbl), [][]byte{[]byte(v), []byte(fmt.Sprint(m))}, nil, nil, nil).Read().Err
		}},
		{name: "extended protocol, text parameter of type text", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, c.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO %s (k, m) VALUES ($1, $2)", tbl), [][]byte{[]byte(v), []byte(fmt.Sprint(m))}, []uint32{25, 23}, nil, nil).Read().Err
		}},
		{name: "extended protocol, parameter in subqueries of two rows", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 2, c.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO %s (k, m) VALUES ((SELECT $1::%s), $2), ((SELECT $1::%s), $3)", tbl, base, base),
				[][]byte{[]byte(v), []byte(fmt.Sprint(m)), []byte(fmt.Sprint(m + 1))}, nil, nil, nil).Read().Err
		}},
		{name: "extended protocol, binary parameter", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			b, err := binaryOf(ctx, plain, base, v)
			if err != nil {
				return 0, err
			}
			mb := []byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
			return 1, c.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO %s (k, m) VALUES ($1, $2)", tbl), [][]byte{b, mb}, nil, []int16{1, 1}, nil).Read().Err
		}},
		{name: "PREPARE with the column's type", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("PREPARE %[5]s(%[2]s, int) AS INSERT INTO %[1]s (k, m) VALUES ($1, $2); EXECUTE %[5]s(%[3]s, %[4]d)", tbl, decl, lit(v), m, uniqueName("kp")))
		}},
		{name: "PREPARE with text", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("PREPARE %[4]s(text, int) AS INSERT INTO %[1]s VALUES ($1, $2); EXECUTE %[4]s(%[2]s, %[3]d)", tbl, lit(v), m, uniqueName("kq")))
		}},
		{name: "INSERT ... SELECT of a literal", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) SELECT %s, %d", tbl, lit(v), m))
		}},
		{name: "INSERT ... SELECT of a base-type value", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			return 1, execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (k, m) SELECT x, %d FROM (SELECT %s::%s AS x) s", tbl, m, lit(v), base))
		}},
		{name: "COPY text", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			_, err := c.PgConn().CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%s\t%d\n", copyText(v), m)), fmt.Sprintf("COPY %s (k, m) FROM STDIN", tbl))
			return 1, err
		}},
		{name: "COPY CSV", run: func(ctx context.Context, c *pgx.Conn, tbl, decl, base, v string, m int) (int, error) {
			_, err := c.PgConn().CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%d,\"%s\"\n", m, strings.ReplaceAll(v, `"`, `""`))), fmt.Sprintf("COPY %s (m, k) FROM STDIN WITH (FORMAT csv)", tbl))
			return 1, err
		}},
	}
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// storedKeys reads (m, k::text) of a table, ordered by m.
func storedKeys(ctx context.Context, t *testing.T, c *pgx.Conn, tbl string) map[int]string {
	t.Helper()
	rows, err := c.Query(ctx, fmt.Sprintf("SELECT m, k::text FROM %s", tbl), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("read %s: %v", tbl, err)
	}
	out := map[int]string{}
	for rows.Next() {
		var m int
		var k string
		if err := rows.Scan(&m, &k); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[m]; dup {
			t.Errorf("%s: row %d twice", tbl, m)
		}
		out[m] = k
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryWayAValueReachesTheKey is the class test for partition keys: for every hashable
// type (with and without type modifiers, and domains), every way of writing a value into
// the key stores what a plain PostgreSQL table stores (or fails with the same SQLSTATE),
// and the row sits on the shard whose range holds PostgreSQL's own hash of the stored
// value (computed on the worker).
func TestEveryWayAValueReachesTheKey(t *testing.T) {
	conn := connect(t)
	plain := connectServer(t, env.C.Coordinator)
	ways := keyWays(plain)
	for _, kt := range keyTypes {
		t.Run(kt.name, func(t *testing.T) { checkKeyType(t, conn, plain, ways, kt) })
	}
}

// checkKeyType writes kt's values in every way into a distributed table and a plain one
// and compares what each stores, what reads by key find, and where the rows sit.
func checkKeyType(t *testing.T, conn, plain *pgx.Conn, ways []keyWay, kt keyType) {
	ctx := context.Background()
	suffix := uniqueName("k")
	decl := kt.decl
	if kt.setup != "" {
		decl = fmt.Sprintf(kt.decl, suffix)
		mustExec(t, conn, fmt.Sprintf(kt.setup, suffix))
		for _, w := range env.C.Workers {
			if _, err := w.Exec(ctx, "postgres", fmt.Sprintf(kt.setup, suffix)); err != nil {
				t.Fatal(err)
			}
		}
	}
	dist, ref := "kd_"+kt.name+"_"+suffix, "kp_"+kt.name+"_"+suffix
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k %s NOT NULL, m int)", dist, decl), dist, "k", 4, 2)
	mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s (k %s NOT NULL, m int)", ref, decl))
	m := 0
	for _, v := range kt.values {
		for _, w := range ways {
			if w.only != nil && !w.only(v) {
				continue
			}
			m += 10
			_, perr := w.run(ctx, plain, ref, decl, kt.base, v, m)
			_, derr := w.run(ctx, conn, dist, decl, kt.base, v, m)
			if ps, ds := sqlstate(perr), sqlstate(derr); ps != ds {
				t.Errorf("%s %q, %s: pgshard %s (%v), PostgreSQL %s (%v)", decl, v, w.name, ds, derr, ps, perr)
			}
		}
	}
	want, got := storedKeys(ctx, t, plain, ref), storedKeys(ctx, t, conn, dist)
	var ms []int
	for m := range want {
		ms = append(ms, m)
	}
	for m := range got {
		if _, ok := want[m]; !ok {
			ms = append(ms, m)
		}
	}
	sort.Ints(ms)
	for _, m := range ms {
		w, wok := want[m]
		g, gok := got[m]
		if w != g || wok != gok {
			v, way := caseOf(kt, ways, m)
			t.Errorf("%s %q, %s: pgshard stored %q (%v), PostgreSQL %q (%v)", decl, v, way, g, gok, w, wok)
		}
	}
	// Reads and deletes by key find the rows: the WHERE value is hashed as the
	// comparison reads it.
	for _, v := range kt.values {
		for _, q := range []struct {
			name, sql string
			args      []any
		}{
			{"literal", "SELECT count(*)::text FROM %s WHERE k = " + lit(v), nil},
			{"IN list", "SELECT count(*)::text FROM %s WHERE k IN (" + lit(v) + ", " + lit(v) + ")", nil},
			{"cast", "SELECT count(*)::text FROM %s WHERE k = " + lit(v) + "::" + kt.base, nil},
			{"parameter", "SELECT count(*)::text FROM %s WHERE k = $1", []any{v}},
		} {
			read := func(c *pgx.Conn, tbl string) (string, error) {
				var args [][]byte
				for _, a := range q.args {
					args = append(args, []byte(a.(string)))
				}
				// The extended protocol, with text parameters.
				rr := c.PgConn().ExecParams(ctx, fmt.Sprintf(q.sql, tbl), args, nil, nil, nil).Read()
				if rr.Err != nil || len(rr.Rows) != 1 {
					return "", rr.Err
				}
				return string(rr.Rows[0][0]), nil
			}
			want, perr := read(plain, ref)
			got, derr := read(conn, dist)
			if sqlstate(perr) != sqlstate(derr) || want != got {
				t.Errorf("%s %q, read by %s: pgshard %s (%v), PostgreSQL %s (%v)", decl, v, q.name, got, derr, want, perr)
			}
		}
	}
	if n := checkPlacements(t, dist, kt.hash); n != int64(len(got)) {
		t.Errorf("%d rows on the workers, %d through pgshard", n, len(got))
	}
}

// caseOf names the value and way that wrote row m.
func caseOf(kt keyType, ways []keyWay, m int) (string, string) {
	i := 0
	for _, v := range kt.values {
		for _, w := range ways {
			if w.only != nil && !w.only(v) {
				continue
			}
			i += 10
			if m == i || m == i+1 {
				return v, w.name
			}
		}
	}
	return "?", "?"
}

// TestKeyDefects are the reproductions of issue 9's defects 1, 2 and 7: a char(10) key cut
// to one character, varchar keys refused, identity columns.
func TestKeyDefects(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	plain := connectServer(t, env.C.Coordinator)

	// char(n): the value is padded, not cut; equal values collide as equal; a value too
	// long is 22001; PREPARE with a text parameter works.
	kc := uniqueName("kc")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k char(10) PRIMARY KEY, v int)", kc), kc, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('xyz', 1)", kc))
	if got := queryString(t, conn, fmt.Sprintf("SELECT k || '|' || octet_length(k) FROM %s WHERE k = 'xyz'", kc)); got != "xyz|10" {
		t.Errorf("char(10) 'xyz' stored as %q", got)
	}
	_, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ('abc', 1), ('abc       ', 2)", kc))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" || pe.Detail != "Key (k)=(abc       ) already exists." {
		t.Errorf("equal char(10) values: %v (%s)", err, describeErr(err))
	}
	wantError(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('abcdefghijklm', 1)", kc), "22001", "value too long for type character(10)")
	// The errors of the value's reading and of its assignment, as PostgreSQL gives them
	// (message, detail, hint, position), also for an expression that is not assignable.
	kcRef := uniqueName("kcref")
	mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s (k char(10) PRIMARY KEY, v int)", kcRef))
	ki := uniqueName("kint")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int, v int)", ki), ki, "k", 4, 1)
	kiRef := uniqueName("kintref")
	mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s (k int, v int)", kiRef))
	for _, c := range []struct{ q, dist, ref string }{
		{"INSERT INTO %s VALUES ('abcdefghijklm', 1)", kc, kcRef},
		{"INSERT INTO %s VALUES ('abcdefghijklm'::text, 1)", kc, kcRef},
		{"INSERT INTO %s VALUES ('12'::text, 1)", ki, kiRef},
		{"INSERT INTO %s VALUES ('x1', 1)", ki, kiRef},
		{"INSERT INTO %s VALUES (99999999999, 1)", ki, kiRef},
		{"INSERT INTO %s VALUES (U&'\\0031\\0032', 1)", ki, kiRef},
		{"INSERT INTO %s VALUES (U&'\\0031x', 1)", ki, kiRef},
		{"INSERT INTO %s VALUES (U&'abcdefghijk\\006C', 1)", kc, kcRef},
	} {
		perr := execSimple(ctx, plain, fmt.Sprintf(c.q, c.ref))
		derr := execSimple(ctx, conn, fmt.Sprintf(c.q, c.dist))
		// The position relative to VALUES (the table names differ in length).
		pos := func(err error, tbl string) int32 {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Position > 0 {
				return pe.Position - int32(strings.Index(fmt.Sprintf(c.q, tbl), "VALUES"))
			}
			return -1
		}
		if ps, ds := describeErr(perr), describeErr(derr); ps != ds || pos(perr, c.ref) != pos(derr, c.dist) {
			t.Errorf("%s: pgshard %s at %d, PostgreSQL %s at %d", c.q, ds, pos(derr, c.dist), ps, pos(perr, c.ref))
		}
	}
	mustExec(t, conn, fmt.Sprintf("PREPARE kcq(text, int) AS INSERT INTO %s VALUES ($1, $2)", kc), "EXECUTE kcq('hello', 5)", "DEALLOCATE kcq")
	if got := queryString(t, conn, fmt.Sprintf("SELECT k || '|' || octet_length(k) || '|' || v FROM %s WHERE k = 'hello'", kc)); got != "hello|10|5" {
		t.Errorf("EXECUTE stored %q", got)
	}

	// COPY: the error names the line, the column and the value, as PostgreSQL's does
	// (outside a transaction block: inside one, the coordinator's block is aborted by the
	// error and the line is not looked for).
	for _, block := range []bool{false} {
		copyErr := func(c *pgx.Conn, tbl string) string {
			if block {
				mustExec(t, c, "BEGIN")
				defer mustExec(t, c, "ROLLBACK")
			}
			_, err := c.PgConn().CopyFrom(ctx, strings.NewReader("abc\t1\nabcdefghijklm\t2\n"), fmt.Sprintf("COPY %s FROM STDIN", tbl))
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				return fmt.Sprint(err)
			}
			return pe.Code + " " + pe.Message + " / " + strings.ReplaceAll(pe.Where, tbl, "T")
		}
		if want, got := copyErr(plain, kcRef), copyErr(conn, kc); got != want {
			t.Errorf("COPY of a value too long (block %v): pgshard %s, PostgreSQL %s", block, got, want)
		}
	}

	// varchar (text_ops, binary-coercible) and domains over it are distributable.
	kv := uniqueName("kv")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k varchar(10) PRIMARY KEY, v int)", kv), kv, "k", 4, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES ('tomato', 1)", kv))
	if n := checkPlacements(t, kv, "hashtext(k)"); n != 1 {
		t.Errorf("varchar table holds %d rows", n)
	}
	dom := uniqueName("vdom")
	mustExec(t, conn, fmt.Sprintf("CREATE DOMAIN %s AS character varying", dom))
	for _, w := range env.C.Workers {
		if _, err := w.Exec(ctx, "postgres", fmt.Sprintf("CREATE DOMAIN %s AS character varying", dom)); err != nil {
			t.Fatal(err)
		}
	}
	kd := uniqueName("kvd")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k %s, v int)", kd, dom), kd, "k", 4, 1)
	// A type without a default hash operator class, even through coercion, is refused.
	kx := uniqueName("kx")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k point, v int)", kx))
	wantError(t, conn, fmt.Sprintf("select master_create_distributed_table('%s', 'k')", kx), "42704", "data type point has no default operator class for specified partition method")

	// Identity columns, as the key and not, against a plain table.
	for _, c := range []struct{ ddl, key string }{
		{"(k int GENERATED ALWAYS AS IDENTITY, v int)", "k"},
		{"(k int GENERATED BY DEFAULT AS IDENTITY, v int)", "k"},
		{"(v int NOT NULL, k bigint GENERATED ALWAYS AS IDENTITY (START WITH 100))", "v"},
	} {
		dist, ref := uniqueName("ki"), uniqueName("kiref")
		distribute(t, conn, fmt.Sprintf("CREATE TABLE %s %s", dist, c.ddl), dist, c.key, 4, 2)
		mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s %s", ref, c.ddl))
		for _, q := range []string{
			"INSERT INTO %s (k, v) VALUES (5, 1)",
			"INSERT INTO %s (v) VALUES (2)",
			"INSERT INTO %s (k, v) VALUES (DEFAULT, 3)",
			"INSERT INTO %s (k, v) VALUES (DEFAULT, 4), (6, 4)",
			"INSERT INTO %s (k, v) OVERRIDING SYSTEM VALUE VALUES (7, 5)",
			"INSERT INTO %s (k, v) OVERRIDING SYSTEM VALUE VALUES (8, 6), (DEFAULT, 6)",
			"INSERT INTO %s (k, v) OVERRIDING USER VALUE VALUES (9, 7)",
			"INSERT INTO %s (k, v) OVERRIDING USER VALUE VALUES (10, 8), (DEFAULT, 8)",
			"INSERT INTO %s (k, v) SELECT 11, 9",
			"INSERT INTO %s (k, v) OVERRIDING SYSTEM VALUE SELECT 12, 10",
			"INSERT INTO %s (k, v) OVERRIDING USER VALUE SELECT 13, 11",
			"INSERT INTO %s (v) SELECT 12",
			"INSERT INTO %s (k, v) VALUES (14, 13) RETURNING k, v",
			"INSERT INTO %s OVERRIDING SYSTEM VALUE VALUES (15, 14)",
			"INSERT INTO %s OVERRIDING USER VALUE VALUES (16, 15)",
			"INSERT INTO %s OVERRIDING SYSTEM VALUE SELECT 17, 16",
			"INSERT INTO %s OVERRIDING USER VALUE SELECT 18, 17",
			"INSERT INTO %s AS x (v, k) OVERRIDING USER VALUE VALUES (18, 19) RETURNING x.v",
		} {
			perr := execSimple(ctx, plain, fmt.Sprintf(q, ref))
			derr := execSimple(ctx, conn, fmt.Sprintf(q, dist))
			if ps, ds := describeErr(perr), describeErr(derr); ps != ds {
				t.Errorf("%s %s: pgshard %s, PostgreSQL %s", c.ddl, fmt.Sprintf(q, dist), ds, ps)
			}
		}
		// UPDATE of a GENERATED ALWAYS identity column (not the key): 428C9.
		if c.key == "v" {
			for _, q := range []string{"UPDATE %s SET k = 5 WHERE v = 2", "UPDATE %s SET k = k + 1"} {
				perr := execSimple(ctx, plain, fmt.Sprintf(q, ref))
				derr := execSimple(ctx, conn, fmt.Sprintf(q, dist))
				if ps, ds := describeErr(perr), describeErr(derr); ps != ds {
					t.Errorf("%s %s: pgshard %s, PostgreSQL %s", c.ddl, fmt.Sprintf(q, dist), ds, ps)
				}
			}
		}
		q := "SELECT string_agg(k || ':' || v, ',' ORDER BY v, k) FROM %s"
		if want, got := queryString(t, plain, fmt.Sprintf(q, ref)), queryString(t, conn, fmt.Sprintf(q, dist)); got != want {
			t.Errorf("%s: pgshard holds %s, PostgreSQL %s", c.ddl, got, want)
		}
	}
}

// TestDefaultsAreAssigned: defaults evaluated on the coordinator (a partition key's, a
// volatile one) are coerced to their columns as INSERT assigns them (too long: 22001;
// rounded to the scale), whatever way the row arrives.
func TestDefaultsAreAssigned(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	plain := connectServer(t, env.C.Coordinator)
	for _, c := range []struct{ ddl, key string }{
		{"(k varchar(3) DEFAULT 'abcdef', v int)", "k"},
		{"(k varchar(3) DEFAULT 'ab   ', v int)", "k"},
		{"(k numeric(4,1) DEFAULT 1.25, v int)", "k"},
		{"(k timestamp(0) DEFAULT '2024-01-01 10:00:00.7', v int)", "k"},
		{"(v int, k char(3) DEFAULT repeat('x', 2 + (random() * 0)::int))", "v"},
		{"(v int, k char(3) DEFAULT repeat('x', 5 + (random() * 0)::int))", "v"},
		{"(v int, k numeric(3,2) DEFAULT 1.005 + (random() * 0)::int)", "v"},
	} {
		dist, ref := uniqueName("kdef"), uniqueName("kdefref")
		distribute(t, conn, fmt.Sprintf("CREATE TABLE %s %s", dist, c.ddl), dist, c.key, 4, 2)
		mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s %s", ref, c.ddl))
		for _, w := range []func(c *pgx.Conn, tbl string) error{
			func(c *pgx.Conn, tbl string) error {
				return execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (v) VALUES (1)", tbl))
			},
			func(c *pgx.Conn, tbl string) error {
				return execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (v, k) VALUES (2, DEFAULT)", tbl))
			},
			func(c *pgx.Conn, tbl string) error {
				return execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (v) SELECT 3", tbl))
			},
			func(c *pgx.Conn, tbl string) error {
				return execSimple(ctx, c, fmt.Sprintf("INSERT INTO %s (v, k) VALUES (5, DEFAULT), (6, DEFAULT)", tbl))
			},
			func(cn *pgx.Conn, tbl string) error {
				if c.key != "k" {
					return nil // a NULL partition key is refused (pg_shard's rule)
				}
				return execSimple(ctx, cn, fmt.Sprintf("INSERT INTO %s DEFAULT VALUES", tbl))
			},
			func(c *pgx.Conn, tbl string) error {
				return c.PgConn().ExecParams(ctx, fmt.Sprintf("INSERT INTO %s (v) VALUES ($1)", tbl), [][]byte{[]byte("7")}, nil, nil, nil).Read().Err
			},
			func(c *pgx.Conn, tbl string) error {
				_, err := c.PgConn().CopyFrom(ctx, strings.NewReader("4\n"), fmt.Sprintf("COPY %s (v) FROM STDIN", tbl))
				return err
			},
		} {
			perr, derr := w(plain, ref), w(conn, dist)
			if sqlstate(perr) != sqlstate(derr) {
				t.Errorf("%s: pgshard %v, PostgreSQL %v", c.ddl, derr, perr)
			}
		}
		q := "SELECT coalesce(string_agg(coalesce(v::text, '-') || ':' || k::text || ':' || octet_length(k::text), ',' ORDER BY v), '') FROM %s"
		if want, got := queryString(t, plain, fmt.Sprintf(q, ref)), queryString(t, conn, fmt.Sprintf(q, dist)); got != want {
			t.Errorf("%s: pgshard holds %s, PostgreSQL %s", c.ddl, got, want)
		}
	}
}

// TestParametersOfAnotherType: a parameter whose declared type differs from the key's is
// compared (or assigned) in PostgreSQL's terms: a varchar key compared with a character
// parameter ignores trailing spaces, an integer key compared with a numeric parameter
// compares as numeric, a numeric parameter assigned to an integer key is rounded.
func TestParametersOfAnotherType(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	plain := connectServer(t, env.C.Coordinator)
	const (
		bpchar      = 1042
		numeric     = 1700
		float8      = 701
		timestamptz = 1184
		text        = 25
		int8        = 20
	)
	for _, c := range []struct {
		decl  string
		rows  []string
		oid   uint32
		param string
	}{
		{"varchar(10)", []string{"abc ", "abc", "abc  ", "x"}, bpchar, "abc"},
		{"text", []string{"abc ", "abc", "x"}, bpchar, "abc   "},
		{"char(5)", []string{"abc", "x"}, text, "abc"},
		{"char(5)", []string{"abc", "x"}, text, "abc  "},
		{"integer", []string{"5", "6", "7"}, numeric, "5.0"},
		{"integer", []string{"5", "6", "7"}, int8, "6"},
		{"numeric", []string{"0.1", "0.10000000000000001", "0.2"}, float8, "0.1"},
		{"timestamp", []string{"2024-01-01 10:00", "2024-01-01 11:00"}, timestamptz, "2024-01-01 10:00+00"},
	} {
		dist, ref := uniqueName("kpt"), uniqueName("kptref")
		ddl := fmt.Sprintf("(k %s NOT NULL, v int)", c.decl)
		distribute(t, conn, fmt.Sprintf("CREATE TABLE %s %s", dist, ddl), dist, "k", 8, 1)
		mustExec(t, plain, fmt.Sprintf("CREATE TABLE %s %s", ref, ddl))
		for i, r := range c.rows {
			q := fmt.Sprintf("INSERT INTO %%s VALUES (%s, %d)", lit(r), i)
			mustExec(t, plain, fmt.Sprintf(q, ref))
			mustExec(t, conn, fmt.Sprintf(q, dist))
		}
		run := func(cn *pgx.Conn, sql string) string {
			rr := cn.PgConn().ExecParams(ctx, sql, [][]byte{[]byte(c.param)}, []uint32{c.oid}, nil, nil).Read()
			if rr.Err != nil {
				return sqlstate(rr.Err)
			}
			out := []string{rr.CommandTag.String()}
			for _, row := range rr.Rows {
				out = append(out, string(row[0]))
			}
			return strings.Join(out, ",")
		}
		for _, q := range []string{
			"SELECT count(*) FROM %s WHERE k = $1",
			"SELECT count(*) FROM %s WHERE k IN ($1, $1)",
			"DELETE FROM %s WHERE k = $1",
			"INSERT INTO %s VALUES ($1, 100) RETURNING k::text",
			"SELECT count(*) FROM %s WHERE k = $1",
		} {
			if want, got := run(plain, fmt.Sprintf(q, ref)), run(conn, fmt.Sprintf(q, dist)); got != want {
				t.Errorf("%s key, %s parameter %q: %s: pgshard %s, PostgreSQL %s", c.decl, typeNameOf(c.oid), c.param, q, got, want)
			}
		}
	}
}

func typeNameOf(oid uint32) string {
	return map[uint32]string{1042: "character", 1700: "numeric", 701: "double precision", 1184: "timestamptz", 25: "text", 20: "bigint"}[oid]
}

// describeErr is an error's SQLSTATE, message, detail and hint ("ok" for none).
func describeErr(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s %q detail %q hint %q", pe.Code, pe.Message, pe.Detail, pe.Hint)
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}
