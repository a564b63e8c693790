package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/tests/cluster"
)

// procProxy is `pgshard serve` running as a process of its own, in front of the shared
// cluster: a crash of the proxy (a SIGSEGV in the C parser, a Go stack overflow) then shows
// as an exited process the test can report, instead of killing the test binary.
type procProxy struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// pgshardBinary builds cmd/pgshard once per test process, in a directory removed when the
// process ends.
func pgshardBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..")
		dir, err := cluster.TempDir("pgshard-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir.Path, "pgshard")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/pgshard")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// startProcProxy starts a proxy process for the test and stops it when the test ends.
func startProcProxy(t testing.TB) *procProxy {
	t.Helper()
	bin := pgshardBinary(t)
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &procProxy{addr: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--listen", p.addr, "--coordinator", env.C.Coordinator.URL("postgres"),
		"--repair-interval", "0", "--log-level", "error")
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	for i := 0; ; i++ {
		c, err := pgx.Connect(context.Background(), p.url())
		if err == nil {
			c.Close(context.Background())
			return p
		}
		if i > 400 || p.exited() {
			t.Fatalf("pgshard serve did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *procProxy) url() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", p.addr)
}

func (p *procProxy) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// checkAlive fails the test, loudly, when the proxy process has died.
func (p *procProxy) checkAlive(t testing.TB, after string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(100 * time.Millisecond):
		return
	}
	t.Fatalf("THE PROXY PROCESS DIED after %s: %v (its stderr, with the crash, is above)", after, p.err)
}

func (p *procProxy) connect(t testing.TB, simple bool) *pgx.Conn {
	t.Helper()
	url := p.url()
	if simple {
		url += "&default_query_exec_mode=simple_protocol"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		p.checkAlive(t, "connecting")
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// outcome is what a statement gave: its result as text, or its SQLSTATE.
func outcome(ctx context.Context, c *pgx.Conn, sql string) string {
	var s *string
	err := c.QueryRow(ctx, sql).Scan(&s)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		return "ERROR " + pe.Code
	case err != nil:
		return "FAILED " + err.Error()
	case s == nil:
		return "NULL"
	}
	return *s
}

// chain repeats op n times after first.
func chain(first, op string, n int) string {
	return first + strings.Repeat(op, n)
}

// nest wraps inner in n pairs of open and close.
func nest(open, inner, close string, n int) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

// deepShape is a statement to send and, when extended is set, to send through the
// extended protocol too.
type deepShape struct {
	name, sql string
	extended  bool
}

// deepShapes are statements nested every way the grammar allows, at depths on both sides of
// PostgreSQL's own limit (with the default max_stack_depth of 2MB): operator chains, casts,
// IS NULL and COLLATE chains, set operations and joins build left-deep trees of any depth
// without using the parser's stack; parentheses, function calls, subqueries, CASE, NOT,
// unary minus and ARRAY nest through the parser's stack (bison's, limited to 10,000
// entries). Sizes are chosen to keep the test within seconds.
func deepShapes(dist string) []deepShape {
	var m []deepShape
	add := func(extended bool, name, sql string) { m = append(m, deepShape{name, sql, extended}) }
	// The reproduction of defect 8, exactly: 25,000 terms (50 KB).
	add(true, "plus 25000", "SELECT "+chain("1", "+1", 24999))
	add(false, "plus 3000", "SELECT ("+chain("1", "+1", 3000)+")::text")
	add(false, "plus 200000", "SELECT ("+chain("1", "+1", 200000)+")::text")
	add(true, "cast 12000", "SELECT "+chain("1", "::int", 12000)+"::text")
	add(false, "cast 30000", "SELECT "+chain("1", "::int", 30000)+"::text")
	add(false, "isnull 10000", "SELECT ("+chain("1", " IS NULL", 10000)+")::text")
	add(false, "isnull 30000", "SELECT ("+chain("1", " IS NULL", 30000)+")::text")
	add(false, "collate 10000", "SELECT "+chain("'a'", ` COLLATE "C"`, 10000))
	add(false, "collate 30000", "SELECT "+chain("'a'", ` COLLATE "C"`, 30000))
	add(false, "json 3000", "SELECT ("+chain(`'{"a":1}'::jsonb`, "->'a'", 3000)+")::text")
	add(false, "json 30000", "SELECT ("+chain(`'{"a":1}'::jsonb`, "->'a'", 30000)+")::text")
	add(false, "concat 3000", "SELECT length("+chain("'a'", "||'a'", 3000)+")::text")
	add(false, "union 1000", "SELECT count(*)::text FROM ("+chain("SELECT 1", " UNION ALL SELECT 1", 1000)+") s")
	add(false, "union 60000", "SELECT count(*)::text FROM ("+chain("SELECT 1", " UNION ALL SELECT 1", 60000)+") s")
	add(false, "join 1000", "SELECT count(*)::text FROM "+chain("(SELECT 1 a) t", " JOIN (SELECT 1 a) u USING (a)", 1000))
	add(false, "join 60000", "SELECT count(*)::text FROM "+chain("(SELECT 1 a) t", " JOIN (SELECT 1 a) u USING (a)", 60000))
	for _, n := range []int{1000, 30000} {
		add(n > 1000, fmt.Sprintf("parens %d", n), "SELECT "+nest("(", "1", ")", n)+"::text")
		add(false, fmt.Sprintf("functions %d", n), "SELECT "+nest("abs(", "1", ")", n)+"::text")
		add(false, fmt.Sprintf("subqueries %d", n), "SELECT "+nest("(SELECT ", "1", ")", n)+"::text")
		add(false, fmt.Sprintf("case %d", n), "SELECT "+nest("CASE WHEN true THEN ", "1", " END", n)+"::text")
		add(false, fmt.Sprintf("not %d", n), "SELECT ("+nest("NOT ", "true", "", n)+")::text")
		add(false, fmt.Sprintf("minus %d", n), "SELECT "+nest("- ", "1", "", n)+"::text")
		add(false, fmt.Sprintf("arrays %d", n), "SELECT "+nest("ARRAY[", "1", "]", n)+"::text")
	}
	// Long but flat: PostgreSQL runs these, and so must pgshard.
	add(false, "and 20000", "SELECT ("+chain("true", " AND true", 20000)+")::text")
	add(false, "or 20000", "SELECT ("+chain("1=0", " OR 1=1", 20000)+")::text")
	add(false, "case 10000 branches", "SELECT CASE 7"+strings.Repeat(" WHEN 1 THEN 'x'", 10000)+" ELSE 'y' END")
	in := make([]string, 100000)
	for i := range in {
		in[i] = fmt.Sprint(i)
	}
	add(false, "in 100000", "SELECT (99999 IN ("+strings.Join(in, ",")+"))::text")
	add(false, "values 100000", "SELECT count(*)::text FROM (VALUES ("+strings.Join(in, "),(")+")) v")
	// Over a distributed table: a statement PostgreSQL accepts must reach the shards (not
	// the coordinator's empty prototype), one it refuses must fail the same way.
	add(true, "dist cast 6000", "SELECT count(*)::text FROM "+dist+" WHERE v"+strings.Repeat("::int", 6000)+" > 0")
	add(false, "dist plus 3000", "SELECT count(*)::text FROM "+dist+" WHERE v < "+chain("0", "+1", 3000))
	add(false, "dist in 5000", "SELECT count(*)::text FROM "+dist+" WHERE k IN ("+strings.Join(in[:5000], ",")+")")
	return m
}

// TestDeepStatements (issue 9, defect 8): SELECT 1+1+...+1 with 25,000 terms crashed the
// proxy (SIGSEGV in the C parser's protobuf output), 5,000 to 20,000 terms were sent to the
// coordinator unparsed. Every shape, through both protocols, must now give what a plain
// PostgreSQL gives: the same result, or the same SQLSTATE (54001 for what is too deep),
// and the proxy must stay up.
func TestDeepStatements(t *testing.T) {
	ctx := context.Background()
	p := startProcProxy(t)
	admin := p.connect(t, true)
	dist := uniqueName("deep")
	distribute(t, admin, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", dist), dist, "k", 4, 1)
	plain := uniqueName("deep_plain")
	mustExec(t, admin, fmt.Sprintf("INSERT INTO %s SELECT g, g %% 5000 FROM generate_series(1, 3000) g", dist))
	direct := connectServer(t, env.C.Coordinator)
	mustExec(t, direct, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", plain),
		fmt.Sprintf("INSERT INTO %s SELECT g, g %% 5000 FROM generate_series(1, 3000) g", plain))
	shapes := deepShapes(dist)
	for _, simple := range []bool{true, false} {
		c := p.connect(t, simple)
		for _, sh := range shapes {
			if !simple && !sh.extended {
				continue
			}
			name, sql := sh.name, sh.sql
			t0 := time.Now()
			want := outcome(ctx, direct, strings.ReplaceAll(sql, dist, plain))
			t1 := time.Now()
			got := outcome(ctx, c, sql)
			if d := time.Since(t1); d > time.Second {
				t.Logf("%s (simple protocol %v): %v through the proxy, %v in PostgreSQL", name, simple, d.Round(time.Millisecond), t1.Sub(t0).Round(time.Millisecond))
			}
			p.checkAlive(t, fmt.Sprintf("%q (%d bytes, simple protocol %v)", name, len(sql), simple))
			if got != want {
				t.Errorf("%s (simple protocol %v): proxy %q, PostgreSQL %q", name, simple, got, want)
			}
			if strings.HasPrefix(got, "FAILED") {
				c = p.connect(t, simple)
			}
		}
		// The session goes on.
		if got := outcome(ctx, c, "SELECT count(*)::text FROM "+dist); got != "3000" {
			t.Fatalf("after the deep statements: %s", got)
		}
	}
	// 54001 comes with PostgreSQL's message and hint.
	_, err := admin.Exec(ctx, "SELECT "+chain("1", "+1", 60000))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "54001" || pe.Message != "stack depth limit exceeded" || !strings.Contains(pe.Hint, "max_stack_depth") {
		t.Errorf("60,000 terms: %v", err)
	}
}

// soakDuration is how long TestAdversarialSoak runs: a few seconds in make test,
// PGSHARD_SOAK=2m (any Go duration) for a longer run.
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("PGSHARD_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("PGSHARD_SOAK: %v", err)
		}
		return d
	}
	return 4 * time.Second
}

// attack is one adversarial input: what it is, and the bytes a client sends after its
// startup (or instead of it, when raw is set).
type attack struct {
	name string
	raw  bool
	data []byte
}

func msg(typ byte, body ...[]byte) []byte {
	n := 4
	for _, b := range body {
		n += len(b)
	}
	out := []byte{typ, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	for _, b := range body {
		out = append(out, b...)
	}
	return out
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func query(sql string) []byte { return msg('Q', cstr(sql)) }

// parseMsg is Parse (unnamed, no parameter types) of sql.
func parseMsg(sql string) []byte { return msg('P', cstr(""), cstr(sql), []byte{0, 0}) }

var syncMsg = msg('S')

// attacks returns a random adversarial input against table dist.
func randomAttack(rng *rand.Rand, dist string) attack {
	shapes := []func(n int) string{
		func(n int) string { return "SELECT " + chain("1", "+1", n) },
		func(n int) string { return "SELECT " + chain("1", "::int", n) },
		func(n int) string { return "SELECT 1 FROM " + dist + " WHERE k = " + chain("1", "*1", n) },
		func(n int) string { return "SELECT " + nest("(", "1", ")", n) },
		func(n int) string { return "SELECT " + nest("abs(", "1", ")", n) },
		func(n int) string { return "SELECT " + nest("(SELECT ", "1", ")", n) },
		func(n int) string { return "SELECT " + nest("CASE WHEN true THEN ", "1", " END", n) },
		func(n int) string { return "SELECT " + nest("ARRAY[", "1", "]", n) },
		func(n int) string { return "SELECT " + nest("NOT ", "true", "", n) },
		func(n int) string { return "SELECT " + chain("'{}'::jsonb", "->'a'", n) },
		func(n int) string { return "SELECT count(*) FROM " + chain(dist+" t", " JOIN "+dist+" USING (k)", n) },
		func(n int) string { return chain("SELECT 1", " UNION SELECT 1", n) },
		func(n int) string { return "SELECT " + chain("'a'", ` COLLATE "C"`, n) },
		func(n int) string { return "SELECT " + chain("true", " AND NOT true", n) },
	}
	depths := []int{10, 1000, 5000, 30000, 200000}
	ident := func(n int) string { return strings.Repeat("x", n) }
	switch rng.Intn(12) {
	case 0, 1:
		sql := shapes[rng.Intn(len(shapes))](depths[rng.Intn(len(depths))])
		if rng.Intn(2) == 0 {
			return attack{name: "deep statement (Query)", data: query(sql)}
		}
		return attack{name: "deep statement (Parse)", data: append(append(parseMsg(sql), msg('B', cstr(""), cstr(""), []byte{0, 0, 0, 0, 0, 0})...), append(msg('E', cstr(""), []byte{0, 0, 0, 0}), syncMsg...)...)}
	case 2:
		vals := make([]string, 20000+rng.Intn(80000))
		for i := range vals {
			vals[i] = fmt.Sprint(rng.Intn(1 << 30))
		}
		return attack{name: "huge IN list", data: query("SELECT count(*) FROM " + dist + " WHERE k IN (" + strings.Join(vals, ",") + ")")}
	case 3:
		n := []int{64, 1000, 100000, 1 << 20}[rng.Intn(4)]
		sqls := []string{
			"SELECT 1 AS " + ident(n),
			`SELECT 1 AS "` + ident(n) + `"`,
			"SELECT " + ident(n) + " FROM " + dist,
			"CREATE TEMP TABLE " + ident(n) + " (a int)",
			"SELECT * FROM " + dist + " " + ident(n) + " WHERE " + ident(n) + ".k = 1",
			"PREPARE " + ident(n) + " AS SELECT 1",
			"SET application_name = '" + ident(n) + "'",
		}
		return attack{name: "long identifier", data: query(sqls[rng.Intn(len(sqls))])}
	case 4:
		sqls := []string{
			"SELECT 'a\x00b'", "SELECT 1 AS \"a\x00b\"", "SELECT * FROM " + dist + " WHERE k = 1\x00; DROP TABLE " + dist,
			"INSERT INTO " + dist + " VALUES (1\x00, 2)", "\x00", "SELECT 1;\x00SELECT 2",
		}
		sql := sqls[rng.Intn(len(sqls))]
		if rng.Intn(2) == 0 {
			return attack{name: "NUL byte (Query)", data: query(sql)}
		}
		return attack{name: "NUL byte (Parse)", data: append(parseMsg(sql), syncMsg...)}
	case 5:
		bad := []string{"\xff", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82"}
		b := bad[rng.Intn(len(bad))]
		sqls := []string{
			"SELECT '" + b + "'", "SELECT 1 AS \"" + b + "\"", "SELECT * FROM " + dist + " WHERE k = 1 AND '" + b + "' = ''",
			"SELECT " + b, "SELECT * FROM " + dist + b, "COPY " + dist + " FROM STDIN",
		}
		data := query(sqls[rng.Intn(len(sqls))])
		if strings.HasPrefix(string(data[5:]), "COPY") {
			data = append(data, msg('d', []byte("1\t"+b+"\n"))...)
			data = append(data, msg('c')...)
		}
		return attack{name: "invalid UTF-8", data: data}
	case 6:
		// A message cut short, or one announcing more than it sends, then the
		// connection closes.
		m := query("SELECT count(*) FROM " + dist)
		switch rng.Intn(3) {
		case 0:
			return attack{name: "truncated message", data: m[:1+rng.Intn(len(m)-1)]}
		case 1:
			return attack{name: "oversized length", data: []byte{'Q', 0x3f, 0xff, 0xff, 0xff, 'S', 'E', 'L'}}
		default:
			return attack{name: "negative length", data: []byte{'P', 0xff, 0xff, 0xff, 0xf0, 0, 0}}
		}
	case 7:
		// Well-framed messages of every type with random bodies.
		var data []byte
		types := []byte("BCDEFHPQSXcdfpt")
		for i := 0; i < 1+rng.Intn(8); i++ {
			body := make([]byte, rng.Intn(64))
			rng.Read(body)
			data = append(data, msg(types[rng.Intn(len(types))], body)...)
		}
		return attack{name: "random messages", data: data}
	case 8:
		// Plausible extended-protocol sequences with wrong counts and formats.
		seqs := [][]byte{
			append(parseMsg("SELECT * FROM "+dist+" WHERE k = $1"), append(msg('B', cstr(""), cstr(""), []byte{0, 1, 0, 1}, []byte{0, 1, 0, 0, 0, 2, 0}, []byte{0, 0}), append(msg('E', cstr(""), []byte{0, 0, 0, 0}), syncMsg...)...)...),
			append(parseMsg("SELECT $1::int"), append(msg('B', cstr(""), cstr(""), []byte{0, 0}, []byte{0, 5}, []byte{0, 0}), syncMsg...)...),
			append(msg('B', cstr("nope"), cstr("nope"), []byte{0, 0, 0, 0, 0, 0}), syncMsg...),
			append(msg('E', cstr("nope"), []byte{0, 0, 0, 0}), syncMsg...),
			append(msg('D', []byte{'X'}, cstr("")), syncMsg...),
			append(msg('C', []byte{'S'}, cstr("x")), syncMsg...),
			append(msg('d', []byte("stray copy data")), msg('c')...),
			append(parseMsg("SELECT 1"), append(msg('B', cstr(""), cstr(""), []byte{0xff, 0xff}, []byte{0, 0}, []byte{0, 0}), syncMsg...)...),
			append(msg('F', []byte{0, 0, 0, 1}), syncMsg...),
		}
		return attack{name: "bad extended sequence", data: seqs[rng.Intn(len(seqs))]}
	case 9:
		// Random bytes from the first byte of the connection (the startup phase).
		b := make([]byte, 1+rng.Intn(256))
		rng.Read(b)
		if rng.Intn(2) == 0 && len(b) >= 8 {
			// A startup packet's framing around random contents.
			n := len(b)
			b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			b[4], b[5], b[6], b[7] = 0, 3, 0, 0
		}
		return attack{name: "random startup", raw: true, data: b}
	case 10:
		// A COPY that the client abandons half way, or feeds garbage.
		data := query("COPY " + dist + " FROM STDIN")
		data = append(data, msg('d', []byte("5\t5\n6\tnot a number\n"))...)
		if rng.Intn(2) == 0 {
			data = append(data, msg('f', cstr("client gave up"))...)
		}
		return attack{name: "broken COPY", data: data}
	default:
		// A valid long-running statement that the client leaves behind.
		return attack{name: "abandoned statement", data: query("SELECT pg_sleep(0.5), count(*) FROM " + dist)}
	}
}

// runAttack connects to the proxy, sends the attack, reads whatever comes back for a
// short while, and hangs up.
func runAttack(addr string, a attack) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if !a.raw {
		fe := pgproto3.NewFrontend(nc, nc)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "postgres", "database": "postgres"}})
		if err := fe.Flush(); err != nil {
			return err
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				return fmt.Errorf("startup: %w", err)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
	}
	if _, err := nc.Write(a.data); err != nil {
		return nil // the proxy may hang up first
	}
	// Read until the proxy has been quiet for a second (or hangs up).
	buf := make([]byte, 64<<10)
	for {
		nc.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := nc.Read(buf); err != nil {
			return nil
		}
	}
}

// TestAdversarialSoak (issue 9, class "adversarial input"): while sessions run a steady
// workload against a distributed table through a proxy process, another client sends
// everything a hostile or broken client might — statements nested every way and as deep
// as the input allows, huge IN lists, long identifiers, NUL bytes and invalid UTF-8 in
// strings and identifiers, truncated, oversized and random protocol messages, broken
// extended-protocol sequences and COPYs, garbage during startup. The workload sessions
// must never notice (no error, no disconnection, every result right), and the proxy
// process must stay up. PGSHARD_SOAK sets the duration, PGSHARD_SOAK_SEED the seed.
func TestAdversarialSoak(t *testing.T) {
	ctx := context.Background()
	p := startProcProxy(t)
	admin := p.connect(t, true)
	dist := uniqueName("soak")
	distribute(t, admin, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v int NOT NULL)", dist), dist, "k", 4, 2)
	const workers, keys = 3, 20
	mustExec(t, admin, fmt.Sprintf("INSERT INTO %s SELECT g, 0 FROM generate_series(0, %d) g", dist, workers*keys-1))

	seed := time.Now().UnixNano()
	if s := os.Getenv("PGSHARD_SOAK_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (PGSHARD_SOAK_SEED), duration %v (PGSHARD_SOAK)", seed, soakDuration(t))
	deadline := time.Now().Add(soakDuration(t))

	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	counts := make([][]int, workers)
	for w := 0; w < workers; w++ {
		counts[w] = make([]int, keys)
		c := p.connect(t, w%2 == 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed + int64(w)))
			for i := 0; time.Now().Before(deadline); i++ {
				key := rng.Intn(keys)
				k := w*keys + key
				var v int
				err := c.QueryRow(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE k = $1 RETURNING v", dist), k).Scan(&v)
				if err != nil {
					fail("worker %d: UPDATE: %v", w, err)
					return
				}
				counts[w][key]++
				if v != counts[w][key] {
					fail("worker %d: key %d is %d after %d increments", w, k, v, counts[w][key])
				}
				if i%5 == 0 {
					var n, sum int
					if err := c.QueryRow(ctx, fmt.Sprintf("SELECT count(*), sum(v) FILTER (WHERE k / %d = %d) FROM %s", keys, w, dist)).Scan(&n, &sum); err != nil {
						fail("worker %d: count: %v", w, err)
						return
					}
					want := 0
					for _, x := range counts[w] {
						want += x
					}
					if n != workers*keys || sum != want {
						fail("worker %d: count %d sum %d, want %d and %d", w, n, sum, workers*keys, want)
					}
				}
			}
		}()
	}
	// Several adversaries at once: a slow attack (a deep statement) does not hold up the
	// others.
	attacks := map[string]int{}
	for a := 0; a < 3; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed + 100 + int64(a)))
			for time.Now().Before(deadline) {
				at := randomAttack(rng, dist)
				mu.Lock()
				attacks[at.name]++
				mu.Unlock()
				if err := runAttack(p.addr, at); err != nil && !p.exited() {
					fail("attack %q: the proxy refused a new client: %v", at.name, err)
				}
				if p.exited() {
					fail("THE PROXY PROCESS DIED after the attack %q", at.name)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("attacks sent: %v", attacks)
	p.checkAlive(t, "the soak")
	for _, f := range failures {
		t.Error(f)
	}
	// Everything the workload wrote is there, on both placements.
	c := p.connect(t, true)
	for w := 0; w < workers; w++ {
		for key := 0; key < keys; key++ {
			if got := outcome(ctx, c, fmt.Sprintf("SELECT v::text FROM %s WHERE k = %d", dist, w*keys+key)); got != fmt.Sprint(counts[w][key]) {
				t.Errorf("key %d: %s, want %d", w*keys+key, got, counts[w][key])
			}
		}
	}
	checkPlacements(t, dist, "hashint4(k)")
}

// exchange sends raw messages after a startup and returns the types (and SQLSTATEs) of
// what comes back until the ReadyForQuery after them.
func exchange(t *testing.T, addr string, data []byte) []string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "postgres", "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("startup: %v", err)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if _, err := nc.Write(data); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		m, err := fe.Receive()
		if err != nil {
			return append(out, "closed")
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			out = append(out, "E "+m.Code+" "+m.Message)
		case *pgproto3.ReadyForQuery:
			return append(out, "Z "+string(m.TxStatus))
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			out = append(out, fmt.Sprintf("%T", m))
		}
	}
}

// TestNulInQuery: a Query message whose string holds a NUL before its end is an error in
// PostgreSQL ("invalid message format", nothing runs). The proxy parsed the text up to the
// NUL and sent the whole of it to the backends.
func TestNulInQuery(t *testing.T) {
	conn := connect(t)
	dist := uniqueName("nul")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", dist), dist, "k", 4, 1)
	for _, sql := range []string{
		"SELECT 1\x00",
		"SELECT 1\x00; SELECT 2",
		"SELECT * FROM " + dist + " WHERE k = 1\x00; DROP TABLE " + dist,
		"INSERT INTO " + dist + " VALUES (1, 1)\x00garbage",
		"BEGIN; SELECT 'a\x00b'",
	} {
		want := exchange(t, env.C.Coordinator.Addr(), query(strings.ReplaceAll(sql, dist, "pg_class")))
		got := exchange(t, env.P.Addr, query(sql))
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%q: proxy %q, PostgreSQL %q", sql, got, want)
		}
	}
	if n := queryString(t, conn, "SELECT count(*) FROM "+dist); n != "0" {
		t.Errorf("rows: %s", n)
	}
}
