package ddl

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestShardName(t *testing.T) {
	if got, err := ShardName("orders", 10042); err != nil || got != "orders_10042" {
		t.Errorf("ShardName = %q, %v", got, err)
	}
	ok := strings.Repeat("a", 57) // 57 + len("_10042") = 63
	if got, err := ShardName(ok, 10042); err != nil || len(got) != MaxNameLen {
		t.Errorf("63-byte name: %q, %v", got, err)
	}
	long := strings.Repeat("b", 58)
	_, err := ShardName(long, 10042)
	var tooLong *NameTooLongError
	if !errors.As(err, &tooLong) || tooLong.Name != long || err.Error() != `shard name too long to extend: "`+long+`"` {
		t.Errorf("64-byte name: %v", err)
	}
	// Bytes count, not characters.
	if _, err := ShardName(strings.Repeat("é", 29), 10042); err == nil {
		t.Error("58-byte multibyte name accepted")
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"orders_10042":  "orders_10042",
		"_x1":           "_x1",
		"Orders_10042":  `"Orders_10042"`,
		`odd "name"_1`:  `"odd ""name""_1"`,
		"1abc":          `"1abc"`,
		"my table_1":    `"my table_1"`,
		"a.b_1":         `"a.b_1"`,
		"é_1":           `"é_1"`,
		"":              `""`,
		"order_10042":   "order_10042", // a keyword with a suffix is not a keyword
		"select_10042":  "select_10042",
		"dollar$_10042": `"dollar$_10042"`,
	} {
		if got := quoteIdent(in); got != want {
			t.Errorf("quoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestScanIdent(t *testing.T) {
	for _, c := range []struct{ in, ident, rest string }{
		{"abc ON x", "abc", " ON x"},
		{"abc.def", "abc", ".def"},
		{`"a b"."c"`, `"a b"`, `."c"`},
		{`"a "" ON b.c" USING`, `"a "" ON b.c"`, " USING"},
		{`"""" x`, `""""`, " x"},
		{`"x"""`, `"x"""`, ""},
		{"ab_1$x rest", "ab_1$x", " rest"},
	} {
		ident, rest, err := scanIdent(c.in)
		if err != nil || ident != c.ident || rest != c.rest {
			t.Errorf("scanIdent(%q) = %q, %q, %v; want %q, %q", c.in, ident, rest, err, c.ident, c.rest)
		}
	}
	for _, in := range []string{"", `"unterminated`, `"x"" y`, `""`, " x", ".x"} {
		if ident, _, err := scanIdent(in); err == nil {
			t.Errorf("scanIdent(%q) = %q, want an error", in, ident)
		}
	}
}

func TestParseIndexDef(t *testing.T) {
	const table = `"My Schema"."odd ""name"" ON x"`
	for _, c := range []struct {
		def, index   string
		unique, only bool
		body         string
	}{
		{`CREATE INDEX ix ON public.t USING btree (a)`, "ix", false, false, " USING btree (a)"},
		{`CREATE UNIQUE INDEX "x"" ON y USING z" ON ` + table + ` USING btree (lower(b)) WHERE (a > 1)`,
			`"x"" ON y USING z"`, true, false, " USING btree (lower(b)) WHERE (a > 1)"},
		{`CREATE INDEX "a.b" ON ONLY ` + table + ` USING gin (tags)`, `"a.b"`, false, true, " USING gin (tags)"},
	} {
		qt := table
		if strings.Contains(c.def, "public.t") {
			qt = "public.t"
		}
		unique, only, body, err := parseIndexDef(c.def, c.index, qt)
		if err != nil || unique != c.unique || only != c.only || body != c.body {
			t.Errorf("parseIndexDef(%q) = %v, %v, %q, %v", c.def, unique, only, body, err)
		}
	}
	for _, c := range []struct{ def, index, table string }{
		{`CREATE INDEX ix ON public.t USING btree (a)`, "iy", "public.t"}, // other index
		{`CREATE INDEX ix ON public.t USING btree (a)`, "ix", "public.u"}, // other table
		{`CREATE INDEX ix ON t USING btree (a)`, "ix", "t"},               // unqualified
		{`CREATE INDEX ix ON public.t (a)`, "ix", "public.t"},             // no USING
		{`CREATE INDEX CONCURRENTLY ix ON public.t USING btree (a)`, "ix", "public.t"},
		{`ALTER INDEX ix ON public.t USING btree (a)`, "ix", "public.t"},
		{`CREATE INDEX "ix ON public.t USING btree (a)`, `"ix`, "public.t"}, // unterminated
	} {
		if _, _, _, err := parseIndexDef(c.def, c.index, c.table); err == nil {
			t.Errorf("parseIndexDef(%q, %q, %q) accepted", c.def, c.index, c.table)
		}
	}
}

func TestAddIndexOptions(t *testing.T) {
	for _, c := range []struct {
		def                  string
		deferrable, deferred bool
		want                 string
	}{
		{"PRIMARY KEY (a)", false, false, "PRIMARY KEY (a) WITH (fillfactor='70')"},
		{`UNIQUE NULLS NOT DISTINCT (a, "b c") INCLUDE (d)`, false, false,
			`UNIQUE NULLS NOT DISTINCT (a, "b c") INCLUDE (d) WITH (fillfactor='70')`},
		{"PRIMARY KEY (a) DEFERRABLE", true, false, "PRIMARY KEY (a) WITH (fillfactor='70') DEFERRABLE"},
		{"UNIQUE (a) DEFERRABLE INITIALLY DEFERRED", true, true,
			"UNIQUE (a) WITH (fillfactor='70') DEFERRABLE INITIALLY DEFERRED"},
	} {
		got, err := addIndexOptions(c.def, "fillfactor='70'", c.deferrable, c.deferred)
		if err != nil || got != c.want {
			t.Errorf("addIndexOptions(%q) = %q, %v; want %q", c.def, got, err, c.want)
		}
	}
	if _, err := addIndexOptions("UNIQUE (a)", "fillfactor='70'", true, false); err == nil {
		t.Error("missing DEFERRABLE accepted")
	}
}

func TestCreateCommandsRendering(t *testing.T) {
	ten := 10
	tbl := &Table{
		Schema: "public", Name: "Events", QuotedSchema: "public", QuotedName: `"Events"`,
		AccessMethod:    "heap2",
		Options:         []string{"fillfactor='90'"},
		ReplicaIdentity: 'n',
		Columns: []Column{
			{Name: "id", QuotedName: "id", TypeName: "bigint", NotNull: true, Identity: 'a'},
			{Name: "at", QuotedName: "at", TypeName: "timestamp with time zone", HasDefault: true, DefaultExpr: "now()"},
			{Name: "kind", QuotedName: "kind", TypeName: "text", Collation: `pg_catalog."C"`, HasDefault: true,
				DefaultExpr: "'x'::text", DefaultOnShard: true, NotNull: true, Storage: 'm'},
			{Name: "n2", QuotedName: "n2", TypeName: "integer", Generated: 's', GeneratedExpr: "(id * 2)",
				Statistics: &ten, Compression: 'l'},
		},
		Checks: []Check{
			{Name: "c1", QuotedName: "c1", Def: "CHECK ((id > 0))", Validated: true},
			{Name: "c 2", QuotedName: `"c 2"`, Def: "CHECK ((n2 > 0)) NOT VALID"},
		},
		Constraints: []Constraint{{Type: 'p', Name: "Events_pkey", QuotedName: `"Events_pkey"`, Def: "PRIMARY KEY (id)"}},
		Indexes:     []Index{{Name: "ix", QuotedName: "ix", Only: true, Unique: true, Body: " USING btree (kind)", Clustered: true}},
	}
	got, err := tbl.CreateCommands(10042)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`CREATE TABLE public."Events_10042" (id bigint NOT NULL, at timestamp with time zone, kind text COLLATE pg_catalog."C" DEFAULT 'x'::text NOT NULL, n2 integer GENERATED ALWAYS AS ((id * 2)) STORED, CONSTRAINT c1 CHECK ((id > 0))) USING heap2 WITH (fillfactor='90')`,
		`ALTER TABLE ONLY public."Events_10042" ADD CONSTRAINT "c 2" CHECK ((n2 > 0)) NOT VALID`,
		`ALTER TABLE ONLY public."Events_10042" ALTER COLUMN kind SET STORAGE MAIN, ALTER COLUMN n2 SET STATISTICS 10, ALTER COLUMN n2 SET COMPRESSION lz4`,
		`ALTER TABLE ONLY public."Events_10042" ADD CONSTRAINT "Events_pkey_10042" PRIMARY KEY (id)`,
		`CREATE UNIQUE INDEX ix_10042 ON ONLY public."Events_10042" USING btree (kind)`,
		`ALTER TABLE public."Events_10042" CLUSTER ON ix_10042`,
		`ALTER TABLE ONLY public."Events_10042" REPLICA IDENTITY NOTHING`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CreateCommands\n got %q\nwant %q", got, want)
	}
	if d, err := tbl.DropCommand(10042); err != nil || d != `DROP TABLE IF EXISTS public."Events_10042"` {
		t.Errorf("DropCommand = %q, %v", d, err)
	}
}
