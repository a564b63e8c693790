package proxy

import (
	"bytes"
	"context"
	"time"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/proxy/protocol"
)

// handler is the session as the protocol layer sees it (protocol.Handler): what each
// client message means. The protocol's order — ReadyForQuery, skipping to Sync after an
// error — is package protocol's; the statements' meaning is the session's.
type handler struct{ ss *session }

var _ protocol.Handler = handler{}

// Idle says by when the client's next message must arrive: the session's idle timeouts
// (idle.go) and client_idle_timeout, whatever the session is waiting for. A session that
// listens (LISTEN) relays notifications while it waits, unless a suspended portal holds
// the coordinator connection.
func (h handler) Idle() (time.Time, *pgerr.Error, bool) {
	ss := h.ss
	ss.busy.Store(false)
	statementOver(&ss.txn.waits)
	until, idleErr := ss.txn.idleDeadline()
	if t := ss.srv.cfg.ClientIdleTimeout; t > 0 {
		if u := time.Now().Add(t); until.IsZero() || u.Before(until) {
			until, idleErr = u, ss.srv.clientIdleError()
		}
	}
	// A release sent without waiting (twophase.go's sendRelease) is settled meanwhile
	// too: one that failed is run again at once, not at the session's next statement.
	return until, idleErr, ss.txn.coord != nil && ss.suspended == nil && (ss.listening || ss.txn.coord.Value().Discarding())
}

// Relay relays the notifications that arrived on the session's coordinator connection
// (LISTEN) while the client is idle.
func (h handler) Relay(w *pgwire.Writer) bool {
	ss := h.ss
	c := ss.txn.coord.Value()
	if c.Broken() {
		ss.listening = false
		return false
	}
	if c.Discarding() {
		// What arrived may be the answer to a release sent without waiting
		// (SendDiscard), not a notification: read it first.
		c.SetDeadline(time.Now().Add(time.Second))
		settleRelease(context.Background(), c, ss.txn.txLog)
		c.SetDeadline(time.Time{})
		if c.Broken() {
			ss.listening = false
			return false
		}
	}
	if !ss.listening {
		return false
	}
	if !c.Pending() {
		return true
	}
	c.SetDeadline(time.Now().Add(time.Second))
	for c.Pending() {
		t, b, err := c.Next()
		if err != nil {
			break
		}
		switch t {
		case 'A', 'N', 'S':
			w.Raw(t, b)
		case 'E':
			w.Raw('N', b)
			c.MarkBroken()
		}
	}
	c.SetDeadline(time.Time{})
	return true
}

// Busy marks the session busy with a client message: from now a cancel request cuts
// its statements off.
func (h handler) Busy() {
	h.ss.txn.waitingClient = false
	h.ss.busy.Store(true)
}

// Fail reports a failed message: the transaction layer's one error channel.
func (h handler) Fail(err error) { h.ss.statementFailed(err) }

// Ready releases what the failed statement held, reports changed settings, and tells
// the protocol the block's state for ReadyForQuery.
func (h handler) Ready() byte {
	ss := h.ss
	ss.txn.releaseFailedLocks()
	ss.txn.waitingClient = true
	ss.reportParams()
	return ss.txn.tx.wire()
}

// Sync ends a protocol turn: the pipeline's implicit block commits (or rolls back), and
// portals of an implicit transaction go.
func (h handler) Sync(ctx context.Context) {
	ss := h.ss
	if ss.txn.pipelineTx {
		ss.settle(false)
		if err := ss.txn.endPipelineBlock(ctx); err != nil {
			ss.sendError(err)
		}
	}
	if ss.txn.tx == txIdle {
		// The implicit transaction ends: so do its portals.
		ss.settle(false)
		for name := range ss.portals {
			ss.dropPortal(name)
		}
	}
	ss.txn.undoFailed(ctx)
}

// Admit settles the suspended portal before a message that may use the session's
// connections: anything but a Flush, a Sync, a Close, or an Execute of that portal.
func (h handler) Admit(typ byte, body []byte) error {
	ss := h.ss
	s := ss.suspended
	if s == nil {
		return nil
	}
	switch typ {
	case 'H', 'S', 'C':
		return nil // Close of the portal itself drops it (closeObject)
	case 'Q':
		if s.pt.name == "" {
			return ss.settle(false) // the Query replaces the unnamed portal (Query)
		}
	case 'E', 'B':
		// The portal's name comes first in Execute, and the destination portal's first
		// in Bind.
		if i := bytes.IndexByte(body, 0); i >= 0 && string(body[:i]) == s.pt.name {
			switch {
			case typ == 'B' && s.pt.name == "":
				return ss.settle(false) // binding the unnamed portal again replaces it
			case typ == 'B':
				return ss.settle(true) // the Bind fails: the portal exists
			}
			return nil
		}
	}
	return ss.settle(true)
}
