package copyfmt

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// DataError is malformed COPY data, reported with PostgreSQL's message, hint and SQLSTATE.
// Line is the 1-based line of the input the error is on, as in PostgreSQL's
// "COPY t, line N" context (0 when unknown, e.g. from Options.Field on a lone row).
type DataError struct {
	Code string // SQLSTATE
	Msg  string
	Hint string
	Line int64
}

func (e *DataError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d)", e.Msg, e.Line)
	}
	return e.Msg
}

func dataErr(msg string) *DataError { return &DataError{Code: CodeBadCopyFileFormat, Msg: msg} }

type eolType uint8

// The line endings of CopyReadLineText.
const (
	eolUnknown eolType = iota
	eolNL
	eolCR
	eolCRNL
)

type scanStatus uint8

const (
	scanNeedMore scanStatus = iota // the line continues past the data written so far
	scanLine                       // a line ended by its terminator
	scanEOF                        // the input ended (Finish) inside or at the start of a line
	scanMarker                     // the end-of-data marker \. (data before it on its line, if any, is a row)
	scanError
)

// finder caches the position of the next occurrence of a byte, so that a buffer is searched
// for each special byte at most once however it is consumed.
type finder struct {
	c  int // the byte, or -1 for none
	at int // index of the next occurrence, or -1: none in [.., to)
	to int
}

func newFinder(c int) finder { return finder{c: c, at: -1} }

// next returns the index of the first occurrence at or after pos in buf, or -1.
func (f *finder) next(buf []byte, pos int) int {
	if f.c < 0 {
		return -1
	}
	if f.at >= pos {
		return f.at
	}
	from := pos
	if f.at < 0 && f.to > from {
		from = f.to
	}
	if from >= len(buf) {
		f.at, f.to = -1, len(buf)
		return -1
	}
	i := bytes.IndexByte(buf[from:], byte(f.c))
	if i < 0 {
		f.at, f.to = -1, len(buf)
		return -1
	}
	f.at = from + i
	return f.at
}

// shift accounts for the buffer's first off bytes being dropped.
func (f *finder) shift(off int) {
	switch {
	case f.at >= off:
		f.at -= off
	case f.at >= 0:
		// Consumed: search again.
		f.at, f.to = -1, 0
	default:
		f.to -= off
		if f.to < 0 {
			f.to = 0
		}
	}
}

// Splitter splits a COPY FROM STDIN data stream (text or CSV format) into rows where
// PostgreSQL's CopyReadLine would, whatever the CopyData message boundaries. Write each
// CopyData message, call Next until it reports no row, and after CopyDone call Finish until
// it reports no row.
type Splitter struct {
	o    *Options
	csv  bool
	quot byte
	esc  int // CSV escape byte, or -1 when it is the quote (as CopyReadLineText's '\0')

	buf   []byte
	start int // the current line starts at buf[start]
	pos   int // next byte to examine

	// Input verification, as CopyConvertBuf's: buf[:vend] is valid in the encoding; bad
	// says the bytes at vend are invalid (or an incomplete character at the end of input).
	enc  string // "UTF8", "SQL_ASCII", or "" (not verified)
	vend int
	bad  bool

	nl, cr, bs, qf, ef finder

	// state of the current line (CSV)
	inQuote, lastEsc, firstDone bool
	embedded                    int64 // newlines counted inside quotes, as cur_lineno++

	eol      eolType
	lines    int64 // lines consumed (header included)
	rowLine  int64
	header   []byte
	hasHead  bool
	skipHead bool
	eof      bool
	done     bool // the end marker or the end of input was reached
	marker   bool
	err      error

	cols      []string
	checkCols bool
}

// NewSplitter returns a Splitter for data in format o (text or CSV; o must be valid).
func NewSplitter(o *Options) *Splitter {
	s := &Splitter{o: o, csv: o.Format == CSV, skipHead: o.Header, esc: -1, enc: o.Encoding}
	if s.enc == "" {
		s.enc = o.ClientEncoding
	}
	s.nl, s.cr, s.bs = newFinder('\n'), newFinder('\r'), newFinder('\\')
	s.qf, s.ef = newFinder(-1), newFinder(-1)
	if s.csv {
		s.quot = o.Quote
		s.qf = newFinder(int(o.Quote))
		if o.Escape != o.Quote {
			s.esc = int(o.Escape)
			s.ef = newFinder(s.esc)
		}
	}
	return s
}

// Write appends the data of one CopyData message. Rows returned earlier are invalid after
// Write. Data after the end-of-data marker is ignored, as PostgreSQL ignores it.
func (s *Splitter) Write(p []byte) {
	if s.done || s.err != nil || s.eof || len(p) == 0 {
		return
	}
	if s.start > 0 {
		off := s.start
		n := copy(s.buf, s.buf[off:])
		s.buf = s.buf[:n]
		s.start, s.pos, s.vend = 0, s.pos-off, s.vend-off
		for _, f := range []*finder{&s.nl, &s.cr, &s.bs, &s.qf, &s.ef} {
			f.shift(off)
		}
	}
	s.buf = append(s.buf, p...)
	s.verify()
}

// Pending returns the number of bytes held for the row not complete yet: Next leaves
// them until the rest of the row arrives.
func (s *Splitter) Pending() int { return len(s.buf) - s.start }

// verify extends buf[:vend], the bytes known valid in the input's encoding. Like
// CopyConvertBuf it declares the bytes at vend bad only once there are as many as the
// longest character (4) or the input has ended, so that the message shows the same bytes.
func (s *Splitter) verify() {
	if s.bad {
		return
	}
	switch s.enc {
	case "UTF8":
	case "SQL_ASCII":
		if i := bytes.IndexByte(s.buf[s.vend:], 0); i >= 0 {
			s.vend += i
			s.bad = true
		} else {
			s.vend = len(s.buf)
		}
		return
	default:
		s.vend = len(s.buf)
		return
	}
	rest := s.buf[s.vend:]
	seg := rest
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		seg = rest[:i]
	}
	if utf8.Valid(seg) {
		s.vend += len(seg)
	} else {
		for i := 0; i < len(seg); {
			r, size := utf8.DecodeRune(seg[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
			s.vend += size
		}
	}
	if rest = s.buf[s.vend:]; len(rest) > 0 && (rest[0] == 0 || len(rest) >= utf8.UTFMax || s.eof) {
		s.bad = true
	}
}

// Next returns the next complete row: its bytes as the client sent them, including the line
// terminator (\n, \r\n or \r), valid until the next call to Write, Next or Finish. ok is
// false when no complete row is buffered (write more, or Finish), or the data has ended.
// The header line (HEADER) is skipped and kept (HeaderLine). The errors are
// CopyReadLine's, as *DataError with the line number: "literal carriage return found in
// data", "literal newline found in data", "end-of-copy marker corrupt", ... (CSV:
// "unquoted carriage return found in data", ..., and at the end of input "unterminated CSV
// quoted field"), "invalid byte sequence for encoding ..." (see Options.ClientEncoding), and
// with SetColumns those of CheckColumns and MatchHeader. After an error the Splitter
// reports it again and ignores further input.
func (s *Splitter) Next() (row []byte, ok bool, err error) {
	for {
		if s.err != nil {
			return nil, false, s.err
		}
		if s.done {
			return nil, false, nil
		}
		st, end := s.scan()
		switch st {
		case scanNeedMore:
			return nil, false, nil
		case scanError:
			return nil, false, s.setErr(s.err, s.lines+1+s.embedded)
		}
		line := s.lines + 1 + s.embedded
		row = s.buf[s.start:end]
		quoted := s.inQuote
		s.lines = line
		s.start = s.pos
		s.inQuote, s.lastEsc, s.firstDone, s.embedded = false, false, false, 0
		if st != scanLine {
			s.done = true
			s.marker = st == scanMarker
		}
		if s.skipHead {
			s.skipHead = false
			s.header = append(s.header[:0], row...)
			s.hasHead = true
			if s.checkCols && s.o.HeaderMatch {
				if err := s.o.MatchHeader(s.header, s.cols); err != nil {
					return nil, false, s.setErr(err, line)
				}
			}
			if st != scanLine {
				return nil, false, nil
			}
			continue
		}
		if st != scanLine && len(row) == 0 {
			return nil, false, nil
		}
		s.rowLine = line
		if st == scanEOF && quoted {
			return nil, false, s.setErr(dataErr("unterminated CSV quoted field"), line)
		}
		if s.checkCols {
			if err := s.o.CheckColumns(row, s.cols); err != nil {
				return nil, false, s.setErr(err, line)
			}
		}
		return row, true, nil
	}
}

// SetColumns makes Next check every row against the COPY's columns (names, in order) as
// PostgreSQL does before converting the fields: the number of fields (CheckColumns) and,
// with HEADER MATCH, the header line (MatchHeader). Errors then carry their line number.
// Call it before the first Next.
func (s *Splitter) SetColumns(names []string) {
	s.cols = append([]string(nil), names...)
	s.checkCols = true
}

func (s *Splitter) setErr(err error, line int64) error {
	if de, ok := err.(*DataError); ok {
		de.Line = line
	}
	s.err = err
	s.rowLine = line
	return err
}

// Finish marks the end of the input (the client's CopyDone) and returns the next row like
// Next: call it until ok is false. A last line without a terminator is a row, as PostgreSQL
// accepts it; a CSV quoted field still open is the error "unterminated CSV quoted field".
func (s *Splitter) Finish() (row []byte, ok bool, err error) {
	if !s.eof {
		s.eof = true
		s.verify()
	}
	return s.Next()
}

// Line is the 1-based line number of the row last returned, counting the header line and
// the newlines inside quoted CSV fields as PostgreSQL's "COPY t, line N" context does (for a
// row spanning lines, its last line). After an error it is the error's line (as in
// DataError.Line).
func (s *Splitter) Line() int64 { return s.rowLine }

// HeaderLine returns the header line (with its terminator) once the Splitter has skipped
// it; ok is false before that or without HEADER.
func (s *Splitter) HeaderLine() (line []byte, ok bool) { return s.header, s.hasHead }

// Ended reports whether the end-of-data marker \. was read; later data is ignored.
func (s *Splitter) Ended() bool { return s.marker }

func (s *Splitter) fail(msg, hint string) (scanStatus, int) {
	s.err = &DataError{Code: CodeBadCopyFileFormat, Msg: msg, Hint: hint, Line: s.lines + 1 + s.embedded}
	return scanError, 0
}

type availability uint8

const (
	availYes  availability = iota // the byte can be examined
	availEOF                      // the input ended before it
	availMore                     // it has not arrived (or not been verified) yet
	availErr                      // it is invalid in the input's encoding: s.err is set
)

// avail tells whether buf[pos] can be examined. pos is at most vend.
func (s *Splitter) avail(pos int) availability {
	if pos < s.vend {
		return availYes
	}
	if s.vend < len(s.buf) {
		if !s.bad {
			return availMore
		}
		// report_invalid_encoding: the bytes of one character, as far as they go.
		b := s.buf[s.vend:]
		l := 1
		if s.enc == "UTF8" {
			switch c := b[0]; {
			case c&0xe0 == 0xc0:
				l = 2
			case c&0xf0 == 0xe0:
				l = 3
			case c&0xf8 == 0xf0:
				l = 4
			}
		}
		l = min(l, len(b))
		var hex []string
		for _, c := range b[:l] {
			hex = append(hex, fmt.Sprintf("0x%02x", c))
		}
		s.err = &DataError{Code: CodeCharacterNotInRepertoire, Line: s.lines + 1 + s.embedded,
			Msg: fmt.Sprintf("invalid byte sequence for encoding \"%s\": %s", s.enc, strings.Join(hex, " "))}
		return availErr
	}
	if s.eof {
		return availEOF
	}
	return availMore
}

// waitOrFail maps an availability other than availYes and availEOF to a scan result,
// resuming at prev when more data comes.
func (s *Splitter) waitOrFail(a availability, prev int) (scanStatus, int) {
	if a == availErr {
		return scanError, 0
	}
	s.pos = prev
	return scanNeedMore, 0
}

// atEnd is the scan result at pos = vend.
func (s *Splitter) atEnd(pos int) (scanStatus, int) {
	switch a := s.avail(pos); a {
	case availEOF:
		s.pos = pos
		return scanEOF, pos
	default:
		return s.waitOrFail(a, pos)
	}
}

func (s *Splitter) scan() (scanStatus, int) {
	if s.csv {
		return s.scanCSV()
	}
	return s.scanText()
}

func (s *Splitter) crError() (scanStatus, int) {
	if s.csv {
		return s.fail("unquoted carriage return found in data", "Use quoted CSV field to represent carriage return.")
	}
	return s.fail("literal carriage return found in data", `Use "\r" to represent carriage return.`)
}

func (s *Splitter) nlError() (scanStatus, int) {
	if s.csv {
		return s.fail("unquoted newline found in data", "Use quoted CSV field to represent newline.")
	}
	return s.fail("literal newline found in data", `Use "\n" to represent newline.`)
}

// endOfLineCR handles an unquoted \r at buf[prev] (pos = prev+1), as CopyReadLineText does.
func (s *Splitter) endOfLineCR(prev, pos int) (scanStatus, int) {
	if s.eol == eolUnknown || s.eol == eolCRNL {
		a := s.avail(pos)
		if a == availMore || a == availErr {
			return s.waitOrFail(a, prev)
		}
		if a == availYes && s.buf[pos] == '\n' {
			pos++
			s.eol = eolCRNL
		} else {
			if s.eol == eolCRNL {
				return s.crError()
			}
			s.eol = eolCR
		}
	} else if s.eol == eolNL {
		return s.crError()
	}
	s.pos = pos
	return scanLine, pos
}

func (s *Splitter) endOfLineNL(pos int) (scanStatus, int) {
	if s.eol == eolCR || s.eol == eolCRNL {
		return s.nlError()
	}
	s.eol = eolNL
	s.pos = pos
	return scanLine, pos
}

// next2 fetches the byte at pos for endMarker: 0 at the end of input (CopyReadLineText's NUL
// pad), ok false when it must wait or fail.
func (s *Splitter) next2(pos int) (c byte, a availability) {
	a = s.avail(pos)
	if a == availYes {
		return s.buf[pos], a
	}
	return 0, a
}

// endMarker examines a backslash at buf[prev] followed by '.' (pos = prev+2), as
// CopyReadLineText does. It returns scanMarker with the end of the line's data, scanError,
// scanNeedMore (s.pos not set), or (CSV only) notEnd: the backslash is data.
func (s *Splitter) endMarker(prev, pos int) (st scanStatus, end int, notEnd bool) {
	if s.eol == eolCRNL {
		c2, a := s.next2(pos)
		if a == availMore {
			return scanNeedMore, 0, false
		} else if a == availErr {
			return scanError, 0, false
		}
		pos++
		if c2 == '\n' {
			if s.csv {
				return 0, 0, true
			}
			st, end = s.fail("end-of-copy marker does not match previous newline style", "")
			return st, end, false
		} else if c2 != '\r' {
			if s.csv {
				return 0, 0, true
			}
			st, end = s.fail("end-of-copy marker corrupt", "")
			return st, end, false
		}
	}
	c2, a := s.next2(pos)
	if a == availMore {
		return scanNeedMore, 0, false
	} else if a == availErr {
		return scanError, 0, false
	}
	pos++
	if c2 != '\r' && c2 != '\n' {
		if s.csv {
			return 0, 0, true
		}
		st, end = s.fail("end-of-copy marker corrupt", "")
		return st, end, false
	}
	if (s.eol == eolNL && c2 != '\n') || (s.eol == eolCRNL && c2 != '\n') || (s.eol == eolCR && c2 != '\r') {
		st, end = s.fail("end-of-copy marker does not match previous newline style", "")
		return st, end, false
	}
	s.pos = pos
	return scanMarker, prev, false
}

// scanText finds the end of the current line in text format.
func (s *Splitter) scanText() (scanStatus, int) {
	buf := s.buf
	pos := s.pos
	for {
		n := s.vend
		if pos >= n {
			return s.atEnd(pos)
		}
		// The next \n, \r or backslash.
		j := s.nl.next(buf, pos)
		if k := s.cr.next(buf, pos); k >= 0 && (j < 0 || k < j) {
			j = k
		}
		if k := s.bs.next(buf, pos); k >= 0 && (j < 0 || k < j) {
			j = k
		}
		if j < 0 || j >= n {
			pos = n
			continue
		}
		prev := j
		pos = j + 1
		switch buf[j] {
		case '\n':
			return s.endOfLineNL(pos)
		case '\r':
			return s.endOfLineCR(prev, pos)
		}
		// Backslash.
		switch a := s.avail(pos); a {
		case availEOF:
			// A backslash just before EOF is data.
			s.pos = pos
			return scanEOF, pos
		case availMore, availErr:
			return s.waitOrFail(a, prev)
		}
		if buf[pos] == '.' {
			st, end, _ := s.endMarker(prev, pos+1)
			if st == scanNeedMore {
				s.pos = prev
			}
			return st, end
		}
		// Anything after a backslash is data, even a newline.
		pos++
	}
}

// scanCSV finds the end of the current line in CSV format.
func (s *Splitter) scanCSV() (scanStatus, int) {
	buf := s.buf
	pos := s.pos
	quotec := s.quot
	for {
		n := s.vend
		if pos >= n {
			return s.atEnd(pos)
		}
		if s.firstDone {
			// Skip to the next byte that matters: outside quotes the quote, \n and \r;
			// inside, the quote, the escape and the newline that counts lines.
			var j int
			if s.inQuote {
				j = s.qf.next(buf, pos)
				if k := s.ef.next(buf, pos); k >= 0 && (j < 0 || k < j) {
					j = k
				}
				eolf := &s.cr
				if s.eol == eolNL {
					eolf = &s.nl
				}
				if k := eolf.next(buf, pos); k >= 0 && (j < 0 || k < j) {
					j = k
				}
			} else {
				j = s.nl.next(buf, pos)
				if k := s.cr.next(buf, pos); k >= 0 && (j < 0 || k < j) {
					j = k
				}
				if k := s.qf.next(buf, pos); k >= 0 && (j < 0 || k < j) {
					j = k
				}
			}
			if j < 0 || j > n {
				j = n
			}
			if j > pos {
				s.lastEsc = false
				pos = j
				continue
			}
		}
		prev := pos
		c := buf[pos]
		pos++
		// CopyReadLineText fetches the byte after a backslash or \r before it changes the
		// quote state (and so fails there when that byte is invalid).
		if c == '\\' || c == '\r' {
			if a := s.avail(pos); a == availMore || a == availErr {
				return s.waitOrFail(a, prev)
			}
		}
		inQuote, lastEsc := s.inQuote, s.lastEsc
		if s.inQuote && int(c) == s.esc {
			s.lastEsc = !s.lastEsc
		}
		if c == quotec && !s.lastEsc {
			s.inQuote = !s.inQuote
		}
		if int(c) != s.esc {
			s.lastEsc = false
		}
		if s.inQuote {
			eolc := byte('\r')
			if s.eol == eolNL {
				eolc = '\n'
			}
			if c == eolc {
				s.embedded++
			}
		}
		if c == '\r' && !s.inQuote {
			return s.endOfLineCR(prev, pos)
		}
		if c == '\n' && !s.inQuote {
			return s.endOfLineNL(pos)
		}
		if c == '\\' && !s.firstDone {
			if s.avail(pos) == availEOF {
				// The backslash is data.
				s.pos = pos
				return scanEOF, pos
			}
			if buf[pos] == '.' {
				st, end, notEnd := s.endMarker(prev, pos+1)
				if !notEnd {
					if st == scanNeedMore {
						s.inQuote, s.lastEsc = inQuote, lastEsc
						s.pos = prev
					}
					return st, end
				}
				pos = prev + 1
			}
		}
		s.firstDone = true
	}
}
