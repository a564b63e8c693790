package pghash

import (
	"math"
	"strings"
	"testing"
)

// Golden values computed by PostgreSQL 15.

func TestTextGolden(t *testing.T) {
	for s, want := range map[string]int32{
		"tomato":                      828595980,
		"petunia":                     -184459358,
		"rose":                        258958600,
		"":                            -1477818771,
		"a":                           1075015857,
		"HN802":                       1312979697,
		"FA2K1":                       -317784198,
		"hello world, 12+ bytes long": 1112741439,
	} {
		if got := Text([]byte(s)); got != want {
			t.Errorf("Text(%q) = %d, want %d", s, got, want)
		}
		for _, typ := range []uint32{OIDText, OIDVarchar, OIDName, OIDBPChar} {
			if got, ok := HashText(typ, []byte(s)); !ok || got != want {
				t.Errorf("HashText(%d, %q) = %d, %v, want %d", typ, s, got, ok, want)
			}
		}
	}
}

func TestIntGolden(t *testing.T) {
	int4 := map[int32]int32{
		0: -272711505, 1: -1905060026, 2: 1134484726, 5: -1330264708, 10: -1547814713,
		-1: 385747274, -5: 1412886042, 32743: 825136273, 2147483647: -96758253,
	}
	for v, want := range int4 {
		if got := Int4(v); got != want {
			t.Errorf("Int4(%d) = %d, want %d", v, got, want)
		}
		if got := Int8(int64(v)); got != want {
			t.Errorf("Int8(%d) = %d, want %d", v, got, want)
		}
	}
	int8 := map[int64]int32{
		4294967296: -1905060026, -4294967296: -272711505, 9223372036854775807: -1524351049,
	}
	for i, want := range []int32{-1905060026, 1134484726, -28094569, -1011077333, -1330264708,
		566031088, -978793473, -2047600124, 1672378334, -1547814713} {
		int8[int64(i+1)] = want
	}
	for v, want := range int8 {
		if got := Int8(v); got != want {
			t.Errorf("Int8(%d) = %d, want %d", v, got, want)
		}
	}
	if got, ok := HashText(OIDInt4, []byte(" -5 ")); !ok || got != 1412886042 {
		t.Errorf("HashText(int4, -5) = %d, %v", got, ok)
	}
	if got, ok := HashText(OIDInt8, []byte("9223372036854775807")); !ok || got != -1524351049 {
		t.Errorf("HashText(int8, max) = %d, %v", got, ok)
	}
	if got, ok := HashText(OIDInt2, []byte("32743")); !ok || got != 825136273 {
		t.Errorf("HashText(int2, 32743) = %d, %v", got, ok)
	}
	if got, ok := HashBinary(OIDInt4, []byte{0, 0, 0, 10}); !ok || got != -1547814713 {
		t.Errorf("HashBinary(int4, 10) = %d, %v", got, ok)
	}
}

func TestOtherGolden(t *testing.T) {
	check := func(name string, got, want int32) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	check("Numeric(1)", Numeric(0, []int16{1}), 1324868424)
	check("Numeric(1.00)", Numeric(0, []int16{1, 0}), 1324868424)
	check("Numeric(0)", Numeric(0, nil), -1)
	check("Float8(1.5)", Float8(1.5), 630860146)
	check("Float4(1.5)", Float4(1.5), 630860146)
	check("Float8(-0)", Float8(math.Copysign(0, -1)), 0)
	check("Float8(NaN)", Float8(math.NaN()), -1275764840)
	check("Float8(-NaN)", Float8(math.Float64frombits(0xfff8000000000001)), -1275764840)
	check("Float4(NaN)", Float4(float32(math.NaN())), -1275764840)
	u := [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
	check("UUID", UUID(u), 1154666245)
	check("BPChar(ab)", BPChar([]byte("ab")), 1718550461)
	check("BPChar(ab  )", BPChar([]byte("ab  ")), 1718550461)
	check("Char(0x80)", Char(0x80), 1361043915) // hashchar('\200'::"char") = hashint4(-128)
	check("Bool(true)", Bool(true), Int4(1))

	for typ, cases := range map[uint32]map[string]int32{
		OIDNumeric: {"1": 1324868424, "1.00": 1324868424, "-1": 1324868424, "1e0": 1324868424,
			"0.01e2": 1324868424, "0": -1, "-0.000": -1, "NaN": 0, "-inf": 0, " Infinity ": 0},
		OIDFloat8: {"1.5": 630860146, "15e-1": 630860146, "-0": 0, "NaN": -1275764840},
		OIDFloat4: {"1.5": 630860146, "nan": -1275764840},
		OIDUUID: {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11": 1154666245,
			"{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}": 1154666245,
			"a0eebc999c0b4ef8bb6d6bb9bd380a11":      1154666245},
		OIDBPChar: {"ab": 1718550461, "ab   ": 1718550461},
		OIDBool:   {"t": Int4(1), " yes ": Int4(1), "OFF": Int4(0), "0": Int4(0)},
		OIDChar:   {`\200`: 1361043915, "": Int4(0), "abc": Int4('a')},
		OIDDate:   {"2000-01-01": Int4(0), "2000-01-02": Int4(1), "1999-12-31": Int4(-1), "epoch": Int4(-10957)},
		OIDTimestamp: {"2000-01-01 00:00:00.000001": Int8(1), "2000-01-01": Int8(0),
			"infinity": Int8(math.MaxInt64)},
		OIDTimestamptz: {"2000-01-01 02:00:00+02": Int8(0), "2000-01-01T00:00:00-00:00:01": Int8(1e6)},
		OIDTime:        {"00:00:01": Int8(1e6), "24:00:00": Int8(86400e6)},
		OIDBytea:       {`\x616263`: Text([]byte("abc")), `a\142c`: Text([]byte("abc")), `\\`: Text([]byte(`\`))},
		OIDOid:         {"-1": Oid(math.MaxUint32), "4294967295": Oid(math.MaxUint32)},
	} {
		for s, want := range cases {
			got, ok := HashText(typ, []byte(s))
			if !ok || got != want {
				t.Errorf("HashText(%d, %q) = %d, %v, want %d", typ, s, got, ok, want)
			}
		}
	}
}

func TestNumericDigits(t *testing.T) {
	// 12345.678 is weight 1, digits {1, 2345, 6780}; 0.00012 is weight -1, digits {1, 2000}.
	for s, want := range map[string]int32{
		"12345.678":    Numeric(1, []int16{1, 2345, 6780}),
		"0.00012":      Numeric(-1, []int16{1, 2000}),
		"0.000012":     Numeric(-2, []int16{1200}),
		"1e4":          Numeric(1, []int16{1}),
		"-99990000.5":  Numeric(1, []int16{9999, 0, 5000}),
		"00123.4500e1": Numeric(0, []int16{1234, 5000}),
	} {
		if got, ok := HashText(OIDNumeric, []byte(s)); !ok || got != want {
			t.Errorf("HashText(numeric, %q) = %d, %v, want %d", s, got, ok, want)
		}
	}
}

func TestNameTruncation(t *testing.T) {
	long := strings.Repeat("é", 40) // 80 bytes: truncated to 31 characters, 62 bytes
	got, ok := HashText(OIDName, []byte(long))
	if want := Text([]byte(strings.Repeat("é", 31))); !ok || got != want {
		t.Errorf("HashText(name, long) = %d, %v, want %d", got, ok, want)
	}
	if _, ok := HashBinary(OIDName, []byte(long)); ok {
		t.Error("HashBinary(name) accepted 80 bytes")
	}
}

// TestRefused lists inputs HashText must not claim: invalid for PostgreSQL, or read
// according to session settings.
func TestRefused(t *testing.T) {
	for typ, inputs := range map[uint32][]string{
		OIDInt2:    {"", " ", "32768", "-32769", "1.0", "0x10", "1_000", "+", "- 1", "1e3", "١"},
		OIDInt4:    {"2147483648", "-2147483649", "12a", "99999999999999999999999"},
		OIDInt8:    {"9223372036854775808", "-9223372036854775809", "0x1F"},
		OIDOid:     {"4294967296", "-2147483649", "", "1.5"},
		OIDNumeric: {"", ".", "1.5e", "1e 5", "+nan", "1_000", "0x10", "1e131072", "1e-16384", "0e-99999", "1.2.3", "1e2147483647"},
		OIDFloat8:  {"", "1e400", "1e-400", "0x10", "nan(1)", "infinit", "1.5e", "1,5", "- 1"},
		OIDFloat4:  {"1e39", "1e-50"},
		OIDBool:    {"", "o", "tru e", "truex", "2", "yess", "of f"},
		OIDBytea:   {`\`, `\x4`, `\x4 1`, `\X41`, `\400`, `a\b`, `\x zz`},
		OIDUUID: {"", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
			"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-", "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11-", "{a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		OIDDate: {"01/02/2020", "02.01.2020", "2020-1-2", "20200102", "January 2, 2020", "2020-02-30", "0000-01-01",
			"2020-01-02 BC", "10000-01-01", "today", "now", "+infinity", "2020-01-02 00:00:00", "J2451545"},
		OIDTimestamp: {"01/02/2020 03:04:05", "2020-01-02 03:04:05+02", "2020-01-02 25:00:00", "2020-01-02 24:00:01",
			"2020-01-02 23:59:60", "2020-01-02 03:04:05 PM", "now", "2020-01-02 03:04.5",
			"2020-01-02 03:04:05.", "2020-01-02 03:04:05 Europe/Paris"},
		OIDTimestamptz: {"2020-01-02 03:04:05", "2020-01-02", "2020-01-02 03:04:05Z", "2020-01-02 03:04:05 UTC",
			"2020-01-02 03:04:05 Europe/Paris", "2020-01-02 03:04:05 EST", "2020-01-02 03:04:05+16",
			"2020-01-02 03:04:05+02:60", "2020-01-02 03:04:05 + 02", "01/02/2020 03:04:05+00", "2020-01-02 03:04:05+2"},
		OIDTime:   {"24:00:01", "24:00:00.5", "12:34.5", "1:02:03", "12:00:00+02", "12:00 PM", "allballs", "now", "23:59:60"},
		OIDText:   {"a\x00b", "\xff", "\xed\xa0\x80"},
		OIDChar:   {"\xff"},
		99999:     {"1"},
		OIDBPChar: {"\xc3"},
	} {
		for _, s := range inputs {
			if h, ok := HashText(typ, []byte(s)); ok {
				t.Errorf("HashText(%d, %q) = %d, true; want ok == false", typ, s, h)
			}
		}
	}
}

func TestBinaryRefused(t *testing.T) {
	for typ, inputs := range map[uint32][][]byte{
		OIDInt4: {nil, {1, 2, 3}, {1, 2, 3, 4, 5}},
		OIDDate: {{0x80, 0, 0, 1}, {0x7f, 0xff, 0xff, 0xfe}},
		OIDTime: {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0, 0, 0, 0x14, 0x1d, 0xd7, 0x60, 0x01}},
		OIDText: {{0xff}, {'a', 0}},
		OIDUUID: {make([]byte, 15)},
		OIDBool: {{}, {1, 1}},
		OIDNumeric: {
			{0, 1, 0, 0, 0, 0, 0},                   // short
			{0, 1, 0, 0, 0x40, 0, 0, 0, 0x27, 0x10}, // digit 10000
			{0, 0, 0, 0, 0x12, 0x34, 0, 0},          // bad sign
			{0, 0, 0, 0, 0, 0, 0x40, 0},             // bad dscale
		},
	} {
		for _, b := range inputs {
			if h, ok := HashBinary(typ, b); ok {
				t.Errorf("HashBinary(%d, %x) = %d, true; want ok == false", typ, b, h)
			}
		}
	}
	if h, ok := HashBinary(OIDTime, []byte{0, 0, 0, 0x14, 0x1d, 0xd7, 0x60, 0x00}); !ok || h != Int8(86400e6) {
		t.Errorf("HashBinary(time, 24:00) = %d, %v", h, ok)
	}
}

func TestCanonicalExpr(t *testing.T) {
	for _, typ := range []uint32{OIDBool, OIDBytea, OIDChar, OIDName, OIDInt8, OIDInt2, OIDInt4, OIDText, OIDOid,
		OIDFloat4, OIDFloat8, OIDBPChar, OIDVarchar, OIDDate, OIDTime, OIDTimestamp, OIDTimestamptz, OIDNumeric, OIDUUID} {
		if !Supported(typ) || !strings.Contains(CanonicalExpr(typ), "$1") {
			t.Errorf("type %d: Supported %v, CanonicalExpr %q", typ, Supported(typ), CanonicalExpr(typ))
		}
	}
	if Supported(1186) || CanonicalExpr(1186) != "" {
		t.Error("interval claimed")
	}
	if h, ok := HashCanonical(OIDInt4, []byte("0000000a")); !ok || h != -1547814713 {
		t.Errorf("HashCanonical(int4, 0000000a) = %d, %v", h, ok)
	}
	for _, c := range []string{"0000000", "0000000g", "000000000a"} {
		if _, ok := HashCanonical(OIDInt4, []byte(c)); ok {
			t.Errorf("HashCanonical(int4, %q) accepted", c)
		}
	}
}
