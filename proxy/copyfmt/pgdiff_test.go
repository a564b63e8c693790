package copyfmt

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestEdgeCasesAgainstPostgres: malformed and unusual inputs (errors, missing trailing
// newline, end markers, empty input, header lines) give PostgreSQL's result: the same rows
// and values, or the same error message, SQLSTATE and line number.
func TestEdgeCasesAgainstPostgres(t *testing.T) {
	conn := pg(t)
	rng := rand.New(rand.NewPCG(7, 7))
	two := []string{"a", "b"}
	cases := []struct {
		opts string
		cols []string
		data string
	}{
		// text: terminators, escapes, end of data
		{"", two, ""},
		{"", two, "\n"},
		{"", two, "x\ty"},
		{"", two, "x\ty\n"},
		{"", two, "x\ty\nz\tw"},
		{"", two, "x\ty\\"},
		{"", two, "x\ty\\\n"},
		{"", two, "x\ty\\\nz\tw\n"},
		{"", two, "x\\\ty\tz\n"},
		{"", two, "x\ty\r\nz\tw\r\n"},
		{"", two, "x\ty\rz\tw\r"},
		{"", two, "x\ty\rz\tw"},
		{"", two, "x\ty\r"},
		{"", two, "x\ty\nz\tw\r"},
		{"", two, "x\ty\nz\tw\rq\n"},
		{"", two, "x\ty\r\nz\tw\r"},
		{"", two, "x\ty\r\nz\tw\n"},
		{"", two, "x\ty\rz\tw\n"},
		{"", two, "x\ty\r\nz\r\tw\r\n"},
		{"", two, "x\ty\\\r\nz\tw\r\n"},
		{"", two, "x\ty\n\\.\n"},
		{"", two, "x\ty\n\\.\ngarbage\tafter\tthe\tmarker\n"},
		{"", two, "x\ty\n\\."},
		{"", two, "x\ty\n\\.x\n"},
		{"", two, "x\ty\\.\n"},
		{"", two, "x\ty\\.\nmore\n"},
		{"", two, "x\t\\.\n"},
		{"", two, "x\ty\r\n\\.\n"},
		{"", two, "x\ty\r\n\\.\r\n"},
		{"", two, "x\ty\r\n\\.\r"},
		{"", two, "x\ty\r\\.\r"},
		{"", two, "x\ty\r\\.\n"},
		{"", two, "\\.\n"},
		{"", two, "\\.\r\n"},
		{"", two, "\\.\r"},
		{"", two, "x\\\\.\ty\n"},
		{"", two, "x\ty\tz\n"},
		{"", two, "x\n"},
		{"", two, "x\ty\nonly\n"},
		{"", two, "\\N\t\\\\N\n"},
		{"", two, "\\N\\\t\\N\n"},
		{"", two, "\\101\\x41\\x4\\x\\q\\8\t\\b\\f\\n\\r\\t\\v\n"},
		{"", two, "\\xff\tb\n"},
		{"", two, "a\t\\0\n"},
		{"", two, "a\t\\303\\251\n"},
		{"", two, "a\t\\303\n"},
		{"", two, "a\t\\xe2\\x82\n"},
		{"", two, "a\tb\tc\\xff\n"},
		{"", two, "a\tb\\xff\tc\n"},
		{"", []string{"a"}, "x\n\\N\n\n"},
		{"(DELIMITER '|', NULL 'NULL')", two, "NULL|\\NULL\nx|y|\n"},
		{"(DELIMITER 'A')", two, "\\xAAb\n"},
		{"(DELIMITER 'A')", two, "\\xAb\n"},
		{"(NULL '')", two, "\tx\n"},
		{"(HEADER)", two, "h1\th2\nx\ty\n"},
		{"(HEADER)", two, "h1\th2"},
		{"(HEADER)", two, "h1\\.\n"},
		{"(HEADER)", two, "h1\th2\r\nx\ty\n"},
		{"(HEADER match)", two, "a\tb\nx\ty\n"},
		{"(HEADER match)", two, "a\tc\nx\ty\n"},
		{"(HEADER match)", two, "a\n"},
		{"(HEADER match)", two, "a\t\\N\n"},
		{"(HEADER match)", two, "a\tb\tc\n"},
		{"(HEADER match)", two, ""},
		{"(HEADER match)", two, "\\.\n"},
		{"(HEADER match)", two, "a\tb"},
		{"(HEADER match)", two, "\\141\tb\nx\ty\n"},
		{"(HEADER match)", two, "a\tb\nx\ty\tz\n"},
		// csv
		{"(FORMAT csv)", two, ""},
		{"(FORMAT csv)", two, "x,y"},
		{"(FORMAT csv)", two, "x,y\n"},
		{"(FORMAT csv)", two, "x,\"y\n"},
		{"(FORMAT csv)", two, "x,\"y\nz\n"},
		{"(FORMAT csv)", two, "x,\"y\"\"\n"},
		{"(FORMAT csv)", two, "x,\"y\nz\"\n\"p\r\nq\",r\n"},
		{"(FORMAT csv)", two, "x,\"y\r\nz\"\r\n\"p\r\nq\",r\r\n"},
		{"(FORMAT csv)", two, "x,\"y\rz\"\r\"p\r\nq\",r\r"},
		{"(FORMAT csv)", two, "x,y\rz\n"},
		{"(FORMAT csv)", two, "x,y\nz,w\r"},
		{"(FORMAT csv)", two, "x,y\r\nz,w\n"},
		{"(FORMAT csv)", two, "x,y\r\nz,w\rq,e\r\n"},
		{"(FORMAT csv)", two, "x,y\n\\.\n"},
		{"(FORMAT csv)", two, "x,y\n\\.\nignored\n"},
		{"(FORMAT csv)", two, "x,y\n\\."},
		{"(FORMAT csv)", two, "x,y\n\\.,b\n"},
		{"(FORMAT csv)", two, "x,y\n\\.x\n"},
		{"(FORMAT csv)", two, "x,y\r\n\\.\r\n"},
		{"(FORMAT csv)", two, "x,y\r\n\\.\n"},
		{"(FORMAT csv)", two, "x,y\r\n\\.\r"},
		{"(FORMAT csv)", two, "x,y\r\\.\r"},
		{"(FORMAT csv)", two, "x,y\r\\.\n"},
		{"(FORMAT csv)", two, "x,y\n\\.\r\n"},
		{"(FORMAT csv)", two, "\\.\r\n"},
		{"(FORMAT csv)", two, "\\.\n"},
		{"(FORMAT csv)", two, "\\"},
		{"(FORMAT csv)", two, "x,\\.\n"},
		{"(FORMAT csv)", two, "\"\\.\",b\n"},
		{"(FORMAT csv)", two, "x,y,z\n"},
		{"(FORMAT csv)", two, "x\n"},
		{"(FORMAT csv)", two, "\n"},
		{"(FORMAT csv)", two, "x,\"\"\n,\"\"\"\"\n"},
		{"(FORMAT csv)", two, "a\"b\"c,d\n"},
		{"(FORMAT csv)", two, "\"a\"b\"c\",d\n"},
		{"(FORMAT csv)", two, "\"a\nb\"\"\nc\",d\ne,f\n"},
		{"(FORMAT csv, ESCAPE '\\')", two, "\"a\\\"b\",\"c\\\\\"\n"},
		{"(FORMAT csv, ESCAPE '\\')", two, "\"a\\\"\nb\",c\n"},
		{"(FORMAT csv, ESCAPE '\\')", two, "\"a\\\\\"\nb,c\n"},
		{"(FORMAT csv, ESCAPE '\\')", two, "\"a\\b\",c\n"},
		{"(FORMAT csv, ESCAPE '\\')", two, "\\.\n"},
		{"(FORMAT csv, QUOTE '\\')", two, "\\.\n"},
		{"(FORMAT csv, QUOTE '\\')", two, "\\a,b\\,c\n"},
		{"(FORMAT csv, QUOTE '\\')", two, "\\.\\,c\n"},
		{"(FORMAT csv, QUOTE '\\')", two, "\\"},
		{"(FORMAT csv, QUOTE '''', DELIMITER ';', NULL 'n/a')", two, "n/a;'n/a'\n'x;y''z';\n"},
		{"(FORMAT csv, NULL 'x')", two, "x,\"x\"\n"},
		{"(FORMAT csv, FORCE_NOT_NULL (a), FORCE_NULL (b))", two, ",\n\"\",\"\"\n"},
		{"(FORMAT csv, FORCE_NOT_NULL (a, b), FORCE_NULL (b))", two, ",\n\"\",\"\"\nx,\"y\"\n"},
		{"(FORMAT csv, NULL 'N', FORCE_NOT_NULL (b), FORCE_NULL (a))", two, "N,N\n\"N\",\"N\"\n"},
		{"(FORMAT csv, HEADER)", two, "h1,\"h\n2\"\nx,y\n"},
		{"(FORMAT csv, HEADER)", two, "a,\"b\nxx"},
		{"(FORMAT csv, HEADER match)", two, "a,b\nx,y\n"},
		{"(FORMAT csv, HEADER match)", two, "a,\"b\"\nx,y\n"},
		{"(FORMAT csv, HEADER match)", two, "a,\nx,y\n"},
		{"(FORMAT csv, HEADER match)", two, "a,\"b\nxx"},
		{"(FORMAT csv, HEADER match)", two, "\"a\nb\",c\n"},
		{"(FORMAT csv, HEADER match)", two, "a,b,c\n"},
		{"(FORMAT csv, HEADER match)", []string{"a"}, "a\n1"},
		{"(FORMAT csv)", []string{"a"}, "\\.\n"},
		{"(FORMAT csv)", []string{"a"}, "x\n\"\\.\"\n"},
		{"(FORMAT csv)", []string{"a"}, "x\n\\.\n"},
		// input encoding (client_encoding UTF8)
		{"", two, "x\ty\n\xff\tb\n"},
		{"", two, "x\ty\nb\t\xff"},
		{"", two, "x\ty\nb\t\xe2\x82"},
		{"", two, "x\ty\nb\t\xe2\x82\n"},
		{"", two, "x\ty\nb\t\xe2\x82\xac\n"},
		{"", two, "x\ty\nb\t\xed\xa0\x80\n"},
		{"", two, "x\ty\nb\t\xf4\x90\x80\x80\n"},
		{"", two, "x\ty\nb\tc\x00d\n"},
		{"", two, "x\ty\r\xff\n"},
		{"", two, "x\ty\\\xff\n"},
		{"", two, "x\ty\n\\.\n\xff\xfe"},
		{"", two, "x\ty\\.\n\x00"},
		{"(FORMAT csv)", two, "x,y\n\"a\xff\",b\n"},
		{"(FORMAT csv)", two, "x,\"y\n\nz\r\xff\",b\n"},
		{"(FORMAT csv)", two, "x,\"y\n\nz\\\xff\",b\n"},
		{"(FORMAT csv)", two, "x,\"y\n\nz\\\xff\xff\xff\xff\",b\n"},
		{"(FORMAT csv)", two, "x,y\r\xc3"},
		{"(FORMAT csv)", two, "x,y\n\\.\n\xc3"},
		{"(FORMAT csv)", two, "x,y\n\\\xc3"},
		{"(FORMAT csv)", two, "x,y\n\\\xc3\xa9,b\n"},
	}
	for _, c := range cases {
		differential(t, conn, rng, c.opts, c.cols, []byte(c.data))
	}
	t.Logf("%d inputs compared with PostgreSQL", len(cases))
}

// TestRandomAgainstPostgres compares random short inputs, built from the bytes that matter
// to COPY, with PostgreSQL under several option sets.
func TestRandomAgainstPostgres(t *testing.T) {
	conn := pg(t)
	rng := rand.New(rand.NewPCG(11, 13))
	pieces := []string{"a", "b", "x", "N", "\t", ",", ";", "|", "\"", "'", "\\", ".", "\n", "\n", "\r", "\r\n",
		"\\N", "\\.", "NULL", "n/a", "é", " ", "0", "7", "f", "\\x4", "\n\\.\n", "\xff", "\xe2\x82", "\x00"}
	optionSets := []struct {
		opts string
		cols []string
	}{
		{"", []string{"c1", "c2"}},
		{"(DELIMITER '|', NULL 'NULL')", []string{"c1", "c2", "c3"}},
		{"(HEADER match)", []string{"a", "b"}},
		{"(FORMAT csv)", []string{"c1", "c2"}},
		{"(FORMAT csv, HEADER true, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'n/a')", []string{"c1", "c2"}},
		{"(FORMAT csv, FORCE_NOT_NULL (c1), FORCE_NULL (c2, c3))", []string{"c1", "c2", "c3"}},
		{"(FORMAT csv, ESCAPE '\\')", []string{"c1", "c2"}},
		{"(FORMAT csv, QUOTE '\\', ESCAPE '\"')", []string{"c1", "c2"}},
		{"(FORMAT csv, HEADER match, NULL 'a')", []string{"a", "b"}},
	}
	n := 400
	if testing.Short() {
		n = 50
	}
	for _, os := range optionSets {
		for i := 0; i < n; i++ {
			var b strings.Builder
			for k := rng.IntN(24); k > 0; k-- {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			differential(t, conn, rng, os.opts, os.cols, []byte(b.String()))
			if t.Failed() {
				return
			}
		}
	}
	t.Logf("%d random inputs compared with PostgreSQL", n*len(optionSets))
}

// TestOptionsAgainstPostgres: option lists PostgreSQL accepts are accepted; those it rejects
// are rejected with its message and SQLSTATE.
func TestOptionsAgainstPostgres(t *testing.T) {
	conn := pg(t)
	exec(t, conn, "DROP TABLE IF EXISTS opt; CREATE TABLE opt (a text, b text, c text)")
	withs := []string{
		"",
		"(FORMAT text)", "(FORMAT csv)", "(FORMAT 'CSV')", "(FORMAT foo)", "(FORMAT)",
		"(FORMAT csv, FORMAT text)",
		"(DELIMITER '|')", "(DELIMITER '||')", "(DELIMITER '')", "(DELIMITER E'\\n')", "(DELIMITER E'\\r')",
		"(DELIMITER '\\')", "(DELIMITER '.')", "(DELIMITER 'a')", "(DELIMITER 'A')", "(DELIMITER '5')",
		"(DELIMITER 'é')", "(DELIMITER)", "(DELIMITER 1)", "(DELIMITER ',', DELIMITER ',')",
		"(FORMAT csv, DELIMITER 'a')", "(FORMAT csv, DELIMITER '\\')", "(FORMAT csv, DELIMITER '\"')",
		"(NULL 'x')", "(NULL E'a\\nb')", "(NULL E'\\r')", "(NULL '')", "(NULL 'a|b', DELIMITER '|')",
		"(NULL 'a\tb')", "(FORMAT csv, NULL 'a,b')", "(FORMAT csv, NULL 'a\"b')", "(FORMAT csv, NULL 'a\"b', QUOTE '''')",
		"(NULL 'x', NULL 'y')",
		"(QUOTE '\"')", "(FORMAT csv, QUOTE '')", "(FORMAT csv, QUOTE 'ab')", "(FORMAT csv, QUOTE ',')",
		"(FORMAT csv, QUOTE '''')", "(FORMAT csv, QUOTE 'é')",
		"(ESCAPE '\\')", "(FORMAT csv, ESCAPE '')", "(FORMAT csv, ESCAPE 'ab')", "(FORMAT csv, ESCAPE '\\')",
		"(FORMAT csv, ESCAPE ',')",
		"(HEADER)", "(HEADER true)", "(HEADER false)", "(HEADER on)", "(HEADER off)", "(HEADER 1)", "(HEADER 0)",
		"(HEADER 2)", "(HEADER 1.5)", "(HEADER match)", "(HEADER MATCH)", "(HEADER 'Match')", "(HEADER maybe)",
		"(HEADER, HEADER)", "(FORMAT csv, HEADER match)",
		"(FORCE_QUOTE (a))", "(FORMAT csv, FORCE_QUOTE (a))", "(FORMAT csv, FORCE_QUOTE *)", "(FORMAT csv, FORCE_QUOTE a)",
		"(FORCE_NOT_NULL (a))", "(FORMAT csv, FORCE_NOT_NULL (a))", "(FORMAT csv, FORCE_NOT_NULL *)",
		"(FORMAT csv, FORCE_NOT_NULL a)", "(FORMAT csv, FORCE_NOT_NULL)", "(FORMAT csv, FORCE_NOT_NULL (zz))",
		"(FORMAT csv, FORCE_NOT_NULL (a, a))", "(FORMAT csv, FORCE_NOT_NULL (c))",
		"(FORMAT csv, FORCE_NOT_NULL (a), FORCE_NOT_NULL (b))",
		"(FORCE_NULL (a))", "(FORMAT csv, FORCE_NULL (a, b))", "(FORMAT csv, FORCE_NULL (c))", "(FORMAT csv, FORCE_NULL (x))",
		"(FORMAT csv, FORCE_NULL *)", "(FORMAT csv, FORCE_NOT_NULL (a), FORCE_NULL (a))",
		"(ENCODING 'UTF8')", "(ENCODING 'utf-8')", "(ENCODING 'SQL_ASCII')", "(ENCODING 'unicode')",
		"(ENCODING 'nonsense')", "(ENCODING 'LATIN1')", "(ENCODING)", "(ENCODING 'UTF8', ENCODING 'UTF8')",
		"(FREEZE)", "(FREEZE true)", "(FREEZE false)", "(FREEZE 'yes')", "(FREEZE, FREEZE)",
		"(FORMAT binary)", "(FORMAT binary, DELIMITER ',')", "(FORMAT binary, NULL '')", "(FORMAT binary, HEADER)",
		"(FORMAT binary, QUOTE '\"')",
		"(DEFAULT 'x')", "(ON_ERROR stop)", "(OIDS)",
		"CSV", "CSV HEADER", "CSV HEADER DELIMITER ';' NULL 'x' QUOTE '''' ESCAPE '\\' FORCE NOT NULL a, b",
		"DELIMITER '|' NULL 'x'", "BINARY", "CSV FORCE QUOTE *", "FREEZE", "CSV QUOTE ','",
	}
	checked := 0
	for _, w := range withs {
		for _, cols := range []string{"", "(a, b)"} {
			sql := "COPY opt " + cols + " FROM STDIN " + w
			if strings.HasPrefix(w, "(") || w == "" {
				sql = "COPY opt " + cols + " FROM STDIN WITH " + w
				if w == "" {
					sql = "COPY opt " + cols + " FROM STDIN"
				}
			}
			_, pe := copyIn(t, conn, sql, nil)
			if pe != nil && (pe.Code == CodeBadCopyFileFormat || pe.Code == "55000") {
				// The options passed; the empty data (HEADER MATCH, binary) or the table
				// (FREEZE) did not.
				pe = nil
			}
			o, err := ParseOptions(optionsFromSQL(t, sql))
			if err == nil {
				copyCols := []string{"a", "b", "c"}
				if cols != "" {
					copyCols = []string{"a", "b"}
				}
				err = o.BindColumns(copyCols, []string{"a", "b", "c"}, "opt")
			}
			checked++
			switch {
			case pe == nil && err == nil:
			case pe == nil:
				// Accepted by PostgreSQL, rejected as unsupported here.
				var oe *OptionError
				if !errors.As(err, &oe) || oe.Code != CodeFeatureNotSupported ||
					!(strings.Contains(w, "binary") || strings.Contains(w, "BINARY") || strings.Contains(w, "LATIN1")) {
					t.Errorf("%s: PostgreSQL accepts it; package: %v", sql, err)
				}
			case err == nil:
				t.Errorf("%s: PostgreSQL: %s %s; package accepts it", sql, pe.Code, pe.Message)
			default:
				var oe *OptionError
				if !errors.As(err, &oe) || oe.Msg != pe.Message || oe.Code != pe.Code {
					t.Errorf("%s: PostgreSQL: %s %q; package: %#v", sql, pe.Code, pe.Message, err)
				}
			}
		}
	}
	t.Logf("%d option lists compared with PostgreSQL", checked)
}
