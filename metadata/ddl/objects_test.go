package ddl_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/metadata/ddl"
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
                        FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) x) y), '<none>'),
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
	// A role of the coordinator's only: its grants are left out on the worker.
	mustExec(t, coord, `CREATE ROLE ddl_coord_only`)
	mustExec(t, coord, `
		CREATE TABLE public.acl_t (k int PRIMARY KEY, v text CONSTRAINT v_short CHECK (length(v) < 100), secret text);
		CREATE INDEX acl_t_v ON public.acl_t (v);
		ALTER TABLE public.acl_t OWNER TO ddl_owner;
		GRANT SELECT, UPDATE ON public.acl_t TO ddl_app;
		GRANT INSERT ON public.acl_t TO PUBLIC;
		GRANT SELECT (k, v) ON public.acl_t TO "Ddl Reader" WITH GRANT OPTION;
		GRANT UPDATE (v) ON public.acl_t TO "Ddl Reader";
		GRANT SELECT ON public.acl_t TO ddl_coord_only;
		GRANT UPDATE (v) ON public.acl_t TO ddl_coord_only;
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
	if !strings.Contains(want, "ddl_coord_only=SELECT") || !strings.Contains(want, "ddl_coord_only=UPDATE") {
		t.Fatalf("the prototype's description lacks the coordinator-only role's grants:\n%s", want)
	}
	want = withoutGrantee(want, "ddl_coord_only")
	// The worker's own default privileges (for tables postgres creates, as here) are not
	// kept: the shard's privileges are the table's.
	mustExec(t, worker, `ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT, DELETE ON TABLES TO "Ddl Reader"`)
	defer mustExec(t, worker, `ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public REVOKE SELECT, DELETE ON TABLES FROM "Ddl Reader"`)
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

// typesFixture makes types in a schema of their own (and one in public) on the coordinator:
// an enum, a domain over int with a default, NOT NULL and checks (one NOT VALID), a
// composite made of the enum and a collated text, and a domain over the enum.
const typesFixture = `
CREATE SCHEMA "Typ Schema";
CREATE TYPE "Typ Schema".mood AS ENUM ('sad', 'ok', 'it''s', 'back\slash');
CREATE DOMAIN public.posint AS int DEFAULT 1 NOT NULL CONSTRAINT positive CHECK (VALUE > 0);
ALTER DOMAIN public.posint ADD CONSTRAINT small CHECK (VALUE < 1000000) NOT VALID;
CREATE TYPE "Typ Schema"."Pair" AS (a int, m "Typ Schema".mood, t text COLLATE "C");
CREATE DOMAIN "Typ Schema".good_mood AS "Typ Schema".mood CHECK (VALUE <> 'sad');
CREATE TABLE public.types_t (
	k int NOT NULL,
	m "Typ Schema".mood DEFAULT 'ok',
	p public.posint,
	c "Typ Schema"."Pair",
	ms "Typ Schema".mood[],
	g "Typ Schema".good_mood
);
`

// TestTypesCreated: the types a table's columns need are created on a worker that lacks
// them, before the shard, in dependency order and in their schemas; a second shard finds
// them there; a worker whose enum of that name has other labels refuses the shard.
func TestTypesCreated(t *testing.T) {
	needCluster(t)
	coord := connect(t, testCluster.Coordinator)
	worker := connect(t, testCluster.Workers[0])
	mustExec(t, coord, typesFixture)
	tbl := mustLoad(t, coord, "public.types_t")
	var names []string
	for _, ty := range tbl.Types {
		names = append(names, ty.Qualified)
	}
	// mood before the types made of it.
	pos := map[string]int{}
	for i, n := range names {
		pos[n] = i
	}
	if len(names) != 4 || pos[`"Typ Schema".mood`] > pos[`"Typ Schema"."Pair"`] || pos[`"Typ Schema".mood`] > pos[`"Typ Schema".good_mood`] {
		t.Fatalf("types in the wrong order or missing: %v", names)
	}
	mustExec(t, worker, "SET standard_conforming_strings = off")
	defer mustExec(t, worker, "RESET standard_conforming_strings")
	createShard(t, worker, tbl, shardID)
	// The shard's columns are the prototype's, of types of the same names (other OIDs).
	noOIDs := func(d description) description {
		cols := append([]descCol(nil), d.Columns...)
		for i := range cols {
			cols[i].TypeOID = 0
		}
		d.Columns = cols
		return d
	}
	want := noOIDs(sortByName(expectShard(t, describe(t, coord, "public.types_t"), tbl, shardID)))
	got := noOIDs(sortByName(normalizeShard(t, describe(t, worker, fmt.Sprintf("public.types_t_%d", shardID)))))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("shard differs from the prototype\n got: %+v\nwant: %+v", got, want)
	}
	createShard(t, worker, tbl, shardID+1) // the types exist now
	typesSQL := `SELECT string_agg(format_type(t.oid, NULL) || ' ' || t.typtype::text || ' ' || coalesce(
		(SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid),
		(SELECT string_agg(pg_get_constraintdef(c.oid) || ' ' || c.convalidated, ',' ORDER BY conname) FROM pg_constraint c WHERE c.contypid = t.oid), '') ||
		' ' || coalesce(t.typdefault, '') || ' ' || t.typnotnull || ' ' || coalesce(format_type(t.typbasetype, t.typtypmod), '') ||
		' ' || coalesce((SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod) || ':' || attcollation::regcollation, ',' ORDER BY attnum)
		                 FROM pg_attribute WHERE attrelid = t.typrelid AND attnum > 0), ''),
		E'\n' ORDER BY format_type(t.oid, NULL))
		FROM pg_type t WHERE t.typnamespace IN ('"Typ Schema"'::regnamespace) OR t.oid = 'public.posint'::regtype`
	if got, want := queryString(t, worker, typesSQL), queryString(t, coord, typesSQL); got != want {
		t.Errorf("types on the worker:\n%s\nwant (the coordinator's):\n%s", got, want)
	}
	mustExec(t, worker, fmt.Sprintf(`INSERT INTO public.types_t_%d VALUES (1, 'it''s', 5, ROW(1, 'back\\slash', 'x'), '{sad,ok}', 'ok')`, shardID))
	if err := exec(context.Background(), worker, fmt.Sprintf(`INSERT INTO public.types_t_%d (k, p) VALUES (2, -1)`, shardID)); sqlState(err) != "23514" {
		t.Errorf("a value the domain's check refuses: %v", err)
	}
	dropShard(t, worker, tbl, shardID)
	dropShard(t, worker, tbl, shardID+1)

	// An enum of the same name with other labels on the worker.
	mustExec(t, worker, `DROP TYPE "Typ Schema"."Pair", "Typ Schema".good_mood; DROP TYPE "Typ Schema".mood; CREATE TYPE "Typ Schema".mood AS ENUM ('sad', 'ok')`)
	cmds, err := tbl.CreateCommands(shardID)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, worker, "BEGIN")
	var failed error
	for _, c := range cmds {
		if failed = exec(context.Background(), worker, c); failed != nil {
			break
		}
	}
	mustExec(t, worker, "ROLLBACK")
	if sqlState(failed) != "42804" || !strings.Contains(failed.Error(), `"Typ Schema".mood exists on this worker with other labels`) {
		t.Errorf("an enum with other labels on the worker: %v", failed)
	}
	mustExec(t, worker, `DROP SCHEMA "Typ Schema" CASCADE; DROP DOMAIN public.posint`)
}

// TestTypesRace: two sessions create shards needing the same missing types at once; the
// one that loses the race to create them goes on with the winner's.
func TestTypesRace(t *testing.T) {
	needCluster(t)
	coord := connect(t, testCluster.Coordinator)
	mustExec(t, coord, `CREATE TYPE public.race_e AS ENUM ('a', 'b'); CREATE TABLE public.race_t (k int, e public.race_e)`)
	tbl := mustLoad(t, coord, "public.race_t")
	a := connect(t, testCluster.Workers[0])
	b := connect(t, testCluster.Workers[0])
	run := func(conn *pgconn.PgConn, id int64) error {
		cmds, err := tbl.CreateCommands(id)
		if err != nil {
			return err
		}
		for _, c := range cmds {
			if err := exec(context.Background(), conn, c); err != nil {
				return err
			}
		}
		return nil
	}
	mustExec(t, a, "BEGIN")
	if err := run(a, shardID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		if err := exec(context.Background(), b, "BEGIN"); err != nil {
			done <- err
			return
		}
		err := run(b, shardID+1)
		if err == nil {
			err = exec(context.Background(), b, "COMMIT")
		} else {
			exec(context.Background(), b, "ROLLBACK")
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the second session did not wait for the first's type: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	mustExec(t, a, "COMMIT")
	if err := <-done; err != nil {
		t.Fatalf("the session that lost the race: %v", err)
	}
	if n := queryString(t, a, `SELECT count(*) FROM pg_class WHERE relname IN ('race_t_10042', 'race_t_10043')`); n != "2" {
		t.Errorf("%s shards, want 2", n)
	}
	mustExec(t, a, `DROP TABLE public.race_t_10042, public.race_t_10043; DROP TYPE public.race_e`)
}

// TestObjectsRefused: a function a shard's CHECK constraint calls (in SQL) is created on
// a worker that lacks it, from the coordinator's definition; a range type column is
// refused by Load.
func TestObjectsRefused(t *testing.T) {
	needCluster(t)
	coord := connect(t, testCluster.Coordinator)
	worker := connect(t, testCluster.Workers[0])
	mustExec(t, coord, `CREATE FUNCTION public.ddl_ok(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 > 0';
		CREATE TABLE public.fn_t (k int CHECK (public.ddl_ok(k)));
		CREATE TYPE public.ddl_range AS RANGE (subtype = int8);
		CREATE TABLE public.range_t (k int, r public.ddl_range)`)
	tbl := mustLoad(t, coord, "public.fn_t")
	if len(tbl.Functions) != 1 || tbl.Functions[0].Signature != "public.ddl_ok(integer)" || tbl.Functions[0].Def == "" {
		t.Fatalf("functions: %+v", tbl.Functions)
	}
	cmds, err := tbl.CreateCommands(shardID)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, worker, "BEGIN")
	var failed error
	for _, c := range cmds {
		if failed = exec(context.Background(), worker, c); failed != nil {
			break
		}
	}
	if failed != nil {
		t.Errorf("creating the shard where the function is missing: %v", failed)
	} else if err := exec(context.Background(), worker, "SELECT 'public.ddl_ok(integer)'::regprocedure"); err != nil {
		t.Errorf("the function was not created on the worker: %v", err)
	}
	mustExec(t, worker, "ROLLBACK")
	// With the function there, the shard is created.
	mustExec(t, worker, `CREATE FUNCTION public.ddl_ok(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 > 0'`)
	createShard(t, worker, tbl, shardID)
	dropShard(t, worker, tbl, shardID)
	mustExec(t, worker, `DROP FUNCTION public.ddl_ok(int)`)

	if _, err := load(t, coord, "public.range_t"); !errors.Is(err, ddl.ErrUnsupported) {
		t.Errorf("a range type column: %v", err)
	}
}

// TestExtensionType: a column of an extension's type makes the shard create the extension
// on a worker that lacks it (when the worker has it available).
func TestExtensionType(t *testing.T) {
	needCluster(t)
	coord := connect(t, testCluster.Coordinator)
	worker := connect(t, testCluster.Workers[0])
	if queryString(t, worker, "SELECT count(*) FROM pg_available_extensions WHERE name = 'citext'") != "1" {
		t.Skip("citext is not available")
	}
	mustExec(t, coord, `CREATE EXTENSION citext; CREATE TABLE public.ext_t (k int, c public.citext, cs public.citext[])`)
	tbl := mustLoad(t, coord, "public.ext_t")
	if len(tbl.Types) != 1 || tbl.Types[0].Kind != 'x' || tbl.Types[0].Extension != "citext" || tbl.Types[0].ExtensionSchema != "public" {
		t.Fatalf("types: %+v", tbl.Types)
	}
	createShard(t, worker, tbl, shardID)
	defer mustExec(t, worker, "DROP EXTENSION citext CASCADE")
	mustExec(t, worker, fmt.Sprintf(`INSERT INTO public.ext_t_%d VALUES (1, 'Abc', '{X}')`, shardID))
	if n := queryString(t, worker, fmt.Sprintf(`SELECT count(*) FROM public.ext_t_%d WHERE c = 'aBC'`, shardID)); n != "1" {
		t.Errorf("citext comparison on the shard: %s rows", n)
	}
	createShard(t, worker, tbl, shardID+1) // the extension exists now
	dropShard(t, worker, tbl, shardID+1)
	dropShard(t, worker, tbl, shardID)
}

// TestSchemaOfOrdinaryOwner: an owner without CREATE on the worker's database creates a
// shard of its table in a schema that exists there (CREATE SCHEMA IF NOT EXISTS would
// need that privilege).
func TestSchemaOfOrdinaryOwner(t *testing.T) {
	needCluster(t)
	coord := connect(t, testCluster.Coordinator)
	worker := connect(t, testCluster.Workers[0])
	for _, c := range []*pgconn.PgConn{coord, worker} {
		mustExec(t, c, `CREATE ROLE ddl_plain; CREATE SCHEMA "Own Schema"; GRANT USAGE, CREATE ON SCHEMA "Own Schema" TO ddl_plain`)
	}
	mustExec(t, coord, `CREATE TABLE "Own Schema".t (k int); ALTER TABLE "Own Schema".t OWNER TO ddl_plain`)
	tbl := mustLoad(t, coord, `"Own Schema".t`)
	mustExec(t, worker, "SET ROLE ddl_plain")
	createShard(t, worker, tbl, shardID)
	dropShard(t, worker, tbl, shardID)
	mustExec(t, worker, "RESET ROLE")
}

// withoutGrantee removes role's entries from the privilege lines of a privilegesSQL
// description.
func withoutGrantee(desc, role string) string {
	lines := strings.Split(desc, "\n")
	for i, l := range lines {
		head := ""
		switch {
		case strings.HasPrefix(l, "acl "):
			head = "acl "
		case strings.HasPrefix(l, "column ") && !strings.HasPrefix(l, "column comment "):
			head = l[:strings.Index(l[len("column "):], " ")+len("column ")+1]
		default:
			continue
		}
		var keep []string
		for _, e := range strings.Split(l[len(head):], ",") {
			if !strings.HasPrefix(e, role+"=") {
				keep = append(keep, e)
			}
		}
		lines[i] = head + strings.Join(keep, ",")
	}
	return strings.Join(lines, "\n")
}

// withoutDo returns cmds without the DO block that resets a shard's privileges, which must
// be the last command.
func withoutDo(t *testing.T, cmds []string) []string {
	t.Helper()
	if len(cmds) == 0 || !strings.HasPrefix(cmds[len(cmds)-1], "DO $pgshard$DECLARE r record;") {
		t.Fatalf("no privilege reset last: %q", cmds)
	}
	return cmds[:len(cmds)-1]
}
