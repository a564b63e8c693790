// Package backend owns the proxy's connections to PostgreSQL servers (the coordinator and
// the workers). A connection is established and authenticated by pgconn, then taken over
// ("hijacked") so that the proxy speaks the protocol itself on the raw socket: results are
// relayed frame by frame without being decoded. Connections to one server, user and
// database are pooled with puddle.
package backend

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/pgwire"
)

// Conn is one connection to a PostgreSQL server, speaking the protocol on raw frames. A
// Conn has one owner at a time; it is not safe for concurrent use (except Cancel).
type Conn struct {
	Addr string // host:port dialed

	nc     net.Conn
	r      *pgwire.Reader
	w      *pgwire.Writer
	pid    uint32
	secret []byte

	// Params are the ParameterStatus values the server reported: at startup, and since
	// (Next keeps them current, whoever reads the messages).
	Params map[string]string
	// ParamsSeq counts the ParameterStatus messages read since startup.
	ParamsSeq uint64
	// TxStatus is the status of the last ReadyForQuery: 'I', 'T' or 'E'.
	TxStatus byte
	// Idles counts the ReadyForQuery messages that said 'I' (idle, outside a
	// transaction): while it stays the same, the connection is in the same transaction.
	Idles uint64
	// Settings identifies the session settings applied to this connection (see proxy).
	Settings string
	// SettingsSeq is ParamsSeq when Settings were applied: a ParameterStatus since then
	// means something else (a function the client called, say) changed a setting.
	SettingsSeq uint64
	// MapError, if set, rewrites the errors this connection's server reports (a
	// worker's errors name shard tables and constraints; the client knows the
	// distributed table's names). It reports whether it changed anything.
	MapError func(*pgerr.Error) bool
	// Prepared records the statements prepared on this connection, by proxy-owned name.
	Prepared map[string]bool
	// pendingParse is the name of a statement whose Parse is in flight.
	pendingParse string
	// inFlight counts the ReadyForQuery messages still to come: one per Sync or Query
	// sent. A named Parse goes only to a connection with nothing in flight, so that the
	// next ParseComplete is surely its own (pendingParse has room for one name).
	inFlight int
	// discard counts the queries sent with SendDiscard or queued with QueueJoin whose
	// answers are still to be read: Next reads and drops them first, so the connection
	// stays in step. joins says, in order, which of them are QueueJoin's.
	discard int
	joins   []bool
	// joinAt and joinEnd delimit, in the write buffer, the last QueueJoin's message
	// (joinEnd -1: none to take back); joinSQL is its text (TakeJoin).
	joinAt, joinEnd int
	joinSQL         string
	joinFlushes     int
	// Unnamed makes SendExtended parse every statement anew as the unnamed statement
	// instead of keeping named ones: for the coordinator, whose tables (temporary ones
	// above all) may change definition between executions of the same text.
	Unnamed bool

	broken atomic.Bool
	used   time.Time

	// cancelMu guards cancelling (the cancel requests in flight for this connection)
	// and cancelIdle (closed when the last of them was processed by the server).
	cancelMu   sync.Mutex
	cancelling int
	cancelIdle chan struct{}
}

// Dial connects and authenticates with cfg (from pgconn.ParseConfig, possibly modified),
// then hijacks the connection.
func Dial(ctx context.Context, cfg *pgconn.Config) (*Conn, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, err
	}
	h, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	h.Conn.SetDeadline(time.Time{})
	c := NewConn(h.Conn, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))
	c.pid, c.secret = h.PID, h.SecretKey
	c.Params, c.TxStatus = h.ParameterStatuses, h.TxStatus
	return c, nil
}

// NewConn takes over nc, a connection to addr whose startup is over (the server is idle
// and waits for a query): Dial's connections, and a test's scripted server on one end of
// a net.Pipe, which lets the proxy's executor be tested without a PostgreSQL server.
func NewConn(nc net.Conn, addr string) *Conn {
	c := &Conn{
		Addr:     addr,
		nc:       nc,
		r:        pgwire.NewReader(nc, 32<<10),
		w:        pgwire.NewWriter(nc),
		TxStatus: 'I',
		joinEnd:  -1,
		Prepared: map[string]bool{},
		used:     time.Now(),
	}
	c.w.AutoFlush = 0
	c.w.Tap = func(typ byte, _ int) {
		if typ == 'S' || typ == 'Q' {
			c.inFlight++
		}
	}
	return c
}

// DecodeError decodes an ErrorResponse body from this connection's server, rewritten by
// MapError.
func (c *Conn) DecodeError(b []byte) *pgerr.Error {
	e := DecodeError(b)
	if c.MapError != nil {
		c.MapError(e)
	}
	return e
}

// PID is the server process id.
func (c *Conn) PID() uint32 { return c.pid }

// Broken reports whether the connection failed and must not be reused.
func (c *Conn) Broken() bool { return c.broken.Load() }

// Busy reports whether a Query or Sync was sent (or buffered) whose ReadyForQuery has not
// been read yet: the connection is not at a statement boundary, and the next reader would
// take another statement's answer for its own.
func (c *Conn) Busy() bool { return c.inFlight > 0 }

// MarkBroken records that the connection is in an unknown protocol state.
func (c *Conn) MarkBroken() { c.broken.Store(true) }

// Close closes the socket.
func (c *Conn) Close() error {
	c.broken.Store(true)
	return c.nc.Close()
}

// Terminate sends Terminate and closes the connection.
func (c *Conn) Terminate() {
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.w.Raw('X', nil)
	c.w.Flush()
	c.Close()
}

// Writer exposes the buffered writer for composing messages; Flush sends them.
func (c *Conn) Writer() *pgwire.Writer { return c.w }

// Flush sends buffered messages, once the cancel requests in flight for the connection,
// if any, were processed (Cancel).
func (c *Conn) Flush() error {
	c.awaitCancels()
	if err := c.w.Flush(); err != nil {
		c.broken.Store(true)
		return &UnavailableError{Addr: c.Addr, Err: err}
	}
	return nil
}

// awaitCancels waits until the cancel requests in flight for the connection were
// processed by the server, for as long as Cancel may take at most.
func (c *Conn) awaitCancels() {
	c.cancelMu.Lock()
	idle := c.cancelIdle
	c.cancelMu.Unlock()
	if idle == nil {
		return
	}
	t := time.NewTimer(cancelTimeout + time.Second)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// cancelTimeout bounds a cancel request (dialing, and waiting for the server to process
// it).
const cancelTimeout = 5 * time.Second

// Query buffers a simple-protocol Query message.
func (c *Conn) Query(sql string) {
	c.QueryBytes([]byte(sql))
}

// QueryBytes buffers a Query message whose SQL text is b (without the terminating zero).
func (c *Conn) QueryBytes(b []byte) {
	w := c.w
	w.Raw('Q', append(b, 0))
}

// SendDiscard sends sql (a Query) without waiting for its answer, which nobody needs:
// the next reader of the connection (Next, Drain) reads and drops it first. It is for a
// statement whose outcome does not matter to the caller and whose round trip should not
// delay it (releasing locks). The connection must have no other answer to read (Busy):
// else sql is run and waited for at once. An I/O failure marks the connection broken.
func (c *Conn) SendDiscard(ctx context.Context, sql string) error {
	if c.inFlight > 0 {
		return c.Exec(ctx, sql)
	}
	c.Query(sql)
	c.inFlight--
	c.discard++
	c.joins = append(c.joins, false)
	return c.Flush()
}

// QueueJoin buffers sql, statements that open a transaction block (BEGIN and what
// brings the block to its state), to be sent with whatever is sent next, in the same
// write, instead of waiting for its answer first: the next reader drops the answer
// (Next, Drain). TxStatus says 'T' at once. A block whose opening failed on the server
// leaves the connection outside a transaction, where what was sent after it ran on its
// own: the connection is then broken (its next read fails), as if lost, so that nothing
// takes that answer for one inside the block. One that failed later (a SET) leaves the
// block aborted: the next statement's own error (25P02) says so.
func (c *Conn) QueueJoin(sql string) {
	c.joinAt, c.joinEnd, c.joinSQL, c.joinFlushes = c.w.Len(), -1, sql, c.w.Flushes()
	c.Query(sql)
	c.joinEnd = c.w.Len()
	c.inFlight--
	c.discard++
	c.joins = append(c.joins, true)
	c.TxStatus = 'T'
}

// TakeJoin takes back the statement QueueJoin buffered last (a BEGIN alone), when nothing
// was buffered after it and it is not sent yet: the caller sends it at the head of its own
// simple-protocol query text (one message, one answer to read, and a statement that
// cannot run outside the block: an error opening it ends the query text).
func (c *Conn) TakeJoin() (string, bool) {
	if c.joinEnd < 0 || c.w.Len() != c.joinEnd || c.w.Flushes() != c.joinFlushes || c.discard == 0 || !c.joins[len(c.joins)-1] {
		return "", false
	}
	if strings.Contains(c.joinSQL, ";") {
		// More than the BEGIN: a block's SETs and savepoints replayed, whose answers may
		// hold rows (set_config) that the caller would take for its statement's. They
		// stay a message of their own, whose answer is dropped.
		return "", false
	}
	c.w.Truncate(c.joinAt)
	c.discard--
	c.joins = c.joins[:len(c.joins)-1]
	c.joinEnd = -1
	return c.joinSQL, true
}

// Discarding reports whether answers sent with SendDiscard are still to be read.
func (c *Conn) Discarding() bool { return c.discard > 0 }

// Drain reads and drops the answers to the queries sent with SendDiscard: the connection
// is then at a statement boundary with nothing left to read. It returns the first error
// those answers held, or an *UnavailableError.
func (c *Conn) Drain(ctx context.Context) error {
	if c.discard == 0 {
		return nil
	}
	stop := c.WatchContext(ctx)
	defer stop()
	return c.drain()
}

// drain is Drain without a context.
func (c *Conn) drain() error {
	if c.w.Len() > 0 {
		// A QueueJoin not sent yet (nothing followed it): it goes now, or its answer
		// would never come.
		if err := c.Flush(); err != nil {
			return err
		}
	}
	var first error
	for c.discard > 0 {
		t, b, err := c.next()
		if err != nil {
			return err
		}
		switch t {
		case 'E':
			if first == nil {
				first = DecodeError(b)
			}
		case 'Z':
			c.discard--
			join := c.joins[0]
			c.joins = c.joins[1:]
			if join && c.TxStatus == 'I' {
				c.broken.Store(true)
				if first == nil {
					first = errors.New("the transaction block could not be opened")
				}
				return &UnavailableError{Addr: c.Addr, Err: first}
			}
		}
	}
	return first
}

// Next reads the next message from the server, after the answers to the queries sent
// with SendDiscard, which it drops. The body is valid until the next call. An I/O
// failure marks the connection broken and comes back as an *UnavailableError.
func (c *Conn) Next() (byte, []byte, error) {
	if c.discard > 0 {
		if err := c.drain(); err != nil && c.Broken() {
			return 0, nil, err
		}
	}
	return c.next()
}

// next is Next without the dropped answers.
func (c *Conn) next() (byte, []byte, error) {
	t, b, err := c.r.Next()
	if err != nil {
		c.broken.Store(true)
		return 0, nil, &UnavailableError{Addr: c.Addr, Err: err}
	}
	switch t {
	case 'Z':
		if len(b) == 1 {
			c.TxStatus = b[0]
			if b[0] == 'I' {
				c.Idles++
			}
		}
		if c.discard == 0 {
			if c.inFlight > 0 {
				c.inFlight--
			}
			// The end of a dropped answer says nothing of a Parse sent after it.
			c.pendingParse = ""
		}
	case '1':
		if c.pendingParse != "" {
			c.Prepared[c.pendingParse] = true
			c.pendingParse = ""
		}
	case 'E':
		if c.discard == 0 {
			c.pendingParse = ""
		}
	case 'S':
		var ps pgproto3.ParameterStatus
		if ps.Decode(b) == nil {
			if c.Params == nil {
				c.Params = map[string]string{}
			}
			c.Params[ps.Name] = ps.Value
			c.ParamsSeq++
		}
	}
	return t, b, nil
}

// StatementName returns the name under which the proxy prepares sql (with the given
// parameter types) on its backend connections, and whether this connection still needs a
// Parse for it. The name is derived from the text, so every connection uses the same one.
func (c *Conn) StatementName(sql []byte, oids []uint32) (string, bool) {
	h := fnv.New64a()
	h.Write(sql)
	for _, o := range oids {
		h.Write([]byte{byte(o >> 24), byte(o >> 16), byte(o >> 8), byte(o)})
	}
	name := "pgshard_" + strconv.FormatUint(h.Sum64(), 36)
	return name, !c.Prepared[name]
}

// maxPrepared bounds the statements the proxy prepares on one backend connection.
const maxPrepared = 1000

// SendExtended buffers Parse (when needed), Bind, Describe (when describe is set),
// Execute and Sync for sql with the given parameters and result formats.
func (c *Conn) SendExtended(sql []byte, oids []uint32, formats []int16, values [][]byte, results []int16, describe bool) {
	name, parse := "", true
	if !c.Unnamed {
		// Behind other statements in a pipeline, a statement not prepared yet goes
		// unnamed: the ParseComplete that comes first may not be its own.
		// Past maxPrepared statements the connection prepares no more: a pooled
		// connection outlives its sessions, and clients with ever new statement texts
		// would grow it (and the server's memory) without bound.
		if n, need := c.StatementName(sql, oids); !need || (c.inFlight == 0 && len(c.Prepared) < maxPrepared) {
			name, parse = n, need
		}
	}
	if parse {
		c.w.Msg(&pgproto3.Parse{Name: name, Query: string(sql), ParameterOIDs: oids})
		if name != "" {
			c.pendingParse = name
		}
	}
	c.w.Msg(&pgproto3.Bind{PreparedStatement: name, ParameterFormatCodes: formats, Parameters: values, ResultFormatCodes: results})
	if describe {
		c.w.Msg(&pgproto3.Describe{ObjectType: 'P'})
	}
	c.w.Msg(&pgproto3.Execute{})
	c.w.Msg(&pgproto3.Sync{})
}

// ForgetStatements records that the server dropped the connection's prepared statements
// (DISCARD ALL, DEALLOCATE ALL).
func (c *Conn) ForgetStatements() { c.Prepared = map[string]bool{} }

// peerClosed reports, without blocking, whether the server has closed the connection or
// sent something unsolicited (such as a FATAL before closing) while it sat idle. It peeks
// at the socket with a non-blocking recv: a read with an expired deadline would not even
// try the socket.
func (c *Conn) peerClosed() bool {
	if c.r.Buffered() > 0 {
		return true
	}
	nc := c.nc
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		case err != nil, n >= 0:
			// Data nobody asked for, end of stream, or an error such as a reset.
			closed = true
		}
		return true
	})
	return closed || err != nil
}

// Pending reports, without blocking, whether the server has sent something (on an idle
// connection: a notification, a notice, or an error before closing).
func (c *Conn) Pending() bool { return c.peerClosed() }

// SetDeadline sets the socket deadline (zero clears it).
func (c *Conn) SetDeadline(t time.Time) { c.nc.SetDeadline(t) }

// WatchContext arranges for pending I/O to fail when ctx is done; call the returned
// function when the I/O is over.
func (c *Conn) WatchContext(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
}

// Cancel asks the server to cancel the statement this connection is running, over a new
// connection, as the protocol requires. Until the server has processed the request (it
// closes that connection once it signalled the backend), Flush holds back what the
// connection sends next: a request that reaches the backend late would otherwise cancel
// the next statement, not the one it was meant for. A backend signalled while it waits
// for its next command ignores the request.
func (c *Conn) Cancel(ctx context.Context) error {
	c.cancelStarted()
	defer c.cancelDone()
	return c.cancel(ctx)
}

// CancelAsync is Cancel in a goroutine of its own (which ends within cancelTimeout); the
// request counts as in flight for Flush from the call on.
func (c *Conn) CancelAsync() {
	c.cancelStarted()
	go func() {
		defer c.cancelDone()
		ctx, stop := context.WithTimeout(context.Background(), cancelTimeout)
		defer stop()
		c.cancel(ctx)
	}()
}

func (c *Conn) cancelStarted() {
	c.cancelMu.Lock()
	if c.cancelling == 0 {
		c.cancelIdle = make(chan struct{})
	}
	c.cancelling++
	c.cancelMu.Unlock()
}

func (c *Conn) cancelDone() {
	c.cancelMu.Lock()
	if c.cancelling--; c.cancelling == 0 {
		close(c.cancelIdle)
		c.cancelIdle = nil
	}
	c.cancelMu.Unlock()
}

func (c *Conn) cancel(ctx context.Context) error {
	d := net.Dialer{Timeout: cancelTimeout}
	nc, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("backend: cancel: %w", err)
	}
	defer nc.Close()
	buf := make([]byte, 12, 12+len(c.secret))
	binary.BigEndian.PutUint32(buf[0:], uint32(12+len(c.secret)))
	binary.BigEndian.PutUint32(buf[4:], 80877102)
	binary.BigEndian.PutUint32(buf[8:], c.pid)
	buf = append(buf, c.secret...)
	nc.SetDeadline(time.Now().Add(cancelTimeout))
	if _, err := nc.Write(buf); err != nil {
		return fmt.Errorf("backend: cancel: %w", err)
	}
	// The server closes the connection when it has processed the request.
	io.Copy(io.Discard, nc)
	return nil
}

// Exec runs sql with the simple protocol and waits for ReadyForQuery. It returns the first
// ErrorResponse as a *pgerr.Error (the connection stays usable) or an *UnavailableError.
// Notices are dropped. It is for the proxy's own statements (settings, BEGIN, DDL).
func (c *Conn) Exec(ctx context.Context, sql string) error {
	_, err := c.ExecRows(ctx, sql)
	return err
}

// ExecRows is Exec that also returns the text values of every DataRow of every result.
func (c *Conn) ExecRows(ctx context.Context, sql string) ([][][]byte, error) {
	stop := c.WatchContext(ctx)
	defer stop()
	c.Query(sql)
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c.readRows()
}

// readRows reads the rows of a result (text values, copied) up to ReadyForQuery. A
// server error comes back as a *pgerr.Error after the connection reached ReadyForQuery.
func (c *Conn) readRows() ([][][]byte, error) {
	var rows [][][]byte
	var first error
	for {
		t, b, err := c.Next()
		if err != nil {
			return nil, err
		}
		switch t {
		case 'D':
			row, err := RowValues(b)
			if err != nil {
				c.MarkBroken()
				return nil, &UnavailableError{Addr: c.Addr, Err: err}
			}
			rows = append(rows, row)
		case 'E':
			if first == nil {
				first = DecodeError(b)
			}
		case 'Z':
			return rows, first
		}
	}
}

// RowValues decodes a DataRow body into copies of its values (nil for NULL).
func RowValues(b []byte) ([][]byte, error) {
	var dr pgproto3.DataRow
	if err := dr.Decode(b); err != nil {
		return nil, err
	}
	row := make([][]byte, len(dr.Values))
	for i, v := range dr.Values {
		if v != nil {
			row[i] = append([]byte{}, v...)
		}
	}
	return row, nil
}

// DecodeError decodes an ErrorResponse or NoticeResponse body into a *pgerr.Error.
func DecodeError(body []byte) *pgerr.Error {
	var er pgproto3.ErrorResponse
	if err := er.Decode(body); err != nil {
		return pgerr.New(pgerr.ProtocolViolation, "invalid error message from server: %v", err)
	}
	return &pgerr.Error{
		Severity: er.Severity, Code: pgerr.Code(er.Code), Message: er.Message, Detail: er.Detail,
		Hint: er.Hint, Position: er.Position, Where: er.Where, SchemaName: er.SchemaName,
		TableName: er.TableName, ColumnName: er.ColumnName, DataTypeName: er.DataTypeName,
		ConstraintName: er.ConstraintName, InternalQuery: er.InternalQuery, InternalPosition: er.InternalPosition,
	}
}

// UnavailableError reports that a server could not be reached or the connection to it was
// lost: the placement is unavailable, as opposed to an error the server answered with.
type UnavailableError struct {
	Addr string
	Err  error
}

func (e *UnavailableError) Error() string { return "backend " + e.Addr + ": " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable reports whether err means the server was unreachable or went away (as
// opposed to answering with an error every replica would give): I/O errors, connection
// failures, and the SQLSTATEs of a server shutting down or crashing.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	code := string(pgerr.CodeOf(err))
	switch {
	case strings.HasPrefix(code, "08"):
		return true
	case code == "57P01", code == "57P02", code == "57P03":
		return true
	case code == "":
		var ne net.Error
		return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	}
	return false
}

// QueryParams runs one statement with the extended protocol (unnamed statement and
// portal), text parameters (nil is NULL) of the given types (0: inferred), and text
// results. It returns the rows, or the server's error as a *pgerr.Error.
func (c *Conn) QueryParams(ctx context.Context, sql string, args [][]byte, oids []uint32) ([][][]byte, error) {
	return c.QueryParamsFormats(ctx, sql, args, oids, nil)
}

// QueryParamsFormats is QueryParams with parameter format codes (Bind's: none for all
// text, one for all, or one per parameter).
func (c *Conn) QueryParamsFormats(ctx context.Context, sql string, args [][]byte, oids []uint32, formats []int16) ([][][]byte, error) {
	return c.QueryParamsBatch(ctx, []string{sql}, args, oids, formats)
}

// QueryParamsBatch runs statements with the extended protocol, each with the same
// parameters (declared for all of them, so that a statement may leave some unused),
// behind one Sync, and returns the rows of all of them in order. The first error stops
// the rest, as in a pipeline.
func (c *Conn) QueryParamsBatch(ctx context.Context, sqls []string, args [][]byte, oids []uint32, formats []int16) ([][][]byte, error) {
	stop := c.WatchContext(ctx)
	defer stop()
	w := c.w
	for _, sql := range sqls {
		w.Msg(&pgproto3.Parse{Query: sql, ParameterOIDs: oids})
		w.Msg(&pgproto3.Bind{Parameters: args, ParameterFormatCodes: formats})
		w.Msg(&pgproto3.Execute{})
	}
	w.Msg(&pgproto3.Sync{})
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c.readRows()
}

// ExecPending reads the response to a query already sent, up to ReadyForQuery, and
// returns its first error.
func (c *Conn) ExecPending(ctx context.Context) error {
	stop := c.WatchContext(ctx)
	defer stop()
	var first error
	for {
		t, b, err := c.Next()
		if err != nil {
			return err
		}
		switch t {
		case 'E':
			if first == nil {
				first = DecodeError(b)
			}
		case 'Z':
			return first
		}
	}
}
