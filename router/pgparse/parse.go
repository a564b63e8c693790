// Package pgparse runs PostgreSQL's raw parser (pg_query_go, in C through cgo) on client
// statements without letting one statement take the process down.
//
// The raw parser itself is safe: bison keeps its stack on the heap and gives up with
// "memory exhausted" beyond 10,000 entries. But left-recursive productions (a + b + c ...,
// casts, IS NULL, COLLATE, UNION, JOIN chains) build trees as deep as the statement is long
// without using that stack, and pg_query then turns the tree into protobuf with recursive C
// functions that never check their depth (stack_base_ptr is unset in libpg_query, so
// check_stack_depth never fires). On a thread with an 8 MB stack, SELECT 1+1+...+1 with
// about 25,000 terms overflows it: SIGSEGV in C, which no Go code can recover from.
//
// Parse therefore bounds the recursion before calling C. A scan of the tokens computes
// Bound, an upper bound of the parse tree's depth (every level of a parse tree needs at least
// one token; list elements are siblings). Statements whose bound is small (nearly all) are
// parsed on the calling thread; larger ones on a thread of their own with a stack big
// enough for that bound; statements whose bound is beyond what any PostgreSQL accepts with
// its default max_stack_depth get PostgreSQL's 54001 without being parsed. The protobuf
// decoding in Go is given a recursion limit above anything PostgreSQL accepts, and a tree
// beyond it also gets 54001.
package pgparse

import (
	"errors"
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
	"github.com/pganalyze/pg_query_go/v5/parser"
	"google.golang.org/protobuf/proto"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/sqllex"
)

// Limits. PostgreSQL 15 with its default max_stack_depth (2MB) refuses every expression
// nested deeper than about 13,000 levels (casts: 12,900; IS NULL and COLLATE chains: 10,700;
// UNION ALL: 7,100; JOIN: 6,200; 1+1+...: 4,000), which is a Bound of at most 26,000; the
// limits here sit above that, so pgshard refuses nothing PostgreSQL would run.
const (
	// FastBound is the largest Bound parsed on the calling goroutine's thread. A parse
	// tree is at most about 5.3 protobuf messages deep per unit of Bound
	// (TestBoundCoversDepth), and pg_query's output functions take about 160 bytes of C
	// stack per message (SELECT 1+1+... overflowed 8 MB at about 50,000 messages): a
	// tree within FastBound needs under 1 MB, and threads have at least 2 MB.
	FastBound = 1000
	// MaxBound is the largest Bound parsed at all.
	MaxBound = 50000
	// bigStack is the stack of the parser thread for statements above FastBound: about
	// five times what MaxBound needs.
	bigStack = 256 << 20
	// recursionLimit bounds the nesting of protobuf messages decoded in Go (a level of
	// the tree is two messages, a Node wrapper and its node, and a token of Bound stands
	// for at most a few levels).
	recursionLimit = 6 * MaxBound
	// bisonMaxDepth is the size of the parser's stack (bison's YYMAXDEPTH): every
	// bracket that is open holds at least one entry.
	bisonMaxDepth = 10000
)

// bigSlots bounds the number of parser threads with a big stack running at once.
var bigSlots = make(chan struct{}, 2)

// ErrTooDeep is the error of statements nested too deeply: PostgreSQL's own, with its hint
// (for its default max_stack_depth, the setting pgshard's limits are measured against).
var ErrTooDeep = &pgerr.Error{
	Code:    "54001",
	Message: "stack depth limit exceeded",
	Hint: `Increase the configuration parameter "max_stack_depth" (currently 2048kB), ` +
		`after ensuring the platform's stack depth limit is adequate.`,
}

// Parse parses text, whose tokens (sqllex.ScanMode with mode) are toks, as PostgreSQL
// parses it in a session whose settings are mode. It returns a *pgerr.Error for
// statements too deep to parse (54001) or that exhaust the parser's stack (42601, as
// PostgreSQL reports them), and a *parser.Error for other syntax errors.
func Parse(text string, toks []sqllex.Token, mode sqllex.Mode) (*pg_query.ParseResult, error) {
	var (
		pb  []byte
		err error
	)
	bound, nest := len(text), 0
	if bound > FastBound {
		bound, nest = Bound(text, toks)
	}
	switch {
	case bound <= FastBound:
		pb, err = parseToProtobuf(text, mode)
	case bound > MaxBound && nest <= bisonMaxDepth:
		return nil, ErrTooDeep
	default:
		// (Brackets nested deeper than bison's stack fail in the parser, before any
		// recursion: they get the parser's own error, as from PostgreSQL.)
		bigSlots <- struct{}{}
		serr := onBigStack(bigStack, func() { pb, err = parseToProtobuf(text, mode) })
		<-bigSlots
		if serr != nil {
			return nil, &pgerr.Error{Code: pgerr.OutOfMemory, Message: "out of memory",
				Detail: serr.Error()}
		}
	}
	if err != nil {
		var perr *parser.Error
		if errors.As(err, &perr) && strings.HasPrefix(perr.Message, "memory exhausted") {
			return nil, &pgerr.Error{Code: pgerr.SyntaxError, Message: perr.Message,
				Position: charPos(text, perr.Cursorpos)}
		}
		return nil, err
	}
	tree := &pg_query.ParseResult{}
	if err := (proto.UnmarshalOptions{RecursionLimit: recursionLimit}).Unmarshal(pb, tree); err != nil {
		if strings.Contains(err.Error(), "recursion") {
			return nil, ErrTooDeep
		}
		return nil, fmt.Errorf("pgparse: decoding the parse tree: %w", err)
	}
	return tree, nil
}

// charPos converts the parser's 1-based byte position to PostgreSQL's 1-based character
// position.
func charPos(text string, bytePos int) int32 {
	if bytePos <= 0 || bytePos > len(text)+1 {
		return 0
	}
	return int32(len([]rune(text[:bytePos-1])) + 1)
}

// Bound returns an upper bound of the depth of text's parse tree, in tokens: along every
// path of nested brackets ((), [], CASE ... END), the tokens of the list element the path
// goes through at each level, plus the chain operators of that level. List elements are
// separated by commas, semicolons, AND and OR (which the grammar flattens into one list),
// WHEN, THEN and ELSE; UNION, INTERSECT, EXCEPT and JOIN also separate their operands but
// nest left-deep, so each one counts at its level. An operator token counts once per
// character, since PostgreSQL may split it into several. nest is the deepest nesting of
// brackets (at most MaxBound+1: the scan stops there).
func Bound(text string, toks []sqllex.Token) (bound, nest int) {
	type level struct {
		opener     byte // '(', '[' or 'c' (CASE)
		cur, child int  // tokens of the current element; deepest bracket within it
		max, chain int  // deepest element so far; chain operators
		done       int  // deepest of the statements ended by semicolons at this level
	}
	stack := []level{{}}
	endElem := func(l *level) {
		if d := l.cur + l.child; d > l.max {
			l.max = d
		}
		l.cur, l.child = 0, 0
	}
	closeLevel := func() {
		l := &stack[len(stack)-1]
		endElem(l)
		d := max(l.max+l.chain, l.done)
		stack = stack[:len(stack)-1]
		p := &stack[len(stack)-1]
		if d > p.child {
			p.child = d
		}
	}
	for _, t := range toks {
		top := &stack[len(stack)-1]
		switch t.Kind {
		case sqllex.Punct:
			switch text[t.Start] {
			case '(', '[':
				top.cur++
				if len(stack) > MaxBound {
					return MaxBound + 1, len(stack)
				}
				stack = append(stack, level{opener: text[t.Start]})
				nest = max(nest, len(stack)-1)
				continue
			case ')', ']':
				want := byte('(')
				if text[t.Start] == ']' {
					want = '['
				}
				if len(stack) > 1 && top.opener == want {
					closeLevel()
					continue
				}
			case ',':
				endElem(top)
				continue
			case ';':
				endElem(top)
				if d := top.max + top.chain; d > top.done {
					top.done = d
				}
				top.max, top.chain = 0, 0
				continue
			}
			top.cur++
		case sqllex.Op:
			if op := text[t.Start:t.End]; op == "::" || op == ":=" || op == "=>" || op == ".." {
				top.cur++ // single tokens
			} else {
				top.cur += int(t.End - t.Start)
			}
		case sqllex.Ident:
			switch n := t.End - t.Start; {
			case n == 4 && sqllex.Keyword(text, t, "case"):
				top.cur++
				if len(stack) > MaxBound {
					return MaxBound + 1, len(stack)
				}
				stack = append(stack, level{opener: 'c'})
				nest = max(nest, len(stack)-1)
			case n == 3 && sqllex.Keyword(text, t, "end") && len(stack) > 1 && top.opener == 'c':
				closeLevel()
			case n == 3 && sqllex.Keyword(text, t, "and"), n == 2 && sqllex.Keyword(text, t, "or"),
				n == 4 && (sqllex.Keyword(text, t, "when") || sqllex.Keyword(text, t, "then") || sqllex.Keyword(text, t, "else")):
				endElem(top)
			case n == 5 && sqllex.Keyword(text, t, "union"), n == 9 && sqllex.Keyword(text, t, "intersect"),
				n == 6 && sqllex.Keyword(text, t, "except"), n == 4 && sqllex.Keyword(text, t, "join"):
				endElem(top)
				top.chain++
			default:
				top.cur++
			}
		default:
			top.cur++
		}
	}
	for len(stack) > 1 {
		closeLevel()
	}
	endElem(&stack[0])
	return max(stack[0].max+stack[0].chain, stack[0].done), nest
}
