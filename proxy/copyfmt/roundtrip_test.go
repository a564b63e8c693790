package copyfmt

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// The round-trip test: a table of many types filled with random rows, dumped by
// PostgreSQL's COPY TO in several formats, read back by a Splitter in random chunks, and
// checked against PostgreSQL: the rows reproduce the input, their fields are the values
// PostgreSQL stores when it loads the same bytes (and, where COPY TO is unambiguous, the
// table's values), and the rows, reloaded in one stream or split over three "shards",
// load the table PostgreSQL loads from the original input.

const srcRows = 3000

var srcColumns = []string{"id", "t", "v", "i", "n", "f", "arr", "iarr", "j", "b", "d", "ts", "ok"}

const srcDDL = `CREATE TABLE src (id int PRIMARY KEY, t text, v varchar(60), i int8, n numeric,
	f float8, arr text[], iarr int[], j jsonb, b bytea, d date, ts timestamptz, ok bool)`

// textPieces are the bits random strings are made of: everything COPY escapes or quotes.
var textPieces = []string{"a", "b", "xyz", "Hello", " ", "\t", "\n", "\r", "\r\n", "\\", "\\\\", "\\N", "\\.",
	".", "\"", "'", ",", ";", "|", "NULL", "n/a", "N", "é", "日本", "😀", "\x01", "\x7f", "\\x41", "\\101",
	"{", "}", "0", "-"}

func randText(rng *rand.Rand) string {
	switch rng.IntN(20) {
	case 0:
		return ""
	case 1:
		return []string{"NULL", "n/a", `\N`, `\.`, `""`, "''", " ", "\\"}[rng.IntN(8)]
	}
	var b strings.Builder
	for k := 1 + rng.IntN(8); k > 0; k-- {
		b.WriteString(textPieces[rng.IntN(len(textPieces))])
	}
	return b.String()
}

// randRow returns a row of src as text literals (nil for NULL).
func randRow(rng *rand.Rand, id int) [][]byte {
	null := func() bool { return rng.IntN(10) == 0 }
	lit := func(s string) []byte { return []byte(s) }
	row := [][]byte{lit(strconv.Itoa(id))}
	// t
	if null() {
		row = append(row, nil)
	} else {
		row = append(row, lit(randText(rng)))
	}
	// v varchar(60)
	if null() {
		row = append(row, nil)
	} else {
		s := randText(rng)
		for utf8.RuneCountInString(s) > 60 {
			_, n := utf8.DecodeLastRuneInString(s)
			s = s[:len(s)-n]
		}
		row = append(row, lit(s))
	}
	// i int8
	if null() {
		row = append(row, nil)
	} else {
		row = append(row, lit(strconv.FormatInt(rng.Int64()-rng.Int64(), 10)))
	}
	// n numeric
	switch {
	case null():
		row = append(row, nil)
	case rng.IntN(20) == 0:
		row = append(row, lit("NaN"))
	default:
		row = append(row, lit(fmt.Sprintf("%d.%0*d", rng.Int64N(1e15)-5e14, rng.IntN(12), rng.Int64N(1e11))))
	}
	// f float8
	switch {
	case null():
		row = append(row, nil)
	case rng.IntN(10) == 0:
		row = append(row, lit([]string{"NaN", "Infinity", "-Infinity", "-0", "1e300", "5e-324"}[rng.IntN(6)]))
	default:
		row = append(row, lit(strconv.FormatFloat(rng.NormFloat64()*1e6, 'g', -1, 64)))
	}
	// arr text[]
	if null() {
		row = append(row, nil)
	} else {
		var elems []string
		for k := rng.IntN(4); k > 0; k-- {
			if rng.IntN(6) == 0 {
				elems = append(elems, "NULL")
				continue
			}
			s := randText(rng)
			s = strings.ReplaceAll(s, `\`, `\\`)
			s = strings.ReplaceAll(s, `"`, `\"`)
			elems = append(elems, `"`+s+`"`)
		}
		row = append(row, lit("{"+strings.Join(elems, ",")+"}"))
	}
	// iarr int[]
	if null() {
		row = append(row, nil)
	} else {
		var elems []string
		for k := rng.IntN(5); k > 0; k-- {
			if rng.IntN(6) == 0 {
				elems = append(elems, "NULL")
			} else {
				elems = append(elems, strconv.Itoa(int(rng.Int32())-int(rng.Int32())))
			}
		}
		row = append(row, lit("{"+strings.Join(elems, ",")+"}"))
	}
	// j jsonb
	if null() {
		row = append(row, nil)
	} else {
		doc := map[string]any{"s": randText(rng), "n": rng.IntN(1000), "a": []any{randText(rng), nil, true, 1.5}}
		if rng.IntN(3) == 0 {
			doc[randText(rng)] = map[string]any{"k": randText(rng)}
		}
		b, _ := json.Marshal(doc)
		row = append(row, b)
	}
	// b bytea
	if null() {
		row = append(row, nil)
	} else {
		raw := make([]byte, rng.IntN(24))
		for i := range raw {
			raw[i] = byte(rng.IntN(256))
		}
		row = append(row, lit(`\x`+hex.EncodeToString(raw)))
	}
	// d date
	switch {
	case null():
		row = append(row, nil)
	case rng.IntN(30) == 0:
		row = append(row, lit("infinity"))
	default:
		row = append(row, lit(fmt.Sprintf("%04d-%02d-%02d", 1900+rng.IntN(200), 1+rng.IntN(12), 1+rng.IntN(28))))
	}
	// ts timestamptz
	if null() {
		row = append(row, nil)
	} else {
		row = append(row, lit(fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d.%06d+%02d", 1950+rng.IntN(100), 1+rng.IntN(12),
			1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e6), rng.IntN(13))))
	}
	// ok bool
	if null() {
		row = append(row, nil)
	} else {
		row = append(row, lit(strconv.FormatBool(rng.IntN(2) == 0)))
	}
	return row
}

// fillSource creates src with srcRows random rows (fixed seed).
func fillSource(t *testing.T, conn *pgconn.PgConn) {
	exec(t, conn, "DROP TABLE IF EXISTS src; "+srcDDL)
	rng := rand.New(rand.NewPCG(2024, 15))
	const batch = 100
	for id := 1; id <= srcRows; id += batch {
		var params [][]byte
		var tuples []string
		for k := id; k < id+batch && k <= srcRows; k++ {
			var ph []string
			for _, v := range randRow(rng, k) {
				params = append(params, v)
				ph = append(ph, "$"+strconv.Itoa(len(params)))
			}
			tuples = append(tuples, "("+strings.Join(ph, ",")+")")
		}
		res := conn.ExecParams(context.Background(), "INSERT INTO src VALUES "+strings.Join(tuples, ","), params, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("insert: %v", res.Err)
		}
	}
}

// tableDigest is a digest of a table's rows in id order.
func tableDigest(t *testing.T, conn *pgconn.PgConn, table string) string {
	res := exec(t, conn, "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY id)), '') FROM "+table+" x")
	return string(res[0].Rows[0][0])
}

type roundTrip struct {
	name   string
	to     string              // COPY ... TO STDOUT options
	from   string              // COPY ... FROM STDIN options
	lines  func([]byte) []byte // line ending rewrite, or nil
	marker string              // end-of-data marker (and garbage) appended, or ""
	// exact: the fields must equal the table's values (COPY TO's output is unambiguous,
	// but for a text value equal to the NULL string, which reads back as NULL).
	exact bool
}

// toCRLF and toCR rewrite every \n. In text format every raw \n is a line terminator; in
// CSV quoted newlines change too, which changes the values but not the validity.
func toCRLF(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }
func toCR(b []byte) []byte   { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r")) }

var roundTrips = []roundTrip{
	{name: "text", to: "(FORMAT text)", from: "(FORMAT text)", exact: true},
	{name: "text-pipe-NULL", to: "(FORMAT text, DELIMITER '|', NULL 'NULL')", from: "(FORMAT text, DELIMITER '|', NULL 'NULL')", exact: true},
	{name: "text-header", to: "(FORMAT text, HEADER)", from: "(FORMAT text, HEADER match)", exact: true},
	{name: "text-crlf-marker", to: "(FORMAT text)", from: "(FORMAT text)", lines: toCRLF, marker: "\\.\r\nignored\tgarbage\r\n", exact: true},
	{name: "text-cr", to: "(FORMAT text)", from: "(FORMAT text)", lines: toCR, exact: true},
	{name: "csv", to: "(FORMAT csv)", from: "(FORMAT csv)", exact: true},
	{name: "csv-header-semicolon-quote-escape", to: "(FORMAT csv, HEADER, DELIMITER ';', QUOTE '''', ESCAPE '\\', FORCE_QUOTE *, NULL 'n/a')",
		from: "(FORMAT csv, HEADER, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'n/a')", exact: true},
	{name: "csv-force", to: "(FORMAT csv)", from: "(FORMAT csv, FORCE_NOT_NULL (t, v), FORCE_NULL (v, b, j, arr))"},
	{name: "csv-force-quoted", to: "(FORMAT csv, FORCE_QUOTE *, NULL 'n/a')", from: "(FORMAT csv, NULL 'n/a', FORCE_NOT_NULL (t, v), FORCE_NULL (v, b, j, arr))"},
	{name: "csv-crlf-marker", to: "(FORMAT csv)", from: "(FORMAT csv)", lines: toCRLF, marker: "\\.\r\nignored,garbage\r\n"},
}

func TestRoundTripAgainstPostgres(t *testing.T) {
	conn := pg(t)
	fillSource(t, conn)
	exec(t, conn, "DROP TABLE IF EXISTS ref, dst, dst3; CREATE TABLE ref (LIKE src); CREATE TABLE dst (LIKE src); CREATE TABLE dst3 (LIKE src)")
	srcDigest := tableDigest(t, conn, "src")
	res := exec(t, conn, "SELECT * FROM src ORDER BY id")
	table := res[0].Rows
	rng := rand.New(rand.NewPCG(3, 4))
	var totalRows, totalBytes, parses int
	for _, rt := range roundTrips {
		t.Run(rt.name, func(t *testing.T) {
			data := copyOut(t, conn, "COPY (SELECT * FROM src ORDER BY id) TO STDOUT "+rt.to)
			if rt.lines != nil {
				data = rt.lines(data)
			}
			body := len(data)
			if rt.marker != "" {
				data = append(data, rt.marker...)
			}
			o, err := ParseOptions(optionsFromSQL(t, "COPY src FROM STDIN "+rt.from))
			if err == nil {
				o.ClientEncoding = "UTF8"
				err = o.BindColumns(srcColumns, srcColumns, "src")
			}
			if err != nil {
				t.Fatal(err)
			}
			// What PostgreSQL makes of the bytes: text values, and the typed table.
			want, pe := loadMirror(t, conn, srcColumns, rt.from, data)
			if pe != nil {
				t.Fatalf("PostgreSQL rejects its own output: %v", pe)
			}
			exec(t, conn, "TRUNCATE ref")
			if _, pe := copyIn(t, conn, "COPY ref FROM STDIN "+rt.from, data); pe != nil {
				t.Fatal(pe)
			}
			refDigest := tableDigest(t, conn, "ref")
			// A text value written as the NULL string reads back as NULL.
			ambiguous := func(w []byte) bool { return o.Format == Text && string(o.encodeText(nil, w)) == o.Null }
			nAmbiguous := 0
			for _, row := range table {
				for _, w := range row {
					if w != nil && ambiguous(w) {
						nAmbiguous++
					}
				}
			}
			if rt.exact && nAmbiguous == 0 && refDigest != srcDigest {
				t.Fatalf("PostgreSQL's own round trip differs: %s vs %s", refDigest, srcDigest)
			}

			chunkings := [][][]byte{{data}, randomChunks(rng, data), randomChunks(rng, data), bytesChunks(data)}
			var first parsed
			for ci, chunks := range chunkings {
				got := parse(o, chunks, srcColumns)
				parses++
				if got.err != nil {
					t.Fatalf("chunking %d: %v", ci, got.err)
				}
				// (a) header + rows = the input up to the end marker.
				joined := bytes.Join(append([][]byte{got.header}, got.rows...), nil)
				if !bytes.Equal(joined, data[:body]) {
					t.Fatalf("chunking %d: rows do not reproduce the input (%d bytes vs %d)", ci, len(joined), body)
				}
				if got.ended != (rt.marker != "") {
					t.Fatalf("chunking %d: Ended() = %v", ci, got.ended)
				}
				// (b) one row per table row.
				if len(got.rows) != srcRows {
					t.Fatalf("chunking %d: %d rows, want %d", ci, len(got.rows), srcRows)
				}
				// (c) the values PostgreSQL loads from the same bytes.
				if err := sameOutcome(got, want, nil); err != nil {
					t.Fatalf("chunking %d: %v", ci, err)
				}
				if ci == 0 {
					first = got
				} else if fmt.Sprint(got.lines) != fmt.Sprint(first.lines) {
					t.Fatalf("chunking %d: line numbers differ", ci)
				}
			}
			// (c) and the table's own values, where COPY TO is unambiguous.
			if rt.exact {
				for i, vals := range first.values {
					for j, v := range vals {
						w := table[i][j]
						wantNull := w == nil || ambiguous(w)
						if v.Null != wantNull || (!wantNull && !bytes.Equal(v.Data, w)) {
							t.Fatalf("row %d column %s: package %s, table %q", i+1, srcColumns[j], showValues([]Value{v}), w)
						}
					}
				}
			}
			// (d) the rows, sent back in one stream, load the same table.
			exec(t, conn, "TRUNCATE dst")
			if _, pe := copyIn(t, conn, "COPY dst FROM STDIN "+o.ShardOptions(), bytes.Join(first.rows, nil)); pe != nil {
				t.Fatalf("reload: %v", pe)
			}
			if d := tableDigest(t, conn, "dst"); d != refDigest {
				t.Fatalf("reloaded table %s, PostgreSQL loaded %s", d, refDigest)
			}
			// ... and split over three shards by the key, each its own COPY.
			groups := make([][]byte, 3)
			for _, row := range first.rows {
				key, null, err := o.Field(row, 0)
				if err != nil || null {
					t.Fatalf("key of %q: %v %v", row, null, err)
				}
				id, err := strconv.Atoi(string(key))
				if err != nil {
					t.Fatal(err)
				}
				groups[id%3] = append(groups[id%3], row...)
			}
			exec(t, conn, "TRUNCATE dst3")
			for _, g := range groups {
				if _, pe := copyIn(t, conn, "COPY dst3 FROM STDIN "+o.ShardOptions(), g); pe != nil {
					t.Fatalf("shard reload: %v", pe)
				}
			}
			if d := tableDigest(t, conn, "dst3"); d != refDigest {
				t.Fatalf("sharded reload %s, PostgreSQL loaded %s", d, refDigest)
			}
			// Line numbers: a bad row after the data is reported on PostgreSQL's line.
			bad := []byte("4242\n")
			if rt.lines != nil {
				bad = rt.lines(bad)
			}
			badData := append(append(bytes.Clone(data[:body]), bad...), data[body:]...)
			want2, pe2 := loadMirror(t, conn, srcColumns, rt.from, badData)
			if pe2 == nil {
				t.Fatalf("PostgreSQL accepts a one-field row (%d rows)", len(want2))
			}
			got := parse(o, randomChunks(rng, badData), srcColumns)
			if err := sameOutcome(got, nil, pe2); err != nil {
				t.Fatal(err)
			}
			if n := len(got.lines); n == 0 || got.lines[n-1] >= pgLine(pe2) {
				t.Fatalf("line numbers: last row on %v, error on %d", got.lines[n-1:], pgLine(pe2))
			}
			totalRows += len(first.rows)
			totalBytes += len(data)
			t.Logf("%d rows, %d bytes (%d values written as the NULL string), options %s", len(first.rows), len(data), nAmbiguous, o.ShardOptions())
		})
	}
	t.Logf("%d combinations, %d rows (%d bytes) each read in %d chunkings, %d parses in all",
		len(roundTrips), totalRows, totalBytes, 4, parses)
}

// appendValues are the values AppendField must survive.
var appendValues = []*string{nil, ptr(""), ptr("\t"), ptr(","), ptr(";"), ptr("|"), ptr("\""), ptr("'"),
	ptr("\n"), ptr("\r"), ptr("\r\n"), ptr("\\"), ptr("\\N"), ptr("NULL"), ptr("n/a"), ptr("\\."), ptr("."),
	ptr("é日本😀"), ptr(" "), ptr("a,b;c|d\te\"f'g\\h\ni"), ptr("N"), ptr("\x01\x7f"), ptr(strings.Repeat("x\\\"", 500))}

func ptr(s string) *string { return &s }

// TestAppendFieldAgainstPostgres: rows with a field appended load into a table with one more
// column, the original columns unchanged and the new one holding exactly the value.
func TestAppendFieldAgainstPostgres(t *testing.T) {
	conn := pg(t)
	fillSource(t, conn)
	rng := rand.New(rand.NewPCG(5, 6))
	cols := append(append([]string(nil), srcColumns...), "extra")
	var checked int
	for _, rt := range roundTrips {
		data := copyOut(t, conn, "COPY (SELECT * FROM src ORDER BY id LIMIT 500) TO STDOUT "+rt.to)
		if rt.lines != nil {
			data = rt.lines(data)
		}
		// The last row without its terminator, as a client may send it.
		data = data[:len(data)-1]
		if bytes.HasSuffix(data, []byte("\r")) {
			data = data[:len(data)-1]
		}
		o, err := ParseOptions(optionsFromSQL(t, "COPY src FROM STDIN "+rt.from))
		if err == nil {
			o.ClientEncoding = "UTF8"
			err = o.BindColumns(srcColumns, srcColumns, "src")
		}
		if err != nil {
			t.Fatal(err)
		}
		base, pe := loadMirror(t, conn, srcColumns, rt.from, data)
		if pe != nil {
			t.Fatal(pe)
		}
		got := parse(o, randomChunks(rng, data), srcColumns)
		if got.err != nil {
			t.Fatal(got.err)
		}
		var out []byte
		var values []*string
		for i, row := range got.rows {
			v := appendValues[i%len(appendValues)]
			var value []byte
			if v != nil {
				value = []byte(*v)
			}
			out, err = o.AppendField(out, row, value, v == nil)
			if err != nil {
				t.Fatal(err)
			}
			values = append(values, v)
		}
		// The shard's COPY lists the extra column; FORCE_* keep naming the client's.
		shardOpts := o.ShardOptions()
		loaded, pe := loadMirror(t, conn, cols, shardOpts, out)
		if pe != nil {
			t.Fatalf("%s: %v", rt.name, pe)
		}
		if len(loaded) != len(base) {
			t.Fatalf("%s: %d rows, want %d", rt.name, len(loaded), len(base))
		}
		for i, row := range loaded {
			if showRow(row[:len(srcColumns)]) != showRow(base[i]) {
				t.Fatalf("%s row %d: %s, want %s", rt.name, i+1, showRow(row[:len(srcColumns)]), showRow(base[i]))
			}
			if g, w := showValue(row[len(srcColumns)]), showValue(values[i]); g != w {
				t.Fatalf("%s row %d: appended %s, loaded %s", rt.name, i+1, w, g)
			}
			checked++
		}
	}
	t.Logf("%d appended fields checked in %d formats", checked, len(roundTrips))
}
