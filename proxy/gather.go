package proxy

import (
	"context"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/copyfmt"
	"github.com/pgshard/pgshard/router"
)

// gather runs a Gather merge: it creates one temporary table per pull on the session's
// coordinator connection, streams the shards' rows into them with COPY, runs the final
// query there and relays its result, then drops the tables. Outside a transaction block
// all of it is one coordinator transaction (the tables are created ON COMMIT DROP), so
// nothing outlives the statement even when it fails.
//
// shards[i], when set, are the shards pull i reads (already pruned); otherwise every shard
// of its table that the pull's filter keeps.
func (x *execution) gather(ctx context.Context, shards [][]*metadata.Shard) error {
	ss := x.ss
	m := x.st.Merge
	if m.Keep && !m.Hold && ss.txn.tx == txIdle {
		return pgerr.New(pgerr.NoActiveSQLTransaction, "DECLARE CURSOR can only be used in transaction blocks")
	}
	if !x.extended {
		// PostgreSQL's own analysis errors (unknown columns, ungrouped columns, ...), with
		// positions in the client's text: the statement as written, over the prototypes.
		// (Extended-protocol statements were described when they were parsed.)
		if err := x.validate(ctx); err != nil {
			return err
		}
	}
	g, err := x.gatherTables(ctx, m, shards)
	if err != nil {
		return err
	}
	c := g.c
	holes := &router.Holes{In: x.in, Tables: g.names, Types: g.types}
	final := m.Final.Render(nil, holes)
	x.sendSQL(c, final, x.prm)
	if err := ss.sendTo(c); err != nil {
		return err
	}
	res, err := x.relay(ctx, c, relayOpts{coordinator: true, mapPos: func(p int32) int32 { return m.Final.MapPosition(p, holes) }})
	if err != nil {
		return err
	}
	if res.err != nil {
		g.end(ctx, ss, false)
		return res.failed()
	}
	return g.end(ctx, ss, true)
}

// gathered is the state of a gather's temporary tables on the coordinator.
type gathered struct {
	c     *backend.Conn
	own   bool     // the gather opened the coordinator transaction
	keep  bool     // the tables stay until the transaction ends (a cursor reads them)
	names []string // the temporary tables
	types []string // pull 0's column types, when the final query needs them
}

// end drops the temporary tables: the transaction the gather opened commits (ok) or rolls
// back; inside the client's block the tables are dropped, or, after a failure, the block
// is aborted.
func (g *gathered) end(ctx context.Context, ss *session, ok bool) error {
	switch {
	case !ok && g.own:
		g.c.Exec(ctx, "ROLLBACK")
		return nil
	case !ok:
		ss.txn.failBlock()
		return nil
	}
	sql := "COMMIT"
	if !g.own {
		if g.keep {
			return nil // ON COMMIT DROP
		}
		sql = "DROP TABLE " + strings.Join(g.names, ", ")
	}
	if err := g.c.Exec(ctx, sql); err != nil {
		if !g.own {
			ss.txn.failBlock()
		}
		return err
	}
	return nil
}

// gatherTables creates the temporary tables of m's pulls on the session's coordinator
// connection and fills them from the shards.
func (x *execution) gatherTables(ctx context.Context, m *router.Merge, shards [][]*metadata.Shard) (*gathered, error) {
	ss, in := x.ss, x.in
	tables := make([]*metadata.Table, len(m.Pulls))
	for i, pl := range m.Pulls {
		if tables[i] = x.snap.TableByOID(pl.Table); tables[i] == nil {
			return nil, errTableGone(pl.Table)
		}
		if len(tables[i].Shards) == 0 {
			return nil, noShards(tables[i])
		}
	}
	c, err := x.conns().coordConn(ctx)
	if err != nil {
		return nil, err
	}
	g := &gathered{c: c, own: ss.txn.tx == txIdle, keep: m.Keep, names: make([]string, len(m.Pulls))}
	if g.keep {
		// Names of their own: the block may gather again while the cursor is open.
		ss.cursorTables++
	}
	var setup strings.Builder
	if g.own {
		setup.WriteString("BEGIN; ")
	}
	for i, pl := range m.Pulls {
		g.names[i] = router.GatherTable(i)
		if g.keep {
			g.names[i] = "pg_temp.pgshard_cursor_" + strconv.Itoa(ss.cursorTables) + "_" + strconv.Itoa(i+1)
		}
		def := pl.Proto
		if def == nil {
			def = pl.Shard
		}
		t := tables[i]
		proto := def.Render(nil, &router.Holes{In: in, Tables: []string{router.QuoteIdent(t.Schema) + "." + router.QuoteIdent(t.Name)}})
		setup.WriteString("CREATE TEMP TABLE " + g.names[i] + " ON COMMIT DROP AS " + string(proto) + " WITH NO DATA; ")
	}
	// Rows travel in binary unless a column's binary form names a type by OID that
	// differs between servers (arrays and composites of user-defined types).
	setup.WriteString("SELECT ARRAY[")
	for i, name := range g.names {
		if i > 0 {
			setup.WriteString(", ")
		}
		setup.WriteString("(SELECT coalesce(pg_catalog.bool_and(NOT (t.typtype OPERATOR(pg_catalog.=) 'c' OR t.typelem OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid AND t.typlen OPERATOR(pg_catalog.=) -1)), true) " +
			"FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid WHERE a.attrelid OPERATOR(pg_catalog.=) '" + name +
			"'::pg_catalog.regclass AND a.attnum OPERATOR(pg_catalog.>) 0)")
	}
	setup.WriteString("]::pg_catalog.text; ")
	needTypes := hasSeg(m.Final, router.SegType)
	if needTypes {
		setup.WriteString("SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute WHERE attrelid OPERATOR(pg_catalog.=) '" +
			g.names[0] + "'::pg_catalog.regclass AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped ORDER BY attnum")
	}
	rows, err := c.ExecRows(ctx, setup.String())
	if err != nil {
		return nil, x.gatherFailed(ctx, c, g.own, err)
	}
	if len(rows) == 0 {
		return nil, x.gatherFailed(ctx, c, g.own, pgerr.New(pgerr.InternalError, "the coordinator did not describe the gather's tables"))
	}
	binary := strings.Split(strings.Trim(string(rows[0][0]), "{}"), ",")
	if needTypes {
		for _, r := range rows[1:] {
			g.types = append(g.types, string(r[0]))
		}
	}
	for i, pl := range m.Pulls {
		var sh []*metadata.Shard
		if i < len(shards) {
			sh = shards[i]
		}
		if sh == nil {
			if sh, err = x.shards(ctx, tables[i], pl.Filter, nil); err != nil {
				return nil, x.gatherFailed(ctx, c, g.own, err)
			}
		}
		if err := x.pull(ctx, c, g.names[i], tables[i], pl, sh, i < len(binary) && binary[i] == "t"); err != nil {
			return nil, x.gatherFailed(ctx, c, g.own, err)
		}
	}
	return g, nil
}

// gatherFailed ends a gather that failed before its final query: the coordinator
// transaction the gather opened is rolled back; inside the client's transaction block the
// block is aborted (as a failed statement aborts it in PostgreSQL).
func (x *execution) gatherFailed(ctx context.Context, c *backend.Conn, own bool, err error) error {
	if c.Broken() {
		return err
	}
	if own {
		if rbErr := c.Exec(ctx, "ROLLBACK"); rbErr != nil && backend.Unavailable(rbErr) {
			return err
		}
	} else {
		x.ss.txn.failBlock()
	}
	if e, ok := err.(*pgerr.Error); ok {
		e.Position = 0
	}
	return err
}

// validate has the coordinator analyse a statement as the client wrote it (against the
// prototype tables) and returns PostgreSQL's error, if any.
func (x *execution) validate(ctx context.Context) error {
	st := x.st
	holes := &router.Holes{In: x.in}
	_, err := x.ss.describeOnCoordinator(ctx, string(st.Text.Render(nil, holes)), nil)
	if e, ok := err.(*pgerr.Error); ok && e.Position > 0 {
		e.Position = st.Text.MapPosition(e.Position, holes)
	}
	return err
}

// pull copies the rows pl's query returns on each of shards into the temporary table
// name: each shard's result is streamed into one COPY FROM STDIN on the coordinator.
// Without bind parameters the shards run COPY (query) TO STDOUT and their data goes
// through as it is; with parameters they run the query, and its rows become COPY rows
// here. In binary (when binary is set) values arrive exactly as they are, whatever the
// session's DateStyle, time zone abbreviations or extra_float_digits.
func (x *execution) pull(ctx context.Context, c *backend.Conn, name string, t *metadata.Table, pl router.Pull, shards []*metadata.Shard, binary bool) error {
	ss, in := x.ss, x.in
	if len(shards) == 0 {
		return nil
	}
	format := ""
	if binary {
		format = " (FORMAT binary)"
	}
	reads := make([]*shardRead, len(shards))
	for i, sh := range shards {
		holes := &router.Holes{In: in, Tables: []string{router.ShardName(t.Schema, t.Name, sh.ID)}}
		r := &shardRead{shard: sh, internal: true}
		if x.prm == nil {
			r.sql = append(r.sql, "COPY ("...)
			r.sql = pl.Shard.Render(r.sql, holes)
			r.sql = append(r.sql, ") TO STDOUT"+format...)
		} else {
			r.sql = pl.Shard.Render(nil, holes)
			if binary {
				r.internal, r.describe, r.results = false, true, []int16{1}
			}
		}
		reads[i] = r
	}
	defer x.finishReads(ctx, reads)
	if err := x.startReads(ctx, reads); err != nil {
		return err
	}
	c.Query("COPY " + name + " FROM STDIN" + format)
	if err := ss.sendTo(c); err != nil {
		return err
	}
	if err := awaitCopyIn(ctx, c); err != nil {
		return err
	}
	cw := c.Writer()
	if binary {
		cw.Raw('d', binaryCopyHeader)
	}
	opts := copyfmt.NewOptions(copyfmt.Text)
	var line []byte
	var shardErr error
	for _, r := range reads {
		rc := r.wc.conn()
		stop := rc.WatchContext(ctx)
		header := binary
		for {
			typ, b, err := rc.Next()
			if err != nil {
				stop()
				cw.Raw('f', []byte("pgshard: lost a shard connection\x00"))
				c.Flush()
				c.ExecPending(ctx)
				return err
			}
			if typ == 'Z' {
				break
			}
			switch typ {
			case 'd':
				if shardErr != nil {
					continue
				}
				if binary {
					// Each shard's stream has its own header (before its first row) and
					// trailer; the coordinator gets one of each.
					if header {
						if len(b) < len(binaryCopyHeader) || string(b[:11]) != string(binaryCopyHeader[:11]) {
							shardErr = pgerr.New(pgerr.ProtocolViolation, "a shard sent an unexpected binary COPY header")
							continue
						}
						b = b[len(binaryCopyHeader):]
						header = false
					}
					if len(b) >= 2 && b[len(b)-2] == 0xff && b[len(b)-1] == 0xff && len(b) == 2 {
						continue
					}
					if len(b) == 0 {
						continue
					}
				}
				cw.Raw('d', b)
			case 'D':
				if shardErr != nil {
					continue
				}
				if binary {
					// A binary DataRow is a binary COPY tuple.
					cw.Raw('d', b)
					continue
				}
				if line, err = encodeRow(opts, line[:0], b); err != nil {
					shardErr = err
					continue
				}
				cw.Raw('d', line)
			case 'E':
				if shardErr == nil {
					shardErr = rc.DecodeError(b)
				}
			}
			if cw.Len() >= 64<<10 {
				// Stream: the coordinator's COPY takes the rows as they come.
				c.Flush()
			}
		}
		stop()
		ss.stopRunning(rc)
		x.conns().release(r.wc)
		r.wc = workerConn{}
		if err := cw.Err(); err != nil {
			return err
		}
	}
	if shardErr != nil {
		cw.Raw('f', []byte("pgshard: a shard failed\x00"))
		c.Flush()
		c.ExecPending(ctx)
		return shardErr
	}
	if binary {
		cw.Raw('d', []byte{0xff, 0xff})
	}
	cw.Raw('c', nil)
	if err := c.Flush(); err != nil {
		return err
	}
	return c.ExecPending(ctx)
}

// binaryCopyHeader starts a binary COPY stream: the signature, no flags, no extension.
var binaryCopyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// awaitCopyIn reads up to the coordinator's CopyInResponse (or its error).
func awaitCopyIn(ctx context.Context, c *backend.Conn) error {
	stop := c.WatchContext(ctx)
	defer stop()
	var first error
	for {
		t, b, err := c.Next()
		if err != nil {
			return err
		}
		switch t {
		case 'G':
			return nil
		case 'E':
			if first == nil {
				first = backend.DecodeError(b)
			}
		case 'Z':
			if first == nil {
				first = pgerr.New(pgerr.InternalError, "the coordinator did not start COPY")
			}
			return first
		}
	}
}

// encodeRow appends a DataRow's text values to dst as one line of COPY text format.
func encodeRow(o *copyfmt.Options, dst, body []byte) ([]byte, error) {
	if len(body) < 2 {
		return dst, pgerr.New(pgerr.ProtocolViolation, "invalid DataRow from a shard")
	}
	n := int(binary.BigEndian.Uint16(body))
	p := 2
	for i := 0; i < n; i++ {
		if p+4 > len(body) {
			return dst, pgerr.New(pgerr.ProtocolViolation, "invalid DataRow from a shard")
		}
		size := int(int32(binary.BigEndian.Uint32(body[p:])))
		p += 4
		if i > 0 {
			dst = append(dst, '\t')
		}
		if size < 0 {
			dst = append(dst, `\N`...)
			continue
		}
		if p+size > len(body) {
			return dst, pgerr.New(pgerr.ProtocolViolation, "invalid DataRow from a shard")
		}
		var err error
		if dst, err = o.EncodeField(dst, body[p:p+size], false); err != nil {
			return dst, err
		}
		p += size
	}
	return append(dst, '\n'), nil
}

// hasSeg reports whether t has a segment of kind k.
func hasSeg(t router.Template, k router.SegKind) bool {
	for _, s := range t {
		if s.Kind == k {
			return true
		}
	}
	return false
}
