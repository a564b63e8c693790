package sqllex

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

var corpus = []string{
	`SELECT abalance FROM pgbench_accounts WHERE aid = 12345;`,
	`select * from customer_reviews where customer_id = 'A123' and x<>-1 and y=-2.5e-3`,
	`INSERT INTO t (a, "B c", "d""e") VALUES (1, E'it\'s', $$dollar 'q'$$), (-2, $tag$x$y$tag$, 'u'), (3, B'0101', X'ff')`,
	`update t set v = v*2 where k in (1,2,3) returning *`,
	`select a::int8, b[1:2], c.d, .5, 1.e3, 1..2 from "Schema"."Tab" /* c /* nested */ */ -- line`,
	`select $1, $23, @- 3, a !~~* b, a<=b, a>=b, a!=b, a||b, 'a' 'b'`,
	`select 1 -- trailing comment`,
	`SELECT x FROM t WHERE y = N'nat' AND z ~ 'a+b' AND w::text = "d""q"`,
	`select 'unterminated`,
	`select ä, "ö", a$b, _x from t`,
	`CREATE TABLE x (a int DEFAULT 0, b text);`,
	`select a=>b, c:=d, e::f, g:h`,
	`select *-1, +-1, a-- comment
	from t`,
}

func TestScanMatchesPostgreSQL(t *testing.T) {
	for _, sql := range corpus {
		got := Scan(sql, nil)
		res, err := pg_query.Scan(sql)
		if err != nil {
			// Unterminated input: the PostgreSQL scanner errors; ours must mark it Bad.
			if len(got) == 0 || got[len(got)-1].Kind != Bad {
				t.Errorf("%q: PostgreSQL scanner fails (%v) but no Bad token: %v", sql, err, got)
			}
			continue
		}
		var want [][2]int32
		for _, tok := range res.Tokens {
			if tok.Token == pg_query.Token_SQL_COMMENT || tok.Token == pg_query.Token_C_COMMENT {
				continue
			}
			want = append(want, [2]int32{tok.Start, tok.End})
		}
		if len(got) != len(want) {
			t.Errorf("%q: %d tokens, PostgreSQL %d\n got %v\nwant %v", sql, len(got), len(want), got, want)
			continue
		}
		for i := range got {
			if got[i].Start != want[i][0] || got[i].End != want[i][1] {
				t.Errorf("%q: token %d = %q, PostgreSQL %q", sql, i, sql[got[i].Start:got[i].End], sql[want[i][0]:want[i][1]])
			}
		}
	}
}

func TestUnicodeForms(t *testing.T) {
	// libpg_query's token table misreports U& tokens, so these are checked by hand.
	sql := `select U&'\0041', U&"d\0061t" from t`
	toks := Scan(sql, nil)
	want := []string{`select`, `U&'\0041'`, `,`, `U&"d\0061t"`, `from`, `t`}
	if len(toks) != len(want) {
		t.Fatalf("got %v", toks)
	}
	for i, w := range want {
		if got := sql[toks[i].Start:toks[i].End]; got != w {
			t.Errorf("token %d = %q, want %q", i, got, w)
		}
	}
}

func TestValues(t *testing.T) {
	sql := `select E'a\'b\n', 'x''y', $q$z$q$, "Mixed""Q", MiXeD`
	toks := Scan(sql, nil)
	cases := []struct {
		i    int
		want string
	}{{1, "a'b\n"}, {3, "x'y"}, {5, "z"}}
	for _, c := range cases {
		if v, ok := StringValue(sql, toks[c.i]); !ok || v != c.want {
			t.Errorf("StringValue(%q) = %q, %v; want %q", sql[toks[c.i].Start:toks[c.i].End], v, ok, c.want)
		}
	}
	if got := IdentName(sql, toks[7]); got != `Mixed"Q` {
		t.Errorf("IdentName = %q", got)
	}
	if got := IdentName(sql, toks[9]); got != "mixed" {
		t.Errorf("IdentName = %q", got)
	}
	if !Keyword(sql, toks[0], "select") {
		t.Error("Keyword(select) = false")
	}
}

func FuzzScan(f *testing.F) {
	for _, s := range corpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		for _, mode := range []Mode{0, NonStandard} {
			toks := ScanMode(sql, nil, mode)
			prev := int32(0)
			for i, tk := range toks {
				if tk.Start < prev || tk.End <= tk.Start || int(tk.End) > len(sql) {
					t.Fatalf("bad token %v in %q", tk, sql)
				}
				prev = tk.End
				if tk.Kind == String {
					// A portable string is the token, maybe with an E before it and
					// its backslashes doubled: never shorter, never another kind.
					if p := Portable(sql, toks, i); len(p) < int(tk.End-tk.Start) {
						t.Fatalf("Portable(%q) = %q", sql[tk.Start:tk.End], p)
					}
				}
			}
		}
	})
}

func BenchmarkScan(b *testing.B) {
	sql := `SELECT abalance FROM pgbench_accounts WHERE aid = 12345;`
	buf := make([]Token, 0, 64)
	for i := 0; i < b.N; i++ {
		buf = Scan(sql, buf[:0])
	}
}
