package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/metadata/pgerr"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/repair"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/pghash"
)

// voidOID is the type of the functions' results (they return void, like pg_shard's).
const voidOID = 2278

// execFunction runs a statement calling pgshard's SQL functions: the coordinator evaluates
// the rest of the query (FROM, WHERE, the arguments); each function runs once per row.
func (ss *session) execFunction(ctx context.Context, st *router.Statement, in *router.Input, prm *params) error {
	if ss.tx != 'I' {
		return pgerr.New(pgerr.ActiveSQLTransaction, "%s cannot run inside a transaction block", st.Calls[0].Func)
	}
	c, err := ss.coordConn(ctx)
	if err != nil {
		return err
	}
	argSQL := ss.render(st.ArgQuery, in, nil, nil)
	var args [][]byte
	var oids []uint32
	if prm != nil {
		args, oids = prm.values, prm.oids
	}
	// Describe the argument query's columns and fetch its rows.
	w := c.Writer()
	w.Msg(&pgproto3.Parse{Query: argSQL, ParameterOIDs: oids})
	w.Msg(&pgproto3.Bind{Parameters: args})
	w.Msg(&pgproto3.Describe{ObjectType: 'P'})
	w.Msg(&pgproto3.Execute{})
	w.Msg(&pgproto3.Sync{})
	if err := ss.sendTo(c); err != nil {
		return err
	}
	rows, desc, err := collectRows(ctx, c)
	if err == nil && len(rows) > 0 && len(rows[0]) < len(desc.Fields) {
		err = pgerr.New(pgerr.InternalError, "short row from the argument query")
	}
	ss.stopRunning(c)
	if err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			e.Position = 0
		}
		return err
	}
	out := &pgproto3.RowDescription{}
	for _, col := range st.Columns {
		if col.Call >= 0 {
			out.Fields = append(out.Fields, pgproto3.FieldDescription{Name: []byte(col.Name), DataTypeOID: voidOID, DataTypeSize: 4, TypeModifier: -1})
		} else {
			f := desc.Fields[col.ArgIndex]
			f.Name = []byte(col.Name)
			out.Fields = append(out.Fields, f)
		}
	}
	if !ss.call.extended {
		ss.w.Msg(out)
	}
	for _, row := range rows {
		dr := &pgproto3.DataRow{}
		for _, col := range st.Columns {
			if col.Call < 0 {
				dr.Values = append(dr.Values, row[col.ArgIndex])
				continue
			}
			call := st.Calls[col.Call]
			if err := ss.callFunction(ctx, call.Func, row[call.Arg0:call.Arg0+call.NArgs]); err != nil {
				return err
			}
			dr.Values = append(dr.Values, []byte{})
		}
		ss.w.Msg(dr)
	}
	ss.commandComplete("SELECT " + strconv.Itoa(len(rows)))
	return nil
}

// callFunction runs one call. Arguments are in text form, already cast to the parameter
// types by the coordinator; the functions are strict (a NULL argument makes the call a
// no-op, as in PostgreSQL).
func (ss *session) callFunction(ctx context.Context, name string, args [][]byte) error {
	for _, a := range args {
		if a == nil {
			return nil
		}
	}
	switch name {
	case "master_add_node":
		port, _ := strconv.Atoi(string(args[1]))
		return ss.masterAddNode(ctx, string(args[0]), port)
	case "master_create_distributed_table":
		return ss.masterCreateDistributedTable(ctx, string(args[0]), string(args[1]), args[2])
	case "master_create_worker_shards":
		n, _ := strconv.Atoi(string(args[1]))
		rf, _ := strconv.Atoi(string(args[2]))
		return ss.masterCreateWorkerShards(ctx, string(args[0]), n, rf)
	case "master_copy_shard_placement":
		id, _ := strconv.ParseInt(string(args[0]), 10, 64)
		sp, _ := strconv.Atoi(string(args[2]))
		tp, _ := strconv.Atoi(string(args[4]))
		_, err := ss.srv.repair.Copy(ctx, repair.Request{ShardID: id, Source: metadata.Node{Name: string(args[1]), Port: sp},
			Target: metadata.Node{Name: string(args[3]), Port: tp}, Trigger: "function", User: ss.user})
		return err
	}
	return pgerr.New(pgerr.UndefinedFunction, "function %s does not exist", name)
}

// masterAddNode registers a worker after checking that the proxy can reach it.
func (ss *session) masterAddNode(ctx context.Context, name string, port int) error {
	switch {
	case name == "":
		return pgerr.New(pgerr.InvalidParameterValue, "node name must not be empty")
	case len(name) > 255:
		return pgerr.New(pgerr.InvalidParameterValue, "hostname exceeds the maximum length of 255")
	case port <= 0 || port > 65535:
		return pgerr.New(pgerr.InvalidParameterValue, "invalid port number %d", port)
	}
	node := metadata.Node{Name: name, Port: port}
	conn, err := pgconn.ConnectConfig(ctx, ss.srv.pools.ConnConfig(ss.srv.workerKey(node, ss.user)))
	if err != nil {
		return pgerr.Wrap(err, pgerr.ConnectionFailure, "could not connect to node %s", fmtNode(node)).
			WithDetail("%v", err)
	}
	conn.Close(ctx)
	added, err := ss.srv.store.AddNode(ctx, node)
	if err != nil {
		return err
	}
	if !added {
		ss.sendNotice(pgerr.New(pgerr.SuccessfulCompletion, "node %s is already registered", fmtNode(node)).WithSeverity("NOTICE"))
	}
	_, err = ss.srv.store.Reload(ctx, ss.srv.cache)
	return err
}

// relation resolves a table name as the session would (search_path) on the coordinator.
func (ss *session) relation(ctx context.Context, name string) (oid uint32, kind byte, schema, rel string, err error) {
	c, err := ss.coordConn(ctx)
	if err != nil {
		return 0, 0, "", "", err
	}
	rows, err := c.QueryParams(ctx, `SELECT c.oid, c.relkind, n.nspname, c.relname
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
		WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass`, [][]byte{[]byte(name)}, nil)
	if err != nil {
		return 0, 0, "", "", err
	}
	if len(rows) != 1 {
		return 0, 0, "", "", pgerr.New(pgerr.UndefinedTable, "relation %q does not exist", name)
	}
	o, _ := strconv.ParseUint(string(rows[0][0]), 10, 32)
	return uint32(o), rows[0][1][0], string(rows[0][2]), string(rows[0][3]), nil
}

// masterCreateDistributedTable records a table as distributed on a column, with pg_shard's
// checks.
func (ss *session) masterCreateDistributedTable(ctx context.Context, table, column string, method []byte) error {
	oid, kind, schema, rel, err := ss.relation(ctx, table)
	if err != nil {
		return err
	}
	if kind != 'r' {
		return pgerr.New(pgerr.WrongObjectType, "cannot distribute relation: %s", table).
			WithDetail("Distributed relations must be regular tables.")
	}
	if len(column) >= 64 {
		return pgerr.New(pgerr.NameTooLong, "column name too long")
	}
	m := byte('h')
	if len(method) > 0 {
		m = method[0]
	}
	switch m {
	case 'h':
	case 'r':
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard only supports hash partitioning")
	default:
		return pgerr.New(pgerr.InvalidParameterValue, "unrecognized table partition type: %c", m)
	}
	c, err := ss.coordConn(ctx)
	if err != nil {
		return err
	}
	// The partition column needs a default hash operator class for its type, found as
	// PostgreSQL's GetDefaultOpClass (and so pg_shard) finds it: for the base type under
	// any domains, one for the type itself, else exactly one whose input type the type
	// is binary-coercible to (varchar uses text_ops), preferring the category's
	// preferred type.
	rows, err := c.QueryParams(ctx, `WITH RECURSIVE col AS (
			SELECT a.attnum, a.atttypid FROM pg_catalog.pg_attribute a
			WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name AND NOT a.attisdropped),
		chain(oid, depth) AS (
			SELECT atttypid, 0 FROM col
			UNION ALL
			SELECT t.typbasetype, ch.depth OPERATOR(pg_catalog.+) 1 FROM chain ch JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) ch.oid WHERE t.typtype OPERATOR(pg_catalog.=) 'd'),
		base AS (SELECT oid FROM chain ORDER BY depth DESC LIMIT 1),
		cands AS (
			SELECT o.opcintype OPERATOR(pg_catalog.=) base.oid AS exact, it.typispreferred AS preferred
			FROM base, pg_catalog.pg_opclass o
			JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) o.opcmethod
			JOIN pg_catalog.pg_type it ON it.oid OPERATOR(pg_catalog.=) o.opcintype
			WHERE am.amname OPERATOR(pg_catalog.=) 'hash' AND o.opcdefault
			  AND (o.opcintype OPERATOR(pg_catalog.=) base.oid OR EXISTS (
			        SELECT 1 FROM pg_catalog.pg_cast pc
			        WHERE pc.castsource OPERATOR(pg_catalog.=) base.oid AND pc.casttarget OPERATOR(pg_catalog.=) o.opcintype AND pc.castmethod OPERATOR(pg_catalog.=) 'b')))
		SELECT col.attnum, base.oid, pg_catalog.format_type(col.atttypid, NULL),
			(SELECT pg_catalog.count(*) FILTER (WHERE exact) OPERATOR(pg_catalog.=) 1
			     OR (pg_catalog.count(*) FILTER (WHERE exact) OPERATOR(pg_catalog.=) 0
			         AND (pg_catalog.count(*) FILTER (WHERE preferred) OPERATOR(pg_catalog.=) 1
			              OR (pg_catalog.count(*) FILTER (WHERE preferred) OPERATOR(pg_catalog.=) 0 AND pg_catalog.count(*) OPERATOR(pg_catalog.=) 1))) FROM cands)
		FROM col, base`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(column)}, nil)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return pgerr.New(pgerr.UndefinedColumn, "column %q of relation %q does not exist", column, rel)
	}
	attnum, _ := strconv.Atoi(string(rows[0][0]))
	typ, _ := strconv.ParseUint(string(rows[0][1]), 10, 32)
	typName := string(rows[0][2])
	if attnum < 0 {
		return pgerr.New(pgerr.InvalidColumnReference, "column %q of relation %q is a system column", column, rel)
	}
	if string(rows[0][3]) != "t" {
		return pgerr.New(pgerr.UndefinedObject, "data type %s has no default operator class for specified partition method", typName)
	}
	if !pghash.Supported(uint32(typ)) {
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot hash values of type %s", typName).
			WithHint("Partition columns may be of type smallint, integer, bigint, numeric, real, double precision, text, varchar, char, name, bytea, boolean, \"char\", oid, uuid, date, time, timestamp or timestamptz (or a domain over one of them).")
	}
	// The prototype must stay empty: rows in it would be invisible through pgshard.
	rows, err = c.QueryParams(ctx, "SELECT EXISTS (SELECT 1 FROM "+router.QuoteIdent(schema)+"."+router.QuoteIdent(rel)+")", nil, nil)
	if err != nil {
		return err
	}
	if len(rows) == 1 && string(rows[0][0]) == "t" {
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q is not empty", rel).
			WithHint("Distribute the table while it is empty, then load its rows through pgshard.")
	}
	// Each shard enforces its own unique and exclusion constraints: one without the
	// partition column could be violated by rows on two shards, unnoticed.
	rows, err = c.QueryParams(ctx, `SELECT ic.relname FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
		LEFT JOIN pg_catalog.pg_constraint con ON con.conindid OPERATOR(pg_catalog.=) i.indexrelid AND con.conrelid OPERATOR(pg_catalog.=) i.indrelid AND con.contype OPERATOR(pg_catalog.=) 'x'
		WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND (i.indisunique OR i.indisexclusion)
		  AND NOT EXISTS (
		    SELECT 1 FROM pg_catalog.generate_subscripts(i.indkey, 1) s(p)
		    WHERE s.p OPERATOR(pg_catalog.<) i.indnkeyatts AND i.indkey[s.p] OPERATOR(pg_catalog.=) $2::pg_catalog.int2
		      AND (NOT i.indisexclusion OR (SELECT o.oprname FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) con.conexclop[s.p OPERATOR(pg_catalog.+) 1]) OPERATOR(pg_catalog.=) '='))
		ORDER BY 1 LIMIT 1`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(strconv.Itoa(attnum))}, nil)
	if err != nil {
		return err
	}
	if len(rows) == 1 {
		return pgerr.New(pgerr.FeatureNotSupported, "cannot distribute relation %q: its unique index %q does not include the partition column %q", rel, string(rows[0][0]), column).
			WithDetail("Each shard enforces uniqueness only among its own rows, so a PRIMARY KEY, UNIQUE or EXCLUDE constraint must include the partition column (compared with = in an EXCLUDE).").
			WithHint("Add the partition column to the constraint, or drop the constraint, before distributing the table.")
	}
	if err := ss.srv.store.AddPartition(ctx, oid, m, column); err != nil {
		var users *store.UsersError
		switch {
		case errors.As(err, &users):
			// They would run inside the coordinator, against the empty prototype.
			return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot distribute table %q while functions, views, rules or policies refer to it: %s", rel, users.Objects).
				WithDetail("Functions, views, rules and policies run inside the coordinator, which holds only an empty prototype of a distributed table; its rows live on the shards.").
				WithHint("Drop them (or, for a function, stop naming the table in its body) before distributing the table.")
		case errors.Is(err, store.ErrAlreadyDistributed):
			return pgerr.New(pgerr.DuplicateObject, "table %q is already distributed", rel)
		case errors.Is(err, store.ErrNotEmpty):
			return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q is not empty", rel).
				WithHint("Distribute the table while it is empty, then load its rows through pgshard.")
		}
		return err
	}
	_, err = ss.srv.store.Reload(ctx, ss.srv.cache)
	return err
}

// masterCreateWorkerShards creates a table's shards: shard_count hash ranges, each placed
// on replication_factor workers, with the shard tables created from the coordinator's
// definition. All metadata is written in one coordinator transaction; shard tables created
// before a failure are dropped again.
func (ss *session) masterCreateWorkerShards(ctx context.Context, table string, shardCount, rf int) error {
	oid, _, _, rel, err := ss.relation(ctx, table)
	if err != nil {
		return err
	}
	snap := ss.srv.cache.Load()
	t := snap.TableByOID(oid)
	switch {
	case t == nil:
		return pgerr.New(pgerr.UndefinedObject, "no partition column is defined for relation %q", rel)
	case t.Method != 'h':
		return pgerr.New(pgerr.FeatureNotSupported, "unsupported table partition type: %c", t.Method)
	case len(t.Shards) > 0:
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q has already had shards created for it", rel)
	case shardCount <= 0:
		return pgerr.New(pgerr.InvalidParameterValue, "shard_count must be positive")
	case rf <= 0:
		return pgerr.New(pgerr.InvalidParameterValue, "replication_factor must be positive")
	case rf > len(snap.Nodes):
		return pgerr.New(pgerr.InvalidParameterValue, "replication_factor (%d) exceeds number of worker nodes (%d)", rf, len(snap.Nodes)).
			WithHint("Add more worker nodes or try again with a lower replication factor.")
	}
	// The shard tables' definition, read from the coordinator.
	pc, err := pgconn.ConnectConfig(ctx, ss.srv.pools.ConnConfig(ss.srv.coordKey(ss.user)))
	if err != nil {
		return coordUnavailable(err)
	}
	def, err := ddl.Load(ctx, pc, oid)
	pc.Close(ctx)
	if err != nil {
		var tooLong *ddl.NameTooLongError
		if errors.As(err, &tooLong) {
			return pgerr.New(pgerr.NameTooLong, "%s", err.Error())
		}
		return pgerr.Wrap(err, pgerr.InternalError, "could not read the definition of %q: %v", rel, err)
	}
	nodes := snap.Nodes
	ranges := make([]store.ShardRange, shardCount)
	for i := range ranges {
		ranges[i].Min, ranges[i].Max = metadata.HashRange(i, shardCount)
	}
	var created []createdShard
	ok, err := ss.srv.store.CreateShards(ctx, oid, ranges, func(ctx context.Context, ids []int64) ([][]metadata.Node, error) {
		placed, c, err := ss.placeShards(ctx, def, nodes, ids, rf)
		created = c
		return placed, err
	})
	if err != nil || !ok {
		ss.dropShardTables(ctx, def, created)
	}
	if err != nil {
		return err
	}
	if !ok {
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q has already had shards created for it", rel)
	}
	_, err = ss.srv.store.Reload(ctx, ss.srv.cache)
	return err
}

// createdShard is a shard table created on a node.
type createdShard struct {
	shard int64
	node  metadata.Node
}

// placeShards creates the shard tables: placement k of shard i goes to node (i+k) mod N;
// when a node fails, the shard tries the next node, as pg_shard did (one extra attempt when
// there are more nodes than replicas). Each node's tables are created in one transaction,
// nodes in parallel.
func (ss *session) placeShards(ctx context.Context, def *ddl.Table, nodes []metadata.Node, ids []int64, rf int) ([][]metadata.Node, []createdShard, error) {
	n := len(nodes)
	attempts := rf
	if n > rf {
		attempts++
	}
	placed := make([][]metadata.Node, len(ids))
	next := make([]int, len(ids)) // next candidate k per shard
	var created []createdShard
	for round := 0; ; round++ {
		// Assign each shard short of rf placements its next candidates.
		work := map[metadata.Node][]int{}
		for i := range ids {
			for len(placed[i])+countPending(work, i) < rf && next[i] < attempts {
				node := nodes[(i+next[i])%n]
				next[i]++
				work[node] = append(work[node], i)
			}
		}
		if len(work) == 0 {
			break
		}
		type result struct {
			node metadata.Node
			err  error
		}
		results := make(chan result, len(work))
		var wg sync.WaitGroup
		for node, shards := range work {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var cmds []string
				for _, i := range shards {
					c, err := def.CreateCommands(ids[i])
					if err != nil {
						results <- result{node, err}
						return
					}
					cmds = append(cmds, c...)
				}
				results <- result{node, ss.runOnNode(ctx, node, cmds)}
			}()
		}
		wg.Wait()
		close(results)
		for r := range results {
			shards := work[r.node]
			if r.err != nil {
				var tooLong *ddl.NameTooLongError
				if errors.As(r.err, &tooLong) {
					return nil, created, pgerr.New(pgerr.NameTooLong, "%s", r.err.Error())
				}
				for _, i := range shards {
					ss.sendNotice(pgerr.New(pgerr.Warning, "could not create shard on \"%s:%d\"", r.node.Name, r.node.Port).
						WithSeverity("WARNING").WithDetail("shard %d: %v", ids[i], r.err))
				}
				continue
			}
			for _, i := range shards {
				placed[i] = append(placed[i], r.node)
				created = append(created, createdShard{ids[i], r.node})
			}
		}
	}
	for i := range ids {
		// Keep placements in candidate order (node (i+k) mod N).
		order := map[metadata.Node]int{}
		for k := 0; k < attempts; k++ {
			order[nodes[(i+k)%n]] = k
		}
		ps := placed[i]
		for a := 1; a < len(ps); a++ {
			for b := a; b > 0 && order[ps[b]] < order[ps[b-1]]; b-- {
				ps[b], ps[b-1] = ps[b-1], ps[b]
			}
		}
		if len(ps) < rf {
			return nil, created, pgerr.New(pgerr.InternalError, "could not satisfy specified replication factor").
				WithDetail("Created %d shard replicas, less than the requested replication factor of %d.", len(ps), rf)
		}
	}
	return placed, created, nil
}

func countPending(work map[metadata.Node][]int, i int) int {
	n := 0
	for _, shards := range work {
		for _, s := range shards {
			if s == i {
				n++
			}
		}
	}
	return n
}

// runOnNode runs statements on a worker in one transaction, over a connection of its own.
func (ss *session) runOnNode(ctx context.Context, node metadata.Node, cmds []string) error {
	cfg := ss.srv.pools.ConnConfig(ss.srv.workerKey(node, ss.user))
	// The statements are pgshard's, every name in them qualified: nothing on the role's
	// search_path may stand in for pg_catalog's.
	cfg.RuntimeParams["search_path"] = store.SearchPath
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	sql := "BEGIN;\n" + strings.Join(cmds, ";\n") + ";\nCOMMIT"
	_, err = conn.Exec(ctx, sql).ReadAll()
	return err
}

// dropShardTables removes shard tables created by a failed master_create_worker_shards.
func (ss *session) dropShardTables(ctx context.Context, def *ddl.Table, created []createdShard) {
	byNode := map[metadata.Node][]string{}
	for _, c := range created {
		if cmd, err := def.DropCommand(c.shard); err == nil {
			byNode[c.node] = append(byNode[c.node], cmd)
		}
	}
	for node, cmds := range byNode {
		if err := ss.runOnNode(ctx, node, cmds); err != nil {
			ss.log.Warn("could not drop shard tables after a failed shard creation", "node", node.String(), "err", err)
		}
	}
}
