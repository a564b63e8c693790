package proxy

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"io"
	"math"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router"
)

// sorted runs a Sorted merge: every shard streams its rows in order with the sort keys
// as hidden binary columns, and the proxy sends the least head row of all streams, one
// at a time, so that memory holds one row per shard whatever the result's size. When a
// key's type has no comparison here (or strings that sort by a locale), or shards share a
// connection inside a transaction block, the merge's gather fallback runs instead.
func (x *execution) sorted(ctx context.Context, tasks []readTask, shards []*metadata.Shard) error {
	ss, in := x.ss, x.in
	m := x.st.Merge
	fallback := func() error {
		if m.Fallback == nil {
			return pgerr.New(pgerr.FeatureNotSupported, "cannot perform distributed planning for the given query").
				WithDetail("SELECT ... FOR UPDATE/SHARE ordered by a key the proxy cannot compare is not supported over several shards.")
		}
		return x.mergeFallback(ctx, shards)
	}
	// buffered: shards share a connection of the transaction block and the merge has no
	// gather to fall back to (rows locked FOR UPDATE/SHARE): each shard's rows are read
	// in turn and set aside (spool: memory, then a temporary file), then merged.
	buffered := false
	if ss.txn.tx != txIdle {
		// Fix each shard's placement now: which one a shard reads from depends on the
		// block's connections, which the reads themselves open.
		nodes := map[metadata.Node]bool{}
		for i := range tasks {
			ps := tasks[i].ps
			if ps == nil {
				ps = x.readPlacements(tasks[i].shard)
				tasks[i].ps = ps
			}
			if len(ps) == 0 {
				continue
			}
			if nodes[ps[0].Node] {
				if m.Fallback != nil {
					return fallback()
				}
				buffered = true
			}
			nodes[ps[0].Node] = true
		}
	}
	limit, offset, err := mergeLimits(m, in, x.prm)
	if err != nil {
		return err
	}
	var evals []string
	if m.HasLimit {
		evals = shardLimit(limit, offset)
	}
	nv, nk := m.Visible, len(m.Keys)
	formats := make([]int16, nv+nk)
	for i := range formats {
		switch {
		case i >= nv:
			formats[i] = 1
		case len(x.results) == 1:
			formats[i] = x.results[0]
		case i < len(x.results):
			formats[i] = x.results[i]
		}
	}
	reads := make([]*shardRead, len(tasks))
	for i, task := range tasks {
		holes := &router.Holes{In: in, Tables: task.names, Evals: evals}
		reads[i] = &shardRead{shard: task.shard, ps: task.ps, sql: m.Shard.Render(nil, holes), results: formats, describe: true}
	}
	defer x.finishReads(ctx, reads)
	if !buffered {
		if err := x.startReads(ctx, reads); err != nil {
			return err
		}
	}
	h := &mergeHeap{keys: m.Keys}
	sentDesc := false
	for _, r := range reads {
		if buffered {
			if err := x.startRead(ctx, r); err != nil {
				return err
			}
		}
		cur := &cursor{r: r, nv: nv, nk: nk}
		desc, err := x.advance(ctx, cur)
		if err != nil {
			return err
		}
		if desc != nil {
			if h.types == nil {
				if h.types = keyTypes(desc, nv, m.Keys); h.types == nil {
					x.finishReads(ctx, reads)
					return fallback()
				}
			}
			if !sentDesc && !x.extended {
				desc.Fields = desc.Fields[:nv]
				x.out.Msg(desc)
			}
			sentDesc = true
			if cur.row == nil && !cur.done {
				if _, err := x.advance(ctx, cur); err != nil {
					return err
				}
			}
		}
		if buffered {
			// Set aside: in memory up to a share of work-mem, beyond in a temporary file.
			sp := ss.newSpool()
			sp.memMax = max(64<<10, ss.srv.workMem()/len(reads))
			defer sp.Close()
			for !cur.done {
				if err := sp.WriteFrame('D', cur.row); err != nil {
					ss.txn.failBlock()
					return err
				}
				if _, err := x.advance(ctx, cur); err != nil {
					return err
				}
			}
			cur.buf, cur.buffered, cur.done = sp, true, false
			if _, err := x.advance(ctx, cur); err != nil {
				return err
			}
		}
		if !cur.done {
			h.items = append(h.items, cur)
		}
	}
	heap.Init(h)
	var sent, skipped int64
	var out []byte
	for h.Len() > 0 && (limit < 0 || sent < limit) {
		cur := h.items[0]
		if skipped < offset {
			skipped++
		} else {
			out = append(out[:0], byte(nv>>8), byte(nv))
			out = append(out, cur.row[2:cur.visibleEnd]...)
			x.out.Raw('D', out)
			sent++
		}
		if _, err := x.advance(ctx, cur); err != nil {
			return err
		}
		if cur.done {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	x.out.CommandComplete("SELECT " + strconv.FormatInt(sent, 10))
	return nil
}

// mergeFallback runs a merge's gather fallback over the shards the statement selected.
func (x *execution) mergeFallback(ctx context.Context, shards []*metadata.Shard) error {
	st := x.st
	fst := *st
	fst.Merge = st.Merge.Fallback
	pulls := make([][]*metadata.Shard, len(fst.Merge.Pulls))
	if len(st.Colocated) == 0 {
		pulls[0] = shards
	}
	return x.with(&fst).gather(ctx, pulls)
}

// firstNormalOID is PostgreSQL's first OID for objects created after initdb: types
// below it are built in, with the same OID and binary form on every server.
const firstNormalOID = 16384

// cursor is the head of one shard's ordered stream.
type cursor struct {
	r          *shardRead
	nv, nk     int
	row        []byte   // current DataRow body (valid until the next read of this connection)
	keys       [][]byte // its hidden key values; nil is NULL
	visibleEnd int      // offset in row where the hidden columns start
	done       bool
	// buffered cursors read their rows from buf, not from the connection.
	buffered bool
	buf      *spool
}

// advance reads the stream's next row. It returns the RowDescription when that comes
// first (cur.row is then nil). Errors end the statement.
func (x *execution) advance(ctx context.Context, cur *cursor) (*pgproto3.RowDescription, error) {
	ss := x.ss
	cur.row = nil
	if cur.buffered {
		_, b, err := cur.buf.Next()
		if err == io.EOF {
			cur.done = true
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return nil, cur.parse(b)
	}
	c := cur.r.wc.conn()
	stop := c.WatchContext(ctx)
	defer stop()
	for {
		typ, b, err := c.Next()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'T':
			var d pgproto3.RowDescription
			if err := d.Decode(b); err != nil {
				c.MarkBroken()
				return nil, err
			}
			return &d, nil
		case 'D':
			if err := cur.parse(b); err != nil {
				c.MarkBroken()
				return nil, err
			}
			return nil, nil
		case 'E':
			e := c.DecodeError(b)
			e.Position = 0
			x.drainRead(ctx, c)
			x.conns().release(cur.r.wc)
			cur.r.wc = workerConn{}
			ss.txn.failBlock()
			return nil, e
		case 'N':
			forwardNotice(x.out.Writer, ss.srv, c, b)
		case 'Z':
			ss.stopRunning(c)
			x.conns().release(cur.r.wc)
			cur.r.wc = workerConn{}
			cur.done = true
			return nil, nil
		}
	}
}

// parse locates the hidden key columns of a DataRow.
func (cur *cursor) parse(b []byte) error {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != cur.nv+cur.nk {
		return pgerr.New(pgerr.ProtocolViolation, "a shard returned a row of an unexpected shape")
	}
	p := 2
	if cap(cur.keys) < cur.nk {
		cur.keys = make([][]byte, cur.nk)
	}
	cur.keys = cur.keys[:cur.nk]
	for i := 0; i < cur.nv+cur.nk; i++ {
		if i == cur.nv {
			cur.visibleEnd = p
		}
		if p+4 > len(b) {
			return pgerr.New(pgerr.ProtocolViolation, "invalid DataRow from a shard")
		}
		n := int(int32(binary.BigEndian.Uint32(b[p:])))
		p += 4
		var v []byte
		if n >= 0 {
			if p+n > len(b) {
				return pgerr.New(pgerr.ProtocolViolation, "invalid DataRow from a shard")
			}
			v = b[p : p+n : p+n]
			p += n
		}
		if i >= cur.nv {
			cur.keys[i-cur.nv] = v
		}
	}
	cur.row = b
	return nil
}

// mergeHeap orders cursors by their head rows' keys.
type mergeHeap struct {
	items []*cursor
	keys  []router.SortKey
	types []uint32
}

func (h *mergeHeap) Len() int      { return len(h.items) }
func (h *mergeHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap) Push(x any)    { h.items = append(h.items, x.(*cursor)) }
func (h *mergeHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

func (h *mergeHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	for k, key := range h.keys {
		x, y := a.keys[k], b.keys[k]
		var c int
		switch {
		case x == nil && y == nil:
			continue
		case x == nil:
			c = 1
			if key.NullsFirst {
				c = -1
			}
			return c < 0
		case y == nil:
			c = -1
			if key.NullsFirst {
				c = 1
			}
			return c < 0
		}
		c = compareBinary(h.types[k], x, y)
		if key.Desc {
			c = -c
		}
		if c != 0 {
			return c < 0
		}
	}
	return false
}

// PostgreSQL type OIDs whose binary forms the merge compares.
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidMoney       = 790
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
)

// keyTypes returns the types of the hidden key columns, or nil when one cannot be
// compared here.
func keyTypes(d *pgproto3.RowDescription, nv int, keys []router.SortKey) []uint32 {
	if len(d.Fields) != nv+len(keys) {
		return nil
	}
	types := make([]uint32, len(keys))
	for i, k := range keys {
		f := d.Fields[nv+i]
		if f.Format != 1 {
			return nil
		}
		switch f.DataTypeOID {
		case oidText, oidVarchar, oidBpchar, oidName:
			if !k.ByteOrder {
				return nil
			}
		case oidBool, oidBytea, oidChar, oidInt8, oidInt2, oidInt4, oidOID, oidFloat4, oidFloat8, oidMoney,
			oidDate, oidTime, oidTimestamp, oidTimestamptz, oidNumeric, oidUUID:
		default:
			return nil
		}
		types[i] = f.DataTypeOID
	}
	return types
}

// compareBinary compares two non-NULL values of type oid in binary format as PostgreSQL's
// default btree operator class does.
func compareBinary(oid uint32, a, b []byte) int {
	switch oid {
	case oidInt2:
		if len(a) == 2 && len(b) == 2 {
			return cmpInt(int64(int16(binary.BigEndian.Uint16(a))), int64(int16(binary.BigEndian.Uint16(b))))
		}
	case oidInt4, oidDate:
		if len(a) == 4 && len(b) == 4 {
			return cmpInt(int64(int32(binary.BigEndian.Uint32(a))), int64(int32(binary.BigEndian.Uint32(b))))
		}
	case oidInt8, oidTime, oidTimestamp, oidTimestamptz, oidMoney:
		if len(a) == 8 && len(b) == 8 {
			return cmpInt(int64(binary.BigEndian.Uint64(a)), int64(binary.BigEndian.Uint64(b)))
		}
	case oidOID:
		if len(a) == 4 && len(b) == 4 {
			return cmpInt(int64(binary.BigEndian.Uint32(a)), int64(binary.BigEndian.Uint32(b)))
		}
	case oidFloat4:
		if len(a) == 4 && len(b) == 4 {
			return cmpFloat(float64(math.Float32frombits(binary.BigEndian.Uint32(a))), float64(math.Float32frombits(binary.BigEndian.Uint32(b))))
		}
	case oidFloat8:
		if len(a) == 8 && len(b) == 8 {
			return cmpFloat(math.Float64frombits(binary.BigEndian.Uint64(a)), math.Float64frombits(binary.BigEndian.Uint64(b)))
		}
	case oidBpchar:
		return bytes.Compare(bytes.TrimRight(a, " "), bytes.TrimRight(b, " "))
	case oidNumeric:
		return cmpNumeric(a, b)
	}
	// bool, bytea, "char", text, varchar, name (byte-order collations), uuid.
	return bytes.Compare(a, b)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpFloat orders floats as PostgreSQL does: NaN equals NaN and sorts above everything.
func cmpFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// numeric is a decoded binary numeric.
type numeric struct {
	class  int // 0 -Inf, 1 negative, 2 zero, 3 positive, 4 +Inf, 5 NaN
	weight int
	digits []byte // base-10000 digits, two bytes each
}

func decodeNumeric(b []byte) numeric {
	if len(b) < 8 {
		return numeric{class: 5}
	}
	nd := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	digits := b[8:]
	if len(digits) > 2*nd {
		digits = digits[:2*nd]
	}
	// Leading and trailing zero digits do not change the value.
	for len(digits) >= 2 && digits[0] == 0 && digits[1] == 0 {
		digits = digits[2:]
		weight--
	}
	for len(digits) >= 2 && digits[len(digits)-2] == 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-2]
	}
	switch sign {
	case 0xC000:
		return numeric{class: 5}
	case 0xD000:
		return numeric{class: 4}
	case 0xF000:
		return numeric{class: 0}
	}
	if len(digits) == 0 {
		return numeric{class: 2}
	}
	n := numeric{class: 3, weight: weight, digits: digits}
	if sign == 0x4000 {
		n.class = 1
	}
	return n
}

// cmpNumeric orders binary numerics: -Infinity, negatives, zero, positives, Infinity, NaN.
func cmpNumeric(a, b []byte) int {
	x, y := decodeNumeric(a), decodeNumeric(b)
	if c := cmpInt(int64(x.class), int64(y.class)); c != 0 {
		return c
	}
	if x.class != 1 && x.class != 3 {
		return 0
	}
	c := cmpInt(int64(x.weight), int64(y.weight))
	if c == 0 {
		// Same weight: digit strings compare lexicographically (big-endian base-10000
		// digits), a missing digit being zero, which a shorter string's trailing
		// position already is after trimming.
		c = bytes.Compare(x.digits, y.digits)
	}
	if x.class == 1 {
		return -c
	}
	return c
}
