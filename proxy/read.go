package proxy

import (
	"context"
	"math/big"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/sqllex"
)

// errTableGone is returned when a plan names a table the current metadata lacks (it was
// undistributed concurrently).
func errTableGone(oid uint32) error {
	return pgerr.New(pgerr.UndefinedTable, "distributed table with OID %d no longer exists", oid)
}

// execSelect runs a SELECT on a distributed table.
func (x *execution) execSelect(ctx context.Context) error {
	ss, st, in := x.ss, x.st, x.in
	t, err := shardedTable(x.snap, st.Table)
	if err != nil {
		return err
	}
	shards, pinned, err := x.pinnedShards(ctx, t, st.Filter, nil)
	if err != nil {
		return err
	}
	if st.Locking && ss.txn.tx != txIdle {
		if err := x.lockRowsRead(ctx, shards, pinned, st.LockNoWait); err != nil {
			return err
		}
	}
	if st.Merge != nil && st.Merge.Kind == router.Prototype {
		return x.coordinatorStatement(ctx, render(st.Text, in, nil, nil))
	}
	if len(shards) == 0 {
		// No shard can hold a matching row: the coordinator's empty prototype table
		// gives the right (empty) answer with the right columns.
		return x.coordinatorStatement(ctx, render(st.Text, in, nil, nil))
	}
	tasks, ok := x.readTasks(t, shards)
	if !ok {
		// The joined tables are no longer co-located: gather them instead.
		fst := *st
		fst.Merge = st.Fallback
		return x.with(&fst).gather(ctx, make([][]*metadata.Shard, len(st.Fallback.Pulls)))
	}
	if len(tasks) == 1 {
		holes := &router.Holes{In: in, Tables: tasks[0].names}
		sql := st.Shard.Render(ss.sqlBuf[:0], holes)
		ss.sqlBuf = sql
		mapPos := func(p int32) int32 { return st.Shard.MapPosition(p, holes) }
		return x.readShard(ctx, tasks[0], sql, mapPos)
	}
	if st.Merge == nil {
		return st.Err
	}
	switch st.Merge.Kind {
	case router.Concat:
		return x.concat(ctx, tasks)
	case router.Aggregate:
		return x.aggregate(ctx, tasks, shards)
	case router.Gather:
		return x.gather(ctx, [][]*metadata.Shard{shards})
	case router.Sorted:
		return x.sorted(ctx, tasks, shards)
	}
	return pgerr.New(pgerr.InternalError, "unknown merge kind %d", st.Merge.Kind)
}

// readTask is one shard index of a read: the shard of the statement's table, the tables
// its query names (one per hole of the shard template) and, for a co-located join, the
// placements that can answer it (nodes holding every joined shard).
type readTask struct {
	shard *metadata.Shard
	names []string
	ps    []metadata.Placement
}

// readTasks prepares the reads of shards (of t). For a co-located join each task names
// the shards of the same index of every joined table; ok is false when the tables are no
// longer co-located, or no node holds all the shards of an index.
func (x *execution) readTasks(t *metadata.Table, shards []*metadata.Shard) ([]readTask, bool) {
	st := x.st
	tasks := make([]readTask, len(shards))
	if len(st.Colocated) == 0 {
		for i, sh := range shards {
			tasks[i] = readTask{shard: sh, names: []string{router.ShardName(t.Schema, t.Name, sh.ID)}}
		}
		return tasks, true
	}
	tables := make([]*metadata.Table, len(st.Colocated))
	for j, oid := range st.Colocated {
		if tables[j] = x.snap.TableByOID(oid); tables[j] == nil || !router.SameShards(t, tables[j]) {
			return nil, false
		}
	}
	index := make(map[int64]int, len(t.Shards))
	for i, sh := range t.Shards {
		index[sh.ID] = i
	}
	for i, sh := range shards {
		idx := index[sh.ID]
		task := readTask{shard: sh}
		for _, tj := range tables {
			task.names = append(task.names, router.ShardName(tj.Schema, tj.Name, tj.Shards[idx].ID))
		}
	placements:
		for _, p := range x.readPlacements(sh) {
			for _, tj := range tables {
				found := false
				for _, q := range tj.Shards[idx].Finalized() {
					if q.Node == p.Node {
						found = true
						break
					}
				}
				if !found {
					continue placements
				}
			}
			task.ps = append(task.ps, p)
		}
		if len(task.ps) == 0 {
			return nil, false
		}
		tasks[i] = task
	}
	return tasks, true
}

// shardedTable returns the distributed table a plan works on, or the error for a table
// dropped since the plan was made or without shards yet.
func shardedTable(snap *metadata.Snapshot, oid uint32) (*metadata.Table, error) {
	t := snap.TableByOID(oid)
	if t == nil {
		return nil, errTableGone(oid)
	}
	if len(t.Shards) == 0 {
		return nil, noShards(t)
	}
	return t, nil
}

func noShards(t *metadata.Table) error {
	return pgerr.New(pgerr.ObjectNotInPrereqState, "could not find any shards for query").
		WithDetail("No shards exist for distributed table %q.", t.Name).
		WithHint("Run master_create_worker_shards to create shards and try again.")
}

// readPlacements returns the placements a read of sh may use, in order of preference: in
// a transaction block, a placement on a node the block already uses comes first, and a
// shard the block wrote is read only where the block's writes went (a placement that
// missed them is marked, but the read must not depend on how soon that shows).
func (x *execution) readPlacements(sh *metadata.Shard) []metadata.Placement {
	ss := x.ss
	ps := sh.Finalized()
	if ss.txn.tx != txIdle && len(ss.txn.txWrites) > 0 {
		wrote := map[int64]bool{}
		for _, ws := range ss.txn.txWrites {
			for _, p := range ws {
				if p.ShardID == sh.ID {
					wrote[p.ID] = true
				}
			}
		}
		if len(wrote) > 0 {
			kept := ps[:0]
			for _, p := range ps {
				if wrote[p.ID] {
					kept = append(kept, p)
				}
			}
			ps = kept
		}
	}
	if ss.txn.tx != txIdle && len(ps) > 1 {
		for i, p := range ps {
			if ss.txn.txConns[p.Node] != nil {
				ps[0], ps[i] = ps[i], ps[0]
				break
			}
		}
	}
	return ps
}

// readShard runs a read on one finalized placement of sh and relays the result. It fails
// over to the next placement when one is unreachable, as long as nothing of the result has
// gone to the client.
func (x *execution) readShard(ctx context.Context, task readTask, sql []byte, mapPos func(int32) int32) error {
	ss, conns := x.ss, x.conns()
	sh := task.shard
	ps := task.ps
	if ps == nil {
		ps = x.readPlacements(sh)
	}
	var lastErr error
	for _, p := range ps {
		wc, err := conns.workerConn(ctx, p.Node)
		if err != nil {
			if backend.Unavailable(err) {
				lastErr = err
				continue
			}
			return err
		}
		c := wc.conn()
		mark := x.out.Len()
		flushed := x.out.Flushes()
		x.sendSQL(c, sql, x.prm)
		if err := ss.sendTo(c); err != nil {
			// Inside a transaction block too: the connection is broken now, so the block
			// goes on without the node (its writes there are marked at COMMIT), and every
			// other finalized placement of the shard holds the block's writes to it.
			conns.release(wc)
			lastErr = err
			continue
		}
		res, err := x.relay(ctx, c, relayOpts{mapPos: mapPos})
		conns.release(wc)
		if err != nil {
			if x.out.Flushes() == flushed && backend.Unavailable(err) && ctx.Err() == nil {
				x.out.Truncate(mark)
				lastErr = err
				continue
			}
			return err
		}
		if res.err != nil {
			ss.txn.failBlock()
		}
		return res.failed()
	}
	return unreachable(ss.shardRef(sh.ID), sh, lastErr)
}

// shardRead is one shard's part of a multi-shard read.
type shardRead struct {
	shard    *metadata.Shard
	sql      []byte
	results  []int16 // result formats (nil: text)
	internal bool    // the proxy reads the rows itself (text, with RowDescription)
	describe bool    // extended protocol with results formats and a RowDescription
	wc       workerConn
	ps       []metadata.Placement // remaining placements to fail over to
}

// startReads sends each shard's query to a placement (all before reading any answer, so
// the shards work in parallel).
func (x *execution) startReads(ctx context.Context, reads []*shardRead) error {
	for _, r := range reads {
		if err := x.startRead(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// startRead sends one shard's query, failing over across placements.
func (x *execution) startRead(ctx context.Context, r *shardRead) error {
	ss, conns := x.ss, x.conns()
	if r.ps == nil {
		r.ps = x.readPlacements(r.shard)
	}
	var lastErr error
	for len(r.ps) > 0 {
		p := r.ps[0]
		r.ps = r.ps[1:]
		wc, err := conns.workerConn(ctx, p.Node)
		if err != nil {
			if backend.Unavailable(err) {
				lastErr = err
				continue
			}
			return err
		}
		c := wc.conn()
		if r.describe {
			prm := x.prm
			if prm == nil {
				prm = &params{}
			}
			c.SendExtended(r.sql, x.oidsFor(c, prm), prm.formats, prm.values, r.results, true)
		} else if r.internal {
			x.sendInternal(c, r.sql, x.prm)
		} else {
			x.sendSQL(c, r.sql, x.prm)
		}
		if err := ss.sendTo(c); err != nil {
			conns.release(wc)
			lastErr = err
			continue
		}
		r.wc = wc
		return nil
	}
	return unreachable(ss.shardRef(r.shard.ID), r.shard, lastErr)
}

// finishReads drains and releases the connections of reads that are still open (after an
// error or an early stop).
func (x *execution) finishReads(ctx context.Context, reads []*shardRead) {
	for _, r := range reads {
		if r.wc.res == nil {
			continue
		}
		c := r.wc.conn()
		if !c.Broken() {
			x.relay(ctx, c, relayOpts{quiet: true})
		}
		x.conns().release(r.wc)
		r.wc = workerConn{}
	}
}

// concat streams the rows of every shard to the client, applying LIMIT and OFFSET.
func (x *execution) concat(ctx context.Context, tasks []readTask) error {
	ss, conns, st, in := x.ss, x.conns(), x.st, x.in
	m := st.Merge
	limit, offset, err := mergeLimits(m, in, x.prm)
	if err != nil {
		return err
	}
	tpl := st.Shard
	var evals []string
	if m.Shard != nil {
		tpl = m.Shard
		evals = shardLimit(limit, offset)
	}
	reads := make([]*shardRead, len(tasks))
	for i, task := range tasks {
		holes := &router.Holes{In: in, Tables: task.names, Evals: evals}
		reads[i] = &shardRead{shard: task.shard, ps: task.ps, sql: tpl.Render(nil, holes), results: x.results}
	}
	defer x.finishReads(ctx, reads)
	if err := x.startReads(ctx, reads); err != nil {
		return err
	}
	sentDesc := false
	var sent, skipped int64
	for _, r := range reads {
		c := r.wc.conn()
		stop := c.WatchContext(ctx)
		for {
			typ, b, err := c.Next()
			if err != nil {
				stop()
				ss.stopRunning(c)
				return err
			}
			if typ == 'Z' {
				break
			}
			switch typ {
			case 'T':
				if !sentDesc {
					x.out.Raw(typ, b)
					sentDesc = true
				}
			case 'D':
				switch {
				case skipped < offset:
					skipped++
				case limit < 0 || sent < limit:
					x.out.Raw(typ, b)
					sent++
				}
			case 'E':
				// The first error ends the statement (the other shards are drained).
				e := c.DecodeError(b)
				e.Position = 0
				stop()
				x.drainRead(ctx, c)
				conns.release(r.wc)
				r.wc = workerConn{}
				ss.txn.failBlock()
				return e
			case 'N':
				forwardNotice(x.out.Writer, ss.srv, c, b)
			}
		}
		stop()
		ss.stopRunning(c)
		conns.release(r.wc)
		r.wc = workerConn{}
	}
	x.out.CommandComplete("SELECT " + strconv.FormatInt(sent, 10))
	return nil
}

// drainRead reads a backend's remaining messages up to ReadyForQuery.
func (x *execution) drainRead(ctx context.Context, c *backend.Conn) {
	x.relay(ctx, c, relayOpts{quiet: true})
}

// mergeLimits evaluates a merge's LIMIT and OFFSET for this execution (-1 and 0 when
// absent).
func mergeLimits(m *router.Merge, in *router.Input, prm *params) (limit, offset int64, err error) {
	limit = -1
	if m.HasLimit {
		if limit, err = intValue(m.Limit, in, prm); err != nil {
			return 0, 0, err
		}
	}
	if m.HasOffset {
		if offset, err = intValue(m.Offset, in, prm); err != nil {
			return 0, 0, err
		}
	}
	return limit, offset, nil
}

// intValue reads a LIMIT or OFFSET value.
func intValue(v router.Value, in *router.Input, prm *params) (int64, error) {
	var s string
	switch v.Kind {
	case router.ValLit:
		s = in.Lit(v.Index)
		if tok := in.LitToken(v.Index); tok.Kind == sqllex.String {
			// LIMIT '10': a string literal PostgreSQL coerces to bigint.
			if v, ok := sqllex.StringValue(in.Text, tok); ok {
				s = strings.TrimSpace(v)
			}
		}
	case router.ValParam:
		i := v.Index - 1
		if prm == nil || i >= len(prm.values) {
			return 0, pgerr.New(pgerr.UndefinedObject, "there is no parameter $%d", v.Index)
		}
		if prm.values[i] == nil {
			return -1, nil
		}
		if prm.format(i) == 1 {
			b := prm.values[i]
			var n int64
			for _, x := range b {
				n = n<<8 | int64(x)
			}
			switch len(b) {
			case 4:
				return int64(int32(n)), nil
			case 8:
				return n, nil
			}
			return 0, pgerr.New(pgerr.InvalidParameterValue, "invalid binary LIMIT value")
		}
		s = string(prm.values[i])
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil && v.Kind == router.ValLit && in.LitToken(v.Index).Kind == sqllex.Number {
		// LIMIT 10.0: a numeric constant, which PostgreSQL rounds to bigint.
		n, err = roundNumeric(s)
		if err != nil {
			return 0, err
		}
	}
	if err != nil {
		return 0, pgerr.New(pgerr.InvalidTextRep, "invalid input syntax for type bigint: %q", s)
	}
	if n < 0 {
		return 0, pgerr.New("2201W", "LIMIT must not be negative")
	}
	return n, nil
}

// float4OID is the OID of type real.
const float4OID = 700

// aggregate computes partial aggregates on every shard and combines them on the
// coordinator.
func (x *execution) aggregate(ctx context.Context, tasks []readTask, shards []*metadata.Shard) error {
	ss, conns, in := x.ss, x.conns(), x.in
	m := x.st.Merge
	reads := make([]*shardRead, len(tasks))
	for i, task := range tasks {
		holes := &router.Holes{In: in, Tables: task.names}
		// Binary partials: exact whatever the session's DateStyle, time zone
		// abbreviations or extra_float_digits.
		reads[i] = &shardRead{shard: task.shard, ps: task.ps, sql: m.Shard.Render(nil, holes), results: []int16{1}, describe: true}
	}
	defer x.finishReads(ctx, reads)
	if err := x.startReads(ctx, reads); err != nil {
		return err
	}
	var oids []uint32
	var args [][]byte
	for _, r := range reads {
		c := r.wc.conn()
		rows, desc, err := collectRows(ctx, c)
		ss.stopRunning(c)
		conns.release(r.wc)
		r.wc = workerConn{}
		if err != nil {
			if e, ok := err.(*pgerr.Error); ok {
				e.Position = 0
				ss.txn.failBlock()
			}
			return err
		}
		if oids == nil {
			for _, f := range desc.Fields {
				if f.DataTypeOID >= firstNormalOID {
					// A type of the user's (an enum, say): its OID differs on each
					// server, and its binary form may name other OIDs. Gather the
					// rows instead; the coordinator aggregates them itself.
					x.finishReads(ctx, reads)
					return x.mergeFallback(ctx, shards)
				}
				oids = append(oids, f.DataTypeOID)
			}
			for _, i := range m.NotFloat4 {
				if i < len(oids) && oids[i] == float4OID {
					// avg() of a real: PostgreSQL sums in double precision, where
					// the shards' sums were reals. Gather instead.
					x.finishReads(ctx, reads)
					return x.mergeFallback(ctx, shards)
				}
			}
		}
		for _, row := range rows {
			args = append(args, row...)
		}
	}
	if len(oids) != m.Partials {
		return pgerr.New(pgerr.InternalError, "shards returned %d partial aggregates, expected %d", len(oids), m.Partials)
	}
	// VALUES ($k+1, $k+2), ... with the partials' types, after the client's own k
	// parameters (which the final query may use too).
	var clientArgs [][]byte
	var clientOIDs []uint32
	var clientFormats []int16
	if prm := x.prm; prm != nil {
		clientArgs, clientOIDs = prm.values, prm.oids
		for i := range prm.values {
			clientFormats = append(clientFormats, prm.format(i))
		}
	}
	k := len(clientArgs)
	var values []byte
	nrows := len(args) / m.Partials
	for r := 0; r < nrows; r++ {
		if r > 0 {
			values = append(values, ", "...)
		}
		values = append(values, '(')
		for c := 0; c < m.Partials; c++ {
			if c > 0 {
				values = append(values, ", "...)
			}
			values = append(values, '$')
			values = strconv.AppendInt(values, int64(k+r*m.Partials+c+1), 10)
		}
		values = append(values, ')')
	}
	types := make([]string, len(oids))
	for i, o := range oids {
		types[i] = "pg_catalog." + sqlTypeName(o)
	}
	final := m.Final.Render(nil, &router.Holes{In: in, Evals: []string{string(values)}, Types: types})
	paramOIDs := make([]uint32, 0, k+len(args))
	paramOIDs = append(paramOIDs, clientOIDs...)
	for len(paramOIDs) < k {
		paramOIDs = append(paramOIDs, 0)
	}
	for r := 0; r < nrows; r++ {
		paramOIDs = append(paramOIDs, oids...)
	}
	formats := clientFormats
	for len(formats) < k {
		formats = append(formats, 0)
	}
	for range args {
		formats = append(formats, 1)
	}
	args = append(append([][]byte{}, clientArgs...), args...)
	c, err := conns.coordConn(ctx)
	if err != nil {
		return err
	}
	w := c.Writer()
	w.Msg(&pgproto3.Parse{Query: string(final), ParameterOIDs: paramOIDs})
	w.Msg(&pgproto3.Bind{ParameterFormatCodes: formats, Parameters: args, ResultFormatCodes: x.results})
	if !x.extended {
		w.Msg(&pgproto3.Describe{ObjectType: 'P'})
	}
	w.Msg(&pgproto3.Execute{})
	w.Msg(&pgproto3.Sync{})
	if err := ss.sendTo(c); err != nil {
		return err
	}
	res, err := x.relay(ctx, c, relayOpts{coordinator: true})
	if err != nil {
		return err
	}
	return x.afterCoordinator(res)
}

// collectRows reads a result: its row description and its rows (text values, copied).
// A server error comes back as a *pgerr.Error after the connection reached ReadyForQuery.
func collectRows(ctx context.Context, c *backend.Conn) ([][][]byte, *pgproto3.RowDescription, error) {
	stop := c.WatchContext(ctx)
	defer stop()
	var rows [][][]byte
	desc := &pgproto3.RowDescription{}
	var first error
	for {
		t, b, err := c.Next()
		if err != nil {
			return nil, nil, err
		}
		switch t {
		case 'T':
			if err := desc.Decode(b); err != nil {
				return nil, nil, err
			}
			// Decode aliases the buffer; keep copies.
			for i := range desc.Fields {
				desc.Fields[i].Name = append([]byte{}, desc.Fields[i].Name...)
			}
		case 'D':
			row, err := backend.RowValues(b)
			if err != nil {
				return nil, nil, err
			}
			rows = append(rows, row)
		case 'E':
			if first == nil {
				first = c.DecodeError(b)
			}
		case 'Z':
			return rows, desc, first
		}
	}
}

// sqlTypeName names the result types of partial aggregates for casts.
func sqlTypeName(oid uint32) string {
	switch oid {
	case 20:
		return "int8"
	case 21:
		return "int2"
	case 23:
		return "int4"
	case 700:
		return "float4"
	case 701:
		return "float8"
	case 1700:
		return "numeric"
	case 1186:
		return "interval"
	case 790:
		return "money"
	case 16:
		return "bool"
	}
	return "regtype"
}

// unreachable is the error of a read that no placement of sh, a shard of table (quoted),
// could serve: lastErr is the last placement's failure, nil when the shard has no
// finalized placement at all. It names the table, not the shard (SHOW PLACEMENTS has it).
func unreachable(table string, sh *metadata.Shard, lastErr error) error {
	if lastErr == nil {
		return pgerr.New(pgerr.InternalError, "could not receive query results").
			WithDetail("Rows of table %s have no finalized placement: all %d of their placements are inactive.", table, len(sh.Placements)).
			WithHint("An administrator repairs the table's placements (SHOW PLACEMENTS, REPAIR SHARD) once a copy of their data is available.")
	}
	return pgerr.Wrap(lastErr, pgerr.InternalError, "could not receive query results").
		WithDetail("No finalized placement of rows of table %s could be reached: %v", table, lastErr)
}

// roundNumeric converts a numeric constant to bigint as PostgreSQL's numeric-to-bigint
// cast does: rounding half away from zero.
func roundNumeric(s string) (int64, error) {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, pgerr.New(pgerr.InvalidTextRep, "invalid input syntax for type numeric: %q", s)
	}
	neg := r.Sign() < 0
	r.Abs(r)
	r.Add(r, big.NewRat(1, 2))
	q := new(big.Int).Quo(r.Num(), r.Denom())
	if neg {
		q.Neg(q)
	}
	if !q.IsInt64() {
		return 0, pgerr.New(pgerr.NumericValueOutOfRange, "bigint out of range")
	}
	return q.Int64(), nil
}

// lockRowsRead takes, for a SELECT ... FOR UPDATE or FOR SHARE in a transaction block,
// the locks a write of the same rows would take (locks.go): the rows it locks on the
// workers are its own until the block ends, and a writer of them that waited for them
// there, holding its own locks, would wait in a cycle the coordinator does not see. The
// block holds the rows as it would hold written ones (holdsShardLocks). A SELECT that
// never waits for a row lock (SKIP LOCKED, NOWAIT) takes none: the job-queue pattern
// (ORDER BY ... LIMIT 1 FOR UPDATE SKIP LOCKED) must not wait for the other takers.
//
// PostgreSQL allows row locks only to a role with UPDATE privilege on some column of the
// table (checkWritePrivilege), and checks it before it waits: so does this, before it
// takes any lock.
func (x *execution) lockRowsRead(ctx context.Context, shards []*metadata.Shard, pinned []int32, noWait bool) error {
	checked := map[uint32]bool{}
	for _, sh := range shards {
		if !checked[sh.TableID] {
			checked[sh.TableID] = true
			if err := x.checkWritePrivilege(ctx, sh.TableID, router.Update); err != nil {
				return err
			}
		}
	}
	x.ss.txn.txRowLocks = true
	if noWait {
		return nil
	}
	var reqs []lockReq
	for _, sh := range shards {
		var keys []int32
		if pinned != nil {
			keys = hashesIn(sh, pinned)
		}
		reqs = shardLockReqs(reqs, sh.ID, keys, pinned != nil)
	}
	return x.ss.txn.takeLocks(ctx, reqs)
}
