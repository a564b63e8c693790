package diff

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestCollation checks ORDER BY on strings whose collation does not order them byte by
// byte (ICU's root collation): the proxy cannot compare them itself, so it gathers, and
// the order must be PostgreSQL's; a column with COLLATE "C" is merged in the proxy.
func TestCollation(t *testing.T) {
	ctx := context.Background()
	if err := loaded(ctx); err != nil {
		t.Fatalf("load: %v", err)
	}
	oracle := &side{name: "oracle", url: oracleURL()}
	proxy := &side{name: "proxy", url: proxyURL()}
	defer oracle.close()
	defer proxy.close()
	if r := oracle.run(ctx, modes[0], "SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'", nil); r.err != nil || len(r.rows) == 0 {
		t.Skip("PostgreSQL was built without ICU: no und-x-icu collation")
	}
	ddl := `CREATE TABLE d_coll (id int NOT NULL, s text COLLATE "und-x-icu", c text COLLATE "C")`
	var values []string
	words := []string{"apple", "Apple", "APPLE", "banana", "Banana", "ärger", "arger", "zebra", "Zebra", "éclair", "eclair", "10", "9", "a b", "ab", "a-b", ""}
	for i := 0; i < 300; i++ {
		w := words[(i*7)%len(words)] + fmt.Sprint(i%3)
		values = append(values, fmt.Sprintf("(%d, %s, %s)", i, quote(w), quote(w)))
	}
	insert := "INSERT INTO d_coll VALUES " + strings.Join(values, ", ")
	for _, s := range []*side{oracle, proxy} {
		if r := s.run(ctx, modes[0], ddl, nil); r.err != nil {
			t.Fatalf("%s: %v", s.name, r.err)
		}
		if s == proxy {
			for _, q := range []string{"select master_create_distributed_table('d_coll', 'id')", "select master_create_worker_shards('d_coll', 8, 1)"} {
				if r := s.run(ctx, modes[0], q, nil); r.err != nil {
					t.Fatalf("%s: %v", q, r.err)
				}
			}
		}
		if r := s.run(ctx, modes[0], insert, nil); r.err != nil {
			t.Fatalf("%s: %v", s.name, r.err)
		}
	}
	for _, tc := range []struct {
		sql, plan string
	}{
		{"SELECT id, s FROM d_coll ORDER BY s, id", "gathered into temporary tables"},
		{"SELECT s FROM d_coll ORDER BY s DESC, id LIMIT 7", "gathered into temporary tables"},
		{"SELECT id, c FROM d_coll ORDER BY c, id", "ordered streams merged in the proxy"},
		{"SELECT id FROM d_coll ORDER BY s COLLATE \"C\", id LIMIT 20", "ordered streams merged in the proxy"},
		{"SELECT id FROM d_coll ORDER BY c COLLATE \"und-x-icu\" DESC, id", "gathered into temporary tables"},
		{"SELECT min(s), max(s), min(c), max(c) FROM d_coll", "AS pgshard_p1"},
		{"SELECT min(c), max(c), count(*) FROM d_coll", "partial aggregates"},
	} {
		for _, m := range modes {
			o, p := oracle.run(ctx, m, tc.sql, nil), proxy.run(ctx, m, tc.sql, nil)
			if cause, detail := compare(o, p, true); cause != "" {
				t.Errorf("%s [%s]: %s: %s", tc.sql, m.name, cause, detail)
			}
		}
		r := proxy.run(ctx, modes[0], "EXPLAIN "+tc.sql, nil)
		if r.err != nil {
			t.Errorf("EXPLAIN %s: %v", tc.sql, r.err)
			continue
		}
		var plan []string
		for _, row := range r.rows {
			plan = append(plan, string(decodeRow(row)[0]))
		}
		if !strings.Contains(strings.Join(plan, "\n"), tc.plan) {
			t.Errorf("EXPLAIN %s: want %q in\n%s", tc.sql, tc.plan, strings.Join(plan, "\n"))
		}
	}
}
