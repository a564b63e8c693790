// Command pgshard is a PostgreSQL sharding proxy.
//
//	pgshard serve --listen 127.0.0.1:6432 --coordinator postgres://postgres@127.0.0.1:5432/postgres
//	pgshard demo
//
// Every flag of serve has an environment variable (PGSHARD_LISTEN, PGSHARD_COORDINATOR, ...)
// and a key in an optional configuration file (--config FILE, lines of "key = value").
// Flags win over the environment, which wins over the file.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgshard/pgshard/proxy"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "demo":
		err = demo(os.Args[2:])
	case "version", "--version", "-v":
		fmt.Println("pgshard", proxy.Version)
	case "help", "-h", "--help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "pgshard: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgshard:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  pgshard serve [--listen HOST:PORT] --coordinator URL [--config FILE] [options]
  pgshard demo [--listen HOST:PORT]
  pgshard version

Run "pgshard serve -h" for the options.
`)
}

// options are serve's settings.
type options struct {
	listen         string
	coordinator    string
	poolSize       int
	repairInterval time.Duration
	logLevel       string
	maxMessage     int
	workMem        int
	tempFileLimit  int
	tempDir        string
	maxPrepared    int
	maxClientConn  int
	loginTimeout   time.Duration
	idleTimeout    time.Duration
	idleTxTimeout  time.Duration
}

// setting describes one option: its flag, environment variable and config key.
type setting struct {
	name  string // flag name and config key (with - or _)
	usage string
	def   string
	set   func(string) error
}

func (o *options) settings() []setting {
	return []setting{
		{"listen", "address to listen on", "127.0.0.1:6432", func(v string) error { o.listen = v; return nil }},
		{"coordinator", "libpq URL of the coordinator database (required)", "", func(v string) error { o.coordinator = v; return nil }},
		{"pool-size", "backend connections per server and user", "100", intSetter(&o.poolSize)},
		{"repair-interval", "how often the background repairer looks for repairable placements (0 disables)", "10s", durSetter(&o.repairInterval)},
		{"log-level", "debug, info, warn or error", "info", func(v string) error { o.logLevel = v; return nil }},
		{"max-message", "largest client message in bytes", strconv.Itoa(1 << 30), intSetter(&o.maxMessage)},
		{"work-mem", "bytes of a result set aside (a suspended portal read ahead) a session keeps in memory before it spills to a temporary file", strconv.Itoa(4 << 20), intSetter(&o.workMem)},
		{"temp-file-limit", "bytes of temporary files one session may use (-1: no limit)", strconv.Itoa(1 << 30), intSetter(&o.tempFileLimit)},
		{"temp-dir", "directory for temporary files (default: $TMPDIR or /tmp)", "", func(v string) error { o.tempDir = v; return nil }},
		{"max-prepared-memory", "estimated bytes of prepared statements one session may hold (-1: no limit)", strconv.Itoa(256 << 20), intSetter(&o.maxPrepared)},
		{"max-client-conn", "client connections open at once; more are refused with \"too many clients\"", strconv.Itoa(proxy.DefaultMaxClientConn), intSetter(&o.maxClientConn)},
		{"client-login-timeout", "a client that has not logged in by then is disconnected (0 disables)", "60s", durSetter(&o.loginTimeout)},
		{"client-idle-timeout", "a client connection idle for longer is closed (0 disables)", "0", durSetter(&o.idleTimeout)},
		{"idle-transaction-timeout", "end a session idle in a transaction block that holds shard write locks for longer than this, whatever its idle_in_transaction_session_timeout (0 disables)", "0", durSetter(&o.idleTxTimeout)},
	}
}

func intSetter(p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*p = n
		return nil
	}
}

func durSetter(p *time.Duration) func(string) error {
	return func(v string) error {
		if n, err := strconv.Atoi(v); err == nil {
			*p = time.Duration(n) * time.Second
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration: %q", v)
		}
		*p = d
		return nil
	}
}

// parseOptions applies defaults, then the config file, then the environment, then flags.
func parseOptions(name string, args []string) (*options, error) {
	o := &options{}
	sets := o.settings()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	config := fs.String("config", os.Getenv("PGSHARD_CONFIG"), "configuration file (lines of key = value)")
	flagVals := map[string]*string{}
	for _, s := range sets {
		flagVals[s.name] = fs.String(s.name, s.def, s.usage+" (env "+envName(s.name)+")")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	file := map[string]string{}
	if *config != "" {
		var err error
		if file, err = readConfig(*config); err != nil {
			return nil, err
		}
		for k := range file {
			known := false
			for _, s := range sets {
				known = known || s.name == k
			}
			if !known {
				return nil, fmt.Errorf("%s: unknown key %q", *config, k)
			}
		}
	}
	for _, s := range sets {
		v := s.def
		if fv, ok := file[s.name]; ok {
			v = fv
		}
		if ev, ok := os.LookupEnv(envName(s.name)); ok {
			v = ev
		}
		if given[s.name] {
			v = *flagVals[s.name]
		}
		if err := s.set(v); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return o, nil
}

func envName(flagName string) string {
	return "PGSHARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// readConfig reads "key = value" lines; # and ; start comments; keys may use _ or -.
func readConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || s[0] == ';' || s[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected key = value", path, line)
		}
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		out[k] = v
	}
	return out, sc.Err()
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func serve(args []string) error {
	o, err := parseOptions("serve", args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.coordinator == "" {
		return errors.New("serve: --coordinator (or PGSHARD_COORDINATOR) is required")
	}
	if o.maxClientConn < 1 {
		return fmt.Errorf("serve: max-client-conn must be at least 1, not %d", o.maxClientConn)
	}
	if o.loginTimeout < 0 || o.idleTimeout < 0 {
		return errors.New("serve: client-login-timeout and client-idle-timeout cannot be negative")
	}
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if file := os.Getenv("PGSHARD_CPUPROFILE"); file != "" {
		// A CPU profile of the whole run, for the benchmarks (tests/bench -cpuprofile).
		f, err := os.Create(file)
		if err != nil {
			return fmt.Errorf("PGSHARD_CPUPROFILE: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("PGSHARD_CPUPROFILE: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	return runServer(ctx, o, log, nil)
}

// loginTimeout maps client-login-timeout to Config.ClientLoginTimeout (negative = off).
func loginTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// runServer starts the proxy and serves until ctx is done. ready, if not nil, is called
// once the proxy is listening.
func runServer(ctx context.Context, o *options, log *slog.Logger, ready func(addr string)) error {
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	srv, err := proxy.New(startCtx, proxy.Config{
		Coordinator:            o.coordinator,
		PoolSize:               o.poolSize,
		MaxMessage:             o.maxMessage,
		WorkMem:                o.workMem,
		TempFileLimit:          int64(o.tempFileLimit),
		TempDir:                o.tempDir,
		MaxPreparedMemory:      int64(o.maxPrepared),
		Logger:                 log,
		RepairInterval:         o.repairInterval,
		IdleTransactionTimeout: o.idleTxTimeout,
		MaxClientConn:          o.maxClientConn,
		// 0 turns the login timeout off, as in PgBouncer; the proxy's 0 is its default.
		ClientLoginTimeout: loginTimeout(o.loginTimeout),
		ClientIdleTimeout:  o.idleTimeout,
	})
	cancel()
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	log.Info("pgshard listening", "addr", ln.Addr().String(), "database", srv.Database())
	if ready != nil {
		ready(ln.Addr().String())
	}
	err = srv.Run(ctx, ln)
	if errors.Is(err, proxy.ErrServerClosed) {
		log.Info("pgshard stopped")
		return nil
	}
	return err
}
