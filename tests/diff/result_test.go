package diff

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// mode is a way of running a query: each runs on both sides and must agree.
type mode struct {
	name string
	m    pgx.QueryExecMode
}

var modes = []mode{
	{"simple", pgx.QueryExecModeSimpleProtocol}, // Query message; arguments interpolated by pgx
	{"exec", pgx.QueryExecModeExec},             // unnamed Parse/Bind/Describe/Execute, text results
	{"cache", pgx.QueryExecModeCacheStatement},  // named prepared statement, binary results where pgx can
}

// side is one connection: the oracle database or the proxy.
type side struct {
	name string
	url  string
	conn *pgx.Conn
	busy time.Duration // time spent running queries
}

type field struct {
	name   string
	oid    uint32
	size   int16
	typmod int32
	format int16
}

type result struct {
	err    error
	fields []field
	rows   []string // encoded rows (see encodeRow): equal rows, equal strings
	tag    string
}

// encodeRow packs a row's raw values into one string: per value a 4-byte big-endian length
// (0xffffffff for NULL) and the bytes.
func encodeRow(b []byte, raw [][]byte) []byte {
	for _, v := range raw {
		if v == nil {
			b = append(b, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		n := len(v)
		b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		b = append(b, v...)
	}
	return b
}

func decodeRow(s string) [][]byte {
	var out [][]byte
	for len(s) >= 4 {
		n := uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
		s = s[4:]
		if n == 0xffffffff {
			out = append(out, nil)
			continue
		}
		out = append(out, []byte(s[:n]))
		s = s[n:]
	}
	return out
}

// run executes sql with args (nil: no parameters; "NULL": a NULL argument).
func (s *side) run(ctx context.Context, m mode, sql string, args []string) *result {
	if s.conn == nil || s.conn.IsClosed() {
		c, err := pgx.Connect(ctx, s.url)
		if err != nil {
			return &result{err: fmt.Errorf("connect to %s: %w", s.name, err)}
		}
		s.conn = c
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { s.busy += time.Since(start) }()
	qargs := []any{m.m}
	for _, a := range args {
		if a == "NULL" {
			qargs = append(qargs, nil)
		} else {
			qargs = append(qargs, a)
		}
	}
	rows, err := s.conn.Query(ctx, sql, qargs...)
	if err != nil {
		return &result{err: err}
	}
	defer rows.Close()
	res := &result{}
	for _, fd := range rows.FieldDescriptions() {
		res.fields = append(res.fields, field{fd.Name, fd.DataTypeOID, fd.DataTypeSize, fd.TypeModifier, fd.Format})
	}
	var buf []byte
	for rows.Next() {
		buf = encodeRow(buf[:0], rows.RawValues())
		res.rows = append(res.rows, string(buf))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return &result{err: err}
	}
	res.tag = rows.CommandTag().String()
	return res
}

// session applies "name = value" settings (reset: undoes them).
func (s *side) session(ctx context.Context, settings []string, reset bool) error {
	for _, kv := range settings {
		name, _, _ := strings.Cut(kv, "=")
		sql := "SET " + kv
		if reset {
			sql = "RESET " + strings.TrimSpace(name)
		}
		if r := s.run(ctx, modes[0], sql, nil); r.err != nil {
			return fmt.Errorf("%s: %s: %w", s.name, sql, r.err)
		}
	}
	return nil
}

func (s *side) close() {
	if s.conn != nil {
		s.conn.Close(context.Background())
	}
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

var typeMap = pgtype.NewMap()

func typeName(oid uint32) string {
	if t, ok := typeMap.TypeForOID(oid); ok {
		return t.Name
	}
	return fmt.Sprintf("oid%d", oid)
}

func (f field) String() string {
	s := fmt.Sprintf("%s %s", f.name, typeName(f.oid))
	if f.typmod != -1 {
		s += fmt.Sprintf("(typmod %d)", f.typmod)
	}
	if f.format == 1 {
		s += " bin"
	}
	return s
}

func fieldsString(fs []field) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, f.String())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// display renders a value for a failure message: text as a literal, binary decoded.
func display(f field, v []byte) string {
	if v == nil {
		return "NULL"
	}
	if f.format == 0 {
		return quote(string(v))
	}
	if t, ok := typeMap.TypeForOID(f.oid); ok {
		if dv, err := t.Codec.DecodeDatabaseSQLValue(typeMap, f.oid, 1, v); err == nil {
			return fmt.Sprintf("%v", dv)
		}
	}
	return fmt.Sprintf("\\x%x", v)
}

func rowString(fs []field, enc string) string {
	var parts []string
	for i, v := range decodeRow(enc) {
		f := field{format: 0}
		if i < len(fs) {
			f = fs[i]
		}
		parts = append(parts, display(f, v))
	}
	s := "(" + strings.Join(parts, ", ") + ")"
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

var shardName = regexp.MustCompile(`_1\d{4,}\b`)

// normalize makes an error message comparable across configs for the summary.
func normalize(msg string) string {
	for _, c := range configs {
		msg = strings.ReplaceAll(msg, c.table, "{t}")
	}
	msg = shardName.ReplaceAllString(msg, "_<shard>")
	if len(msg) > 120 {
		msg = msg[:120] + "…"
	}
	return msg
}

func errString(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code + " " + pe.Message
	}
	return err.Error()
}

// compare returns "" when the proxy's result p is what the oracle's o is; otherwise a short
// cause (used to group failures) and a readable detail.
func compare(o, p *result, ordered bool) (cause, detail string) {
	return compareAs(o, p, ordered, "proxy")
}

// compareAs is compare with the second side called name in the detail.
func compareAs(o, p *result, ordered bool, name string) (cause, detail string) {
	switch {
	case o.err != nil && p.err == nil:
		return "succeeded where the oracle fails " + sqlstate(o.err),
			fmt.Sprintf("oracle error %s, %s succeeded with %d rows", errString(o.err), name, len(p.rows))
	case o.err != nil:
		if sqlstate(o.err) != sqlstate(p.err) {
			return fmt.Sprintf("wrong SQLSTATE %s (want %s)", sqlstate(p.err), sqlstate(o.err)),
				fmt.Sprintf("oracle error %s, %s error %s", errString(o.err), name, errString(p.err))
		}
		return "", ""
	case p.err != nil:
		if code := sqlstate(p.err); code != "" {
			return "proxy error " + code + ": " + normalize(p.err.(*pgconn.PgError).Message),
				fmt.Sprintf("%s error %s (oracle: %d rows)", name, errString(p.err), len(o.rows))
		}
		return "client error: " + normalize(p.err.Error()), fmt.Sprintf("%s: client error %v (oracle: %d rows)", name, p.err, len(o.rows))
	}
	if !slices.Equal(o.fields, p.fields) {
		return "columns differ", fmt.Sprintf("columns differ:\n      oracle %s\n      %-6s %s", fieldsString(o.fields), name, fieldsString(p.fields))
	}
	if len(o.rows) != len(p.rows) {
		return "row count differs", fmt.Sprintf("oracle %d rows, %s %d rows%s", len(o.rows), name, len(p.rows), multisetDiff(o, p, name))
	}
	if ordered {
		for i := range o.rows {
			if o.rows[i] != p.rows[i] {
				if multisetDiff(o, p, name) == "" {
					return "order differs", fmt.Sprintf("same rows, order differs at row %d:\n      oracle %s\n      %-6s %s",
						i+1, rowString(o.fields, o.rows[i]), name, rowString(p.fields, p.rows[i]))
				}
				return "values differ", fmt.Sprintf("row %d differs:\n      oracle %s\n      %-6s %s",
					i+1, rowString(o.fields, o.rows[i]), name, rowString(p.fields, p.rows[i]))
			}
		}
	} else if d := multisetDiff(o, p, name); d != "" {
		return "values differ", "rows differ (unordered)" + d
	}
	if o.tag != p.tag {
		return "command tag differs", fmt.Sprintf("command tag: oracle %q, %s %q", o.tag, name, p.tag)
	}
	return "", ""
}

// multisetDiff describes the first row each side has more often than the other ("" when the
// multisets are equal).
func multisetDiff(o, p *result, name string) string {
	count := map[string]int{}
	for _, r := range o.rows {
		count[r]++
	}
	for _, r := range p.rows {
		count[r]--
	}
	var b strings.Builder
	missing, extra := 0, 0
	for _, r := range o.rows {
		if count[r] > 0 {
			if missing == 0 {
				fmt.Fprintf(&b, "\n      missing from %s: %s", name, rowString(o.fields, r))
			}
			missing++
		}
	}
	for _, r := range p.rows {
		if count[r] < 0 {
			if extra == 0 {
				fmt.Fprintf(&b, "\n      extra in %s:     %s", name, rowString(p.fields, r))
			}
			extra++
		}
	}
	if missing+extra > 0 {
		fmt.Fprintf(&b, "\n      (%d oracle rows not matched, %d %s rows not matched)", missing, extra, name)
	}
	return b.String()
}
