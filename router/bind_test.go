package router

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
)

// The hashes below are PostgreSQL's (15): hashint4/hashint8 (equal on values int4 holds),
// hashtext, hashbpchar, hash_numeric, uuid_hash. They are written out rather than computed
// with pghash, so that a broken rule in Bind or in pghash fails here.
const (
	hash1      = -1905060026 // hashint8(1)
	hash2      = 1134484726  // hashint8(2)
	hash5      = -1330264708 // hashint4(5) = hashint8(5) = hashint2(5)
	hashMinus5 = 1412886042  // hashint8(-5)
	hash32743  = 825136273   // hashint2(32743)
	hashInt8Mx = -1524351049 // hashint8(9223372036854775807)
	hashTomato = 828595980   // hashtext('tomato')
	hashA      = 1075015857  // hashtext('a')
	hashAB     = 1718550461  // hashbpchar('ab'), trailing spaces ignored
	hashOne    = 1324868424  // hash_numeric(1) = hash_numeric(1.00)
	hashUUID   = 1154666245  // uuid_hash('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')
)

var uuidBytes = []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}

// Key columns that values are assigned to.
var (
	colInt8 = &metadata.Column{Name: "k", TypeOID: 20, HashType: 20, TypeName: "bigint", Typmod: -1}
	colInt4 = &metadata.Column{Name: "k", TypeOID: 23, HashType: 23, TypeName: "integer", Typmod: -1}
	// char(4): typmod 4+4.
	colChar4 = &metadata.Column{Name: "k", TypeOID: 1042, HashType: 1042, TypeName: "character(4)", BaseName: "bpchar",
		Typmod: 8, LengthFunc: "pg_catalog.bpchar", LengthArgs: 3}
	colVarchar3 = &metadata.Column{Name: "k", TypeOID: 1043, HashType: 1043, TypeName: "character varying(3)", BaseName: "varchar",
		Typmod: 7, LengthFunc: "pg_catalog.varchar", LengthArgs: 3}
	colNumeric = &metadata.Column{Name: "k", TypeOID: 1700, HashType: 1700, TypeName: "numeric(10,2)", BaseName: "numeric",
		Typmod: 10<<16 | 2 + 4, LengthFunc: "pg_catalog.numeric", LengthArgs: 2}
)

func litValue(i int, typ uint32) Value { return Value{Kind: ValLit, Index: i, Type: typ} }
func assigned(v Value) Value           { v.Assign = true; return v }
func paramValue(i int, typ uint32) Value {
	return Value{Kind: ValParam, Index: i, Type: typ}
}
func textParams(vals ...string) *Params {
	p := &Params{}
	for _, v := range vals {
		p.Values = append(p.Values, []byte(v))
	}
	return p
}
func binaryParam(oid uint32, val []byte) *Params {
	return &Params{Values: [][]byte{val}, Formats: []int16{1}, OIDs: []uint32{oid}}
}
func typedParam(oid uint32, val string) *Params {
	return &Params{Values: [][]byte{[]byte(val)}, OIDs: []uint32{oid}}
}
func hashedAs(h int32) Bound { return Bound{Hash: h} }
func needsRead(r Read) Bound { return Bound{Kind: NeedsRead, Read: r} }

func TestBinderValue(t *testing.T) {
	for _, c := range []struct {
		name string
		sql  string // the statement whose literals ValLit values index
		v    Value
		col  *metadata.Column // the column the value is assigned to; nil: compared
		prm  *Params
		want Bound
		err  pgerr.Code // or the *BinaryParamError, errBinary
	}{
		// Integers: int2/int4/int8 hash alike on equal values (one hash family).
		{name: "int8 constant", sql: "k = 5", v: litValue(0, pghash.OIDInt8), want: hashedAs(hash5)},
		{name: "int4 constant", sql: "k = 5", v: litValue(0, pghash.OIDInt4), want: hashedAs(hash5)},
		{name: "int2 constant", sql: "k = 32743", v: litValue(0, pghash.OIDInt2), want: hashedAs(hash32743)},
		{name: "negative", sql: "k = -5", v: Value{Kind: ValLit, Neg: true, Type: pghash.OIDInt8}, want: hashedAs(hashMinus5)},
		{name: "int8 max", sql: "k = 9223372036854775807", v: litValue(0, pghash.OIDInt8), want: hashedAs(hashInt8Mx)},
		{name: "second constant", sql: "k = 1 OR k = 2", v: litValue(1, pghash.OIDInt8), want: hashedAs(hash2)},
		{name: "int8 text parameter", sql: "k = $1", v: paramValue(1, pghash.OIDInt8), prm: textParams("5"), want: hashedAs(hash5)},
		{name: "int4 binary parameter", v: paramValue(1, pghash.OIDInt8), prm: binaryParam(pghash.OIDInt4, []byte{0, 0, 0, 5}), want: hashedAs(hash5)},
		{name: "int2 binary parameter", v: paramValue(1, pghash.OIDInt8), prm: binaryParam(pghash.OIDInt2, []byte{0, 5}), want: hashedAs(hash5)},
		{name: "untyped binary parameter: the key's type", v: paramValue(1, pghash.OIDInt8), prm: binaryParam(0, []byte{0, 0, 0, 0, 0, 0, 0, 5}), want: hashedAs(hash5)},
		{name: "binary parameter too short", v: paramValue(1, pghash.OIDInt8), prm: binaryParam(pghash.OIDInt4, []byte{0, 0, 5}), err: "binary"},
		{name: "binary parameter too long", v: paramValue(1, pghash.OIDInt8), prm: binaryParam(0, []byte{0, 0, 0, 0, 0, 0, 0, 0, 5}), err: "binary"},
		{name: "number into an integer column", sql: "5", v: assigned(litValue(0, pghash.OIDInt8)), col: colInt4, want: hashedAs(hash5)},
		{name: "number out of the column's range: the coordinator's error", sql: "99999999999999999999", v: assigned(litValue(0, pghash.OIDInt8)), col: colInt8,
			want: needsRead(Read{Type: pghash.OIDInt8, Value: []byte("99999999999999999999"), OID: pghash.OIDNumeric, Assign: "($1)::bigint", Pos: 1})},
		{name: "numeric parameter into an integer column", v: assigned(paramValue(1, pghash.OIDInt8)), col: colInt8, prm: typedParam(pghash.OIDNumeric, "5.0"),
			want: needsRead(Read{Type: pghash.OIDInt8, Value: []byte("5.0"), OID: pghash.OIDNumeric, Assign: "($1)::bigint"})},
		{name: "numeric parameter compared with an integer key", v: paramValue(1, pghash.OIDInt8), prm: typedParam(pghash.OIDNumeric, "5"), want: Bound{Kind: AnyShard}},

		// Text and character types.
		{name: "text constant", sql: "k = 'tomato'", v: litValue(0, pghash.OIDText), want: hashedAs(hashTomato)},
		{name: "escaped text constant", sql: `k = E'tom\141to'`, v: litValue(0, pghash.OIDText), want: hashedAs(hashTomato)},
		{name: "varchar constant", sql: "k = 'tomato'", v: litValue(0, pghash.OIDVarchar), want: hashedAs(hashTomato)},
		{name: "text parameter", v: paramValue(1, pghash.OIDText), prm: textParams("tomato"), want: hashedAs(hashTomato)},
		{name: "varchar parameter on a text key", v: paramValue(1, pghash.OIDText), prm: typedParam(pghash.OIDVarchar, "tomato"), want: hashedAs(hashTomato)},
		{name: "invalid UTF-8 binary text parameter", v: paramValue(1, pghash.OIDText), prm: binaryParam(pghash.OIDText, []byte{0xff}), err: "binary"},
		{name: "char constant, trailing spaces", sql: "k = 'ab  '", v: litValue(0, pghash.OIDBPChar), want: hashedAs(hashAB)},
		{name: "text parameter on a char key: compares as text", v: paramValue(1, pghash.OIDBPChar), prm: typedParam(pghash.OIDText, "ab"), want: hashedAs(hashAB)},
		{name: "char parameter on a varchar key: compares as char", v: paramValue(1, pghash.OIDVarchar), prm: typedParam(pghash.OIDBPChar, "ab"), want: Bound{Kind: AnyShard}},
		{name: "fits char(4)", sql: "'ab'", v: assigned(litValue(0, pghash.OIDBPChar)), col: colChar4, want: hashedAs(hashAB)},
		{name: "fits char(4) once its trailing spaces go", sql: "'ab        '", v: assigned(litValue(0, pghash.OIDBPChar)), col: colChar4, want: hashedAs(hashAB)},
		{name: "too long for char(4)", sql: "'é', 'abcdef'", v: assigned(litValue(1, pghash.OIDBPChar)), col: colChar4,
			want: needsRead(Read{Type: pghash.OIDBPChar, Value: []byte("abcdef"), Assign: "pg_catalog.bpchar(($1)::bpchar, 8, false)", Pos: 6})},
		{name: "number into char(4)", sql: "12", v: assigned(litValue(0, pghash.OIDBPChar)), col: colChar4,
			want: needsRead(Read{Type: pghash.OIDBPChar, Value: []byte("12"), OID: pghash.OIDInt4, Assign: "pg_catalog.bpchar(($1)::bpchar, 8, false)", Pos: 1})},
		{name: "text parameter fits char(4)", v: assigned(paramValue(1, pghash.OIDBPChar)), col: colChar4, prm: typedParam(pghash.OIDText, "ab  "), want: hashedAs(hashAB)},
		{name: "binary parameter into char(4): the coordinator", v: assigned(paramValue(1, pghash.OIDBPChar)), col: colChar4, prm: binaryParam(pghash.OIDText, []byte("ab")),
			want: needsRead(Read{Type: pghash.OIDBPChar, Value: []byte("ab"), OID: pghash.OIDText, Format: 1, Assign: "pg_catalog.bpchar(($1)::bpchar, 8, false)"})},
		{name: "fits varchar(3)", sql: "'a'", v: assigned(litValue(0, pghash.OIDVarchar)), col: colVarchar3, want: hashedAs(hashA)},
		{name: "varchar(3) keeps no trailing spaces beyond 3", sql: "'a   '", v: assigned(litValue(0, pghash.OIDVarchar)), col: colVarchar3,
			want: needsRead(Read{Type: pghash.OIDVarchar, Value: []byte("a   "), Assign: "pg_catalog.varchar(($1)::varchar, 7, false)", Pos: 1})},
		{name: "typed parameter into varchar(3)", v: assigned(paramValue(1, pghash.OIDVarchar)), col: colVarchar3, prm: typedParam(pghash.OIDInt4, "1"),
			want: needsRead(Read{Type: pghash.OIDVarchar, Value: []byte("1"), OID: pghash.OIDInt4, Assign: "pg_catalog.varchar(($1)::varchar, 7, false)"})},

		// numeric, uuid, dates.
		{name: "numeric constant", sql: "k = 1.00", v: litValue(0, pghash.OIDNumeric), want: hashedAs(hashOne)},
		{name: "numeric parameter", v: paramValue(1, pghash.OIDNumeric), prm: textParams("1"), want: hashedAs(hashOne)},
		{name: "into numeric(10,2): the coordinator rounds", sql: "1.005", v: assigned(litValue(0, pghash.OIDNumeric)), col: colNumeric,
			want: needsRead(Read{Type: pghash.OIDNumeric, Value: []byte("1.005"), OID: pghash.OIDNumeric, Assign: "pg_catalog.numeric(($1)::numeric, 655366)", Pos: 1})},
		{name: "integer into numeric(10,2)", sql: "1", v: assigned(litValue(0, pghash.OIDNumeric)), col: colNumeric,
			want: needsRead(Read{Type: pghash.OIDNumeric, Value: []byte("1"), OID: pghash.OIDInt4, Assign: "pg_catalog.numeric(($1)::numeric, 655366)", Pos: 1})},
		{name: "uuid constant", sql: "k = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", v: litValue(0, pghash.OIDUUID), want: hashedAs(hashUUID)},
		{name: "uuid binary parameter", v: paramValue(1, pghash.OIDUUID), prm: binaryParam(pghash.OIDUUID, uuidBytes), want: hashedAs(hashUUID)},
		{name: "date in the session's DateStyle: the coordinator", sql: "k = '01/02/2000'", v: litValue(0, pghash.OIDDate),
			want: needsRead(Read{Type: pghash.OIDDate, Value: []byte("01/02/2000"), Pos: 5})},
		{name: "date text parameter in the session's DateStyle", v: paramValue(1, pghash.OIDDate), prm: textParams("01/02/2000"),
			want: needsRead(Read{Type: pghash.OIDDate, Value: []byte("01/02/2000")})},

		// NULL, evaluated values, missing parameters.
		{name: "NULL", v: Value{Kind: ValNull, Type: pghash.OIDInt8}, want: hashedAs(0)},
		{name: "NULL parameter", v: paramValue(1, pghash.OIDInt8), prm: &Params{Values: [][]byte{nil}}, want: hashedAs(0)},
		{name: "evaluated value", v: Value{Kind: ValEval, Index: 3, Type: pghash.OIDInt8}, want: Bound{Kind: NeedsEval, Eval: 3}},
		{name: "no parameters", v: paramValue(1, pghash.OIDInt8), err: pgerr.UndefinedObject},
		{name: "parameter beyond those sent", v: paramValue(2, pghash.OIDInt8), prm: textParams("5"), err: pgerr.UndefinedObject},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := Binder{In: Tokenize(c.sql, 0), Params: c.prm, Column: c.col}
			got, err := b.Value(c.v)
			if c.err != "" {
				var be *BinaryParamError
				switch {
				case c.err == "binary" && errors.As(err, &be):
					if be.Param != c.v.Index {
						t.Errorf("error for parameter $%d, want $%d", be.Param, c.v.Index)
					}
				case c.err != "binary" && pgerr.From(err).Code == c.err:
				default:
					t.Errorf("error %v, want %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// Bind binds a list in order: hashes where it can, the rest pending with their places;
// one value compared in another type keeps every shard; an error stops it.
func TestBind(t *testing.T) {
	in := Tokenize("k IN (1, '01/02/2000', $2, 5)", 0)
	vals := []Value{litValue(0, pghash.OIDInt8), {Kind: ValEval, Index: 0, Type: pghash.OIDInt8}, paramValue(2, pghash.OIDInt8), litValue(2, pghash.OIDInt8),
		paramValue(1, pghash.OIDInt8), litValue(1, pghash.OIDDate)}
	bd, err := Bind(vals, in, typedParam(pghash.OIDNumeric, "2"), nil)
	if err == nil {
		t.Fatalf("parameter $2 of 1: no error, %+v", bd)
	}
	bd, err = Bind(vals, in, &Params{Values: [][]byte{[]byte("2"), []byte("1")}, OIDs: []uint32{pghash.OIDNumeric, 0}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{hash1, 0, hash1, hash5, 0, 0}; !reflect.DeepEqual(bd.Hashes, want) {
		t.Errorf("hashes %v, want %v", bd.Hashes, want)
	}
	if !bd.AnyShard {
		t.Errorf("a numeric parameter compared with an integer key keeps every shard")
	}
	want := []Pending{{Index: 1, Bound: Bound{Kind: NeedsEval}},
		{Index: 5, Bound: needsRead(Read{Type: pghash.OIDDate, Value: []byte("01/02/2000"), Pos: 10})}}
	if !reflect.DeepEqual(bd.Pending, want) {
		t.Errorf("pending %+v\nwant %+v", bd.Pending, want)
	}
}

// A plan's condition bound with the execution's parameters selects the shards of the
// values' hashes (goldenSnapshot: customers has 4 shards over the hash range).
func TestBindPlannedCondition(t *testing.T) {
	snap := goldenSnapshot()
	b, in := New(Config{}).Plan("SELECT name FROM customers WHERE id IN (1, $1) OR id = -5", snap, goldenSession)
	st := b.Stmts[0]
	vals := st.Filter.Values(nil)
	bd, err := Bind(vals, in, textParams("2"), nil)
	if err != nil || len(bd.Pending) > 0 || bd.AnyShard {
		t.Fatalf("Bind: %+v, %v", bd, err)
	}
	if want := []int32{hash1, hash2, hashMinus5}; !reflect.DeepEqual(bd.Hashes, want) {
		t.Fatalf("hashes %v, want %v", bd.Hashes, want)
	}
	t0 := snap.TableByOID(st.Table)
	shards, all := st.Filter.Select(t0, bd.Hashes)
	var want []*metadata.Shard
	for _, sh := range t0.Shards {
		for _, h := range bd.Hashes {
			if sh.Min <= h && h <= sh.Max {
				want = append(want, sh)
				break
			}
		}
	}
	if all || !reflect.DeepEqual(shards, want) {
		t.Errorf("shards %v (all %v), want %v", shards, all, want)
	}
}

// Binder.Text reads text as COPY gives it: natively, through the column's modifier, or
// copied for the coordinator (the caller's buffer is reused).
func TestBinderText(t *testing.T) {
	var b Binder
	if got := b.Text(pghash.OIDInt8, []byte("5")); !reflect.DeepEqual(got, hashedAs(hash5)) {
		t.Errorf("int8 5: %+v", got)
	}
	buf := []byte("01/02/2000")
	got := b.Text(pghash.OIDDate, buf)
	copy(buf, "xxxxxxxxxx")
	if got.Kind != NeedsRead || string(got.Read.Value) != "01/02/2000" || got.Read.Assign != "" {
		t.Errorf("date: %+v", got)
	}
	b.Column = colChar4
	if got := b.Text(pghash.OIDBPChar, []byte("ab")); !reflect.DeepEqual(got, hashedAs(hashAB)) {
		t.Errorf("char(4) ab: %+v", got)
	}
	if got := b.Text(pghash.OIDBPChar, []byte("abcde")); got.Kind != NeedsRead || got.Read.Assign == "" {
		t.Errorf("char(4) abcde: %+v", got)
	}
}

// Read.Expr is the coordinator's SQL: the canonical form of the value after the column's
// coercion.
func TestReadExpr(t *testing.T) {
	r := Read{Type: pghash.OIDBPChar, Assign: colChar4.Assign("$1")}
	want := "pg_catalog.encode(pg_catalog.convert_to((pg_catalog.bpchar(($3)::bpchar, 8, false))::pg_catalog.bpchar::pg_catalog.text, 'UTF8'), 'hex')"
	if got := r.Expr("$3"); got != want {
		t.Errorf("Expr:\n%s\nwant\n%s", got, want)
	}
	r = Read{Type: pghash.OIDDate}
	if got, want := r.Expr("$1"), "pg_catalog.encode(pg_catalog.date_send($1::pg_catalog.date), 'hex')"; got != want {
		t.Errorf("Expr: %s, want %s", got, want)
	}
}

// Binder.charPos answers as a count from the start for offsets met in any order, in one
// pass over the text when they come in text order (a 100,000-value IN list took minutes
// when every value counted the characters before it from the start).
func TestBinderCharPos(t *testing.T) {
	text := "select 'é', 1, 'ü€', 2 from t where k in ('a', 'ö', 3)"
	count := func(off int) int32 {
		n := int32(1)
		for i := 0; i < off && i < len(text); i++ {
			if text[i]&0xC0 != 0x80 {
				n++
			}
		}
		return n
	}
	offs := []int{0, 7, 8, 12, 15, 16, 22, 40, 41, len(text), len(text) + 5, 3, 12, 12}
	b := Binder{In: &Input{Text: text}}
	for _, off := range offs {
		if got, want := b.charPos(off), count(off); got != want {
			t.Errorf("charPos at byte %d: %d, want %d", off, got, want)
		}
	}
	// In text order, the bytes are counted once.
	b = Binder{In: &Input{Text: text}}
	for off := 0; off <= len(text); off++ {
		b.charPos(off)
	}
	if b.posOff != len(text) {
		t.Errorf("posOff %d after a pass, want %d", b.posOff, len(text))
	}
}

// EvalQuery evaluates each expression once, in one SELECT, as a typed literal and, for a
// partition key, its canonical form after the column's coercion; an empty group has no
// query.
func TestEvalQuery(t *testing.T) {
	if q := EvalQuery(nil, nil); q != "" {
		t.Errorf("empty group: %q", q)
	}
	b, in := New(Config{}).Plan("INSERT INTO accounts VALUES (12, 1)", goldenSnapshot(), goldenSession)
	st := b.Stmts[0]
	if len(st.Rows) != 1 || len(st.Rows[0].Evals) != 1 || !st.Rows[0].Evals[0].Key {
		t.Fatalf("the plan evaluates no key: %+v", st.Rows)
	}
	q := EvalQuery(st.Rows[0].Evals, in)
	for _, want := range []string{
		"SELECT pg_catalog.format('%L::%s', v0, ",
		" FROM (SELECT (12) AS v0 OFFSET 0) pgshard_eval",
		"CASE WHEN v0 IS NULL THEN NULL WHEN ",
		// char(4)'s coercion, then bpchar's canonical form.
		"pg_catalog.convert_to((pg_catalog.bpchar((v0)::bpchar, 8, false))::pg_catalog.bpchar::pg_catalog.text, 'UTF8')",
		"pg_catalog.format_type(1042::pg_catalog.oid, NULL) END",
	} {
		if !strings.Contains(q, want) {
			t.Errorf("query lacks %q:\n%s", want, q)
		}
	}
}
