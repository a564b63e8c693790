// Package localpg starts throwaway PostgreSQL servers from the installed server binaries:
// a coordinator and any number of workers, each a real postmaster on a free loopback port
// in a directory of its own. `pgshard demo` and the test suites (through tests/cluster)
// use it; it is internal because it is a tool of this repository, not an API.
//
// initdb runs once per process into a template directory that every server copies, so a
// cluster of five servers costs one initdb. PostgreSQL refuses to run as root; when the
// current user is root the servers run as the user "postgres" (override with
// PGSHARD_PGUSER) and their directories are handed to that user.
//
// Nothing it creates outlives the process. A server is stopped by Stop or Close, and
// otherwise by the kernel when the process dies (the postmaster's parent-death signal). A
// cluster's directory is removed by Close, a TempDir by Remove, and the template stays for
// the process's later clusters; every one of them, should it still exist when the process
// ends, however it ends (return from main, os.Exit, a panic, a test timeout, SIGKILL), is
// removed by a watcher process that waits for the end of its pipe from this process (see
// Dir).
package localpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Options configures a cluster.
type Options struct {
	// Workers is the number of worker servers besides the coordinator.
	Workers int
	// Dir is the parent directory for the servers' data directories. Empty means a new
	// temporary directory, removed by Close or, at the latest, when the process ends.
	Dir string
	// Settings are extra postgresql.conf lines (name = value) for every server.
	Settings []string
}

// Cluster is a coordinator and its workers.
type Cluster struct {
	Coordinator *Server
	Workers     []*Server

	dir  string
	temp *Dir // the temporary directory dir, when the cluster made it
}

// Start initializes and starts a coordinator and opts.Workers workers in parallel.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c := &Cluster{dir: opts.Dir}
	if c.dir == "" {
		d, err := TempDir("pgshard-cluster-")
		if err != nil {
			return nil, err
		}
		c.dir, c.temp = d.Path, d
	}
	dir := c.dir
	names := []string{"coordinator"}
	for i := 1; i <= opts.Workers; i++ {
		names = append(names, fmt.Sprintf("worker%d", i))
	}
	servers := make([]*Server, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = NewServer(ctx, filepath.Join(dir, name), opts.Settings)
			if errs[i] == nil {
				errs[i] = servers[i].Start(ctx)
			}
		}()
	}
	wg.Wait()
	c.Coordinator = servers[0]
	c.Workers = servers[1:]
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Servers returns the coordinator followed by the workers.
func (c *Cluster) Servers() []*Server {
	return append([]*Server{c.Coordinator}, c.Workers...)
}

// Close stops every server and removes the directories the cluster created.
func (c *Cluster) Close() error {
	var wg sync.WaitGroup
	for _, s := range c.Servers() {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Stop()
		}()
	}
	wg.Wait()
	if c.temp != nil {
		return c.temp.Remove()
	}
	return nil
}

// Server is one PostgreSQL server (a postmaster and its data directory).
type Server struct {
	Name string
	Dir  string // data directory
	Host string
	Port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// NewServer creates a data directory at dir (a copy of the process-wide template) on a free
// port. settings are extra postgresql.conf lines.
func NewServer(ctx context.Context, dir string, settings []string) (*Server, error) {
	tmpl, err := template(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", tmpl, dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("localpg: copy template: %w: %s", err, out)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(port),
		"unix_socket_directories = '" + dir + "'",
		"fsync = off",
		"full_page_writes = off",
		"max_connections = 300",
		"shared_buffers = 32MB",
		"max_prepared_transactions = 100",
		"logging_collector = off",
		"log_min_messages = warning",
	}
	conf = append(conf, settings...)
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	_, err = f.WriteString(strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("localpg: write config: %w", err)
	}
	if err := chownTree(dir); err != nil {
		return nil, err
	}
	return &Server{Name: filepath.Base(dir), Dir: dir, Host: "127.0.0.1", Port: port}, nil
}

// URL is a libpq connection URL for database db (default "postgres") as user postgres.
func (s *Server) URL(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", s.Host, s.Port, db)
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Start launches the postmaster and waits until it accepts connections.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return fmt.Errorf("localpg: %s already running", s.Name)
	}
	bin, err := BinDir()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("localpg: %w", err)
	}
	// The postmaster must not inherit the caller's context: it outlives Start.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		return fmt.Errorf("localpg: start %s: %w", s.Name, err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	return s.waitReady(ctx, done)
}

func (s *Server) waitReady(ctx context.Context, done chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, s.URL("postgres")+"&connect_timeout=2")
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("localpg: %s exited during startup: %s", s.Name, s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localpg: %s not ready after 60s: %w: %s", s.Name, err, s.logTail())
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Running reports whether the postmaster is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// signal sends sig to the postmaster and waits for it to exit.
func (s *Server) signal(sig syscall.Signal, wait time.Duration) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-done
	}
	s.mu.Lock()
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	return nil
}

// Stop shuts the server down (fast shutdown: running transactions are rolled back).
func (s *Server) Stop() error { return s.signal(syscall.SIGINT, 30*time.Second) }

// Crash stops the server as a crash would (immediate shutdown: no checkpoint, every
// connection dropped, crash recovery on the next start).
func (s *Server) Crash() error { return s.signal(syscall.SIGQUIT, 30*time.Second) }

// Restart stops the server (fast) and starts it again on the same port.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start(ctx)
}

// Exec runs sql (simple protocol, possibly several statements) in database db as postgres.
func (s *Server) Exec(ctx context.Context, db, sql string) ([]*pgconn.Result, error) {
	conn, err := pgconn.Connect(ctx, s.URL(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	return conn.Exec(ctx, sql).ReadAll()
}

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
)

// template runs initdb once per process and returns the data directory to copy. The
// template is kept for later clusters of the process and removed when it ends (see Dir).
func template(ctx context.Context) (string, error) {
	templateOnce.Do(func() {
		templateDir, templateErr = initTemplate(ctx)
	})
	return templateDir, templateErr
}

func initTemplate(ctx context.Context) (string, error) {
	bin, err := BinDir()
	if err != nil {
		return "", err
	}
	tmp, err := TempDir("pgshard-template-")
	if err != nil {
		return "", err
	}
	dir, err := initdb(ctx, bin, tmp.Path)
	if err != nil {
		tmp.Remove()
		return "", err
	}
	return dir, nil
}

// initdb initializes a data directory "data" in base.
func initdb(ctx context.Context, bin, base string) (string, error) {
	if err := os.Chmod(base, 0o755); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	dir := filepath.Join(base, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	if err := chownTree(dir); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", dir, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
	cmd.SysProcAttr = sysProcAttr()
	cmd.Dir = base
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("localpg: initdb: %w: %s", err, out.String())
	}
	return dir, nil
}

// BinDir finds the PostgreSQL server binaries: $PGSHARD_PGBIN, else the newest
// /usr/lib/postgresql/*/bin, else the directory of postgres on $PATH.
func BinDir() (string, error) {
	if d := os.Getenv("PGSHARD_PGBIN"); d != "" {
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("localpg: PostgreSQL server binaries not found (install the postgresql package, or set PGSHARD_PGBIN to the directory holding initdb and postgres)")
}

// Available reports whether the server binaries can be found.
func Available() bool {
	_, err := BinDir()
	return err == nil
}

// runAs returns the uid/gid the servers must run as: the current user, or "postgres" (or
// $PGSHARD_PGUSER) when running as root.
func runAs() (uid, gid int, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	name := os.Getenv("PGSHARD_PGUSER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, false
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, true
}

func sysProcAttr() *syscall.SysProcAttr {
	// Setpgid keeps a terminal's Ctrl-C away from the servers (their owner stops them), and
	// Pdeathsig stops them if the owning process dies without cleaning up.
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if uid, gid, ok := runAs(); ok {
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return attr
}

func chownTree(dir string) error {
	uid, gid, ok := runAs()
	if !ok {
		return nil
	}
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("localpg: chown %s: %w", dir, err)
	}
	// Every parent must be traversable by the server's user.
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("localpg: %w", err)
			}
		}
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localpg: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Command returns a command that runs as the servers' user (see NewServer): programs such
// as pgbouncer refuse to run as root too.
func Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = sysProcAttr()
	return cmd
}

// Chown hands a directory tree to the servers' user.
func Chown(dir string) error { return chownTree(dir) }
