package proxy

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/copyfmt"
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
	// assign is the partition column's assignment coercion (SQL over $1) for a value
	// assigned to it, "" for none; oid and format describe the value (0: text of a type
	// PostgreSQL infers).
	assign string
	oid    uint32
	format int16
}

// keyHasher hashes partition-key values: natively where pghash reads the value with
// certainty, else in one round trip to the coordinator, which reads the values with the
// session's settings (DateStyle, TimeZone, ...) exactly as the statement would.
type keyHasher struct {
	ss *session
	// col is the partition column values are assigned to (INSERT, COPY), whose type
	// modifier applies to them before they are hashed; nil for comparisons.
	col     *metadata.Column
	pending []pendingHash
	// all is set when a compared value cannot select shards: every shard is needed.
	all bool
	// posOff and posChars remember how many characters precede byte posOff of the
	// statement, so that the positions of a long IN list's values cost one pass.
	posOff, posChars int
}

// charPos is charPos(text, off) for values met in text order.
func (kh *keyHasher) charPos(text string, off int) int32 {
	if off < kh.posOff {
		kh.posOff, kh.posChars = 0, 0
	}
	for ; kh.posOff < off && kh.posOff < len(text); kh.posOff++ {
		if text[kh.posOff]&0xC0 != 0x80 {
			kh.posChars++
		}
	}
	return int32(kh.posChars + 1)
}

// oidUnknown is the type of an untyped parameter.
const oidUnknown = 705

// comparesAsKey reports whether comparing a key of type key with a value of another type
// keeps the key's hash valid: a character key compared with text (as text, without the
// trailing spaces its hash ignores too), a name key with text.
func comparesAsKey(param, key uint32) bool {
	switch key {
	case pghash.OIDBPChar, pghash.OIDName:
		return param == pghash.OIDText || param == pghash.OIDVarchar
	}
	return false
}

// assigning reports whether values assigned to the key need the column's modifier.
func (kh *keyHasher) assigning() bool { return kh.col != nil && kh.col.HasTypmod() }

// addAssigned hashes a value assigned to the partition column, whose type modifier may
// change it (char(n), varchar(n), numeric(p,s), timestamp(p), ...): natively when the
// modifier cannot, else on the coordinator, which applies it as INSERT does.
func (kh *keyHasher) addAssigned(text []byte, oid uint32, format int16, pos int32, dst *int32) {
	if format == 0 {
		if h, ok := assignedFast(kh.col, oid, text); ok {
			*dst = h
			return
		}
	}
	kh.pending = append(kh.pending, pendingHash{typ: kh.col.HashType, text: append([]byte(nil), text...), dst: dst, pos: pos,
		assign: kh.col.Assign("$1"), oid: oid, format: format})
}

// assignedFast hashes a string assigned to a character(n) or character varying(n) column
// natively when it fits: the modifier then leaves it as it is (character(n) pads it, but
// its hash ignores trailing spaces).
func assignedFast(col *metadata.Column, oid uint32, text []byte) (int32, bool) {
	switch oid {
	case 0, pghash.OIDText, pghash.OIDVarchar, pghash.OIDBPChar:
	default:
		return 0, false
	}
	n := int(col.Typmod) - 4
	switch col.HashType {
	case pghash.OIDBPChar:
		if utf8.RuneCount(bytes.TrimRight(text, " ")) <= n {
			return pghash.HashText(pghash.OIDBPChar, text)
		}
	case pghash.OIDVarchar:
		if utf8.RuneCount(text) <= n {
			return pghash.HashText(pghash.OIDVarchar, text)
		}
	}
	return 0, false
}

// numberType is the type PostgreSQL gives a number constant: integer or bigint when it
// is an integer that fits, else numeric.
func numberType(text []byte) uint32 {
	if _, err := strconv.ParseInt(string(text), 10, 32); err == nil {
		return pghash.OIDInt4
	}
	if _, err := strconv.ParseInt(string(text), 10, 64); err == nil {
		return pghash.OIDInt8
	}
	return pghash.OIDNumeric
}

// add hashes v into *dst now or queues it for flush.
func (kh *keyHasher) add(v router.Value, in *router.Input, prm *params, evals []evaluated, dst *int32) error {
	typ := v.Type
	var text []byte
	var pos int32
	assign := v.Assign && kh.assigning()
	switch v.Kind {
	case router.ValNull:
		*dst = 0
		return nil
	case router.ValEval:
		*dst = evals[v.Index].hash
		return nil
	case router.ValLit:
		tok := in.LitToken(v.Index)
		pos = kh.charPos(in.Text, int(tok.Start))
		if tok.Kind == sqllex.String {
			s, _ := sqllex.StringValue(in.Text, tok)
			text = []byte(s)
		} else {
			text = []byte(in.Text[tok.Start:tok.End])
			if v.Neg {
				text = append([]byte{'-'}, text...)
			}
			if v.Assign && kh.col != nil {
				// A number constant has its own type (integer, bigint or numeric),
				// which INSERT then assigns to the column (99999999999 into an
				// integer column: "integer out of range").
				if h, ok := pghash.HashText(typ, text); ok && !assign {
					*dst = h
					return nil
				}
				kh.pending = append(kh.pending, pendingHash{typ: kh.col.HashType, text: text, dst: dst, pos: pos,
					assign: kh.col.Assign("$1"), oid: numberType(text)})
				return nil
			}
		}
		if assign {
			kh.addAssigned(text, 0, 0, pos, dst)
			return nil
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
		var oid uint32
		if i < len(prm.oids) {
			oid = prm.oids[i]
		}
		otherType := oid != 0 && oid != oidUnknown && !sameFamily(oid, typ)
		if assign || (v.Assign && kh.col != nil && otherType) {
			// Assigned to the key: the coordinator reads the value as its own type
			// and coerces it as INSERT does (a numeric 5.0 into an integer key is 5).
			kh.addAssigned(val, oid, prm.format(i), 0, dst)
			return nil
		}
		if otherType && !comparesAsKey(oid, typ) {
			// Compared in the parameter's type (a varchar key with a character
			// parameter compares as character, ignoring trailing spaces; an integer
			// key with a numeric one, as numeric): values equal to it may lie on
			// any shard.
			kh.all = true
			*dst = 0
			return nil
		}
		if !otherType && oid != 0 && oid != oidUnknown {
			typ = oid
		}
		if prm.format(i) == 1 {
			h, ok := pghash.HashBinary(typ, val)
			if !ok {
				return binaryParamError(typ, v.Index, val)
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

// addText hashes a value given in text form, now or at flush; a value assigned to the
// partition column (kh.col) is read as the column's type, modifier included, as COPY reads
// it.
func (kh *keyHasher) addText(typ uint32, text []byte, dst *int32) error {
	if kh.assigning() {
		kh.addAssigned(text, 0, 0, 0, dst)
		return nil
	}
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
	oids := make([]uint32, len(kh.pending))
	formats := make([]int16, len(kh.pending))
	for i, p := range kh.pending {
		if i > 0 {
			q.WriteString(", ")
		}
		arg := "$" + strconv.Itoa(i+1)
		if p.assign != "" {
			arg = "(" + strings.ReplaceAll(p.assign, "$1", arg) + ")"
		}
		q.WriteString(strings.ReplaceAll(pghash.CanonicalExpr(p.typ), "$1", arg))
		args[i], oids[i], formats[i] = p.text, p.oid, p.format
	}
	c, err := kh.ss.coordConn(ctx)
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
			if len(kh.pending) == 1 && !(kh.pending[0].assign != "" && (e.Code == "22001" || e.Code == "22003")) {
				// (A type modifier's errors, raised by the assignment, point nowhere.)
				e.Position = kh.pending[0].pos
			}
			kh.ss.failBlock()
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
	if kh.all {
		return t.Shards, nil
	}
	shards, _ := cond.Select(t, hashes)
	return shards, nil
}

// evaluate asks the coordinator for the values of evals, in one round trip (the values of
// each group in one SELECT, so that each expression is evaluated exactly once), with the
// statement's parameters. A value goes to the placements as a literal of its
// own type, so that each placement assigns it to its column exactly as PostgreSQL would;
// a partition key is also coerced as that assignment does (type modifier, domain) for its
// hash.
func (ss *session) evaluate(ctx context.Context, groups [][]router.Eval, in *router.Input, prm *params) ([][]evaluated, error) {
	var queries []string
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		var sel, from strings.Builder
		for i, e := range g {
			if i > 0 {
				sel.WriteString(", ")
				from.WriteString(", ")
			}
			v := "v" + strconv.Itoa(i)
			// The value's type, schema-qualified whatever the search_path (the literal
			// goes to the workers, whose search_path may find another type first).
			typ := "(SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.typname)" +
				" FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace" +
				" WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.pg_typeof(" + v + "))"
			if e.ColumnTypeName != "" {
				// An anonymous record has no input function: it goes as the column's type.
				typ = "CASE WHEN pg_catalog.pg_typeof(" + v + ") OPERATOR(pg_catalog.=) 'pg_catalog.record'::pg_catalog.regtype THEN " +
					router.QuoteLiteral(e.ColumnTypeName) + " ELSE " + typ + " END"
			}
			if e.Unknown {
				sel.WriteString("pg_catalog.format('%L', " + v + ")")
			} else {
				sel.WriteString("pg_catalog.format('%L::%s', " + v + ", " + typ + ")")
			}
			if e.Key {
				sel.WriteString(", " + keyEvalExpr(e, v))
			}
			from.WriteString("(")
			from.Write(e.Expr.Render(nil, &router.Holes{In: in}))
			from.WriteString(") AS " + v)
		}
		queries = append(queries, "SELECT "+sel.String()+" FROM (SELECT "+from.String()+" OFFSET 0) pgshard_eval")
	}
	out := make([][]evaluated, len(groups))
	if len(queries) == 0 {
		return out, nil
	}
	c, err := ss.coordConn(ctx)
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
			e.Position = 0
			// A string constant the column's type cannot read: PostgreSQL points at it
			// (but not for a type modifier's errors).
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
			ss.failBlock()
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
		row := rows[r]
		r++
		col := 0
		out[gi] = make([]evaluated, len(g))
		for i, e := range g {
			out[gi][i].literal = string(row[col])
			col++
			if e.Key {
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
				out[gi][i].hash = h
			}
		}
	}
	return out, nil
}

// keyEvalExpr is the SQL for the canonical form of a partition-key value v assigned to
// its column: NULL for NULL; "-" followed by the value's and the column's type names
// (separated by "|") when PostgreSQL has no assignment coercion between them (a
// text value into an integer column: 42804, where an explicit cast would succeed).
func keyEvalExpr(e router.Eval, v string) string {
	src := "(SELECT CASE WHEN t.typtype OPERATOR(pg_catalog.=) 'd' THEN t.typbasetype ELSE t.oid END FROM pg_catalog.pg_type t WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.pg_typeof(" + v + "))"
	dst := strconv.FormatUint(uint64(e.KeyType), 10) + "::pg_catalog.oid"
	if e.Unknown {
		src = "705::pg_catalog.oid" // unknown
	}
	eq := " OPERATOR(pg_catalog.=) "
	assignable := "(" + src + eq + dst + " OR " + src + eq + "705::pg_catalog.oid OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c WHERE c.castsource" + eq + src +
		" AND c.casttarget" + eq + dst + " AND c.castcontext OPERATOR(pg_catalog.=) ANY ('{a,i}'::pg_catalog.\"char\"[])) OR (SELECT typcategory" + eq + "'S' FROM pg_catalog.pg_type WHERE oid" + eq + dst + "))"
	canon := strings.ReplaceAll(pghash.CanonicalExpr(e.KeyType), "$1", "("+strings.ReplaceAll(e.Assign, "$1", v)+")")
	return "CASE WHEN " + v + " IS NULL THEN NULL WHEN " + assignable + " THEN " + canon +
		" ELSE '-' OPERATOR(pg_catalog.||) pg_catalog.format_type(pg_catalog.pg_typeof(" + v + "), NULL) OPERATOR(pg_catalog.||) '|' OPERATOR(pg_catalog.||) pg_catalog.format_type(" +
		strconv.FormatUint(uint64(e.ColumnType), 10) + "::pg_catalog.oid, NULL) END"
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
