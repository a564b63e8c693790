package qualify

import "testing"

func TestExpr(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nextval('public.s'::regclass)", "pg_catalog.nextval('public.s'::pg_catalog.regclass)"},
		{"now()", "pg_catalog.now()"},
		{"('x'::text || lower(v))", "'x'::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.lower(v)"},
		{"public.f(1) + 2", "public.f(1) OPERATOR(pg_catalog.+) 2"},
		{"CURRENT_TIMESTAMP", "current_timestamp"},
		{"(a = ANY (ARRAY[1, 2]))", "a OPERATOR(pg_catalog.=) ANY(ARRAY[1, 2])"},
		{"0", "0"},
	} {
		got, err := Expr(c.in)
		if err != nil || got != c.want {
			t.Errorf("Expr(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"text", "pg_catalog.text"},
		{"integer", "int"},
		{"character varying(10)", "varchar(10)"},
		{"public.mydomain", "public.mydomain"},
		{`"char"`, "pg_catalog.char"},
		{"timestamp with time zone", "timestamp with time zone"},
		{"bigint[]", "bigint[]"},
	} {
		got, err := TypeName(c.in)
		if err != nil || got != c.want {
			t.Errorf("TypeName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
