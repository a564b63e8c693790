package tests

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/testproxy"
)

// Issue 10, item 2: the SQL pgshard writes itself (gathers, merges, key evaluation,
// name resolution, cursors, COPY, settings, metadata, leases, repair) must not run
// objects an ordinary user planted on a superuser's search_path.
//
// The hostile role owns a schema full of shadows of the operators and functions such SQL
// uses, on the coordinator and every worker: for every operator name, one per pair of
// common types (those pg_catalog lacks win over an implicit coercion under any
// search_path, as alice's >=(oid, integer) did; the others win when the schema comes
// before pg_catalog), and for every function name, pg_catalog's signatures as they are
// and with their "any" and polymorphic arguments made concrete. Each shadow, run by
// anyone but its owner, counts itself in a sequence (which a rollback does not undo) and
// raises. A superuser then works through the proxy with the schema on its search_path,
// writing its own SQL fully qualified (OPERATOR(pg_catalog.=), pg_catalog.count), as a
// careful superuser does on plain PostgreSQL, where that is enough: every statement must
// succeed and no shadow may run.

// hostileOperators and hostileFunctions are the names shadowed: every operator and
// function name in pgshard's internal SQL, and more.
var hostileOperators = []string{"=", "<>", "<", ">", "<=", ">=", "+", "-", "/", "||", "~~", "!~~"}

var hostileFunctions = []string{
	"count", "sum", "avg", "min", "max", "bool_and", "bool_or", "every", "string_agg", "array_agg",
	"format_type", "format", "to_regclass", "to_regtype", "to_regnamespace", "quote_ident", "quote_literal",
	"quote_nullable", "set_config", "current_setting", "pg_typeof", "unnest", "generate_series", "pg_notify",
	"pg_try_advisory_lock", "pg_advisory_unlock", "pg_advisory_xact_lock", "pg_advisory_lock",
	"pg_try_advisory_xact_lock", "hashtext", "nextval", "setval", "currval", "substr", "substring", "md5",
	"pg_total_relation_size", "pg_relation_size", "current_database", "now", "lower", "upper", "length",
	"array_length", "array_upper", "cardinality", "pg_get_expr", "pg_get_serial_sequence",
	"pg_get_constraintdef", "pg_get_indexdef", "pg_get_triggerdef", "pg_get_viewdef", "regexp_replace",
	"strpos", "position", "current_query", "pg_trigger_depth", "pg_describe_object", "jsonb_build_object",
	"json_build_object", "jsonb_agg", "json_agg", "array_to_string", "string_to_array", "encode", "decode",
	"convert_to", "convert_from", "int8send", "int4send", "int2send", "boolsend", "charsend", "float8send",
	"float4send", "numeric_send", "uuid_send", "date_send", "timestamp_send", "timestamptz_send",
	"has_table_privilege", "has_schema_privilege", "has_column_privilege", "pg_has_role", "row_to_json",
	"to_json", "to_jsonb", "concat", "concat_ws", "replace", "split_part", "left", "right", "btrim", "abs",
	"round", "trunc", "int8", "int4", "int2", "text", "float8", "numeric", "oid", "pg_get_userbyid",
	"obj_description", "pg_backend_pid", "txid_current", "pg_current_xact_id", "row_number",
	"pg_get_function_identity_arguments", "pg_table_is_visible", "pg_type_is_visible", "array_position",
	"array_remove", "array_append", "array_cat", "jsonb_array_elements", "json_array_elements",
	"jsonb_each", "pg_column_size", "pg_get_partkeydef", "pg_get_statisticsobjdef", "pg_get_ruledef",
	"pg_encoding_to_char", "pg_collation_for", "regexp_match", "regexp_matches", "overlay", "repeat",
	"version", "current_schema", "current_schemas", "session_user", "pg_sleep", "random", "clock_timestamp",
	"statement_timestamp", "transaction_timestamp", "isfinite", "hashint8", "hashint4", "hash_numeric",
}

// hostileTypes are the types of the operator shadows and of the concrete variants of
// polymorphic and "any" arguments.
var hostileTypes = []string{"oid", "integer", "bigint", "smallint", "text", "name", `"char"`, "regclass", "regtype",
	"numeric", "double precision", "boolean"}

// hostileDomains are the pg_catalog type names shadowed by domains.
var hostileDomains = []string{"text", "int8", "int4", "int2", "oid", "regclass", "regtype", "name", "numeric", "float8",
	"float4", "bool", "bytea", "date", "timestamptz", "timestamp", "bpchar", "varchar", "jsonb", "char", "uuid"}

func sqlArray(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return "ARRAY[" + strings.Join(q, ", ") + "]::text[]"
}

// plantShadows creates schema evil (owned by role) with its shadows on every server.
func plantShadows(t *testing.T, role, evil string) {
	t.Helper()
	gen := `DO $gen$
DECLARE
	evil text := ` + "'" + evil + "'" + `;
	ops text[] := ` + sqlArray(hostileOperators) + `;
	fns text[] := ` + sqlArray(hostileFunctions) + `;
	types text[] := ` + sqlArray(hostileTypes) + `;
	o text; l text; rt text; ty text; ret text; n int := 0; r record; args text; rets text; v text;
	variants text[];
BEGIN
	FOREACH o IN ARRAY ops LOOP
		FOREACH l IN ARRAY types LOOP
			FOREACH rt IN ARRAY types LOOP
				n := n + 1;
				SELECT oprresult::regtype::text INTO ret FROM pg_catalog.pg_operator
				WHERE oprname = o AND oprleft = l::regtype AND oprright = rt::regtype AND oprnamespace = 'pg_catalog'::regnamespace;
				IF ret IS NULL THEN
					ret := CASE WHEN o IN ('=', '<>', '<', '>', '<=', '>=', '~~', '!~~', '~', '~*', '&&', '@>', '<@') THEN 'boolean' ELSE l END;
				END IF;
				BEGIN
					EXECUTE format('CREATE FUNCTION %I.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$BEGIN PERFORM %I.hit(%L); RETURN NULL; END$f$',
						evil, n, l, rt, ret, evil, format('operator %s(%s, %s)', o, l, rt));
					EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.op_%s)', evil, o, l, rt, evil, n);
				EXCEPTION WHEN others THEN NULL;
				END;
			END LOOP;
		END LOOP;
	END LOOP;
	FOR r IN SELECT p.proname, p.prokind, p.proretset, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
	                p.prorettype::regtype::text AS ret
	         FROM pg_catalog.pg_proc p
	         WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY (fns) AND p.prokind IN ('f', 'a') LOOP
		variants := ARRAY[r.args || '|' || r.ret];
		IF r.args ~ '"any"|anyelement|anyarray|anynonarray|anycompatible|anyenum' OR r.ret ~ 'anyelement|anyarray|anycompatible' THEN
			FOREACH ty IN ARRAY types LOOP
				args := r.args; rets := r.ret;
				args := replace(args, 'VARIADIC "any"', 'VARIADIC ' || ty || '[]');
				FOREACH v IN ARRAY ARRAY['anycompatiblearray', 'anyarray'] LOOP
					args := replace(args, v, ty || '[]'); rets := replace(rets, v, ty || '[]');
				END LOOP;
				FOREACH v IN ARRAY ARRAY['anycompatiblenonarray', 'anycompatible', 'anynonarray', 'anyelement', 'anyenum', '"any"'] LOOP
					args := replace(args, v, ty); rets := replace(rets, v, ty);
				END LOOP;
				variants := variants || (args || '|' || rets);
			END LOOP;
		END IF;
		FOREACH v IN ARRAY variants LOOP
			n := n + 1;
			args := split_part(v, '|', 1); rets := split_part(v, '|', 2);
			BEGIN
				IF r.prokind = 'f' THEN
					EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s%s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$BEGIN PERFORM %I.hit(%L); RETURN%s; END$f$',
						evil, r.proname, args, CASE WHEN r.proretset THEN 'SETOF ' ELSE '' END, rets, evil,
						format('function %s(%s)', r.proname, args), CASE WHEN r.proretset THEN '' ELSE ' NULL' END);
				ELSE
					EXECUTE format('CREATE FUNCTION %I.sf_%s(%s%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$BEGIN PERFORM %I.hit(%L); RETURN NULL; END$f$',
						evil, n, rets, CASE WHEN args = '' THEN '' ELSE ', ' || args END, rets, evil, format('aggregate %s(%s)', r.proname, args));
					EXECUTE format('CREATE FUNCTION %I.ff_%s(%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$BEGIN PERFORM %I.hit(%L); RETURN NULL; END$f$',
						evil, n, rets, rets, evil, format('aggregate %s(%s)', r.proname, args));
					EXECUTE format('CREATE AGGREGATE %I.%I(%s) (SFUNC = %I.sf_%s, STYPE = %s, FINALFUNC = %I.ff_%s)',
						evil, r.proname, CASE WHEN args = '' THEN '*' ELSE args END, evil, n, rets, evil, n);
				END IF;
			EXCEPTION WHEN others THEN NULL;
			END;
		END LOOP;
	END LOOP;
END
$gen$`
	stmts := []string{
		fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION %s", evil, role),
		fmt.Sprintf("SET ROLE %s", role),
		fmt.Sprintf("CREATE SEQUENCE %s.hits", evil),
		fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO PUBLIC", evil),
		fmt.Sprintf("GRANT ALL ON SEQUENCE %s.hits TO PUBLIC", evil),
		fmt.Sprintf(`CREATE FUNCTION %[1]s.hit(what text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
	IF current_user OPERATOR(pg_catalog.<>) %[2]s::pg_catalog.name THEN
		PERFORM pg_catalog.nextval('%[1]s.hits');
		RAISE EXCEPTION 'hijacked: %% ran as %%', what, current_user;
	END IF;
END
$f$`, evil, "'"+role+"'"),
		fmt.Sprintf(`CREATE FUNCTION %[1]s.hitb(what text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
	PERFORM %[1]s.hit(what);
	RETURN true;
END
$f$`, evil),
		// Types: domains over pg_catalog's, named like them, whose check runs the hit.
		fmt.Sprintf(`DO $d$
DECLARE ty text;
BEGIN
	FOREACH ty IN ARRAY %[2]s LOOP
		EXECUTE pg_catalog.format('CREATE DOMAIN %%I.%%I AS pg_catalog.%%I CHECK (%%I.hitb(%%L))', %[1]s, ty, ty, %[1]s, 'type ' || ty);
	END LOOP;
END
$d$`, "'"+evil+"'", sqlArray(hostileDomains)),
		gen,
		"RESET ROLE",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(env.C.Servers()))
	for i, s := range env.C.Servers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, s.URL("postgres"))
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(context.Background())
			for _, sql := range stmts {
				if _, err := conn.Exec(ctx, sql); err != nil {
					errs[i] = fmt.Errorf("%s on %s: %w", trunc(sql), s.Name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range env.C.Servers() {
			s.Exec(context.Background(), "postgres", "DROP SCHEMA "+evil+" CASCADE")
		}
	})
}

// shadowHits is how many times a shadow ran as someone else, on every server.
func shadowHits(t *testing.T, evil string) int64 {
	t.Helper()
	var total int64
	for _, s := range env.C.Servers() {
		conn := connectServer(t, s)
		var last int64
		var called bool
		if err := conn.QueryRow(context.Background(), "SELECT last_value, is_called FROM "+evil+".hits").Scan(&last, &called); err != nil {
			t.Fatalf("read %s.hits on %s: %v", evil, s.Name, err)
		}
		if called {
			total += last
		}
		conn.Close(context.Background())
	}
	return total
}

// qualifiedWorkload runs, on a superuser session through the proxy, statements of every
// shape pgshard handles, each writing its own operators and functions qualified. It
// returns the failures.
func qualifiedWorkload(ctx context.Context, conn *pgx.Conn, a, b string) []string {
	eq := "OPERATOR(pg_catalog.=)"
	var fails []string
	try := func(sql string) {
		if _, err := conn.Exec(ctx, sql); err != nil {
			fails = append(fails, fmt.Sprintf("%s: %v", sql, err))
		}
	}
	stmts := []string{
		// Rows of an earlier round go first.
		fmt.Sprintf("DELETE FROM %s WHERE id OPERATOR(pg_catalog.>) 100", a),
		fmt.Sprintf("DELETE FROM %s WHERE id OPERATOR(pg_catalog.>) 100", b),
		// Single-shard reads and writes, routed by key.
		fmt.Sprintf("SELECT * FROM %s WHERE id %s 3", a, eq),
		fmt.Sprintf("INSERT INTO %s (id, v, n, f) VALUES (101, 'x', 1, 0.5), (102, 'y', 2, 1.5)", a),
		fmt.Sprintf("INSERT INTO %s (id, v, n, f, at) VALUES (103, 'z', 3, 2.5, pg_catalog.now())", a),
		// Values the coordinator evaluates, sent to the shards as typed literals.
		fmt.Sprintf("INSERT INTO %s (id, v, n, d) VALUES (106, pg_catalog.lower('X'), pg_catalog.length('abc'), pg_catalog.round(1.25, 1))", a),
		fmt.Sprintf("UPDATE %s SET v = pg_catalog.upper(v), arr = pg_catalog.array_append(arr, 3) WHERE id %s 106", a, eq),
		fmt.Sprintf("UPDATE %s SET n = 7 WHERE id %s 101", a, eq),
		fmt.Sprintf("UPDATE %s SET v = 'w' WHERE id %s 102 RETURNING *", a, eq),
		fmt.Sprintf("DELETE FROM %s WHERE id %s 103", a, eq),
		fmt.Sprintf("INSERT INTO %s (id, v, n) VALUES (104, 'c', 4) ON CONFLICT (id) DO UPDATE SET n = excluded.n", a),
		// Multi-shard writes.
		fmt.Sprintf("UPDATE %s SET f = 2.0 WHERE n %s 7", a, eq),
		fmt.Sprintf("DELETE FROM %s WHERE n %s 99", a, eq),
		fmt.Sprintf("UPDATE %s AS x SET n = y.n FROM %s AS y WHERE x.id %s y.id", a, b, eq),
		fmt.Sprintf("INSERT INTO %s (id, v, n) SELECT id OPERATOR(pg_catalog.+) 1000, v, n FROM %s", b, a),
		fmt.Sprintf("DELETE FROM %s WHERE id OPERATOR(pg_catalog.>) 1000", b),
		// Gathers and merges of every shape.
		fmt.Sprintf("SELECT * FROM %s", a),
		fmt.Sprintf("SELECT * FROM %s ORDER BY id", a),
		fmt.Sprintf("SELECT * FROM %s ORDER BY v DESC, id LIMIT 3", a),
		fmt.Sprintf("SELECT * FROM %s ORDER BY id LIMIT 2 OFFSET 1", a),
		fmt.Sprintf("SELECT pg_catalog.count(*), pg_catalog.count(n), pg_catalog.sum(n), pg_catalog.sum(f), pg_catalog.avg(n), pg_catalog.avg(f), pg_catalog.min(id), pg_catalog.max(id), pg_catalog.bool_and(b), pg_catalog.bool_or(b), pg_catalog.min(v) FROM %s", a),
		fmt.Sprintf("SELECT pg_catalog.count(*) FROM %s WHERE n OPERATOR(pg_catalog.>) 1", a),
		fmt.Sprintf("SELECT n, pg_catalog.count(*), pg_catalog.sum(f), pg_catalog.avg(n), pg_catalog.max(id) FROM %s GROUP BY n ORDER BY n", a),
		fmt.Sprintf("SELECT n, pg_catalog.count(DISTINCT v) FROM %s GROUP BY n ORDER BY n", a),
		fmt.Sprintf("SELECT n, pg_catalog.count(*) FROM %s GROUP BY n HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 ORDER BY 2 DESC, 1 LIMIT 2", a),
		fmt.Sprintf("SELECT DISTINCT n FROM %s ORDER BY n", a),
		fmt.Sprintf("SELECT DISTINCT ON (n) n, id FROM %s ORDER BY n, id", a),
		fmt.Sprintf("SELECT pg_catalog.count(DISTINCT n) FROM %s", a),
		fmt.Sprintf("SELECT pg_catalog.string_agg(v, ',' ORDER BY id) FROM %s", a),
		fmt.Sprintf("SELECT id, pg_catalog.row_number() OVER (ORDER BY id) FROM %s", a),
		fmt.Sprintf("SELECT x.id, y.v FROM %s x JOIN %s y ON x.n %s y.n ORDER BY 1, 2", a, b, eq),
		fmt.Sprintf("SELECT * FROM %s WHERE id %s ANY (SELECT id FROM %s) ORDER BY id", a, eq, b),
		fmt.Sprintf("WITH w AS (SELECT * FROM %s) SELECT pg_catalog.count(*) FROM w", a),
		fmt.Sprintf("SELECT id FROM %s UNION SELECT id FROM %s ORDER BY 1", a, b),
		fmt.Sprintf("SELECT * FROM %s WHERE id %s 1 FOR UPDATE", a, eq),
		fmt.Sprintf("SELECT rec FROM %s rec ORDER BY rec.id", a),
		fmt.Sprintf("SELECT arr, js FROM %s ORDER BY id", a),
		// EXPLAIN.
		fmt.Sprintf("EXPLAIN SELECT pg_catalog.count(*) FROM %s", a),
		fmt.Sprintf("EXPLAIN SELECT * FROM %s WHERE id %s 1", a, eq),
		// Cursors.
		"BEGIN",
		fmt.Sprintf("DECLARE c1 CURSOR FOR SELECT * FROM %s ORDER BY id", a),
		"FETCH 2 FROM c1",
		"CLOSE c1",
		fmt.Sprintf("DECLARE c2 CURSOR FOR SELECT n, pg_catalog.count(*) FROM %s GROUP BY n", a),
		"FETCH ALL FROM c2",
		fmt.Sprintf("UPDATE %s SET n = 2 WHERE id %s 2", a, eq),
		fmt.Sprintf("INSERT INTO %s (id, v, n) VALUES (105, 'q', 5)", b),
		"COMMIT",
		// Settings pgshard carries to the shards.
		"SET statement_timeout = '1min'",
		"RESET statement_timeout",
		// Admin statements and functions.
		"SHOW SHARDS " + a,
		"SHOW NODES",
		"SHOW PLACEMENTS",
		"SHOW REPAIRS",
		"SHOW POOLS",
	}
	for _, s := range stmts {
		try(s)
	}
	return fails
}

// hostileTables creates two distributed tables with rows of every shape.
func hostileTables(t *testing.T, conn *pgx.Conn) (a, b string) {
	t.Helper()
	a, b = uniqueName("hsp_a"), uniqueName("hsp_b")
	for _, tbl := range []string{a, b} {
		mustExec(t, conn,
			fmt.Sprintf("CREATE TABLE %s (id bigint PRIMARY KEY, v text, n integer, f double precision, b boolean DEFAULT true, at timestamptz, arr integer[] DEFAULT '{1,2}', js jsonb DEFAULT '{\"a\": 1}', d numeric DEFAULT 1.5)", tbl),
			fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", tbl),
			fmt.Sprintf("SELECT master_create_worker_shards('%s', 4, 2)", tbl),
			fmt.Sprintf("INSERT INTO %s (id, v, n, f) VALUES (1, 'a', 1, 1.5), (2, 'b', 2, 2.5), (3, 'c', 3, 3.5), (4, 'd', 1, 4.5), (5, 'e', 2, 5.5), (6, 'f', 3, 6.5)", tbl),
		)
	}
	return a, b
}

// copyWorkload runs COPY in and out.
func copyWorkload(ctx context.Context, conn *pgx.Conn, a string) []string {
	var fails []string
	pc := conn.PgConn()
	if _, err := pc.CopyFrom(ctx, strings.NewReader("201\tca\t1\n202\tcb\t2\n203\tcc\t3\n"), "COPY "+a+" (id, v, n) FROM STDIN"); err != nil {
		fails = append(fails, "COPY FROM STDIN: "+err.Error())
	}
	if _, err := pc.CopyFrom(ctx, strings.NewReader("id,v,n\n204,cd,4\n"), "COPY "+a+" (id, v, n) FROM STDIN WITH (FORMAT csv, HEADER)"); err != nil {
		fails = append(fails, "COPY FROM STDIN csv: "+err.Error())
	}
	var out strings.Builder
	if _, err := pc.CopyTo(ctx, &out, "COPY "+a+" TO STDOUT"); err != nil {
		fails = append(fails, "COPY TO STDOUT: "+err.Error())
	}
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT id, v FROM "+a+" ORDER BY id) TO STDOUT WITH (FORMAT binary)"); err != nil {
		fails = append(fails, "COPY (SELECT) TO STDOUT: "+err.Error())
	}
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT n, pg_catalog.count(*) FROM "+a+" GROUP BY n) TO STDOUT"); err != nil {
		fails = append(fails, "COPY (SELECT GROUP BY) TO STDOUT: "+err.Error())
	}
	return fails
}

// preparedWorkload runs statements through the extended protocol with parameters.
func preparedWorkload(ctx context.Context, p *testproxy.Proxy, searchPath string, a string) []string {
	var fails []string
	conn, err := pgx.Connect(ctx, p.URL())
	if err != nil {
		return []string{"connect: " + err.Error()}
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET search_path = "+searchPath); err != nil {
		return []string{"SET search_path: " + err.Error()}
	}
	eq := "OPERATOR(pg_catalog.=)"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{fmt.Sprintf("SELECT * FROM %s WHERE id %s $1", a, eq), []any{int64(2)}},
		{fmt.Sprintf("SELECT * FROM %s WHERE id %s $1::pg_catalog.int8", a, eq), []any{"3"}},
		{fmt.Sprintf("INSERT INTO %s (id, v, n) VALUES ($1, $2, $3)", a), []any{int64(301), "p", int32(3)}},
		{fmt.Sprintf("UPDATE %s SET v = $2 WHERE id %s $1", a, eq), []any{int64(301), "pp"}},
		{fmt.Sprintf("SELECT pg_catalog.count(*), pg_catalog.sum(n) FROM %s WHERE n OPERATOR(pg_catalog.>) $1", a), []any{int32(0)}},
		{fmt.Sprintf("SELECT * FROM %s ORDER BY id LIMIT $1", a), []any{int64(2)}},
		{fmt.Sprintf("DELETE FROM %s WHERE id %s $1", a, eq), []any{int64(301)}},
	} {
		rows, err := conn.Query(ctx, q.sql, q.args...)
		if err == nil {
			for rows.Next() {
			}
			rows.Close()
			err = rows.Err()
		}
		if err != nil {
			fails = append(fails, fmt.Sprintf("%s (extended): %v", q.sql, err))
		}
	}
	return fails
}

func runHostileWorkload(t *testing.T, p *testproxy.Proxy, searchPath, a, b string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, simpleURL(p))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET search_path = "+searchPath); err != nil {
		t.Fatal(err)
	}
	fails := qualifiedWorkload(ctx, conn, a, b)
	fails = append(fails, copyWorkload(ctx, conn, a)...)
	fails = append(fails, preparedWorkload(ctx, p, searchPath, a)...)
	return fails
}

func reportHijacks(t *testing.T, evil, what string, fails []string) {
	t.Helper()
	for _, f := range fails {
		t.Errorf("%s: %s", what, f)
	}
	if n := shadowHits(t, evil); n > 0 {
		t.Errorf("%s: the hostile role's shadows ran %d times as another role", what, n)
	}
}

// TestHostileSearchPath: a superuser's session with a hostile schema on its search_path,
// after pg_catalog (only shadows that match better than pg_catalog's own can win) and
// before it (identical shadows win too); then a proxy whose coordinator role has the
// hostile schema first on its search_path (as ALTER ROLE ... SET search_path would give
// it), so that pgshard's own connections (metadata, leases, functions, DDL, repair) get
// it too.
func TestHostileSearchPath(t *testing.T) {
	role := unprivilegedRole(t, "hsp_alice")
	evil := role + "_evil"
	conn := connect(t)
	a, b := hostileTables(t, conn)
	start := time.Now()
	plantShadows(t, role, evil)
	t.Logf("shadows planted in %v", time.Since(start))

	t.Run("after pg_catalog", func(t *testing.T) {
		fails := runHostileWorkload(t, env.P, "public, "+evil, a, b)
		reportHijacks(t, evil, "search_path after pg_catalog", fails)
	})
	t.Run("before pg_catalog", func(t *testing.T) {
		fails := runHostileWorkload(t, env.P, evil+", pg_catalog, public", a, b)
		reportHijacks(t, evil, "search_path before pg_catalog", fails)
	})
	// Shadows on the workers only: what the coordinator resolves (a type's name,
	// printed for a literal that goes to the shards) must not change meaning there.
	t.Run("workers only", func(t *testing.T) {
		evil2 := evil + "_w"
		ctx := context.Background()
		for _, s := range env.C.Workers {
			for _, sql := range []string{
				fmt.Sprintf("CREATE SCHEMA %s AUTHORIZATION %s", evil2, role),
				fmt.Sprintf(`DO $d$
DECLARE ty text;
BEGIN
	FOREACH ty IN ARRAY %[2]s LOOP
		EXECUTE pg_catalog.format('CREATE DOMAIN %%I.%%I AS pg_catalog.%%I CHECK (%%I.hitb(%%L))', %[1]s, ty, ty, %[3]s, 'worker type ' || ty);
	END LOOP;
END
$d$`, "'"+evil2+"'", sqlArray(hostileDomains), "'"+evil+"'"),
				fmt.Sprintf("ALTER SCHEMA %s OWNER TO %s", evil2, role),
			} {
				if _, err := s.Exec(ctx, "postgres", sql); err != nil {
					t.Fatalf("%s on %s: %v", trunc(sql), s.Name, err)
				}
			}
		}
		t.Cleanup(func() {
			for _, s := range env.C.Workers {
				s.Exec(context.Background(), "postgres", "DROP SCHEMA "+evil2+" CASCADE")
			}
		})
		fails := runHostileWorkload(t, env.P, evil2+", pg_catalog, public", a, b)
		reportHijacks(t, evil, "search_path with the workers' own schema first", fails)
	})
	t.Run("own connections", func(t *testing.T) {
		ownConnections(t, evil, a, b)
	})
}

func ownConnections(t *testing.T, evil, a, b string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	coordURL := env.C.Coordinator.URL("postgres")
	sep := "?"
	if strings.Contains(coordURL, "?") {
		sep = "&"
	}
	p, err := testproxy.Start(ctx, coordURL+sep+"options="+strings.ReplaceAll(url.QueryEscape("-c search_path="+evil+",pg_catalog,public"), "+", "%20"), testproxy.Options{})
	if err != nil {
		t.Fatalf("proxy with the hostile schema first on its role's search_path: %v", err)
	}
	defer p.Stop()

	fails := runHostileWorkload(t, p, evil+", pg_catalog, public", a, b)

	pc, err := pgx.Connect(ctx, simpleURL(p))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	c := "public." + uniqueName("hsp_c") // the first schema on the path is the hostile one
	try := func(sql string) {
		if _, err := pc.Exec(ctx, sql); err != nil {
			fails = append(fails, fmt.Sprintf("%s: %v", sql, err))
		}
	}
	try(fmt.Sprintf("CREATE TABLE %s (id integer PRIMARY KEY, v pg_catalog.text NOT NULL DEFAULT 'x' CHECK (v OPERATOR(pg_catalog.<>) ''), n bigint GENERATED BY DEFAULT AS IDENTITY, d pg_catalog.date DEFAULT pg_catalog.now())", c))
	try(fmt.Sprintf("CREATE INDEX ON %s (pg_catalog.lower(v))", c))
	try(fmt.Sprintf("SELECT master_create_distributed_table('%s', 'id')", c))
	try(fmt.Sprintf("SELECT master_create_worker_shards('%s', 2, 2)", c))
	try(fmt.Sprintf("INSERT INTO %s (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')", c))
	try(fmt.Sprintf("SELECT pg_catalog.count(*) FROM %s", c))
	// Repair: a placement marked inactive, then repaired on the proxy's connections.
	var shard int64
	err = connectServer(t, env.C.Coordinator).QueryRow(ctx, fmt.Sprintf(`UPDATE pgs_distribution_metadata.shard_placement SET shard_state = 3
		WHERE id = (SELECT min(p.id) FROM pgs_distribution_metadata.shard_placement p JOIN pgs_distribution_metadata.shard s ON s.id = p.shard_id
		            WHERE s.relation_id = '%s'::regclass)
		RETURNING shard_id`, c)).Scan(&shard)
	if err != nil {
		reportHijacks(t, evil, "coordinator role's search_path", fails)
		t.Fatalf("mark a placement inactive: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // the proxies reload on the notification
	try(fmt.Sprintf("REPAIR SHARD %d", shard))
	try(fmt.Sprintf("SELECT pg_catalog.count(*) FROM %s", c))
	try("DROP TABLE " + c)
	try("DROP TABLE " + b)
	reportHijacks(t, evil, "coordinator role's search_path", fails)
}
