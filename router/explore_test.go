package router

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pgshard/pgshard/metadata"
)

func testSnapshot() *metadata.Snapshot {
	t := &metadata.Table{OID: 16384, Schema: "public", Name: "customer_reviews", Method: 'h', Key: "customer_id", KeyIndex: 0,
		Columns: []metadata.Column{
			{Name: "customer_id", TypeOID: 25, HashType: 25, TypeName: "text", NotNull: true},
			{Name: "review_date", TypeOID: 1082, HashType: 1082, TypeName: "date"},
			{Name: "review_rating", TypeOID: 23, HashType: 23, TypeName: "integer"},
			{Name: "id", TypeOID: 20, HashType: 20, TypeName: "bigint", Default: "nextval('x_seq'::regclass)"},
		}}
	for i := 0; i < 4; i++ {
		lo, hi := metadata.HashRange(i, 4)
		t.Shards = append(t.Shards, &metadata.Shard{ID: int64(10000 + i), TableID: t.OID, Min: lo, Max: hi})
	}
	return metadata.NewSnapshot(nil, []*metadata.Table{t})
}

func TestExplore(t *testing.T) {
	r := New(Config{})
	snap := testSnapshot()
	for _, q := range []string{
		"select * from customer_reviews where customer_id = 'A123'",
		"select count(*), avg(review_rating) AS a from customer_reviews where review_rating > 3 having count(*) > 1",
		"insert into customer_reviews (customer_id, review_rating) values ('A', 1), ('B', now()::int)",
		"update customer_reviews c set review_date = now() where c.customer_id in ('a','b')",
		"select master_add_node('localhost', 1922)",
		"select * from customer_reviews limit 10 offset 5",
		"begin; select 1; commit",
	} {
		b, in := r.Plan(q, snap, &Session{User: "postgres"})
		for _, st := range b.Stmts {
			h := &Holes{In: in, Tables: []string{`"public"."customer_reviews_10000"`}, Evals: []string{"<E0>", "<E1>"}, Types: []string{"int8", "numeric", "int8"}}
			fmt.Printf("%s: kind=%v err=%v\n  text=%s\n", q, st.Kind, st.Err, st.Text.String(h))
			if st.Shard != nil {
				fmt.Printf("  shard=%s\n", st.Shard.String(h))
			}
			if st.Merge != nil {
				fmt.Printf("  merge=%d shard=%s\n  final=%s\n", st.Merge.Kind, st.Merge.Shard.String(h), st.Merge.Final.String(h))
			}
			if st.Filter != nil {
				j, _ := json.Marshal(st.Filter)
				fmt.Printf("  filter=%s\n", j)
			}
			if st.Kind == Insert {
				fmt.Printf("  prefix=%s suffix=%s\n", st.InsertPrefix.String(h), st.InsertSuffix.String(h))
				for _, row := range st.Rows {
					fmt.Printf("  row=%s key=%+v evals=%d\n", row.Text.String(h), row.Key, len(row.Evals))
				}
			}
			if st.Kind == Function {
				fmt.Printf("  args=%s cols=%+v calls=%+v\n", st.ArgQuery.String(h), st.Columns, st.Calls)
			}
		}
	}
}
