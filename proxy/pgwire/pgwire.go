// Package pgwire reads and writes PostgreSQL protocol frames: a type byte, a four-byte
// length and a body. It works on raw frames so that the proxy can relay the messages it
// does not need to understand (DataRow above all) without decoding and re-encoding them,
// and decode the ones it does with pgproto3's Decode methods.
//
// A body returned by Reader.Next is valid only until the next call; anything kept must be
// copied. Writer buffers messages until Flush, so that one protocol turn costs one write.
package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxMessage is the largest message body accepted by default: PostgreSQL's own
// limit for a protocol message (1 GiB).
const DefaultMaxMessage = 1 << 30

// ErrTooLarge is returned for a frame whose length exceeds the reader's limit.
var ErrTooLarge = errors.New("pgwire: message too large")

// ErrBadLength is returned for a frame whose length field is below 4.
var ErrBadLength = errors.New("pgwire: invalid message length")

// Reader reads frames from an io.Reader through a buffer.
type Reader struct {
	r      io.Reader
	buf    []byte
	rd, wr int // buf[rd:wr] is unread data
	max    int
	big    []byte // scratch for bodies larger than buf
}

// NewReader returns a reader with a buffer of size bytes and the default message limit.
func NewReader(r io.Reader, size int) *Reader {
	return &Reader{r: r, buf: make([]byte, size), max: DefaultMaxMessage}
}

// SetMaxMessage sets the largest accepted body length.
func (r *Reader) SetMaxMessage(n int) { r.max = n }

// Buffered returns the number of bytes read from the connection but not yet consumed.
func (r *Reader) Buffered() int { return r.wr - r.rd }

// fill ensures at least n bytes are buffered (n <= len(r.buf)).
func (r *Reader) fill(n int) error {
	if r.wr-r.rd >= n {
		return nil
	}
	if r.rd > 0 {
		copy(r.buf, r.buf[r.rd:r.wr])
		r.wr -= r.rd
		r.rd = 0
	}
	for r.wr < n {
		m, err := r.r.Read(r.buf[r.wr:])
		r.wr += m
		if err != nil {
			if r.wr >= n {
				return nil
			}
			if err == io.EOF && r.wr > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// body returns the next n bytes, from the buffer when they fit. A large body is read into
// a buffer that grows as its bytes arrive, so that a length a client announces costs
// memory only once the client has sent that much.
func (r *Reader) body(n int) ([]byte, error) {
	if n <= len(r.buf) {
		if err := r.fill(n); err != nil {
			return nil, err
		}
		b := r.buf[r.rd : r.rd+n]
		r.rd += n
		return b, nil
	}
	if cap(r.big) < n {
		r.big = make([]byte, min(n, max(growStep, r.wr-r.rd)))
	}
	b := r.big[:min(n, cap(r.big))]
	k := copy(b, r.buf[r.rd:r.wr])
	r.rd, r.wr = 0, 0
	for k < n {
		if k == len(b) {
			nb := make([]byte, min(n, 2*len(b)))
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r.r, b[k:])
		k += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	r.big = b
	return b, nil
}

// growStep is the first allocation for a large message body.
const growStep = 1 << 20

// Peek returns the bytes read from the connection but not consumed yet, without
// consuming them; they are valid until the next read.
func (r *Reader) Peek() []byte { return r.buf[r.rd:r.wr] }

// Wait blocks until at least one byte is buffered or readable, without consuming
// anything: with a read deadline on the connection it lets a caller wait for the next
// message and do other work on timeouts.
func (r *Reader) Wait() error {
	if r.rd < r.wr {
		return nil
	}
	return r.fill(1)
}

// Next reads one typed frame.
func (r *Reader) Next() (typ byte, body []byte, err error) {
	if r.big != nil && cap(r.big) > 1<<20 {
		r.big = nil // do not pin a large buffer after a large message
	}
	if err := r.fill(5); err != nil {
		return 0, nil, err
	}
	typ = r.buf[r.rd]
	n := int(int32(binary.BigEndian.Uint32(r.buf[r.rd+1:])))
	if n < 4 {
		return 0, nil, fmt.Errorf("%w: %d for message type %q", ErrBadLength, n, typ)
	}
	if n-4 > r.max {
		return 0, nil, fmt.Errorf("%w: %d bytes (limit %d) for message type %q", ErrTooLarge, n-4, r.max, typ)
	}
	r.rd += 5
	body, err = r.body(n - 4)
	return typ, body, err
}

// Startup reads an untyped frame (StartupMessage, SSLRequest, CancelRequest, ...).
func (r *Reader) Startup() ([]byte, error) {
	if err := r.fill(4); err != nil {
		return nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(r.buf[r.rd:])))
	if n < 8 {
		return nil, fmt.Errorf("%w: %d in startup packet", ErrBadLength, n)
	}
	// PostgreSQL limits startup packets to 10000 bytes.
	if n > 10000 {
		return nil, fmt.Errorf("%w: startup packet of %d bytes", ErrTooLarge, n)
	}
	r.rd += 4
	return r.body(n - 4)
}

// Writer buffers frames for one write per protocol turn.
type Writer struct {
	w       io.Writer
	buf     []byte
	err     error
	flushes int
	// AutoFlush is the buffer size past which a message append flushes (0: never), so
	// that long results stream instead of accumulating.
	AutoFlush int
	// Tap, if set, sees every frame Raw or Msg appends (not those Bytes appends): its
	// type and its offset in the buffer (Truncate(start) drops it). It runs before the
	// buffer may be flushed.
	Tap func(typ byte, start int)
}

// NewWriter returns a writer that flushes when more than 64 KiB are buffered.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, 8192), AutoFlush: 64 << 10}
}

// Encoder is a message that can append its wire form (pgproto3 messages are).
type Encoder interface {
	Encode(dst []byte) ([]byte, error)
}

// Raw appends a frame with the given type and body.
func (w *Writer) Raw(typ byte, body []byte) {
	start := len(w.buf)
	w.buf = append(w.buf, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(w.buf[len(w.buf)-4:], uint32(len(body)+4))
	w.buf = append(w.buf, body...)
	if w.Tap != nil {
		w.Tap(typ, start)
	}
	w.maybeFlush()
}

// Bytes appends already framed bytes.
func (w *Writer) Bytes(b []byte) {
	w.buf = append(w.buf, b...)
	w.maybeFlush()
}

// Msg appends an encoded message.
func (w *Writer) Msg(m Encoder) {
	start := len(w.buf)
	b, err := m.Encode(w.buf)
	if err != nil {
		if w.err == nil {
			w.err = fmt.Errorf("pgwire: encode %T: %w", m, err)
		}
		return
	}
	w.buf = b
	if w.Tap != nil && len(b) > start {
		w.Tap(b[start], start)
	}
	w.maybeFlush()
}

func (w *Writer) maybeFlush() {
	if w.AutoFlush > 0 && len(w.buf) >= w.AutoFlush {
		w.Flush()
	}
}

// Buffered returns the buffered bytes, valid until the next append or flush.
func (w *Writer) Buffered() []byte { return w.buf }

// Len returns the number of buffered bytes.
func (w *Writer) Len() int { return len(w.buf) }

// Flushes counts the flushes so far: with Len it marks a point that Truncate can return
// to as long as no flush happened since.
func (w *Writer) Flushes() int { return w.flushes }

// Truncate drops the bytes buffered after the first n.
func (w *Writer) Truncate(n int) {
	if n < len(w.buf) {
		w.buf = w.buf[:n]
	}
}

// Reset drops buffered bytes.
func (w *Writer) Reset() { w.buf = w.buf[:0] }

// Flush writes the buffered bytes. After a write error every later Flush returns it.
func (w *Writer) Flush() error {
	if w.err != nil {
		w.buf = w.buf[:0]
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	w.flushes++
	_, err := w.w.Write(w.buf)
	if cap(w.buf) > 1<<20 {
		w.buf = make([]byte, 0, 8192)
	} else {
		w.buf = w.buf[:0]
	}
	if err != nil {
		w.err = err
	}
	return err
}

// Err returns the first write or encode error.
func (w *Writer) Err() error { return w.err }
