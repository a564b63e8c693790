package tests

// Issue 10, item 8: with standard_conforming_strings = off, PostgreSQL reads a backslash
// in '...' as an escape ('a\'b' is one string). pgshard read such statements with the
// default setting: a shard name spliced into a string literal, a function in what
// PostgreSQL reads as string data evaluated on the coordinator, a row written into a
// distributed table's prototype. Every test here runs as an unprivileged role and
// compares pgshard with plain PostgreSQL (the same tables, undistributed, in a schema of
// the role's own on the coordinator), in every way the setting can be set.

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// lexFixture is a role with distributed tables and their plain twins.
type lexFixture struct {
	role   string
	schema string // the plain twins' schema
	kv     string // kv (id int primary key, v text), distributed on id
	kv3    string // kv3 (id int, v text, w text), distributed on id
	kt     string // kt (k text primary key, n int), distributed on k
	log    string // a coordinator sequence that side() advances
	side   string // side(): advances log (which no rollback undoes), returns 'side'
	admin  *pgx.Conn
}

// newLexFixture creates the role (roleExtra run on the coordinator only, as ALTER ROLE
// would be by its administrator), its distributed tables through the proxy and their
// plain twins.
func newLexFixture(t *testing.T, roleExtra ...string) *lexFixture {
	t.Helper()
	f := &lexFixture{role: unprivilegedRole(t, "lexer")}
	f.kv, f.kv3, f.kt = uniqueName("lexkv"), uniqueName("lexkv3"), uniqueName("lexkt")
	f.log, f.side = uniqueName("lexlog"), uniqueName("lexside")
	f.schema = uniqueName("lexplain")
	admin := connectServer(t, env.C.Coordinator)
	mustExec(t, admin, fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION %s", f.schema, f.role))
	for _, e := range roleExtra {
		mustExec(t, admin, fmt.Sprintf(e, f.role))
	}
	ddl := map[string]string{
		f.kv:  "CREATE TABLE %s (id int PRIMARY KEY, v text)",
		f.kv3: "CREATE TABLE %s (id int, v text, w text)",
		f.kt:  "CREATE TABLE %s (k text PRIMARY KEY, n int)",
	}
	// Created while standard_conforming_strings is on (the role's default may be off).
	conn := f.connect(t, "options=-c%20standard_conforming_strings%3Don")
	mustExec(t, conn,
		fmt.Sprintf("CREATE SEQUENCE %s", f.log),
		fmt.Sprintf("CREATE FUNCTION %s() RETURNS text LANGUAGE sql VOLATILE AS $f$ SELECT CASE WHEN pg_catalog.nextval('public.%s') > 0 THEN 'side' END $f$", f.side, f.log))
	for _, tbl := range []string{f.kv, f.kv3, f.kt} {
		col := "id"
		if tbl == f.kt {
			col = "k"
		}
		distribute(t, conn, fmt.Sprintf(ddl[tbl], tbl), tbl, col, 8, 2)
	}
	plain := f.connectPlain(t, "options=-c%20standard_conforming_strings%3Don")
	for _, tbl := range []string{f.kv, f.kv3, f.kt} {
		mustExec(t, plain, fmt.Sprintf(ddl[tbl], tbl))
	}
	return f
}

// connect connects to the proxy as the role with extra URL parameters.
func (f *lexFixture) connect(t *testing.T, extra ...string) *pgx.Conn {
	t.Helper()
	return f.open(t, env.P.Addr, extra...)
}

// connectPlain connects to the coordinator as the role, its search_path finding the
// plain twins first (and public's function and log table after them).
func (f *lexFixture) connectPlain(t *testing.T, extra ...string) *pgx.Conn {
	t.Helper()
	c := f.open(t, env.C.Coordinator.Addr(), extra...)
	mustExec(t, c, "SET search_path = "+f.schema+", public")
	return c
}

func (f *lexFixture) open(t *testing.T, addr string, extra ...string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", f.role, addr)
	for _, e := range extra {
		u += "&" + e
	}
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", addr, f.role, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// sub replaces the placeholders of a statement: kv, kv3, kt and side() by the fixture's
// names.
func (f *lexFixture) sub(s string) string {
	return strings.NewReplacer("{kv}", f.kv, "{kv3}", f.kv3, "{kt}", f.kt, "{side}", f.side).Replace(s)
}

// same runs each statement on the proxy and on plain PostgreSQL and compares outcomes,
// and the calls of side() each made on the coordinator.
func (f *lexFixture) same(t *testing.T, proxy, plain *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		s = f.sub(s)
		c0 := f.calls(t)
		got := lexOutcome(proxy, s)
		c1 := f.calls(t)
		want := lexOutcome(plain, s)
		c2 := f.calls(t)
		if got != want {
			t.Errorf("%s\n pgshard:    %s\n PostgreSQL: %s", s, got, want)
		}
		if c1-c0 != c2-c1 {
			t.Errorf("%s\n called %s() %d times on the coordinator, PostgreSQL %d times", s, f.side, c1-c0, c2-c1)
		}
	}
}

// lexOutcome runs a query string with the simple protocol, as it is (pgx refuses to
// interpolate into a query when standard_conforming_strings is off), and describes the
// rows of its statements, or its error's SQLSTATE.
func lexOutcome(c *pgx.Conn, sql string) string {
	results, err := c.PgConn().Exec(context.Background(), sql).ReadAll()
	if err != nil {
		return "error " + sqlstate(err)
	}
	var out []string
	for _, r := range results {
		for _, row := range r.Rows {
			var vals []string
			for _, v := range row {
				if v == nil {
					vals = append(vals, "NULL")
				} else {
					vals = append(vals, string(v))
				}
			}
			out = append(out, strings.Join(vals, " "))
		}
	}
	return strings.Join(out, "; ")
}

// calls counts the calls of side() so far (on the coordinator, whether or not the
// statement that called it failed).
func (f *lexFixture) calls(t *testing.T) int {
	t.Helper()
	if f.admin == nil {
		f.admin = connectServer(t, env.C.Coordinator)
	}
	var n int
	if err := f.admin.QueryRow(context.Background(), "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public."+f.log).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", f.log, err)
	}
	return n
}

// check verifies what no statement may have done: rows in a prototype; and that the
// tables hold what the plain twins hold, each row of kt in the shard its key hashes to
// (found through pgshard by its key as quote_literal writes it, which reads the same in
// both settings).
func (f *lexFixture) check(t *testing.T, plain *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	admin := connectServer(t, env.C.Coordinator)
	for _, tbl := range []string{f.kv, f.kv3, f.kt} {
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM ONLY public."+tbl).Scan(&n); err != nil {
			t.Fatalf("count prototype %s: %v", tbl, err)
		}
		if n != 0 {
			t.Errorf("%d rows in the coordinator's prototype of %s", n, tbl)
		}
	}
	proxy := f.connect(t, "options=-c%20standard_conforming_strings%3Don")
	mustExec(t, plain, "SET standard_conforming_strings = on")
	f.same(t, proxy, plain,
		"SELECT id, v FROM {kv} ORDER BY id",
		"SELECT id, v, w FROM {kv3} ORDER BY id, v, w",
		"SELECT k, n FROM {kt} ORDER BY n")
	rows, err := plain.Query(ctx, f.sub("SELECT pg_catalog.quote_literal(k), n FROM {kt} ORDER BY n"), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var k, n string
		err := r.Scan(&k, &n)
		return [2]string{k, n}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if got := lexOutcome(proxy, f.sub("SELECT n FROM {kt} WHERE k = "+k[0])); got != k[1] {
			t.Errorf("row of key %s not found by its key through pgshard: %q", k[0], got)
		}
	}
}

// The three reproductions, with standard_conforming_strings off by SET.
func TestHostileLexingReproductions(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	mustExec(t, proxy, f.sub("INSERT INTO {kv} VALUES (1, 'one')"))
	mustExec(t, plain, f.sub("INSERT INTO {kv} VALUES (1, 'one')"))
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "SET standard_conforming_strings = off")
	}
	f.same(t, proxy, plain,
		`select 'secret\' from {kv} where id = 1 --'`,
		`insert into {kv3} (id, v, w) values (1, '\', {side}()) --', 'other')`,
		`insert into {kv} values (2, 'a\'b')`,
		`select id, v from {kv} where v = 'a\'b'`,
	)
	f.check(t, plain)
}

// lexCorpus are statements with every form of literal and comment, run in one setting:
// each must do on pgshard what it does on PostgreSQL (rows, or the error's SQLSTATE).
// Ids and keys are unique per run (base).
func lexCorpus(base int) []string {
	id := func(i int) string { return fmt.Sprint(base + i) }
	return []string{
		`select 'secret\' from {kv} where id = ` + id(1) + ` --'`,
		`select 'x\\' , id from {kv} where id = ` + id(1),
		`insert into {kv3} (id, v, w) values (` + id(1) + `, '\', {side}()) --', 'other')`,
		`insert into {kv} values (` + id(1) + `, 'a\'b')`,
		`insert into {kv} values (` + id(2) + `, 'a''b\\')`,
		`insert into {kv} values (` + id(3) + `, E'e\'s\\', ` + "\n" + `)`,
		`insert into {kv} values (` + id(4) + `, $$d\'q$$), (` + id(5) + `, $t$x'\y$t$)`,
		`insert into {kv} values (` + id(6) + `, U&'\0041\\')`,
		`insert into {kv} values (` + id(7) + `, 'end\\'), (` + id(8) + `, '\\')`,
		`insert into {kv} /* ' */ values (` + id(9) + ` /* /* '\' */ */, 'c') -- '` + "\n",
		`insert into {kv} values (` + id(10) + `, 'part\'` + "\n" + `'two\\')`,
		`insert into {kv} values (` + id(11) + `, 'n\'', ` + "\n" + `) -- ', 'x')`,
		`insert into {kv} values (` + id(12) + `, 'q\'), (` + id(13) + `, (select max(v) from {kv})) --')`,
		`insert into {kt} values ('k\\` + id(1) + `', ` + id(1) + `), ('k\'` + id(2) + `', ` + id(2) + `), (E'k\\\\` + id(3) + `', ` + id(3) + `)`,
		`insert into {kt} values ('k\\` + id(4) + `\\', ` + id(4) + `), ('` + id(5) + `\\x', ` + id(5) + `), ('\\\\` + id(6) + `', ` + id(6) + `)`,
		`select n from {kt} where k = 'k\\` + id(1) + `'`,
		`select n from {kt} where k in ('k\'` + id(2) + `', 'k\\` + id(4) + `\\') order by n`,
		`update {kv} set v = 'u\'pd' where id = ` + id(1),
		`update {kv} set v = 'w\\' where id = ` + id(2) + ` and v <> '\'`,
		`delete from {kv} where id = ` + id(7) + ` and v = 'end\\'`,
		`select id, v from {kv} where id between ` + id(1) + ` and ` + id(20) + ` and v like '%\\%' order by id`,
		`select count(*) from {kv} where v = '\' or 1=1 --'`,
		`select'n\' as a, N'n\'s' as b from {kv} where id = ` + id(1) + ` --'`,
		`insert into {kv} values (` + id(14) + `, 'c\'` + "\n\n  " + `'d\\'), (` + id(15) + `, 'x' -- c` + "\n" + `'y')`,
		`insert into {kv} values (` + id(16) + `, 'unterminated\')`,
		`select id from {kv} k where v = 'a\'b' and exists (select 1 from {kv3} where {kv3}.id = k.id) order by 1`,
	}
}

func runCorpus(t *testing.T, f *lexFixture, proxy, plain *pgx.Conn, base int) {
	t.Helper()
	f.same(t, proxy, plain, lexCorpus(base)...)
}

// Every literal form, with standard_conforming_strings off by SET and then back on by
// RESET, and by SET LOCAL in a block that is rolled back.
func TestHostileLexingSetResetLocal(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	conns := []*pgx.Conn{proxy, plain}
	exec := func(sql string) {
		for _, c := range conns {
			mustExec(t, c, sql)
		}
	}
	runCorpus(t, f, proxy, plain, 0)
	exec("SET standard_conforming_strings = off")
	runCorpus(t, f, proxy, plain, 100)
	exec("RESET standard_conforming_strings")
	runCorpus(t, f, proxy, plain, 200)
	exec("BEGIN")
	exec("SET LOCAL standard_conforming_strings = off")
	f.same(t, proxy, plain, lexCorpus(300)[:5]...)
	exec("ROLLBACK")
	// Back on: read as on again.
	runCorpus(t, f, proxy, plain, 400)
	exec("BEGIN")
	exec("SET standard_conforming_strings = off")
	exec("ROLLBACK")
	runCorpus(t, f, proxy, plain, 500)
	exec("BEGIN")
	exec("SET standard_conforming_strings = off")
	exec("COMMIT")
	runCorpus(t, f, proxy, plain, 600)
	// The driver is told as PostgreSQL tells it.
	for _, c := range conns {
		if v := c.PgConn().ParameterStatus("standard_conforming_strings"); v != "off" {
			t.Errorf("%s: standard_conforming_strings reported %q, want off", c.Config().Host, v)
		}
	}
	exec("BEGIN")
	exec("SET LOCAL standard_conforming_strings = on")
	exec("ROLLBACK")
	for i, c := range conns {
		if v := c.PgConn().ParameterStatus("standard_conforming_strings"); v != "off" {
			t.Errorf("connection %d: after ROLLBACK, standard_conforming_strings reported %q, want off", i, v)
		}
	}
	runCorpus(t, f, proxy, plain, 700)
	// A query string is read as a whole before any of it runs: a SET in it does not
	// change how the rest of it reads.
	exec("SET standard_conforming_strings = on")
	f.same(t, proxy, plain,
		`SET standard_conforming_strings = off; insert into {kv} values (801, 'm\\n'); select v from {kv} where id = 801`,
		`select v from {kv} where id = 801; SET standard_conforming_strings = on; insert into {kv} values (802, 'm\\n'); select v from {kv} where id = 802`)
	f.check(t, plain)
}

// standard_conforming_strings off from the startup packet's options.
func TestHostileLexingStartupOption(t *testing.T) {
	f := newLexFixture(t)
	opt := "options=" + strings.ReplaceAll(url.QueryEscape("-c standard_conforming_strings=off"), "+", "%20")
	proxy, plain := f.connect(t, opt), f.connectPlain(t, opt)
	if v := proxy.PgConn().ParameterStatus("standard_conforming_strings"); v != "off" {
		t.Errorf("standard_conforming_strings reported %q, want off", v)
	}
	runCorpus(t, f, proxy, plain, 0)
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "RESET standard_conforming_strings")
	}
	runCorpus(t, f, proxy, plain, 100)
	f.check(t, plain)
}

// standard_conforming_strings off as the role's default (ALTER ROLE ... SET), set on the
// coordinator by its administrator.
func TestHostileLexingRoleDefault(t *testing.T) {
	f := newLexFixture(t, "ALTER ROLE %s SET standard_conforming_strings = off")
	proxy, plain := f.connect(t), f.connectPlain(t)
	if v := proxy.PgConn().ParameterStatus("standard_conforming_strings"); v != "off" {
		t.Errorf("standard_conforming_strings reported %q, want off", v)
	}
	runCorpus(t, f, proxy, plain, 0)
	// A second session of the role reads the same way (on another pooled connection).
	proxy2 := f.connect(t)
	runCorpus(t, f, proxy2, plain, 100)
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "SET standard_conforming_strings = on")
	}
	runCorpus(t, f, proxy, plain, 200)
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "RESET standard_conforming_strings")
	}
	runCorpus(t, f, proxy, plain, 300)
	f.check(t, plain)
}

// With the extended protocol, a statement is read when it is parsed: executing it after
// the setting changed does what it did when prepared.
func TestHostileLexingPreparedAcrossSet(t *testing.T) {
	f := newLexFixture(t)
	ctx := context.Background()
	proxy, plain := f.connect(t), f.connectPlain(t)
	conns := []*pgx.Conn{proxy, plain}
	for _, c := range conns {
		mustExec(t, c, "SET standard_conforming_strings = off")
		if _, err := c.Prepare(ctx, "ins", f.sub(`insert into {kv} values ($1, 'p\'q\\')`)); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		if _, err := c.Prepare(ctx, "sel", f.sub(`select v from {kv} where id = $1 and v = 'p\'q\\'`)); err != nil {
			t.Fatalf("prepare: %v", err)
		}
		mustExec(t, c, "SET standard_conforming_strings = on")
	}
	var got [2]string
	for i, c := range conns {
		if _, err := c.Exec(ctx, "ins", 1); err != nil {
			t.Fatalf("execute: %v", err)
		}
		if err := c.QueryRow(ctx, "sel", 1).Scan(&got[i]); err != nil {
			t.Fatalf("execute: %v", err)
		}
	}
	if got[0] != got[1] {
		t.Errorf("prepared under off, run under on: pgshard %q, PostgreSQL %q", got[0], got[1])
	}
	// The same text is another statement in the other setting: two columns, or one.
	two := f.sub(`select 'a\' as x, ' as y, 1 as z from {kv} --'`)
	for i, mode := range []string{"on", "off", "on"} {
		var cols [2]string
		for j, c := range conns {
			mustExec(t, c, "SET standard_conforming_strings = "+mode)
			sd, err := c.Prepare(ctx, fmt.Sprint("two", i), two)
			if err != nil {
				t.Fatalf("conn %d, %s: prepare %s: %v", j, mode, two, err)
			}
			for _, fd := range sd.Fields {
				cols[j] += fd.Name + " "
			}
		}
		if cols[0] != cols[1] {
			t.Errorf("%s with standard_conforming_strings %s: columns %q, PostgreSQL %q", two, mode, cols[0], cols[1])
		}
	}
	f.check(t, plain)
}

// In a client encoding whose characters may end in a backslash byte (SJIS: 0x95 0x5C is
// one character), PostgreSQL reads the character and pgshard would read an escape:
// pgshard refuses such statements (0A000) rather than misread them, and ASCII ones work.
func TestHostileLexingClientOnlyEncoding(t *testing.T) {
	f := newLexFixture(t)
	ctx := context.Background()
	proxy := f.connect(t)
	mustExec(t, proxy, "SET client_encoding = 'SJIS'")
	if got := lexOutcome(proxy, f.sub(`insert into {kv} values (1, E'a\\b') returning v`)); got != `a\b` {
		t.Errorf("ASCII statement in SJIS: %s", got)
	}
	// PostgreSQL reads E'<char>' , side() FROM kv: a row, and a call of side(), per row
	// of kv; read byte by byte, it is one string constant and no table.
	for _, attack := range []string{
		f.sub("select E'\x95\\' , {side}() from {kv} --'"),
		f.sub("insert into {kv3} (id, v, w) values (1, E'\x95\\', {side}()) --', 'w')"),
	} {
		before := f.calls(t)
		if got := lexOutcome(proxy, attack); got != "error 0A000" {
			t.Errorf("%q: %q, want error 0A000", attack, got)
		}
		if n := f.calls(t) - before; n != 0 {
			t.Errorf("%s() called %d times", f.side, n)
		}
	}
	// \' is PostgreSQL's error in such an encoding (backslash_quote = safe_encoding).
	if got := lexOutcome(proxy, f.sub(`insert into {kv} values (2, E'a\'b')`)); got != "error 22P06" {
		t.Errorf("\\' in SJIS: %s, want error 22P06", got)
	}
	if _, err := proxy.PgConn().Exec(ctx, "RESET client_encoding").ReadAll(); err != nil {
		t.Fatal(err)
	}
	plain := f.connectPlain(t)
	mustExec(t, plain, f.sub(`insert into {kv} values (1, E'a\\b')`))
	f.check(t, plain)
}

// Definitions pgshard reads back from the coordinator and replays (shard tables' constant
// defaults and CHECK constraints, defaults it evaluates on the coordinator) mean what
// they mean on the coordinator, whatever standard_conforming_strings the session that
// created them, distributes them or writes to them has.
func TestHostileLexingDefaultsAndChecks(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	tbl := uniqueName("lexdef")
	ddl := fmt.Sprintf(`CREATE TABLE %s (id int, c text DEFAULT 'c\\d', e text DEFAULT 'e\\f' || '', v text CHECK (v <> 'x\\y'))`, tbl)
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "SET standard_conforming_strings = off")
	}
	mustExec(t, plain, ddl)
	mustExec(t, proxy, ddl,
		fmt.Sprintf("select master_create_distributed_table('%s', 'id')", tbl),
		fmt.Sprintf("select master_create_worker_shards('%s', 4, 2)", tbl))
	for _, mode := range []string{"off", "on"} {
		for _, c := range []*pgx.Conn{proxy, plain} {
			mustExec(t, c, "SET standard_conforming_strings = "+mode)
		}
		f.same(t, proxy, plain,
			fmt.Sprintf("insert into %s (id) values (1), (2), (3)", tbl),
			fmt.Sprintf("insert into %s (id, v) values (4, E'x\\\\y')", tbl),
			fmt.Sprintf("insert into %s (id, v) values (5, E'x\\\\\\\\y') returning *", tbl),
			fmt.Sprintf("select * from %s order by id, c, e, v", tbl),
			fmt.Sprintf("select count(*) from %s where c = E'c\\\\d' and e = E'e\\\\f'", tbl))
	}
	f.check(t, plain)
}

// With standard_conforming_strings off, PostgreSQL warns of the first backslash escape in
// each plain string (escape_string_warning): so does pgshard for the statements it sends
// to the workers, whose strings they get as E'...'.
func TestHostileLexingEscapeWarnings(t *testing.T) {
	f := newLexFixture(t)
	var notices [2][]string
	open := func(i int, addr string) *pgx.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", f.role, addr))
		if err != nil {
			t.Fatal(err)
		}
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			notices[i] = append(notices[i], fmt.Sprintf("%s %s %s %q %d", n.Severity, n.Code, n.Message, n.Hint, n.Position))
		}
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	proxy, plain := open(0, env.P.Addr), open(1, env.C.Coordinator.Addr())
	mustExec(t, plain, "SET search_path = "+f.schema+", public")
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "SET standard_conforming_strings = off")
	}
	for _, s := range []string{
		`insert into {kv} values (1, 'a\'b'), (2, 'c\\d'), (3, 'e\nf'), (4, 'plain'), (5, E'g\\h')`,
		`select v from {kv} where id = 1 and v = 'a\'b' or id = 2 and v = 'x\` + "\n" + `'y\\'`,
		`select 'n\\' as n; select count(*) from {kv} where v <> 'w\'x'`,
	} {
		notices = [2][]string{}
		s = f.sub(s)
		got, want := lexOutcome(proxy, s), lexOutcome(plain, s)
		if got != want {
			t.Errorf("%s\n pgshard:    %s\n PostgreSQL: %s", s, got, want)
		}
		if g, w := strings.Join(notices[0], "\n"), strings.Join(notices[1], "\n"); g != w {
			t.Errorf("%s: notices\n%s\nPostgreSQL:\n%s", s, g, w)
		}
	}
	f.check(t, plain)
}
