package copyfmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/tests/cluster"
)

// The tests in this file use PostgreSQL itself as the oracle: a throwaway PostgreSQL 15
// server (package cluster), started once for the package by the first test that needs it.

var server struct {
	once sync.Once
	c    *cluster.Cluster
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server.c != nil {
		server.c.Close()
	}
	os.Exit(code)
}

// pg returns a new connection to the shared server, skipping the test without one.
func pg(t testing.TB) *pgconn.PgConn {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	if !cluster.Available() {
		t.Skip("PostgreSQL server binaries not installed")
	}
	server.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server.c, server.err = cluster.Start(ctx, cluster.Options{Workers: 0})
	})
	if server.err != nil {
		t.Fatal(server.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, server.c.Coordinator.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	var version int
	res, err := conn.Exec(ctx, "SELECT current_setting('server_version_num')").ReadAll()
	if err == nil {
		version, _ = strconv.Atoi(string(res[0].Rows[0][0]))
	}
	if version/10000 != 15 {
		t.Logf("server version %d: the package follows PostgreSQL 15", version)
	}
	return conn
}

func exec(t testing.TB, conn *pgconn.PgConn, sql string) []*pgconn.Result {
	t.Helper()
	res, err := conn.Exec(context.Background(), sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res
}

func copyOut(t testing.TB, conn *pgconn.PgConn, sql string) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := conn.CopyTo(context.Background(), &b, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return b.Bytes()
}

// copyIn runs COPY ... FROM STDIN with data and returns PostgreSQL's error, if any.
func copyIn(t testing.TB, conn *pgconn.PgConn, sql string, data []byte) (int64, *pgconn.PgError) {
	t.Helper()
	tag, err := conn.CopyFrom(context.Background(), bytes.NewReader(data), sql)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return 0, pe
		}
		t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected(), nil
}

// optionsFromSQL converts the option list of a COPY statement, parsed by PostgreSQL's own
// grammar (pg_query), to []Option, the way the proxy does.
func optionsFromSQL(t testing.TB, sql string) []Option {
	t.Helper()
	tree, err := pg_query.Parse(sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	stmt := tree.Stmts[0].Stmt.GetCopyStmt()
	var opts []Option
	for _, n := range stmt.Options {
		d := n.GetDefElem()
		opt := Option{Name: d.Defname}
		switch a := d.Arg; {
		case a == nil:
		case a.GetString_() != nil:
			opt.Kind, opt.Value = ArgString, a.GetString_().Sval
		case a.GetBoolean() != nil:
			opt.Kind, opt.Value = ArgString, strconv.FormatBool(a.GetBoolean().Boolval)
		case a.GetInteger() != nil:
			opt.Kind, opt.Value = ArgNumber, strconv.Itoa(int(a.GetInteger().Ival))
		case a.GetFloat() != nil:
			opt.Kind, opt.Value = ArgNumber, a.GetFloat().Fval
		case a.GetAStar() != nil:
			opt.Kind = ArgStar
		case a.GetList() != nil:
			opt.Kind = ArgList
			for _, item := range a.GetList().Items {
				opt.List = append(opt.List, item.GetString_().Sval)
			}
		default:
			t.Fatalf("%s: option %s: unexpected argument %v", sql, d.Defname, a)
		}
		opts = append(opts, opt)
	}
	return opts
}

var lineRE = regexp.MustCompile(`line (\d+)`)

// pgLine is the line number of PostgreSQL's "COPY t, line N" context.
func pgLine(pe *pgconn.PgError) int64 {
	m := lineRE.FindStringSubmatch(pe.Where)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// randomChunks cuts data into pieces of random sizes: mostly tiny (to split escapes, quotes
// and \r\n), sometimes up to 64 KiB.
func randomChunks(rng *rand.Rand, data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		var n int
		switch rng.IntN(4) {
		case 0:
			n = 1
		case 1:
			n = 1 + rng.IntN(16)
		case 2:
			n = 1 + rng.IntN(512)
		default:
			n = 1 + rng.IntN(64<<10)
		}
		n = min(n, len(data))
		out = append(out, data[:n])
		data = data[n:]
	}
	return out
}

// parsed is what the package makes of a COPY input.
type parsed struct {
	header []byte
	rows   [][]byte  // raw rows, copied
	values [][]Value // decoded fields, copied
	lines  []int64
	err    error
	ended  bool
}

// parse runs a COPY input through a Splitter in the given chunks, checking each row against
// cols and decoding its fields.
func parse(o *Options, chunks [][]byte, cols []string) parsed {
	var p parsed
	s := NewSplitter(o)
	if cols != nil {
		s.SetColumns(cols)
	}
	take := func(next func() ([]byte, bool, error)) bool {
		for {
			row, ok, err := next()
			if err != nil {
				p.err = err
				return false
			}
			if !ok {
				return true
			}
			vals, err := o.Fields(row, nil)
			if err != nil {
				var de *DataError
				if errors.As(err, &de) {
					de.Line = s.Line()
				}
				p.err = err
				return false
			}
			for i := range vals {
				vals[i].Data = bytes.Clone(vals[i].Data)
			}
			p.rows = append(p.rows, bytes.Clone(row))
			p.values = append(p.values, vals)
			p.lines = append(p.lines, s.Line())
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
	if h, ok := s.HeaderLine(); ok {
		p.header = bytes.Clone(h)
	}
	p.ended = s.Ended()
	return p
}

// loadMirror loads data with COPY into a fresh table of text columns cols (plus an ordering
// column) and returns the rows PostgreSQL stored, or its error.
func loadMirror(t testing.TB, conn *pgconn.PgConn, cols []string, opts string, data []byte) ([][]*string, *pgconn.PgError) {
	t.Helper()
	var defs, list []string
	for _, c := range cols {
		defs = append(defs, quoteIdent(c)+" text")
		list = append(list, quoteIdent(c))
	}
	exec(t, conn, "DROP TABLE IF EXISTS mirror; CREATE TABLE mirror ("+strings.Join(append(defs, "_ord bigserial"), ", ")+")")
	sql := "COPY mirror (" + strings.Join(list, ", ") + ") FROM STDIN " + opts
	if _, pe := copyIn(t, conn, sql, data); pe != nil {
		return nil, pe
	}
	res := exec(t, conn, "SELECT "+strings.Join(list, ", ")+" FROM mirror ORDER BY _ord")
	var rows [][]*string
	for _, r := range res[0].Rows {
		row := make([]*string, len(r))
		for i, f := range r {
			if f != nil {
				s := string(f)
				row[i] = &s
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func showValue(v *string) string {
	if v == nil {
		return "NULL"
	}
	return strconv.Quote(*v)
}

func showValues(vals []Value) string {
	var parts []string
	for _, v := range vals {
		if v.Null {
			parts = append(parts, "NULL")
		} else {
			parts = append(parts, strconv.Quote(string(v.Data)))
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func showRow(row []*string) string {
	var parts []string
	for _, v := range row {
		parts = append(parts, showValue(v))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// sameOutcome compares the package's reading of an input with PostgreSQL's: the same rows
// with the same values, or the same error (SQLSTATE, message, line).
func sameOutcome(got parsed, want [][]*string, pe *pgconn.PgError) error {
	if pe != nil {
		var de *DataError
		if !errors.As(got.err, &de) {
			return fmt.Errorf("PostgreSQL: %s %s (line %d); package: rows %d, err %v", pe.Code, pe.Message, pgLine(pe), len(got.rows), got.err)
		}
		if de.Msg != pe.Message || de.Line != pgLine(pe) || (de.Code != "" && de.Code != pe.Code) {
			return fmt.Errorf("PostgreSQL: %s %q (line %d); package: %s %q (line %d)", pe.Code, pe.Message, pgLine(pe), de.Code, de.Msg, de.Line)
		}
		return nil
	}
	if got.err != nil {
		return fmt.Errorf("PostgreSQL loads %d rows; package: %v", len(want), got.err)
	}
	if len(got.values) != len(want) {
		return fmt.Errorf("PostgreSQL loads %d rows, package reads %d", len(want), len(got.values))
	}
	for i, w := range want {
		g := got.values[i]
		same := len(g) == len(w)
		for j := 0; same && j < len(w); j++ {
			same = g[j].Null == (w[j] == nil) && (w[j] == nil || string(g[j].Data) == *w[j])
		}
		if !same {
			return fmt.Errorf("row %d: PostgreSQL %s, package %s", i+1, showRow(w), showValues(g))
		}
	}
	return nil
}

// differential checks one input against PostgreSQL: COPY mirror (cols) FROM STDIN opts.
func differential(t *testing.T, conn *pgconn.PgConn, rng *rand.Rand, opts string, cols []string, data []byte) {
	t.Helper()
	var list []string
	for _, c := range cols {
		list = append(list, quoteIdent(c))
	}
	sql := "COPY mirror (" + strings.Join(list, ", ") + ") FROM STDIN " + opts
	o, err := ParseOptions(optionsFromSQL(t, sql))
	if err == nil {
		o.ClientEncoding = "UTF8" // pgconn's
		err = o.BindColumns(cols, cols, "mirror")
	}
	if err != nil {
		t.Fatalf("%s: %v", opts, err)
	}
	want, pe := loadMirror(t, conn, cols, opts, data)
	for _, chunks := range [][][]byte{{data}, randomChunks(rng, data), bytesChunks(data)} {
		got := parse(o, chunks, cols)
		if err := sameOutcome(got, want, pe); err != nil {
			t.Errorf("%s %q: %v", opts, data, err)
			return
		}
	}
}

// bytesChunks is data one byte at a time.
func bytesChunks(data []byte) [][]byte {
	out := make([][]byte, len(data))
	for i := range data {
		out[i] = data[i : i+1]
	}
	return out
}
