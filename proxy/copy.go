package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/copyfmt"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/router"
)

// copyOut runs COPY ... TO STDOUT over a distributed table: each shard's COPY in turn,
// presented to the client as one COPY (one CopyOutResponse, one header line at most, one
// CopyDone, the total count).
func (x *execution) copyOut(ctx context.Context) error {
	ss, snap, st, in := x.ss, x.snap, x.st, x.in
	t, err := shardedTable(snap, st.Table)
	if err != nil {
		return err
	}
	shards, err := x.shards(ctx, t, st.Filter, nil)
	if err != nil {
		return err
	}
	if len(shards) == 0 {
		return x.coordinatorStatement(ctx, render(st.Text, in, nil, nil))
	}
	if len(shards) > 1 && st.Merge != nil {
		// COPY (SELECT ...) that no concatenation of shards answers: the coordinator
		// runs it over temporary copies of the tables.
		return x.gather(ctx, make([][]*metadata.Shard, len(st.Merge.Pulls)))
	}
	if len(shards) > 1 && st.Err != nil {
		return st.Err
	}
	reads := make([]*shardRead, len(shards))
	for i, sh := range shards {
		holes := &router.Holes{In: in, Tables: []string{router.ShardName(t.Schema, t.Name, sh.ID)}}
		reads[i] = &shardRead{shard: sh, sql: st.Shard.Render(nil, holes), results: x.results}
	}
	defer x.finishReads(ctx, reads)
	if err := x.startReads(ctx, reads); err != nil {
		return err
	}
	var total int64
	sentHeader := false
	bin := copyBinary(st.CopyOptions)
	for i, r := range reads {
		c := r.wc.conn()
		stop := c.WatchContext(ctx)
		first := true
		for {
			typ, b, err := c.Next()
			if err != nil {
				stop()
				return err
			}
			if typ == 'Z' {
				break
			}
			switch typ {
			case 'H':
				if !sentHeader {
					x.out.Raw(typ, b)
					sentHeader = true
				}
			case 'd':
				switch {
				case bin:
					// One stream: the first shard's signature, every shard's tuples,
					// one trailer.
					if first {
						if len(b) < binaryCopyHeaderLen {
							stop()
							return pgerr.New(pgerr.InternalError, "a shard's binary COPY output has no header")
						}
						if i == 0 {
							x.out.Raw(typ, b[:binaryCopyHeaderLen])
						}
						b = b[binaryCopyHeaderLen:]
					}
					if len(b) > 0 && !(len(b) == 2 && b[0] == 0xff && b[1] == 0xff) {
						x.out.Raw(typ, b)
					}
				case !(first && st.CopyHeader && i > 0):
					// Only the first shard's header line goes to the client.
					x.out.Raw(typ, b)
				}
				first = false
			case 'C':
				total += tagCount(string(trimZero(b)))
			case 'E':
				stop()
				e := c.DecodeError(b)
				e.Position = 0
				x.drainRead(ctx, c)
				ss.txn.release(r.wc)
				r.wc = workerConn{}
				return e
			case 'N':
				forwardNotice(x.out.Writer, ss.srv, c, b)
			}
		}
		stop()
		ss.stopRunning(c)
		ss.txn.release(r.wc)
		r.wc = workerConn{}
	}
	if bin {
		x.out.Raw('d', []byte{0xff, 0xff})
	}
	x.out.Raw('c', nil)
	x.out.CommandComplete("COPY " + strconv.FormatInt(total, 10))
	return nil
}

// binaryCopyHeaderLen is the length of the header PostgreSQL writes at the start of binary
// COPY output (signature, flags, an empty header extension), which it sends with the first
// tuple (or the trailer) in one CopyData message; the trailer (-1 as int16) comes alone.
const binaryCopyHeaderLen = 19

// copyBinary reports whether COPY options choose the binary format.
func copyBinary(opts []router.CopyOption) bool {
	bin := false
	for _, o := range opts {
		if o.Name == "format" {
			bin = strings.EqualFold(o.Value, "binary")
		}
	}
	return bin
}

// copyStream is a COPY running on one backend connection: one shard's placement, or,
// inside a transaction block, the block's connection to a worker, which receives the
// rows of each of its shards in turn (replay) once the client's data is read.
type copyStream struct {
	node   metadata.Node
	wc     workerConn
	err    error // the connection became unavailable
	inCopy bool  // in COPY mode (CopyDone or CopyFail not yet sent)
	shards []int64
	cur    int64   // in a transaction block, the shard whose rows are being replayed
	buf    []byte  // rows not yet sent
	lines  lineLog // the client's line number of each row sent (the last ones)
}

// copyTarget is one placement receiving a COPY, through a stream.
type copyTarget struct {
	p     metadata.Placement
	shard int64
	s     *copyStream
}

// copyIn runs COPY distributed_table FROM STDIN: the client's rows are split by shard
// (by the partition key of each row) and streamed to every finalized placement of their
// shard, in a transaction on each placement, so that a bad row writes nothing anywhere.
func (x *execution) copyIn(ctx context.Context) error {
	ss, snap, st := x.ss, x.snap, x.st
	t, err := shardedTable(snap, st.Table)
	if err != nil {
		return err
	}
	kc := t.KeyColumn()
	if kc == nil {
		return pgerr.New(pgerr.UndefinedColumn, "partition column %q of distributed table %q does not exist", t.Key, t.Name)
	}
	opts, err := copyfmt.ParseOptions(toCopyOptions(st.CopyOptions))
	if err != nil {
		return copyErr(err)
	}
	opts.ClientEncoding = ss.clientEncoding()
	var names, all []string
	for _, c := range t.Columns {
		all = append(all, c.Name)
	}
	keyPos := -1
	for i, ci := range st.CopyCols {
		names = append(names, t.Columns[ci].Name)
		if ci == t.KeyIndex {
			keyPos = i
		}
	}
	if err := opts.BindColumns(names, all, t.Name); err != nil {
		return copyErr(err)
	}
	added, err := copyAddedColumns(t, st.CopyCols)
	if err != nil {
		return err
	}
	if keyPos < 0 {
		for k, ci := range added {
			if ci == t.KeyIndex {
				keyPos = len(st.CopyCols) + k
			}
		}
	}
	cols := append(append([]int(nil), st.CopyCols...), added...)

	// Every shard may receive rows: lock them all exclusively (COPY does not say which
	// keys it writes before it has read them).
	ids := make([]int64, len(t.Shards))
	for i, sh := range t.Shards {
		ids[i] = sh.ID
	}
	if err := x.checkWritePrivilege(ctx, t.OID, router.Insert); err != nil {
		return err
	}
	if err := ss.txn.lockShardIDs(ctx, ids, true); err != nil {
		return err
	}
	snap = ss.snapshot()
	if t = snap.TableByOID(t.OID); t == nil {
		return errTableGone(st.Table)
	}
	opts.Freeze = false // the shard tables were not created in this transaction
	var colList strings.Builder
	for i, ci := range cols {
		if i > 0 {
			colList.WriteString(", ")
		}
		colList.WriteString(router.QuoteIdent(t.Columns[ci].Name))
	}
	cp := &copyRun{ss: ss, t: t, opts: opts, own: ss.txn.tx == txIdle, cols: colList.String(), targets: map[int64][]*copyTarget{}}
	defer cp.releaseAll()
	if err := cp.open(ctx); err != nil {
		return cp.abort(ctx, err)
	}
	x.out.Msg(&pgproto3.CopyInResponse{OverallFormat: 0, ColumnFormatCodes: make([]uint16, len(st.CopyCols))})
	x.out.Flush()

	// Read the client's data, row by row, in batches.
	maxRow := ss.srv.cfg.MaxMessage
	if maxRow <= 0 {
		maxRow = pgwire.DefaultMaxMessage
	}
	sp := copyfmt.NewSplitter(opts)
	sp.SetColumns(names)
	b := &copyBatch{}
	flushBatch := func() error {
		if b.len() == 0 {
			return nil
		}
		b.slice()
		err := cp.route(ctx, b, keyPos, kc.HashType, added)
		b.reset()
		return err
	}
	for done := false; !done; {
		typ, body, err := ss.readCopyData(len(ids) > 0)
		if err != nil {
			return cp.abort(ctx, pgerr.Wrap(err, pgerr.ConnectionFailure, "client connection lost during COPY"))
		}
		switch typ {
		case 'd':
			sp.Write(body)
		case 'c':
			done = true
		case 'f':
			msg, _ := cstring(body)
			return cp.abort(ctx, pgerr.New(pgerr.QueryCanceled, "COPY from stdin failed: %s", msg))
		case 'H', 'S':
			continue
		default:
			return cp.abort(ctx, pgerr.New(pgerr.ProtocolViolation, "unexpected message type 0x%02X during COPY from stdin", typ))
		}
		for {
			var row []byte
			var ok bool
			if done {
				row, ok, err = sp.Finish()
			} else {
				row, ok, err = sp.Next()
			}
			if err != nil {
				return cp.abort(ctx, cp.lineErr(copyErr(err), sp.Line()))
			}
			if !ok {
				if n := sp.Pending(); n > maxRow {
					// A row without its end: PostgreSQL stops a line at 1 GiB; the proxy
					// at its largest message, which no row sent on could exceed anyway.
					return cp.abort(ctx, cp.lineErr(pgerr.New(pgerr.ProgramLimitExceeded, "COPY row exceeds %d bytes (pgshard's max-message)", maxRow).
						WithHint("Raise --max-message (PGSHARD_MAX_MESSAGE) for longer rows."), sp.Line()+1))
				}
				break
			}
			b.add(row, sp.Line())
			if b.len() >= 1000 || len(b.data) >= copyBatchBytes {
				if err := flushBatch(); err != nil {
					return cp.abort(ctx, err)
				}
			}
		}
	}
	if err := flushBatch(); err != nil {
		return cp.abort(ctx, err)
	}
	return cp.finish(ctx)
}

// copyAddedColumns are the columns a COPY into t leaves out (it gives copyCols) whose
// values the coordinator adds to each row: those whose defaults it evaluates, and the
// partition key (which must then have a default).
func copyAddedColumns(t *metadata.Table, copyCols []int) ([]int, error) {
	given := map[int]bool{}
	for _, ci := range copyCols {
		given[ci] = true
	}
	var added []int
	for i := range t.Columns {
		c := &t.Columns[i]
		if given[i] || c.Generated != 0 {
			continue
		}
		if i == t.KeyIndex && c.Default == "" {
			return nil, pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
		}
		if i == t.KeyIndex || c.Default != "" && !c.DefaultOnShard {
			added = append(added, i)
		}
	}
	return added, nil
}

// copyRun is the state of one COPY FROM STDIN.
type copyRun struct {
	ss      *session
	t       *metadata.Table
	opts    *copyfmt.Options
	own     bool   // the COPY runs in its own transaction on each placement
	cols    string // the quoted column list
	targets map[int64][]*copyTarget
	streams []*copyStream
	rows    int64
	// In a transaction block the rows are set aside in spool (each a frame: the client's
	// line as 8 bytes, then the row), offs[shard] the offsets of each shard's rows, and
	// replayed shard by shard at the end (replay).
	spool *spool
	offs  map[int64][]int64
}

// open starts the COPY on every finalized placement of every shard: outside a
// transaction block one stream per placement (BEGIN; COPY shard ...); inside one, it
// takes the block's connection to each worker (the rows are replayed at the end: a
// temporary staging table would keep the block from PREPARE TRANSACTION).
func (cp *copyRun) open(ctx context.Context) error {
	ss, t := cp.ss, cp.t
	if !cp.own {
		cp.spool = ss.newSpool()
		cp.offs = map[int64][]int64{}
	}
	byNode := map[metadata.Node]*copyStream{}
	for _, sh := range t.Shards {
		for _, p := range sh.Finalized() {
			var s *copyStream
			if cp.own {
				s = &copyStream{node: p.Node, shards: []int64{sh.ID}}
				cp.streams = append(cp.streams, s)
			} else if s = byNode[p.Node]; s == nil {
				s = &copyStream{node: p.Node}
				byNode[p.Node] = s
				cp.streams = append(cp.streams, s)
			}
			if !cp.own {
				s.shards = append(s.shards, sh.ID)
			}
			cp.targets[sh.ID] = append(cp.targets[sh.ID], &copyTarget{p: p, shard: sh.ID, s: s})
		}
	}
	for _, s := range cp.streams {
		wc, err := ss.txn.workerConn(ctx, s.node)
		if err != nil {
			if !backend.Unavailable(err) {
				return err
			}
			s.err = err
			continue
		}
		s.wc = wc
		if !cp.own {
			continue
		}
		sql := "BEGIN; COPY " + router.ShardName(t.Schema, t.Name, s.shards[0]) + " (" + cp.cols + ") FROM STDIN WITH " + cp.opts.ShardOptions()
		c := wc.conn()
		c.Query(sql)
		if err := ss.sendTo(c); err != nil {
			s.err = err
		}
	}
	// Wait for every stream to enter COPY mode.
	for _, s := range cp.streams {
		if s.err == nil && cp.own {
			if err := cp.awaitCopyIn(ctx, s); err != nil {
				return err
			}
		}
	}
	for id := range cp.targets {
		if err := cp.checkShard(id); err != nil {
			return err
		}
	}
	return nil
}

// copyBatchBytes ends a batch of COPY rows before its 1000 rows when they are large.
const copyBatchBytes = 8 << 20

// copyBatch holds rows read from the client, copied, until they are routed.
type copyBatch struct {
	data  []byte
	ends  []int
	rows  [][]byte
	lines []int64
}

func (b *copyBatch) add(row []byte, line int64) {
	b.data = append(b.data, row...)
	b.ends = append(b.ends, len(b.data))
	b.lines = append(b.lines, line)
}

// slice makes rows point at the batch's data (after the last add).
func (b *copyBatch) slice() {
	b.rows = b.rows[:0]
	start := 0
	for _, e := range b.ends {
		b.rows = append(b.rows, b.data[start:e])
		start = e
	}
}

func (b *copyBatch) len() int { return len(b.ends) }

func (b *copyBatch) reset() {
	b.data, b.ends, b.rows, b.lines = b.data[:0], b.ends[:0], b.rows[:0], b.lines[:0]
}

// awaitCopyIn reads a stream's answers up to its CopyInResponse.
func (cp *copyRun) awaitCopyIn(ctx context.Context, s *copyStream) error {
	c := s.wc.conn()
	stop := c.WatchContext(ctx)
	defer stop()
	for {
		typ, b, err := c.Next()
		if err != nil {
			s.err = err
			return nil
		}
		switch typ {
		case 'G':
			s.inCopy = true
			return nil
		case 'E':
			e := c.DecodeError(b)
			// The placement answered: the error is the statement's.
			for {
				t, _, err := c.Next()
				if err != nil || t == 'Z' {
					break
				}
			}
			return e
		}
	}
}

// checkShard fails the COPY when no placement of a shard can take rows.
func (cp *copyRun) checkShard(id int64) error {
	for _, tg := range cp.targets[id] {
		if tg.s.err == nil {
			return nil
		}
	}
	var details []string
	for _, tg := range cp.targets[id] {
		details = append(details, fmt.Sprintf("%s: %v", fmtNode(tg.p.Node), tg.s.err))
	}
	return pgerr.New(pgerr.InternalError, "could not modify any active placements").
		WithDetail("All placements of rows of table %s are unavailable: %s", cp.ss.shardRef(id), strings.Join(details, "; "))
}

// route evaluates defaults and hashes keys for a batch of rows and queues each row for
// the placements of its shard.
func (cp *copyRun) route(ctx context.Context, b *copyBatch, keyPos int, keyType uint32, added []int) error {
	ss := cp.ss
	if len(added) > 0 {
		// The coordinator evaluates the defaults once per row.
		var q strings.Builder
		q.WriteString("SELECT ")
		for i, ci := range added {
			if i > 0 {
				q.WriteString(", ")
			}
			c := &cp.t.Columns[ci]
			// As INSERT assigns a default: too long is 22001, not a cut.
			q.WriteString("(" + c.Assign(c.Default) + ")::pg_catalog.text")
		}
		q.WriteString(" FROM pg_catalog.generate_series(1, " + strconv.Itoa(len(b.rows)) + ")")
		c, err := ss.txn.coordConn(ctx)
		if err != nil {
			return err
		}
		ss.startRunning(c)
		vals, err := c.ExecRows(ctx, q.String())
		ss.stopRunning(c)
		if err != nil {
			return err
		}
		// Rebuild the batch with the extra fields.
		old := *b
		nb := &copyBatch{}
		for i, row := range old.rows {
			r := row
			for k := range added {
				var err error
				if r, err = cp.opts.AppendField(nil, r, vals[i][k], vals[i][k] == nil); err != nil {
					return cp.lineErr(copyErr(err), old.lines[i])
				}
			}
			nb.add(r, old.lines[i])
		}
		nb.slice()
		*b = *nb
	}
	hashes := make([]int32, len(b.rows))
	kh := keyHasher{ss: ss, col: cp.t.KeyColumn()}
	for i, row := range b.rows {
		v, null, err := cp.opts.Field(row, keyPos)
		if err != nil {
			return cp.lineErr(copyErr(err), b.lines[i])
		}
		if null {
			return cp.lineErr(pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column"), b.lines[i])
		}
		if err := kh.addText(keyType, v, &hashes[i]); err != nil {
			return err
		}
	}
	if err := kh.flush(ctx); err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			e.Where = "COPY " + cp.t.Name
			if kh.ss.txn.tx != txFailed {
				// Find the row, for PostgreSQL's context (line, column, value).
				return cp.keyErr(ctx, b, keyPos, keyType, e)
			}
		}
		return err
	}
	var frame []byte
	for i, row := range b.rows {
		shards := cp.t.ShardsFor(hashes[i])
		if len(shards) != 1 {
			return cp.lineErr(pgerr.New(pgerr.ObjectNotInPrereqState, "could not find destination shard for new row").
				WithDetail("Target relation does not contain any shards capable of storing the new row."), b.lines[i])
		}
		shard := shards[0].ID
		if cp.spool != nil {
			// Set aside, once for all the shard's placements.
			frame = binary.BigEndian.AppendUint64(frame[:0], uint64(b.lines[i]))
			frame = append(frame, row...)
			off := cp.spool.Len()
			if err := cp.spool.WriteFrame('d', frame); err != nil {
				return err
			}
			cp.offs[shard] = append(cp.offs[shard], off)
		}
		for _, tg := range cp.targets[shard] {
			s := tg.s
			if s.err != nil || cp.spool != nil {
				continue
			}
			s.buf = append(s.buf, row...)
			s.lines.add(b.lines[i])
			if len(s.buf) >= 64<<10 {
				cp.send(s)
			}
		}
		if err := cp.checkShard(shard); err != nil {
			return err
		}
		cp.rows++
	}
	// A placement that rejected data says so early: stop the COPY then.
	for _, s := range cp.streams {
		if s.err == nil && s.inCopy && s.wc.conn().Pending() {
			if err := cp.readError(ctx, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// send writes a stream's buffered rows as CopyData.
func (cp *copyRun) send(s *copyStream) {
	if len(s.buf) == 0 || s.err != nil {
		return
	}
	c := s.wc.conn()
	c.Writer().Raw('d', s.buf)
	s.buf = s.buf[:0]
	if err := c.Flush(); err != nil {
		s.err = err
	}
}

// readError reads what a stream sent during the COPY: an error ends the COPY.
func (cp *copyRun) readError(ctx context.Context, s *copyStream) error {
	c := s.wc.conn()
	typ, b, err := c.Next()
	if err != nil {
		s.err = err
		for _, id := range s.shards {
			if err := cp.checkShard(id); err != nil {
				return err
			}
		}
		return nil
	}
	if typ == 'E' {
		e := cp.mapError(c.DecodeError(b), s)
		s.inCopy = false // the placement left COPY mode with its error
		for {
			t, _, err := c.Next()
			if err != nil || t == 'Z' {
				break
			}
		}
		return e
	}
	return nil
}

// finish ends the COPY on every placement (in a transaction block, replays the rows set
// aside), marks placements that became unavailable, and commits: in two phases when
// more than one placement took rows in the COPY's own transactions.
func (cp *copyRun) finish(ctx context.Context) error {
	ss := cp.ss
	var firstErr error
	if cp.own {
		firstErr = cp.endStreams(ctx)
	} else {
		firstErr = cp.replay(ctx)
	}
	if firstErr != nil {
		return cp.abort(ctx, firstErr)
	}
	for id := range cp.targets {
		if err := cp.checkShard(id); err != nil {
			return cp.abort(ctx, err)
		}
	}
	if cp.own && len(cp.streams) > 1 {
		if err := cp.commitTwoPhase(ctx); err != nil {
			return err
		}
		ss.commandComplete("COPY " + strconv.FormatInt(cp.rows, 10))
		return nil
	}
	// Commit on the placement (in the client's block, its COMMIT does that).
	unknown := map[*copyStream]bool{} // connection lost during COMMIT: it may have committed
	if cp.own {
		for _, s := range cp.streams {
			if s.err != nil {
				continue
			}
			if err := s.wc.conn().Exec(ctx, "COMMIT"); err != nil {
				if backend.Unavailable(err) {
					unknown[s] = true
				} else if firstErr == nil {
					firstErr = err
				}
				s.err = err
			}
		}
	}
	// Per shard (outcome.go): when a placement committed, the others miss the rows and
	// are marked; when none did but one may have, it is kept and the others marked; the
	// COPY fails unless every shard committed somewhere.
	var marks []metadata.Placement
	var failErr error
	ids := make([]int64, 0, len(cp.targets))
	for id := range cp.targets {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		tgs := cp.targets[id]
		outs := make([]commitOutcome, len(tgs))
		for i, tg := range tgs {
			switch {
			case tg.s.err == nil:
				outs[i] = commitDone
				if !cp.own {
					ss.txn.noteTxWrite(tg.p)
				}
			case unknown[tg.s]:
				outs[i] = commitUnknown
			default:
				outs[i] = commitFailed
			}
		}
		m, committed, _ := decideCommit(outs)
		for _, i := range m {
			marks = append(marks, tgs[i].p)
			ss.sendNotice(pgerr.New(pgerr.Warning, "Connection failed to %s", fmtNode(tgs[i].p.Node)).WithSeverity("WARNING").WithDetail("%v", tgs[i].s.err))
		}
		if !committed && failErr == nil {
			failErr = pgerr.New(pgerr.ConnectionFailure, "could not commit the COPY on any placement of table %s", ss.shardRef(id)).
				WithDetail("The rows may have been stored in other shards.")
		}
	}
	if len(marks) > 0 {
		if err := ss.srv.markInactive(ctx, marks, ss.conn.Results()); err != nil {
			return err
		}
	}
	if failErr != nil {
		if firstErr != nil {
			return firstErr // a placement's own error at COMMIT (a deferred constraint, say)
		}
		return failErr
	}
	ss.commandComplete("COPY " + strconv.FormatInt(cp.rows, 10))
	return nil
}

// abort ends the COPY with an error: every placement's COPY fails and (in the COPY's own
// transaction) rolls back, so no row is stored anywhere.
func (cp *copyRun) abort(ctx context.Context, err error) error {
	ss := cp.ss
	for _, s := range cp.streams {
		if s.err != nil || s.wc.res == nil {
			continue
		}
		c := s.wc.conn()
		if s.inCopy {
			s.inCopy = false
			c.Writer().Msg(&pgproto3.CopyFail{Message: "COPY aborted by pgshard"})
			c.Flush()
			for {
				t, _, rerr := c.Next()
				if rerr != nil || t == 'Z' {
					break
				}
			}
		}
		if cp.own && !c.Broken() {
			c.Exec(ctx, "ROLLBACK")
		}
		ss.stopRunning(c)
	}
	ss.txn.failBlock()
	return err
}

// releaseAll returns the COPY's connections (those of a transaction block stay) and
// drops the rows set aside.
func (cp *copyRun) releaseAll() {
	if cp.spool != nil {
		cp.spool.Close()
		cp.spool = nil
	}
	for _, s := range cp.streams {
		if s.wc.res != nil {
			cp.ss.stopRunning(s.wc.conn())
			cp.ss.txn.release(s.wc)
			s.wc = workerConn{}
		}
	}
}

var copyContext = regexp.MustCompile(`^COPY [^,]+, line (\d+)`)

// mapError rewrites a placement's COPY error context ("COPY t_10001, line 3, ...") to
// the table and line of the client's data.
func (cp *copyRun) mapError(e *pgerr.Error, s *copyStream) *pgerr.Error {
	e.Position = 0
	if m := copyContext.FindStringSubmatchIndex(e.Where); m != nil {
		n, _ := strconv.ParseInt(e.Where[m[2]:m[3]], 10, 64)
		if line, ok := cp.lineOf(s, n); ok {
			e.Where = fmt.Sprintf("COPY %s, line %d%s", cp.t.Name, line, e.Where[m[1]:])
		} else {
			e.Where = fmt.Sprintf("COPY %s%s", cp.t.Name, e.Where[m[1]:])
		}
	}
	return e
}

// lineErr adds the COPY context to an error found by the proxy.
// keyErr finds the first row of a batch whose key the coordinator cannot read (or
// assign to the column) and returns its error with the line, column and value as
// PostgreSQL reports them; err when no single row fails.
func (cp *copyRun) keyErr(ctx context.Context, b *copyBatch, keyPos int, keyType uint32, err *pgerr.Error) error {
	col := cp.t.KeyColumn()
	// The batch's hashing failed in the statement's coordinator transaction (its write
	// locks), which is aborted now: the COPY fails, so that transaction is ended, and the
	// rows are hashed one by one outside it to find the one to blame.
	cp.ss.txn.abortStmtCoordTx(ctx)
	for i, row := range b.rows {
		v, null, ferr := cp.opts.Field(row, keyPos)
		if ferr != nil || null {
			continue
		}
		kh := keyHasher{ss: cp.ss, col: col}
		var h int32
		if kh.addText(keyType, v, &h) != nil || len(kh.pending) == 0 {
			continue
		}
		if rerr := kh.flush(ctx); rerr != nil {
			e := pgerr.From(rerr)
			val := string(v)
			if len(val) > 100 {
				cut := 100
				for cut > 0 && !utf8.RuneStart(val[cut]) {
					cut--
				}
				val = val[:cut] + "..."
			}
			e.Where = fmt.Sprintf("COPY %s, line %d, column %s: \"%s\"", cp.t.Name, b.lines[i], col.Name, val)
			return e
		}
	}
	return err
}

func (cp *copyRun) lineErr(err error, line int64) error {
	e := pgerr.From(err)
	e.Where = fmt.Sprintf("COPY %s, line %d", cp.t.Name, line)
	return e
}

// copyErr converts copyfmt's errors.
func copyErr(err error) error {
	switch e := err.(type) {
	case *copyfmt.OptionError:
		return pgerr.New(pgerr.Code(e.Code), "%s", e.Msg)
	case *copyfmt.DataError:
		return pgerr.New(pgerr.Code(e.Code), "%s", e.Msg)
	}
	return err
}

func toCopyOptions(in []router.CopyOption) []copyfmt.Option {
	out := make([]copyfmt.Option, len(in))
	for i, o := range in {
		out[i] = copyfmt.Option{Name: o.Name, Kind: copyfmt.ArgKind(o.Kind), Value: o.Value, List: o.List}
	}
	return out
}
