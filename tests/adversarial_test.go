package tests

import (
	"context"
	"errors"
	"fmt"
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

// pgshardBinary builds cmd/pgshard once per test run.
func pgshardBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..")
		dir, err := os.MkdirTemp("", "pgshard-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "pgshard")
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
	add(false, "dist plus 25000", "SELECT count(*)::text FROM "+dist+" WHERE v < "+chain("0", "+1", 24990))
	add(false, "dist in 20000", "SELECT count(*)::text FROM "+dist+" WHERE k IN ("+strings.Join(in[:20000], ",")+")")
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
