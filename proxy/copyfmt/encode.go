package copyfmt

import "strconv"

// EncodeField appends value to dst encoded as one field for these options (no delimiter),
// or the NULL string when null is set. Text format escapes as COPY TO does (\b \f \n \r \t
// \v, backslash, the delimiter); CSV quotes the value when it holds the delimiter, the
// quote, the escape, \n or \r, equals the NULL string, or is \. (the end marker), doubling
// the quote and escape characters inside. Unlike COPY TO, a value is never written so that
// it reads back as NULL: in text format a value whose escaped form equals the NULL string
// gets its first byte written as an octal escape. Only an empty string with NULL ” in text
// format cannot be written: that is an *OptionError.
func (o *Options) EncodeField(dst, value []byte, null bool) ([]byte, error) {
	if null {
		return append(dst, o.Null...), nil
	}
	if o.Format == CSV {
		return o.encodeCSV(dst, value), nil
	}
	if len(value) == 0 && o.Null == "" {
		return dst, optErr(CodeFeatureNotSupported, "cannot write an empty string in COPY text format with NULL ''")
	}
	start := len(dst)
	dst = o.encodeText(dst, value)
	if string(dst[start:]) == o.Null {
		// Would read back as NULL: write the first byte as \ooo.
		dst = dst[:start]
		dst = append(dst, '\\')
		oct := strconv.FormatUint(uint64(value[0]), 8)
		for len(oct) < 3 {
			oct = "0" + oct
		}
		dst = append(dst, oct...)
		dst = o.encodeText(dst, value[1:])
	}
	return dst, nil
}

// encodeText is CopyAttributeOutText.
func (o *Options) encodeText(dst, value []byte) []byte {
	d := o.Delimiter
	for _, c := range value {
		switch c {
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\v':
			dst = append(dst, '\\', 'v')
		case '\\':
			dst = append(dst, '\\', '\\')
		default:
			if c == d {
				dst = append(dst, '\\')
			}
			dst = append(dst, c)
		}
	}
	return dst
}

// encodeCSV is CopyAttributeOutCSV, quoting \. wherever it is.
func (o *Options) encodeCSV(dst, value []byte) []byte {
	q, e, d := o.Quote, o.Escape, o.Delimiter
	quote := string(value) == o.Null || string(value) == `\.`
	if !quote {
		for _, c := range value {
			if c == d || c == q || c == e || c == '\n' || c == '\r' {
				quote = true
				break
			}
		}
	}
	if !quote {
		return append(dst, value...)
	}
	dst = append(dst, q)
	for _, c := range value {
		if c == q || c == e {
			dst = append(dst, e)
		}
		dst = append(dst, c)
	}
	return append(dst, q)
}

// AppendField appends to dst a copy of row (a row from a Splitter) with one more field,
// value or NULL, encoded by EncodeField and placed after a delimiter, before the row's line
// terminator. row is not modified; dst must not overlap it. (A row of a zero-column COPY
// has no field to follow: build it with EncodeField.)
func (o *Options) AppendField(dst, row, value []byte, null bool) ([]byte, error) {
	end := o.lineEnd(row)
	content := row[:end]
	if o.Format == Text && end > 0 && row[end-1] == '\\' && !escaped(row, end-1) {
		// A lone backslash ending the last line of the input is ignored by PostgreSQL
		// (value and NULL test alike); before a delimiter it would escape it.
		content = content[:end-1]
	}
	dst = append(dst, content...)
	dst = append(dst, o.Delimiter)
	dst, err := o.EncodeField(dst, value, null)
	if err != nil {
		return dst, err
	}
	return append(dst, row[end:]...), nil
}
