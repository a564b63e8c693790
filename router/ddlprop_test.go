package router

import (
	"strings"
	"testing"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
)

// TestDDLPlans checks which schema changes of distributed tables are planned as DDL and
// which are refused (0A000), and that others are left as they were.
func TestDDLPlans(t *testing.T) {
	snap := testSnapshot()
	r := New(Config{})
	cases := []struct {
		sql  string
		kind Kind
		code pgerr.Code // for Error plans
		tag  string
	}{
		{"ALTER TABLE reviews ADD COLUMN note text DEFAULT 'x' NOT NULL CHECK (note <> '')", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD COLUMN n2 int DEFAULT -1", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD COLUMN n3 numeric(10,2) DEFAULT '1.5'::numeric", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD COLUMN created timestamptz DEFAULT now()", DDL, "", "ALTER TABLE"}, // the coordinator computes it (ddldefault.go)
		{"ALTER TABLE reviews ADD COLUMN s serial", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD COLUMN i int GENERATED ALWAYS AS IDENTITY", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD COLUMN u int UNIQUE", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews DROP COLUMN rating", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews DROP COLUMN customer_id", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ALTER COLUMN rating TYPE bigint", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ALTER COLUMN customer_id TYPE varchar(20)", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ALTER COLUMN rating SET DEFAULT 3, ALTER COLUMN rating SET NOT NULL", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ALTER COLUMN rating DROP DEFAULT, ALTER COLUMN rating DROP NOT NULL", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD CONSTRAINT r_pos CHECK (rating > 0)", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD PRIMARY KEY (customer_id, id)", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD UNIQUE (id)", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD FOREIGN KEY (id) REFERENCES other (id)", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD CONSTRAINT x EXCLUDE USING btree (customer_id WITH =)", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD CONSTRAINT x EXCLUDE USING btree (id WITH =)", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, id) REFERENCES reviews (customer_id, id)", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD FOREIGN KEY (id, customer_id) REFERENCES reviews (customer_id, id)", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id) REFERENCES app.events (k)", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD COLUMN r text REFERENCES reviews (customer_id)", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews SET SCHEMA app", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, id) REFERENCES reviews (customer_id, id) ON DELETE SET DEFAULT", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, votes) REFERENCES reviews (customer_id, rating) ON DELETE SET DEFAULT", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, votes) REFERENCES reviews (customer_id, rating) ON DELETE SET DEFAULT (votes)", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, rating) REFERENCES reviews (customer_id, rating) ON DELETE SET NULL (rating)", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, rating) REFERENCES reviews (customer_id, rating) ON DELETE SET NULL", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, rating) REFERENCES reviews (customer_id, rating) ON UPDATE SET NULL", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews ADD FOREIGN KEY (customer_id, rating) REFERENCES reviews (customer_id, rating) ON DELETE CASCADE ON UPDATE CASCADE", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews SET (fillfactor = 50), REPLICA IDENTITY FULL, SET UNLOGGED", DDL, "", "ALTER TABLE"},
		{"ALTER INDEX r_ix SET (fillfactor = 50)", DDL, "", "ALTER INDEX"},
		{"ALTER TABLE reviews ADD PRIMARY KEY USING INDEX r_u", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews DROP CONSTRAINT r_pos", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews OWNER TO bob", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews ENABLE ROW LEVEL SECURITY", DDL, "", "ALTER TABLE"}, // ddltrigger_test.go
		{"ALTER TABLE reviews RENAME TO critiques", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews RENAME TO " + strings.Repeat("x", 60), Error, pgerr.NameTooLong, ""},
		{"ALTER TABLE reviews RENAME COLUMN rating TO stars", DDL, "", "ALTER TABLE"},
		{"ALTER TABLE reviews RENAME COLUMN customer_id TO cid", Error, pgerr.FeatureNotSupported, ""},
		{"ALTER TABLE reviews RENAME CONSTRAINT r_pos TO r_positive", DDL, "", "ALTER TABLE"},
		{"CREATE INDEX ON reviews (rating)", DDL, "", "CREATE INDEX"},
		{"CREATE INDEX CONCURRENTLY r_ix ON reviews (rating)", DDL, "", "CREATE INDEX"},
		{"CREATE UNIQUE INDEX CONCURRENTLY r_u ON reviews (id)", Error, pgerr.FeatureNotSupported, ""},
		{"DROP INDEX CONCURRENTLY r_ix", DDL, "", "DROP INDEX"},
		{"DROP INDEX CONCURRENTLY r_ix, r_iy", Error, pgerr.FeatureNotSupported, ""},
		{"DROP INDEX CONCURRENTLY r_ix CASCADE", Error, pgerr.FeatureNotSupported, ""},
		{"REINDEX TABLE CONCURRENTLY reviews", DDL, "", "REINDEX"},
		{"REINDEX INDEX r_ix", DDL, "", "REINDEX"},
		{"CLUSTER reviews USING r_ix", DDL, "", "CLUSTER"},
		{"VACUUM (ANALYZE) reviews (rating), plain", DDL, "", "VACUUM"},
		{"ANALYZE", DDL, "", "ANALYZE"},
		{"VACUUM plain", Coordinator, "", ""},
		{"CREATE UNIQUE INDEX r_u ON reviews (id)", Error, pgerr.FeatureNotSupported, ""},
		{"CREATE UNIQUE INDEX r_u ON reviews (id, customer_id)", DDL, "", "CREATE INDEX"},
		{"DROP INDEX r_ix", DDL, "", "DROP INDEX"},
		{"ALTER INDEX r_ix RENAME TO r_ix2", DDL, "", "ALTER INDEX"},
		{"GRANT SELECT, UPDATE (rating) ON reviews TO app", DDL, "", "GRANT"},
		{"REVOKE ALL ON reviews FROM app", DDL, "", "REVOKE"},
		{"GRANT SELECT ON ALL TABLES IN SCHEMA app TO app", DDL, "", "GRANT"},
		{"GRANT SELECT ON ALL TABLES IN SCHEMA other TO app", Coordinator, "", ""},
		{"GRANT SELECT ON plain TO app", Coordinator, "", ""},
		{"COMMENT ON TABLE reviews IS 'r'", DDL, "", "COMMENT"},
		{"COMMENT ON COLUMN app.events.n IS 'n'", DDL, "", "COMMENT"},
		{"COMMENT ON TABLE plain IS 'p'", Coordinator, "", ""},
		{"ALTER TABLE plain ADD COLUMN x int", Coordinator, "", ""},
		{"ALTER TABLE plain ADD FOREIGN KEY (a) REFERENCES reviews (id)", Error, pgerr.FeatureNotSupported, ""},
		{"CREATE TABLE t2 (k text, r bigint REFERENCES reviews (id))", Error, pgerr.FeatureNotSupported, ""},
		{"CREATE TABLE t2 (k text, r bigint, FOREIGN KEY (k, r) REFERENCES reviews (customer_id, id))", Error, pgerr.FeatureNotSupported, ""},
		{"CREATE TABLE t2 (k text, r bigint REFERENCES plain (a))", Coordinator, "", ""},
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
		if c.kind == DDL && st.Tag != c.tag {
			t.Errorf("%s: tag %q, want %q", c.sql, st.Tag, c.tag)
		}
	}
}

// TestShardDDL checks the statements each shard runs.
func TestShardDDL(t *testing.T) {
	snap := testSnapshot()
	reviews := snap.Table("public", "reviews")
	events := snap.Table("app", "events")
	cases := []struct {
		sql  string
		cat  *DDLCatalog
		want string
	}{
		{"ALTER TABLE reviews ADD COLUMN note text DEFAULT 'x' NOT NULL CHECK (note <> '')",
			&DDLCatalog{Added: []DDLObject{{"reviews_note_check", 'c'}}},
			`ALTER TABLE public.reviews_7 ADD COLUMN note text DEFAULT 'x' NOT NULL CONSTRAINT reviews_note_check CHECK (note <> '')`},
		{"alter table reviews add constraint pk primary key (customer_id, id), add check (rating > 0), add constraint c2 check (votes >= 0)",
			&DDLCatalog{Added: []DDLObject{{"pk", 'p'}, {"reviews_rating_check", 'c'}, {"c2", 'c'}}},
			`ALTER TABLE public.reviews_7 ADD CONSTRAINT pk_7 PRIMARY KEY (customer_id, id), ADD CONSTRAINT reviews_rating_check CHECK (rating > 0), ADD CONSTRAINT c2 CHECK (votes >= 0)`},
		{"ALTER TABLE reviews ADD CHECK (rating > 0), ADD COLUMN x int CHECK (x > 0), ADD CHECK (rating < 9), ADD CHECK (votes + rating > 0)",
			&DDLCatalog{Added: []DDLObject{{"reviews_rating_check", 'c'}, {"reviews_rating_check1", 'c'}, {"reviews_check", 'c'}, {"reviews_x_check", 'c'}}},
			`ALTER TABLE public.reviews_7 ADD CONSTRAINT reviews_rating_check CHECK (rating > 0), ADD COLUMN x int CONSTRAINT reviews_x_check CHECK (x > 0), ADD CONSTRAINT reviews_rating_check1 CHECK (rating < 9), ADD CONSTRAINT reviews_check CHECK ((votes + rating) > 0)`},
		{"ALTER TABLE reviews ADD PRIMARY KEY (customer_id, id)",
			&DDLCatalog{Added: []DDLObject{{"reviews_pkey", 'p'}}},
			`ALTER TABLE public.reviews_7 ADD CONSTRAINT reviews_pkey_7 PRIMARY KEY (customer_id, id)`},
		{"ALTER TABLE reviews DROP CONSTRAINT reviews_pkey, DROP CONSTRAINT c2, DROP CONSTRAINT fk, DROP CONSTRAINT IF EXISTS nope",
			&DDLCatalog{Kinds: map[string]byte{"reviews_pkey": 'p', "c2": 'c', "fk": 'f'}},
			`ALTER TABLE public.reviews_7 DROP CONSTRAINT reviews_pkey_7, DROP CONSTRAINT c2, DROP CONSTRAINT IF EXISTS nope`},
		{"ALTER TABLE reviews DROP CONSTRAINT fk", &DDLCatalog{Kinds: map[string]byte{"fk": 'f'}}, ""},
		{"ALTER TABLE ONLY reviews ALTER rating SET DEFAULT now(), ALTER votes SET DEFAULT 1, ALTER rating TYPE bigint USING rating::bigint",
			nil,
			`ALTER TABLE ONLY public.reviews_7 ALTER COLUMN rating DROP DEFAULT, ALTER COLUMN votes SET DEFAULT 1, ALTER COLUMN rating TYPE bigint USING rating::bigint`},
		{"ALTER TABLE reviews RENAME TO critiques", nil, `ALTER TABLE public.reviews_7 RENAME TO critiques_7`},
		{"ALTER TABLE reviews RENAME rating TO stars", nil, `ALTER TABLE public.reviews_7 RENAME COLUMN rating TO stars`},
		{"ALTER TABLE reviews RENAME CONSTRAINT reviews_pkey TO rpk", &DDLCatalog{Kinds: map[string]byte{"reviews_pkey": 'p'}},
			`ALTER TABLE public.reviews_7 RENAME CONSTRAINT reviews_pkey_7 TO rpk_7`},
		{"ALTER TABLE reviews RENAME CONSTRAINT c2 TO c3", &DDLCatalog{Kinds: map[string]byte{"c2": 'c'}},
			`ALTER TABLE public.reviews_7 RENAME CONSTRAINT c2 TO c3`},
		{"CREATE INDEX ON reviews USING btree (rating DESC) WHERE rating > 2", &DDLCatalog{Added: []DDLObject{{"reviews_rating_idx", 'i'}}},
			`CREATE INDEX reviews_rating_idx_7 ON public.reviews_7 USING btree (rating DESC) WHERE rating > 2`},
		{"CREATE UNIQUE INDEX IF NOT EXISTS ru ON reviews (id, customer_id)", nil,
			`CREATE UNIQUE INDEX IF NOT EXISTS ru_7 ON public.reviews_7 USING btree (id, customer_id)`},
		{"DROP INDEX a, public.b, c CASCADE", &DDLCatalog{Objects: []int{0, 1}},
			`DROP INDEX public.a_7, public.b_7 CASCADE`},
		{"ALTER INDEX ix RENAME TO iy", &DDLCatalog{Objects: []int{0}}, `ALTER INDEX public.ix_7 RENAME TO iy_7`},
		{"ALTER INDEX ix SET (fillfactor = 50)", &DDLCatalog{Objects: []int{0}}, `ALTER INDEX public.ix_7 SET (fillfactor=50)`},
		{"ALTER TABLE reviews SET SCHEMA app", nil, `CREATE SCHEMA IF NOT EXISTS app; ALTER TABLE public.reviews_7 SET SCHEMA app`},
		{"ALTER TABLE reviews REPLICA IDENTITY USING INDEX ru, OWNER TO bob", nil, `ALTER TABLE public.reviews_7 REPLICA IDENTITY USING INDEX ru_7, OWNER TO bob`},
		{"ALTER TABLE reviews ADD CONSTRAINT pk PRIMARY KEY USING INDEX ru, ADD UNIQUE USING INDEX ru2", nil,
			`ALTER TABLE public.reviews_7 ADD CONSTRAINT pk_7 PRIMARY KEY USING INDEX ru_7, ADD UNIQUE USING INDEX ru2_7`},
		{"GRANT SELECT, UPDATE (rating) ON reviews, plain TO app WITH GRANT OPTION", nil,
			`GRANT select, update (rating) ON public.reviews_7 TO app WITH GRANT OPTION`},
		{"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM app", nil, `REVOKE ALL ON public.reviews_7 FROM app`},
		{"COMMENT ON TABLE reviews IS 'it''s \\'", nil, `COMMENT ON TABLE public.reviews_7 IS E'it''s \\'`},
		{"COMMENT ON COLUMN reviews.rating IS NULL", nil, `COMMENT ON COLUMN public.reviews_7.rating IS NULL`},
	}
	for _, c := range cases {
		got, err := ShardDDL(c.sql, reviews, 7, c.cat)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.sql, got, c.want)
		}
	}
	// A foreign key refers to the referenced table's shard of the same index.
	fk := &DDLCatalog{Refs: []*metadata.Table{reviews}, Added: []DDLObject{{"reviews_customer_id_id_fkey", 'f'}}}
	got, err := ShardDDL("ALTER TABLE reviews ADD FOREIGN KEY (customer_id, id) REFERENCES reviews ON DELETE CASCADE", reviews, reviews.Shards[1].ID, fk)
	if want := `ALTER TABLE public.reviews_16385 ADD CONSTRAINT reviews_customer_id_id_fkey FOREIGN KEY (customer_id, id) REFERENCES public.reviews_16385 ON DELETE CASCADE`; err != nil || got != want {
		t.Errorf("foreign key: got %s %v, want %s", got, err, want)
	}
	got, err = ShardDDL("ALTER TABLE reviews DROP CONSTRAINT fk", reviews, 7, &DDLCatalog{Kinds: map[string]byte{"fk": 'f'}, ShardFKs: map[string]bool{"fk": true}})
	if want := `ALTER TABLE public.reviews_7 DROP CONSTRAINT IF EXISTS fk`; err != nil || got != want {
		t.Errorf("drop foreign key: got %s %v, want %s", got, err, want)
	}
	got, err = ShardDDL(`alter table app.events add column "Big" int`, events, 16400, nil)
	if want := `ALTER TABLE app.events_16400 ADD COLUMN "Big" int`; err != nil || got != want {
		t.Errorf("quoted: got %s %v, want %s", got, err, want)
	}
	if _, err := ShardDDL(`create index `+strings.Repeat("i", 62)+` on reviews (rating)`, reviews, 7, nil); err == nil {
		t.Errorf("a too long shard index name was accepted")
	}
	names, conc, err := DDLIndexNames(`DROP INDEX CONCURRENTLY a, "S".b`)
	if err != nil || !conc || strings.Join(names, " ") != `"a" "S"."b"` {
		t.Errorf("DDLIndexNames: %v %v %v", names, conc, err)
	}
}
