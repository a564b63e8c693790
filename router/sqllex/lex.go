// Package sqllex splits PostgreSQL SQL text into tokens with their byte offsets, following
// the token rules of PostgreSQL's own scanner (scan.l) closely enough that token boundaries
// agree with the parser's locations, in either standard_conforming_strings setting (Mode),
// and rewrites string literals into a form that reads the same in both (Portable).
//
// The router uses it on the hot path: to compute a statement's shape (its text with the
// literals taken out) for the plan cache, to find the literals' values, and to splice shard
// table names into a statement at the parser's locations without deparsing. Scan allocates
// nothing when dst has room.
package sqllex

import "strings"

// Kind is a token's kind.
type Kind uint8

// Token kinds.
const (
	Space  Kind = iota // whitespace and comments
	Ident              // unquoted identifier or keyword
	QIdent             // "quoted identifier" or U&"unicode identifier"
	String             // '...', E'...', U&'...', $tag$...$tag$ (N'...' is N then '...')
	BitStr             // B'0101' or X'ff'
	Number             // integer or decimal constant
	Param              // $1
	Op                 // operator: + - * / < > = ~ ! @ # % ^ & | ` ?, and ::
	Punct              // ( ) [ ] , ; : .
	Bad                // an unterminated quote or comment, or a stray byte
)

var kindNames = [...]string{"Space", "Ident", "QIdent", "String", "BitStr", "Number", "Param", "Op", "Punct", "Bad"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(?)"
}

// Token is one token: sql[Start:End].
type Token struct {
	Start, End int32
	Kind       Kind
	// Esc is set on a String token whose body takes backslash escapes: E'...', and
	// '...' when standard_conforming_strings is off.
	Esc bool
}

// Mode is what PostgreSQL's scanner reads a statement with besides its text: the
// session's standard_conforming_strings and backslash_quote. The zero Mode is
// PostgreSQL's default (standard_conforming_strings on, backslash_quote safe_encoding
// with a safe client encoding).
type Mode uint8

const (
	// NonStandard is standard_conforming_strings = off: a plain '...' string takes
	// backslash escapes, as E'...' does, and U&'...' strings are an error.
	NonStandard Mode = 1 << iota
	// NoBackslashQuote is backslash_quote = off (or safe_encoding with a client
	// encoding that can hide a backslash in a multibyte character): \' in a string is
	// an error.
	NoBackslashQuote
	// ClientOnlyEncoding is a client_encoding whose multibyte characters may contain
	// ASCII bytes (SJIS, BIG5, GBK, GB18030, UHC, JOHAB): PostgreSQL reads such a
	// character as one, pgshard's scanner (which reads bytes) as two, the second of which
	// may be a backslash. The router does not read non-ASCII statements in it.
	ClientOnlyEncoding
	// ConvertedEncoding is any other client_encoding but UTF8 and SQL_ASCII: PostgreSQL
	// converts a statement's bytes to the server's encoding before it reads them, and
	// pgshard, which reads UTF-8, would route and hash the bytes as they came (LATIN1
	// "\xc3\xa9" is "Ã©" to PostgreSQL, "é" as UTF-8). The router does not read
	// non-ASCII statements in it either.
	ConvertedEncoding
)

// Literal reports whether the token is a constant (string, bit string or number).
func (t Token) Literal() bool { return t.Kind == String || t.Kind == BitStr || t.Kind == Number }

// Scan appends the tokens of sql to dst, whitespace and comments omitted, and returns it,
// as PostgreSQL reads sql with its default settings (ScanMode with the zero Mode).
func Scan(sql string, dst []Token) []Token { return ScanMode(sql, dst, 0) }

// ScanMode is Scan for a session whose settings are m. Only standard_conforming_strings
// changes token boundaries: with it off, a backslash escapes the next byte in '...'
// strings, so 'a\'b' is one string.
func ScanMode(sql string, dst []Token, m Mode) []Token {
	plainEsc := m&NonStandard != 0
	i, n := 0, len(sql)
	for i < n {
		start := i
		c := sql[i]
		var k Kind
		esc := false
		switch {
		case isSpace(c):
			i++
			for i < n && isSpace(sql[i]) {
				i++
			}
			continue
		case c == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
			continue
		case c == '/' && i+1 < n && sql[i+1] == '*':
			i, k = blockComment(sql, i)
			if k == Space {
				continue
			}
		case c == '\'':
			esc = plainEsc
			i, k = quoted(sql, i+1, esc, String)
		case (c == 'e' || c == 'E') && i+1 < n && sql[i+1] == '\'':
			esc = true
			i, k = quoted(sql, i+2, true, String)
		case (c == 'b' || c == 'B' || c == 'x' || c == 'X') && i+1 < n && sql[i+1] == '\'':
			i, k = quoted(sql, i+2, false, BitStr)
		case (c == 'u' || c == 'U') && i+2 < n && sql[i+1] == '&' && (sql[i+2] == '\'' || sql[i+2] == '"'):
			if sql[i+2] == '\'' {
				i, k = quoted(sql, i+3, false, String)
			} else {
				i, k = quotedIdent(sql, i+3)
			}
		case c == '"':
			i, k = quotedIdent(sql, i+1)
		case c == '$':
			i, k = dollar(sql, i)
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(sql[i+1])):
			i, k = number(sql, i), Number
		case isIdentStart(c):
			i++
			for i < n && isIdentCont(sql[i]) {
				i++
			}
			k = Ident
		case c == ':' && i+1 < n && sql[i+1] == ':':
			i, k = i+2, Op
		case c == ':' && i+1 < n && sql[i+1] == '=':
			i, k = i+2, Op
		case c == '=' && i+1 < n && sql[i+1] == '>':
			i, k = i+2, Op
		case c == '.' && i+1 < n && sql[i+1] == '.':
			i, k = i+2, Op
		case c == '(' || c == ')' || c == '[' || c == ']' || c == ',' || c == ';' || c == ':' || c == '.':
			i, k = i+1, Punct
		case isOpChar(c):
			i, k = operator(sql, i), Op
		default:
			i, k = i+1, Bad
		}
		dst = append(dst, Token{Start: int32(start), End: int32(i), Kind: k, Esc: esc && k == String})
	}
	return dst
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}
func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }
func isOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '+', '-', '*', '/', '%', '<', '>', '=':
		return true
	}
	return false
}

// blockComment skips a (nested) /* comment */ starting at i.
func blockComment(sql string, i int) (int, Kind) {
	depth := 0
	n := len(sql)
	for i < n {
		switch {
		case sql[i] == '/' && i+1 < n && sql[i+1] == '*':
			depth++
			i += 2
		case sql[i] == '*' && i+1 < n && sql[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, Space
			}
		default:
			i++
		}
	}
	return n, Bad
}

// quoted scans a single-quoted string body starting after the opening quote. A doubled
// quote is an escaped quote; with backslash escapes (E'...'), \' and \\ are escapes too.
// An unterminated string is Bad.
func quoted(sql string, i int, backslash bool, k Kind) (int, Kind) {
	n := len(sql)
	for i < n {
		c := sql[i]
		switch {
		case backslash && c == '\\':
			i += 2
		case c == '\'':
			if i+1 < n && sql[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1, k
		default:
			i++
		}
	}
	return n, Bad
}

func quotedIdent(sql string, i int) (int, Kind) {
	n := len(sql)
	for i < n {
		if sql[i] == '"' {
			if i+1 < n && sql[i+1] == '"' {
				i += 2
				continue
			}
			return i + 1, QIdent
		}
		i++
	}
	return n, Bad
}

// dollar scans $n parameters and $tag$...$tag$ strings starting at i (sql[i] == '$').
func dollar(sql string, i int) (int, Kind) {
	n := len(sql)
	j := i + 1
	if j < n && isDigit(sql[j]) {
		for j < n && isDigit(sql[j]) {
			j++
		}
		return j, Param
	}
	// $tag$: the tag is an identifier without '$', possibly empty.
	if j < n && isIdentStart(sql[j]) {
		for j < n && isIdentCont(sql[j]) && sql[j] != '$' {
			j++
		}
	}
	if j >= n || sql[j] != '$' {
		return i + 1, Bad
	}
	tag := sql[i : j+1]
	for k := j + 1; k+len(tag) <= n; k++ {
		if sql[k] == '$' && sql[k:k+len(tag)] == tag {
			return k + len(tag), String
		}
	}
	return n, Bad
}

// number scans an integer, decimal or real constant as PostgreSQL does: digits, an optional
// fraction, an optional exponent. "1..2" scans as 1, .., 2 (the parser's range operator).
func number(sql string, i int) int {
	n := len(sql)
	for i < n && isDigit(sql[i]) {
		i++
	}
	if i < n && sql[i] == '.' && !(i+1 < n && sql[i+1] == '.') {
		i++
		for i < n && isDigit(sql[i]) {
			i++
		}
	}
	if i < n && (sql[i] == 'e' || sql[i] == 'E') {
		j := i + 1
		if j < n && (sql[j] == '+' || sql[j] == '-') {
			j++
		}
		if j < n && isDigit(sql[j]) {
			for j < n && isDigit(sql[j]) {
				j++
			}
			i = j
		}
	}
	return i
}

// operator scans an operator with scan.l's rules: an operator cannot contain the start of a
// comment, and a multi-character operator ending in + or - must contain one of ~ ! @ # % ^
// & | ` ? (so that "a=-1" is "=" then "-").
func operator(sql string, i int) int {
	start := i
	n := len(sql)
	for i < n && isOpChar(sql[i]) {
		if i+1 < n && (sql[i] == '-' && sql[i+1] == '-' || sql[i] == '/' && sql[i+1] == '*') && i > start {
			break
		}
		i++
	}
	if i-start > 1 && (sql[i-1] == '+' || sql[i-1] == '-') {
		special := false
		for k := start; k < i; k++ {
			switch sql[k] {
			case '~', '!', '@', '#', '%', '^', '&', '|', '`', '?':
				special = true
			}
		}
		if !special {
			for i-start > 1 && (sql[i-1] == '+' || sql[i-1] == '-') {
				i--
			}
		}
	}
	return i
}

// Find returns the index of the token that starts at byte offset off, or -1.
func Find(toks []Token, off int) int {
	lo, hi := 0, len(toks)
	for lo < hi {
		m := (lo + hi) / 2
		if int(toks[m].Start) < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(toks) && int(toks[lo].Start) == off {
		return lo
	}
	return -1
}

// Keyword reports whether token t of sql is the unquoted identifier kw (kw in lower case).
func Keyword(sql string, t Token, kw string) bool {
	if t.Kind != Ident || int(t.End-t.Start) != len(kw) {
		return false
	}
	for i := 0; i < len(kw); i++ {
		c := sql[int(t.Start)+i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != kw[i] {
			return false
		}
	}
	return true
}

// IdentName returns the name an identifier token denotes: unquoted identifiers are folded
// to lower case (ASCII only, as PostgreSQL does), quoted ones have their quotes removed.
func IdentName(sql string, t Token) string {
	s := sql[t.Start:t.End]
	switch t.Kind {
	case Ident:
		for i := 0; i < len(s); i++ {
			if s[i] >= 'A' && s[i] <= 'Z' {
				b := []byte(s)
				for j := i; j < len(b); j++ {
					if b[j] >= 'A' && b[j] <= 'Z' {
						b[j] += 'a' - 'A'
					}
				}
				return string(b)
			}
		}
		return s
	case QIdent:
		if len(s) >= 2 && s[0] == '"' {
			s = s[1 : len(s)-1]
		}
		out := make([]byte, 0, len(s))
		for i := 0; i < len(s); i++ {
			out = append(out, s[i])
			if s[i] == '"' && i+1 < len(s) && s[i+1] == '"' {
				i++
			}
		}
		return string(out)
	}
	return s
}

// StringValue returns the value of a String token: quotes removed, doubled quotes undone,
// and for strings that take backslash escapes (Esc) the escapes resolved. ok is false for
// forms it does not decode (U&” strings, strings with invalid escapes).
func StringValue(sql string, t Token) (v string, ok bool) {
	s := sql[t.Start:t.End]
	if t.Kind != String || len(s) < 2 {
		return "", false
	}
	switch s[0] {
	case '\'':
		if t.Esc {
			return unescape(s[1 : len(s)-1])
		}
		return undouble(s[1 : len(s)-1]), true
	case 'e', 'E':
		return unescape(s[2 : len(s)-1])
	case '$':
		j := 1
		for s[j] != '$' {
			j++
		}
		tag := j + 1
		return s[tag : len(s)-tag], true
	}
	return "", false
}

func undouble(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			b := make([]byte, 0, len(s))
			for j := 0; j < len(s); j++ {
				b = append(b, s[j])
				if s[j] == '\'' && j+1 < len(s) && s[j+1] == '\'' {
					j++
				}
			}
			return string(b)
		}
	}
	return s
}

func unescape(s string) (string, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\'' && i+1 < len(s) && s[i+1] == '\'' {
			b = append(b, '\'')
			i++
			continue
		}
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'x', 'u', 'U':
			return "", false
		default:
			if e >= '0' && e <= '7' {
				v := int(e - '0')
				for k := 0; k < 2 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '7'; k++ {
					i++
					v = v*8 + int(s[i]-'0')
				}
				if v == 0 || v > 0x7f {
					return "", false
				}
				b = append(b, byte(v))
			} else {
				b = append(b, e)
			}
		}
	}
	return string(b), true
}

// Portable returns the text of literal token toks[i] of sql in a form that PostgreSQL
// reads as the same value whatever standard_conforming_strings says, so that text
// scanned in one session's mode can be spliced into SQL run in another's (a worker's
// session, a statement planned before a SET): a plain '...' string holding a backslash
// becomes an E'...' string, its backslashes doubled when they were not escapes. A
// string continued on the next line ('a'<newline>'b', one constant) is rewritten as a
// whole: the E goes on its first part. The string after UESCAPE stays as it is. Other tokens are returned as they are.
func Portable(sql string, toks []Token, i int) string {
	t := toks[i]
	s := sql[t.Start:t.End]
	if t.Kind != String || s[0] != '\'' {
		return s
	}
	head := i
	for head > 0 && continues(sql, toks[head-1], toks[head]) {
		head--
	}
	h := toks[head]
	if h.Kind != String || sql[h.Start] != '\'' {
		// A part of an E'...', U&'...' or bit string: read as its head is.
		return s
	}
	if head > 0 && Keyword(sql, toks[head-1], "uescape") {
		// U&'...' UESCAPE '\': only a plain string may follow UESCAPE (and U&'...'
		// reads the same in both settings, or not at all).
		return s
	}
	backslash := false
	for j := head; j < len(toks) && (j == head || continues(sql, toks[j-1], toks[j])); j++ {
		if strings.IndexByte(sql[toks[j].Start:toks[j].End], '\\') >= 0 {
			backslash = true
			break
		}
	}
	if !backslash {
		return s
	}
	if !h.Esc {
		s = strings.ReplaceAll(s, `\`, `\\`)
	}
	if i == head {
		switch {
		case nationalPrefix(sql, int(t.Start)):
			// N'...' is the keyword NCHAR and a string (PostgreSQL's lexer splits it
			// so): "N E'...'" would read as a string of type n. The N and "CHAR"
			// spell the keyword out, which an E'...' string may follow.
			s = "CHAR E" + s
		case t.Start > 0 && isIdentCont(sql[t.Start-1]):
			// select'x': the E must not join the word.
			s = " E" + s
		default:
			s = "E" + s
		}
	}
	return s
}

// nationalPrefix reports whether the quote at sql[q] opens an N'...' string: an N or n
// right before it that no identifier character precedes.
func nationalPrefix(sql string, q int) bool {
	return q > 0 && (sql[q-1] == 'n' || sql[q-1] == 'N') && (q == 1 || !isIdentCont(sql[q-2]))
}

// continues reports whether string token t continues string token prev: PostgreSQL joins
// two quoted strings separated only by whitespace that holds a newline, and -- comments.
func continues(sql string, prev, t Token) bool {
	if prev.Kind != String && prev.Kind != BitStr || t.Kind != String || sql[t.Start] != '\'' || sql[prev.End-1] != '\'' || sql[prev.Start] == '$' {
		return false
	}
	gap := sql[prev.End:t.Start]
	newline := false
	for k := 0; k < len(gap); k++ {
		switch c := gap[k]; {
		case c == '\n' || c == '\r':
			newline = true
		case c == '-' && k+1 < len(gap) && gap[k+1] == '-':
			for k+1 < len(gap) && gap[k+1] != '\n' && gap[k+1] != '\r' {
				k++
			}
		case !isSpace(c):
			return false
		}
	}
	return newline
}

// BlankContinuationComments returns sql with the -- comments between the parts of
// continued strings ('a' -- note<newline>'b') replaced by spaces, and whether there were
// any. PostgreSQL joins such parts; the parser pgshard uses does not (it joins them only
// across plain whitespace), so the router parses the blanked text, whose offsets are
// the same.
func BlankContinuationComments(sql string, toks []Token) (string, bool) {
	var b []byte
	for i := 1; i < len(toks); i++ {
		prev, t := toks[i-1], toks[i]
		if !continues(sql, prev, t) || !strings.Contains(sql[prev.End:t.Start], "--") {
			continue
		}
		if b == nil {
			b = []byte(sql)
		}
		for k := int(prev.End); k < int(t.Start); k++ {
			if b[k] == '-' && b[k+1] == '-' {
				for k < int(t.Start) && b[k] != '\n' && b[k] != '\r' {
					b[k] = ' '
					k++
				}
			}
		}
	}
	if b == nil {
		return sql, false
	}
	return string(b), true
}

// PortableText returns SQL text that PostgreSQL read (or wrote: pg_get_expr, ruleutils)
// with standard_conforming_strings on, with its string literals made portable: it reads
// the same in a session with the setting off.
func PortableText(sql string) string {
	if strings.IndexByte(sql, '\\') < 0 {
		return sql
	}
	toks := Scan(sql, nil)
	var b strings.Builder
	pos := 0
	for i, t := range toks {
		if t.Kind != String {
			continue
		}
		if p := Portable(sql, toks, i); len(p) != int(t.End-t.Start) {
			b.WriteString(sql[pos:t.Start])
			b.WriteString(p)
			pos = int(t.End)
		}
	}
	if pos == 0 {
		return sql
	}
	b.WriteString(sql[pos:])
	return b.String()
}

// EscapeWarning is the WARNING PostgreSQL's scanner gives for the first backslash escape
// of a plain '...' string read with standard_conforming_strings off (and
// escape_string_warning on). Offset is the string's byte offset, where PostgreSQL points.
type EscapeWarning struct {
	Message, Hint string
	Offset        int
}

// EscapeWarnings returns the warnings of the strings of toks (scanned in NonStandard
// mode), one per string at most, in order.
func EscapeWarnings(sql string, toks []Token) []EscapeWarning {
	var out []EscapeWarning
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if t.Kind != String || !t.Esc || sql[t.Start] != '\'' {
			continue
		}
		// The string and the parts that continue it warn once, at their first escape.
		end := i
		for end+1 < len(toks) && continues(sql, toks[end], toks[end+1]) {
			end++
		}
		for j := i; j <= end; j++ {
			s := sql[toks[j].Start:toks[j].End]
			k := strings.IndexByte(s, '\\')
			if k < 0 || k+1 >= len(s) {
				continue
			}
			w := EscapeWarning{Offset: int(t.Start)}
			switch s[k+1] {
			case '\'':
				w.Message = `nonstandard use of \' in a string literal`
				w.Hint = `Use '' to write quotes in strings, or use the escape string syntax (E'...').`
			case '\\':
				w.Message = `nonstandard use of \\ in a string literal`
				w.Hint = `Use the escape string syntax for backslashes, e.g., E'\\'.`
			default:
				w.Message = `nonstandard use of escape in a string literal`
				w.Hint = `Use the escape string syntax for escapes, e.g., E'\r\n'.`
			}
			out = append(out, w)
			break
		}
		i = end
	}
	return out
}
