package copyfmt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// fuzzOptions are the option sets the fuzz test picks from.
var fuzzOptions = [][]Option{
	nil,
	{Opt("delimiter", "|"), Opt("null", "NULL")},
	{{Name: "header"}},
	{Opt("format", "csv")},
	{Opt("format", "csv"), {Name: "header"}, Opt("delimiter", ";"), Opt("quote", "'"), Opt("escape", `\`), Opt("null", "n/a")},
	{Opt("format", "csv"), Opt("quote", `\`)},
	{Opt("format", "csv"), Opt("quote", "\n")},
	{Opt("format", "csv"), Opt("escape", "\r"), {Name: "force_not_null", Kind: ArgList, List: []string{"a"}},
		{Name: "force_null", Kind: ArgList, List: []string{"a", "b"}}},
}

// FuzzSplitter feeds random bytes in random chunks: no panic; the header line and the rows
// always concatenate to a prefix of the input; the chunking never changes the rows, their
// line numbers or the error; every row can be read and extended with AppendField, which
// adds exactly one field holding the value.
func FuzzSplitter(f *testing.F) {
	for _, s := range []string{"", "a\tb\n", "a,\"b\nc\"\r\n\\.\r\n", "x\\\n\\.\n", "\\.", "\"\"\"", "a\rb\r\n",
		"h\nx|NULL|\\N\n", "'a;''b'\\';\\\\\n"} {
		for k := range fuzzOptions {
			f.Add([]byte(s), uint64(k), uint8(k))
			f.Add([]byte(s+"\xe2\x82"), uint64(k), uint8(k|0x80))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, which uint8) {
		o, err := ParseOptions(fuzzOptions[int(which&0x7f)%len(fuzzOptions)])
		if err != nil {
			t.Fatal(err)
		}
		if which&0x80 != 0 {
			o.ClientEncoding = "UTF8"
		}
		if err := o.BindColumns([]string{"a", "b", "c"}, nil, "t"); err != nil {
			t.Fatal(err)
		}
		run := func(chunks [][]byte) (string, [][]byte) {
			s := NewSplitter(o)
			var rows [][]byte
			var lines []int64
			var err error
			take := func(next func() ([]byte, bool, error)) bool {
				for {
					row, ok, e := next()
					if e != nil {
						err = e
						return false
					}
					if !ok {
						return true
					}
					rows = append(rows, bytes.Clone(row))
					lines = append(lines, s.Line())
				}
			}
			ok := true
			for _, c := range chunks {
				s.Write(c)
				if ok = take(s.Next); !ok {
					break
				}
			}
			if ok {
				take(s.Finish)
			}
			header, _ := s.HeaderLine()
			joined := bytes.Join(append([][]byte{header}, rows...), nil)
			if !bytes.HasPrefix(data, joined) {
				t.Fatalf("rows %q (header %q) are not a prefix of %q", rows, header, data)
			}
			return fmt.Sprintf("%q %v %v", rows, lines, err), rows
		}
		want, rows := run([][]byte{data})
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(8))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if got, _ := run(chunks); got != want {
			t.Fatalf("chunked: %s\none piece: %s", got, want)
		}
		values := [][]byte{nil, []byte(""), []byte("x"), []byte("\\"), []byte("\""), []byte("'"), []byte(";|,\t"),
			[]byte("\n\r"), []byte("NULL"), []byte("n/a"), []byte(`\N`), []byte(`\.`)}
		for i, row := range rows {
			vals, err := o.Fields(row, nil)
			if err != nil {
				continue
			}
			for j, v := range vals {
				fv, null, err := o.Field(row, j)
				if err != nil || null != v.Null || !bytes.Equal(fv, v.Data) {
					t.Fatalf("row %q field %d: Field %q %v %v, Fields %q %v", row, j, fv, null, err, v.Data, v.Null)
				}
			}
			if o.CheckColumns(row, []string{"a", "b", "c"}[:min(len(vals), 3)]) != nil && len(vals) <= 3 {
				t.Fatalf("row %q: CheckColumns rejects its own field count %d", row, len(vals))
			}
			if o.Format == CSV && (o.Quote == '\n' || o.Quote == '\r') {
				// A quote that ends lines cannot quote anything (nor can COPY TO).
				continue
			}
			value := values[i%len(values)]
			ext, err := o.AppendField(nil, row, value, value == nil)
			if err != nil {
				continue
			}
			got, err := o.Fields(ext, nil)
			if err != nil {
				t.Fatalf("row %q + %q = %q: %v", row, value, ext, err)
			}
			if len(got) != len(vals)+1 {
				t.Fatalf("row %q + %q = %q: %d fields, want %d", row, value, ext, len(got), len(vals)+1)
			}
			last := got[len(got)-1]
			// FORCE_* apply to fields 0 and 1 only, so the appended field reads back as is
			// when it is the third or later.
			if len(vals) >= 2 && (last.Null != (value == nil) || !bytes.Equal(last.Data, value)) {
				t.Fatalf("row %q + %q = %q: appended field reads %q null=%v", row, value, ext, last.Data, last.Null)
			}
		}
	})
}
