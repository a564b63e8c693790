package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/proxy/protocol"
)

// errShuttingDown is what clients hear when the server stops.
var errShuttingDown = protocol.ErrShuttingDown

// session is one client connection. Its goroutine owns every field not marked otherwise.
type session struct {
	srv *Server
	nc  net.Conn
	// conn is the protocol side of the client connection (package protocol): it reads
	// the client's messages and keeps the simple and extended protocols' state; w is its
	// writer.
	conn *protocol.Conn
	w    *pgwire.Writer
	log  *slog.Logger

	pid, secret uint32
	user        string
	appName     string
	// ddlReload is set when the session's transaction block changed the definition of
	// distributed tables (ddlprop.go): the metadata is loaded again when it ends.
	ddlReload bool
	// sessionSettings are the session's settings and their replay (settings.go).
	sessionSettings
	// params are the ParameterStatus values the client has been told; reportedConn
	// and reportedSeq say up to which of its coordinator connection's reports (reportParams).
	params       map[string]string
	reportedConn *backend.Conn
	reportedSeq  uint64
	// sessionNames is where the names of distributed tables resolve in this session
	// (names.go).
	sessionNames

	// txn is the transaction layer (txn.go): the block's state, its backend
	// connections, savepoints, shard locks and idle timeouts, and the commit.
	txn txnState
	// blockTables are the tables its transaction block distributed (blockdist.go).
	blockTables blockTables
	// privOK are the write privileges the coordinator found the client's role to have
	// (checkWritePrivilege), until the session's role may have changed.
	privOK map[privCheck]struct{}

	// running are the backend connections executing for this session now, for cancel.
	mu      sync.Mutex
	running map[*backend.Conn]struct{}
	// cancelled is set by a cancel request and cleared when the next statement starts.
	cancelled atomic.Bool
	// busy is set while the session handles a client message (a cancel request for an
	// idle session does nothing, as in PostgreSQL, even while a portal is suspended).
	busy atomic.Bool

	// listening is set after LISTEN: notifications may arrive while the session is idle.
	listening bool
	// stmtStore holds the session's prepared statements and portals (bounds.go).
	stmtStore
	// cursorTables numbers the temporary tables that cursors over distributed tables
	// read (they stay until the end of their transaction).
	cursorTables int
	// suspended is the portal whose statement waits, part way through its result, for
	// the client's next Execute (see suspension).
	suspended *suspension
	// spoolBudget bounds what the session's spools set aside together (spool.go).
	spoolBudget

	// scratch buffers reused across statements
	sqlBuf []byte
	// refused is set for a connection beyond max_client_conn: its startup message is
	// answered with "too many clients".
	refused bool
	// reserved is set for a connection in the places beyond max_client_conn kept for
	// superusers (superuserReservedConns): an ordinary role is refused there.
	reserved bool
}

// serveConn serves one client connection; refused connections only see the startup
// phase end in "too many clients".
func (s *Server) serveConn(ctx context.Context, nc net.Conn, refused, reserved bool) {
	defer nc.Close()
	ss := &session{
		srv:      s,
		nc:       nc,
		log:      s.log,
		running:  map[*backend.Conn]struct{}{},
		refused:  refused,
		reserved: reserved,
	}
	ss.txn = newTxnState(ss, s, s.cfg.IdleTransactionTimeout, s.log)
	ss.conn = protocol.New(nc, clientWriter{ss}, s.cfg.MaxMessage, protocol.Counters{Received: &s.stats.received, Sent: &s.stats.sent})
	ss.w = ss.conn.Writer()
	initState(ss)
	defer func() {
		// A bug must cost only this client its connection.
		if r := recover(); r != nil {
			ss.log.Error("session panic", "panic", r, "stack", string(stackTrace()))
			ss.conn.Fatal(pgerr.New(pgerr.InternalError, "internal error in pgshard: %v", r))
		}
		ss.cleanup()
	}()
	if !ss.startup(ctx) {
		return
	}
	// The session's waits for backend connections end as its statements do (acquirePooled).
	ss.conn.Serve(withStatementWaits(ctx, &ss.txn.waits), handler{ss})
}

// readCopyData reads the client's next message during COPY FROM STDIN. A COPY that
// waits for its client is not idle for PostgreSQL's settings, but it holds what the
// statement took (into a distributed table, the write lock of every shard, which keeps
// every other writer out): client_idle_timeout and, when shard locks are held (locked,
// or the block's), pgshard's IdleTransactionTimeout bound the wait for each message as
// they bound an idle client. When one runs out the client is told (FATAL) and its
// connection closed, which ends the COPY and then the session.
func (ss *session) readCopyData(locked bool) (byte, []byte, error) {
	var until time.Time
	var idleErr *pgerr.Error
	if t := ss.srv.cfg.ClientIdleTimeout; t > 0 {
		until, idleErr = time.Now().Add(t), ss.srv.clientIdleError()
	}
	if t := ss.srv.cfg.IdleTransactionTimeout; t > 0 && (locked || ss.txn.holdsShardLocks()) {
		if u := time.Now().Add(t); until.IsZero() || u.Before(until) {
			until, idleErr = u, errIdleInTransaction
		}
	}
	return ss.conn.ReadCopy(until, idleErr)
}

// clientWriter writes to the client. While the session holds shard write locks (of its
// transaction block or of the statement running), every write must go through within
// pgshard's IdleTransactionTimeout: a client that stops reading keeps the session waiting
// for it as surely as an idle one, and those locks keep every other writer of the shards
// out. A write that times out closes the connection, which ends the session.
type clientWriter struct{ ss *session }

func (cw clientWriter) Write(b []byte) (int, error) {
	ss := cw.ss
	t := ss.srv.cfg.IdleTransactionTimeout
	if t <= 0 || !ss.txn.holdsShardLocks() && len(ss.txn.stmtUnlock) == 0 {
		return ss.nc.Write(b)
	}
	ss.nc.SetWriteDeadline(time.Now().Add(t))
	n, err := ss.nc.Write(b)
	ss.nc.SetWriteDeadline(time.Time{})
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		ss.log.Info("client not reading while holding shard locks: connection closed", "after", t)
		ss.nc.Close()
	}
	return n, err
}

// clientIdleError is the error that ends a session whose client sent nothing for
// client_idle_timeout: PostgreSQL's idle_session_timeout error.
func (s *Server) clientIdleError() *pgerr.Error {
	return pgerr.New(pgerr.IdleSessionTimeout, "terminating connection due to idle-session timeout").WithSeverity("FATAL").
		WithHint("pgshard closes client connections idle for longer than client_idle_timeout (%s).", s.cfg.ClientIdleTimeout)
}

// cstring returns a message body holding one zero-terminated string.
func cstring(b []byte) (string, bool) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return "", false
	}
	return string(b[:len(b)-1]), true
}

// shutdown asks the session to end (server shutdown). Safe from any goroutine.
func (ss *session) shutdown() {
	// An idle session is blocked reading the client: the protocol wakes it.
	ss.conn.Shutdown()
	ss.cancelRunning()
}

// cleanup rolls back and returns the session's backend connections.
func (ss *session) cleanup() {
	ss.srv.unregister(ss)
	if s := ss.suspended; s != nil {
		s.cancel() // the client is gone: cut the statement off
		ss.settle(false)
	}
	for name := range ss.portals {
		ss.dropPortal(name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ss.txn.endTx(ctx, false)
	if ss.txn.coord != nil {
		c := ss.txn.coord.Value()
		// Reset the session state the client left (settings, prepared statements, temp
		// tables, LISTENs, advisory locks) before another session uses the connection.
		if !c.Broken() && c.Exec(ctx, "DISCARD ALL") == nil {
			c.Settings = ""
			c.Prepared = map[string]bool{}
		}
		backend.Release(ss.txn.coord)
		ss.txn.coord = nil
	}
}

// --- responses ---

// moreBeforeSync reports whether the client may send another statement before Sync
// (txnHost): the protocol layer reads what the client already sent.
func (ss *session) moreBeforeSync() bool { return ss.conn.MoreBeforeSync() }

func (ss *session) commandComplete(tag string) {
	ss.w.Raw('C', append([]byte(tag), 0))
}

// sendError sends err as an ErrorResponse (or FATAL). Errors pgshard did not classify
// are logged and sent as XX000.
func (ss *session) sendError(err error) { ss.w.Msg(ss.errorMessage(err)) }

// errorMessage is err as the ErrorResponse the client hears: in the client's names,
// counted, and logged when pgshard did not classify it or it names a connection's cause.
func (ss *session) errorMessage(err error) *pgproto3.ErrorResponse {
	var ue *backend.UnavailableError
	if errors.As(err, &ue) && !errors.As(err, new(*pgerr.Error)) {
		// A server connection that broke is a connection failure, not an internal error;
		// which connection, and why, is for the log.
		err = pgerr.Wrap(err, pgerr.ConnectionFailure, "the connection to a server of the cluster was lost")
	}
	e := pgerr.From(err)
	if e.Code == pgerr.InternalError && !errors.As(err, new(*pgerr.Error)) {
		ss.log.Error("internal error", "err", err)
	} else if strings.HasPrefix(string(e.Code), "08") && e.Unwrap() != nil {
		// A connection failure's cause (an address, a system error) is for the log.
		ss.log.Warn("connection failure", "user", ss.user, "err", err)
	}
	ss.srv.stats.errors.Add(1)
	// In the client's names, without the context of pgshard's own statements.
	ss.srv.unshardNames(e)
	return errorResponse(e)
}

func (ss *session) sendNotice(e *pgerr.Error) {
	nr := pgproto3.NoticeResponse(*errorResponse(e))
	ss.w.Msg(&nr)
}

func errorResponse(e *pgerr.Error) *pgproto3.ErrorResponse { return protocol.ErrorResponse(e) }

// --- cancellation ---

func (ss *session) startRunning(c *backend.Conn) {
	ss.mu.Lock()
	ss.running[c] = struct{}{}
	ss.mu.Unlock()
}

func (ss *session) stopRunning(c *backend.Conn) {
	ss.mu.Lock()
	delete(ss.running, c)
	ss.mu.Unlock()
}

// cancelRunning sends a cancel request to every backend running a statement for the
// session (all shards of a fan-out). Safe from any goroutine.
func (ss *session) cancelRunning() {
	ss.cancelled.Store(true)
	ss.txn.waits.cancel() // a statement waiting for a shard lock
	ss.mu.Lock()
	conns := make([]*backend.Conn, 0, len(ss.running))
	for c := range ss.running {
		conns = append(conns, c)
	}
	ss.mu.Unlock()
	for _, c := range conns {
		c.CancelAsync()
	}
}

func stackTrace() []byte {
	buf := make([]byte, 16<<10)
	return buf[:runtimeStack(buf)]
}

// fmtNode formats a node for messages.
func fmtNode(n metadata.Node) string { return fmt.Sprintf("%s:%d", n.Name, n.Port) }
