package proxy

import (
	"bytes"
	"context"
	"io"
	"iter"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/router"
)

// A suspension is a portal whose statement stopped after an Execute's row limit, part way
// through its result, holding its backend connections where they are. The next Execute
// of the portal resumes it where it stopped: a cursor over a large result (JDBC's fetch
// size, node-postgres' pg-cursor) streams through the proxy instead of being read whole
// into memory first.
//
// The statement runs as a coroutine (iter.Pull): it runs only while the session waits for
// it, on the session's own state, and yields from inside the client writer's Tap when the
// row limit is reached. Its results go through out, which settle redirects. Between Executes the session handles only what cannot touch the
// statement's connections (Flush, Sync, Close); anything else first settles the portal
// (settle).
type suspension struct {
	pt *portal
	// out is where the statement's results go: the client while it is served, a spool
	// or nowhere once it is settled (Redirect), from its next write on.
	out    *protocol.Results
	next   func() (struct{}, bool)
	stop   func()
	cancel context.CancelFunc // ends the statement's context (the reads of its connections)
	// The statement is a distributed SELECT: when the portal is dropped outside a
	// transaction block its backends may be cut off rather than read to the end. Other
	// statements (which may write: a coordinator INSERT ... RETURNING, a function) are
	// run to their end, as PostgreSQL would have.
	readOnly bool

	yield  func(struct{}) bool
	limit  uint32 // the row limit of the Execute being served (0: none)
	rows   uint32 // rows sent for that Execute
	tag    string // the statement's CommandComplete tag, once sent
	err    error  // the statement's error, once it finished
	ending bool   // the portal is being dropped: run to the end without yielding
}

// startSuspendable runs a portal's statement under a row limit as a coroutine and serves
// its first rows.
func (h handler) startSuspendable(ctx context.Context, snap *metadata.Snapshot, pt *portal, call stmtCall, maxRows uint32) error {
	ss := h.ss
	sctx, cancel := context.WithCancel(ctx)
	s := &suspension{pt: pt, out: ss.conn.Results(), cancel: cancel, readOnly: pt.stmt.st.Kind == router.Select}
	s.next, s.stop = iter.Pull(func(yield func(struct{}) bool) {
		s.yield = yield
		s.err = ss.newExecution(snap, pt.stmt.st, pt.stmt.in, call, s.out).run(sctx)
		ss.txn.endStatement(ctx)
	})
	ss.suspended = s
	return h.resume(s, maxRows)
}

// tap watches the frames the suspended statement writes: it counts rows, holds back the
// CommandComplete (whose row count must be the last Execute's), and suspends the
// statement when the row limit is reached.
func (s *suspension) tap(w *pgwire.Writer) func(byte, int) {
	return func(typ byte, start int) {
		switch typ {
		case 'D':
			s.rows++
			if s.limit > 0 && s.rows == s.limit && !s.ending {
				w.Tap = nil
				s.yield(struct{}{})
			}
		case 'C':
			body := w.Buffered()[start+5:]
			s.tag = string(bytes.TrimRight(body, "\x00"))
			w.Truncate(start)
		}
	}
}

// run resumes the statement with the client writer tapped, until it yields or ends.
// done reports that it ended.
func (s *suspension) run() (done bool) {
	w := s.out.Writer // the client's
	w.Tap = s.tap(w)
	_, more := s.next()
	w.Tap = nil
	return !more
}

// resume serves the next part of a suspended portal's result: up to maxRows rows and
// PortalSuspended, or the rest and its CommandComplete.
func (h handler) resume(s *suspension, maxRows uint32) error {
	ss := h.ss
	s.limit, s.rows = maxRows, 0
	if !s.run() {
		ss.w.Raw('s', nil)
		// What the client has seen can no longer be taken back (a read that fails
		// over to another placement restarts only while nothing has been flushed).
		ss.conn.Flush()
		return nil
	}
	ss.suspended = nil
	s.cancel()
	if s.err != nil {
		return s.err
	}
	if s.tag != "" {
		tag := s.tag
		if strings.HasPrefix(tag, "SELECT ") {
			tag = "SELECT " + strconv.FormatUint(uint64(s.rows), 10)
		}
		ss.commandComplete(tag)
	}
	return nil
}

// settle runs a suspended portal's statement to its end before the session does anything
// else with its connections. If the portal stays (keep), the rest of its result is set
// aside for its next Executes, as if it had been read whole at the start: in memory up to
// work-mem, beyond in a temporary file (spool), up to the session's temp-file-limit.
// Otherwise it is discarded, and a read-only statement outside a transaction block is cut
// off at once. The error is the limit's: the statement was cut off, the portal is gone,
// and the statement that needed the connections must fail.
func (ss *session) settle(keep bool) error {
	s := ss.suspended
	if s == nil {
		return nil
	}
	ss.suspended = nil
	var sp *spool
	var dst *pgwire.Writer
	if keep {
		sp = ss.newSpool()
		// When the spool fails (past the limit), cut the statement off: its connections
		// are read no further.
		sp.onFail = s.cancel
		dst = pgwire.NewWriter(sp)
	} else {
		dst = pgwire.NewWriter(io.Discard)
	}
	// The statement's next writes go there.
	s.out.Redirect(dst)
	s.ending = true
	if !keep && s.readOnly && ss.txn.tx == txIdle {
		s.cancel()
	}
	if keep {
		// The rows go to the spool as they come: no Tap, no yield.
		s.next()
	} else {
		s.stop()
	}
	dst.Flush()
	s.cancel()
	if !keep {
		return nil
	}
	if err := sp.Err(); err != nil {
		sp.Close()
		ss.dropPortal(s.pt.name)
		return err
	}
	s.pt.pending, s.pt.err = sp, s.err
	return nil
}

// dropBlockPortals removes the portals at the end of a transaction block, but running,
// the one whose Execute ends it (nil for a simple query).
func (ss *session) dropBlockPortals(running *portal) {
	for name, pt := range ss.portals {
		if pt != running {
			ss.dropPortal(name)
		}
	}
}
