package copyfmt

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Value is one field of a row, decoded.
type Value struct {
	Data []byte
	Null bool
}

// lineEnd is the length of row without its line terminator. In text format a \n or \r
// preceded by an odd number of backslashes is data (the last row of the input may end in
// one); in CSV a row's last \n or \r is always its terminator, a quoted field being closed
// before the row ends.
func (o *Options) lineEnd(row []byte) int {
	n := len(row)
	if n == 0 {
		return 0
	}
	last := row[n-1]
	if last != '\n' && last != '\r' {
		return n
	}
	if o.Format == CSV {
		if o.Quote == '\r' || o.Quote == '\n' || o.Escape == '\r' || o.Escape == '\n' {
			return o.csvLineEnd(row)
		}
		if last == '\n' && n >= 2 && row[n-2] == '\r' {
			return n - 2
		}
		return n - 1
	}
	if escaped(row, n-1) {
		return n
	}
	if last == '\n' && n >= 2 && row[n-2] == '\r' && !escaped(row, n-2) {
		return n - 2
	}
	return n - 1
}

// csvLineEnd finds the first \r or \n outside quotes, tracking quotes as CopyReadLineText
// does: the general way, for a quote or escape that is itself \r or \n.
func (o *Options) csvLineEnd(row []byte) int {
	esc := -1
	if o.Escape != o.Quote {
		esc = int(o.Escape)
	}
	inQuote, lastEsc := false, false
	for i, c := range row {
		if inQuote && int(c) == esc {
			lastEsc = !lastEsc
		}
		if c == o.Quote && !lastEsc {
			inQuote = !inQuote
		}
		if int(c) != esc {
			lastEsc = false
		}
		if !inQuote && (c == '\r' || c == '\n') {
			return i
		}
	}
	return len(row)
}

// escaped reports whether row[i] follows an odd number of backslashes.
func escaped(row []byte, i int) bool {
	k := 0
	for j := i - 1; j >= 0 && row[j] == '\\'; j-- {
		k++
	}
	return k%2 == 1
}

// rawField is one field of a line as CopyReadAttributesText/CSV find it.
type rawField struct {
	start, end int  // the raw text compared with the NULL string: line[start:end]
	next       int  // where the next field starts
	delim      bool // a delimiter follows (another field)
	special    bool // decoding changes the text (text: a backslash; CSV: a quote)
	nonASCII   bool // text: a \ooo or \xhh escape made a NUL or high-bit byte
	null       bool
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

func hexValue(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}

// textField scans the field of line starting at p as CopyReadAttributesText does, appending
// its de-escaped value to out when decode is set.
func (o *Options) textField(line []byte, p int, out []byte, decode bool) (rawField, []byte) {
	f := rawField{start: p}
	d := o.Delimiter
	n := len(line)
	if !decode {
		// Fast path: no backslash before the next delimiter.
		seg := line[p:]
		k := bytes.IndexByte(seg, d)
		if k >= 0 {
			seg = seg[:k]
		}
		if bytes.IndexByte(seg, '\\') < 0 {
			f.end = p + len(seg)
			f.next = f.end
			if k >= 0 {
				f.delim = true
				f.next++
			}
			f.null = len(seg) == len(o.Null) && string(seg) == o.Null
			return f, out
		}
	}
	for {
		f.end = p
		if p >= n {
			break
		}
		c := line[p]
		p++
		if c == d {
			f.delim = true
			break
		}
		if c == '\\' {
			f.special = true
			if p >= n {
				break
			}
			c = line[p]
			p++
			switch c {
			case '0', '1', '2', '3', '4', '5', '6', '7':
				val := int(c - '0')
				if p < n && isOctal(line[p]) {
					val = val<<3 + int(line[p]-'0')
					p++
					if p < n && isOctal(line[p]) {
						val = val<<3 + int(line[p]-'0')
						p++
					}
				}
				c = byte(val & 0o377)
				if c == 0 || c >= 0x80 {
					f.nonASCII = true
				}
			case 'x':
				if p < n {
					if v, ok := hexValue(line[p]); ok {
						p++
						if p < n {
							if v2, ok := hexValue(line[p]); ok {
								p++
								v = v<<4 + v2
							}
						}
						c = byte(v & 0xff)
						if c == 0 || c >= 0x80 {
							f.nonASCII = true
						}
					}
				}
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'v':
				c = '\v'
			}
		}
		if decode {
			out = append(out, c)
		}
	}
	f.next = p
	f.null = f.end-f.start == len(o.Null) && string(line[f.start:f.end]) == o.Null
	return f, out
}

// csvField scans the field of line starting at p as CopyReadAttributesCSV does, appending
// its value (quotes and escapes removed) to out when decode is set.
func (o *Options) csvField(line []byte, p int, out []byte, decode bool) (rawField, []byte, error) {
	f := rawField{start: p}
	d, q, e := o.Delimiter, o.Quote, o.Escape
	n := len(line)
	if !decode {
		// Fast path: no quote before the next delimiter.
		seg := line[p:]
		k := bytes.IndexByte(seg, d)
		if k >= 0 {
			seg = seg[:k]
		}
		if bytes.IndexByte(seg, q) < 0 {
			f.end = p + len(seg)
			f.next = f.end
			if k >= 0 {
				f.delim = true
				f.next++
			}
			f.null = len(seg) == len(o.Null) && string(seg) == o.Null
			return f, out, nil
		}
	}
	for {
		// Not in quotes.
		for {
			f.end = p
			if p >= n {
				goto endfield
			}
			c := line[p]
			p++
			if c == d {
				f.delim = true
				goto endfield
			}
			if c == q {
				f.special = true
				break
			}
			if decode {
				out = append(out, c)
			}
		}
		// In quotes.
		for {
			f.end = p
			if p >= n {
				return f, out, dataErr("unterminated CSV quoted field")
			}
			c := line[p]
			p++
			if c == e && p < n {
				if nc := line[p]; nc == e || nc == q {
					if decode {
						out = append(out, nc)
					}
					p++
					continue
				}
			}
			if c == q {
				break
			}
			if decode {
				out = append(out, c)
			}
		}
	}
endfield:
	f.next = p
	f.null = !f.special && f.end-f.start == len(o.Null) && string(line[f.start:f.end]) == o.Null
	return f, out, nil
}

// fieldFrom is field, starting at field k, which begins at line[p].
func (o *Options) fieldFrom(line []byte, p, k, i int, scratch []byte) (f rawField, value []byte, ok bool, err error) {
	for ; ; k++ {
		want := k == i
		if o.Format == CSV {
			f, _, err = o.csvField(line, p, nil, false)
			if err == nil && want && f.special && !f.null {
				start := len(scratch)
				f, scratch, _ = o.csvField(line, p, scratch, true)
				value = scratch[start:]
			}
		} else {
			f, _ = o.textField(line, p, nil, false)
			if want && f.special && !f.null {
				start := len(scratch)
				f, scratch = o.textField(line, p, scratch, true)
				value = scratch[start:]
			}
		}
		if err != nil {
			return f, nil, false, err
		}
		if want {
			if !f.special && !f.null {
				value = line[f.start:f.end]
			}
			if f.nonASCII && !f.null {
				if err := VerifyUTF8(value); err != nil {
					return f, nil, false, err
				}
			}
			return f, value, true, nil
		}
		if !f.delim {
			return f, nil, false, nil
		}
		p = f.next
	}
}

// applyForce applies FORCE_NOT_NULL / FORCE_NULL (CSV) to field i as NextCopyFrom does.
func (o *Options) applyForce(i int, value []byte, null bool) ([]byte, bool) {
	if o.Format != CSV {
		return value, null
	}
	if null && i < len(o.forceNotNull) && o.forceNotNull[i] {
		return []byte(o.Null), false
	}
	if !null && i < len(o.forceNull) && o.forceNull[i] && string(value) == o.Null {
		return nil, true
	}
	return value, null
}

// Field returns field i (0-based) of row (a row from a Splitter, with or without its line
// terminator), decoded as PostgreSQL reads it: text format de-escaped (\b \f \n \r \t \v,
// \ooo, \xhh, any other byte taken literally), CSV with quotes and escapes removed. null
// reports the NULL marker, compared on the raw text (text) or the unquoted raw text (CSV);
// in CSV, FORCE_NOT_NULL and FORCE_NULL (see BindColumns) then apply. value aliases row when
// decoding changes nothing, and is freshly allocated otherwise. A text value whose \ooo /
// \xhh escapes make invalid UTF-8 is PostgreSQL's encoding error. A row with no field i is a
// *DataError "missing data for field N"; use CheckColumns for PostgreSQL's message.
func (o *Options) Field(row []byte, i int) (value []byte, null bool, err error) {
	if i < 0 {
		return nil, false, dataErr(fmt.Sprintf("no field %d", i))
	}
	line := row[:o.lineEnd(row)]
	// Fast path: fields without a backslash (text) or quote (CSV).
	special := byte('\\')
	if o.Format == CSV {
		special = o.Quote
	}
	p, k := 0, 0
	for {
		rest := line[p:]
		j := bytes.IndexByte(rest, o.Delimiter)
		seg := rest
		if j >= 0 {
			seg = rest[:j]
		}
		if bytes.IndexByte(seg, special) >= 0 {
			break
		}
		if k == i {
			null = len(seg) == len(o.Null) && string(seg) == o.Null
			if null {
				seg = nil
			}
			value, null = o.applyForce(i, seg, null)
			return value, null, nil
		}
		if j < 0 {
			return nil, false, dataErr(fmt.Sprintf("missing data for field %d", i+1))
		}
		p += j + 1
		k++
	}
	f, value, ok, err := o.fieldFrom(line, p, k, i, nil)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, dataErr(fmt.Sprintf("missing data for field %d", i+1))
	}
	value, null = o.applyForce(i, value, f.null)
	return value, null, nil
}

// Fields appends every field of row to dst, decoded as Field decodes them. The values that
// need decoding share one new buffer; the others alias row.
func (o *Options) Fields(row []byte, dst []Value) ([]Value, error) {
	line := row[:o.lineEnd(row)]
	var scratch []byte
	p := 0
	for i := 0; ; i++ {
		var f rawField
		var err error
		if o.Format == CSV {
			f, _, err = o.csvField(line, p, nil, false)
		} else {
			f, _ = o.textField(line, p, nil, false)
		}
		if err != nil {
			return dst, err
		}
		var value []byte
		switch {
		case f.null:
		case !f.special:
			value = line[f.start:f.end]
		default:
			if scratch == nil {
				scratch = make([]byte, 0, len(line))
			}
			start := len(scratch)
			if o.Format == CSV {
				_, scratch, _ = o.csvField(line, p, scratch, true)
			} else {
				_, scratch = o.textField(line, p, scratch, true)
			}
			value = scratch[start:len(scratch):len(scratch)]
			if f.nonASCII {
				if err := VerifyUTF8(value); err != nil {
					return dst, err
				}
			}
		}
		value, null := o.applyForce(i, value, f.null)
		dst = append(dst, Value{Data: value, Null: null})
		if !f.delim {
			return dst, nil
		}
		p = f.next
	}
}

// countFields parses every field of line as CopyReadAttributesText/CSV do, with their
// errors (an unterminated CSV quoted field, an escape making invalid UTF-8), and counts them.
func (o *Options) countFields(line []byte) (int, error) {
	p := 0
	for k := 1; ; k++ {
		var f rawField
		if o.Format == CSV {
			var err error
			if f, _, err = o.csvField(line, p, nil, false); err != nil {
				return 0, err
			}
		} else {
			f, _ = o.textField(line, p, nil, false)
			if f.nonASCII && !f.null {
				_, v := o.textField(line, p, nil, true)
				if err := VerifyUTF8(v); err != nil {
					return 0, err
				}
			}
		}
		if !f.delim {
			return k, nil
		}
		p = f.next
	}
}

// CheckColumns checks that row has one field per column of the COPY (names, in order), as
// NextCopyFrom does, with PostgreSQL's errors: "extra data after last expected column",
// "missing data for column \"x\"", and those of parsing the fields ("unterminated CSV quoted
// field", invalid encoding from escapes). The *DataError has no line number: take it from
// the Splitter's Line.
func (o *Options) CheckColumns(row []byte, names []string) error {
	line := row[:o.lineEnd(row)]
	if len(names) == 0 {
		if len(line) != 0 {
			return dataErr("extra data after last expected column")
		}
		return nil
	}
	n, err := o.countFields(line)
	if err != nil {
		return err
	}
	if n > len(names) {
		return dataErr("extra data after last expected column")
	}
	if n < len(names) {
		return dataErr(fmt.Sprintf("missing data for column \"%s\"", names[n]))
	}
	return nil
}

// MatchHeader checks a header line (Splitter.HeaderLine) for HEADER MATCH as PostgreSQL 15
// does: as many fields as columns, each equal to its column's name.
func (o *Options) MatchHeader(header []byte, names []string) error {
	line := header[:o.lineEnd(header)]
	var fields []Value
	if len(names) == 0 {
		if len(line) != 0 {
			return dataErr("extra data after last expected column")
		}
	} else {
		var err error
		if fields, err = o.rawFields(line); err != nil {
			return err
		}
	}
	if len(fields) != len(names) {
		return dataErr(fmt.Sprintf("wrong number of fields in header line: got %d, expected %d", len(fields), len(names)))
	}
	for i, name := range names {
		if fields[i].Null {
			return dataErr(fmt.Sprintf("column name mismatch in header line field %d: got null value (\"%s\"), expected \"%s\"", i+1, o.Null, name))
		}
		if string(fields[i].Data) != name {
			return dataErr(fmt.Sprintf("column name mismatch in header line field %d: got \"%s\", expected \"%s\"", i+1, fields[i].Data, name))
		}
	}
	return nil
}

// rawFields is Fields without FORCE_NOT_NULL / FORCE_NULL.
func (o *Options) rawFields(line []byte) ([]Value, error) {
	c := *o
	c.forceNotNull, c.forceNull = nil, nil
	return c.Fields(line, nil)
}

// VerifyUTF8 is pg_verifymbstr for a UTF8 database (as pgshard's are), with
// report_invalid_encoding's message.
func VerifyUTF8(b []byte) error {
	for i := 0; i < len(b); {
		c := b[i]
		if c != 0 && c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if c != 0 && !(r == utf8.RuneError && size == 1) {
			i += size
			continue
		}
		l := 1
		switch {
		case c&0xe0 == 0xc0:
			l = 2
		case c&0xf0 == 0xe0:
			l = 3
		case c&0xf8 == 0xf0:
			l = 4
		}
		if l > len(b)-i {
			l = len(b) - i
		}
		var hex strings.Builder
		for j := 0; j < l; j++ {
			if j > 0 {
				hex.WriteByte(' ')
			}
			fmt.Fprintf(&hex, "0x%02x", b[i+j])
		}
		return &DataError{Code: CodeCharacterNotInRepertoire,
			Msg: fmt.Sprintf("invalid byte sequence for encoding \"UTF8\": %s", hex.String())}
	}
	return nil
}
