package proxy

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/control"
	"github.com/pgshard/pgshard/router"
)

// SHOW DRIFT [table] [WITH CHECKSUM]: the check users run to see whether the placements of
// distributed tables still match the coordinator's tables. For every finalized placement
// it reads the shard table's definition from its worker's catalogs and compares it with the
// coordinator's table, item by item (each column with its position, type and type
// modifier, collation, NOT NULL and default; each CHECK, PRIMARY KEY, UNIQUE and EXCLUDE
// constraint; each other index; owner, privileges of the table and of each column, row
// security, storage parameters, triggers, the definitions of their functions, and
// policies), with the shard suffixes (_<shard id>) of constraint and
// index names stripped. Only what a shard is meant to carry is compared: a coordinator
// default that is not a constant (nextval, now()) is evaluated by pgshard and is not on
// the shards, nor are foreign keys (nor pgshard's own triggers on the coordinator's
// prototype). It answers one row per difference (table,
// shard, placement's node, the item, the coordinator's value, the placement's; NULL where
// one side lacks the item) and no rows when everything agrees. WITH CHECKSUM also compares
// each placement's rows (their count and an order-independent digest, as repair checks a
// copy) with the shard's first finalized placement, reported as item "contents". A
// placement whose node cannot be reached, or whose shard table is missing, is reported
// as item "table".
//
// Superusers only (it shows the workers' addresses, as SHOW PLACEMENTS). It reads the
// workers over connections of its own, as the client's user, with pgshard's search_path
// and fixed output settings (so that both sides print names and values alike).

// driftDefinitionSQL lists a relation's definition as (item, value) rows: $1 is its OID,
// $2 the suffix its constraint and index names carry ("" on the coordinator, "_<shard id>"
// on a placement), $3 whether it is the coordinator's table (whose non-constant defaults
// and foreign keys are not on the shards).
const driftDefinitionSQL = `
WITH r AS (SELECT $1::pg_catalog.oid AS oid, $2::pg_catalog.text AS suffix, $3::pg_catalog.bool AS coord),
strip AS (SELECT r.*, pg_catalog.length(r.suffix) AS n FROM r)
SELECT 'column ' || pg_catalog.quote_ident(a.attname),
       (pg_catalog.row_number() OVER (ORDER BY a.attnum))::pg_catalog.text || ': ' ||
       pg_catalog.format_type(a.atttypid, a.atttypmod) ||
       CASE WHEN a.attcollation <> t.typcollation THEN
            ' COLLATE ' || (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
                            FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                            WHERE co.oid = a.attcollation) ELSE '' END ||
       CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END ||
       CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) || ') STORED'
            WHEN d.adbin IS NOT NULL AND (NOT s.coord OR d.adbin::pg_catalog.text LIKE '{CONST %') AND a.attidentity = ''
            THEN ' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) ELSE '' END
FROM strip s
JOIN pg_catalog.pg_attribute a ON a.attrelid = s.oid
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'privileges of column ' || pg_catalog.quote_ident(a.attname), a.attacl::pg_catalog.text
FROM strip s JOIN pg_catalog.pg_attribute a ON a.attrelid = s.oid
WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
UNION ALL
SELECT 'constraint ' || pg_catalog.quote_ident(CASE WHEN s.n > 0 AND co.contype <> 'c' AND pg_catalog.right(co.conname::pg_catalog.text, s.n) = s.suffix
                                                    THEN pg_catalog.left(co.conname::pg_catalog.text, -s.n) ELSE co.conname::pg_catalog.text END),
       pg_catalog.pg_get_constraintdef(co.oid)
FROM strip s JOIN pg_catalog.pg_constraint co ON co.conrelid = s.oid
WHERE co.contype IN ('c', 'p', 'u', 'x')
UNION ALL
SELECT 'foreign key ' || pg_catalog.quote_ident(co.conname),
       CASE WHEN s.coord THEN x.def ELSE pg_catalog.regexp_replace(x.def, 'REFERENCES (.+?)_[0-9]+\(', 'REFERENCES \1(') END
FROM strip s JOIN pg_catalog.pg_constraint co ON co.conrelid = s.oid
CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_constraintdef(co.oid) AS def) x
WHERE co.contype = 'f'
  -- On the coordinator, those to distributed tables (whose prototypes carry pgshard's
  -- triggers): the shards carry no others.
  AND (NOT s.coord OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg
                              WHERE tg.tgrelid = co.confrelid AND tg.tgname = 'pgshard_refuse_writes'))
UNION ALL
SELECT 'index ' || pg_catalog.quote_ident(CASE WHEN s.n > 0 AND pg_catalog.right(ic.relname::pg_catalog.text, s.n) = s.suffix
                                               THEN pg_catalog.left(ic.relname::pg_catalog.text, -s.n) ELSE ic.relname::pg_catalog.text END),
       pg_catalog.ltrim(CASE WHEN i.indisunique THEN 'UNIQUE' ELSE '' END ||
         pg_catalog.substr(pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.strpos(pg_catalog.pg_get_indexdef(i.indexrelid), ' USING ')) ||
         CASE WHEN NOT i.indisvalid THEN ' (INVALID)' ELSE '' END)
FROM strip s JOIN pg_catalog.pg_index i ON i.indrelid = s.oid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = i.indexrelid AND co.conrelid = s.oid)
UNION ALL
SELECT 'owner', pg_catalog.pg_get_userbyid(c.relowner) FROM strip s JOIN pg_catalog.pg_class c ON c.oid = s.oid
UNION ALL
SELECT 'privileges', coalesce(c.relacl::pg_catalog.text, '(default)') FROM strip s JOIN pg_catalog.pg_class c ON c.oid = s.oid
UNION ALL
SELECT 'row level security', CASE WHEN c.relforcerowsecurity THEN 'forced' WHEN c.relrowsecurity THEN 'enabled' ELSE 'disabled' END
FROM strip s JOIN pg_catalog.pg_class c ON c.oid = s.oid
UNION ALL
SELECT 'storage parameters', c.reloptions::pg_catalog.text FROM strip s JOIN pg_catalog.pg_class c ON c.oid = s.oid
WHERE c.reloptions IS NOT NULL
UNION ALL
SELECT 'trigger ' || pg_catalog.quote_ident(tg.tgname),
       pg_catalog.left(x.def, pg_catalog.strpos(x.def, ' ON ')) || '...' || pg_catalog.substr(x.def, pg_catalog.strpos(x.def, ' FOR EACH ')) ||
       CASE tg.tgenabled WHEN 'D' THEN ' (disabled)' WHEN 'R' THEN ' (replica)' WHEN 'A' THEN ' (always)' ELSE '' END
FROM strip s JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = s.oid
CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_triggerdef(tg.oid) AS def) x
WHERE NOT tg.tgisinternal AND tg.tgname::pg_catalog.text NOT LIKE 'pgshard\_%'
UNION ALL
SELECT 'function of trigger ' || pg_catalog.quote_ident(tg.tgname), 'md5 ' || pg_catalog.md5(pg_catalog.pg_get_functiondef(tg.tgfoid))
FROM strip s JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = s.oid
JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid
WHERE NOT tg.tgisinternal AND tg.tgname::pg_catalog.text NOT LIKE 'pgshard\_%'
  AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace
UNION ALL
SELECT 'policy ' || pg_catalog.quote_ident(po.polname),
       CASE WHEN po.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END || ' FOR ' || po.polcmd::pg_catalog.text ||
       ' TO ' || (SELECT pg_catalog.string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r)) END, ', ' ORDER BY 1)
                  FROM pg_catalog.unnest(po.polroles) r) ||
       coalesce(' USING (' || pg_catalog.pg_get_expr(po.polqual, po.polrelid) || ')', '') ||
       coalesce(' WITH CHECK (' || pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid) || ')', '')
FROM strip s JOIN pg_catalog.pg_policy po ON po.polrelid = s.oid`

// driftChecksumSQL digests a table's rows (%s: its qualified name): their count and the
// sum of the first 64 bits of each row text's md5, as repair verifies a copy.
const driftChecksumSQL = `SELECT pg_catalog.count(*)::pg_catalog.text || '/' || COALESCE(pg_catalog.sum(('x' OPERATOR(pg_catalog.||)
	pg_catalog.substr(pg_catalog.md5(t::pg_catalog.text), 1, 16))::pg_catalog.bit(64)::pg_catalog.int8), 0)::pg_catalog.text FROM %s t`

// driftDiff is one row of SHOW DRIFT.
type driftDiff struct {
	table       string
	shard       int64
	node        metadata.Node
	item        string
	coord, here *string
}

// showDrift answers SHOW DRIFT (see above) for the statement cmd.
func (ss *session) showDrift(ctx context.Context, env *control.Env, cmd *router.AdminCommand) error {
	su, err := env.Client.Query(ctx, "SELECT pg_catalog.current_setting('is_superuser')", nil)
	if err != nil {
		return err
	}
	if len(su) != 1 || string(su[0][0]) != "on" {
		return pgerr.New("42501", "permission denied to run SHOW DRIFT").WithDetail("Only superusers may see the workers' addresses.")
	}
	snap := ss.srv.cache.Load()
	tables := snap.Tables()
	if cmd.Arg != "" {
		// The name resolves as PostgreSQL resolves it in the client's session.
		rows, err := env.Client.Query(ctx, "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid", [][]byte{[]byte(cmd.Arg)})
		if err != nil {
			return err
		}
		var t *metadata.Table
		if len(rows) == 1 && rows[0][0] != nil {
			oid, _ := strconv.ParseUint(string(rows[0][0]), 10, 32)
			t = snap.TableByOID(uint32(oid))
		}
		if t == nil {
			return pgerr.New(pgerr.UndefinedTable, "distributed table %q does not exist", cmd.Arg)
		}
		tables = []*metadata.Table{t}
	}
	coord, err := ss.driftConn(ctx, nil)
	if err != nil {
		return err
	}
	defer coord.Close(context.Background())
	want := map[uint32]map[string]string{}
	for _, t := range tables {
		def, err := driftDefinition(ctx, coord, strconv.FormatUint(uint64(t.OID), 10), "", true)
		if err != nil {
			return err
		}
		want[t.OID] = def
	}
	// The placements, by node: one connection to each.
	type place struct {
		t  *metadata.Table
		sh *metadata.Shard
	}
	byNode := map[metadata.Node][]place{}
	var nodes []metadata.Node
	for _, t := range tables {
		for _, sh := range t.Shards {
			for _, p := range sh.Finalized() {
				if byNode[p.Node] == nil {
					nodes = append(nodes, p.Node)
				}
				byNode[p.Node] = append(byNode[p.Node], place{t, sh})
			}
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Less(nodes[j]) })
	var diffs []driftDiff
	sums := map[int64]map[metadata.Node]string{} // shard -> node -> checksum
	for _, n := range nodes {
		wc, err := ss.driftConn(ctx, &n)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			// A node that cannot be reached: its placements are reported, the rest checked.
			for _, p := range byNode[n] {
				diffs = append(diffs, driftDiff{p.t.QualifiedName(), p.sh.ID, n, "table",
					ptr(router.ShardName(p.t.Schema, p.t.Name, p.sh.ID)), ptr("(unreachable: " + err.Error() + ")")})
			}
			continue
		}
		for _, p := range byNode[n] {
			name := router.ShardName(p.t.Schema, p.t.Name, p.sh.ID)
			rows, err := driftQuery(ctx, wc, "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.text", name)
			if err != nil {
				wc.Close(context.Background())
				return err
			}
			if len(rows) != 1 || rows[0][0] == nil {
				missing := "(missing)"
				diffs = append(diffs, driftDiff{p.t.QualifiedName(), p.sh.ID, n, "table", ptr(name), &missing})
				continue
			}
			got, err := driftDefinition(ctx, wc, string(rows[0][0]), "_"+strconv.FormatInt(p.sh.ID, 10), false)
			if err != nil {
				wc.Close(context.Background())
				return err
			}
			diffs = append(diffs, compareDefinitions(p.t.QualifiedName(), p.sh.ID, n, want[p.t.OID], got)...)
			if cmd.Checksum {
				rows, err := driftQuery(ctx, wc, fmt.Sprintf(driftChecksumSQL, name))
				if err != nil {
					wc.Close(context.Background())
					return err
				}
				if sums[p.sh.ID] == nil {
					sums[p.sh.ID] = map[metadata.Node]string{}
				}
				sums[p.sh.ID][n] = string(rows[0][0])
			}
		}
		wc.Close(context.Background())
	}
	if cmd.Checksum {
		for _, t := range tables {
			for _, sh := range t.Shards {
				fin := sh.Finalized()
				if len(fin) < 2 {
					continue
				}
				ref := fin[0].Node
				refSum, ok := sums[sh.ID][ref]
				for _, p := range fin[1:] {
					if s, ok2 := sums[sh.ID][p.Node]; ok && ok2 && s != refSum {
						diffs = append(diffs, driftDiff{t.QualifiedName(), sh.ID, p.Node,
							"contents (rows/digest; coordinator column: placement on " + fmtNode(ref) + ")", ptr(refSum), ptr(s)})
					}
				}
			}
		}
	}
	sort.SliceStable(diffs, func(i, j int) bool {
		a, b := diffs[i], diffs[j]
		if a.table != b.table {
			return a.table < b.table
		}
		if a.shard != b.shard {
			return a.shard < b.shard
		}
		return a.node.Less(b.node)
	})
	out := make([][][]byte, 0, len(diffs))
	for _, d := range diffs {
		out = append(out, [][]byte{[]byte(d.table), []byte(strconv.FormatInt(d.shard, 10)), []byte(d.node.Name),
			[]byte(strconv.Itoa(d.node.Port)), []byte(d.item), bytesOf(d.coord), bytesOf(d.here)})
	}
	env.Client.Rows("SHOW", control.Fields("SHOW DRIFT"), out)
	return nil
}

func ptr(s string) *string { return &s }

func bytesOf(s *string) []byte {
	if s == nil {
		return nil
	}
	return []byte(*s)
}

// compareDefinitions lists the items whose values differ between the coordinator's
// definition and a placement's, in item order.
func compareDefinitions(table string, shard int64, node metadata.Node, want, got map[string]string) []driftDiff {
	items := make([]string, 0, len(want)+len(got))
	for k := range want {
		items = append(items, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			items = append(items, k)
		}
	}
	sort.Strings(items)
	var out []driftDiff
	for _, k := range items {
		w, wok := want[k]
		g, gok := got[k]
		if wok && gok && w == g {
			continue
		}
		d := driftDiff{table: table, shard: shard, node: node, item: k}
		if wok {
			d.coord = ptr(w)
		}
		if gok {
			d.here = ptr(g)
		}
		out = append(out, d)
	}
	return out
}

// driftConn connects, as the client's user, to the coordinator (node nil) or a worker, with
// pgshard's search_path and output settings that print values alike on every server.
func (ss *session) driftConn(ctx context.Context, node *metadata.Node) (*pgconn.PgConn, error) {
	cfg := ss.srv.pools.ConnConfig(ss.srv.coordKey(ss.user))
	if node != nil {
		cfg = ss.srv.pools.ConnConfig(ss.srv.workerKey(*node, ss.user))
	}
	for k, v := range map[string]string{"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "TimeZone": "UTC",
		"extra_float_digits": "3", "bytea_output": "hex", "application_name": "pgshard drift", "row_security": "off",
		"search_path": "pg_catalog, pg_temp"} {
		cfg.RuntimeParams[k] = v
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil && node == nil {
		return nil, coordUnavailable(err)
	}
	return c, err
}

// driftQuery runs one query with text parameters and returns its rows.
func driftQuery(ctx context.Context, c *pgconn.PgConn, sql string, args ...string) ([][][]byte, error) {
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := c.ExecParams(ctx, sql, params, nil, nil, nil).Read()
	return res.Rows, res.Err
}

// driftDefinition reads relation oid's definition (driftDefinitionSQL) as item -> value.
func driftDefinition(ctx context.Context, c *pgconn.PgConn, oid, suffix string, coord bool) (map[string]string, error) {
	flag := "false"
	if coord {
		flag = "true"
	}
	rows, err := driftQuery(ctx, c, driftDefinitionSQL, oid, suffix, flag)
	if err != nil {
		return nil, err
	}
	def := make(map[string]string, len(rows))
	for _, r := range rows {
		def[string(r[0])] = string(r[1])
	}
	return def, nil
}
