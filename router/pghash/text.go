package pghash

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"
)

// nameDataLen is NAMEDATALEN: a name holds at most nameDataLen-1 bytes.
const nameDataLen = 64

// HashText hashes the value that PostgreSQL 15's input function for typeOID makes of the text
// s, as in an SQL literal, a text-format Bind parameter or a COPY text field (after COPY's
// own escapes are undone).
//
// ok is false when typeOID is not supported, when s is not valid input, and when s is a form
// this package does not read with certainty, notably any form whose value depends on session
// settings (a date other than ISO YYYY-MM-DD, a timestamptz without an explicit numeric UTC
// offset, ...). The caller then asks PostgreSQL, for instance through CanonicalExpr. HashText
// never returns ok with a hash of a value PostgreSQL would read differently.
//
// Per type, HashText accepts:
//   - int2, int4, int8: [ws][+|-]digits[ws], in the type's range;
//   - oid: [ws][+|-]digits[ws] as oidin reads it: 0..4294967295, and -1..-2147483648
//     meaning 2^32 minus their magnitude (and strtoul's 64-bit wraparounds);
//   - numeric: [ws][+|-](digits[.digits]|.digits)[e[+|-]digits][ws], and NaN, Infinity,
//     +Infinity, -Infinity, inf, +inf, -inf in any case; values beyond the storage format's
//     limits are refused;
//   - float4, float8: the same decimal forms, correctly rounded (as glibc's strtof/strtod),
//     and [+|-]inf, [+|-]infinity, [+|-]nan in any case; hexadecimal forms, nan(...) and
//     values that overflow or underflow to zero are refused;
//   - bool: every spelling boolin accepts: a non-empty prefix of true, false, yes, no, or
//     on, off (at least two letters), or 1, 0, in any case, with surrounding whitespace;
//   - text, varchar: any valid UTF-8 without NUL; bpchar the same, trailing spaces ignored;
//     name the same, truncated to 63 bytes at a character boundary;
//   - "char": the first byte (0 for an empty string) or a \ooo octal escape, as charin;
//   - bytea: hex format \x... (whitespace between byte pairs allowed) or escape format
//     (\\ and \ooo with ooo up to 377);
//   - uuid: 32 hex digits, optionally a hyphen after any group of four, optionally within
//     braces, as uuid_in;
//   - date: [ws]YYYY-MM-DD[ws] with a four-digit year 0001..9999, and epoch, infinity,
//     -infinity in any case;
//   - timestamp: date[(space|T)HH:MM[:SS[.fraction]]] with the same date, hours 00..23 or
//     24:00:00, fractions rounded to microseconds as PostgreSQL does; epoch, infinity,
//     -infinity;
//   - timestamptz: the timestamp forms followed by an explicit numeric offset (+HH, +HHMM,
//     +HH:MM or +HH:MM:SS, or with -, up to 15 hours, optionally after spaces); epoch,
//     infinity, -infinity. A zone name or abbreviation (including Z) is refused;
//   - time: HH:MM[:SS[.fraction]] with hours 00..23 or 24:00:00.
func HashText(typeOID uint32, s []byte) (h int32, ok bool) {
	if !validText(s) {
		return 0, false
	}
	switch typeOID {
	case OIDInt2:
		v, ok := parseInt(s, math.MinInt16, math.MaxInt16)
		return Int4(int32(v)), ok
	case OIDInt4:
		v, ok := parseInt(s, math.MinInt32, math.MaxInt32)
		return Int4(int32(v)), ok
	case OIDInt8:
		v, ok := parseInt(s, math.MinInt64, math.MaxInt64)
		return Int8(v), ok
	case OIDOid:
		v, ok := parseOid(s)
		return Oid(v), ok
	case OIDNumeric:
		return hashNumericText(s)
	case OIDFloat4:
		f, ok := parseFloat(s, 32)
		return Float4(float32(f)), ok
	case OIDFloat8:
		f, ok := parseFloat(s, 64)
		return Float8(f), ok
	case OIDBool:
		v, ok := parseBool(s)
		return Bool(v), ok
	case OIDText, OIDVarchar:
		return Text(s), true
	case OIDBPChar:
		return BPChar(s), true
	case OIDName:
		return Text(clipName(s)), true
	case OIDChar:
		return Char(parseChar(s)), true
	case OIDBytea:
		return hashByteaText(s)
	case OIDUUID:
		u, ok := parseUUID(s)
		return UUID(u), ok
	case OIDDate:
		d, ok := parseDate(s)
		return Int4(d), ok
	case OIDTimestamp:
		t, ok := parseTimestamp(s, false)
		return Int8(t), ok
	case OIDTimestamptz:
		t, ok := parseTimestamp(s, true)
		return Int8(t), ok
	case OIDTime:
		t, ok := parseTime(s)
		return Int8(t), ok
	}
	return 0, false
}

// validText reports whether s can reach an input function at all: PostgreSQL verifies the
// encoding of every incoming string (and rejects NUL bytes) before converting it.
func validText(s []byte) bool {
	return bytes.IndexByte(s, 0) < 0 && utf8.Valid(s)
}

// isSpace is C's isspace in the "C" locale, which PostgreSQL's input functions use.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func trimSpace(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// equalFoldASCII reports whether s equals the lower-case ASCII word w, ignoring ASCII case.
func equalFoldASCII(s []byte, w string) bool {
	if len(s) != len(w) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// parseInt is pg_strtoint16/32/64: [ws][+|-]digits[ws], range-checked.
func parseInt(s []byte, lo, hi int64) (int64, bool) {
	s = trimSpace(s)
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	// Accumulate the magnitude as uint64 to reach MinInt64.
	var m uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		if m > (math.MaxUint64-9)/10 {
			return 0, false
		}
		m = m*10 + uint64(c-'0')
	}
	if neg {
		if m > uint64(-(lo+1))+1 {
			return 0, false
		}
		return -int64(m-1) - 1, true
	}
	if m > uint64(hi) {
		return 0, false
	}
	return int64(m), true
}

// parseOid is oidin: strtoul (an unsigned long, 64 bits, which also takes a sign and negates
// modulo 2^64), then a result that must fit an Oid after either unsigned or signed extension.
// So -1 is 4294967295, and even -18446744073709551615 is 1.
func parseOid(s []byte) (uint32, bool) {
	s = trimSpace(s)
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	var m uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if m > (math.MaxUint64-d)/10 {
			return 0, false // ERANGE
		}
		m = m*10 + d
	}
	if neg {
		m = -m
	}
	if m > math.MaxUint32 && m < 0xFFFFFFFF80000000 {
		return 0, false
	}
	return uint32(m), true
}

// parseFloat is float4in/float8in: decimal forms only (no hexadecimal, no nan(...)),
// correctly rounded; overflow and underflow to zero are errors in PostgreSQL.
func parseFloat(s []byte, bitSize int) (float64, bool) {
	s = trimSpace(s)
	body := s
	if len(body) > 0 && (body[0] == '+' || body[0] == '-') {
		body = body[1:]
	}
	switch {
	case equalFoldASCII(body, "nan"):
		return math.NaN(), true
	case equalFoldASCII(body, "inf"), equalFoldASCII(body, "infinity"):
		if s[0] == '-' {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	}
	i := 0
	digits, nonzero := 0, false
	for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
		digits++
		nonzero = nonzero || body[i] != '0'
	}
	if i < len(body) && body[i] == '.' {
		i++
		for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
			digits++
			nonzero = nonzero || body[i] != '0'
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(body) && (body[i] == 'e' || body[i] == 'E') {
		i++
		if i < len(body) && (body[i] == '+' || body[i] == '-') {
			i++
		}
		start := i
		for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
		}
		if i == start {
			return 0, false
		}
	}
	if i != len(body) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(s), bitSize)
	if err != nil || math.IsInf(f, 0) || (f == 0 && nonzero) {
		return 0, false
	}
	return f, true
}

// parseBool is boolin (parse_bool_with_len on the whitespace-trimmed text).
func parseBool(s []byte) (bool, bool) {
	s = trimSpace(s)
	if len(s) == 0 {
		return false, false
	}
	prefix := func(w string) bool { return len(s) <= len(w) && equalFoldASCII(s, w[:len(s)]) }
	switch s[0] {
	case 't', 'T':
		return true, prefix("true")
	case 'f', 'F':
		return false, prefix("false")
	case 'y', 'Y':
		return true, prefix("yes")
	case 'n', 'N':
		return false, prefix("no")
	case 'o', 'O':
		// "o" alone is ambiguous: at least two letters are compared.
		if len(s) >= 2 && prefix("on") {
			return true, true
		}
		if len(s) >= 2 && prefix("off") {
			return false, true
		}
	case '1':
		return true, len(s) == 1
	case '0':
		return false, len(s) == 1
	}
	return false, false
}

// clipName is namein's truncation to NAMEDATALEN-1 bytes at a character boundary (s is
// valid UTF-8).
func clipName(s []byte) []byte {
	if len(s) < nameDataLen {
		return s
	}
	n := nameDataLen - 1
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// parseChar is charin: a \ooo octal escape, else the first byte (0 when empty).
func parseChar(s []byte) byte {
	if len(s) == 4 && s[0] == '\\' && isOctal(s[1]) && isOctal(s[2]) && isOctal(s[3]) {
		return (s[1]-'0')<<6 + (s[2]-'0')<<3 + (s[3] - '0')
	}
	if len(s) == 0 {
		return 0
	}
	return s[0]
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// hashByteaText is byteain followed by hashvarlena.
func hashByteaText(s []byte) (int32, bool) {
	var buf [64]byte
	out := buf[:0]
	if len(s) >= 2 && s[0] == '\\' && s[1] == 'x' {
		// hex_decode: whitespace may stand between byte pairs, not inside one.
		for i := 2; i < len(s); {
			if c := s[i]; c == ' ' || c == '\n' || c == '\t' || c == '\r' {
				i++
				continue
			}
			hi, ok1 := unhex(s[i])
			if !ok1 || i+1 >= len(s) {
				return 0, false
			}
			lo, ok2 := unhex(s[i+1])
			if !ok2 {
				return 0, false
			}
			out = append(out, hi<<4|lo)
			i += 2
		}
		return Text(out), true
	}
	for i := 0; i < len(s); {
		switch {
		case s[i] != '\\':
			out = append(out, s[i])
			i++
		case i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]):
			out = append(out, (s[i+1]-'0')<<6+(s[i+2]-'0')<<3+(s[i+3]-'0'))
			i += 4
		case i+1 < len(s) && s[i+1] == '\\':
			out = append(out, '\\')
			i += 2
		default:
			return 0, false
		}
	}
	return Text(out), true
}

// parseUUID is uuid_in: optional braces, 32 hex digits, a hyphen allowed after every group
// of four except the last; no whitespace.
func parseUUID(s []byte) ([16]byte, bool) {
	var u [16]byte
	braces := len(s) > 0 && s[0] == '{'
	if braces {
		s = s[1:]
	}
	for i := range 16 {
		if len(s) < 2 {
			return u, false
		}
		hi, ok1 := unhex(s[0])
		lo, ok2 := unhex(s[1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[i] = hi<<4 | lo
		s = s[2:]
		if len(s) > 0 && s[0] == '-' && i%2 == 1 && i < 15 {
			s = s[1:]
		}
	}
	if braces {
		if len(s) == 0 || s[0] != '}' {
			return u, false
		}
		s = s[1:]
	}
	return u, len(s) == 0
}
