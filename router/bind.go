package router

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/pghash"
	"github.com/pgshard/pgshard/router/sqllex"
)

// Binding a plan's partition-key values to one execution's inputs is pure, like planning:
// Bind hashes every value it can read with certainty (pghash, PostgreSQL's own hash
// functions) and hands back, separately, the values only the coordinator can read — an
// expression to evaluate, text of a type whose input function depends on the session's
// settings (DateStyle, TimeZone, ...), a value that a type modifier or an assignment
// coercion may change. The proxy asks the coordinator for those in one round trip and
// combines; the golden plan tests print Bind's choice for constants.

// oidUnknown is the type of an untyped parameter.
const oidUnknown = 705

// Params are the bind parameters of one execution (extended protocol), as the client
// sent them.
type Params struct {
	Values  [][]byte
	Formats []int16  // per parameter, or one for all, or none (all text)
	OIDs    []uint32 // declared types; 0 = unspecified
}

// Format returns the format code of parameter i (0-based): 0 text, 1 binary.
func (p *Params) Format(i int) int16 {
	switch {
	case p == nil || len(p.Formats) == 0:
		return 0
	case len(p.Formats) == 1:
		return p.Formats[0]
	case i < len(p.Formats):
		return p.Formats[i]
	}
	return 0
}

// BoundKind says how far binding got with one key value.
type BoundKind uint8

// Bound kinds.
const (
	// Hashed: Bound.Hash is the value's hash (0 for NULL: pg_shard's rule).
	Hashed BoundKind = iota
	// AnyShard: the value is compared in another type than the key's (a varchar key with
	// a character parameter compares as character, ignoring trailing spaces; an integer
	// key with a numeric one, as numeric), so values equal to it may lie on any shard.
	AnyShard
	// NeedsEval: the value is the coordinator-evaluated expression Bound.Eval (a SegEval
	// hole of the plan); its hash comes with its evaluation.
	NeedsEval
	// NeedsRead: only the coordinator can read the value: Bound.Read says how.
	NeedsRead
)

// Bound is one partition-key value bound to an execution's inputs: its hash, or what the
// coordinator must do before it is known.
type Bound struct {
	Kind BoundKind
	Hash int32
	Eval int  // NeedsEval: the index of the Eval among the plan's evaluated values
	Read Read // NeedsRead
}

// Read is a key value the coordinator reads for the proxy, with the session's settings,
// exactly as the statement would read it; its answer is the value's canonical form of
// Type (pghash.CanonicalExpr), which pghash.HashCanonical hashes.
type Read struct {
	// Type is the hash type of the value's canonical form: the key's type, or for a
	// comparison the type the value is compared as.
	Type uint32
	// Value is the value in the format Format (0 text, 1 binary) of type OID (0: text of
	// a type PostgreSQL infers from the expression).
	Value  []byte
	OID    uint32
	Format int16
	// Assign is the partition column's assignment coercion (SQL over $1) for a value
	// assigned to it (INSERT, COPY): its type modifier or type change applies before
	// the hash; "" for none.
	Assign string
	// Pos is the value's 1-based character position in the statement, for the
	// coordinator's error about it; 0 when it has none.
	Pos int32
}

// Expr returns the SQL expression the coordinator evaluates to read the value given as
// param (a parameter reference such as "$3"): its canonical form, after the column's
// assignment coercion.
func (r *Read) Expr(param string) string {
	if r.Assign != "" {
		param = "(" + strings.ReplaceAll(r.Assign, "$1", param) + ")"
	}
	return strings.ReplaceAll(pghash.CanonicalExpr(r.Type), "$1", param)
}

// BinaryParamError is a binary key parameter that its type's receive function refuses.
// Its message is the generic one; the proxy words it as PostgreSQL does (too few bytes,
// bytes left over, text that is not valid UTF-8), which needs COPY's encoding check.
type BinaryParamError struct {
	Param int    // 1-based parameter number
	Type  uint32 // the type the parameter is received as
	Value []byte
}

func (e *BinaryParamError) Error() string {
	return "invalid binary value for parameter $" + strconv.Itoa(e.Param) + " of type " + strconv.FormatUint(uint64(e.Type), 10)
}

// A Binder binds the partition-key values of one execution, one at a time: Bind's step,
// for callers whose values come one by one (the rows of an INSERT, each with its own
// evaluated values; COPY's text fields).
type Binder struct {
	In     *Input  // the statement's constants
	Params *Params // nil for a simple query
	// Column is the partition column values are assigned to (INSERT, COPY), whose type
	// modifier applies to them before they are hashed; nil for comparisons.
	Column *metadata.Column
	// posOff and posChars remember how many characters precede byte posOff of the
	// statement, so that the positions of a long IN list's values cost one pass.
	posOff, posChars int
}

// Binding is Bind's answer for a list of key values.
type Binding struct {
	// Hashes has one hash per value, in order; 0 for the values in Pending until the
	// caller fills them in.
	Hashes []int32
	// AnyShard is set when a compared value cannot select shards: every shard is needed.
	AnyShard bool
	// Pending are the values still needing the coordinator.
	Pending []Pending
}

// Pending is a value of a Binding that needs the coordinator: Index is its position in
// Hashes.
type Pending struct {
	Index int
	Bound
}

// Bind binds vals (a Cond's Values, or INSERT rows' keys) to the statement's constants in
// and the parameters prm, with no I/O. col is the partition column the values are
// assigned to, nil for comparisons. The error is PostgreSQL's for a parameter the
// statement names but the client did not send, or a *BinaryParamError.
func Bind(vals []Value, in *Input, prm *Params, col *metadata.Column) (Binding, error) {
	b := Binder{In: in, Params: prm, Column: col}
	bd := Binding{Hashes: make([]int32, len(vals))}
	for i, v := range vals {
		bv, err := b.Value(v)
		if err != nil {
			return Binding{}, err
		}
		switch bv.Kind {
		case Hashed:
			bd.Hashes[i] = bv.Hash
		case AnyShard:
			bd.AnyShard = true
		default:
			bd.Pending = append(bd.Pending, Pending{Index: i, Bound: bv})
		}
	}
	return bd, nil
}

// assigning reports whether values assigned to the key need the column's modifier.
func (b *Binder) assigning() bool { return b.Column != nil && b.Column.HasTypmod() }

// charPos is the 1-based character position of byte off of the statement, for values met
// in text order.
func (b *Binder) charPos(off int) int32 {
	text := b.In.Text
	if off < b.posOff {
		b.posOff, b.posChars = 0, 0
	}
	for ; b.posOff < off && b.posOff < len(text); b.posOff++ {
		if text[b.posOff]&0xC0 != 0x80 {
			b.posChars++
		}
	}
	return int32(b.posChars + 1)
}

// hashed is the Bound of text of type typ: its hash when pghash reads it with certainty,
// else a read by the coordinator.
func hashed(typ uint32, text []byte, pos int32) Bound {
	if h, ok := pghash.HashText(typ, text); ok {
		return Bound{Hash: h}
	}
	return Bound{Kind: NeedsRead, Read: Read{Type: typ, Value: text, Pos: pos}}
}

// Value binds one key value.
func (b *Binder) Value(v Value) (Bound, error) {
	switch v.Kind {
	case ValNull:
		return Bound{}, nil
	case ValEval:
		return Bound{Kind: NeedsEval, Eval: v.Index}, nil
	case ValLit:
		return b.literal(v), nil
	case ValParam:
		return b.param(v)
	}
	return hashed(v.Type, nil, 0), nil
}

// literal binds a constant of the statement.
func (b *Binder) literal(v Value) Bound {
	tok := b.In.LitToken(v.Index)
	pos := b.charPos(int(tok.Start))
	assign := v.Assign && b.assigning()
	var text []byte
	if tok.Kind == sqllex.String {
		s, _ := sqllex.StringValue(b.In.Text, tok)
		text = []byte(s)
	} else {
		text = []byte(b.In.Text[tok.Start:tok.End])
		if v.Neg {
			text = append([]byte{'-'}, text...)
		}
		if v.Assign && b.Column != nil {
			// A number constant has its own type (integer, bigint or numeric), which
			// INSERT then assigns to the column (99999999999 into an integer column:
			// "integer out of range").
			if h, ok := pghash.HashText(v.Type, text); ok && !assign {
				return Bound{Hash: h}
			}
			return Bound{Kind: NeedsRead, Read: Read{Type: b.Column.HashType, Value: text, Pos: pos,
				Assign: b.Column.Assign("$1"), OID: numberType(text)}}
		}
	}
	if assign {
		return b.assigned(text, 0, 0, pos)
	}
	return hashed(v.Type, text, pos)
}

// param binds a bind parameter.
func (b *Binder) param(v Value) (Bound, error) {
	prm := b.Params
	i := v.Index - 1
	if prm == nil || i < 0 || i >= len(prm.Values) {
		return Bound{}, pgerr.New(pgerr.UndefinedObject, "there is no parameter $%d", v.Index)
	}
	val := prm.Values[i]
	if val == nil {
		return Bound{}, nil // NULL: matches nothing; any shard answers
	}
	typ := v.Type
	var oid uint32
	if i < len(prm.OIDs) {
		oid = prm.OIDs[i]
	}
	otherType := oid != 0 && oid != oidUnknown && hashFamily(oid) != hashFamily(typ)
	if (v.Assign && b.assigning()) || (v.Assign && b.Column != nil && otherType) {
		// Assigned to the key: the coordinator reads the value as its own type and
		// coerces it as INSERT does (a numeric 5.0 into an integer key is 5).
		return b.assigned(val, oid, prm.Format(i), 0), nil
	}
	if otherType && !comparesAsKey(oid, typ) {
		return Bound{Kind: AnyShard}, nil
	}
	if !otherType && oid != 0 && oid != oidUnknown {
		typ = oid
	}
	if prm.Format(i) == 1 {
		h, ok := pghash.HashBinary(typ, val)
		if !ok {
			return Bound{}, &BinaryParamError{Param: v.Index, Type: typ, Value: val}
		}
		return Bound{Hash: h}, nil
	}
	return hashed(typ, val, 0), nil
}

// Text binds a value given in text form (a COPY field, a source row's key); a value
// assigned to the partition column (b.Column) is read as the column's type, modifier
// included, as COPY reads it. A value left to the coordinator is copied: text may be
// the caller's buffer.
func (b *Binder) Text(typ uint32, text []byte) Bound {
	if b.assigning() {
		return b.assigned(text, 0, 0, 0)
	}
	if h, ok := pghash.HashText(typ, text); ok {
		return Bound{Hash: h}
	}
	return Bound{Kind: NeedsRead, Read: Read{Type: typ, Value: append([]byte(nil), text...)}}
}

// assigned binds a value assigned to the partition column, whose type modifier may
// change it (char(n), varchar(n), numeric(p,s), timestamp(p), ...): natively when the
// modifier cannot, else by the coordinator, which applies it as INSERT does.
func (b *Binder) assigned(text []byte, oid uint32, format int16, pos int32) Bound {
	if format == 0 {
		if h, ok := assignedFast(b.Column, oid, text); ok {
			return Bound{Hash: h}
		}
	}
	return Bound{Kind: NeedsRead, Read: Read{Type: b.Column.HashType, Value: append([]byte(nil), text...), Pos: pos,
		Assign: b.Column.Assign("$1"), OID: oid, Format: format}}
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

// EvalQuery is the query with which the coordinator evaluates one group of a plan's Evals
// (an INSERT row's, or the statement's), each expression exactly once, with the
// execution's parameters; "" for an empty group. Its one row holds, for each value, the
// value as a typed SQL literal, and for a partition key after it, the key's canonical form
// as keyEvalExpr gives it. A value goes to the placements as a literal of its own type, so
// that each placement assigns it to its column exactly as PostgreSQL would.
func EvalQuery(g []Eval, in *Input) string {
	if len(g) == 0 {
		return ""
	}
	var sel, from strings.Builder
	for i, e := range g {
		if i > 0 {
			sel.WriteString(", ")
			from.WriteString(", ")
		}
		v := "v" + strconv.Itoa(i)
		// The value's type, schema-qualified whatever the search_path (the literal goes
		// to the workers, whose search_path may find another type first).
		typ := "(SELECT pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.typname)" +
			" FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace" +
			" WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.pg_typeof(" + v + "))"
		if e.ColumnTypeName != "" {
			// An anonymous record has no input function: it goes as the column's type.
			typ = "CASE WHEN pg_catalog.pg_typeof(" + v + ") OPERATOR(pg_catalog.=) 'pg_catalog.record'::pg_catalog.regtype THEN " +
				QuoteLiteral(e.ColumnTypeName) + " ELSE " + typ + " END"
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
		from.Write(e.Expr.Render(nil, &Holes{In: in}))
		from.WriteString(") AS " + v)
	}
	return "SELECT " + sel.String() + " FROM (SELECT " + from.String() + " OFFSET 0) pgshard_eval"
}

// keyEvalExpr is the SQL for the canonical form of a partition-key value v assigned to
// its column (coerced as that assignment does: type modifier, domain): NULL for NULL;
// "-" followed by the value's and the column's type names (separated by "|") when
// PostgreSQL has no assignment coercion between them (a text value into an integer
// column: 42804, where an explicit cast would succeed).
func keyEvalExpr(e Eval, v string) string {
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
