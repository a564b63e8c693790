package proxy

import (
	"context"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/pgerr"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/pghash"
	"github.com/pgshard/pgshard/router/sqllex"
)

// evaluated is the coordinator's answer for an Eval: the value as a typed SQL literal and,
// for a partition key, its hash.
type evaluated struct {
	literal string
	hash    int32
}

// pendingHash is a key value the proxy could not hash itself: PostgreSQL reads it.
type pendingHash struct {
	typ  uint32
	text []byte
	dst  *int32
	pos  int32 // position of the value in the client's statement, for errors
}

// keyHasher hashes partition-key values: natively where pghash reads the value with
// certainty, else in one round trip to the coordinator, which reads the values with the
// session's settings (DateStyle, TimeZone, ...) exactly as the statement would.
type keyHasher struct {
	ss      *session
	pending []pendingHash
}

// add hashes v into *dst now or queues it for flush.
func (kh *keyHasher) add(v router.Value, in *router.Input, prm *params, evals []evaluated, dst *int32) error {
	typ := v.Type
	var text []byte
	var pos int32
	switch v.Kind {
	case router.ValNull:
		*dst = 0
		return nil
	case router.ValEval:
		*dst = evals[v.Index].hash
		return nil
	case router.ValLit:
		tok := in.LitToken(v.Index)
		pos = int32(charPos(in.Text, int(tok.Start)))
		if tok.Kind == sqllex.String {
			s, _ := sqllex.StringValue(in.Text, tok)
			text = []byte(s)
		} else {
			text = []byte(in.Text[tok.Start:tok.End])
			if v.Neg {
				text = append([]byte{'-'}, text...)
			}
		}
	case router.ValParam:
		i := v.Index - 1
		if prm == nil || i < 0 || i >= len(prm.values) {
			return pgerr.New(pgerr.UndefinedObject, "there is no parameter $%d", v.Index)
		}
		val := prm.values[i]
		if val == nil {
			*dst = 0 // NULL: matches nothing; any shard answers
			return nil
		}
		if i < len(prm.oids) && prm.oids[i] != 0 && sameFamily(prm.oids[i], typ) {
			typ = prm.oids[i]
		}
		if prm.format(i) == 1 {
			h, ok := pghash.HashBinary(typ, val)
			if !ok {
				return pgerr.New(pgerr.InvalidParameterValue, "invalid binary value for parameter $%d of type %s", v.Index, typeNameOf(typ))
			}
			*dst = h
			return nil
		}
		text = val
	}
	if h, ok := pghash.HashText(typ, text); ok {
		*dst = h
		return nil
	}
	kh.pending = append(kh.pending, pendingHash{typ: typ, text: text, dst: dst, pos: pos})
	return nil
}

// addText hashes a value given in text form, now or at flush.
func (kh *keyHasher) addText(typ uint32, text []byte, dst *int32) error {
	if h, ok := pghash.HashText(typ, text); ok {
		*dst = h
		return nil
	}
	kh.pending = append(kh.pending, pendingHash{typ: typ, text: append([]byte(nil), text...), dst: dst})
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
	for i, p := range kh.pending {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(strings.ReplaceAll(pghash.CanonicalExpr(p.typ), "$1", "$"+strconv.Itoa(i+1)))
		args[i] = p.text
	}
	c, err := kh.ss.coordConn(ctx)
	if err != nil {
		return err
	}
	kh.ss.startRunning(c)
	rows, err := c.QueryParams(ctx, q.String(), args, nil)
	kh.ss.stopRunning(c)
	if err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			// The value is invalid for the column's type: PostgreSQL's message, pointing
			// at the value.
			e.Position = 0
			if len(kh.pending) == 1 {
				e.Position = kh.pending[0].pos
			}
			if kh.ss.tx == 'T' {
				kh.ss.tx = 'E'
			}
		}
		return err
	}
	if len(rows) != 1 || len(rows[0]) != len(kh.pending) {
		return pgerr.New(pgerr.InternalError, "unexpected answer hashing partition values")
	}
	for i, p := range kh.pending {
		h, ok := pghash.HashCanonical(p.typ, rows[0][i])
		if !ok {
			return pgerr.New(pgerr.InternalError, "could not hash a value of type %s", typeNameOf(p.typ))
		}
		*p.dst = h
	}
	kh.pending = kh.pending[:0]
	return nil
}

func sameFamily(a, b uint32) bool {
	fam := func(o uint32) uint32 {
		switch o {
		case pghash.OIDInt2, pghash.OIDInt4, pghash.OIDInt8:
			return pghash.OIDInt8
		case pghash.OIDText, pghash.OIDVarchar:
			return pghash.OIDText
		case pghash.OIDFloat4, pghash.OIDFloat8:
			return pghash.OIDFloat8
		}
		return o
	}
	return fam(a) == fam(b)
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

// shards returns the shards of t a statement's condition selects.
func (ss *session) shards(ctx context.Context, t *metadata.Table, cond *router.Cond, in *router.Input, prm *params, evals []evaluated) ([]*metadata.Shard, error) {
	if cond == nil || cond.Kind == router.CondAll {
		return t.Shards, nil
	}
	vals := cond.Values(nil)
	hashes := make([]int32, len(vals))
	kh := keyHasher{ss: ss}
	for i, v := range vals {
		if err := kh.add(v, in, prm, evals, &hashes[i]); err != nil {
			return nil, err
		}
	}
	if err := kh.flush(ctx); err != nil {
		return nil, err
	}
	shards, _ := cond.Select(t, hashes)
	return shards, nil
}

// evaluate asks the coordinator for the values of evals (one query; the values of each
// group in one SELECT, so that each expression is evaluated exactly once).
func (ss *session) evaluate(ctx context.Context, groups [][]router.Eval, in *router.Input) ([][]evaluated, error) {
	var q strings.Builder
	n := 0
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		n++
		q.WriteString("SELECT ")
		for i, e := range g {
			if i > 0 {
				q.WriteString(", ")
			}
			v := "v" + strconv.Itoa(i)
			q.WriteString("pg_catalog.format('%L::%s', " + v + ", pg_catalog.pg_typeof(" + v + "))")
			if e.Key {
				q.WriteString(", " + strings.ReplaceAll(pghash.CanonicalExpr(e.KeyType), "$1", "("+v+")::text"))
			}
		}
		q.WriteString(" FROM (SELECT ")
		for i, e := range g {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(")
			q.Write(e.Expr.Render(nil, &router.Holes{In: in}))
			q.WriteString(")")
			if e.Cast != "" {
				q.WriteString("::" + e.Cast)
			}
			q.WriteString(" AS v" + strconv.Itoa(i))
		}
		q.WriteString(" OFFSET 0) pgshard_eval;\n")
	}
	out := make([][]evaluated, len(groups))
	if n == 0 {
		return out, nil
	}
	c, err := ss.coordConn(ctx)
	if err != nil {
		return nil, err
	}
	ss.startRunning(c)
	rows, err := c.ExecRows(ctx, q.String())
	ss.stopRunning(c)
	if err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			e.Position = 0
			if ss.tx == 'T' {
				ss.tx = 'E'
			}
		}
		return nil, err
	}
	if len(rows) != n {
		return nil, pgerr.New(pgerr.InternalError, "unexpected answer evaluating values on the coordinator")
	}
	r := 0
	for gi, g := range groups {
		if len(g) == 0 {
			continue
		}
		row := rows[r]
		r++
		out[gi] = make([]evaluated, len(g))
		col := 0
		for i, e := range g {
			out[gi][i].literal = string(row[col])
			col++
			if e.Key {
				if row[col] == nil {
					return nil, pgerr.New(pgerr.NullValueNotAllowed, "cannot plan INSERT using row with NULL value in partition column")
				}
				h, ok := pghash.HashCanonical(e.KeyType, row[col])
				if !ok {
					return nil, pgerr.New(pgerr.InternalError, "could not hash a value of type %s", typeNameOf(e.KeyType))
				}
				out[gi][i].hash = h
				col++
			}
		}
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
