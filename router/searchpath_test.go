package router

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The text pgshard generates around a client's statement (merges, rewritten writes, key
// evaluation) runs in the client's session, under its search_path: every function and
// operator in it must be pg_catalog's, named (issue 10, item 2). This scans the generated
// segments of the plans of many statement shapes; tests/hostile_searchpath_test.go runs
// them against shadows on real servers.

var (
	quotedText   = regexp.MustCompile(`'(?:[^']|'')*'|"(?:[^"]|"")*"`)
	qualifiedOp  = regexp.MustCompile(`OPERATOR\(pg_catalog\.[^)]+\)`)
	assignment   = regexp.MustCompile(`(SET|,)\s*''\s*=`)
	anyOperator  = regexp.MustCompile(`[=<>+/|!~%^&@#]+|-[^0-9]`)
	functionCall = regexp.MustCompile(`([A-Za-z_][\w$]*)\s*\(`)
	// Words followed by "(" that are no function looked up on the search_path:
	// keywords and pgshard's own aliases with their column lists.
	notFunctions = map[string]bool{"select": true, "values": true, "in": true, "any": true, "all": true, "exists": true,
		"coalesce": true, "on": true, "from": true, "as": true, "where": true, "and": true, "or": true, "not": true,
		"using": true, "with": true, "array": true, "row": true, "cast": true, "filter": true, "over": true,
		"lateral": true, "by": true, "then": true, "else": true, "when": true, "case": true, "end": true, "operator": true,
		"join": true, "having": true, "limit": true, "offset": true, "set": true, "into": true, "distinct": true}
)

// unqualified reports the functions and operators of generated text that are not named
// with pg_catalog.
func unqualified(text string) []string {
	t := quotedText.ReplaceAllString(text, "''")
	t = qualifiedOp.ReplaceAllString(t, " ")
	t = assignment.ReplaceAllString(t, " ") // UPDATE's SET column = value
	var bad []string
	for _, m := range anyOperator.FindAllString(t, -1) {
		bad = append(bad, "operator "+strings.TrimSpace(m))
	}
	for _, m := range functionCall.FindAllStringSubmatchIndex(t, -1) {
		name := t[m[2]:m[3]]
		if m[2] > 0 && (t[m[2]-1] == '.' || t[m[2]-1] == '_' || t[m[2]-1] == '$') {
			continue // qualified (or the end of a longer word)
		}
		w := strings.ToLower(name)
		if notFunctions[w] || strings.HasPrefix(w, "pgshard_") {
			continue
		}
		bad = append(bad, "function "+name)
	}
	return bad
}

// generatedTexts returns the generated text segments of every template under v.
func generatedTexts(v reflect.Value, out *[]string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			generatedTexts(v.Elem(), out)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				generatedTexts(v.Field(i), out)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type() == reflect.TypeOf(Template(nil)) {
			for _, s := range v.Interface().(Template) {
				if s.Kind == SegText && s.Anchor < 0 {
					*out = append(*out, s.Text)
				}
			}
			return
		}
		for i := 0; i < v.Len(); i++ {
			generatedTexts(v.Index(i), out)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			generatedTexts(v.MapIndex(k), out)
		}
	}
}

func TestGeneratedSQLNamesPgCatalog(t *testing.T) {
	snap := testSnapshot()
	// Defaults come qualified from the metadata store (metadata/qualify).
	for _, tb := range snap.Tables() {
		for i := range tb.Columns {
			if tb.Columns[i].Default == "nextval('public.reviews_id_seq'::regclass)" {
				tb.Columns[i].Default = "pg_catalog.nextval('public.reviews_id_seq'::pg_catalog.regclass)"
			}
		}
	}
	r := New(Config{})
	for _, sql := range []string{
		"select count(*), avg(rating), sum(votes), min(review_date), max(rating), bool_and(rating > 1), every(votes > 0) from reviews",
		"select count(*) from reviews where rating > 1 having count(*) > 0",
		"select rating, count(*), avg(votes), sum(votes) from reviews group by rating order by 2 desc limit 3",
		"select rating, count(distinct votes) from reviews group by rating",
		"select distinct rating from reviews",
		"select * from reviews order by rating limit 5 offset 2",
		"select * from reviews order by customer_id desc",
		"select *, row_number() over () from reviews",
		"select * from reviews a join app.events b on a.customer_id = b.k",
		"select * from reviews where rating in (select n from app.events)",
		"with x as (select * from reviews) select count(*) from x",
		"select * from reviews where customer_id = 'a' for update",
		"insert into reviews (customer_id, rating) values ('a', 1), ('b', 2)",
		"insert into reviews (customer_id, rating) values (lower('A'), 1)",
		"insert into reviews (customer_id, review_date) values ('a', now())",
		"insert into reviews select * from reviews",
		"insert into reviews (customer_id, rating) select k, n from app.events",
		"update reviews set rating = 2 where customer_id = 'a'",
		"update reviews set rating = e.n from app.events e where reviews.customer_id = e.k",
		"update reviews r set votes = default from app.events e where r.rating = e.n",
		"delete from reviews using app.events e where reviews.customer_id = e.k",
		"delete from reviews where rating > 3",
		"select master_create_worker_shards('reviews', 4, 2)",
		"select master_copy_shard_placement(10000, 'a', 1, 'b', 2)",
		"copy reviews to stdout",
		"copy (select rating, count(*) from reviews group by 1) to stdout",
		"declare c cursor for select * from reviews order by rating",
		"explain select count(*) from reviews",
	} {
		b, _ := r.Plan(sql, snap, sess)
		var texts []string
		for _, st := range b.Stmts {
			if st.Err != nil {
				continue
			}
			generatedTexts(reflect.ValueOf(st), &texts)
		}
		for _, text := range texts {
			if bad := unqualified(text); len(bad) > 0 {
				t.Errorf("%s: generated %q names %s without pg_catalog", sql, text, strings.Join(bad, ", "))
			}
		}
	}
}

func TestUnqualifiedFinds(t *testing.T) {
	for text, want := range map[string]string{
		"(sum(a) / nullif(sum(b), 0))":                                   "operator /, function sum, function nullif, function sum",
		"coalesce(pg_catalog.sum(p1), 0)::pg_catalog.int8":               "",
		"t.typelem >= 16384":                                             "operator >=",
		"a OPERATOR(pg_catalog.=) b AND c OPERATOR(pg_catalog.<>) 'x=y'": "",
		") pgshard_partial(pgshard_p1, pgshard_p2)":                      "",
		"x = -1": "operator =",
	} {
		if got := strings.Join(unqualified(text), ", "); got != want {
			t.Errorf("unqualified(%q) = %q, want %q", text, got, want)
		}
	}
}
