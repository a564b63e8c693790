package copyfmt

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// splitAll feeds data to a Splitter in chunks of the given sizes (cycled; nil means one
// chunk) and returns the rows, the line of each, and the error.
func splitAll(o *Options, data []byte, sizes []int, cols []string) (rows []string, lines []int64, s *Splitter, err error) {
	s = NewSplitter(o)
	if cols != nil {
		s.SetColumns(cols)
	}
	drain := func(next func() ([]byte, bool, error)) error {
		for {
			row, ok, err := next()
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			rows = append(rows, string(row))
			lines = append(lines, s.Line())
		}
	}
	for i, k := 0, 0; i < len(data); k++ {
		n := len(data) - i
		if len(sizes) > 0 {
			n = min(n, sizes[k%len(sizes)])
		}
		s.Write(data[i : i+n])
		i += n
		if err := drain(s.Next); err != nil {
			return rows, lines, s, err
		}
	}
	err = drain(s.Finish)
	return rows, lines, s, err
}

func mustOptions(t testing.TB, opts ...Option) *Options {
	t.Helper()
	o, err := ParseOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestSplitBasics(t *testing.T) {
	text := mustOptions(t)
	csv := mustOptions(t, Opt("format", "csv"))
	csvHeader := mustOptions(t, Opt("format", "csv"), Option{Name: "header"})
	cases := []struct {
		o    *Options
		in   string
		rows []string
		err  string
	}{
		{text, "", nil, ""},
		{text, "a\tb\n", []string{"a\tb\n"}, ""},
		{text, "a\tb\nc\td", []string{"a\tb\n", "c\td"}, ""},
		{text, "a\\\nb\n", []string{"a\\\nb\n"}, ""},
		{text, "a\r\nb\r\n", []string{"a\r\n", "b\r\n"}, ""},
		{text, "a\rb\r", []string{"a\r", "b\r"}, ""},
		{text, "a\nb\r", []string{"a\n"}, "literal carriage return found in data"},
		{text, "a\r\nb\n", []string{"a\r\n"}, "literal newline found in data"},
		{text, "a\n\\.\nignored", []string{"a\n"}, ""},
		{text, "a\nb\\.\n", []string{"a\n", "b"}, ""},
		{text, "a\n\\.", []string{"a\n"}, "end-of-copy marker corrupt"},
		{text, "a\\", []string{"a\\"}, ""},
		{csv, "a,\"b\nc\"\nd\n", []string{"a,\"b\nc\"\n", "d\n"}, ""},
		{csv, "a,\"b\n", nil, "unterminated CSV quoted field"},
		{csv, "\\.\n", nil, ""},
		{csv, "\\.x\n", []string{"\\.x\n"}, ""},
		{csv, "x\n\\.", []string{"x\n", "\\."}, ""},
		{csvHeader, "h1,h2\nx,y\n", []string{"x,y\n"}, ""},
		{csvHeader, "h1,h2", nil, ""},
	}
	for _, c := range cases {
		for _, sizes := range [][]int{nil, {1}, {2}, {3, 1}} {
			rows, _, s, err := splitAll(c.o, []byte(c.in), sizes, nil)
			gotErr := ""
			if err != nil {
				de := err.(*DataError)
				gotErr = de.Msg
				if s.Line() != de.Line || de.Line == 0 {
					t.Errorf("%q: error on line %d, Line() %d", c.in, de.Line, s.Line())
				}
			}
			if gotErr != c.err || fmt.Sprintf("%q", rows) != fmt.Sprintf("%q", c.rows) {
				t.Errorf("%q sizes %v: rows %q err %q, want %q err %q", c.in, sizes, rows, gotErr, c.rows, c.err)
			}
		}
	}
}

func TestFieldBasics(t *testing.T) {
	text := mustOptions(t)
	csv := mustOptions(t, Opt("format", "csv"), Option{Name: "force_not_null", Kind: ArgList, List: []string{"a"}},
		Option{Name: "force_null", Kind: ArgList, List: []string{"b"}})
	if err := csv.BindColumns([]string{"a", "b", "c"}, nil, "t"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		o    *Options
		row  string
		want []string // "<NULL>" for null
	}{
		{text, "a\tb\n", []string{"a", "b"}},
		{text, "\\N\t\\\\N\t\\x41\\101\\n\\q\n", []string{"<NULL>", "\\N", "AA\nq"}},
		{text, "x\\\n", []string{"x\n"}},
		{text, "\\N\\", []string{"<NULL>"}},
		{csv, ",\"\",\n", []string{"", "<NULL>", "<NULL>"}},
		{csv, "\"a\"\"b\",\"x\ny\",\"\"\r\n", []string{"a\"b", "x\ny", ""}},
	}
	for _, c := range cases {
		vals, err := c.o.Fields([]byte(c.row), nil)
		if err != nil {
			t.Fatalf("%q: %v", c.row, err)
		}
		var got []string
		for i, v := range vals {
			s := string(v.Data)
			if v.Null {
				s = "<NULL>"
			}
			got = append(got, s)
			f, null, err := c.o.Field([]byte(c.row), i)
			if err != nil || null != v.Null || string(f) != string(v.Data) {
				t.Errorf("%q field %d: %q %v %v, Fields says %q %v", c.row, i, f, null, err, v.Data, v.Null)
			}
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", c.want) {
			t.Errorf("%q: %q, want %q", c.row, got, c.want)
		}
	}
	_, _, err := text.Field([]byte("\\xff\n"), 0)
	var de *DataError
	if !errors.As(err, &de) || de.Msg != `invalid byte sequence for encoding "UTF8": 0xff` {
		t.Errorf("\\xff: %v", err)
	}
}

func TestShardOptions(t *testing.T) {
	cases := []struct {
		opts []Option
		want string
	}{
		{nil, `(FORMAT text, DELIMITER '	', NULL E'\\N')`},
		{[]Option{Opt("format", "csv")}, `(FORMAT csv, DELIMITER ',', NULL '', QUOTE '"', ESCAPE '"')`},
		{[]Option{Opt("format", "csv"), Opt("quote", "'"), Opt("escape", `\`), Opt("header", "match"),
			{Name: "force_null", Kind: ArgList, List: []string{`we"ird`}}, Opt("encoding", "utf-8"), {Name: "freeze"}},
			`(FORMAT csv, DELIMITER ',', NULL '', QUOTE '''', ESCAPE E'\\', FORCE_NULL ("we""ird"), ENCODING 'UTF8', FREEZE true)`},
	}
	for _, c := range cases {
		o := mustOptions(t, c.opts...)
		if got := o.ShardOptions(); got != c.want {
			t.Errorf("%v: %s, want %s", c.opts, got, c.want)
		}
	}
}

func TestEncodeNeverNull(t *testing.T) {
	for _, o := range []*Options{mustOptions(t), mustOptions(t, Opt("null", "NULL")), mustOptions(t, Opt("null", `\\N`)),
		mustOptions(t, Opt("format", "csv")), mustOptions(t, Opt("format", "csv"), Opt("null", "n/a"))} {
		for _, v := range []string{"", "NULL", `\N`, "N", "n/a", `\.`, "a\tb", "x\\", "é"} {
			enc, err := o.EncodeField(nil, []byte(v), false)
			if err != nil {
				t.Errorf("%s %q: %v", o.ShardOptions(), v, err)
				continue
			}
			got, null, err := o.Field(append(enc, '\n'), 0)
			if err != nil || null || string(got) != v {
				t.Errorf("%s %q: encoded %q reads back %q null=%v err=%v", o.ShardOptions(), v, enc, got, null, err)
			}
		}
	}
	if _, err := mustOptions(t, Opt("null", "")).EncodeField(nil, nil, false); err == nil {
		t.Error("empty string with NULL '' in text format: no error")
	}
}

// TestChunkingInvariance: any chunking gives the same rows and error as one chunk.
func TestChunkingInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "\t", ",", "\"", "\\", ".", "\n", "\r", "\r\n", "N", "'", "\xff", "\xe2\x82", "\x00", "é"}
	opts := [][]Option{nil, {Opt("format", "csv")}, {Opt("format", "csv"), Opt("escape", `\`)},
		{Opt("format", "csv"), Opt("quote", `\`)}, {Opt("format", "csv"), Option{Name: "header"}}}
	for _, op := range opts {
		o := mustOptions(t, op...)
		o.ClientEncoding = "UTF8"
		for n := 0; n < 3000; n++ {
			var b strings.Builder
			for k := rng.IntN(30); k > 0; k-- {
				b.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			data := []byte(b.String())
			rows, lines, _, err := splitAll(o, data, nil, nil)
			want := fmt.Sprintf("%q %v %v", rows, lines, err)
			for _, sizes := range [][]int{{1}, {2}, {1 + rng.IntN(5), 1 + rng.IntN(5)}} {
				rows, lines, _, err := splitAll(o, data, sizes, nil)
				if got := fmt.Sprintf("%q %v %v", rows, lines, err); got != want {
					t.Fatalf("%v %q sizes %v: %s, want %s", op, data, sizes, got, want)
				}
			}
		}
	}
}
