package router

import (
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/router/sqllex"
)

// SegKind is the kind of a template segment.
type SegKind uint8

// Segment kinds.
const (
	// SegText is text copied verbatim.
	SegText SegKind = iota
	// SegLit is the Index-th literal token of the statement text the plan runs with.
	SegLit
	// SegTable is the shard table that stands for table reference Index.
	SegTable
	// SegEval is the Index-th value the coordinator evaluated for this execution.
	SegEval
	// SegType is the type name of the Index-th partial result column (aggregate merges).
	SegType
	// SegShardName is the shard's own name for a constraint of the table (Text, not
	// quoted): the name with the shard suffix, as the shard tables' constraints and
	// indexes are named (ON CONFLICT ON CONSTRAINT).
	SegShardName
)

// Seg is one piece of a Template.
type Seg struct {
	Kind  SegKind
	Index int
	Text  string
	// Anchor and Delta locate the segment's start in the input text, for mapping error
	// positions back: the input offset is Toks[Anchor].Start + Delta (Anchor == len(Toks)
	// means the end of the text). Anchor is -1 for generated text.
	Anchor int32
	Delta  int32
}

// Template is SQL text with holes for literals, shard names and evaluated values. Templates
// are built once per statement shape and rendered per execution by concatenation, so the
// hot path neither parses nor deparses.
type Template []Seg

// Input is the concrete statement text a cached plan runs with.
type Input struct {
	Text string
	// Toks are the tokens of Text; Lits indexes the literal tokens among them.
	Toks []sqllex.Token
	Lits []int32
	// Mode is the scanner mode Text was read in (the session's
	// standard_conforming_strings when the plan was made).
	Mode sqllex.Mode
	// portable are the literals whose text reads differently in another mode, by
	// literal number, as templates render them (sqllex.Portable); nil for most texts.
	portable map[int]string

	// omit are byte ranges of Text that templates built from it leave out (planning
	// only): the schema qualifiers of column references to distributed tables, which
	// stop naming anything once the table is renamed to a shard or temporary table.
	omit [][2]int
}

// Lit returns the text of the i-th literal token.
func (in *Input) Lit(i int) string {
	t := in.Toks[in.Lits[i]]
	return in.Text[t.Start:t.End]
}

// litSQL returns the i-th literal as templates render it: its text, in a form that
// reads the same whatever standard_conforming_strings the server has.
func (in *Input) litSQL(i int) string {
	if s, ok := in.portable[i]; ok {
		return s
	}
	return in.Lit(i)
}

// LitToken returns the i-th literal token.
func (in *Input) LitToken(i int) sqllex.Token { return in.Toks[in.Lits[i]] }

// Holes provides the values of a template's holes at render time.
type Holes struct {
	In     *Input
	Tables []string // rendered (quoted, qualified) shard names by table reference
	Evals  []string // evaluated values as SQL literals
	Types  []string // type names of partial result columns
	Shard  int64    // the shard the statement is rendered for (SegShardName)
}

// Render appends the rendered text to dst.
func (t Template) Render(dst []byte, h *Holes) []byte {
	for i := range t {
		s := &t[i]
		switch s.Kind {
		case SegText:
			dst = append(dst, s.Text...)
		case SegLit:
			dst = append(dst, h.In.litSQL(s.Index)...)
		case SegTable:
			dst = append(dst, h.Tables[s.Index]...)
		case SegEval:
			dst = append(dst, h.Evals[s.Index]...)
		case SegType:
			dst = append(dst, h.Types[s.Index]...)
		case SegShardName:
			dst = append(dst, QuoteIdent(s.Text+"_"+strconv.FormatInt(h.Shard, 10))...)
		}
	}
	return dst
}

// String renders t with h (for tests and EXPLAIN).
func (t Template) String(h *Holes) string { return string(t.Render(nil, h)) }

// MapPosition maps a 1-based character position in the text t renders with h back to a
// 1-based character position in the input text, or 0 if it falls in generated text.
func (t Template) MapPosition(pos int32, h *Holes) int32 {
	if pos <= 0 {
		return 0
	}
	out := 0   // byte offset in the rendered text
	chars := 0 // characters before out
	for i := range t {
		s := &t[i]
		var piece string
		switch s.Kind {
		case SegText:
			piece = s.Text
		case SegLit:
			piece = h.In.litSQL(s.Index)
		case SegTable:
			piece = h.Tables[s.Index]
		case SegEval:
			piece = h.Evals[s.Index]
		case SegType:
			piece = h.Types[s.Index]
		case SegShardName:
			piece = QuoteIdent(s.Text + "_" + strconv.FormatInt(h.Shard, 10))
		}
		n := charCount(piece)
		if int32(chars+n) >= pos {
			if s.Anchor < 0 || s.Kind != SegText && s.Kind != SegLit {
				return 0
			}
			// Offset within the segment, in bytes.
			within := byteOffset(piece, int(pos)-1-chars)
			if s.Kind == SegLit && len(piece) != len(h.In.Lit(s.Index)) {
				within = 0 // a literal rewritten to be portable: its start
			}
			var start int
			if int(s.Anchor) >= len(h.In.Toks) {
				start = len(h.In.Text)
			} else {
				start = int(h.In.Toks[s.Anchor].Start)
			}
			inOff := start + int(s.Delta) + within
			if inOff < 0 || inOff > len(h.In.Text) {
				return 0
			}
			return int32(charCount(h.In.Text[:inOff]) + 1)
		}
		chars += n
		out += len(piece)
	}
	return 0
}

func charCount(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i]&0xC0 != 0x80 {
			n++
		}
	}
	return n
}

func byteOffset(s string, chars int) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i]&0xC0 != 0x80 {
			if n == chars {
				return i
			}
			n++
		}
	}
	return len(s)
}

// builder assembles a template from ranges of the input text and generated pieces.
type builder struct {
	in     *Input
	litIdx map[int32]int // token index -> literal number
	segs   Template
}

func newBuilder(in *Input, litIdx map[int32]int) *builder {
	return &builder{in: in, litIdx: litIdx}
}

// anchor returns the token anchor for byte offset off of the input.
func (b *builder) anchor(off int) (int32, int32) {
	toks := b.in.Toks
	lo, hi := 0, len(toks)
	for lo < hi {
		m := (lo + hi) / 2
		if int(toks[m].Start) < off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	// toks[lo] is the first token starting at or after off. If off is inside the previous
	// token (it can be, for generated splits), anchor there instead.
	if lo > 0 && int(toks[lo-1].End) > off {
		lo--
	}
	if lo >= len(toks) {
		return int32(len(toks)), int32(off - len(b.in.Text))
	}
	return int32(lo), int32(off - int(toks[lo].Start))
}

// text appends input bytes [from, to), turning literal tokens into SegLit holes and
// leaving out the input's omitted ranges.
func (b *builder) text(from, to int) {
	for _, o := range b.in.omit {
		if o[0] >= from && o[1] <= to {
			b.text1(from, o[0])
			from = o[1]
		}
	}
	b.text1(from, to)
}

func (b *builder) text1(from, to int) {
	if from >= to {
		return
	}
	toks := b.in.Toks
	// First token ending after from.
	lo, hi := 0, len(toks)
	for lo < hi {
		m := (lo + hi) / 2
		if int(toks[m].End) <= from {
			lo = m + 1
		} else {
			hi = m
		}
	}
	pos := from
	for i := lo; i < len(toks) && int(toks[i].Start) < to; i++ {
		t := toks[i]
		if !t.Literal() {
			continue
		}
		n, ok := b.litIdx[int32(i)]
		if !ok || int(t.Start) < from || int(t.End) > to {
			continue
		}
		b.raw(pos, int(t.Start))
		a, d := b.anchor(int(t.Start))
		b.segs = append(b.segs, Seg{Kind: SegLit, Index: n, Anchor: a, Delta: d})
		pos = int(t.End)
	}
	b.raw(pos, to)
}

func (b *builder) raw(from, to int) {
	if from >= to {
		return
	}
	a, d := b.anchor(from)
	if n := len(b.segs); n > 0 && b.segs[n-1].Kind == SegText && b.segs[n-1].Anchor >= 0 {
		// Merge with the previous text segment when contiguous.
		prev := &b.segs[n-1]
		if b.endOf(prev) == from {
			prev.Text += b.in.Text[from:to]
			return
		}
	}
	b.segs = append(b.segs, Seg{Kind: SegText, Text: b.in.Text[from:to], Anchor: a, Delta: d})
}

// endOf returns the input offset where a verbatim text segment ends.
func (b *builder) endOf(s *Seg) int {
	var start int
	if int(s.Anchor) >= len(b.in.Toks) {
		start = len(b.in.Text)
	} else {
		start = int(b.in.Toks[s.Anchor].Start)
	}
	return start + int(s.Delta) + len(s.Text)
}

// gen appends generated text.
func (b *builder) gen(s string) {
	if s == "" {
		return
	}
	if n := len(b.segs); n > 0 && b.segs[n-1].Kind == SegText && b.segs[n-1].Anchor < 0 {
		b.segs[n-1].Text += s
		return
	}
	b.segs = append(b.segs, Seg{Kind: SegText, Text: s, Anchor: -1})
}

func (b *builder) hole(k SegKind, i int) {
	b.segs = append(b.segs, Seg{Kind: k, Index: i, Anchor: -1})
}

func (b *builder) done() Template {
	t := b.segs
	b.segs = nil
	return t
}

// QuoteIdent quotes an identifier unconditionally, which is always correct for a name
// taken from the catalog.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// QuoteLiteral quotes s as an SQL string literal that means the same whatever
// standard_conforming_strings is set to.
func QuoteLiteral(s string) string {
	if !strings.ContainsAny(s, `'\`) {
		return "'" + s + "'"
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `''`)
	return "E'" + r.Replace(s) + "'"
}

// ShardName is the qualified, quoted name of a shard table.
func ShardName(schema, table string, shardID int64) string {
	return QuoteIdent(schema) + "." + QuoteIdent(table+"_"+strconv.FormatInt(shardID, 10))
}
