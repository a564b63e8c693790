package router

import "testing"

// TestShardMaint: maintenance statements as the coordinator and the placements run them.
func TestShardMaint(t *testing.T) {
	snap := testSnapshot()
	reviews := snap.Table("public", "reviews")
	events := snap.Table("app", "events")
	one := []ShardTarget{{T: reviews, Shard: 7}}
	for _, c := range []struct {
		sql, index string
		targets    []ShardTarget
		rels       []uint32
		want       string
	}{
		{"REINDEX TABLE CONCURRENTLY reviews", "", one, nil, "REINDEX (CONCURRENTLY) TABLE public.reviews_7"},
		{"REINDEX (VERBOSE) INDEX r_ix", "r_ix", one, nil, "REINDEX (VERBOSE) INDEX public.r_ix_7"},
		{"CLUSTER reviews USING r_ix", "", one, nil, "CLUSTER public.reviews_7 USING r_ix_7"},
		{"VACUUM (ANALYZE) plain, reviews (rating)", "", []ShardTarget{{reviews, 7}, {reviews, 9}}, []uint32{0, reviews.OID},
			"VACUUM (ANALYZE) public.reviews_7(rating), public.reviews_9(rating)"},
		{"ANALYZE", "", []ShardTarget{{reviews, 7}, {events, 8}}, nil, "ANALYZE public.reviews_7, app.events_8"},
	} {
		got, err := ShardMaint(c.sql, c.targets, c.index, c.rels)
		if err != nil || got != c.want {
			t.Errorf("%s:\n got %s %v\nwant %s", c.sql, got, err, c.want)
		}
	}
	for sql, want := range map[string]string{
		"CREATE INDEX CONCURRENTLY IF NOT EXISTS r_ix ON reviews (rating)": "CREATE INDEX IF NOT EXISTS r_ix ON reviews USING btree (rating)",
		"DROP INDEX CONCURRENTLY IF EXISTS r_ix":                           "DROP INDEX IF EXISTS r_ix",
		"REINDEX (CONCURRENTLY, VERBOSE) TABLE reviews":                    "REINDEX (VERBOSE) TABLE reviews",
	} {
		if got, err := CoordinatorMaint(sql); err != nil || got != want {
			t.Errorf("%s:\n got %s %v\nwant %s", sql, got, err, want)
		}
	}
	got, err := ShardIndexDef("CREATE UNIQUE INDEX r_u ON public.reviews USING btree (customer_id, id)", reviews, 7)
	if want := "CREATE UNIQUE INDEX CONCURRENTLY r_u_7 ON public.reviews_7 USING btree (customer_id, id)"; err != nil || got != want {
		t.Errorf("index definition: got %s %v, want %s", got, err, want)
	}
}
