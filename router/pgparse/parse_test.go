package pgparse

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router/sqllex"
)

// protoDepth is the nesting depth of a decoded parse tree's messages (iteratively: the
// trees are deep).
func protoDepth(root protoreflect.Message) int {
	type item struct {
		m protoreflect.Message
		d int
	}
	deepest := 0
	stack := []item{{root, 1}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		deepest = max(deepest, it.d)
		it.m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			if fd.IsList() {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					stack = append(stack, item{l.Get(i).Message(), it.d + 1})
				}
			} else if !fd.IsMap() {
				stack = append(stack, item{v.Message(), it.d + 1})
			}
			return true
		})
	}
	return deepest
}

// randomExpr builds a random expression of the grammar's nesting kinds, at most depth
// deep and of about *size nodes.
func randomExpr(rng *rand.Rand, depth int, size *int) string {
	*size--
	if depth <= 0 || *size <= 0 {
		return []string{"1", "k", "'a'", "$1", "NULL", "t.k"}[rng.Intn(6)]
	}
	sub := func() string { return randomExpr(rng, depth-1-rng.Intn(2), size) }
	switch rng.Intn(17) {
	case 0:
		return sub() + " + " + sub()
	case 1:
		return sub() + "::int"
	case 2:
		return "(" + sub() + ")"
	case 3:
		return "abs(" + sub() + ", " + sub() + ")"
	case 4:
		return "CASE WHEN " + sub() + " THEN " + sub() + " ELSE " + sub() + " END"
	case 5:
		return "(SELECT " + sub() + " FROM t WHERE " + sub() + ")"
	case 6:
		return "NOT " + sub()
	case 7:
		return sub() + " AND " + sub() + " OR " + sub()
	case 8:
		return "ARRAY[" + sub() + ", " + sub() + "]"
	case 9:
		return sub() + " IS NULL"
	case 10:
		return sub() + " BETWEEN " + sub() + " AND " + sub()
	case 11:
		return "- " + sub()
	case 12:
		return sub() + " IN (" + sub() + ", " + sub() + ")"
	case 13:
		return "EXISTS (SELECT 1 FROM t UNION SELECT " + sub() + ")"
	case 14:
		return sub() + ` COLLATE "C"`
	case 15:
		return "(SELECT count(*) FROM t a JOIN t b ON " + sub() + " JOIN t c ON " + sub() + ")"
	default:
		return sub() + " ->> " + sub()
	}
}

// TestBoundCoversDepth checks Bound's promise on random statements of every nesting kind:
// the parse tree is never deeper than a few messages per unit of Bound, which is what
// sizes the C stack the parse needs.
func TestBoundCoversDepth(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	worst := 0.0
	for i := 0; i < 3000; i++ {
		var sql string
		size := 200
		switch i % 3 {
		case 0:
			sql = "SELECT " + randomExpr(rng, 2+rng.Intn(60), &size)
		case 1:
			sql = "SELECT a FROM t WHERE " + randomExpr(rng, 2+rng.Intn(60), &size) + " ORDER BY 1"
		default:
			sql = "SELECT " + randomExpr(rng, 10, &size) + " UNION ALL SELECT " + randomExpr(rng, 30, &size) + "; SELECT 1"
		}
		toks := sqllex.Scan(sql, nil)
		bound, _ := Bound(sql, toks)
		tree, err := Parse(sql, toks, 0)
		if err != nil {
			continue // (random SQL is sometimes invalid: nested EXISTS in CASE, ...)
		}
		d := protoDepth(tree.ProtoReflect())
		if r := float64(d) / float64(bound); r > worst {
			worst = r
		}
		if d > 6*bound+10 {
			t.Errorf("depth %d, bound %d: %s", d, bound, sql)
		}
	}
	t.Logf("deepest tree per unit of bound: %.2f messages", worst)
}

// TestParseDeep parses statements far deeper than any C stack holds, of the kinds that
// build deep trees without the parser's stack, and far longer flat ones: nothing may crash,
// the deep ones get 54001, the flat ones parse.
func TestParseDeep(t *testing.T) {
	for _, c := range []struct {
		sql  string
		code pgerr.Code // "" for success
	}{
		{"SELECT 1" + strings.Repeat("+1", 24999), ""},
		{"SELECT 1" + strings.Repeat("+1", 300000), "54001"},
		{"SELECT 1" + strings.Repeat("::int", 300000), "54001"},
		{"SELECT 1" + strings.Repeat(" UNION SELECT 1", 100000), "54001"},
		{"SELECT 1 FROM t" + strings.Repeat(" JOIN t USING (k)", 100000), "54001"},
		{"SELECT " + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000), "42601"},
		{"SELECT " + strings.Repeat("NOT ", 30000) + "true", "42601"},
		// (PostgreSQL's parser runs out of stack: 42601. Beyond MaxBound the proxy
		// does not try.)
		{"SELECT " + strings.Repeat("NOT ", 100000) + "true", "54001"},
		{"SELECT " + strings.Repeat("CASE WHEN true THEN ", 60000) + "1" + strings.Repeat(" END", 60000), "42601"},
		{"SELECT 1 IN (" + strings.Repeat("1,", 200000) + "1)", ""},
		{"SELECT true" + strings.Repeat(" AND true OR false", 100000), ""},
		{"SELECT CASE k" + strings.Repeat(" WHEN 1 THEN 2", 100000) + " END", ""},
		{"VALUES " + strings.Repeat("(1, 'a'), ", 100000) + "(1, 'a')", ""},
	} {
		_, err := Parse(c.sql, sqllex.Scan(c.sql, nil), 0)
		var pe *pgerr.Error
		switch {
		case c.code == "" && err != nil:
			t.Errorf("%.60s... (%d bytes): %v", c.sql, len(c.sql), err)
		case c.code != "" && (!errors.As(err, &pe) || pe.Code != c.code):
			t.Errorf("%.60s... (%d bytes): %v, want %s", c.sql, len(c.sql), err, c.code)
		}
	}
	if ErrTooDeep.Hint != fmt.Sprintf(`Increase the configuration parameter "max_stack_depth" (currently %dkB), after ensuring the platform's stack depth limit is adequate.`, 2048) {
		t.Errorf("hint: %s", ErrTooDeep.Hint)
	}
}
