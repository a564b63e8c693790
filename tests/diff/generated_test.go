package diff

import (
	"fmt"
	"math/rand"
	"strings"
)

// generatedCorpus returns corpus queries generated from shapes that rewriting SQL by
// scanning it for keywords gets wrong (issue 9, defect 11): every reserved keyword (and
// the unreserved ones that end ORDER BY items or follow calls) as an unquoted alias in a
// sorted, an aggregate and a grouped query; implicit output names that shadow input
// columns in ORDER BY; WHERE clauses of a gathered join nesting AND, OR, CASE, BETWEEN
// and parentheses; column references qualified by table, schema and table, and alias.
// They run on the int config only (one distributed table is enough for the text shapes).
func generatedCorpus() []*entry {
	var out []*entry
	add := func(kind, sql string, on ...string) {
		if on == nil {
			on = []string{"int"}
		}
		out = append(out, &entry{name: fmt.Sprintf("gen_%s_%03d", kind, len(out)+1), file: "generated", sql: sql, on: on})
	}

	// Keywords as aliases, four to a query.
	keywords := []string{
		"all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both",
		"case", "cast", "check", "collate", "column", "constraint", "create", "current_catalog",
		"current_date", "current_role", "current_time", "current_timestamp", "current_user",
		"default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false",
		"fetch", "for", "foreign", "from", "grant", "group", "having", "in", "initially",
		"intersect", "into", "lateral", "leading", "limit", "localtime", "localtimestamp",
		"not", "null", "offset", "on", "only", "or", "order", "placing", "primary",
		"references", "returning", "select", "session_user", "some", "symmetric", "table",
		"then", "to", "trailing", "true", "union", "unique", "user", "using", "variadic",
		"when", "where", "window", "with",
		// unreserved words that the old scanner treated as clause or item ends
		"first", "last", "nulls", "filter", "over", "within", "rows", "by", "ties", "skip", "locked", "nowait",
	}
	for i := 0; i < len(keywords); i += 4 {
		kw := keywords[i:min(i+4, len(keywords))]
		cols := []string{"id", "qty", "grp", "cat"}
		var sel, agg []string
		for j, k := range kw {
			sel = append(sel, cols[j]+" AS "+k)
			agg = append(agg, []string{"count(*)", "sum(qty)", "max(grp)", "min(cat)"}[j]+" AS "+k)
		}
		add("kw", fmt.Sprintf("SELECT %s FROM {t} WHERE qty IS DISTINCT FROM 3 ORDER BY id LIMIT 6", strings.Join(sel, ", ")))
		add("kw", fmt.Sprintf("SELECT %s FROM {t} WHERE grp IS NOT DISTINCT FROM 2", strings.Join(agg, ", ")))
		add("kw", fmt.Sprintf("SELECT grp AS %s, count(*) AS %s FROM {t} GROUP BY grp ORDER BY 1", kw[0], kw[len(kw)-1]))
	}

	// Implicit output names that shadow input columns: ORDER BY the name sorts by the
	// output column.
	for _, c := range []string{"qty", "grp", "price", "amount", "created", "note", "k"} {
		add("name", fmt.Sprintf("SELECT id, %s::text FROM {t} ORDER BY %s, id LIMIT 12", c, c), "int", "text")
		add("name", fmt.Sprintf("SELECT %s::text, id FROM {t} ORDER BY %s DESC NULLS LAST, id LIMIT 12 OFFSET 2", c, c), "int", "uuid")
	}
	add("name", "SELECT id, coalesce(qty, 0) + 1 AS qty FROM {t} ORDER BY qty, id LIMIT 12")
	add("name", "SELECT id, -grp AS grp FROM {t} ORDER BY grp NULLS FIRST, id LIMIT 12")
	add("name", "SELECT id, greatest(qty, grp) FROM {t} ORDER BY greatest, id LIMIT 12")
	add("name", "SELECT id, lower(cat) COLLATE \"C\" FROM {t} ORDER BY lower, id LIMIT 12")

	// Joined WHERE clauses built from atoms with AND, OR, NOT, CASE, BETWEEN and
	// parentheses (d_other_5_1 is not co-located: the join is gathered, and conjuncts on
	// one table are pushed to its shards).
	atoms := []string{"a.qty > 0", "o.val > 100", "a.flag", "o.tag = 'tag1'", "a.grp BETWEEN 2 AND 8",
		"a.cat IS DISTINCT FROM 'beta'", "o.val IS NOT NULL", "a.note IS NULL", "a.amount < 500"}
	r := rand.New(rand.NewSource(11))
	var expr func(depth int) string
	expr = func(depth int) string {
		if depth == 0 || r.Intn(3) == 0 {
			return atoms[r.Intn(len(atoms))]
		}
		switch r.Intn(5) {
		case 0:
			return "(" + expr(depth-1) + " AND " + expr(depth-1) + ")"
		case 1:
			return "(" + expr(depth-1) + " OR " + expr(depth-1) + ")"
		case 2:
			return "NOT (" + expr(depth-1) + ")"
		case 3:
			return "CASE WHEN " + expr(depth-1) + " AND " + expr(depth-1) + " THEN " + expr(depth-1) + " ELSE " + expr(depth-1) + " END"
		}
		return expr(depth-1) + " AND " + expr(depth-1)
	}
	for i := 0; i < 16; i++ {
		var conj []string
		for n := 2 + r.Intn(3); n > 0; n-- {
			conj = append(conj, expr(3))
		}
		join := "JOIN d_other_5_1 o ON a.id = o.id"
		if i%4 == 3 {
			join = "LEFT JOIN d_other_5_1 o ON a.id = o.id"
		}
		add("where", fmt.Sprintf("SELECT count(*), sum(a.qty) FROM {t} a %s WHERE %s", join, strings.Join(conj, " AND ")))
	}

	// Qualified column references.
	forms := []struct{ from, col string }{
		{"{t}", "grp"}, {"{t}", "{t}.grp"}, {"public.{t}", "public.{t}.grp"}, {"public.{t}", "{t}.grp"}, {"{t} x", "x.grp"},
	}
	for _, f := range forms {
		c := f.col
		id := strings.TrimSuffix(c, "grp") + "id"
		add("qual", fmt.Sprintf("SELECT %s, count(*) FROM %s GROUP BY %s ORDER BY %s", c, f.from, c, c), "int", "text")
		add("qual", fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s > 3 ORDER BY %s, %s LIMIT 9", id, c, f.from, c, c, id), "int", "bigint")
		add("qual", fmt.Sprintf("SELECT max(%s), count(DISTINCT %s) FROM %s", c, c, f.from), "int", "small")
		add("qual", fmt.Sprintf("SELECT DISTINCT %s FROM %s ORDER BY 1", c, f.from), "int")
		add("qual", fmt.Sprintf("SELECT %s FROM %s WHERE %s = 3 ORDER BY %s LIMIT 5", id, f.from, c, id), "int")
	}
	return out
}
