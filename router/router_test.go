package router

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/router/pghash"
	"github.com/pgshard/pgshard/router/sqllex"
)

// testSnapshot has two distributed tables: public.reviews (text key, a serial id) and
// app.events (varchar key), four shards each.
func testSnapshot() *metadata.Snapshot {
	reviews := &metadata.Table{OID: 16384, Schema: "public", Name: "reviews", Method: 'h', Key: "customer_id", KeyIndex: 0,
		Columns: []metadata.Column{
			{Name: "customer_id", TypeOID: 25, HashType: 25, TypeName: "text", NotNull: true},
			{Name: "review_date", TypeOID: 1082, HashType: 1082, TypeName: "date"},
			{Name: "rating", TypeOID: 23, HashType: 23, TypeName: "integer"},
			{Name: "id", TypeOID: 20, HashType: 20, TypeName: "bigint", Default: "nextval('public.reviews_id_seq'::regclass)"},
			{Name: "votes", TypeOID: 23, HashType: 23, TypeName: "integer", Default: "0", DefaultOnShard: true},
		}}
	events := &metadata.Table{OID: 16400, Schema: "app", Name: "events", Method: 'h', Key: "k", KeyIndex: 0, HasUnique: true,
		Columns: []metadata.Column{
			{Name: "k", TypeOID: 1043, HashType: 1043, TypeName: "character varying"},
			{Name: "n", TypeOID: 20, HashType: 20, TypeName: "bigint"},
		}}
	for _, t := range []*metadata.Table{reviews, events} {
		for i := range t.Columns {
			t.Columns[i].ByteOrder = true // a C-collated database
		}
		for i := 0; i < 4; i++ {
			lo, hi := metadata.HashRange(i, 4)
			t.Shards = append(t.Shards, &metadata.Shard{ID: int64(t.OID) + int64(i), TableID: t.OID, Min: lo, Max: hi})
		}
	}
	snap := metadata.NewSnapshot(nil, []*metadata.Table{reviews, events})
	snap.DefaultByteOrder = true
	return snap
}

var sess = &Session{User: "alice", SearchPath: `"$user", public, app`}

func render(t Template, in *Input) string {
	return t.String(&Holes{In: in, Tables: []string{"<SHARD>", "<SHARD2>"}, Evals: []string{"<E0>", "<E1>", "<E2>"}, Types: []string{"<T0>", "<T1>", "<T2>", "<T3>", "<T4>", "<T5>"}})
}

func TestPlanKinds(t *testing.T) {
	snap := testSnapshot()
	cases := []struct {
		sql   string
		kinds []Kind
		all   bool // AllCoordinator
	}{
		{"select 1", []Kind{Coordinator}, true},
		{"create table x (a int); insert into x values (1)", []Kind{Coordinator, Coordinator}, true},
		// The coordinator reports the syntax error, parsing it only (distributed
		// tables exist: Unparsed, see TestUnparsedNeverRuns).
		{"SELEC 1", []Kind{Coordinator}, false},
		{"begin; select * from reviews where customer_id = 'a'; commit", []Kind{Begin, Select, Commit}, false},
		{"set search_path = app", []Kind{SetVar}, false},
		{"select * from reviews", []Kind{Select}, false},
		{"select * from events where k = 'x'", []Kind{Select}, false},
		{"select * from app.events", []Kind{Select}, false},
		{"select * from other.events", []Kind{Coordinator}, true},
		{"with reviews as (select 1) select * from reviews", []Kind{Coordinator}, true},
		{"insert into reviews (customer_id) values ('a')", []Kind{Insert}, false},
		{"update reviews set rating = 1", []Kind{Update}, false},
		{"delete from reviews where customer_id = 'x'", []Kind{Delete}, false},
		{"update reviews set customer_id = 'b' where customer_id = 'a'", []Kind{Error}, false},
		{"select master_add_node('h', 5432)", []Kind{Function}, false},
		{"truncate reviews, other", []Kind{Truncate}, false},
		{"drop table reviews", []Kind{DropTable}, false},
		{"alter table reviews add column x int", []Kind{DDL}, false},
		{"alter table reviews set tablespace pg_default", []Kind{Error}, false},
		{"savepoint a; release a; rollback to a", []Kind{Savepoint, Release, RollbackTo}, false},
		{"", nil, true},
	}
	r := New(Config{})
	for _, c := range cases {
		b, _ := r.Plan(c.sql, snap, sess)
		var kinds []Kind
		for _, st := range b.Stmts {
			kinds = append(kinds, st.Kind)
		}
		if len(kinds) != len(c.kinds) || b.AllCoordinator != c.all {
			t.Errorf("%q: kinds %v all=%v, want %v all=%v", c.sql, kinds, b.AllCoordinator, c.kinds, c.all)
			continue
		}
		for i := range kinds {
			if kinds[i] != c.kinds[i] {
				t.Errorf("%q: kinds %v, want %v", c.sql, kinds, c.kinds)
			}
		}
	}
}

func TestShardTemplates(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	cases := []struct{ sql, shard string }{
		{"select * from reviews where customer_id = 'A'", `select * from <SHARD> "reviews" where customer_id = 'A'`},
		{"SELECT r.rating FROM public.reviews r WHERE r.customer_id = 'A'", `SELECT r.rating FROM <SHARD> r WHERE r.customer_id = 'A'`},
		{"select reviews.rating from reviews where customer_id = 'A'", `select reviews.rating from <SHARD> "reviews" where customer_id = 'A'`},
		{"update reviews set review_date = now() where customer_id = 'A'", `update <SHARD> "reviews" set review_date = <E0> where customer_id = 'A'`},
		{"delete from only reviews where customer_id = 'A' and review_date < current_date - 1", `delete from only <SHARD> "reviews" where customer_id = 'A' and review_date < <E0> - 1`},
	}
	for _, c := range cases {
		b, in := r.Plan(c.sql, snap, sess)
		st := b.Stmts[0]
		if got := render(st.Shard, in); got != c.shard {
			t.Errorf("%q:\n got %s\nwant %s", c.sql, got, c.shard)
		}
	}
}

func TestInsertPlan(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	b, in := r.Plan("INSERT INTO reviews (customer_id, rating) VALUES ('a', 1), ($1, random()::int), (upper('c'), 3) RETURNING id", snap, sess)
	st := b.Stmts[0]
	if st.Kind != Insert || len(st.Rows) != 3 || !st.Returning || !st.Commutes {
		t.Fatalf("plan: %+v", st)
	}
	if got := render(st.InsertPrefix, in); got != `INSERT INTO <SHARD> AS "reviews" (customer_id, rating, "id") VALUES ` {
		t.Errorf("prefix %s", got)
	}
	want := []struct {
		row   string
		key   ValueKind
		evals int
	}{
		{"('a', 1, <E0>)", ValLit, 1},     // the serial default, evaluated
		{"($1, <E0>, <E1>)", ValParam, 2}, // random() evaluated once for every placement
		{"(<E0>, 3, <E1>)", ValEval, 2},   // a computed key is evaluated (and hashed) on the coordinator
	}
	for i, w := range want {
		row := st.Rows[i]
		if got := render(row.Text, in); got != w.row || row.Key.Kind != w.key || len(row.Evals) != w.evals {
			t.Errorf("row %d: %s key=%v evals=%d, want %s %v %d", i, got, row.Key.Kind, len(row.Evals), w.row, w.key, w.evals)
		}
	}
	if got := render(st.InsertSuffix, in); got != " RETURNING id" {
		t.Errorf("suffix %q", got)
	}
	// Unique index: INSERTs do not commute.
	b, _ = r.Plan("insert into events values ('x', 1)", snap, sess)
	if b.Stmts[0].Commutes {
		t.Error("insert into a table with a unique index commutes")
	}
	// NULL keys are refused at plan time.
	b, _ = r.Plan("insert into events values (NULL, 1)", snap, sess)
	if st := b.Stmts[0]; st.Kind != Error || st.Err.Code != "22004" {
		t.Errorf("NULL key: %+v", st)
	}
}

func TestConditions(t *testing.T) {
	snap := testSnapshot()
	tbl := snap.Table("public", "reviews")
	r := New(Config{})
	h := func(s string) int32 { return pghash.Text([]byte(s)) }
	cases := []struct {
		where  string
		hashes []int32
		shards int // -1: all
	}{
		{"customer_id = 'a'", []int32{h("a")}, 1},
		{"'a' = customer_id", []int32{h("a")}, 1},
		{"customer_id in ('a', 'b', 'c')", []int32{h("a"), h("b"), h("c")}, 0},
		{"customer_id = any (array['a', 'b'])", []int32{h("a"), h("b")}, 0},
		{"customer_id = 'a' or customer_id = 'b'", []int32{h("a"), h("b")}, 0},
		{"customer_id = 'a' and rating > 3", []int32{h("a")}, 1},
		{"customer_id = 'a' and customer_id = 'b'", []int32{h("a"), h("b")}, 0},
		{"customer_id = 'a' or rating > 3", nil, -1},
		{"customer_id like 'a%'", nil, -1},
		{"customer_id = NULL", nil, 0},
		{"customer_id is null", []int32{0}, 1},
		{"not customer_id = 'a'", nil, -1},
		{"customer_id::text = 'a'", nil, -1},
	}
	for _, c := range cases {
		b, in := r.Plan("select * from reviews where "+c.where, snap, sess)
		st := b.Stmts[0]
		vals := st.Filter.Values(nil)
		if len(vals) != len(c.hashes) {
			t.Errorf("%s: %d values, want %d", c.where, len(vals), len(c.hashes))
			continue
		}
		for i, v := range vals {
			if v.Kind == ValLit {
				s := in.Lit(v.Index)
				if got := pghash.Text([]byte(strings.Trim(s, "'"))); got != c.hashes[i] {
					t.Errorf("%s: value %d is %s", c.where, i, s)
				}
			}
		}
		shards, all := st.Filter.Select(tbl, c.hashes)
		switch {
		case c.shards == -1 && !all:
			t.Errorf("%s: pruned to %d shards, want all", c.where, len(shards))
		case c.shards >= 0 && all:
			t.Errorf("%s: not pruned", c.where)
		case c.shards > 0 && len(shards) != c.shards:
			t.Errorf("%s: %d shards, want %d", c.where, len(shards), c.shards)
		}
	}
	// AND of two different keys: at most one shard survives (possibly none).
	b, _ := r.Plan("select * from reviews where customer_id = 'a' and customer_id = 'b'", snap, sess)
	if shards, _ := b.Stmts[0].Filter.Select(tbl, []int32{h("a"), h("b")}); len(shards) > 1 {
		t.Errorf("AND of two keys: %d shards", len(shards))
	}
}

func TestPlanCache(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	r.Plan("select * from reviews where customer_id = 'a'", snap, sess)
	r.Plan("select * from reviews where customer_id = 'bcd'", snap, sess)
	_, in := r.Plan("select * from reviews where customer_id = 'xyz'", snap, sess)
	hits, misses := r.Stats()
	if hits != 2 || misses != 1 {
		t.Errorf("hits %d misses %d, want 2 and 1", hits, misses)
	}
	b, _ := r.Plan("select * from reviews where customer_id = 'xyz'", snap, sess)
	if got := render(b.Stmts[0].Shard, in); !strings.HasSuffix(got, "'xyz'") {
		t.Errorf("cached plan rendered %s", got)
	}
	// ORDER BY <position> depends on the literal: cached by exact text only.
	b1, _ := r.Plan("select * from reviews where customer_id = 'a' order by 1", snap, sess)
	b2, _ := r.Plan("select * from reviews where customer_id = 'a' order by 2", snap, sess)
	if b1 == b2 {
		t.Error("ORDER BY 1 and ORDER BY 2 share a plan")
	}
	// The search path is part of the key.
	b3, _ := r.Plan("select * from events", snap, &Session{User: "alice", SearchPath: "public"})
	if b3.Stmts[0].Kind != Coordinator {
		t.Errorf("events outside the search path: %v", b3.Stmts[0].Kind)
	}
}

func TestMapPosition(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	sql := "select nope from reviews where customer_id = 'éé'"
	b, in := r.Plan(sql, snap, sess)
	st := b.Stmts[0]
	holes := &Holes{In: in, Tables: []string{`"public"."reviews_16384"`}}
	shard := st.Shard.String(holes)
	// "nope" is at character 8 in both texts; "customer_id" moves.
	if p := st.Shard.MapPosition(8, holes); p != 8 {
		t.Errorf("position of nope: %d", p)
	}
	pos := strings.Index(shard, "customer_id")
	if p := st.Shard.MapPosition(int32(pos+1), holes); p != int32(strings.Index(sql, "customer_id")+1) {
		t.Errorf("position of customer_id: %d", p)
	}
}

func TestAggregateMerge(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	b, in := r.Plan("select count(*), avg(rating) as a, max(review_date) from reviews where rating > 1 having sum(votes) > 0", snap, sess)
	m := b.Stmts[0].Merge
	if m == nil || m.Kind != Aggregate {
		t.Fatalf("merge %+v err %v", m, b.Stmts[0].Err)
	}
	if got := render(m.Shard, in); got != `SELECT count(*) AS pgshard_p1, pg_catalog.sum(rating) AS pgshard_p2, pg_catalog.count(rating) AS pgshard_p3, max(review_date) AS pgshard_p4, sum(votes) AS pgshard_p5 from <SHARD> "reviews" where rating > 1` {
		t.Errorf("partial: %s", got)
	}
	if got := render(m.Final, in); got != `SELECT coalesce(pg_catalog.sum(pgshard_p1), 0)::pg_catalog.int8 AS "count", (CASE WHEN pg_catalog.sum(pgshard_p3) OPERATOR(pg_catalog.<>) 0 THEN pg_catalog.sum(pgshard_p2) OPERATOR(pg_catalog./) pg_catalog.sum(pgshard_p3) END) as a, pg_catalog.max(pgshard_p4) AS "max" FROM (VALUES <E0>) pgshard_partial(pgshard_p1, pgshard_p2, pgshard_p3, pgshard_p4, pgshard_p5) having pg_catalog.sum(pgshard_p5)::<T4> > 0` {
		t.Errorf("final: %s", got)
	}
}

func TestGroupMerge(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	b, in := r.Plan("select rating, count(distinct votes), sum(votes) s from reviews r where rating > $1 group by 1 having max(review_date) > now() order by s desc limit 3", snap, sess)
	m := b.Stmts[0].Merge
	if m == nil || m.Kind != Gather || len(m.Pulls) != 1 {
		t.Fatalf("merge %+v err %v", m, b.Stmts[0].Err)
	}
	if got := render(m.Pulls[0].Shard, in); got != `SELECT "r"."rating", "r"."votes", sum(votes) AS pgshard_p1, max(review_date) AS pgshard_p2 from <SHARD> r where rating > $1 GROUP BY "r"."rating", "r"."votes"` {
		t.Errorf("partial: %s", got)
	}
	if got := render(m.Pulls[0].Proto, in); got != `SELECT "r"."rating", "r"."votes", sum(votes) AS pgshard_p1, max(review_date) AS pgshard_p2 from <SHARD> r GROUP BY "r"."rating", "r"."votes"` {
		t.Errorf("proto: %s", got)
	}
	if got := render(m.Final, in); got != `SELECT rating AS "rating", count(distinct votes) AS "count", pg_catalog.sum(pgshard_p1)::<T2> s FROM <SHARD> "r" group by 1 having pg_catalog.max(pgshard_p2) > now() order by s desc limit 3` {
		t.Errorf("final: %s", got)
	}
	// Shapes without partial forms gather the rows WHERE keeps; joins gather tables.
	for sql, pulls := range map[string]int{
		"select * from reviews where rating = 1 order by votes using <":                 1,
		"select string_agg(customer_id, ',') from reviews":                              1,
		"select *, row_number() over () from reviews":                                   1,
		"select * from reviews a join reviews b on a.customer_id < b.customer_id":       1,
		"select * from reviews where rating in (select rating from events)":             2,
		"with x as (select * from reviews) select * from x union select * from reviews": 1,
	} {
		b, _ = r.Plan(sql, snap, sess)
		if m := b.Stmts[0].Merge; m == nil || m.Kind != Gather || len(m.Pulls) != pulls {
			t.Errorf("%s: %+v %v", sql, m, b.Stmts[0].Err)
		}
	}
	// A join on the partition keys of co-located tables runs shard by shard.
	b, in = r.Plan("select count(*) from reviews a join reviews b using (customer_id) where a.rating = 5", snap, sess)
	st := b.Stmts[0]
	if st.Kind != Select || len(st.Colocated) != 2 || st.Merge == nil || st.Merge.Kind != Aggregate || st.Fallback == nil {
		t.Fatalf("co-located join: %+v", st)
	}
	if got := render(st.Merge.Shard, in); got != `SELECT count(*) AS pgshard_p1 from <SHARD> a join <SHARD2> b using (customer_id) where a.rating = 5` {
		t.Errorf("co-located partial: %s", got)
	}
}

func FuzzPlan(f *testing.F) {
	for _, s := range []string{
		"select * from reviews where customer_id = 'a'", "insert into reviews values ('a', now(), 1)",
		"update reviews set rating = rating + 1 where customer_id in ('a','b')", "select count(*) from reviews having count(*) > 1",
		"select master_create_worker_shards('reviews', 4)", "begin; delete from events where k = $1; commit",
	} {
		f.Add(s)
	}
	snap := testSnapshot()
	r := New(Config{CacheSize: 100})
	f.Fuzz(func(t *testing.T, sql string) {
		b, in := r.Plan(sql, snap, sess)
		for _, st := range b.Stmts {
			render(st.Text, in)
		}
	})
}

func TestSortMerge(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	b, in := r.Plan("select customer_id, votes v from reviews where rating > 2 order by v desc nulls last, 1 limit 10 offset $1", snap, sess)
	m := b.Stmts[0].Merge
	if m == nil || m.Kind != Sorted || m.Fallback == nil || m.Visible != 2 || len(m.Keys) != 2 {
		t.Fatalf("merge %+v err %v", m, b.Stmts[0].Err)
	}
	if got := render(m.Shard, in); got != `SELECT customer_id, votes v, votes AS pgshard_s1, customer_id AS pgshard_s2 from <SHARD> "reviews" where rating > 2 order by v desc nulls last, 1 LIMIT <E0>` {
		t.Errorf("shard: %s", got)
	}
	if k := m.Keys[0]; !k.Desc || k.NullsFirst {
		t.Errorf("key 0: %+v", k)
	}
	if k := m.Keys[1]; k.Desc || k.NullsFirst {
		t.Errorf("key 1: %+v", k)
	}
	if !m.HasLimit || !m.HasOffset || m.Offset.Kind != ValParam {
		t.Errorf("limits: %+v", m)
	}
}

// TestCacheBoundedBytes: the plan cache keeps no plan of a huge statement text and at
// most maxCacheText bytes of text in all, so distinct large statements cannot fill the
// proxy's memory.
func TestCacheBoundedBytes(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	huge := "SELECT 1 AS " + strings.Repeat("x", maxCachedText+1)
	r.Plan(huge, snap, sess)
	r.Plan(huge, snap, sess)
	if hits, misses := r.Stats(); hits != 0 || misses != 2 || r.bytes != 0 {
		t.Errorf("a %d-byte statement: %d hits, %d misses, %d bytes cached", len(huge), hits, misses, r.bytes)
	}
	for i := 0; i < 20; i++ {
		r.Plan(fmt.Sprintf("SELECT 1 AS x%d%s", i, strings.Repeat("y", 15<<20)), snap, sess)
		if r.bytes > maxCacheText {
			t.Fatalf("%d bytes cached", r.bytes)
		}
	}
}

// TestTreeLocatedClauses checks that clauses, select-list entries, ORDER BY items and
// WHERE conjuncts are located from the parse tree: keywords that are aliases or parts of
// expressions do not move them.
func TestTreeLocatedClauses(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	plan := func(sql string) (*Statement, *Input) {
		t.Helper()
		b, in := r.Plan(sql, snap, sess)
		if len(b.Stmts) != 1 {
			t.Fatalf("%s: %d statements", sql, len(b.Stmts))
		}
		return b.Stmts[0], in
	}
	// A bare ORDER BY name is the output column (here the implicit name of rating::text).
	st, in := plan("select customer_id as limit, rating::text, votes is distinct from 3 from reviews order by rating, id limit 5")
	if m := st.Merge; m == nil || m.Kind != Sorted {
		t.Fatalf("sorted: %+v %v", m, st.Err)
	}
	if got := render(st.Merge.Shard, in); got != `SELECT customer_id as limit, rating::text, votes is distinct from 3, rating::text AS pgshard_s1, id AS pgshard_s2 from <SHARD> "reviews" order by rating, id LIMIT <E0>` {
		t.Errorf("shard: %s", got)
	}
	st, in = plan("select count(*) as from, sum(rating) as for, max(rating) filter (where votes is distinct from 1) from reviews where rating is not distinct from 3")
	if m := st.Merge; m == nil || m.Kind != Aggregate {
		t.Fatalf("aggregate: %+v %v", m, st.Err)
	}
	if got := render(st.Merge.Shard, in); got != `SELECT count(*) AS pgshard_p1, sum(rating) AS pgshard_p2, max(rating) filter (where votes is distinct from 1) AS pgshard_p3 from <SHARD> "reviews" where rating is not distinct from 3` {
		t.Errorf("partial: %s", got)
	}
	if got := render(st.Merge.Final, in); got != `SELECT coalesce(pg_catalog.sum(pgshard_p1), 0)::pg_catalog.int8 as from, pg_catalog.sum(pgshard_p2)::<T1> as for, pg_catalog.max(pgshard_p3) AS "max" FROM (VALUES <E0>) pgshard_partial(pgshard_p1, pgshard_p2, pgshard_p3) ` {
		t.Errorf("final: %s", got)
	}
	// Conjuncts are the parser's (it flattens "(a AND b) AND c"), not the text split at AND.
	st, in = plan("select * from reviews a join events e on a.customer_id = e.k where (a.rating > 1 and e.n > 2) and case when a.votes > 1 and e.n < 5 then true end and a.votes between 1 and 9")
	if st.Merge == nil || len(st.Merge.Pulls) != 2 {
		t.Fatalf("gather: %+v %v", st.Merge, st.Err)
	}
	if got := render(st.Merge.Pulls[0].Shard, in); got != `SELECT * FROM <SHARD> "a" WHERE (a.rating > 1) AND (a.votes between 1 and 9)` {
		t.Errorf("pull 0: %s", got)
	}
	if got := render(st.Merge.Pulls[1].Shard, in); got != `SELECT * FROM <SHARD> "e" WHERE (e.n > 2)` {
		t.Errorf("pull 1: %s", got)
	}
	// The job-queue pattern: every shard locks its first rows; no gather fallback.
	st, in = plan("select id from reviews where rating = 0 order by id limit 1 for update skip locked")
	if m := st.Merge; m == nil || m.Kind != Sorted || m.Fallback != nil {
		t.Fatalf("skip locked: %+v %v", m, st.Err)
	}
	if got := render(st.Merge.Shard, in); got != `SELECT id, id AS pgshard_s1 from <SHARD> "reviews" where rating = 0 order by id LIMIT <E0> for update skip locked` {
		t.Errorf("skip locked: %s", got)
	}
	if st, _ = plan("select id from reviews order by id limit 1 for update"); st.Merge != nil || st.Err == nil || st.Err.Code != "0A000" {
		t.Errorf("FOR UPDATE with LIMIT without SKIP LOCKED: %+v %v", st.Merge, st.Err)
	}
	// Schema-qualified column references lose their schema with the table renamed.
	st, in = plan("select public.reviews.rating, count(*) from public.reviews where public.reviews.customer_id = 'a' group by public.reviews.rating")
	if got := render(st.Shard, in); got != `select reviews.rating, count(*) from <SHARD> "reviews" where reviews.customer_id = 'a' group by reviews.rating` {
		t.Errorf("qualified: %s", got)
	}
}

// TestByteOrderDefaultCollation: in a database whose default collation is not byte
// order, an expression that turns a non-collatable column into a string (the implicit
// output name rating of rating::text) takes the default collation: the proxy must not
// compare it byte by byte, while the plain column may be.
func TestByteOrderDefaultCollation(t *testing.T) {
	snap := testSnapshot()
	snap.DefaultByteOrder = false
	b, _ := New(Config{}).Plan("select id, rating::text from reviews order by rating, id limit 5", snap, sess)
	m := b.Stmts[0].Merge
	if m == nil || m.Kind != Sorted || len(m.Keys) != 2 {
		t.Fatalf("merge %+v err %v", m, b.Stmts[0].Err)
	}
	if m.Keys[0].ByteOrder || !m.Keys[1].ByteOrder {
		t.Errorf("keys: %+v", m.Keys)
	}
}

// A statement the router cannot parse while distributed tables exist is only parsed by
// the coordinator (Unparsed), never run there: read otherwise there than here, it could
// write a prototype. With standard_conforming_strings off, 'a\'b' is one string.
func TestUnparsedNeverRuns(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	for _, c := range []struct {
		sql      string
		lex      sqllex.Mode
		unparsed bool
	}{
		{`insert into reviews values ('a\'b')`, 0, true},
		{`insert into reviews values ('a\'b')`, sqllex.NonStandard, false},
		{`select 'x\' from reviews --'`, sqllex.NonStandard, false},
		{`SELEC 1`, 0, true},
	} {
		b, _ := r.Plan(c.sql, snap, &Session{User: "u", Lex: c.lex})
		if len(b.Stmts) != 1 || b.Stmts[0].Unparsed != c.unparsed || b.AllCoordinator && c.unparsed {
			t.Errorf("%q in mode %d: %+v", c.sql, c.lex, b.Stmts[0])
		}
	}
	b, _ := r.Plan(`select 'x\' from reviews --'`, snap, &Session{User: "u", Lex: sqllex.NonStandard})
	if !b.AllCoordinator {
		t.Errorf("select of one string constant: %v", b.Stmts[0].Kind)
	}
}
