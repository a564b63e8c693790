package proxy

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router"
)

// explainer collects the lines of an EXPLAIN of a distributed statement.
type explainer struct {
	x     *execution // the EXPLAIN's
	lines []string
}

func (e *explainer) add(indent int, format string, args ...any) {
	e.lines = append(e.lines, strings.Repeat(" ", indent)+fmt.Sprintf(format, args...))
}

// explainSQL is the EXPLAIN statement to run for sql, with the client's options.
func (e *explainer) explainSQL(sql []byte) []byte {
	out := []byte("EXPLAIN ")
	if e.x.st.Options != "" {
		out = append(out, e.x.st.Options...)
		out = append(out, ' ')
	}
	return append(out, sql...)
}

// explain answers EXPLAIN of a statement on distributed tables with the distributed plan:
// the shards it reads or writes, the SQL each receives, how the results merge, and the
// shards' own plans (one shard's without ANALYZE; every shard's, executed, with it).
func (x *execution) explain(ctx context.Context) error {
	snap, st := x.snap, x.st
	e := &explainer{x: x}
	var err error
	switch inner := st.Inner; inner.Kind {
	case router.Select:
		err = e.selectPlan(ctx, snap, inner)
	case router.Gathered:
		e.add(0, "Distributed Query (pgshard): gathered on the coordinator")
		err = e.gatherPlan(ctx, snap, inner, inner.Merge, nil, 2)
	case router.Insert, router.Update, router.Delete:
		err = e.writePlan(ctx, snap, inner)
	default:
		err = pgerr.New(pgerr.FeatureNotSupported, "EXPLAIN of this statement on distributed tables is not supported")
	}
	if err != nil {
		return err
	}
	if !x.extended {
		x.out.Msg(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
			Name: []byte("QUERY PLAN"), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1}}})
	}
	for _, l := range e.lines {
		x.out.Msg(&pgproto3.DataRow{Values: [][]byte{[]byte(l)}})
	}
	x.out.CommandComplete("EXPLAIN")
	return nil
}

// selectPlan explains a SELECT on a distributed table.
func (e *explainer) selectPlan(ctx context.Context, snap *metadata.Snapshot, st *router.Statement) error {
	t, err := shardedTable(snap, st.Table)
	if err != nil {
		return err
	}
	shards, err := e.x.shards(ctx, t, st.Filter, nil)
	if err != nil {
		return err
	}
	what := "table " + router.QuoteIdent(t.Name)
	if len(st.Colocated) > 1 {
		var names []string
		for _, oid := range st.Colocated {
			if tj := snap.TableByOID(oid); tj != nil {
				names = append(names, router.QuoteIdent(tj.Name))
			}
		}
		what = "co-located tables " + strings.Join(names, ", ") + ", joined shard by shard"
	}
	e.add(0, "Distributed Query (pgshard) on %s", what)
	e.add(2, "Shards: %d of %d", len(shards), len(t.Shards))
	if st.Merge != nil && st.Merge.Kind == router.Prototype || len(shards) == 0 {
		e.add(2, "No shard is read: the statement runs on the coordinator's empty table")
		return nil
	}
	tasks, ok := e.x.with(st).readTasks(t, shards)
	if !ok {
		e.add(2, "The joined tables are not co-located now: they are gathered on the coordinator")
		return e.gatherPlan(ctx, snap, st, st.Fallback, nil, 2)
	}
	tpl := st.Shard
	var evals []string
	m := st.Merge
	if len(tasks) > 1 {
		if m == nil {
			return st.Err
		}
		limit, offset, err := mergeLimits(m, e.x.in, e.x.prm)
		if err != nil {
			return err
		}
		switch m.Kind {
		case router.Concat:
			e.add(2, "Merge: the shards' rows are streamed as they arrive%s", limitText(m, limit, offset))
			if m.Shard != nil {
				tpl, evals = m.Shard, shardLimit(limit, offset)
			}
		case router.Sorted:
			e.add(2, "Merge: ordered streams merged in the proxy on %d sort key(s)%s", len(m.Keys), limitText(m, limit, offset))
			tpl, evals = m.Shard, shardLimit(limit, offset)
		case router.Aggregate:
			e.add(2, "Merge: each shard returns one row of %d partial aggregates; the coordinator combines them:", m.Partials)
			e.add(4, "%s", m.Final.Render(nil, &router.Holes{In: e.x.in, Evals: []string{"<one row per shard>"}, Types: repeat("<partial type>", m.Partials)}))
			tpl = m.Shard
		case router.Gather:
			return e.gatherPlan(ctx, snap, st, m, [][]*metadata.Shard{shards}, 2)
		}
	} else {
		e.add(2, "Merge: none, the whole statement runs on one shard")
	}
	return e.shardPlans(ctx, tasks, tpl, evals)
}

// shardPlans shows the SQL each task runs and its plan on a placement.
func (e *explainer) shardPlans(ctx context.Context, tasks []readTask, tpl router.Template, evals []string) error {
	x := e.x
	ss, conns := x.ss, x.conns()
	shown := tasks
	if !e.x.st.Analyze && len(tasks) > 1 {
		shown = tasks[:1]
		e.add(2, "Tasks shown: one of %d (EXPLAIN ANALYZE shows every shard's)", len(tasks))
	}
	reads := make([]*shardRead, len(shown))
	sqls := make([][]byte, len(shown))
	for i, task := range shown {
		sqls[i] = tpl.Render(nil, &router.Holes{In: e.x.in, Tables: task.names, Evals: evals})
		reads[i] = &shardRead{shard: task.shard, ps: task.ps, sql: e.explainSQL(sqls[i]), internal: true}
	}
	defer x.finishReads(ctx, reads)
	if err := x.startReads(ctx, reads); err != nil {
		return err
	}
	for i, r := range reads {
		c := r.wc.conn()
		node := r.wc.res.Value().Addr
		rows, _, err := collectRows(ctx, c)
		ss.stopRunning(c)
		conns.release(r.wc)
		r.wc = workerConn{}
		if err != nil {
			if pe, ok := err.(*pgerr.Error); ok {
				pe.Position = 0
				ss.txn.failBlock()
			}
			return err
		}
		if ss.params["is_superuser"] == "on" {
			e.add(2, "->  Shard %d on %s", shown[i].shard.ID, node)
		} else {
			// The workers' addresses are for superusers (SHOW NODES, SHOW PLACEMENTS).
			e.add(2, "->  Shard %d", shown[i].shard.ID)
		}
		e.add(8, "Query: %s", sqls[i])
		for _, row := range rows {
			if len(row) > 0 {
				e.add(8, "%s", row[0])
			}
		}
	}
	return nil
}

// gatherPlan explains a gather: the pulls, and the coordinator's plan of the final query
// over the temporary tables (filled, and the query executed, with ANALYZE; empty
// otherwise).
func (e *explainer) gatherPlan(ctx context.Context, snap *metadata.Snapshot, st *router.Statement, m *router.Merge, shards [][]*metadata.Shard, indent int) error {
	ss := e.x.ss
	e.add(indent, "Merge: rows are gathered into temporary tables on the coordinator, which runs the query over them")
	for i, pl := range m.Pulls {
		t := snap.TableByOID(pl.Table)
		if t == nil {
			return errTableGone(pl.Table)
		}
		n := len(t.Shards)
		if i < len(shards) && shards[i] != nil {
			n = len(shards[i])
		} else if pl.Filter != nil {
			sh, err := e.x.shards(ctx, t, pl.Filter, nil)
			if err != nil {
				return err
			}
			n = len(sh)
		}
		e.add(indent+2, "->  Pull into %s from %d shard(s) of %s", router.GatherTable(i), n, router.QuoteIdent(t.Name))
		e.add(indent+8, "Query: %s", pl.Shard.Render(nil, &router.Holes{In: e.x.in, Tables: []string{"<shard of " + router.QuoteIdent(t.Name) + ">"}}))
	}
	if !e.x.st.Analyze {
		// Empty temporary tables: the plan's shape without moving data.
		empty := make([][]*metadata.Shard, len(m.Pulls))
		for i := range empty {
			empty[i] = []*metadata.Shard{}
		}
		shards = empty
	}
	g, err := e.x.gatherTables(ctx, m, shards)
	if err != nil {
		return err
	}
	holes := &router.Holes{In: e.x.in, Tables: g.names, Types: g.types}
	final := m.Final.Render(nil, holes)
	e.add(indent+2, "->  Coordinator Query: %s", final)
	var rows [][][]byte
	if e.x.prm != nil {
		rows, err = g.c.QueryParams(ctx, string(e.explainSQL(final)), e.x.prm.values, e.x.prm.oids)
	} else {
		rows, err = g.c.ExecRows(ctx, string(e.explainSQL(final)))
	}
	if endErr := g.end(ctx, ss, err == nil); err == nil {
		err = endErr
	}
	if err != nil {
		return err
	}
	for _, row := range rows {
		if len(row) > 0 {
			e.add(indent+8, "%s", row[0])
		}
	}
	return nil
}

// writePlan explains an INSERT, UPDATE or DELETE: the shards it writes and, when the
// statement needs no value evaluated for it, one placement's plan.
func (e *explainer) writePlan(ctx context.Context, snap *metadata.Snapshot, st *router.Statement) error {
	if e.x.st.Analyze {
		return pgerr.New(pgerr.FeatureNotSupported, "EXPLAIN ANALYZE of a write to a distributed table is not supported").
			WithHint("EXPLAIN without ANALYZE shows the shards it writes and their plans.")
	}
	t, err := shardedTable(snap, st.Table)
	if err != nil {
		return err
	}
	e.add(0, "Distributed %s (pgshard) on table %s", strings.ToUpper(st.Kind.String()), router.QuoteIdent(t.Name))
	needsEval := len(st.Evals) > 0 || st.Source != nil
	for _, r := range st.Rows {
		needsEval = needsEval || len(r.Evals) > 0
	}
	if needsEval {
		e.add(2, "Values evaluated once on the coordinator before the shards are written (not done by EXPLAIN)")
		if st.Source != nil {
			e.add(2, "Source: %s", st.Source.Render(nil, &router.Holes{In: e.x.in, Tables: gatherNames(st.Merge)}))
		}
		return nil
	}
	var tasks []writeTask
	if st.Kind == router.Insert {
		tasks, err = e.x.with(st).insertTasks(ctx, t, make([][]evaluated, len(st.Rows)))
	} else {
		var shards []*metadata.Shard
		if shards, err = e.x.shards(ctx, t, st.Filter, nil); err == nil {
			for _, sh := range shards {
				tasks = append(tasks, writeTask{shard: sh, sql: st.Shard.Render(nil, &router.Holes{In: e.x.in, Tables: []string{router.ShardName(t.Schema, t.Name, sh.ID)}})})
			}
		}
	}
	if err != nil {
		return err
	}
	e.add(2, "Shards: %d of %d, each written on every finalized placement", len(tasks), len(t.Shards))
	if len(tasks) == 0 {
		return nil
	}
	task := tasks[0]
	if len(tasks) > 1 {
		e.add(2, "Tasks shown: one of %d", len(tasks))
	}
	return e.shardPlans(ctx, []readTask{{shard: task.shard, ps: task.shard.Finalized(), names: nil}}, router.Template{{Kind: router.SegText, Text: string(task.sql), Anchor: -1}}, nil)
}

func limitText(m *router.Merge, limit, offset int64) string {
	switch {
	case !m.HasLimit && !m.HasOffset:
		return ""
	case limit < 0:
		return fmt.Sprintf(", OFFSET %d applied by the proxy", offset)
	}
	return fmt.Sprintf(", LIMIT %d OFFSET %d applied by the proxy (each shard: LIMIT %s)", limit, offset, shardLimit(limit, offset)[0])
}

// shardLimit is the LIMIT each shard gets for a merged LIMIT limit OFFSET offset: their
// sum, or ALL when there is no limit or the sum exceeds bigint (PostgreSQL takes OFFSET
// 9223372036854775807 LIMIT 1).
func shardLimit(limit, offset int64) []string {
	if limit < 0 || limit > math.MaxInt64-offset {
		return []string{"ALL"}
	}
	return []string{strconv.FormatInt(limit+offset, 10)}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func gatherNames(m *router.Merge) []string {
	if m == nil {
		return nil
	}
	names := make([]string, len(m.Pulls))
	for i := range names {
		names[i] = router.GatherTable(i)
	}
	return names
}
