package tests

// Issue 10, third attack round (search_path, memory bounds, lexing) as an ordinary user.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// standard_conforming_strings changed by other means than SET: set_config in a query
// (on the coordinator or on a shard), a DO block, a function's SET clause.
func TestAttack3LexingSetConfig(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	f.same(t, proxy, plain,
		`insert into {kv} values (1, 'one')`,
		`select pg_catalog.set_config('standard_conforming_strings', 'off', false)`,
		`select 'secret\' from {kv} where id = 1 --'`,
		`insert into {kv} values (2, 'a\'b')`,
		`select pg_catalog.set_config('standard_conforming_strings', 'on', false)`,
		`select 'secret\' from {kv} where id = 1 --'`,
		`do $$begin set standard_conforming_strings = off; end$$`,
		`select 'secret\' from {kv} where id = 1 --'`,
		`insert into {kv} values (3, 'a\'b')`,
		`do $$begin perform pg_catalog.set_config('standard_conforming_strings', 'on', false); end$$`,
		`select 'secret\' from {kv} where id = 1 --'`,
	)
	f.check(t, plain)
}

// A function of the user's own, present on the coordinator and the workers, that turns
// standard_conforming_strings off in the worker's session: the next statement of any
// session of the role on that pooled worker connection must still be read as pgshard
// read it.
func TestAttack3LexingWorkerFunction(t *testing.T) {
	f := newLexFixture(t)
	ctx := context.Background()
	fn := uniqueName("scsoff")
	for _, s := range env.C.Servers() {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", f.role, s.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, c, fmt.Sprintf(`CREATE FUNCTION public.%s() RETURNS text LANGUAGE sql VOLATILE AS $f$ SELECT pg_catalog.set_config('TimeZone', 'Pacific/Kiritimati', false); SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false) $f$`, fn))
		c.Close(ctx)
	}
	proxy := f.connect(t)
	mustExec(t, proxy, f.sub(`insert into {kv} values (1, 'one'), (2, 'two'), (3, 'three')`))
	for i := 0; i < 8; i++ {
		r := lexOutcome(proxy, f.sub(fmt.Sprintf(`select public.%s(), v from {kv} where id = %d`, fn, 1+i%3)))
		if r == "" {
			t.Fatal("no row")
		}
	}
	plain := f.connectPlain(t)
	mustExec(t, plain, f.sub(`insert into {kv} values (1, 'one'), (2, 'two'), (3, 'three')`))
	for i := 0; i < 5; i++ {
		p2 := f.connect(t)
		f.same(t, p2, plain,
			`select pg_catalog.current_setting('standard_conforming_strings'), v from {kv} where id = 1`,
			`select '2020-01-01 00:00+00'::timestamptz::text, v from {kv} where id = 2`,
			`select 'x\', v from {kv} where id = 1 --'`,
			`select count(*) from {kv} where id = 1 and v <> 'x\' or true --'`,
			`select v from {kv} where id = 2 and v <> 'x\' --'`,
			`insert into {kv} values (`+fmt.Sprint(10+i)+`, 'a\'b')`)
	}
	f.check(t, plain)
}

// attack3Corpus are literal, identifier and comment forms beyond the lexing tests' own:
// Unicode-escaped identifiers and strings with UESCAPE, backslashes in quoted
// identifiers, nested comments holding quotes, comment markers inside strings, string
// continuation, bit and hex strings.
func attack3Corpus(base int) []string {
	id := func(i int) string { return fmt.Sprint(base + i) }
	return []string{
		`insert into {kv} values (` + id(1) + `, 'one')`,
		`select v as U&"\0041" from {kv} where id = ` + id(1),
		`select v as U&"!0041!005C" UESCAPE '!' from {kv} where id = ` + id(1),
		`select v from {kv} as U&"t!0041" UESCAPE '!' where id = ` + id(1),
		`select v from {kv} where v <> U&'!0041\' UESCAPE '!' and id = ` + id(1) + ` --'`,
		`select v from {kv} where v <> U&'\005C' and id = ` + id(1) + ` --'`,
		`select v as "a\" from {kv} where id = ` + id(1) + ` --"`,
		`select v as "a\""b" from {kv} where id = ` + id(1) + ` --"`,
		`select v from {kv} where id = ` + id(1) + ` /* nested /* ' */ still ' */`,
		`select v from {kv} where id = ` + id(1) + ` /* a /* b */ ' */ and v <> 'x' --'`,
		`select v from {kv} where v <> E'a\'b /* ' and id = ` + id(1) + ` --' */`,
		`select v from {kv} where v <> e'--\\' and id = ` + id(1),
		`select count(*) from {kv} where v <> 'a'` + "\n" + `'b\' and id = ` + id(1) + ` --'`,
		`select count(*) from {kv} where v <> 'a' -- c` + "\n" + `'b\' and id = ` + id(1) + ` --'`,
		`select count(*) from {kv} where v <> 'a' /* c */` + "\n" + `'b\' and id = ` + id(1) + ` --'`,
		`select b'101'::text, x'1F'::text, n'n\' , v from {kv} where id = ` + id(1) + ` --'`,
		`select N'a\\' , pg_catalog.pg_typeof(n'b\'), v from {kv} where id = ` + id(1) + ` --'`,
		`select 1 from {kv} where id = ` + id(1) + ` and v <> N'\' --'`,
		`select $a$x\$a$ || v from {kv} where id = ` + id(1),
		`select $_$'$_$ || v, $$\$$ from {kv} where id = ` + id(1) + ` --'`,
		`select v from {kv} where id = ` + id(1) + ` and v <>'x'--'`,
		`select v from {kv} where id = ` + id(1) + `and v<>'x\'or true--'`,
		`select v from {kv} where id = ` + id(1) + ` and v = E'\''`,
		`select v from {kv} where id = ` + id(1) + ` and v = E''''`,
		`select v from {kv} where id = ` + id(1) + ` and v = '\'''`,
		`select v from {kv} where id = ` + id(1) + ` and v = '\\'''`,
		`insert into {kv} values (` + id(2) + `, U&'\0041\005C')`,
		`insert into {kv} values (` + id(3) + `, U&'!0041\' UESCAPE '!')`,
		`insert into {kv} values (` + id(4) + ` /* ' /* */ ' */, 'x\'y') -- '`,
		`select id, v from {kv} where id between ` + id(1) + ` and ` + id(9) + ` order by id`,
	}
}

// The forms above, with standard_conforming_strings on and off.
func TestAttack3LexingForms(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	f.same(t, proxy, plain, attack3Corpus(0)...)
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, "SET standard_conforming_strings = off")
	}
	f.same(t, proxy, plain, attack3Corpus(100)...)
	f.check(t, plain)
}

// pipelineOutcome sends the statements as one extended-protocol pipeline (Parse, Bind,
// Describe, Execute each, one Sync at the end) and describes each one's rows or error.
func pipelineOutcome(t *testing.T, c *pgx.Conn, stmts ...string) string {
	t.Helper()
	ctx := context.Background()
	p := c.PgConn().StartPipeline(ctx)
	for _, s := range stmts {
		p.SendQueryParams(s, nil, nil, nil, nil)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		r, err := p.GetResults()
		if err != nil {
			out = append(out, "error "+sqlstate(err))
			continue
		}
		if r == nil {
			break
		}
		switch rr := r.(type) {
		case *pgconn.ResultReader:
			res := rr.Read()
			if res.Err != nil {
				out = append(out, "error "+sqlstate(res.Err))
				continue
			}
			var rows []string
			for _, row := range res.Rows {
				var vals []string
				for _, v := range row {
					vals = append(vals, string(v))
				}
				rows = append(rows, strings.Join(vals, " "))
			}
			out = append(out, strings.Join(rows, "; "))
		case *pgconn.PipelineSync:
			out = append(out, "sync")
			goto done
		}
	}
done:
	if err := p.Close(); err != nil {
		out = append(out, "close "+sqlstate(err))
	}
	return strings.Join(out, " | ")
}

// A SET in a pipeline changes how the statements parsed after it in the same pipeline
// read, as in PostgreSQL (each Parse is read when it comes), and a set_config() call
// likewise.
func TestAttack3LexingPipeline(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	for _, c := range []*pgx.Conn{proxy, plain} {
		mustExec(t, c, f.sub(`insert into {kv} values (1, 'one'), (2, 'two')`))
	}
	cases := [][]string{
		{`SET standard_conforming_strings = off`, `select 'x\', v from {kv} where id = 1 --'`, `select v from {kv} where id = 2 and v <> 'a\' or id = 1 --'`},
		{`SET standard_conforming_strings = on`, `select 'x\', v from {kv} where id = 1 --'`},
		{`select pg_catalog.set_config('standard_conforming_strings', 'off', false)`, `select 'x\', v from {kv} where id = 1 --'`, `insert into {kv} values (3, 'a\'b')`},
		{`RESET standard_conforming_strings`, `select 'x\', v from {kv} where id = 1 --'`},
		{`BEGIN`, `SET LOCAL standard_conforming_strings = off`, `select 'x\', v from {kv} where id = 1 --'`, `COMMIT`, `select 'x\', v from {kv} where id = 1 --'`},
		{`SET standard_conforming_strings = off`, `select 1/0`, `select 'x\', v from {kv} where id = 1 --'`},
		{`select 'x\', v from {kv} where id = 1 --'`},
	}
	for _, stmts := range cases {
		for i := range stmts {
			stmts[i] = f.sub(stmts[i])
		}
		got, want := pipelineOutcome(t, proxy, stmts...), pipelineOutcome(t, plain, stmts...)
		if got != want {
			t.Errorf("%q\n pgshard:    %s\n PostgreSQL: %s", stmts, got, want)
		}
	}
	f.check(t, plain)
}

// A function of the client's on the coordinator that changes search_path (which
// PostgreSQL 15 does not report): the names the next statements use must resolve as
// PostgreSQL resolves them, and the workers get the setting.
func TestAttack3SearchPathByFunction(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	mustExec(t, plain, f.sub(`insert into {kv} values (1, 'plain')`))
	mustExec(t, proxy, f.sub(`insert into {kv} values (1, 'distributed')`))
	fn := uniqueName("setsp")
	mustExec(t, proxy, fmt.Sprintf(`CREATE FUNCTION public.%s(p text) RETURNS text LANGUAGE sql VOLATILE AS $f$ SELECT pg_catalog.set_config('search_path', p, false) $f$`, fn))
	for _, c := range []*pgx.Conn{proxy, plain} {
		if _, err := c.Exec(context.Background(), fmt.Sprintf("SELECT public.%s('%s, public')", fn, f.schema)); err != nil {
			t.Fatal(err)
		}
	}
	f.same(t, proxy, plain,
		`show search_path`,
		`select v from {kv} where id = 1`,
		`select v from {kv}`)
}

// The same through a multi-statement string, the extended protocol and a DO block, and
// for settings that reach the workers (TimeZone).
func TestAttack3SettingsByFunctionShapes(t *testing.T) {
	f := newLexFixture(t)
	ctx := context.Background()
	proxy, plain := f.connect(t), f.connectPlain(t)
	mustExec(t, plain, f.sub(`insert into {kv} values (1, 'plain')`))
	mustExec(t, proxy, f.sub(`insert into {kv} values (1, 'distributed')`))
	fn := uniqueName("setsp")
	mustExec(t, proxy, fmt.Sprintf(`CREATE FUNCTION public.%s(n text, v text) RETURNS text LANGUAGE sql VOLATILE AS $f$ SELECT pg_catalog.set_config(n, v, false) $f$`, fn))
	path := f.schema + ", public"
	// On plain PostgreSQL, public's table is the distributed table's empty prototype:
	// what pgshard answers is written out.
	for _, c := range []struct{ sql, want string }{
		{fmt.Sprintf(`select public.%s('search_path', 'public'); select v from {kv} where id = 1; select public.%s('search_path', '%s'); select v from {kv} where id = 1`, fn, fn, path),
			"public; distributed; " + path + "; plain"},
		{`select v from {kv} where id = 1`, "plain"},
		{fmt.Sprintf(`do $$begin perform public.%s('search_path', 'public'); end$$`, fn), ""},
		{`select v from {kv} where id = 1`, "distributed"},
		{fmt.Sprintf(`do $$begin perform public.%s('search_path', '%s'); end$$`, fn, path), ""},
		{`select v from {kv} where id = 1`, "plain"},
		{fmt.Sprintf(`select public.%s('TimeZone', 'Pacific/Kiritimati')`, fn), "Pacific/Kiritimati"},
		{`select '2020-01-01 00:00+00'::timestamptz::text from public.{kv} where id = 1`, "2020-01-01 14:00:00+14"},
	} {
		if got := lexOutcome(proxy, f.sub(c.sql)); got != c.want {
			t.Errorf("%s: got %q, want %q", f.sub(c.sql), got, c.want)
		}
	}
	// Extended protocol: the function through a prepared statement.
	ext := func(c *pgx.Conn) string {
		var s string
		if _, err := c.Exec(ctx, fmt.Sprintf(`select public.%s($1, $2)`, fn), pgx.QueryExecModeExec, "search_path", "public"); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, f.sub(`select v from {kv} where id = 1`), pgx.QueryExecModeExec).Scan(&s); err != nil {
			return "error " + sqlstate(err)
		}
		return s
	}
	p2 := f.connect(t)
	if got := ext(p2); got != "distributed" {
		t.Errorf("search_path public set by a prepared call: got %q, want distributed", got)
	}
	p3 := f.connect(t)
	mustExec(t, p3, "SET search_path = "+path)
	mustExec(t, p3, fmt.Sprintf(`select public.%s('TimeZone', 'Pacific/Kiritimati')`, fn))
	if got := queryString(t, p3, f.sub(`select '2020-01-01 00:00+00'::timestamptz::text from public.{kv} where id = 1`)); got != "2020-01-01 14:00:00+14" {
		t.Errorf("TimeZone set by a function: shard answered %q", got)
	}
}

// Many suspended portals in one block, each set aside when the next statement runs:
// work-mem bounds what the session keeps in memory (README: "bytes of a result the proxy
// must set aside that a session keeps in memory"), not what each portal keeps, or one
// client holds portals × work-mem.
func TestAttack3ManyPortalsMemory(t *testing.T) {
	role := unprivilegedRole(t, "a3portals")
	const big = 1 << 20
	const rows = 6     // 6 MiB per portal: 4 MiB (work-mem) would stay in memory
	const portals = 32 // 128 MiB in memory if each portal had its own work-mem
	w := dialWireAs(t, env.P.Addr, role)
	w.send(&pgproto3.Query{String: "BEGIN"})
	w.until(1)
	w.send(&pgproto3.Parse{Name: "s", Query: fmt.Sprintf("SELECT i::text, repeat('x', %d) FROM generate_series(1, %d) i", big, rows)}, &pgproto3.Sync{})
	w.until(1)
	base := heapInuse()
	for i := 0; i < portals; i++ {
		p := fmt.Sprint("p", i)
		w.send(&pgproto3.Bind{PreparedStatement: "s", DestinationPortal: p}, &pgproto3.Execute{Portal: p, MaxRows: 1}, &pgproto3.Sync{})
		if keys, rest := rowsOf(t, w, big); len(keys) != 1 || strings.Join(rest, " ") != "2 s ZT" {
			t.Fatalf("portal %d: %d rows, %s", i, len(keys), rest)
		}
	}
	w.send(&pgproto3.Query{String: "SELECT 1"})
	w.until(1)
	held := heapInuse()
	t.Logf("heap in use: %d MiB before, %d MiB with %d portals set aside", base>>20, held>>20, portals)
	const margin = 48 << 20
	if held > base+margin {
		t.Errorf("heap in use rose from %d MiB to %d MiB with %d portals set aside (allowed: %d MiB)", base>>20, held>>20, portals, margin>>20)
	}
	// Every portal still returns all its rows.
	for i := 0; i < portals; i++ {
		p := fmt.Sprint("p", i)
		w.send(&pgproto3.Execute{Portal: p}, &pgproto3.Sync{})
		if keys, rest := rowsOf(t, w, big); len(keys) != rows-1 || strings.Join(rest, " ") != fmt.Sprintf("C[SELECT %d] ZT", rows-1) {
			t.Fatalf("portal %d, rest: %d rows, %s", i, len(keys), rest)
		}
	}
	w.send(&pgproto3.Query{String: "COMMIT"})
	w.until(1)
}

// Each portal set aside beyond the session's memory gets a temporary file, which stays
// open while the portal lives: one client with thousands of portals would take every
// file descriptor of the proxy (20,000 here), and with them every other client's
// connections. The open files of a session are bounded (1,024), and those of all
// sessions (a quarter of the process's descriptors); past the bound, the statement
// that needed them fails with 53400 and the session stays usable.
func TestAttack3SpoolFilesBounded(t *testing.T) {
	role := unprivilegedRole(t, "a3files")
	before := spoolFiles(t)
	w := dialWireAs(t, env.P.Addr, role)
	w.send(&pgproto3.Query{String: "BEGIN"})
	w.until(1)
	// The first portal fills the session's memory for results set aside.
	w.send(&pgproto3.Parse{Name: "big", Query: "SELECT i::text, repeat('x', 1 << 20) FROM generate_series(1, 6) i"},
		&pgproto3.Parse{Name: "small", Query: "SELECT i::text, repeat('y', 20000) FROM generate_series(1, 3) i"}, &pgproto3.Sync{})
	w.until(1)
	w.send(&pgproto3.Bind{PreparedStatement: "big", DestinationPortal: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{})
	w.until(1)
	const portals = 1100
	var failed *pgproto3.ErrorResponse
	for i := 0; i < portals && failed == nil; i++ {
		p := fmt.Sprint("s", i)
		w.send(&pgproto3.Bind{PreparedStatement: "small", DestinationPortal: p}, &pgproto3.Execute{Portal: p, MaxRows: 1}, &pgproto3.Sync{})
		for {
			m := w.receive()
			if e, ok := m.(*pgproto3.ErrorResponse); ok {
				failed = e
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
	}
	open := spoolFiles(t) - before
	t.Logf("%d temporary files open", open)
	if open > 1024 {
		t.Errorf("%d temporary files open for one session's portals", open)
	}
	if failed == nil || failed.Code != "53400" {
		t.Errorf("past the bound: %+v, want 53400", failed)
	}
	w.send(&pgproto3.Query{String: "ROLLBACK"})
	w.until(1)
	w.send(&pgproto3.Query{String: "SELECT 2"})
	if got := strings.Join(w.until(1), " "); got != "T[?column?:23:0] D[2] C[SELECT 1] ZI" {
		t.Fatalf("after ROLLBACK: %s", got)
	}
}

// A key column under a nondeterministic collation (which any user may create): PostgreSQL
// hashes and compares such text by its collation ('A' = 'a'), pgshard by its bytes. Either
// pgshard refuses to distribute on it, or it behaves as PostgreSQL does.
func TestAttack3NondeterministicKey(t *testing.T) {
	role := unprivilegedRole(t, "a3coll")
	conn := connectAs(t, env.P, role)
	coll, tbl := uniqueName("ci"), uniqueName("a3ci")
	var ok bool
	if err := connectServer(t, env.C.Coordinator).QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')").Scan(&ok); err != nil || !ok {
		t.Skip("no ICU collations")
	}
	for _, s := range env.C.Servers() {
		if _, err := s.Exec(context.Background(), "postgres", fmt.Sprintf("SET ROLE %s; CREATE COLLATION public.%s (provider = icu, locale = 'und-u-ks-level2', deterministic = false)", role, coll)); err != nil {
			t.Fatal(err)
		}
	}
	// Through a domain too.
	dom, tbl2 := uniqueName("cidom"), uniqueName("a3cid")
	mustExec(t, conn, fmt.Sprintf("CREATE DOMAIN %s AS text COLLATE public.%s", dom, coll),
		fmt.Sprintf("CREATE TABLE %s (k %s PRIMARY KEY, n int)", tbl2, dom))
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("SELECT master_create_distributed_table('%s', 'k')", tbl2)); sqlstate(err) != "0A000" {
		t.Errorf("key of a domain under a nondeterministic collation: %v, want 0A000", err)
	}
	// Nor may the key take one on later.
	tbl3 := uniqueName("a3cil")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k text PRIMARY KEY, n int)", tbl3), tbl3, "k", 4, 1)
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("ALTER TABLE %s ALTER COLUMN k TYPE text COLLATE public.%s", tbl3, coll)); err == nil {
		t.Errorf("ALTER COLUMN of a distributed table's key to a nondeterministic collation succeeded")
	}
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (k text COLLATE public.%s PRIMARY KEY, n int)", tbl, coll))
	_, err := conn.Exec(context.Background(), fmt.Sprintf("SELECT master_create_distributed_table('%s', 'k')", tbl))
	if err != nil {
		if sqlstate(err) != "0A000" {
			t.Errorf("refused with %v, want 0A000", err)
		}
		return
	}
	mustExec(t, conn, fmt.Sprintf("SELECT master_create_worker_shards('%s', 8, 1)", tbl))
	ctx := context.Background()
	if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ('abc', 1)", tbl)); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ('ABC', 2)", tbl))
	if err == nil {
		t.Errorf("a second row with key 'ABC' next to 'abc' under a case-insensitive collation: PostgreSQL says 23505")
	}
	if got := queryString(t, conn, fmt.Sprintf("SELECT count(*)::text FROM %s WHERE k = 'ABC'", tbl)); got != "1" {
		t.Errorf("WHERE k = 'ABC' finds %s rows, PostgreSQL 1", got)
	}
}

// Temporary tables that shadow a distributed table's name (pg_temp comes first), and a
// distributed table whose name holds quotes, dots, a backslash and a comment marker.
func TestAttack3Names(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	mustExec(t, proxy, f.sub(`insert into {kv} values (1, 'distributed')`))
	mustExec(t, plain, f.sub(`insert into {kv} values (1, 'distributed')`))
	f.same(t, proxy, plain,
		`create temp table {kv} (id int, v text)`,
		`insert into {kv} values (1, 'temp')`,
		`select v from {kv} where id = 1`,
		`drop table pg_temp.{kv}`,
		`select v from {kv} where id = 1`,
	)
	conn := connectAs(t, env.P, f.role)
	weird := `we"ird.k\v--/*` + uniqueName("t")
	q := `"` + strings.ReplaceAll(weird, `"`, `""`) + `"`
	distribute(t, conn, "CREATE TABLE "+q+" (id int PRIMARY KEY, v text)", q, "id", 4, 1)
	mustExec(t, conn, "INSERT INTO "+q+" VALUES (1, 'a'), (2, 'b')")
	if got := queryString(t, conn, "SELECT string_agg(v, ',' ORDER BY v) FROM "+q); got != "a,b" {
		t.Errorf("weird name: %q", got)
	}
	if got := queryString(t, conn, "SELECT v FROM "+q+" WHERE id = 2"); got != "b" {
		t.Errorf("weird name, one shard: %q", got)
	}
}

// Keys written in another client_encoding are hashed as the server stores them: a row
// written under LATIN1 or WIN1252 is found under UTF8 by its key, also when the encoding
// changes mid-session and mid-string; or the statement is refused (0A000) and runs
// nowhere. (pgshard's parser reads UTF-8 only: today such statements with non-ASCII
// bytes are refused.)
func TestAttack3KeyEncoding(t *testing.T) {
	f := newLexFixture(t)
	ctx := context.Background()
	latin := f.connect(t)
	want := map[string]string{}
	for _, c := range []struct {
		sql  string
		keys map[string]string
	}{
		{"SET client_encoding = 'LATIN1'", nil},
		{f.sub("insert into {kt} values ('caf\xe9', 1)"), map[string]string{"café": "1"}},
		{f.sub("insert into {kt} values ($$d\xe9j\xe0$$, 2), (E'\\u00e9t\xe9', 3)"), map[string]string{"déjà": "2", "été": "3"}},
		{f.sub("SET client_encoding = 'UTF8'; insert into {kt} values ('na\xc3\xafve', 4)"), map[string]string{"naïve": "4"}},
		{"SET client_encoding = 'WIN1252'", nil},
		{f.sub("insert into {kt} values ('\x80uro', 5)"), map[string]string{"€uro": "5"}},
		{"SET client_encoding = 'LATIN1'", nil},
		{f.sub("insert into {kt} values ('plain', 6)"), map[string]string{"plain": "6"}},
		// Bytes that are UTF-8 too: LATIN1 reads "Ã©" where UTF-8 would read "é".
		{f.sub("insert into {kt} values ('\xc3\xa9t\xc3\xa9', 7)"), map[string]string{"Ã©tÃ©": "7"}},
		{f.sub("insert into {kt} select 'x\xc3\xa9', 8"), map[string]string{"xÃ©": "8"}},
		// ASCII with escapes: read alike.
		{f.sub("insert into {kt} values (E'\\u00e9t\\u00e9', 9), (U&'x\\00e9', 10)"), map[string]string{"été": "9", "xé": "10"}},
	} {
		_, err := latin.PgConn().Exec(ctx, c.sql).ReadAll()
		switch {
		case err == nil:
			for k, n := range c.keys {
				want[k] = n
			}
		case sqlstate(err) == "0A000":
			t.Logf("refused: %q: %v", c.sql, err)
		default:
			t.Errorf("%q: %v", c.sql, err)
		}
	}
	utf := f.connect(t)
	for _, k := range []string{"café", "déjà", "été", "naïve", "€uro", "plain", "Ã©tÃ©", "xÃ©", "été", "xé"} {
		if got := lexOutcome(utf, f.sub(fmt.Sprintf("select n from {kt} where k = '%s'", k))); got != want[k] {
			t.Errorf("key %q: %q, want %q", k, got, want[k])
		}
	}
	if got := lexOutcome(utf, f.sub("select count(*) from {kt}")); got != fmt.Sprint(len(want)) {
		t.Errorf("%s rows, want %d", got, len(want))
	}
}

// A statement pgshard cannot parse (here: bytes that are not UTF-8, which its parser does
// not read)
// was planned as its raw text and cached under its shape (its literals left out): every
// later statement of the same shape, in any session, of any role, got the first one's
// plan: refused, or the first statement's text parsed (its literals in the error) or,
// before any table is distributed, run in its place.
func TestAttack3UnparsedPlanShared(t *testing.T) {
	f := newLexFixture(t)
	ctx := context.Background()
	proxy := f.connect(t)
	mustExec(t, proxy, f.sub("insert into {kt} values ('plain', 6), ('x', 7)"))
	a := f.connect(t)
	// SQL_ASCII: the bytes go to PostgreSQL as they are (which finds them invalid).
	mustExec(t, a, "SET client_encoding = 'SQL_ASCII'")
	for _, s := range []string{"select n from {kt} where k = 'caf\xe9'", "select n from {kt} where k = 'caf\xe9' and n = 'secret\xe9'"} {
		if _, err := a.PgConn().Exec(ctx, f.sub(s)).ReadAll(); err == nil {
			t.Logf("%q ran", s)
		}
	}
	b := f.connect(t)
	for _, c := range []struct{ sql, want string }{
		{"select n from {kt} where k = 'plain'", "6"},
		{"select n from {kt} where k = 'x' and n = '7'", "7"},
	} {
		if got := lexOutcome(b, f.sub(c.sql)); got != c.want {
			t.Errorf("%s: %s, want %s", f.sub(c.sql), got, c.want)
		}
	}
}

// Other ways to turn standard_conforming_strings off and on again.
func TestAttack3LexingSetForms(t *testing.T) {
	f := newLexFixture(t)
	proxy, plain := f.connect(t), f.connectPlain(t)
	probe := `select 'x\', v from {kv} where id = 1 --'`
	f.same(t, proxy, plain,
		`insert into {kv} values (1, 'one')`,
		`SET SESSION standard_conforming_strings = 'off'`, probe,
		`SET standard_conforming_strings TO DEFAULT`, probe,
		`SET standard_conforming_strings = false`, probe,
		`SET standard_conforming_strings = off`)
	// RESET ALL and DISCARD ALL reset the plain connection's search_path too: set again.
	for _, reset := range []string{`RESET ALL`, `DISCARD ALL`} {
		f.same(t, proxy, plain, `SET standard_conforming_strings = off`, reset)
		mustExec(t, plain, "SET search_path = "+f.schema+", public")
		f.same(t, proxy, plain, probe)
	}
	f.same(t, proxy, plain,
		`BEGIN`, `select pg_catalog.set_config('standard_conforming_strings', 'off', true)`, probe, `COMMIT`, probe,
		`BEGIN`, `SET standard_conforming_strings = off`, `SAVEPOINT s`, `SET standard_conforming_strings = on`, probe, `ROLLBACK TO s`, probe, `RELEASE s`, `COMMIT`, probe,
		`BEGIN`, `SAVEPOINT s`, `SET standard_conforming_strings = on`, `select 1/0`, `ROLLBACK TO s`, probe, `ROLLBACK`, probe,
		`SET standard_conforming_strings = 'of'`, probe,
	)
	f.check(t, plain)
}

// Second wave (issue 11): SET, RESET and DISCARD planned from the parse tree, startup
// settings restored by RESET, and the settings the workers of a distributed read or write
// must share with the client's session.

// newSettingsFixture adds to a lexFixture a distributed table whose values print
// according to DateStyle, TimeZone, extra_float_digits, bytea_output and IntervalStyle,
// and its plain twin; it returns the statement that reads it back from one shard and from
// all of them.
func newSettingsFixture(t *testing.T) (*lexFixture, string) {
	f := newLexFixture(t)
	tbl := uniqueName("a3set")
	ddl := "CREATE TABLE %s (id int PRIMARY KEY, ts timestamptz, d date, f float8, b bytea, iv interval, t timestamp)"
	conn := f.connect(t)
	distribute(t, conn, fmt.Sprintf(ddl, tbl), tbl, "id", 4, 1)
	mustExec(t, f.connectPlain(t), fmt.Sprintf(ddl, tbl))
	ins := fmt.Sprintf(`INSERT INTO %s VALUES (1, '2003-02-01 04:05:06.789+00', '2003-02-01', 0.1, '\x00ff41', '1 day 02:03:04.5', '2003-02-01 04:05:06'), (2, '1999-12-31 23:59:59+05', '1999-12-31', 1e100/3, 'ab', '-1 year 2 mons', '1999-12-31 23:00')`, tbl)
	mustExec(t, conn, ins)
	mustExec(t, f.connectPlain(t), ins)
	probe := fmt.Sprintf(`select id, ts, d, f, b, iv, t, ts::text, now() - now() from %[1]s where id = 1; select id, ts, d, f, b, iv, t from %[1]s order by id`, tbl)
	return f, probe
}

// settingsPlain connects to plain PostgreSQL as the fixture's role with its twins' schema
// first in search_path from the startup packet (so that RESET ALL keeps it), and the
// options given.
func settingsPlain(t *testing.T, f *lexFixture, options string) *pgx.Conn {
	return f.open(t, env.C.Coordinator.Addr(), startupOptions("-c search_path="+f.schema+",public "+options))
}

// startupOptions is the URL parameter that sends options in the startup packet.
func startupOptions(o string) string {
	return "options=" + strings.NewReplacer(" ", "%20", "=", "%3D", ",", "%2C").Replace(strings.TrimSpace(o))
}

// Every form of SET of the settings that change how a worker's answer reads: the rows of
// a distributed table print as the same rows of a plain table do.
func TestAttack3SetFormsReachWorkers(t *testing.T) {
	f, probe := newSettingsFixture(t)
	proxy, plain := f.connect(t), settingsPlain(t, f, "")
	show := `show DateStyle; show TimeZone; show extra_float_digits; show bytea_output; show IntervalStyle`
	f.same(t, proxy, plain, probe,
		`SET DateStyle = 'SQL, DMY'`, probe,
		`SET SESSION DateStyle TO German`, probe,
		`set datestyle to default`, probe,
		`/* c */ SET /* inside */ "DateStyle" = 'Postgres, MDY' -- trailing`, probe,
		`SET TIME ZONE 'Asia/Kolkata'`, probe,
		`SET TIME ZONE INTERVAL '-08:00' HOUR TO MINUTE`, probe,
		`SET TIME ZONE LOCAL`, probe,
		`SET "TimeZone" TO 'America/St_Johns'`, probe,
		`SET TimeZone FROM CURRENT`, probe,
		`SET TIME ZONE DEFAULT`, probe,
		`SET extra_float_digits = 0`, probe,
		`SET extra_float_digits TO -3`, probe,
		`SET bytea_output = escape`, probe,
		`SET IntervalStyle = 'postgres_verbose'`, probe,
		`SET intervalstyle = iso_8601`, probe, show,
		`RESET extra_float_digits`, probe,
		`RESET "IntervalStyle"`, probe,
		`set DateStyle = 'SQL, DMY'; set TimeZone = 'Pacific/Chatham'`, probe,
		`RESET ALL`, probe, show,
		`SET DateStyle = 'SQL, DMY'`, `DISCARD ALL`, probe, show,
		`SET DateStyle = 'SQL, DMY'`, `DISCARD PLANS`, `DISCARD SEQUENCES`, `DISCARD TEMP`, probe, show,
	)
}

// Inside and around transaction blocks: SET LOCAL, set_config(..., true), RESET ALL rolled
// back, a failed block, DISCARD ALL (25001), and settings changed in a multi-statement
// string that fails.
func TestAttack3SetInBlocks(t *testing.T) {
	f, probe := newSettingsFixture(t)
	proxy, plain := f.connect(t), settingsPlain(t, f, "")
	show := `show DateStyle; show TimeZone; show extra_float_digits; show bytea_output; show IntervalStyle`
	f.same(t, proxy, plain,
		`BEGIN`, `SET LOCAL DateStyle = 'SQL, DMY'`, probe, `COMMIT`, probe,
		`BEGIN`, `SET TimeZone = 'Asia/Tokyo'`, probe, `ROLLBACK`, probe,
		`BEGIN`, `select pg_catalog.set_config('TimeZone', 'Asia/Tokyo', true)`, probe, `COMMIT`, probe,
		`select pg_catalog.set_config('TimeZone', 'Asia/Tokyo', true)`, probe,
		`select pg_catalog.set_config('extra_float_digits', '-2', true), pg_catalog.set_config('bytea_output', 'escape', false)`, probe,
		`SET DateStyle = German`, `BEGIN`, `RESET ALL`, probe, `ROLLBACK`, probe, show,
		`BEGIN`, `DISCARD ALL`, `ROLLBACK`, probe, show,
		`BEGIN`, `select 1/0`, `RESET ALL`, `SET TimeZone = 'UTC'`, `ROLLBACK`, probe, show,
		`BEGIN`, `SAVEPOINT a`, `RESET ALL`, probe, `ROLLBACK TO a`, probe, `COMMIT`, probe, show,
		`BEGIN`, `SET LOCAL DateStyle TO DEFAULT`, probe, `COMMIT`, probe,
		`SET IntervalStyle = sql_standard; RESET ALL; select 1/0`, probe, show,
		`SET IntervalStyle = sql_standard; select 1/0`, probe, show,
		`RESET ALL; SET DateStyle = 'SQL, DMY'`, probe, show,
	)
}

// Settings from the startup packet (options=-c): RESET name, RESET ALL, DISCARD ALL and
// SET name TO DEFAULT (also SET LOCAL) return to them, not to the server's defaults.
func TestAttack3StartupSettingsRestored(t *testing.T) {
	f, probe := newSettingsFixture(t)
	opts := "-c DateStyle=SQL,DMY -c TimeZone=Asia/Kathmandu -c extra_float_digits=1 -c bytea_output=escape -c intervalstyle=postgres_verbose"
	proxy := f.connect(t, startupOptions(opts))
	plain := settingsPlain(t, f, opts)
	show := `show DateStyle; show TimeZone; show extra_float_digits; show bytea_output; show IntervalStyle`
	reset := `SET DateStyle = ISO; SET TimeZone = UTC; SET extra_float_digits = 3; SET bytea_output = hex; SET IntervalStyle = postgres`
	f.same(t, proxy, plain, probe, show,
		reset, `RESET DateStyle`, `reset timezone`, probe, show,
		reset, `RESET ALL`, probe, show,
		reset, `DISCARD ALL`, probe, show,
		reset, `SET DateStyle TO DEFAULT`, `SET TIME ZONE DEFAULT`, `SET bytea_output = DEFAULT`, probe, show,
		reset, `BEGIN`, `SET LOCAL DateStyle TO DEFAULT`, `SET LOCAL TimeZone TO DEFAULT`, probe, show, `COMMIT`, probe, show,
		`BEGIN`, `RESET ALL`, probe, show, `ROLLBACK`, probe, show,
		reset, `RESET ALL; select 1/0`, probe, show,
		`BEGIN`, `select 1/0`, `RESET ALL`, `ROLLBACK`, probe, show,
	)
}

// Partition keys through router.Bind at the edges of their types: the smallest and
// largest integers, zero and negative zero, NaN and infinities, special date and
// timestamp words, the empty string, the nil and max UUIDs; written every way
// keys_test.go writes a key, compared with a plain table, found again by key, and each row
// in the shard of PostgreSQL's own hash.
func TestAttack3KeyEdges(t *testing.T) {
	conn := connect(t)
	plain := connectServer(t, env.C.Coordinator)
	ways := keyWays(plain)
	// DateADT is days from 2000-01-01, infinity the int4 extremes.
	dateHash := "hashint4(CASE WHEN k = 'infinity' THEN 2147483647 WHEN k = '-infinity' THEN -2147483648 ELSE k - date '2000-01-01' END)"
	for _, kt := range []keyType{
		{name: "e_int2", decl: "smallint", base: "int2", hash: "hashint2(k)", values: []string{"-32768", "32767", "0", "-0", "+5", "32768"}},
		{name: "e_int4", decl: "integer", base: "int4", hash: "hashint4(k)", values: []string{"-2147483648", "2147483647", "0", "-0", "2147483648", "1_000"}},
		{name: "e_int8", decl: "bigint", base: "int8", hash: "hashint8(k)", values: []string{"-9223372036854775808", "9223372036854775807", "0", "-1", "4294967296"}},
		{name: "e_numeric", decl: "numeric", base: "numeric", hash: "hash_numeric(k)", values: []string{"NaN", "Infinity", "-Infinity", "0", "-0.000", "1e100", "123456789012345678901234567890.5", "-1e-20"}},
		{name: "e_numeric3", decl: "numeric(3)", base: "numeric", hash: "hash_numeric(k)", values: []string{"999.4", "-999.5", "NaN", "Infinity"}},
		{name: "e_text", decl: "text", base: "text", hash: "hashtext(k)", values: []string{"", "a'b", " ", "NULL"}},
		{name: "e_varchar3", decl: "varchar(3)", base: "varchar", hash: "hashtext(k)", values: []string{"", "ab   ", "abcd"}},
		{name: "e_char3", decl: "char(3)", base: "bpchar", hash: "hashbpchar(k)", values: []string{"", "a", "   "}},
		{name: "e_uuid", decl: "uuid", base: "uuid", hash: "uuid_hash(k)", values: []string{"00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "a0eebc999c0b4ef8bb6d6bb9bd380a11"}},
		{name: "e_date", decl: "date", base: "date", hash: dateHash, values: []string{"infinity", "-infinity", "epoch", "today", "4713-01-01 BC", "5874897-12-31", "2000-01-01"}},
		{name: "e_timestamp", decl: "timestamp", base: "timestamp", hash: "timestamp_hash(k)", values: []string{"infinity", "-infinity", "epoch", "today", "294276-12-31 23:59:59.999999", "4713-01-01 00:00 BC", "2000-01-01"}},
		{name: "e_bool", decl: "boolean", base: "bool", hash: `hashchar(k::int::"char")`, values: []string{"yes", "off", "1", "0", " t ", "maybe"}},
	} {
		t.Run(kt.name, func(t *testing.T) { checkKeyType(t, conn, plain, ways, kt) })
	}
}

// Admin statements by the extended protocol with binary results, as pgx asks for an
// integer column it has described: the DataRows must be in the format the Bind asked for
// and RowDescription announced (a text "36001" read as a binary int4 is garbage).
func TestAttack3AdminBinaryResults(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{"SHOW NODES", "show nodes ;", "/* c */ SHOW NODES"} {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		n := 0
		for rows.Next() {
			var name, registered string
			var port, fin, inact int32
			if err := rows.Scan(&name, &port, &registered, &fin, &inact); err != nil {
				t.Fatalf("%s: scan: %v", q, err)
			}
			if port <= 0 || port > 65535 {
				t.Errorf("%s: port %d", q, port)
			}
			n++
		}
		if rows.Err() != nil || n != len(env.C.Workers) {
			t.Errorf("%s: %d rows, %v", q, n, rows.Err())
		}
	}
	var shards int64
	var minv, maxv int32
	tbl := uniqueName("a3adm")
	distribute(t, connect(t), fmt.Sprintf("CREATE TABLE %s (id int)", tbl), tbl, "id", 2, 1)
	if err := conn.QueryRow(ctx, "SHOW SHARDS "+tbl).Scan(new(string), &shards, &minv, &maxv, new(int32), new(int32), new(int32)); err != nil {
		t.Fatalf("SHOW SHARDS: %v", err)
	}
	if shards <= 0 || minv != -2147483648 {
		t.Errorf("SHOW SHARDS: shard %d, min %d", shards, minv)
	}
	// Per-column formats: text for the first column, binary for the rest.
	rr := conn.PgConn().ExecParams(ctx, "SHOW NODES", nil, nil, nil, []int16{0, 1, 0, 1, 1}).Read()
	if rr.Err != nil || len(rr.Rows) == 0 || len(rr.Rows[0][1]) != 4 || string(rr.Rows[0][0]) == "" {
		t.Errorf("per-column formats: %v %q", rr.Err, rr.Rows)
	}
}

// SET, RESET and DISCARD in extended-protocol pipelines, with startup settings, in and out
// of blocks and savepoints: the reads parsed after them see what PostgreSQL's would. A
// DISCARD ALL refused in a block (25001) skips the pipeline up to Sync; the proxy's
// restoring of the startup settings after it failed answered a second error (25P02).
func TestAttack3SetInPipelines(t *testing.T) {
	f, probe := newSettingsFixture(t)
	opts := "-c DateStyle=SQL,DMY -c TimeZone=Asia/Kathmandu -c intervalstyle=postgres_verbose"
	proxy := f.connect(t, startupOptions(opts))
	plain := settingsPlain(t, f, opts)
	one := probe[:strings.Index(probe, ";")]
	all := strings.TrimSpace(probe[strings.Index(probe, ";")+1:])
	for _, stmts := range [][]string{
		{"SET TimeZone = 'UTC'", one, all, "RESET TimeZone", one, all},
		{"BEGIN", "SET LOCAL DateStyle = ISO", one, "SET LOCAL TimeZone TO DEFAULT", all, "DISCARD TEMP", "DISCARD SEQUENCES", "DISCARD PLANS", one, "RESET ALL", all, "COMMIT", one},
		{"BEGIN", "SET IntervalStyle = iso_8601", all, "DISCARD ALL", one, "ROLLBACK"},
		{"ROLLBACK", one},
		{"BEGIN", "select 1/0", "RESET ALL", one},
		{"ROLLBACK", all},
		{"SET bytea_output = escape", "select pg_catalog.set_config('extra_float_digits', '-1', false)", one, all, "RESET ALL", one},
		{"BEGIN", "SAVEPOINT a", "SET TimeZone = 'UTC'", one, "ROLLBACK TO a", all, "SET TimeZone TO DEFAULT", one, "RELEASE a", "COMMIT", all},
	} {
		got, want := pipelineOutcome(t, proxy, stmts...), pipelineOutcome(t, plain, stmts...)
		if got != want {
			t.Errorf("%q\n pgshard:    %s\n PostgreSQL: %s", stmts, got, want)
		}
	}
}
