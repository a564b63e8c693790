package proxy

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// The rows of an INSERT ... SELECT's source query pass through the proxy in batches:
// read from a cursor on the coordinator sourceFetch rows at a time, and written to the
// shards once Config.BatchRows rows (default sourceBatchRows) or sourceBatchBytes bytes
// of values are at hand, so that the proxy's memory does not grow with the statement.
const (
	sourceFetch      = 10000
	sourceBatchRows  = 50000
	sourceBatchBytes = 8 << 20
)

// sourcePortal names the coordinator cursor of a source query (and its statement).
const sourcePortal = "pgshard_source"

// insertSelect runs INSERT ... SELECT whose rows come from the coordinator (after
// gathering the distributed tables the SELECT reads): each batch of the source query's
// rows is split by shard and written to every finalized placement. So that the statement
// applies whole or not at all, the batches run in one transaction block on the
// coordinator and on every placement they touch: the session's own block, or one opened
// for the statement and committed at its end.
func (x *execution) insertSelect(ctx context.Context, t *metadata.Table) error {
	ss, st, in := x.ss, x.st, x.in
	ev, err := x.evaluate(ctx, [][]router.Eval{st.Evals}, nil)
	if err != nil {
		return err
	}
	suffix := literals(ev[0])
	types, keyPos := sourceTypes(t, st)
	var n int64
	sentDesc := false
	err = ss.txn.inBlock(ctx, func() error {
		return x.forSourceRows(ctx, func(rows [][][]byte) error {
			order, byShard, err := x.rowsByShard(ctx, t, rows, keyPos)
			if err != nil {
				return err
			}
			tasks := make([]writeTask, 0, len(order))
			for _, sh := range order {
				holes := &router.Holes{In: in, Tables: []string{router.ShardName(t.Schema, t.Name, sh.ID)}, Shard: sh.ID}
				sql := st.InsertPrefix.Render(nil, holes)
				sql = appendValues(sql, rows, byShard[sh.ID], types)
				holes.Evals = suffix
				sql = st.InsertSuffix.Render(sql, holes)
				tasks = append(tasks, writeTask{shard: sh, sql: sql, rows: byShard[sh.ID]})
			}
			k, err := x.applyWrites(ctx, tasks, &sentDesc)
			n += k
			return err
		})
	})
	if err != nil {
		return err
	}
	x.writeComplete(n)
	return nil
}

// modifySelected runs a gathered UPDATE or DELETE: the coordinator finds the rows it
// changes (their identity and new values, from the Source query, in batches), and each
// shard changes its rows of a batch, joined with the list of them. Like insertSelect, it
// runs in one transaction block.
//
// It takes its write locks first, every shard of the table exclusively (it cannot say
// which rows it changes before it has found them): a write of the same rows by another
// statement or block that holds them has then committed or rolled back before the rows
// are found and their new values computed, as PostgreSQL re-reads a row whose update it
// waited for. Found first and locked after, the values computed before the wait were
// written over the other writer's committed update.
func (x *execution) modifySelected(ctx context.Context, t *metadata.Table) error {
	ss, st, in := x.ss, x.st, x.in
	types, keyPos := sourceTypes(t, st)
	var n int64
	sentDesc, any := false, false
	err := ss.txn.inBlock(ctx, func() error {
		if err := x.lockTable(ctx, t); err != nil {
			return err
		}
		err := x.forSourceRows(ctx, func(rows [][][]byte) error {
			any = true
			order, byShard, err := x.rowsByShard(ctx, t, rows, keyPos)
			if err != nil {
				return err
			}
			tasks := make([]writeTask, 0, len(order))
			for _, sh := range order {
				values := string(appendValues(nil, rows, byShard[sh.ID], types))
				holes := &router.Holes{In: in, Tables: []string{router.ShardName(t.Schema, t.Name, sh.ID)}, Evals: []string{values}}
				tasks = append(tasks, writeTask{shard: sh, sql: st.Shard.Render(nil, holes)})
			}
			k, err := x.applyWrites(ctx, tasks, &sentDesc)
			n += k
			return err
		})
		if err == nil && !any {
			// Nothing to change: the coordinator's empty prototypes answer with the
			// right tag (and RETURNING's columns).
			return x.coordinatorStatement(ctx, ownStatement(render(st.Text, in, nil, nil)))
		}
		return err
	})
	if err != nil || !any {
		return err
	}
	x.writeComplete(n)
	return nil
}

// lockTable takes the write locks of a write that may change any row of t: every shard's
// lock, exclusively (lockShards; applyWrites then finds them held).
func (x *execution) lockTable(ctx context.Context, t *metadata.Table) error {
	if len(t.Shards) == 0 {
		return nil
	}
	tasks := make([]writeTask, len(t.Shards))
	for i, sh := range t.Shards {
		tasks[i] = writeTask{shard: sh}
	}
	return x.lockShards(ctx, tasks)
}

// forSourceRows runs a statement's Source query on the coordinator (after gathering the
// distributed tables it reads) and hands its rows to fn a batch at a time: the values of
// st.SourceCols and, last, the partition key's canonical form. It runs inside the
// session's transaction block, where the cursor outlives the other statements fn sends
// to the coordinator.
func (x *execution) forSourceRows(ctx context.Context, fn func([][][]byte) error) error {
	ss, st, in := x.ss, x.st, x.in
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	var g *gathered
	var names []string
	if st.Merge != nil && len(st.Merge.Pulls) > 0 {
		gx := *x
		gx.snap = ss.snapshot()
		if g, err = gx.gatherTables(ctx, st.Merge, nil); err != nil {
			return err
		}
		names = g.names
	}
	err = x.readCursor(ctx, c, render(st.Source, in, names, nil), fn)
	if g != nil {
		if endErr := g.end(ctx, ss, err == nil); err == nil {
			err = endErr
		}
	}
	if e, ok := err.(*pgerr.Error); ok {
		e.Position = 0 // a position in the source query, which the client did not write
	}
	return err
}

// readCursor runs sql with the client's parameters (x.prm) as a cursor on the coordinator
// connection c, and hands its rows (text, copied) to fn a batch at a time.
func (x *execution) readCursor(ctx context.Context, c *backend.Conn, sql string, fn func([][][]byte) error) error {
	ss, prm := x.ss, x.prm
	var args [][]byte
	var oids []uint32
	var formats []int16
	if prm != nil {
		args, oids, formats = prm.values, prm.oids, prm.formats
	}
	ss.startRunning(c)
	defer ss.stopRunning(c)
	stop := c.WatchContext(ctx)
	defer stop()
	w := c.Writer()
	// A statement of that name left by a connection's earlier user would fail the Parse;
	// closing one that does not exist is no error.
	w.Msg(&pgproto3.Close{ObjectType: 'S', Name: sourcePortal})
	w.Msg(&pgproto3.Parse{Name: sourcePortal, Query: sql, ParameterOIDs: oids})
	w.Msg(&pgproto3.Bind{DestinationPortal: sourcePortal, PreparedStatement: sourcePortal, ParameterFormatCodes: formats, Parameters: args})
	var srvErr, fnErr error
	var rows [][][]byte
	size := 0
	batchRows := ss.srv.cfg.BatchRows
	if batchRows <= 0 {
		batchRows = sourceBatchRows
	}
	fetch := min(sourceFetch, batchRows)
	for done := false; !done && fnErr == nil; {
		w.Msg(&pgproto3.Execute{Portal: sourcePortal, MaxRows: uint32(fetch)})
		w.Msg(&pgproto3.Flush{})
		if err := c.Flush(); err != nil {
			return err
		}
	batch:
		for {
			t, b, err := c.Next()
			if err != nil {
				return err
			}
			switch t {
			case 'D':
				row, err := backend.RowValues(b)
				if err != nil {
					c.MarkBroken()
					return err
				}
				rows = append(rows, row)
				size += len(b)
			case 'N':
				x.out.Raw(t, b)
			case 's':
				break batch
			case 'C':
				done = true
				break batch
			case 'E':
				// The server skips everything up to the Sync below.
				srvErr, done = c.DecodeError(b), true
				break batch
			}
		}
		if srvErr == nil && len(rows) > 0 && (done || len(rows) >= batchRows || size >= sourceBatchBytes) {
			fnErr = fn(rows)
			rows, size = nil, 0
		}
	}
	w.Msg(&pgproto3.Close{ObjectType: 'P', Name: sourcePortal})
	w.Msg(&pgproto3.Close{ObjectType: 'S', Name: sourcePortal})
	w.Msg(&pgproto3.Sync{})
	if err := c.Flush(); err != nil {
		return err
	}
	for {
		t, _, err := c.Next()
		if err != nil {
			return err
		}
		if t == 'Z' {
			break
		}
	}
	if srvErr != nil {
		return srvErr
	}
	return fnErr
}
