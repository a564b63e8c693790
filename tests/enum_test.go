package tests

import (
	"context"
	"fmt"
	"testing"
)

// TestEnumColumns checks a distributed table with an enum column (the type created on
// the coordinator and on every worker, where its OID differs): reads, ORDER BY, min/max
// from per-shard partials, GROUP BY and a gathered window query give PostgreSQL's answers.
func TestEnumColumns(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	typ := uniqueName("mood")
	table := uniqueName("enums")
	ddl := fmt.Sprintf("CREATE TYPE %s AS ENUM ('sad', 'ok', 'happy')", typ)
	// A type created first on the workers only shifts their OIDs away from the
	// coordinator's.
	for _, w := range env.C.Workers {
		if _, err := w.Exec(ctx, "postgres", fmt.Sprintf("CREATE TYPE %s_shift AS ENUM ('x'); %s", typ, ddl)); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, conn, ddl)
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, m %s)", table, typ), table, "k", 8, 2)
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s SELECT g, (ARRAY['happy', 'sad', 'ok', NULL])[g %% 4 + 1]::%s FROM generate_series(1, 200) g", table, typ))
	plain := uniqueName("enums_plain")
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s AS SELECT g AS k, (ARRAY['happy', 'sad', 'ok', NULL])[g %% 4 + 1]::%s AS m FROM generate_series(1, 200) g", plain, typ))
	for _, q := range []string{
		"SELECT min(m)::text || '/' || max(m)::text || '/' || count(m) FROM %s",
		"SELECT string_agg(m::text, ',' ORDER BY k) FROM (SELECT k, m FROM %s ORDER BY m DESC NULLS LAST, k LIMIT 7) x",
		"SELECT string_agg(g, ';' ORDER BY g) FROM (SELECT m::text || '=' || count(*) AS g FROM %s GROUP BY m) x",
		"SELECT string_agg(m::text || max, ',' ORDER BY m) FROM (SELECT m, max(k)::text AS max FROM %s WHERE m > 'sad' GROUP BY m) x",
		"SELECT sum(r) FROM (SELECT rank() OVER (ORDER BY m) AS r FROM %s WHERE k < 20) x",
	} {
		want := queryString(t, conn, fmt.Sprintf(q, plain))
		if got := queryString(t, conn, fmt.Sprintf(q, table)); got != want {
			t.Errorf("%s: pgshard %q, PostgreSQL %q", fmt.Sprintf(q, table), got, want)
		}
	}
}
