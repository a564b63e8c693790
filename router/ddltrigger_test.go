package router

import (
	"strings"
	"testing"

	"github.com/pgshard/pgshard/pgerr"
)

// TestTriggerSchemaPlans: triggers, policies, row-level security and schema statements
// of distributed tables are planned as DDL (DROP SCHEMA ... CASCADE as DROP TABLE), or
// refused, or left to the coordinator.
func TestTriggerSchemaPlans(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	cases := []struct {
		sql  string
		kind Kind
		code pgerr.Code
		tag  string
	}{
		{"CREATE TRIGGER t BEFORE INSERT ON reviews FOR EACH ROW EXECUTE FUNCTION f()", DDL, "", "CREATE TRIGGER"},
		{"CREATE CONSTRAINT TRIGGER t AFTER INSERT ON reviews FOR EACH ROW EXECUTE FUNCTION f()", Error, pgerr.FeatureNotSupported, ""},
		{"CREATE TRIGGER pgshard_x BEFORE INSERT ON reviews FOR EACH ROW EXECUTE FUNCTION f()", Error, pgerr.FeatureNotSupported, ""},
		{"CREATE TRIGGER t BEFORE INSERT ON plain FOR EACH ROW EXECUTE FUNCTION f()", Coordinator, "", ""},
		{"DROP TRIGGER t ON reviews", DDL, "", "DROP TRIGGER"},
		{"DROP TRIGGER pgshard_refuse_writes ON reviews", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TRIGGER t ON reviews RENAME TO u", DDL, "", "ALTER TRIGGER"},
		{"ALTER TABLE reviews DISABLE TRIGGER t, ENABLE ALWAYS TRIGGER u", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews DISABLE TRIGGER ALL", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews DISABLE TRIGGER USER", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews DISABLE TRIGGER pgshard_refuse_rows", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews FORCE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY", DDL, "", "ALTER TABLE"},
		{"CREATE POLICY p ON reviews USING (customer_id = current_user)", DDL, "", "CREATE POLICY"},
		{"CREATE POLICY p ON reviews USING (id IN (SELECT id FROM app.events))", Error, pgerr.FeatureNotSupported, ""},
		{"CREATE POLICY p ON plain USING (a IN (SELECT id FROM reviews))", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER POLICY p ON reviews USING (true)", DDL, "", "ALTER POLICY"},
		{"ALTER POLICY p ON reviews RENAME TO q", DDL, "", "ALTER POLICY"},
		{"DROP POLICY IF EXISTS p ON reviews", DDL, "", "DROP POLICY"},
		{"ALTER SCHEMA app RENAME TO app2", DDL, "", "ALTER SCHEMA"},
		{"ALTER SCHEMA other RENAME TO other2", Coordinator, "", ""},
		{"DROP SCHEMA app CASCADE", DropTable, "", "DROP SCHEMA"},
		{"DROP SCHEMA app", Coordinator, "", ""},
		{"DROP SCHEMA other CASCADE", Coordinator, "", ""},
	}
	for _, c := range cases {
		b, _ := r.Plan(c.sql, snap, sess)
		st := b.Stmts[0]
		if st.Kind != c.kind {
			t.Errorf("%s: kind %v, want %v (%v)", c.sql, st.Kind, c.kind, st.Err)
			continue
		}
		if c.kind == Error && st.Err.Code != c.code {
			t.Errorf("%s: %s %s, want %s", c.sql, st.Err.Code, st.Err.Message, c.code)
		}
		if c.kind != Error && c.kind != Coordinator && st.Tag != c.tag {
			t.Errorf("%s: tag %q, want %q", c.sql, st.Tag, c.tag)
		}
	}
}

// TestTriggerShardDDL checks the statements each shard runs.
func TestTriggerShardDDL(t *testing.T) {
	snap := testSnapshot()
	reviews := snap.Table("public", "reviews")
	events := snap.Table("app", "events")
	cases := []struct{ sql, want string }{
		{"CREATE TRIGGER t BEFORE INSERT OR UPDATE OF rating ON reviews FOR EACH ROW WHEN (NEW.rating > 0) EXECUTE FUNCTION f(1)",
			`CREATE TRIGGER t BEFORE INSERT OR UPDATE OF rating ON public.reviews_7 FOR EACH ROW WHEN (new.rating > 0) EXECUTE FUNCTION f('1')`},
		{"DROP TRIGGER IF EXISTS t ON reviews CASCADE", `DROP TRIGGER IF EXISTS t ON public.reviews_7 CASCADE`},
		{"ALTER TRIGGER t ON reviews RENAME TO u", `ALTER TRIGGER t ON public.reviews_7 RENAME TO u`},
		{"CREATE POLICY p ON reviews AS RESTRICTIVE FOR UPDATE TO app, PUBLIC USING (customer_id = current_user) WITH CHECK (rating > 0)",
			`CREATE POLICY p ON public.reviews_7 AS RESTRICTIVE FOR UPDATE TO app, public USING (customer_id = current_user) WITH CHECK (rating > 0)`},
		{"ALTER POLICY p ON reviews TO app USING (true)", `ALTER POLICY p ON public.reviews_7 TO app USING (true)`},
		{"ALTER POLICY p ON reviews RENAME TO q", `ALTER POLICY p ON public.reviews_7 RENAME TO q`},
		{"DROP POLICY p ON reviews", `DROP POLICY p ON public.reviews_7`},
		{"ALTER TABLE reviews ENABLE ROW LEVEL SECURITY, DISABLE TRIGGER t", `ALTER TABLE public.reviews_7 ENABLE ROW LEVEL SECURITY, DISABLE TRIGGER t`},
	}
	for _, c := range cases {
		got, err := ShardDDL(c.sql, reviews, 7, nil)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if strings.TrimSpace(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.sql, got, c.want)
		}
	}
	got, err := ShardDDL(`ALTER SCHEMA app RENAME TO "New"`, events, 16400, nil)
	if err != nil || !strings.Contains(got, `ALTER SCHEMA "app" RENAME TO "New"`) || !strings.Contains(got, `to_regclass('"New"."events_16400"')`) {
		t.Errorf("schema rename: %s %v", got, err)
	}
}
