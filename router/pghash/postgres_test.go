package pghash

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
)

// The differential test: for every supported type, thousands of generated values are hashed
// by a real PostgreSQL server with the function of the type's default hash operator class,
// and compared with HashText (on the literal), HashBinary (on the value's send form, and on
// random binary input) and HashCanonical (on CanonicalExpr evaluated by the server), in
// sessions with different DateStyle and TimeZone settings.

var allTypes = []uint32{OIDBool, OIDBytea, OIDChar, OIDName, OIDInt8, OIDInt2, OIDInt4, OIDText, OIDOid,
	OIDFloat4, OIDFloat8, OIDBPChar, OIDVarchar, OIDDate, OIDTime, OIDTimestamp, OIDTimestamptz,
	OIDNumeric, OIDUUID}

// valuesPerType is how many text values are generated for each type.
const valuesPerType = 4000

// binaryPerType is how many random binary values are sent for each type and session.
const binaryPerType = 400

var sessions = []struct {
	name     string
	settings []string
}{
	{"default", nil},
	{"dmy-newyork", []string{"SET DateStyle = 'SQL, DMY'", "SET TimeZone = 'America/New_York'",
		"SET extra_float_digits = 0", "SET bytea_output = 'escape'"}},
	{"mdy-kolkata", []string{"SET DateStyle = 'Postgres, MDY'", "SET TimeZone = 'Asia/Kolkata'"}},
}

type typeInfo struct {
	oid     uint32
	name    string // pg_type.typname
	sqlType string // qualified, without a type modifier
}

func TestAgainstPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	if !cluster.Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{Workers: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	setup, err := pgx.Connect(ctx, c.Coordinator.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var version int
	if err := setup.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version/10000 != 15 {
		t.Logf("server is version %d; the package follows PostgreSQL 15", version)
	}
	infos := make(map[uint32]typeInfo)
	for _, typ := range allTypes {
		info, err := createProbes(ctx, setup, typ)
		if err != nil {
			t.Fatalf("type %d: %v", typ, err)
		}
		infos[typ] = info
	}
	setup.Close(ctx)

	conns := make([]*pgx.Conn, len(sessions))
	for i, s := range sessions {
		conn, err := pgx.Connect(ctx, c.Coordinator.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, set := range s.settings {
			if _, err := conn.Exec(ctx, set); err != nil {
				t.Fatal(err)
			}
		}
		conns[i] = conn
	}

	for _, typ := range allTypes {
		info := infos[typ]
		t.Run(info.name, func(t *testing.T) {
			g := newGen(uint64(typ))
			next := g.genText(typ)
			values := make([]string, 0, valuesPerType)
			for len(values) < valuesPerType {
				if v := next(); utf8.ValidString(v) && !strings.Contains(v, "\x00") {
					values = append(values, v)
				}
			}
			for i, s := range sessions {
				st := compareText(ctx, t, conns[i], info, values)
				bst := compareBinary(ctx, t, conns[i], info, newGen(uint64(typ)+1000))
				t.Logf("%s/%s: %d values, %d valid for PostgreSQL, %d hashed by HashText (all equal), "+
					"%d by HashBinary and HashCanonical (all equal); random binary: %d sent, %d valid (all equal)",
					info.name, s.name, st.values, st.valid, st.textOK, st.valid, bst.sent, bst.valid)
				if len(st.refused) > 0 {
					t.Logf("%s/%s: valid values left to the fallback, e.g. %q", info.name, s.name, st.refused)
				}
				if st.textOK < st.valid/3 || st.textOK < 500 {
					t.Errorf("%s: HashText accepted only %d of %d valid values", s.name, st.textOK, st.valid)
				}
			}
		})
	}
}

// createProbes creates, for one type, pghash_<oid>(T), which is the type's default hash
// opclass support function itself, and probe_<oid>(text), which reads a text with the type's
// input function and returns whether it is valid, its hash, its send form and the result of
// CanonicalExpr.
func createProbes(ctx context.Context, conn *pgx.Conn, typ uint32) (typeInfo, error) {
	var info typeInfo
	var input, send, hashSrc string
	var nargs int
	var ioparam uint32
	err := conn.QueryRow(ctx, `
		SELECT t.typname::text, 'pg_catalog.' || quote_ident(t.typname), t.typinput::regproc::text, p.pronargs,
		       t.typsend::regproc::text, CASE WHEN t.typelem <> 0 THEN t.typelem ELSE t.oid END,
		       (SELECT hp.prosrc
		          FROM pg_opclass opc
		          JOIN pg_am am ON am.oid = opc.opcmethod AND am.amname = 'hash'
		          JOIN pg_amproc ap ON ap.amprocfamily = opc.opcfamily AND ap.amprocnum = 1
		               AND ap.amproclefttype = opc.opcintype AND ap.amprocrighttype = opc.opcintype
		          JOIN pg_proc hp ON hp.oid = ap.amproc
		         WHERE opc.opcdefault
		           -- varchar has no opclass of its own: text_ops serves it (binary coercible)
		           AND opc.opcintype = CASE WHEN t.oid = 'varchar'::regtype THEN 'text'::regtype ELSE t.oid END)
		  FROM pg_type t JOIN pg_proc p ON p.oid = t.typinput
		 WHERE t.oid = $1`, typ).Scan(&info.name, &info.sqlType, &input, &nargs, &send, &ioparam, &hashSrc)
	if err != nil {
		return info, err
	}
	info.oid = typ
	in := fmt.Sprintf("%s(v::cstring)", input)
	if nargs == 3 {
		in = fmt.Sprintf("%s(v::cstring, %d, -1)", input, ioparam)
	}
	sql := fmt.Sprintf(`
		CREATE FUNCTION pghash_%[1]d(%[2]s) RETURNS int4 LANGUAGE internal IMMUTABLE STRICT AS '%[3]s';
		CREATE FUNCTION probe_%[1]d(v text, OUT ok bool, OUT h int4, OUT bin bytea, OUT canon text)
		LANGUAGE plpgsql AS $f$
		DECLARE
			x %[2]s;
		BEGIN
			ok := false;
			BEGIN
				canon := %[4]s;
			EXCEPTION WHEN others THEN
				canon := NULL;
			END;
			x := %[5]s;
			h := pghash_%[1]d(x);
			bin := %[6]s(x);
			ok := true;
		EXCEPTION WHEN others THEN
			ok := false;
		END
		$f$;`, typ, info.sqlType, hashSrc, CanonicalExpr(typ), in, send)
	_, err = conn.Exec(ctx, sql)
	return info, err
}

type textStats struct {
	values, valid, textOK int
	refused               []string // samples of valid values HashText refused
}

func compareText(ctx context.Context, t *testing.T, conn *pgx.Conn, info typeInfo, values []string) textStats {
	t.Helper()
	st := textStats{values: len(values)}
	const batch = 1000
	for start := 0; start < len(values); start += batch {
		chunk := values[start:min(start+batch, len(values))]
		rows, err := conn.Query(ctx, fmt.Sprintf(`
			SELECT r.ok, r.h, r.bin, r.canon
			  FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i), LATERAL probe_%d(u.v) AS r
			 ORDER BY u.i`, info.oid), chunk)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var ok bool
			var h *int32
			var bin []byte
			var canon *string
			if err := rows.Scan(&ok, &h, &bin, &canon); err != nil {
				t.Fatal(err)
			}
			v := chunk[i]
			i++
			got, gotOK := HashText(info.oid, []byte(v))
			if !ok {
				if gotOK {
					t.Errorf("HashText(%s, %q) = %d, true; PostgreSQL rejects the input", info.name, v, got)
				}
				continue
			}
			st.valid++
			if !gotOK && len(st.refused) < 8 {
				st.refused = append(st.refused, v)
			}
			if gotOK {
				st.textOK++
				if got != *h {
					t.Errorf("HashText(%s, %q) = %d, PostgreSQL %d", info.name, v, got, *h)
				}
			}
			if got, gotOK := HashBinary(info.oid, bin); !gotOK || got != *h {
				t.Errorf("HashBinary(%s, %x) [from %q] = %d, %v, PostgreSQL %d", info.name, bin, v, got, gotOK, *h)
			}
			if canon == nil {
				t.Errorf("%s: CanonicalExpr failed on %q, which PostgreSQL reads", info.name, v)
			} else if got, gotOK := HashCanonical(info.oid, []byte(*canon)); !gotOK || got != *h {
				t.Errorf("HashCanonical(%s, %q) [from %q] = %d, %v, PostgreSQL %d", info.name, *canon, v, got, gotOK, *h)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if i != len(chunk) {
			t.Fatalf("%d rows for %d values", i, len(chunk))
		}
	}
	return st
}

type binaryStats struct{ sent, valid int }

// compareBinary sends random binary-format parameters of the type to pghash_<oid>($1) and
// compares with HashBinary: both must reject, or both accept with the same hash.
func compareBinary(ctx context.Context, t *testing.T, conn *pgx.Conn, info typeInfo, g *gen) binaryStats {
	t.Helper()
	var st binaryStats
	sql := fmt.Sprintf("SELECT pghash_%d($1)", info.oid)
	for range binaryPerType {
		b := g.binaryValue(info.oid)
		res := conn.PgConn().ExecParams(ctx, sql, [][]byte{b}, []uint32{info.oid}, []int16{1}, []int16{0}).Read()
		st.sent++
		got, gotOK := HashBinary(info.oid, b)
		if res.Err != nil {
			if ctx.Err() != nil {
				t.Fatal(res.Err)
			}
			if gotOK {
				t.Errorf("HashBinary(%s, %x) = %d, true; PostgreSQL: %v", info.name, b, got, res.Err)
			}
			continue
		}
		st.valid++
		want, err := strconv.ParseInt(string(res.Rows[0][0]), 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		if !gotOK || got != int32(want) {
			t.Errorf("HashBinary(%s, %x) = %d, %v, PostgreSQL %d", info.name, b, got, gotOK, want)
		}
	}
	return st
}

// binaryValue generates a random binary-format value of typ, valid or not.
func (g *gen) binaryValue(typ uint32) []byte {
	size := map[uint32]int{OIDBool: 1, OIDChar: 1, OIDInt2: 2, OIDInt4: 4, OIDOid: 4, OIDFloat4: 4, OIDDate: 4,
		OIDInt8: 8, OIDFloat8: 8, OIDTime: 8, OIDTimestamp: 8, OIDTimestamptz: 8, OIDUUID: 16}[typ]
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(g.r.IntN(256))
		}
		return b
	}
	if size > 0 && g.chance(0.05) {
		return random(g.r.IntN(2 * size)) // mostly a wrong length
	}
	be32 := func(v int64) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	be64 := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	switch typ {
	case OIDDate:
		switch g.r.IntN(4) {
		case 0:
			return be32([]int64{math.MinInt32, math.MaxInt32, dateMin, dateMin - 1, dateEnd - 1, dateEnd, 0, -1}[g.r.IntN(8)])
		case 1:
			return random(4)
		}
		return be32(dateMin + g.r.Int64N(dateEnd-dateMin))
	case OIDTimestamp, OIDTimestamptz:
		switch g.r.IntN(4) {
		case 0:
			return be64([]int64{math.MinInt64, math.MaxInt64, timestampMin, timestampMin - 1, timestampEnd - 1,
				timestampEnd, 0, -1, math.MinInt64 + 1, math.MaxInt64 - 1}[g.r.IntN(10)])
		case 1:
			return random(8)
		}
		lo := int64(timestampMin)
		return be64(lo + int64(g.r.Uint64N(uint64(timestampEnd)+uint64(-lo))))
	case OIDTime:
		switch g.r.IntN(4) {
		case 0:
			return be64([]int64{0, -1, usecsPerDay, usecsPerDay + 1, math.MinInt64, math.MaxInt64}[g.r.IntN(6)])
		case 1:
			return random(8)
		}
		return be64(g.r.Int64N(usecsPerDay + 1))
	case OIDFloat4:
		if g.chance(0.1) {
			return be32(int64([]uint32{0, 0x80000000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7f800000, 0xff800000, 1}[g.r.IntN(8)]))
		}
	case OIDFloat8:
		if g.chance(0.1) {
			return be64(int64([]uint64{0, 1 << 63, 0x7ff8000000000000, 0xfff8000000000000, 0x7ff0000000000001,
				0x7ff0000000000000, 0xfff0000000000000, 1}[g.r.IntN(8)]))
		}
	case OIDNumeric:
		return g.binaryNumeric()
	case OIDText, OIDVarchar, OIDBPChar, OIDName, OIDBytea:
		if g.chance(0.3) {
			return random(g.r.IntN(80))
		}
		if typ == OIDName {
			return []byte(g.nameText())
		}
		return []byte(g.textValue(80))
	}
	if size > 0 {
		return random(size)
	}
	return random(g.r.IntN(20))
}

func (g *gen) binaryNumeric() []byte {
	ndigits := g.r.IntN(7)
	weight := g.r.IntN(21) - 10
	switch g.r.IntN(10) {
	case 0:
		weight = []int{32767, -32768, 32766, -32767, 32760}[g.r.IntN(5)]
	case 1:
		weight = g.r.IntN(65536) - 32768
	}
	sign := []int{numericPos, numericNeg}[g.r.IntN(2)]
	if g.chance(0.1) {
		sign = []int{numericNaN, numericPInf, numericNInf, 0x8000, 0x1000, 0xE000, 0xFFFF}[g.r.IntN(7)]
	}
	dscale := g.r.IntN(30)
	if g.chance(0.05) {
		dscale = []int{numericDscaleMax, numericDscaleMax + 1, 0x8000, 0xFFFF, 0x4000}[g.r.IntN(5)]
	}
	b := binary.BigEndian.AppendUint16(nil, uint16(ndigits))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(weight)))
	b = binary.BigEndian.AppendUint16(b, uint16(sign))
	b = binary.BigEndian.AppendUint16(b, uint16(dscale))
	for i := range ndigits {
		d := g.r.IntN(10000)
		switch {
		case g.chance(0.2):
			d = 0
		case g.chance(0.02):
			d = []int{10000, 0xFFFF, 0x8000, 32767}[g.r.IntN(4)]
		case i == ndigits-1 && g.chance(0.3):
			d = d / 10 * 10
		}
		b = binary.BigEndian.AppendUint16(b, uint16(d))
	}
	if g.chance(0.03) {
		b = b[:len(b)-1-g.r.IntN(len(b))] // truncated
	}
	return b
}
