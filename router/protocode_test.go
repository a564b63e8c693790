package router

import "testing"

// TestCoordinatorCodeRefused checks which statements defining or running code inside the
// coordinator are refused because they name a distributed table (reviews, app.events).
func TestCoordinatorCodeRefused(t *testing.T) {
	snap := testSnapshot()
	cases := []struct {
		sql     string
		refused bool
	}{
		{"create view v as select * from reviews", true},
		{"create view v as select * from other_table", false},
		{"create materialized view v as select count(*) from app.events", true},
		{"create function f() returns bigint language sql as 'select count(*) from reviews'", true},
		{"create function f() returns bigint language sql as $$select count(*) from \"Events\"$$", true},
		{"create function f() returns bigint language sql as 'select count(*) from reviews_archive'", false},
		{"create function f() returns int language plpgsql as $$begin execute 'delete from ' || 'reviews'; return 1; end$$", true},
		{"create function f() returns bigint language sql begin atomic select count(*) from reviews; end", true},
		{"create function f() returns int language c as 'reviews', 'reviews'", false},
		{"create procedure p() language sql as 'delete from reviews'", true},
		{"do $$ begin perform count(*) from reviews; end $$", true},
		{"do $$ begin perform 1; end $$", false},
		{"create rule r as on insert to t do also insert into reviews values (new.a)", true},
		{"create policy p on t using (a in (select rating from reviews))", true},
		{"select query_to_xml('select * from reviews', true, false, '')", true},
		{"select query_to_xml('select * from other', true, false, '')", false},
		{"select query_to_xml(q, true, false, '') from t", true},
		{"select table_to_xml('app.events'::regclass, true, false, '')", true},
		{"select schema_to_xml('public', true, false, '')", true},
		{"select schema_to_xml('other', true, false, '')", false},
		{"select database_to_xml(true, false, '')", true},
		{"select ts_rewrite('a'::tsquery, 'select t, s from reviews')", true},
		{"select ts_rewrite(q, t, s) from aliases", false},
		{"select /* pgshard-internal-statement */ 1", true},
		{"select 'pgshard-internal-statement'", true},
	}
	r := New(Config{})
	for _, c := range cases {
		b, _ := r.Plan(c.sql, snap, sess)
		if len(b.Stmts) != 1 {
			t.Errorf("%s: %d statements", c.sql, len(b.Stmts))
			continue
		}
		st := b.Stmts[0]
		if got := st.Kind == Error; got != c.refused {
			t.Errorf("%s: kind %v (%v), want refused %v", c.sql, st.Kind, st.Err, c.refused)
		}
	}
}
