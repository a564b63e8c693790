package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/copyfmt"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/pghash"
)

// evaluated is the coordinator's answer for an Eval: the value as a typed SQL literal and,
// for a partition key, its hash.
type evaluated struct {
	literal string
	hash    int32
}

// pendingHash is a key value only the coordinator can read (router.Bind's NeedsRead),
// and where its hash goes.
type pendingHash struct {
	router.Read
	dst *int32
}

// keyHasher hashes partition-key values: router.Binder hashes those pghash reads with
// certainty; keyHasher asks the coordinator for the rest in one round trip (flush), which
// reads the values with the session's settings (DateStyle, TimeZone, ...) exactly as the
// statement would, and takes the hashes of evaluated values from their evaluation.
type keyHasher struct {
	ss *session
	// be are the connections the coordinator's round trip runs on: the execution's
	// (x.conns()), or the session's when nil.
	be backends
	// col is the partition column values are assigned to (INSERT, COPY), whose type
	// modifier applies to them before they are hashed; nil for comparisons.
	col     *metadata.Column
	pending []pendingHash
	// all is set when a compared value cannot select shards: every shard is needed.
	all bool
	// b binds the values one by one, keeping its place in the statement's text across
	// calls (the positions of a long IN list's values cost one pass); prm are the
	// parameters it was made for.
	b   router.Binder
	prm *params
}

// bindParams is the view of the client's parameters that router.Bind reads.
func bindParams(prm *params) *router.Params {
	if prm == nil {
		return nil
	}
	return &router.Params{Values: prm.values, Formats: prm.formats, OIDs: prm.oids}
}

// bindError words Bind's error as PostgreSQL does.
func bindError(err error) error {
	var be *router.BinaryParamError
	if errors.As(err, &be) {
		return binaryParamError(be.Type, be.Param, be.Value)
	}
	return err
}

// take records a bound value: its hash now, from its evaluation (evals), or at flush.
func (kh *keyHasher) take(bv router.Bound, evals []evaluated, dst *int32) {
	switch bv.Kind {
	case router.Hashed:
		*dst = bv.Hash
	case router.AnyShard:
		kh.all = true
		*dst = 0
	case router.NeedsEval:
		*dst = evals[bv.Eval].hash
	case router.NeedsRead:
		kh.pending = append(kh.pending, pendingHash{Read: bv.Read, dst: dst})
	}
}

// add hashes v into *dst now or queues it for flush; evals are the values the
// coordinator evaluated for v's statement or row.
func (kh *keyHasher) add(v router.Value, in *router.Input, prm *params, evals []evaluated, dst *int32) error {
	if kh.b.In != in || kh.prm != prm {
		kh.b, kh.prm = router.Binder{In: in, Params: bindParams(prm)}, prm
	}
	kh.b.Column = kh.col
	bv, err := kh.b.Value(v)
	if err != nil {
		return bindError(err)
	}
	kh.take(bv, evals, dst)
	return nil
}

// addText hashes a value given in text form, now or at flush; a value assigned to the
// partition column (kh.col) is read as the column's type, modifier included, as COPY reads
// it.
func (kh *keyHasher) addText(typ uint32, text []byte, dst *int32) error {
	kh.b.Column = kh.col
	kh.take(kh.b.Text(typ, text), nil, dst)
	return nil
}

// flush hashes the queued values with the coordinator's help.
func (kh *keyHasher) flush(ctx context.Context) error {
	if len(kh.pending) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString("SELECT ")
	args := make([][]byte, len(kh.pending))
	oids := make([]uint32, len(kh.pending))
	formats := make([]int16, len(kh.pending))
	for i, p := range kh.pending {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(p.Expr("$" + strconv.Itoa(i+1)))
		args[i], oids[i], formats[i] = p.Value, p.OID, p.Format
	}
	be := kh.be
	if be == nil {
		be = &kh.ss.txn
	}
	c, err := be.coordConn(ctx)
	if err != nil {
		return err
	}
	kh.ss.startRunning(c)
	rows, err := c.QueryParamsFormats(ctx, q.String(), args, oids, formats)
	kh.ss.stopRunning(c)
	if err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			// The value is invalid for the column's type: PostgreSQL's message, pointing
			// at the value.
			e.Position = 0
			if len(kh.pending) == 1 && !(kh.pending[0].Assign != "" && (e.Code == "22001" || e.Code == "22003")) {
				// (A type modifier's errors, raised by the assignment, point nowhere.)
				e.Position = kh.pending[0].Pos
			}
			kh.ss.txn.failBlock()
		}
		return err
	}
	if len(rows) != 1 || len(rows[0]) != len(kh.pending) {
		return pgerr.New(pgerr.InternalError, "unexpected answer hashing partition values")
	}
	for i, p := range kh.pending {
		h, ok := pghash.HashCanonical(p.Type, rows[0][i])
		if !ok {
			return pgerr.New(pgerr.InternalError, "could not hash a value of type %s", typeNameOf(p.Type))
		}
		*p.dst = h
	}
	kh.pending = kh.pending[:0]
	return nil
}

// charPos converts a byte offset of s into a 1-based character position.
func charPos(s string, off int) int {
	n := 1
	for i := 0; i < off && i < len(s); i++ {
		if s[i]&0xC0 != 0x80 {
			n++
		}
	}
	return n
}

// shards returns the shards of t a condition of the statement selects: router.Bind
// hashes its values, the coordinator reads those Bind cannot, evals are the statement's
// evaluated values.
func (x *execution) shards(ctx context.Context, t *metadata.Table, cond *router.Cond, evals []evaluated) ([]*metadata.Shard, error) {
	shards, _, err := x.pinnedShards(ctx, t, cond, evals)
	return shards, err
}

// pinnedShards is shards, with the hashes of the partition-key values the condition pins
// the rows to (locks.go), or nil when it pins none.
func (x *execution) pinnedShards(ctx context.Context, t *metadata.Table, cond *router.Cond, evals []evaluated) ([]*metadata.Shard, []int32, error) {
	if cond == nil || cond.Kind == router.CondAll {
		return t.Shards, nil, nil
	}
	bd, err := router.Bind(cond.Values(nil), x.in, bindParams(x.prm), nil)
	if err != nil {
		return nil, nil, bindError(err)
	}
	kh := keyHasher{ss: x.ss, be: x.conns()}
	for _, p := range bd.Pending {
		kh.take(p.Bound, evals, &bd.Hashes[p.Index])
	}
	if err := kh.flush(ctx); err != nil {
		return nil, nil, err
	}
	if bd.AnyShard {
		return t.Shards, nil, nil
	}
	shards, _ := cond.Select(t, bd.Hashes)
	i := 0
	pinned, ok := pinnedHashes(cond, bd.Hashes, &i)
	if !ok {
		pinned = nil
	} else if pinned == nil {
		pinned = []int32{}
	}
	return shards, pinned, nil
}

// pinnedHashes returns the hashes of the partition-key values every row the condition
// keeps has one of (ok false: the condition does not say), given the hashes of its Values
// from *i on (as Cond.Select takes them).
func pinnedHashes(c *router.Cond, hashes []int32, i *int) (pinned []int32, ok bool) {
	switch c.Kind {
	case router.CondEq:
		h := hashes[*i]
		*i++
		return []int32{h}, true
	case router.CondNone:
		return nil, true
	case router.CondAnd:
		// Any pinned argument pins the conjunction: the narrowest is kept.
		for _, a := range c.Args {
			if p, aok := pinnedHashes(a, hashes, i); aok && (!ok || len(p) < len(pinned)) {
				pinned, ok = p, true
			}
		}
		return pinned, ok
	case router.CondOr:
		ok = true
		for _, a := range c.Args {
			p, aok := pinnedHashes(a, hashes, i)
			ok = ok && aok
			pinned = append(pinned, p...)
		}
		return pinned, ok
	}
	return nil, false
}

// hashesIn are the hashes of pinned that shard sh holds.
func hashesIn(sh *metadata.Shard, pinned []int32) []int32 {
	out := []int32{}
	for _, h := range pinned {
		if sh.Min <= h && h <= sh.Max {
			out = append(out, h)
		}
	}
	return out
}

// evaluate asks the coordinator for the values of evals, in one round trip (one query per
// group, router.EvalQuery), with the parameters prm (nil: none): each value as a typed
// SQL literal and, for a partition key, its hash.
func (x *execution) evaluate(ctx context.Context, groups [][]router.Eval, prm *params) ([][]evaluated, error) {
	ss, in := x.ss, x.in
	var queries []string
	for _, g := range groups {
		if q := router.EvalQuery(g, in); q != "" {
			queries = append(queries, q)
		}
	}
	out := make([][]evaluated, len(groups))
	if len(queries) == 0 {
		return out, nil
	}
	c, err := x.conns().coordConn(ctx)
	if err != nil {
		return nil, err
	}
	ss.startRunning(c)
	var rows [][][]byte
	if prm != nil && len(prm.values) > 0 {
		// With the statement's parameters: one extended-protocol query per group, in
		// one round trip.
		rows, err = c.QueryParamsBatch(ctx, queries, prm.values, prm.oids, prm.formats)
	} else {
		rows, err = c.ExecRows(ctx, strings.Join(queries, ";\n"))
	}
	ss.stopRunning(c)
	if err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			evalErrorPosition(e, groups, in)
			ss.txn.failBlock()
		}
		return nil, err
	}
	if len(rows) != len(queries) {
		return nil, pgerr.New(pgerr.InternalError, "unexpected answer evaluating values on the coordinator")
	}
	r := 0
	for gi, g := range groups {
		if len(g) == 0 {
			continue
		}
		if out[gi], err = evaluatedRow(g, rows[r], in); err != nil {
			return nil, err
		}
		r++
	}
	return out, nil
}

// evalErrorPosition points the coordinator's error e about evaluated values where
// PostgreSQL would: at a string constant the column's type cannot read (but not for a
// type modifier's errors), else nowhere (the position is in the evaluation's query).
func evalErrorPosition(e *pgerr.Error, groups [][]router.Eval, in *router.Input) {
	e.Position = 0
	var unknown []router.Eval
	for _, g := range groups {
		for _, ev := range g {
			if ev.Unknown && ev.Pos > 0 {
				unknown = append(unknown, ev)
			}
		}
	}
	if code := string(e.Code); len(unknown) == 1 && strings.HasPrefix(code, "22") && code != "22001" && code != "22003" {
		e.Position = int32(charPos(in.Text, unknown[0].Pos))
	}
}

// evaluatedRow reads the coordinator's row for the group g (router.EvalQuery): each
// value's literal, and for a partition key its hash, or PostgreSQL's error for a key
// that is NULL or not assignable to its column.
func evaluatedRow(g []router.Eval, row [][]byte, in *router.Input) ([]evaluated, error) {
	out := make([]evaluated, len(g))
	col := 0
	for i, e := range g {
		if col >= len(row) {
			return nil, pgerr.New(pgerr.InternalError, "unexpected answer evaluating values on the coordinator")
		}
		out[i].literal = string(row[col])
		col++
		if !e.Key {
			continue
		}
		if col >= len(row) {
			return nil, pgerr.New(pgerr.InternalError, "unexpected answer evaluating values on the coordinator")
		}
		canon := row[col]
		col++
		if canon == nil {
			return nil, pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
		}
		if len(canon) > 0 && canon[0] == '-' {
			// Not assignable to the column: PostgreSQL's error.
			types := strings.SplitN(string(canon[1:]), "|", 2)
			if len(types) != 2 {
				return nil, pgerr.New(pgerr.InternalError, "unexpected answer evaluating values on the coordinator")
			}
			err := pgerr.New(pgerr.DatatypeMismatch, "column %q is of type %s but expression is of type %s", e.Column, types[1], types[0]).
				WithHint("You will need to rewrite or cast the expression.")
			if e.Pos > 0 {
				err.Position = int32(charPos(in.Text, e.Pos))
			}
			return nil, err
		}
		h, ok := pghash.HashCanonical(e.KeyType, canon)
		if !ok {
			return nil, pgerr.New(pgerr.InternalError, "could not hash a value of type %s", typeNameOf(e.KeyType))
		}
		out[i].hash = h
	}
	return out, nil
}

// literals returns the evaluated values as SQL text for template holes.
func literals(ev []evaluated) []string {
	out := make([]string, len(ev))
	for i, e := range ev {
		out[i] = e.literal
	}
	return out
}

// typeNameOf names common types for messages.
func typeNameOf(oid uint32) string {
	if n, ok := builtinTypeNames[oid]; ok {
		return n
	}
	return "type " + strconv.FormatUint(uint64(oid), 10)
}

var builtinTypeNames = map[uint32]string{
	16: "boolean", 17: "bytea", 18: `"char"`, 19: "name", 20: "bigint", 21: "smallint", 23: "integer", 25: "text",
	26: "oid", 700: "real", 701: "double precision", 790: "money", 1042: "character", 1043: "character varying",
	1082: "date", 1083: "time without time zone", 1114: "timestamp without time zone",
	1184: "timestamp with time zone", 1186: "interval", 1700: "numeric", 2950: "uuid", 114: "json", 3802: "jsonb",
}

// binaryFixedLength is the length of the binary form of the fixed-length key types.
var binaryFixedLength = map[uint32]int{16: 1, 18: 1, 21: 2, 23: 4, 20: 8, 26: 4, 700: 4, 701: 8,
	1082: 4, 1083: 8, 1114: 8, 1184: 8, 2950: 16}

// binaryParamError is PostgreSQL's error for a binary key parameter that its type's
// receive function refuses: too few bytes (08P01), bytes left over (22P03), or text that
// is not valid UTF-8 (22021).
func binaryParamError(typ uint32, index int, val []byte) error {
	if n, ok := binaryFixedLength[typ]; ok {
		if len(val) < n {
			return pgerr.New(pgerr.ProtocolViolation, "insufficient data left in message")
		}
		if len(val) > n {
			return pgerr.New("22P03", "incorrect binary data format in bind parameter %d", index)
		}
	}
	switch typ {
	case 25, 1043, 1042, 19:
		var de *copyfmt.DataError
		if err := copyfmt.VerifyUTF8(val); errors.As(err, &de) {
			return pgerr.New(pgerr.Code(de.Code), "%s", de.Msg)
		}
	}
	return pgerr.New(pgerr.InvalidParameterValue, "invalid binary value for parameter $%d of type %s", index, typeNameOf(typ))
}
