package sqllex_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/router/pgparse"
	"github.com/pgshard/pgshard/router/sqllex"
)

// modeCorpus are statements whose reading depends on standard_conforming_strings.
var modeCorpus = []string{
	`select 'secret\' from kv where id = 1 --'`,
	`insert into kv3 (id, v, w) values (1, '\', pg_sleep(3)) --', 'other')`,
	`insert into kv values (1, 'a\'b')`,
	`select 'x\\', 'a''b\\', E'e\'s\\', $$d\'q$$, $t$x'\y$t$, 'end\\', '\\'`,
	`select 1 /* ' */ , 'c' /* /* '\' */ */ -- '` + "\n" + `, 2`,
	`select 'part\'` + "\n" + `'two\\', 'a'` + "\n\n  " + `'b\n'`,
	`select 'a\'` + "\n" + `'b\\'` + "\n" + `'c\'` + "\n" + `'d'`,
	`select 'a\' -- x '` + "\n" + `'b\\' -- y` + "\n\n" + `-- z` + "\n" + `'c\'` + "\n" + `'d', 'e' /* */ , 'f'`,
	`select 'n\'', 'q\'), (13, (select v from kv limit 1)) --'`,
	`select '\x41\101\u0041', 'tab\there', N'n\'s', '\\\\'`,
	`select * from kv where v = '\' or 1=1 --'`,
	`select'a\b', x'1f', b'01'` + "\n" + `'1', U&'d\0061t' UESCAPE '\', 'z'`,
}

// parse parses as the router does: comments between the parts of a continued string
// blanked.
func parse(sql string, toks []sqllex.Token, mode sqllex.Mode) (*pg_query.ParseResult, error) {
	if alt, ok := sqllex.BlankContinuationComments(sql, toks); ok {
		sql = alt
	}
	return pgparse.Parse(sql, toks, mode)
}

// strConsts returns the string constants of a parse tree: location -> value.
func strConsts(t *testing.T, tree *pg_query.ParseResult) map[int32]string {
	t.Helper()
	out := map[int32]string{}
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if c, ok := m.Interface().(*pg_query.A_Const); ok {
			if s := c.GetSval(); s != nil {
				out[c.Location] = s.Sval
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	for _, s := range tree.Stmts {
		walk(s.ProtoReflect())
	}
	return out
}

// ScanMode and StringValue read each statement as PostgreSQL's parser does in the same
// setting: the same string constants, at the same places, with the same values.
func TestModeAgreesWithParser(t *testing.T) {
	for _, mode := range []sqllex.Mode{0, sqllex.NonStandard} {
		for _, sql := range modeCorpus {
			toks := sqllex.ScanMode(sql, nil, mode)
			tree, err := parse(sql, toks, mode)
			if err != nil {
				for _, tk := range toks {
					if tk.Kind == sqllex.Bad {
						err = nil
					}
				}
				if err != nil {
					t.Logf("mode %d: %q: %v", mode, sql, err)
				}
				continue
			}
			want := strConsts(t, tree)
			for i, tk := range toks {
				if tk.Kind != sqllex.String {
					continue
				}
				w, ok := want[tk.Start]
				if !ok {
					if i > 0 && (toks[i-1].Kind == sqllex.String || toks[i-1].Kind == sqllex.BitStr) ||
						i > 0 && sqllex.Keyword(sql, toks[i-1], "uescape") {
						continue // a continued string's later part, or an escape character
					}
					t.Errorf("mode %d: %q: token %q is no string constant of the parser's", mode, sql, sql[tk.Start:tk.End])
					continue
				}
				if next := i + 1; next < len(toks) && toks[next].Kind == sqllex.String && strings.ContainsAny(sql[tk.End:toks[next].Start], "\n\r") {
					continue // continued: the constant is the parts together
				}
				got, ok := sqllex.StringValue(sql, tk)
				if ok && got != w {
					t.Errorf("mode %d: %q: StringValue(%q) = %q, parser %q", mode, sql, sql[tk.Start:tk.End], got, w)
				}
				delete(want, tk.Start)
			}
		}
	}
}

// Portable text reads, in either setting, as the literal read in its own.
func TestPortableReadsTheSameInBothModes(t *testing.T) {
	for _, sql := range modeCorpus {
		checkPortable(t, sql)
	}
}

func FuzzPortable(f *testing.F) {
	for _, s := range modeCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if strings.IndexByte(sql, 0) >= 0 || !utf8.ValidString(sql) {
			return
		}
		checkPortable(t, sql)
	})
}

func checkPortable(t *testing.T, sql string) {
	t.Helper()
	for _, mode := range []sqllex.Mode{0, sqllex.NonStandard} {
		{
			toks := sqllex.ScanMode(sql, nil, mode)
			tree, err := parse(sql, toks, mode)
			if err != nil {
				continue
			}
			var b strings.Builder
			pos := 0
			for i, tk := range toks {
				if tk.Kind == sqllex.String {
					b.WriteString(sql[pos:tk.Start])
					b.WriteString(sqllex.Portable(sql, toks, i))
					pos = int(tk.End)
				}
			}
			b.WriteString(sql[pos:])
			port := b.String()
			want := values(strConsts(t, tree))
			for _, other := range []sqllex.Mode{0, sqllex.NonStandard} {
				if other == sqllex.NonStandard && strings.Contains(sql, "U&") {
					continue // U&'...' is an error with standard_conforming_strings off
				}
				ptree, err := parse(port, sqllex.ScanMode(port, nil, other), other)
				if err != nil {
					t.Errorf("mode %d: %q, portable %q does not parse in mode %d: %v", mode, sql, port, other, err)
					continue
				}
				if got := values(strConsts(t, ptree)); got != want {
					t.Errorf("mode %d: %q, portable %q in mode %d: constants %s, want %s", mode, sql, port, other, got, want)
				}
			}
		}
	}
}

// values lists constants in the order of their places.
func values(m map[int32]string) string {
	var locs []int32
	for l := range m {
		locs = append(locs, l)
	}
	for i := range locs {
		for j := i + 1; j < len(locs); j++ {
			if locs[j] < locs[i] {
				locs[i], locs[j] = locs[j], locs[i]
			}
		}
	}
	var out []string
	for _, l := range locs {
		out = append(out, "<"+m[l]+">")
	}
	return strings.Join(out, " ")
}

func TestScanModeTokens(t *testing.T) {
	sql := `select 'a\'b', 'c' from t`
	on := sqllex.ScanMode(sql, nil, 0)
	off := sqllex.ScanMode(sql, nil, sqllex.NonStandard)
	if len(on) == len(off) {
		t.Fatalf("the same tokens in both modes: %v", on)
	}
	if s := sql[off[1].Start:off[1].End]; s != `'a\'b'` || !off[1].Esc {
		t.Errorf("off: token %q (Esc %v), want 'a\\'b' with escapes", s, off[1].Esc)
	}
	if on[1].Esc {
		t.Errorf("on: a plain string takes escapes")
	}
	if v, ok := sqllex.StringValue(sql, off[1]); !ok || v != "a'b" {
		t.Errorf("off: value %q, %v", v, ok)
	}
}

func TestPortableText(t *testing.T) {
	for in, want := range map[string]string{
		`DEFAULT 'c\d'::text`:                   `DEFAULT E'c\\d'::text`,
		`CHECK ((v <> 'x\y'::text))`:            `CHECK ((v <> E'x\\y'::text))`,
		`CHECK ((v <> 'plain'::text))`:          `CHECK ((v <> 'plain'::text))`,
		`(E'a\\b' || 'c''d\' || $$\$$)`:         `(E'a\\b' || E'c''d\\' || $$\$$)`,
		`x = ANY (ARRAY['\'::text, 'b'::text])`: `x = ANY (ARRAY[E'\\'::text, 'b'::text])`,
	} {
		if got := sqllex.PortableText(in); got != want {
			t.Errorf("PortableText(%s) = %s, want %s", in, got, want)
		}
	}
}
