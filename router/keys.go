package router

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/router/pghash"
	"github.com/pgshard/pgshard/router/sqllex"
)

// typeOIDs maps the type names the parser produces (the last element of a TypeName) to the
// hashable types' OIDs.
var typeOIDs = map[string]uint32{
	"int2": pghash.OIDInt2, "int4": pghash.OIDInt4, "int8": pghash.OIDInt8,
	"smallint": pghash.OIDInt2, "integer": pghash.OIDInt4, "int": pghash.OIDInt4, "bigint": pghash.OIDInt8,
	"text": pghash.OIDText, "varchar": pghash.OIDVarchar, "bpchar": pghash.OIDBPChar, "name": pghash.OIDName,
	"date": pghash.OIDDate, "timestamp": pghash.OIDTimestamp, "timestamptz": pghash.OIDTimestamptz,
	"time": pghash.OIDTime, "numeric": pghash.OIDNumeric, "float4": pghash.OIDFloat4, "float8": pghash.OIDFloat8,
	"uuid": pghash.OIDUUID, "bool": pghash.OIDBool, "bytea": pghash.OIDBytea, "oid": pghash.OIDOid,
	"char": pghash.OIDChar,
}

// hashFamily groups types whose hash functions agree on equal values, so a value of one
// may be hashed to find rows of the other (PostgreSQL's cross-type hash opfamilies).
func hashFamily(oid uint32) uint32 {
	switch oid {
	case pghash.OIDInt2, pghash.OIDInt4, pghash.OIDInt8:
		return pghash.OIDInt8
	case pghash.OIDVarchar, pghash.OIDText:
		return pghash.OIDText
	case pghash.OIDFloat4, pghash.OIDFloat8:
		return pghash.OIDFloat8
	}
	return oid
}

// castType returns the OID of a cast's target type if it is a plain hashable type (no
// type modifiers, no array bounds), else 0.
func castType(tn *pg_query.TypeName) uint32 {
	if tn == nil || len(tn.Typmods) > 0 || len(tn.ArrayBounds) > 0 || len(tn.Names) == 0 {
		return 0
	}
	s, ok := unwrap(tn.Names[len(tn.Names)-1]).(*pg_query.String)
	if !ok {
		return 0
	}
	return typeOIDs[s.Sval]
}

// isKeyColumn reports whether n is a reference to the partition column of t, which is
// referred to by alias (or its own name when it has none).
func isKeyColumn(n *pg_query.Node, t *metadata.Table, alias string) bool {
	cr, ok := unwrap(n).(*pg_query.ColumnRef)
	if !ok {
		return false
	}
	var names []string
	for _, f := range cr.Fields {
		s, ok := unwrap(f).(*pg_query.String)
		if !ok {
			return false
		}
		names = append(names, s.Sval)
	}
	switch len(names) {
	case 1:
		return names[0] == t.Key
	case 2:
		return names[0] == alias && names[1] == t.Key
	case 3:
		return names[0] == t.Schema && names[1] == t.Name && names[2] == t.Key
	}
	return false
}

// keyValue interprets n as a value compared with (or assigned to) a partition column of
// hash type keyType. ok is false when the value is not a constant or parameter the router
// can hash on PostgreSQL's terms; the statement then goes to every shard.
func (p *planner) keyValue(n *pg_query.Node, keyType uint32) (Value, bool) {
	switch v := unwrap(n).(type) {
	case *pg_query.A_Const:
		if v.Isnull {
			return Value{Kind: ValNull, Type: keyType}, true
		}
		return p.literalValue(v, keyType, 0)
	case *pg_query.TypeCast:
		ct := castType(v.TypeName)
		if ct == 0 || hashFamily(ct) != hashFamily(keyType) {
			return Value{}, false
		}
		switch inner := unwrap(v.Arg).(type) {
		case *pg_query.A_Const:
			if inner.Isnull {
				return Value{Kind: ValNull, Type: keyType}, true
			}
			return p.literalValue(inner, keyType, ct)
		case *pg_query.ParamRef:
			return Value{Kind: ValParam, Index: int(inner.Number), Type: keyType}, true
		}
	case *pg_query.ParamRef:
		return Value{Kind: ValParam, Index: int(v.Number), Type: keyType}, true
	}
	return Value{}, false
}

// literalValue is keyValue for a constant. cast is the type of an explicit cast around it
// (0 for none). A string constant is of unknown type and takes the column's type, as in
// PostgreSQL; a numeric constant only counts where PostgreSQL would compare it as the
// column's type.
func (p *planner) literalValue(c *pg_query.A_Const, keyType, cast uint32) (Value, bool) {
	ti := p.constToken(c.Location)
	if ti < 0 {
		return Value{}, false
	}
	neg := ti > 0 && int(p.in.Toks[ti].Start) != int(c.Location)
	v := Value{Kind: ValLit, Index: p.litIdx[int32(ti)], Neg: neg, Type: keyType}
	if cast != 0 {
		// An explicitly typed value is hashed as its own type, which agrees with the
		// column's hash on equal values (same hash family) and accepts values outside the
		// column type's range, which then simply match nothing.
		v.Type = cast
	}
	tok := p.in.Toks[ti]
	switch tok.Kind {
	case sqllex.String:
		if neg {
			return Value{}, false
		}
		if _, ok := sqllex.StringValue(p.in.Text, tok); !ok {
			return Value{}, false
		}
		return v, true
	case sqllex.Number:
		if cast != 0 {
			// 5::int8 style casts of numbers: the cast type decides.
			keyType = cast
		}
		integer := true
		for _, ch := range p.in.Text[tok.Start:tok.End] {
			if ch < '0' || ch > '9' {
				integer = false
			}
		}
		switch hashFamily(keyType) {
		case pghash.OIDInt8:
			// An integer constant is int4 or int8; comparing it with any integer column
			// uses the integer hash family, so hash it as int8.
			v.Type = pghash.OIDInt8
			return v, integer
		case pghash.OIDOid:
			return v, integer
		case pghash.OIDNumeric, pghash.OIDFloat8:
			return v, true
		}
	}
	return Value{}, false
}

// cond derives a shard-pruning condition from a WHERE clause: equalities between the
// partition column and constants or parameters (=, IN, = ANY (ARRAY[...]), IS NULL), under
// AND and OR. Anything else keeps every shard.
func (p *planner) cond(n *pg_query.Node, t *metadata.Table, alias string) *Cond {
	all := &Cond{Kind: CondAll}
	kc := t.KeyColumn()
	if n == nil || kc == nil {
		return all
	}
	keyType := kc.HashType
	eq := func(valNode *pg_query.Node) *Cond {
		v, ok := p.keyValue(valNode, keyType)
		if !ok {
			return all
		}
		if v.Kind == ValNull {
			// "key = NULL" is never true.
			return &Cond{Kind: CondNone}
		}
		return &Cond{Kind: CondEq, Val: v}
	}
	switch e := unwrap(n).(type) {
	case *pg_query.BoolExpr:
		var kind CondKind
		switch e.Boolop {
		case pg_query.BoolExprType_AND_EXPR:
			kind = CondAnd
		case pg_query.BoolExprType_OR_EXPR:
			kind = CondOr
		default:
			return all
		}
		c := &Cond{Kind: kind}
		for _, a := range e.Args {
			c.Args = append(c.Args, p.cond(a, t, alias))
		}
		return simplify(c)
	case *pg_query.A_Expr:
		if opName(e.Name) != "=" {
			return all
		}
		switch e.Kind {
		case pg_query.A_Expr_Kind_AEXPR_OP:
			if isKeyColumn(e.Lexpr, t, alias) {
				return eq(e.Rexpr)
			}
			if isKeyColumn(e.Rexpr, t, alias) {
				return eq(e.Lexpr)
			}
		case pg_query.A_Expr_Kind_AEXPR_IN:
			l, ok := unwrap(e.Rexpr).(*pg_query.List)
			if !ok || !isKeyColumn(e.Lexpr, t, alias) {
				return all
			}
			c := &Cond{Kind: CondOr}
			for _, it := range l.Items {
				c.Args = append(c.Args, eq(it))
			}
			return simplify(c)
		case pg_query.A_Expr_Kind_AEXPR_OP_ANY:
			arr, ok := unwrap(e.Rexpr).(*pg_query.A_ArrayExpr)
			if !ok || !isKeyColumn(e.Lexpr, t, alias) {
				return all
			}
			c := &Cond{Kind: CondOr}
			for _, it := range arr.Elements {
				c.Args = append(c.Args, eq(it))
			}
			return simplify(c)
		}
	case *pg_query.NullTest:
		if e.Nulltesttype == pg_query.NullTestType_IS_NULL && isKeyColumn(e.Arg, t, alias) {
			// pg_shard's rule: NULL keys hash to token 0.
			return &Cond{Kind: CondEq, Val: Value{Kind: ValNull, Type: keyType}}
		}
	}
	return all
}

func opName(names []*pg_query.Node) string {
	if len(names) == 0 {
		return ""
	}
	if s, ok := unwrap(names[len(names)-1]).(*pg_query.String); ok {
		return s.Sval
	}
	return ""
}

// simplify folds CondAll and CondNone through AND and OR.
func simplify(c *Cond) *Cond {
	var args []*Cond
	for _, a := range c.Args {
		switch {
		case c.Kind == CondAnd && a.Kind == CondAll, c.Kind == CondOr && a.Kind == CondNone:
			continue
		case c.Kind == CondAnd && a.Kind == CondNone:
			return a
		case c.Kind == CondOr && a.Kind == CondAll:
			return a
		}
		args = append(args, a)
	}
	switch len(args) {
	case 0:
		if c.Kind == CondAnd {
			return &Cond{Kind: CondAll}
		}
		return &Cond{Kind: CondNone}
	case 1:
		return args[0]
	}
	c.Args = args
	return c
}

// Values returns the partition-key values a condition needs hashed, in a stable order;
// Select takes their hashes in the same order.
func (c *Cond) Values(dst []Value) []Value {
	switch c.Kind {
	case CondEq:
		return append(dst, c.Val)
	case CondAnd, CondOr:
		for _, a := range c.Args {
			dst = a.Values(dst)
		}
	}
	return dst
}

// Select returns the shards of t the condition keeps, in shard order, given the hashes of
// its Values (in the same order). all reports that every shard is kept.
func (c *Cond) Select(t *metadata.Table, hashes []int32) (shards []*metadata.Shard, all bool) {
	if c == nil || c.Kind == CondAll {
		return t.Shards, true
	}
	i := 0
	set := c.eval(t, hashes, &i)
	if set == nil {
		return t.Shards, true
	}
	out := make([]*metadata.Shard, 0, len(set))
	for _, s := range t.Shards {
		if set[s.ID] {
			out = append(out, s)
		}
	}
	return out, false
}

// eval returns the kept shard ids (nil means all shards).
func (c *Cond) eval(t *metadata.Table, hashes []int32, i *int) map[int64]bool {
	switch c.Kind {
	case CondAll:
		return nil
	case CondNone:
		return map[int64]bool{}
	case CondEq:
		h := hashes[*i]
		*i++
		out := map[int64]bool{}
		for _, s := range t.ShardsFor(h) {
			out[s.ID] = true
		}
		return out
	case CondAnd:
		var acc map[int64]bool
		for _, a := range c.Args {
			s := a.eval(t, hashes, i)
			if s == nil {
				continue
			}
			if acc == nil {
				acc = s
				continue
			}
			for id := range acc {
				if !s[id] {
					delete(acc, id)
				}
			}
		}
		return acc
	case CondOr:
		acc := map[int64]bool{}
		allShards := false
		for _, a := range c.Args {
			s := a.eval(t, hashes, i)
			if s == nil {
				allShards = true
				continue
			}
			for id := range s {
				acc[id] = true
			}
		}
		if allShards {
			return nil
		}
		return acc
	}
	return nil
}
