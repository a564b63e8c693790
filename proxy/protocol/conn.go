package protocol

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/pgwire"
)

// ErrShuttingDown is what a client hears when the server stops while it is connected.
var ErrShuttingDown = pgerr.New(pgerr.AdminShutdown, "terminating connection due to administrator command").WithSeverity("FATAL")

// A Handler gives the client's messages their meaning. The Conn calls it on the
// session's goroutine, one message at a time; it decides nothing of the protocol's
// order (when ReadyForQuery is due, which messages an error skips), and the Conn decides
// nothing of what a statement means.
type Handler interface {
	// Idle is called before the Conn waits for the client's next message: by when that
	// message must arrive (zero: no limit) and the FATAL error the client hears when it
	// does not. listen asks the Conn to call Relay while it waits.
	Idle() (until time.Time, timeout *pgerr.Error, listen bool)
	// Relay writes to w what arrived for the idle client (notifications). It reports
	// false when nothing more can arrive: the Conn then just waits.
	Relay(w *pgwire.Writer) (listening bool)
	// Busy is called when a message has arrived (or the read failed), before it is
	// handled.
	Busy()
	// Admit is called before a Query and before every extended-protocol message but
	// Flush and Sync that is not skipped: an error fails the message as if it were its
	// own (a suspended portal that had to be settled and could not be).
	Admit(typ byte, body []byte) error
	// Query runs a simple query's statements. Their errors are the Handler's to report
	// (Fail); ReadyForQuery follows.
	Query(ctx context.Context, sql string)
	// Parse, Bind, Describe, Execute and Close handle the extended protocol's messages;
	// an error is sent to the client, and the pipeline is skipped up to Sync.
	Parse(ctx context.Context, m *pgproto3.Parse) error
	Bind(ctx context.Context, m *pgproto3.Bind) error
	Describe(ctx context.Context, m *pgproto3.Describe) error
	Execute(ctx context.Context, m *pgproto3.Execute) error
	Close(ctx context.Context, m *pgproto3.Close) error
	// Sync ends the pipeline (an implicit transaction ends, its portals go);
	// ReadyForQuery follows. A Query that follows extended-protocol messages without a
	// Sync ends their pipeline too: Sync is called after it.
	Sync(ctx context.Context)
	// Fail reports a failed message's error to the client (unless it heard it already)
	// and fails the transaction block.
	Fail(err error)
	// Ready is called before ReadyForQuery: the transaction status it reports ('I', 'T'
	// or 'E').
	Ready() byte
}

// Counters count the bytes a Conn received and sent (nil: not counted).
type Counters struct {
	Received, Sent *atomic.Int64
}

// A Conn is the protocol side of one client connection: it reads the client's
// messages, keeps the state of the simple and extended protocols, and writes the
// protocol's own answers (ReadyForQuery, fatal errors). Everything else it asks its
// Handler. It reads from an io.Reader and writes to an io.Writer: deadlines and wake-ups
// need the reader to have SetReadDeadline (net.Conn has), and are skipped otherwise.
type Conn struct {
	src io.Reader
	r   *pgwire.Reader
	w   *pgwire.Writer
	cnt Counters
	// skip: an extended-protocol message failed; messages are skipped until Sync.
	skip bool
	// pipeline: extended-protocol messages came since the last Sync (or Query).
	pipeline bool
	closing  atomic.Bool
}

// New returns a Conn that reads messages of at most maxMessage bytes (0: pgwire's
// default) from src and writes to dst.
func New(src io.Reader, dst io.Writer, maxMessage int, cnt Counters) *Conn {
	c := &Conn{src: src, r: pgwire.NewReader(src, 16<<10), w: pgwire.NewWriter(dst), cnt: cnt}
	if maxMessage > 0 {
		c.r.SetMaxMessage(maxMessage)
	}
	return c
}

// Writer is the client's writer: messages are buffered until Flush.
func (c *Conn) Writer() *pgwire.Writer { return c.w }

// Flush sends what is buffered for the client.
func (c *Conn) Flush() {
	n := c.w.Len()
	if c.w.Flush() == nil && c.cnt.Sent != nil {
		c.cnt.Sent.Add(int64(n))
	}
}

// Fatal sends e as a FATAL error (whatever its severity unless set) and flushes; the
// caller closes the connection.
func (c *Conn) Fatal(e *pgerr.Error) {
	if e.Severity == "" {
		e = &pgerr.Error{Severity: "FATAL", Code: e.Code, Message: e.Message, Detail: e.Detail, Hint: e.Hint}
	}
	c.w.Msg(ErrorResponse(e))
	c.Flush()
}

// ReadyForQuery tells the client the session waits for its next query, in transaction
// status st, and flushes.
func (c *Conn) ReadyForQuery(st byte) {
	c.w.Raw('Z', []byte{st})
	c.Flush()
}

// Shutdown asks the Conn to end: a wait for the client's next message is cut short,
// and the client hears ErrShuttingDown. Safe from any goroutine.
func (c *Conn) Shutdown() {
	c.closing.Store(true)
	c.setReadDeadline(time.Now())
}

// Closing reports whether Shutdown was called.
func (c *Conn) Closing() bool { return c.closing.Load() }

// setReadDeadline sets the reader's deadline, if it has deadlines.
func (c *Conn) setReadDeadline(t time.Time) {
	if d, ok := c.src.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(t)
	}
}

// clearDeadline lifts a read deadline after a read, unless Shutdown came meanwhile (its
// wake-up must stay).
func (c *Conn) clearDeadline() {
	if c.closing.Load() {
		c.setReadDeadline(time.Now())
	} else {
		c.setReadDeadline(time.Time{})
	}
}

// Serve reads and handles the client's messages until the client leaves, the
// connection fails or the Conn shuts down.
func (c *Conn) Serve(ctx context.Context, h Handler) {
	for c.next(ctx, h) && c.w.Err() == nil {
	}
}

// next reads and handles one message. It reports false when the connection must close.
func (c *Conn) next(ctx context.Context, h Handler) bool {
	typ, body, ok := c.read(h)
	if !ok {
		return false
	}
	switch typ {
	case 'Q':
		if c.skip {
			// PostgreSQL drops a Query too while it skips to Sync: running it would
			// commit what the failed pipeline began, and answer a ReadyForQuery the
			// client does not count on.
			return true
		}
		return c.query(ctx, h, body)
	case 'X':
		return false
	case 'S':
		c.skip, c.pipeline = false, false
		if len(body) != 0 {
			// PostgreSQL reads a Sync to its end before it ends the transaction: the
			// error fails it, and ReadyForQuery follows.
			h.Fail(pgerr.New(pgerr.ProtocolViolation, "invalid message format"))
		}
		h.Sync(ctx)
		c.ReadyForQuery(h.Ready())
	case 'H':
		if len(body) != 0 && !c.skip {
			// PostgreSQL reads a Flush to its end: the error fails the pipeline.
			c.fail(h, pgerr.New(pgerr.ProtocolViolation, "invalid message format"))
		}
		c.Flush()
	case 'P', 'B', 'D', 'E', 'C':
		return c.extended(ctx, h, typ, body)
	case 'd', 'c', 'f':
		// CopyData/CopyDone/CopyFail outside COPY: ignored, as PostgreSQL does (a COPY
		// failed and the client is still sending).
	default:
		c.Fatal(pgerr.New(pgerr.ProtocolViolation, "invalid frontend message type %d", typ))
		return false
	}
	return true
}

// read waits for the client's next message, within the Handler's deadline, relaying
// what arrives for an idle client meanwhile.
func (c *Conn) read(h Handler) (byte, []byte, bool) {
	until, idleErr, listen := h.Idle()
	if c.closing.Load() {
		c.Fatal(ErrShuttingDown)
		return 0, nil, false
	}
	if listen {
		if ok, timedOut := c.waitRelaying(h, until); timedOut {
			c.Fatal(idleErr)
			return 0, nil, false
		} else if !ok {
			return 0, nil, false
		}
	}
	if !until.IsZero() {
		c.setReadDeadline(until)
		if c.closing.Load() {
			c.setReadDeadline(time.Now())
		}
	}
	typ, body, err := c.r.Next()
	if !until.IsZero() {
		c.clearDeadline()
	}
	h.Busy()
	if err != nil {
		var ne net.Error
		if !until.IsZero() && errors.As(err, &ne) && ne.Timeout() && !c.closing.Load() {
			c.Fatal(idleErr)
			return 0, nil, false
		}
		if errors.Is(err, pgwire.ErrTooLarge) || errors.Is(err, pgwire.ErrBadLength) {
			c.Fatal(pgerr.New(pgerr.ProtocolViolation, "invalid message length"))
		}
		return 0, nil, false
	}
	if c.cnt.Received != nil {
		c.cnt.Received.Add(int64(len(body) + 5))
	}
	return typ, body, true
}

// waitRelaying waits for the client's next message while the Handler relays what
// arrives meanwhile (LISTEN's notifications), looking every 50ms. It reports false when
// the connection must close, and timedOut when the client sent nothing until until (if
// not zero).
func (c *Conn) waitRelaying(h Handler, until time.Time) (ok, timedOut bool) {
	defer c.setReadDeadline(time.Time{})
	for {
		next := time.Now().Add(50 * time.Millisecond)
		if !until.IsZero() && until.Before(next) {
			next = until
		}
		c.setReadDeadline(next)
		err := c.r.Wait()
		if err == nil {
			return true, false
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || c.closing.Load() {
			return false, false
		}
		if !until.IsZero() && !time.Now().Before(until) {
			return false, true
		}
		if !h.Relay(c.w) {
			return true, false
		}
		c.Flush()
	}
}

// query handles a Query message: one or more statements, then ReadyForQuery.
func (c *Conn) query(ctx context.Context, h Handler, body []byte) bool {
	q, ok := cstring(body)
	if !ok {
		c.Fatal(pgerr.New(pgerr.ProtocolViolation, "invalid string in message"))
		return false
	}
	if err := h.Admit('Q', body); err != nil {
		h.Fail(err)
	} else if strings.IndexByte(q, 0) >= 0 {
		// PostgreSQL reads the query up to its first NUL and then finds the message
		// longer than that: an error, and nothing of it runs. (The parser would stop at
		// the NUL, the backends not: the text after it must never reach them.)
		h.Fail(pgerr.New(pgerr.ProtocolViolation, "invalid message format"))
	} else {
		h.Query(ctx, q)
	}
	if c.pipeline {
		// Extended-protocol messages came before the Query without a Sync: PostgreSQL
		// ends their implicit transaction, which the Query joined, when the Query ends,
		// as Sync would (its writes commit, its portals go, ReadyForQuery says idle).
		c.pipeline = false
		h.Sync(ctx)
	}
	c.ReadyForQuery(h.Ready())
	return true
}

// extended handles Parse, Bind, Describe, Execute and Close. It reports false when the
// connection must close.
func (c *Conn) extended(ctx context.Context, h Handler, typ byte, body []byte) bool {
	if c.skip {
		return true // an error occurred: everything up to Sync is discarded
	}
	c.pipeline = true
	if err := h.Admit(typ, body); err != nil {
		c.fail(h, err)
		return true
	}
	// decodeErr is a message pgproto3 could not decode: the stream cannot be trusted.
	// Any other error is the statement's, answered with an ErrorResponse (a backend
	// connection lost while the statement ran is not a protocol violation of the client).
	var err, decodeErr error
	switch typ {
	case 'P':
		var m pgproto3.Parse
		if decodeErr = m.Decode(body); decodeErr == nil {
			err = h.Parse(ctx, &m)
		}
	case 'B':
		var m pgproto3.Bind
		if decodeErr = m.Decode(body); decodeErr == nil {
			err = h.Bind(ctx, &m)
		}
	case 'D':
		var m pgproto3.Describe
		if decodeErr = m.Decode(body); decodeErr == nil {
			err = h.Describe(ctx, &m)
		}
	case 'E':
		var m pgproto3.Execute
		if decodeErr = m.Decode(body); decodeErr == nil {
			err = h.Execute(ctx, &m)
		}
	case 'C':
		var m pgproto3.Close
		if decodeErr = m.Decode(body); decodeErr == nil {
			err = h.Close(ctx, &m)
		}
	}
	if decodeErr != nil {
		c.Fatal(pgerr.New(pgerr.ProtocolViolation, "invalid message format"))
		return false
	}
	if err != nil {
		c.fail(h, err)
	}
	return true
}

// fail is where an extended-protocol message fails: the error reaches the client at
// once (not at Sync, unless it did already), the transaction block fails, and the rest
// of the pipeline up to Sync is discarded.
func (c *Conn) fail(h Handler, err error) {
	h.Fail(err)
	c.Flush()
	c.skip = true
}

// MoreBeforeSync reports whether the client may send another Execute before its next
// Sync: true unless the messages already buffered show a Sync first.
func (c *Conn) MoreBeforeSync() bool {
	b := c.r.Peek()
	for len(b) >= 5 {
		switch b[0] {
		case 'S':
			return false
		case 'E', 'Q':
			return true
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if n < 4 || 1+n > len(b) {
			return true
		}
		b = b[1+n:]
	}
	return true
}

// ReadCopy reads the client's next message during COPY FROM STDIN, by until (zero: no
// limit). When until passes the client hears timeout (FATAL) and its connection is
// closed, which ends the COPY and then the session.
func (c *Conn) ReadCopy(until time.Time, timeout *pgerr.Error) (byte, []byte, error) {
	if until.IsZero() {
		return c.r.Next()
	}
	c.setReadDeadline(until)
	typ, body, err := c.r.Next()
	c.clearDeadline()
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && !c.closing.Load() {
		c.Fatal(timeout)
		if cl, ok := c.src.(io.Closer); ok {
			cl.Close()
		}
	}
	return typ, body, err
}

// cstring returns a message body holding one zero-terminated string.
func cstring(b []byte) (string, bool) {
	if len(b) == 0 || b[len(b)-1] != 0 {
		return "", false
	}
	return string(b[:len(b)-1]), true
}

// ErrorResponse is e as the protocol's ErrorResponse message.
func ErrorResponse(e *pgerr.Error) *pgproto3.ErrorResponse {
	sev := e.SeverityText()
	return &pgproto3.ErrorResponse{
		Severity: sev, SeverityUnlocalized: sev, Code: string(e.Code), Message: e.Message, Detail: e.Detail,
		Hint: e.Hint, Position: e.Position, Where: e.Where, SchemaName: e.SchemaName, TableName: e.TableName,
		ColumnName: e.ColumnName, DataTypeName: e.DataTypeName, ConstraintName: e.ConstraintName,
		InternalQuery: e.InternalQuery, InternalPosition: e.InternalPosition,
	}
}
