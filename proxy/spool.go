package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/pgwire"
)

// Defaults of the bounds on what a session sets aside.
const (
	defaultWorkMem       = 4 << 20 // PostgreSQL's work_mem
	defaultTempFileLimit = 1 << 30
	// maxSessionSpoolFiles bounds the temporary files one session holds open (a file per
	// portal set aside beyond work-mem, per shard of a sorted FOR UPDATE in a block, per
	// placement of a write's answers): file descriptors are the process's, shared by
	// every session and backend connection.
	maxSessionSpoolFiles = 1024
)

// maxSpoolFiles bounds the temporary files open in all sessions together: a quarter of
// the process's file descriptors (the rest are client and backend connections).
var maxSpoolFiles = func() int64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 1024
	}
	return int64(max(r.Cur/4, 64))
}()

// A spool holds protocol frames the proxy must set aside and hand out later, in order:
// the rest of a suspended portal's result when the session needs the portal's
// connections for another statement, or the RETURNING rows of a write fetched in parts.
// As PostgreSQL's tuplestore, it keeps up to memMax bytes in memory and writes the rest
// to a temporary file; the session's spools together keep at most work-mem in memory
// (memUsed), however many portals a session sets aside. The file is removed from its directory as soon as it is created,
// so that it disappears with the spool (Close), with the session, or with the process,
// whatever ends first; it is created with mode 0600. The session's files together are
// bounded by its temp-file-limit; past it, Write fails with 53400 (tempFileLimitError).
//
// Frames are written with Write (a pgwire.Writer over the spool) and read back with Next.
type spool struct {
	mem     []byte
	memMax  int
	memUsed *int64 // bytes in memory in the session's spools
	memAll  int64  // bound on *memUsed (work-mem)
	dir     string
	limit   int64  // bytes the session's files may hold together; < 0: no limit
	used    *int64 // bytes in the session's files
	files   *int   // files the session's spools hold open
	all     *atomic.Int64
	f       *os.File
	size    int64 // bytes written to f
	n       int64 // bytes written in all
	err     error
	onFail  func() // called once when the writes fail (the limit, the file)
	log     *slog.Logger

	r      *pgwire.Reader // reads the frames back (after the writes)
	held   bool           // a frame read by Next was given back with Unread
	heldT  byte
	heldB  []byte
	closed bool

	scratch []byte // FrameAt's
}

// workMem is the configured work-mem.
func (s *Server) workMem() int {
	if s.cfg.WorkMem > 0 {
		return s.cfg.WorkMem
	}
	return defaultWorkMem
}

// spoolBudget is what a session's spools take together, and the bounds they share: at
// most work-mem in memory (spoolMem), at most temp-file-limit bytes in temporary files
// (tempBytes), at most maxSessionSpoolFiles files open (spoolFiles), and with the other
// sessions' at most maxSpoolFiles. Each spool counts itself in through pointers to these
// fields, so that a session's spools are bounded together however many portals it sets
// aside. It is the session's (embedded in it), used by its goroutine only.
type spoolBudget struct {
	tempBytes  int64 // bytes in the session's temporary result files
	spoolMem   int64 // bytes the session's spools keep in memory
	spoolFiles int   // temporary files the session's spools hold open

	// The server's configuration and its count of files open in all sessions, set when
	// the session is built.
	workMem   int
	tempDir   string
	tempLimit int64 // Config.TempFileLimit: 0 for the default, < 0 for no limit
	allFiles  *atomic.Int64
	log       *slog.Logger
}

// newSpoolBudget returns the empty budget of a session of srv.
func newSpoolBudget(srv *Server, log *slog.Logger) spoolBudget {
	return spoolBudget{workMem: srv.workMem(), tempDir: srv.cfg.TempDir, tempLimit: srv.cfg.TempFileLimit,
		allFiles: &srv.spoolFiles, log: log}
}

// newSpool returns an empty spool of the session.
func (b *spoolBudget) newSpool() *spool {
	sp := &spool{memMax: b.workMem, memUsed: &b.spoolMem, memAll: int64(b.workMem),
		files: &b.spoolFiles, all: b.allFiles, dir: b.tempDir, limit: b.tempLimit, used: &b.tempBytes, log: b.log}
	if sp.limit == 0 {
		sp.limit = defaultTempFileLimit
	}
	return sp
}

// tempFileLimitError is the error of a spool past its limit.
func tempFileLimitError(limit int64) *pgerr.Error {
	return pgerr.New(pgerr.ConfigurationLimitExceeded, "temporary file size exceeds pgshard's temp-file-limit (%d bytes)", limit).
		WithDetail("pgshard sets aside what it must hold before it can go on: the rest of a portal suspended by a row limit when another statement runs before the portal was read, the answers of a write until its outcome is known.").
		WithHint("Read portals to their end before running other statements, or raise --temp-file-limit (PGSHARD_TEMP_FILE_LIMIT).")
}

// Write appends frames: to memory while they fit in workMem, then to the file.
func (sp *spool) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	if sp.f == nil && len(sp.mem)+len(p) <= sp.memMax && (sp.memUsed == nil || *sp.memUsed+int64(len(p)) <= sp.memAll) {
		sp.mem = append(sp.mem, p...)
		sp.n += int64(len(p))
		if sp.memUsed != nil {
			*sp.memUsed += int64(len(p))
		}
		return len(p), nil
	}
	if sp.limit >= 0 && *sp.used+int64(len(p)) > sp.limit {
		sp.err = tempFileLimitError(sp.limit)
		if sp.onFail != nil {
			sp.onFail()
		}
		return 0, sp.err
	}
	if sp.f == nil {
		if sp.files != nil && (*sp.files >= maxSessionSpoolFiles || sp.all.Load() >= maxSpoolFiles) {
			sp.err = pgerr.New(pgerr.ConfigurationLimitExceeded, "too many results set aside in temporary files").
				WithDetail("A session holds at most %d such files open, and pgshard at most %d.", maxSessionSpoolFiles, maxSpoolFiles).
				WithHint("Read portals to their end, or close them, before running other statements.")
			if sp.onFail != nil {
				sp.onFail()
			}
			return 0, sp.err
		}
		f, err := os.CreateTemp(sp.dir, "pgshard-result-*")
		if err != nil {
			return 0, sp.fileError("create", err)
		}
		os.Remove(f.Name()) // open until Close; gone from the directory already
		sp.f = f
		if sp.files != nil {
			*sp.files++
			sp.all.Add(1)
		}
	}
	n, err := sp.f.Write(p)
	sp.size += int64(n)
	sp.n += int64(n)
	*sp.used += int64(n)
	if err != nil {
		return n, sp.fileError("write", err)
	}
	return n, nil
}

// fileError records a temporary file's failure: the log has the cause, the client a
// message without the server's paths.
func (sp *spool) fileError(op string, err error) error {
	if sp.log != nil {
		sp.log.Error("temporary result file", "op", op, "err", err)
	}
	sp.err = pgerr.Wrap(err, pgerr.InsufficientResources, "could not %s a temporary file for a result set aside", op).
		WithHint("See pgshard's log; --temp-dir (PGSHARD_TEMP_DIR) says where these files go.")
	if sp.onFail != nil {
		sp.onFail()
	}
	return sp.err
}

// Err returns the error that stopped the writes, if any.
func (sp *spool) Err() error { return sp.err }

// Len returns the number of bytes written: the offset of the next frame written.
func (sp *spool) Len() int64 { return sp.n }

// WriteFrame appends one frame.
func (sp *spool) WriteFrame(t byte, body []byte) error {
	hdr := [5]byte{t}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)+4))
	if _, err := sp.Write(hdr[:]); err != nil {
		return err
	}
	_, err := sp.Write(body)
	return err
}

// Rewind makes Next start again from the first frame.
func (sp *spool) Rewind() { sp.r, sp.held = nil, false }

// each rewinds the spool and calls fn with every frame in it, in order.
func (sp *spool) each(fn func(t byte, body []byte)) error {
	sp.Rewind()
	for {
		t, body, err := sp.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		fn(t, body)
	}
}

// FrameAt reads the frame written at offset off (Len before it was written). The body
// is valid until the next call.
func (sp *spool) FrameAt(off int64) (byte, []byte, error) {
	var hdr [5]byte
	if err := sp.readAt(hdr[:], off); err != nil {
		return 0, nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:])) - 4
	if n < 0 || off+5+n > sp.n {
		return 0, nil, fmt.Errorf("reading a temporary result file: bad frame at %d", off)
	}
	if int64(cap(sp.scratch)) < n {
		sp.scratch = make([]byte, n)
	}
	b := sp.scratch[:n]
	if err := sp.readAt(b, off+5); err != nil {
		return 0, nil, err
	}
	if cap(sp.scratch) > 1<<20 {
		sp.scratch = nil // do not keep a large row's buffer
	}
	return hdr[0], b, nil
}

// readAt fills p with the bytes written at offset off.
func (sp *spool) readAt(p []byte, off int64) error {
	if off < int64(len(sp.mem)) {
		k := copy(p, sp.mem[off:])
		p, off = p[k:], off+int64(k)
	}
	if len(p) == 0 {
		return nil
	}
	if sp.f == nil {
		return fmt.Errorf("reading a temporary result file: offset %d past its end", off)
	}
	if _, err := sp.f.ReadAt(p, off-int64(len(sp.mem))); err != nil {
		return fmt.Errorf("reading a temporary result file: %w", err)
	}
	return nil
}

// Next returns the next frame set aside; io.EOF after the last one. The body is valid
// until the next call.
func (sp *spool) Next() (byte, []byte, error) {
	if sp.closed {
		return 0, nil, io.EOF
	}
	if sp.held {
		sp.held = false
		return sp.heldT, sp.heldB, nil
	}
	if sp.r == nil {
		var src io.Reader = bytes.NewReader(sp.mem)
		if sp.f != nil {
			src = io.MultiReader(src, io.NewSectionReader(sp.f, 0, sp.size))
		}
		size := 32 << 10
		if sp.f == nil && len(sp.mem) < size {
			// Every frame is in memory: a buffer of their size holds any of them
			// (most write answers are a few dozen bytes).
			size = max(len(sp.mem), 16)
		}
		sp.r = pgwire.NewReader(src, size)
	}
	t, b, err := sp.r.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("reading a temporary result file: %w", err)
	}
	return t, b, nil
}

// Unread gives back the frame Next returned last: the next Next returns it again.
func (sp *spool) Unread(t byte, b []byte) {
	sp.held, sp.heldT, sp.heldB = true, t, append(sp.heldB[:0], b...)
}

// Close releases the memory and removes the file.
func (sp *spool) Close() {
	if sp == nil || sp.closed {
		return
	}
	sp.closed = true
	if sp.memUsed != nil {
		*sp.memUsed -= int64(len(sp.mem))
	}
	sp.mem, sp.heldB, sp.r, sp.scratch = nil, nil, nil, nil
	if sp.f != nil {
		sp.f.Close()
		sp.f = nil
		*sp.used -= sp.size
		if sp.files != nil {
			*sp.files--
			sp.all.Add(-1)
		}
	}
}

// spoolRows reads a result into sp: its DataRows as frames; it returns the row
// description and the number of rows. A server error comes back as a *pgerr.Error after
// the connection reached ReadyForQuery; so does sp's error (past temp-file-limit, the
// rest is read and dropped).
func spoolRows(ctx context.Context, c *backend.Conn, sp *spool) (*pgproto3.RowDescription, int, error) {
	stop := c.WatchContext(ctx)
	defer stop()
	desc := &pgproto3.RowDescription{}
	var first error
	n := 0
	for {
		t, b, err := c.Next()
		if err != nil {
			return nil, 0, err
		}
		switch t {
		case 'T':
			if err := desc.Decode(b); err != nil {
				return nil, 0, err
			}
			// Decode aliases the buffer; keep copies.
			for i := range desc.Fields {
				desc.Fields[i].Name = append([]byte{}, desc.Fields[i].Name...)
			}
		case 'D':
			if sp.WriteFrame('D', b) == nil {
				n++
			}
		case 'E':
			if first == nil {
				first = c.DecodeError(b)
			}
		case 'Z':
			if first == nil {
				first = sp.Err()
			}
			return desc, n, first
		}
	}
}
