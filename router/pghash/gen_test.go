package pghash

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Generators of text-form values for the differential test: mostly valid values in the forms
// HashText reads, plus edge cases, forms it must refuse (session-dependent or exotic) and
// invalid input. Every generated string is valid UTF-8 without NUL, so that it can be sent to
// PostgreSQL.

type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))} }

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func (g *gen) ws() string {
	if g.chance(0.8) {
		return ""
	}
	return g.pick(" ", "  ", "\t", "\n", " \r\n", "\v", "\f")
}

func (g *gen) randCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' && g.chance(0.5) {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func (g *gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

func (g *gen) garbage() string {
	return g.pick("", " ", "abc", "1.0.0", "--1", "+-1", "1e", "0x1F", "1_000", "١٢", "½", "∞", "'1'",
		"1 2", "NULL", "null", "\\N", "é", "1,5", "(1)", "{1}", "true", "-", "+", ".", "e5")
}

func (g *gen) intText(lo, hi int64) string {
	var v int64
	switch g.r.IntN(6) {
	case 0:
		v = []int64{0, 1, -1, lo, hi, lo + 1, hi - 1, 10, -10, 42}[g.r.IntN(10)]
	case 1:
		v = int64(g.r.IntN(2001)) - 1000
	default:
		if lo == math.MinInt64 && hi == math.MaxInt64 {
			v = int64(g.r.Uint64())
		} else {
			v = lo + int64(g.r.Uint64N(uint64(hi-lo)+1))
		}
	}
	s := strconv.FormatInt(v, 10)
	switch g.r.IntN(12) {
	case 0:
		if v >= 0 {
			s = "+" + s
		}
	case 1:
		if v >= 0 {
			s = strings.Repeat("0", g.r.IntN(5)) + s
		} else {
			s = "-" + strings.Repeat("0", g.r.IntN(5)) + s[1:]
		}
	case 2: // out of range by one
		if v == hi {
			s = strconv.FormatUint(uint64(hi)+1, 10)
		} else if v == lo {
			s = "-" + strconv.FormatUint(uint64(-(lo+1))+1+1, 10)
		}
	case 3:
		s = g.garbage()
	case 4:
		s = g.digits(1 + g.r.IntN(25))
	}
	return g.ws() + s + g.ws()
}

func (g *gen) oidText() string {
	var s string
	switch g.r.IntN(8) {
	case 0:
		s = g.pick("0", "-0", "1", "-1", "4294967295", "4294967296", "-2147483648", "-2147483649",
			"2147483648", "+7", "18446744073709551615", "-18446744073709551615", "99999999999999999999999")
	case 1:
		s = "-" + strconv.FormatUint(g.r.Uint64N(1<<31+1), 10)
	case 2:
		s = "-" + strconv.FormatUint(g.r.Uint64N(1<<33), 10)
	case 3:
		s = g.garbage()
	default:
		s = strconv.FormatUint(uint64(g.r.Uint32()), 10)
	}
	return g.ws() + s + g.ws()
}

func (g *gen) numericText() string {
	switch g.r.IntN(20) {
	case 0:
		return g.ws() + g.randCase(g.pick("nan", "infinity", "+infinity", "-infinity", "inf", "+inf", "-inf",
			"+nan", "-nan", "infinit", "infinityx", "nana")) + g.ws()
	case 1:
		return g.pick("1e131071", "9.9999e131071", "1e131072", "0.0001e131075", "0.00001e131076", "1e-16383",
			"1e-16384", "0e-16383", "0e-16384", "0.5e-16383", "-0.000", "0", "-0", "00000", ".0", "0.",
			"1e1073741822", "0e1073741822", "1e-1073741822", "0e1073741823", "1e+0", "1E-0", "123456789e-5",
			strings.Repeat("9", 300), "0."+strings.Repeat("0", 500)+"1", "1"+strings.Repeat("0", 1000),
			"9999.9999", "10000", "0.0001", "0.00001", "1000000000000.000000000001")
	case 2:
		return g.garbage()
	case 3:
		return g.ws() + g.pick("1e 5", "1e", "1.5e+", ".", "-.", "1..2", "1.2.3", "--1", "1e5.5", "0x10", "1_0") + g.ws()
	}
	var b strings.Builder
	b.WriteString(g.ws())
	b.WriteString(g.pick("", "", "", "-", "+"))
	intLen := g.r.IntN(25)
	if g.chance(0.05) {
		intLen = 100 + g.r.IntN(200)
	}
	fracLen := g.r.IntN(25)
	if g.chance(0.1) {
		b.WriteString(strings.Repeat("0", 1+g.r.IntN(5)))
	}
	b.WriteString(g.digits(intLen))
	if fracLen > 0 || g.chance(0.2) {
		b.WriteByte('.')
		if g.chance(0.2) {
			b.WriteString(strings.Repeat("0", g.r.IntN(10)))
		}
		b.WriteString(g.digits(fracLen))
		if g.chance(0.2) {
			b.WriteString(strings.Repeat("0", g.r.IntN(10)))
		}
	}
	if intLen == 0 && fracLen == 0 {
		b.WriteString(g.digits(1 + g.r.IntN(3)))
	}
	if g.chance(0.3) {
		b.WriteString(g.pick("e", "E"))
		b.WriteString(g.pick("", "+", "-"))
		switch g.r.IntN(4) {
		case 0:
			b.WriteString(strconv.Itoa(g.r.IntN(131100)))
		case 1:
			b.WriteString(strconv.Itoa(16350 + g.r.IntN(60)))
		default:
			b.WriteString(strconv.Itoa(g.r.IntN(40)))
		}
	}
	b.WriteString(g.ws())
	return b.String()
}

func (g *gen) floatText(bits int) string {
	switch g.r.IntN(16) {
	case 0:
		return g.ws() + g.randCase(g.pick("nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity",
			"-infinity", "infinit", "nan(1)", "0x1p3", "-0", "+0", "0e-999", "-0.0e+999", "1e-400", "1e400")) + g.ws()
	case 1:
		if bits == 64 {
			return g.pick("1.7976931348623157e308", "1.7976931348623158e308", "1.797693134862315807e308",
				"1.7976931348623159e308", "2.2250738585072014e-308", "4.9406564584124654e-324",
				"2.4703282292062328e-324", "2.4703282292062329e-324", "5e-324", "3e-324", "2e-324", "1e-323")
		}
		return g.pick("3.4028234663852886e38", "3.4028235e38", "3.4028235677973366e38", "3.40282357e38",
			"1.17549435e-38", "1.4e-45", "7.006492321624086e-46", "7.006492321624087e-46", "1e-45", "7e-46", "1e-46")
	case 2:
		return g.garbage()
	case 3: // a float4 halfway point, slightly off either way
		x := math.Float32frombits(g.r.Uint32()&^(0xff<<23) | uint32(100+g.r.IntN(60))<<23)
		y := math.Nextafter32(x, float32(math.Inf(1)))
		mid := (float64(x) + float64(y)) / 2
		s := strconv.FormatFloat(mid, 'e', -1, 64)
		if g.chance(0.5) {
			s = strconv.FormatFloat(mid, 'e', 8+g.r.IntN(12), 64)
		}
		return s
	case 4: // many digits
		return g.pick("", "-") + g.digits(1+g.r.IntN(30)) + "." + g.digits(g.r.IntN(40)) + "e" + strconv.Itoa(g.r.IntN(80)-40)
	}
	var f float64
	if bits == 32 {
		f = float64(math.Float32frombits(g.r.Uint32()))
	} else {
		f = math.Float64frombits(g.r.Uint64())
	}
	if math.IsNaN(f) || g.chance(0.3) {
		f = (g.r.Float64() - 0.5) * math.Pow(10, float64(g.r.IntN(20)-10))
	}
	var s string
	switch g.r.IntN(4) {
	case 0:
		s = strconv.FormatFloat(f, 'g', -1, bits)
	case 1:
		s = strconv.FormatFloat(f, 'e', g.r.IntN(25), 64)
	case 2:
		s = strconv.FormatFloat(f, 'f', -1, bits)
		if len(s) > 400 {
			s = strconv.FormatFloat(f, 'e', -1, bits)
		}
	default:
		s = strconv.FormatFloat(f, 'g', 3+g.r.IntN(20), 64)
	}
	if g.chance(0.1) {
		s = strings.Replace(s, "e", "E", 1)
	}
	return g.ws() + s + g.ws()
}

func (g *gen) boolText() string {
	if g.chance(0.1) {
		return g.garbage()
	}
	w := g.pick("true", "false", "yes", "no", "on", "off", "1", "0", "tru", "fals", "ye", "of", "o", "onn", "offf",
		"truee", "t", "f", "y", "n", "yess", "nope", "10", "00", "2")
	if len(w) > 1 && g.chance(0.3) {
		w = w[:1+g.r.IntN(len(w))]
	}
	return g.ws() + g.randCase(w) + g.ws()
}

var sampleRunes = []string{"a", "Z", "0", " ", "é", "ß", "中", "文", "😀", "👍🏽", "\\", "'", "\"", "\t", "ä", "ø", "Ω", "\u00a0", "\u2028", "x", "_", "-"}

func (g *gen) textValue(maxLen int) string {
	switch g.r.IntN(10) {
	case 0:
		return g.pick("", " ", "  ", "tomato", "HN802", "a ", "ab  ", " a", "é ", "\\x41", "NULL")
	case 1:
		return g.digits(g.r.IntN(20))
	}
	var b strings.Builder
	n := g.r.IntN(maxLen + 1)
	for b.Len() < n {
		if g.chance(0.5) {
			b.WriteByte(byte(' ' + g.r.IntN(95)))
		} else {
			b.WriteString(sampleRunes[g.r.IntN(len(sampleRunes))])
		}
	}
	if g.chance(0.3) {
		b.WriteString(strings.Repeat(" ", 1+g.r.IntN(4)))
	}
	return b.String()
}

func (g *gen) nameText() string {
	if g.chance(0.4) {
		// Around the 63-byte limit, with multibyte characters straddling it.
		var b strings.Builder
		target := 55 + g.r.IntN(20)
		for b.Len() < target {
			b.WriteString(sampleRunes[g.r.IntN(len(sampleRunes))])
		}
		return b.String()
	}
	return g.textValue(100)
}

func (g *gen) charText() string {
	switch g.r.IntN(5) {
	case 0:
		return fmt.Sprintf("\\%o%o%o", g.r.IntN(8), g.r.IntN(8), g.r.IntN(8))
	case 1:
		return g.pick("", "\\", "\\\\", "\\12", "\\1234", "\\8", "\\x41", "ab", "é", "中文", "\\400", "\\777", "\\000")
	}
	return g.textValue(3)
}

func (g *gen) byteaText() string {
	b := make([]byte, g.r.IntN(40))
	for i := range b {
		b[i] = byte(g.r.IntN(256))
	}
	switch g.r.IntN(8) {
	case 0:
		return g.pick("", "\\", "\\x", "\\x4", "\\x4 1", "\\X41", "\\x zz", "\\400", "a\\b", "\\\\", "\\\\\\", "\\0",
			"\\01", "\\012x", "\\x 41 \n42\t\r", "é", "\\xé", "abc\\")
	case 1, 2, 3: // hex format
		var s strings.Builder
		s.WriteString("\\x")
		for _, c := range b {
			if g.chance(0.1) {
				s.WriteString(g.pick(" ", "\n", "\t", "\r", "  "))
			}
			h := hex.EncodeToString([]byte{c})
			if g.chance(0.3) {
				h = strings.ToUpper(h)
			}
			s.WriteString(h)
		}
		return s.String()
	}
	var s strings.Builder // escape format
	for _, c := range b {
		switch {
		case c == '\\':
			s.WriteString("\\\\")
		case c >= 0x20 && c < 0x7f && !g.chance(0.1):
			s.WriteByte(c)
		default:
			fmt.Fprintf(&s, "\\%03o", c)
		}
	}
	if g.chance(0.2) {
		s.WriteString(sampleRunes[g.r.IntN(len(sampleRunes))])
	}
	return s.String()
}

func (g *gen) uuidText() string {
	var u [16]byte
	for i := range u {
		u[i] = byte(g.r.IntN(256))
	}
	h := hex.EncodeToString(u[:])
	if g.chance(0.3) {
		h = strings.ToUpper(h)
	}
	var s strings.Builder
	switch g.r.IntN(6) {
	case 0: // hyphens anywhere after groups of four
		for i := 0; i < 32; i += 4 {
			s.WriteString(h[i : i+4])
			if i < 28 && g.chance(0.5) {
				s.WriteByte('-')
			}
		}
	case 1:
		s.WriteString(h)
	case 2: // invalid variants
		v := h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
		return g.pick(v+"-", "-"+v, " "+v, v+" ", v[:35], v+"0", "{"+v, v+"}", h[:2]+"-"+h[2:], h[:31]+"g",
			"{"+v+"}}", "", "{}", strings.Replace(v, "-", "--", 1))
	default:
		s.WriteString(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
	}
	if g.chance(0.1) {
		return "{" + s.String() + "}"
	}
	return s.String()
}

type civil struct{ y, m, d int }

func (g *gen) date() civil {
	var y int
	switch g.r.IntN(5) {
	case 0:
		y = 1 + g.r.IntN(9999)
	case 1:
		y = []int{1, 2, 1582, 1900, 1970, 1999, 2000, 2038, 9999}[g.r.IntN(9)]
	default:
		y = 1900 + g.r.IntN(250)
	}
	m := 1 + g.r.IntN(12)
	d := 1 + g.r.IntN(daysInMonth(y, m))
	if g.chance(0.02) {
		d = daysInMonth(y, m) + 1 // invalid
	}
	return civil{y, m, d}
}

var monthNames = []string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func (g *gen) dateText() string {
	c := g.date()
	switch g.r.IntN(14) {
	case 0:
		return g.ws() + g.randCase(g.pick("epoch", "infinity", "-infinity", "+infinity", "today", "tomorrow",
			"yesterday", "now", "allballs", "J2451545", "infinityy")) + g.ws()
	case 1:
		return fmt.Sprintf("%02d/%02d/%04d", c.m, c.d, c.y)
	case 2:
		return fmt.Sprintf("%02d.%02d.%04d", c.d, c.m, c.y)
	case 3:
		return fmt.Sprintf("%04d%02d%02d", c.y, c.m, c.d)
	case 4:
		return fmt.Sprintf("%s %d, %d", monthNames[c.m-1], c.d, c.y)
	case 5:
		return fmt.Sprintf("%04d-%02d-%02d BC", c.y, c.m, c.d)
	case 6:
		return fmt.Sprintf("%d-%d-%d", c.y, c.m, c.d)
	case 7:
		return fmt.Sprintf("%d-%02d-%02d", 10000+g.r.IntN(5000000), c.m, c.d)
	case 8:
		return fmt.Sprintf("%02d-%02d-%02d", c.y%100, c.m, c.d)
	}
	return g.ws() + fmt.Sprintf("%04d-%02d-%02d", c.y, c.m, c.d) + g.ws()
}

func (g *gen) timeOfDay() string {
	h, m, s := g.r.IntN(24), g.r.IntN(60), g.r.IntN(60)
	switch g.r.IntN(20) {
	case 0:
		return g.pick("24:00:00", "24:00", "24:00:00.000", "24:00:00.0000001", "24:00:00.5", "24:00:00.000001", "24:00:01", "24:01", "25:00:00",
			"23:59:60", "23:59:59.9999995", "23:59:59.9999994", "23:59:59.99999951", "00:00:00.0000005",
			"00:00:00.0000015", "00:00:00.0000025", "12:00:00.", "12:00:00.1234567890123", "1:02:03",
			"12:34.5", "12:60", "12:00:61", "00:00:00.5e1")
	case 1:
		return fmt.Sprintf("%02d:%02d", h, m)
	}
	t := fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	if g.chance(0.6) {
		t += "." + g.digits(1+g.r.IntN(9))
	}
	return t
}

func (g *gen) timestampText(withTZ bool) string {
	c := g.date()
	date := fmt.Sprintf("%04d-%02d-%02d", c.y, c.m, c.d)
	tod := g.timeOfDay()
	switch g.r.IntN(16) {
	case 0:
		return g.ws() + g.randCase(g.pick("epoch", "infinity", "-infinity", "+infinity", "now", "today", "allballs")) + g.ws()
	case 1:
		return fmt.Sprintf("%02d/%02d/%04d %s", c.m, c.d, c.y, tod)
	case 2:
		return fmt.Sprintf("%s %d %s %d", monthNames[c.m-1], c.d, tod, c.y)
	case 3:
		return date
	case 4:
		return date + " " + tod + " " + g.pick("UTC", "Z", "z", "Europe/Paris", "America/New_York", "EST", "PST8PDT", "GMT+3", "BC")
	case 5:
		return fmt.Sprintf("%d-%02d-%02d %s", 10000+g.r.IntN(200000), c.m, c.d, tod)
	}
	sep := " "
	if g.chance(0.2) {
		sep = g.pick("T", "t", "  ")
	}
	s := date + sep + tod
	if withTZ || g.chance(0.1) {
		sign := g.pick("+", "-")
		hh, mm, ss := g.r.IntN(17), g.r.IntN(60), g.r.IntN(60)
		var off string
		switch g.r.IntN(6) {
		case 0:
			off = fmt.Sprintf("%s%02d", sign, hh)
		case 1:
			off = fmt.Sprintf("%s%02d%02d", sign, hh, mm)
		case 2:
			off = fmt.Sprintf("%s%02d:%02d", sign, hh, mm)
		case 3:
			off = fmt.Sprintf("%s%02d:%02d:%02d", sign, hh, mm, ss)
		case 4:
			off = g.pick("+00", "-00", "+0000", "+00:00", "Z", "+1", "+123", "+02:3", "+15:59:59", "+16", "-15", "+ 02", "+02:60", "")
		default:
			off = ""
		}
		s += g.pick("", "", "", " ") + off
	}
	return g.ws() + s + g.ws()
}

func (g *gen) timeText() string {
	switch g.r.IntN(10) {
	case 0:
		return g.ws() + g.pick("allballs", "now", "12:00 PM", "12:00:00 AM", "04:05:06 PST", "04:05:06+02",
			"2020-01-02 04:05:06", "040506", "T04:05:06", "4:5:6") + g.ws()
	}
	return g.ws() + g.timeOfDay() + g.ws()
}

// genText returns a generator of text-form values for typ.
func (g *gen) genText(typ uint32) func() string {
	switch typ {
	case OIDInt2:
		return func() string { return g.intText(math.MinInt16, math.MaxInt16) }
	case OIDInt4:
		return func() string { return g.intText(math.MinInt32, math.MaxInt32) }
	case OIDInt8:
		return func() string { return g.intText(math.MinInt64, math.MaxInt64) }
	case OIDOid:
		return g.oidText
	case OIDNumeric:
		return g.numericText
	case OIDFloat4:
		return func() string { return g.floatText(32) }
	case OIDFloat8:
		return func() string { return g.floatText(64) }
	case OIDBool:
		return g.boolText
	case OIDText, OIDVarchar, OIDBPChar:
		return func() string { return g.textValue(60) }
	case OIDName:
		return g.nameText
	case OIDChar:
		return g.charText
	case OIDBytea:
		return g.byteaText
	case OIDUUID:
		return g.uuidText
	case OIDDate:
		return g.dateText
	case OIDTimestamp:
		return func() string { return g.timestampText(false) }
	case OIDTimestamptz:
		return func() string { return g.timestampText(true) }
	case OIDTime:
		return g.timeText
	}
	panic("no generator")
}
