package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/repair"
	"github.com/pgshard/pgshard/router"
)

// Version is pgshard's version, reported by SHOW VERSION.
const Version = "0.1.0"

// Config configures a Server.
type Config struct {
	// Coordinator is the coordinator database's libpq URL.
	Coordinator string
	// PoolSize bounds the backend connections per server and user (default 100).
	PoolSize int
	// MaxMessage is the largest client message accepted (default 1 GiB).
	MaxMessage int
	// Logger receives the proxy's log (default slog.Default()).
	Logger *slog.Logger
	// RepairInterval is how often the background repairer looks for inactive placements
	// on reachable nodes; 0 disables it.
	RepairInterval time.Duration
	// LockTimeout bounds a repair's wait for the shard lock it copies under (default
	// 30s). Writes wait as PostgreSQL's lock manager on the coordinator has them wait,
	// bounded by the session's own lock_timeout and statement_timeout (locks.go).
	LockTimeout time.Duration
	// BatchRows is how many rows of an INSERT ... SELECT (or of a gathered UPDATE or
	// DELETE) the proxy holds and writes to the shards at a time (default 50,000; a batch
	// also ends at 8 MiB of values).
	BatchRows int
	// WorkMem is how many bytes of a result the proxy must set aside (the rest of a
	// suspended portal when the session needs its connections, a write's RETURNING rows
	// fetched in parts) a session keeps in memory; the rest goes to a temporary file
	// (default 4 MiB, PostgreSQL's work_mem).
	WorkMem int
	// TempFileLimit bounds the temporary files of one session in bytes (default 1 GiB;
	// negative: no limit). Beyond it the statement fails with 53400.
	TempFileLimit int64
	// TempDir is where temporary files go (default os.TempDir()).
	TempDir string
	// MaxPreparedMemory bounds the estimated memory of one session's prepared
	// statements (default 256 MiB; negative: no limit). Past it Parse and PREPARE fail
	// with 54000.
	MaxPreparedMemory int64
	// MaxClientConn bounds the client connections open at once, logged in or not
	// (PgBouncer's max_client_conn; default 1000); one more is refused with PostgreSQL's
	// "sorry, too many clients already" (53300). A superuser still has
	// superuserReservedConns more.
	MaxClientConn int
	// ClientLoginTimeout bounds the startup phase of a client connection, from accept to
	// ReadyForQuery (PgBouncer's client_login_timeout, PostgreSQL's
	// authentication_timeout; default 60s, negative disables); a client that has not
	// logged in by then is disconnected.
	ClientLoginTimeout time.Duration
	// ClientIdleTimeout closes a client connection that sends nothing for this long
	// (PgBouncer's client_idle_timeout; 0, the default, disables).
	ClientIdleTimeout time.Duration
	// IdleTransactionTimeout ends a session whose transaction block holds shard write
	// locks and waits for its client longer than this, whatever the session's
	// idle_in_transaction_session_timeout (0, the default: only that setting does).
	IdleTransactionTimeout time.Duration
	// NodeCheckInterval is how often the proxy reads each worker's identity and WAL
	// position and records them on the coordinator (nodeident.go; default 1s, negative
	// disables the periodic check: identities are then checked on new connections only).
	NodeCheckInterval time.Duration
	// RecoveryInterval is how often transaction recovery finishes the prepared
	// transactions two-phase commits left behind (recovery.go; default 5s, negative:
	// only at start and on RECOVER TRANSACTIONS).
	RecoveryInterval time.Duration
}

// DefaultMaxClientConn is the default of Config.MaxClientConn.
const DefaultMaxClientConn = 1000

// superuserReservedConns are the client connections beyond MaxClientConn that only a
// superuser may log in to (PostgreSQL's superuser_reserved_connections, default 3): an
// ordinary role that takes every place of MaxClientConn does not lock the administrators
// out. An ordinary role that gets one of them is refused once logged in, with the
// same "sorry, too many clients already".
const superuserReservedConns = 3

// maxRefusing bounds the connections being refused at once (see refuse).
const maxRefusing = 64

// ErrServerClosed is returned by Serve after the server was shut down.
var ErrServerClosed = errors.New("proxy: server closed")

// Server is a pgshard proxy.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  *store.Store
	cache  *metadata.Cache
	router *router.Router
	pools  *backend.Pools
	coord  backend.Key // coordinator host, port and database; User is per session
	// params are the coordinator's ParameterStatus values, reported to clients.
	params map[string]string
	// blockNames are the tables transaction blocks distributed, not committed yet, whose
	// shard names errors are to lose too (blockdist.go).
	blockNames blockNames

	stats  stats
	repair *repair.Repairer
	idents nodeIdents // workers' identities (nodeident.go)
	// recovery finishes prepared transactions left behind (recovery.go).
	recovery *recoverer
	// epochSeq is the OID of the placements' epoch sequence (0: unknown); epoch is its
	// value when the metadata was last read for it (placementsCurrent; -1: never).
	epochSeq uint32
	epoch    atomic.Int64

	mu       sync.Mutex
	sessions map[uint32]*session // by proxy-issued process id
	closed   bool
	wg       sync.WaitGroup // sessions

	ready chan struct{} // closed when metadata is loaded

	// namesEpoch advances whenever a statement may have created, dropped or renamed
	// relations; names holds name resolutions sessions share (names.go).
	namesEpoch atomic.Uint64
	names      namesCache

	// conns counts the client connections open (max_client_conn), refusing those being
	// turned away.
	conns      atomic.Int64
	refusing   atomic.Int64
	refusedLog atomic.Int64 // when a refusal was last logged (Unix ns)

	// spoolFiles counts the temporary result files open in all sessions (spool.go).
	spoolFiles atomic.Int64
}

// New connects to the coordinator, creates or upgrades the metadata schema and loads the
// metadata. Run starts serving.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pcfg, err := pgconn.ParseConfig(cfg.Coordinator)
	if err != nil {
		return nil, fmt.Errorf("proxy: coordinator URL: %w", err)
	}
	st, err := store.Open(ctx, cfg.Coordinator, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    st,
		cache:    &metadata.Cache{},
		router:   router.New(router.Config{}),
		coord:    backend.Key{Host: pcfg.Host, Port: int(pcfg.Port), Database: pcfg.Database},
		sessions: map[uint32]*session{},
		ready:    make(chan struct{}),
	}
	s.epoch.Store(-1)
	if s.cfg.MaxClientConn <= 0 {
		s.cfg.MaxClientConn = DefaultMaxClientConn
	}
	if s.cfg.ClientLoginTimeout == 0 {
		s.cfg.ClientLoginTimeout = 60 * time.Second
	}
	if s.cfg.LockTimeout <= 0 {
		s.cfg.LockTimeout = 30 * time.Second
	}
	s.pools = backend.NewPools(backend.Config{Base: pcfg, MaxConns: int32(cfg.PoolSize), OnConnect: s.checkNewConn})
	s.repair = &repair.Repairer{
		Store: st, Cache: s.cache, User: pcfg.User, Log: cfg.Logger, LockTimeout: s.cfg.LockTimeout,
		Connect: func(n metadata.Node, user string) *pgconn.Config {
			return s.pools.ConnConfig(s.workerKey(n, user))
		},
		CheckSource: s.checkNode,
	}
	s.recovery = newRecoverer(s, pcfg.User)
	if err := st.Pool().QueryRow(ctx, "SELECT 'pgs_distribution_metadata.placement_epoch'::pg_catalog.regclass::pg_catalog.oid").Scan(&s.epochSeq); err != nil {
		s.Close()
		return nil, fmt.Errorf("proxy: placement epoch: %w", err)
	}
	if _, err := st.Reload(ctx, s.cache); err != nil {
		s.Close()
		return nil, err
	}
	// The coordinator's reported parameters (server_version, encodings, DateStyle, ...).
	conn, err := backend.Dial(ctx, s.pools.ConnConfig(s.coordKey(pcfg.User)))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("proxy: connect to coordinator: %w", err)
	}
	s.params = conn.Params
	conn.Terminate()
	return s, nil
}

// coordKey is the pool key of the coordinator for a user.
func (s *Server) coordKey(user string) backend.Key {
	k := s.coord
	k.User = user
	return k
}

// workerKey is the pool key of a worker for a user.
func (s *Server) workerKey(n metadata.Node, user string) backend.Key {
	return backend.Key{Host: n.Name, Port: n.Port, User: user, Database: s.coord.Database}
}

// Database is the database name the proxy serves.
func (s *Server) Database() string { return s.coord.Database }

// Snapshot returns the current metadata snapshot.
func (s *Server) Snapshot() *metadata.Snapshot { return s.cache.Load() }

// Run serves clients on ln and runs the background work (metadata notifications, idle
// connection cleanup, repair) until ctx is done; then it stops accepting, tells the sessions
// to finish, and returns ErrServerClosed once they have.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	bg.Add(3)
	go func() {
		defer bg.Done()
		s.store.Watch(ctx, s.cache, nil, nil)
	}()
	go func() {
		defer bg.Done()
		s.checkNodes(ctx)
	}()
	go func() {
		defer bg.Done()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.pools.CloseIdle()
			}
		}
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		interval := s.cfg.RecoveryInterval
		if interval == 0 {
			interval = DefaultRecoveryInterval
		}
		if interval < 0 {
			interval = 1<<63 - 1
		}
		s.recovery.run(ctx, interval)
	}()
	if s.cfg.RepairInterval > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			s.repair.Run(ctx, s.cfg.RepairInterval)
		}()
	}
	err := s.serve(ctx, ln)
	cancel()
	bg.Wait()
	return err
}

func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.shutdownSessions()
				if ctx.Err() != nil {
					return ErrServerClosed
				}
				return fmt.Errorf("proxy: accept: %w", err)
			}
			// Out of file descriptors and the like: back off and keep serving.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			s.log.Warn("accept failed; retrying", "err", err, "in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
			continue
		}
		delay = 0
		n := s.conns.Add(1)
		if n > int64(s.cfg.MaxClientConn+superuserReservedConns) {
			s.conns.Add(-1)
			s.refuse(ctx, nc)
			continue
		}
		reserved := n > int64(s.cfg.MaxClientConn)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.Add(-1)
			s.serveConn(ctx, nc, false, reserved)
		}()
	}
}

// refuse turns away a connection beyond max_client_conn. As PostgreSQL does, it reads the
// startup packet first (a cancel request is served: it is how a client stops a statement
// of a connection it already has; an SSL request is declined) and answers the startup
// message with "sorry, too many clients already", so that the client reads the error
// rather than a reset. The reading is bounded by the login timeout (at most 5s) and
// the startup packet's size limit; beyond maxRefusing connections being refused at once,
// the connection is closed straight away.
func (s *Server) refuse(ctx context.Context, nc net.Conn) {
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		nc.Close()
		return
	}
	// One log line a second at most: a flood must not flood the log too.
	if now, last := time.Now().UnixNano(), s.refusedLog.Load(); now-last >= int64(time.Second) && s.refusedLog.CompareAndSwap(last, now) {
		s.log.Warn("client connection refused: max_client_conn reached", "max_client_conn", s.cfg.MaxClientConn, "client", nc.RemoteAddr().String())
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.refusing.Add(-1)
		s.serveConn(ctx, nc, true, false)
	}()
}

// shutdownSessions tells every session that the server is shutting down and waits for
// them to end.
func (s *Server) shutdownSessions() {
	s.mu.Lock()
	s.closed = true
	for _, ss := range s.sessions {
		ss.shutdown()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Close releases the server's resources (after Run returned).
func (s *Server) Close() {
	if s.pools != nil {
		s.pools.Close()
	}
	s.store.Close()
}

// register gives a session a process id and secret for cancel requests.
func (s *Server) register(ss *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errShuttingDown
	}
	var b [8]byte
	for {
		rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if pid == 0 || s.sessions[pid] != nil {
			continue
		}
		ss.pid, ss.secret = pid, binary.BigEndian.Uint32(b[4:])
		s.sessions[pid] = ss
		s.stats.clients.Add(1)
		return nil
	}
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[ss.pid] == ss {
		delete(s.sessions, ss.pid)
		s.stats.clients.Add(-1)
	}
}

// cancel handles a CancelRequest: it cancels what the session with that process id is
// running, if the secret matches.
func (s *Server) cancel(pid, secret uint32) {
	s.mu.Lock()
	ss := s.sessions[pid]
	s.mu.Unlock()
	if ss == nil || ss.secret != secret || !ss.busy.Load() {
		return
	}
	ss.cancelRunning()
}

// stats are the counters behind SHOW STATS.
type stats struct {
	clients     atomic.Int64
	queries     atomic.Int64
	xacts       atomic.Int64
	queryTimeUs atomic.Int64
	received    atomic.Int64
	sent        atomic.Int64
	errors      atomic.Int64
}

// epochOID is the OID of the placements' epoch sequence (shardLocker).
func (s *Server) epochOID() uint32 { return s.epochSeq }

// placementsCurrent reads the metadata again when the placements' epoch, read with a
// write's locks, moved since it was last read (shardLocker): a placement changed, maybe
// by a repair that held the lock the write now holds.
func (s *Server) placementsCurrent(ctx context.Context, epoch int64) error {
	if s.epoch.Load() == epoch {
		return nil
	}
	if _, err := s.store.Reload(ctx, s.cache); err != nil {
		return err
	}
	s.epoch.Store(epoch)
	return nil
}

// shardTableName is the quoted name of the table a shard belongs to, as messages to the
// client name it.
func (s *Server) shardTableName(id int64) string {
	snap := s.cache.Load()
	if sh := snap.Shard(id); sh != nil {
		if t := snap.TableByOID(sh.TableID); t != nil {
			return `"` + t.Name + `"`
		}
	}
	return "(dropped)"
}

// shardRef names a shard in a message to the session's client: its table (quoted), and,
// for a superuser, who can act on it (SHOW PLACEMENTS, REPAIR SHARD), the shard's id too.
func (ss *session) shardRef(id int64) string {
	name := ss.srv.shardTableName(id)
	if ss.params["is_superuser"] == "on" {
		return name + " (shard " + strconv.FormatInt(id, 10) + ")"
	}
	return name
}
