package proxy

import (
	"context"
	"encoding/binary"

	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// The end of COPY FROM STDIN into a distributed table, atomic as any other write:
//
//   - outside a transaction block each placement took its shard's rows in a transaction
//     of its own (BEGIN; COPY shard ...): with more than one, they commit with two-phase
//     commit (twophase.go), each stream a participant, the decision recorded in the
//     statement's coordinator transaction, which holds the COPY's shard locks until
//     COMMIT PREPARED reached every placement;
//   - inside a transaction block the rows were set aside in the session's spool (within
//     its temp-file-limit) and are now sent on the block's connection to each worker as
//     one COPY per shard, in turn: no temporary table, so the block can be prepared.

// endStreams ends the COPY on every stream of the COPY's own transactions (CopyDone) and
// reads the answers: the first error of a placement, if any.
func (cp *copyRun) endStreams(ctx context.Context) error {
	for _, s := range cp.streams {
		if s.err != nil {
			continue
		}
		cp.send(s)
		if s.err != nil {
			continue
		}
		c := s.wc.conn()
		c.Writer().Raw('c', nil)
		s.inCopy = false
		if err := c.Flush(); err != nil {
			s.err = err
		}
	}
	var firstErr error
	for _, s := range cp.streams {
		if s.err != nil {
			continue
		}
		if err := cp.readEnd(ctx, s); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// readEnd reads a stream's answers up to ReadyForQuery after its CopyDone: the
// placement's error, mapped to the client's lines.
func (cp *copyRun) readEnd(ctx context.Context, s *copyStream) error {
	c := s.wc.conn()
	stop := c.WatchContext(ctx)
	defer stop()
	defer cp.ss.stopRunning(c)
	var first error
	for {
		typ, b, err := c.Next()
		if err != nil {
			s.err = err
			return first
		}
		switch typ {
		case 'E':
			if first == nil {
				first = cp.mapError(c.DecodeError(b), s)
			}
		case 'Z':
			return first
		}
	}
}

// replay sends the rows set aside in a transaction block: on each worker's connection,
// one COPY per shard it holds a placement of. A placement's error (a bad value, a
// constraint) fails the COPY with the client's line.
func (cp *copyRun) replay(ctx context.Context) error {
	for _, s := range cp.streams {
		for _, id := range s.shards {
			if s.err != nil {
				break
			}
			if len(cp.offs[id]) == 0 {
				continue
			}
			if err := cp.replayShard(ctx, s, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// replayShard runs COPY shard FROM STDIN on a stream with the shard's rows set aside.
func (cp *copyRun) replayShard(ctx context.Context, s *copyStream, id int64) error {
	c := s.wc.conn()
	s.cur = id
	c.Query("COPY " + router.ShardName(cp.t.Schema, cp.t.Name, id) + " (" + cp.cols + ") FROM STDIN WITH " + cp.opts.ShardOptions())
	if err := cp.ss.sendTo(c); err != nil {
		s.err = err
		return nil
	}
	if err := cp.awaitCopyIn(ctx, s); err != nil || s.err != nil {
		cp.ss.stopRunning(c)
		return err
	}
	for _, off := range cp.offs[id] {
		_, body, err := cp.spool.FrameAt(off)
		if err != nil {
			return err
		}
		s.buf = append(s.buf, body[8:]...)
		if len(s.buf) >= 64<<10 {
			if cp.send(s); s.err != nil {
				return nil
			}
		}
	}
	if cp.send(s); s.err != nil {
		return nil
	}
	c.Writer().Raw('c', nil)
	s.inCopy = false
	if err := c.Flush(); err != nil {
		s.err = err
		return nil
	}
	return cp.readEnd(ctx, s)
}

// lineOf is the client's line of the stream's row n (from 1), for a placement's error.
func (cp *copyRun) lineOf(s *copyStream, n int64) (int64, bool) {
	if cp.spool == nil {
		return s.lines.line(n)
	}
	offs := cp.offs[s.cur]
	if n < 1 || n > int64(len(offs)) {
		return 0, false
	}
	_, body, err := cp.spool.FrameAt(offs[n-1])
	if err != nil || len(body) < 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(body)), true
}

// commitTwoPhase commits the COPY's own transactions, one per placement stream, with
// two-phase commit. A stream lost during the COPY is a lost participant: its placement
// is marked inactive when a sibling prepared, else the COPY is rolled back everywhere.
func (cp *copyRun) commitTwoPhase(ctx context.Context) error {
	ctx, cancel := commitContext(ctx)
	defer cancel()
	ss := cp.ss
	parts := make([]*commitPart, 0, len(cp.streams))
	for _, s := range cp.streams {
		p := &commitPart{node: s.node}
		for _, id := range s.shards {
			for _, tg := range cp.targets[id] {
				if tg.s == s {
					p.placements = append(p.placements, tg.p)
				}
			}
		}
		switch {
		case s.err == nil:
			p.conn = s.wc.conn()
		case backend.Unavailable(s.err):
			p.lost = s.err
		default:
			p.lost = &backend.UnavailableError{Addr: s.node.Addr(), Err: s.err}
		}
		parts = append(parts, p)
	}
	sortParts(parts)
	tp := &twoPhase{parts: parts, mark: sessionMarker{ss.srv, ss.conn.Results()}.markInactive, log: ss.srv.log,
		finishAs: ss.srv.recovery.exec, holdSQL: holdLocksSQL(ss.txn.heldLocks()), releaseSQL: releaseHeldLocksSQL(ss.txn.heldLocks())}
	c, open, err := ss.txn.stmtDecisionConn(ctx)
	if err != nil {
		tp.abort(ctx)
		return err
	}
	tp.coord, tp.coordOpen = c, open
	if err := tp.beginXid(); err != nil {
		tp.abort(ctx)
		return coordUnavailable(err)
	}
	return tp.run(ctx)
}
