package ddl_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// privilegesSQL describes what a table carries besides its definition, independent of its
// name: owner, table and column privileges (grantee, privilege, grant option; not the
// grantor) and comments on the table, its columns, constraints and indexes (constraint and
// index names with a shard suffix $2 removed).
const privilegesSQL = `
SELECT concat_ws(E'\n',
  'owner ' || pg_get_userbyid(c.relowner),
  'acl ' || coalesce((SELECT string_agg(e, ',' ORDER BY e) FROM (
                        SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END || '=' ||
                               x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END AS e
                        FROM aclexplode(c.relacl) x) y), '<default>'),
  (SELECT string_agg('column ' || a.attname || ' ' || (SELECT string_agg(e, ',' ORDER BY e) FROM (
                        SELECT pg_get_userbyid(x.grantee) || '=' || x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END AS e
                        FROM aclexplode(a.attacl) x) y), E'\n' ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL),
  'comment ' || obj_description(c.oid, 'pg_class'),
  (SELECT string_agg('column comment ' || a.attname || ' ' || col_description(c.oid, a.attnum), E'\n' ORDER BY a.attnum)
   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND col_description(c.oid, a.attnum) IS NOT NULL),
  (SELECT string_agg('constraint comment ' || replace(co.conname, $2, '') || ' ' || obj_description(co.oid, 'pg_constraint'), E'\n' ORDER BY co.conname)
   FROM pg_constraint co WHERE co.conrelid = c.oid AND obj_description(co.oid, 'pg_constraint') IS NOT NULL),
  (SELECT string_agg('index comment ' || replace(ic.relname, $2, '') || ' ' || obj_description(ic.oid, 'pg_class'), E'\n' ORDER BY ic.relname)
   FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid AND obj_description(ic.oid, 'pg_class') IS NOT NULL))
FROM pg_class c WHERE c.oid = $1::regclass`

// TestOwnerGrantsComments: a shard gets its table's owner, table and column privileges
// (also revoked ones: the owner's own, PUBLIC's) and the comments on the table, its
// columns, constraints and indexes; a table with default privileges leaves the shard's
// defaults alone.
func TestOwnerGrantsComments(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range testCluster.Servers() {
		if _, err := s.Exec(ctx, "postgres", `
			CREATE ROLE ddl_owner; CREATE ROLE ddl_app; CREATE ROLE "Ddl Reader";
			GRANT CREATE ON SCHEMA public TO ddl_owner`); err != nil {
			t.Fatal(err)
		}
	}
	coord := connect(t, testCluster.Coordinator)
	worker := connect(t, testCluster.Workers[0])
	mustExec(t, coord, `
		CREATE TABLE public.acl_t (k int PRIMARY KEY, v text CONSTRAINT v_short CHECK (length(v) < 100), secret text);
		CREATE INDEX acl_t_v ON public.acl_t (v);
		ALTER TABLE public.acl_t OWNER TO ddl_owner;
		GRANT SELECT, UPDATE ON public.acl_t TO ddl_app;
		GRANT INSERT ON public.acl_t TO PUBLIC;
		GRANT SELECT (k, v) ON public.acl_t TO "Ddl Reader" WITH GRANT OPTION;
		GRANT UPDATE (v) ON public.acl_t TO "Ddl Reader";
		REVOKE TRUNCATE ON public.acl_t FROM ddl_owner;
		COMMENT ON TABLE public.acl_t IS 'it''s a table \ with a backslash';
		COMMENT ON COLUMN public.acl_t.v IS 'the value';
		COMMENT ON CONSTRAINT v_short ON public.acl_t IS 'short values';
		COMMENT ON CONSTRAINT acl_t_pkey ON public.acl_t IS 'the key';
		COMMENT ON INDEX public.acl_t_pkey IS 'the key''s index';
		COMMENT ON INDEX public.acl_t_v IS 'by value';
		CREATE TABLE public.acl_default (k int);
		ALTER TABLE public.acl_default OWNER TO ddl_owner`)
	tbl := mustLoad(t, coord, "public.acl_t")
	want := queryString(t, coord, privilegesSQL, "public.acl_t", "")
	for _, frag := range []string{"owner ddl_owner", "ddl_app=UPDATE", "PUBLIC=INSERT", "column v Ddl Reader=SELECT*,Ddl Reader=UPDATE",
		"comment it's a table \\ with a backslash", "constraint comment v_short short values", "index comment acl_t_v by value"} {
		if !strings.Contains(want, frag) {
			t.Fatalf("the prototype's description lacks %q:\n%s", frag, want)
		}
	}
	if strings.Contains(want, "ddl_owner=TRUNCATE") {
		t.Fatalf("the owner's TRUNCATE was not revoked:\n%s", want)
	}
	// With standard_conforming_strings off, the comment's backslash must still read as one.
	mustExec(t, worker, "SET standard_conforming_strings = off")
	defer mustExec(t, worker, "RESET standard_conforming_strings")
	for range 2 { // created, dropped and created again (a repair)
		createShard(t, worker, tbl, shardID)
		shard := fmt.Sprintf("public.acl_t_%d", shardID)
		if got := queryString(t, worker, privilegesSQL, shard, fmt.Sprintf("_%d", shardID)); got != want {
			t.Errorf("shard %s:\n%s\nwant (the prototype's):\n%s", shard, got, want)
		}
		dropShard(t, worker, tbl, shardID)
	}

	def := mustLoad(t, coord, "public.acl_default")
	if def.ACL != nil {
		t.Errorf("acl_default: ACL %v, want nil (the default)", def.ACL)
	}
	createShard(t, worker, def, shardID)
	defer dropShard(t, worker, def, shardID)
	shard := fmt.Sprintf("public.acl_default_%d", shardID)
	if got, want := queryString(t, worker, privilegesSQL, shard, ""), queryString(t, coord, privilegesSQL, "public.acl_default", ""); got != want {
		t.Errorf("shard %s:\n%s\nwant:\n%s", shard, got, want)
	}
}
