package proxy

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// Sizes and row estimates of distributed tables. The coordinator's table of a
// distributed table is an empty prototype: PostgreSQL's pg_table_size, reltuples and
// n_live_tup describe it, not the rows. pgshard's SQL functions pgshard_table_size,
// pgshard_relation_size and pgshard_total_relation_size (and Citus's names
// citus_table_size, citus_relation_size, citus_total_relation_size) sum PostgreSQL's
// function over the shards, one placement of each: its first finalized placement in
// placement-id order (replicas are not counted twice) on a node that answers (a node
// found unavailable, its shards are asked on their next placements). pgshard_estimated_rows sums the
// chosen placements' pg_class.reltuples, rounded, and is -1 when any of them was never
// vacuumed or analyzed (PostgreSQL's reltuples -1: unknown; a partial sum would look
// like an estimate). For anything that is not a distributed table the coordinator
// answers with PostgreSQL's own function (the estimate: its reltuples).
//
// The argument is resolved on the coordinator, as the caller (42P01 for an unknown
// table, the coordinator's privilege errors for a schema the caller may not use); like
// PostgreSQL's size functions, no privilege on the table itself is needed. The shards
// are asked as the caller too, over the session's worker connections (the block's
// inside a transaction block, where the tables it distributed have shards only it sees).

// sizeFunctions maps the size functions to the PostgreSQL function they apply to each
// shard table ("" for the row estimate).
var sizeFunctions = map[string]string{
	"pgshard_table_size":          "pg_table_size",
	"pgshard_relation_size":       "pg_relation_size",
	"pgshard_total_relation_size": "pg_total_relation_size",
	"pgshard_estimated_rows":      "",
	"citus_table_size":            "pg_table_size",
	"citus_relation_size":         "pg_relation_size",
	"citus_total_relation_size":   "pg_total_relation_size",
}

// sizeFunction reports whether name is one of the size functions.
func sizeFunction(name string) bool {
	_, ok := sizeFunctions[name]
	return ok
}

// sizeCall runs one call of a size function; oid is the relation's OID in text (nil for
// NULL: the functions are strict). It returns the result in text, nil for NULL.
func (x *execution) sizeCall(ctx context.Context, name string, oid []byte) ([]byte, error) {
	if oid == nil {
		return nil, nil
	}
	ss, pgFunc := x.ss, sizeFunctions[name]
	n, err := strconv.ParseUint(string(oid), 10, 32)
	if err != nil {
		return nil, pgerr.New(pgerr.InternalError, "unexpected relation OID %q", oid)
	}
	t := ss.snapshot().TableByOID(uint32(n))
	if t == nil {
		sql := "SELECT pg_catalog." + pgFunc + "($1::pg_catalog.oid::pg_catalog.regclass)"
		if pgFunc == "" {
			sql = "SELECT pg_catalog.round(reltuples)::pg_catalog.int8 FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid"
		}
		rows, err := controlClient{ss: ss}.Query(ctx, sql, [][]byte{oid})
		if err != nil || len(rows) == 0 || len(rows[0]) == 0 {
			return nil, err
		}
		return rows[0][0], nil
	}
	// One placement per shard: the first finalized one on a node not found down.
	var size int64
	var tuples float64
	pending, down := t.Shards, map[metadata.Node]error{}
	for len(pending) > 0 {
		nodes, shards, err := sizePlacements(t, pending, down)
		if err != nil {
			return nil, err
		}
		pending = nil
		for _, node := range nodes {
			row, err := x.sizeOnNode(ctx, node, sizeSQL(t, pgFunc, shards[node]))
			if err != nil {
				if !backend.Unavailable(err) {
					return nil, err
				}
				// Its shards are asked on their next placements.
				down[node] = err
				pending = append(pending, shards[node]...)
				continue
			}
			if pgFunc != "" {
				v, _ := strconv.ParseInt(string(row[0]), 10, 64)
				size += v
				continue
			}
			if string(row[1]) == "t" {
				return []byte("-1"), nil
			}
			v, _ := strconv.ParseFloat(string(row[0]), 64)
			tuples += v
		}
	}
	if pgFunc == "" {
		return strconv.AppendInt(nil, int64(math.Round(tuples)), 10), nil
	}
	return strconv.AppendInt(nil, size, 10), nil
}

// sizePlacements assigns each of shards to the node of its first finalized placement
// that is not down, and returns the nodes in order with their shards.
func sizePlacements(t *metadata.Table, shards []*metadata.Shard, down map[metadata.Node]error) ([]metadata.Node, map[metadata.Node][]*metadata.Shard, error) {
	var nodes []metadata.Node
	byNode := map[metadata.Node][]*metadata.Shard{}
	for _, sh := range shards {
		var lastErr error
		found := false
		for _, p := range sh.Finalized() {
			if err, isDown := down[p.Node]; isDown {
				lastErr = err
				continue
			}
			if byNode[p.Node] == nil {
				nodes = append(nodes, p.Node)
			}
			byNode[p.Node] = append(byNode[p.Node], sh)
			found = true
			break
		}
		if !found {
			return nil, nil, unreachable(router.QuoteIdent(t.Name), sh, lastErr)
		}
	}
	return nodes, byNode, nil
}

// sizeSQL is the query that sums pgFunc ("" : reltuples, and whether any is unknown)
// over the tables of shards on one node.
func sizeSQL(t *metadata.Table, pgFunc string, shards []*metadata.Shard) string {
	names := make([]string, len(shards))
	for i, sh := range shards {
		names[i] = router.QuoteLiteral(router.ShardName(t.Schema, t.Name, sh.ID))
	}
	list := "(VALUES (" + strings.Join(names, "), (") + ")) s(n)"
	if pgFunc == "" {
		return "SELECT pg_catalog.sum(c.reltuples::pg_catalog.float8), pg_catalog.bool_or(c.reltuples OPERATOR(pg_catalog.<) 0) FROM " + list +
			" JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.n::pg_catalog.regclass"
	}
	return "SELECT pg_catalog.sum(pg_catalog." + pgFunc + "(s.n::pg_catalog.regclass))::pg_catalog.int8 FROM " + list
}

// sizeOnNode runs a size query on node over the session's connection and returns its
// one row.
func (x *execution) sizeOnNode(ctx context.Context, node metadata.Node, sql string) ([][]byte, error) {
	ss := x.ss
	w, err := ss.txn.workerConn(ctx, node)
	if err != nil {
		return nil, err
	}
	defer ss.txn.release(w)
	c := w.conn()
	ss.startRunning(c)
	rows, err := c.ExecRows(ctx, sql)
	ss.stopRunning(c)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 || len(rows[0]) < 1 {
		return nil, pgerr.New(pgerr.InternalError, "unexpected answer to a size query from node %s", node)
	}
	return rows[0], nil
}

// inlineSizes runs a statement whose size-function calls stand inside expressions
// (router: inlineCalls): their arguments are evaluated on the coordinator, the functions
// run, and the statement runs there with each call replaced by its result.
func (x *execution) inlineSizes(ctx context.Context) error {
	st := x.st
	rows, err := controlClient{ss: x.ss}.Query(ctx, render(st.ArgQuery, x.in, nil, nil), nil)
	if err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			e.Position = 0
		}
		return err
	}
	if len(rows) != 1 || len(rows[0]) != len(st.Calls) {
		return pgerr.New(pgerr.InternalError, "unexpected answer evaluating the arguments of %s", st.Calls[0].Func)
	}
	evals := make([]string, len(st.Calls))
	for k, call := range st.Calls {
		v, err := x.sizeCall(ctx, call.Func, rows[0][k])
		if err != nil {
			return err
		}
		evals[k] = int8Literal(v)
	}
	return x.coordinatorStatement(ctx, render(st.Outer, x.in, nil, evals))
}

// inlineNulls is the statement of an inline plan with NULL for every call: what
// Describe asks the coordinator about.
func inlineNulls(st *router.Statement, in *router.Input) string {
	evals := make([]string, len(st.Calls))
	for k := range evals {
		evals[k] = int8Literal(nil)
	}
	return render(st.Outer, in, nil, evals)
}

// int8Literal is a size function's result (text, nil for NULL) as an SQL literal.
func int8Literal(v []byte) string {
	if v == nil {
		return "(NULL::pg_catalog.int8)"
	}
	return "('" + string(v) + "'::pg_catalog.int8)"
}
