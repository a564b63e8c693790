package proxy

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// DROP TABLE of distributed tables inside a client's transaction block (a migration's
// down step, say). Everything happens in the block, so that its COMMIT (two-phase over the
// coordinator and the workers) makes the drop atomic and a ROLLBACK undoes it everywhere:
//
//  1. the tables' shard write locks, exclusively, held to the block's end (writes to the
//     tables through any proxy wait, as for other schema changes);
//  2. the client's statement on the coordinator, as the client's role (PostgreSQL checks
//     ownership, CASCADE and RESTRICT there), authorized for the event triggers;
//  3. the tables' metadata rows deleted in the same coordinator transaction, through
//     pgs_distribute.drop_partitions, which removes only the metadata of tables that the
//     transaction no longer sees in the catalog: of tables it dropped;
//  4. DROP TABLE IF EXISTS of the shard tables on each worker's block connection, which
//     joins the block's commit as a part that wrote (no placement to mark: a worker lost
//     before COMMIT keeps its shard tables, orphaned, as one unreachable now does, with a
//     warning).
//
// For the rest of the block the session plans as if the tables were not distributed (its
// snapshot leaves them out): a statement naming them reaches the coordinator, which
// answers as PostgreSQL would (42P01). A ROLLBACK TO a savepoint before the drop brings
// them back.
func (x *execution) dropTablesInBlock(ctx context.Context) error {
	ss, snap, st := x.ss, x.snap, x.st
	var tables []*metadata.Table
	var oids []uint32
	var tasks []writeTask
	for _, oid := range st.Tables {
		t := snap.TableByOID(oid)
		if t == nil {
			continue
		}
		tables = append(tables, t)
		oids = append(oids, oid)
		for _, sh := range t.Shards {
			tasks = append(tasks, writeTask{shard: sh})
		}
	}
	if len(tasks) > 0 {
		if err := x.lockShards(ctx, tasks); err != nil {
			return err
		}
	}
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	if err := ss.authorizeDDL(ctx, c, oids); err != nil {
		return err
	}
	tag, err := x.coordinatorDDL(ctx, c, render(st.Text, x.in, nil, nil))
	if err != nil {
		return err
	}
	ids := make([]string, len(oids))
	for i, oid := range oids {
		ids[i] = strconv.FormatUint(uint64(oid), 10)
	}
	if err := c.Exec(ctx, "SELECT pgs_distribute.drop_partitions('{"+strings.Join(ids, ",")+"}'::pg_catalog.oid[])"); err != nil {
		return err
	}
	byNode := map[metadata.Node][]string{}
	for _, t := range tables {
		for _, sh := range t.Shards {
			for _, p := range sh.Placements {
				byNode[p.Node] = append(byNode[p.Node], router.ShardName(t.Schema, t.Name, sh.ID))
			}
		}
	}
	nodes := make([]metadata.Node, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return fmtNode(nodes[i]) < fmtNode(nodes[j]) })
	var orphaned []string
	for _, node := range nodes {
		w, err := ss.txn.workerConn(ctx, node)
		if err == nil {
			wc := w.conn()
			err = x.running(wc, func() error { return wc.Exec(ctx, "DROP TABLE IF EXISTS "+strings.Join(byNode[node], ", ")) })
		}
		if err != nil {
			if !backend.Unavailable(err) {
				return err
			}
			orphaned = append(orphaned, fmtNode(node)+": "+err.Error())
			continue
		}
		ss.txn.noteTxNode(node)
	}
	ss.dropBlockTables(oids)
	for _, f := range orphaned {
		x.out.Notice(pgerr.New(pgerr.Warning, "could not drop shard tables on %s", f).WithSeverity("WARNING").
			WithHint("Drop the tables named <table>_<shard id> on that node by hand."))
	}
	x.out.CommandComplete(tag)
	return nil
}

// noteTxNode makes node's connection a part of the block that wrote, without placements
// to mark if it is lost: its work (dropping shard tables) is then prepared and committed
// with the block's decision.
func (t *txnState) noteTxNode(n metadata.Node) {
	if t.txWrites == nil {
		t.txWrites = map[metadata.Node][]metadata.Placement{}
	}
	if _, ok := t.txWrites[n]; !ok {
		t.txWrites[n] = nil
	}
}

// dropBlockTables leaves tables the block dropped out of the session's view.
func (ss *session) dropBlockTables(oids []uint32) {
	ss.blockTables.dropped = append(ss.blockTables.dropped, oids...)
	ss.blockTables.view = nil
	ss.namesDirty = true
}

// blockDropsUndone brings the dropped tables back after a ROLLBACK TO a savepoint that
// undid their drop: those the coordinator's block transaction sees again.
func (ss *session) blockDropsUndone(ctx context.Context) {
	bt := &ss.blockTables
	if len(bt.dropped) == 0 {
		return
	}
	ids := make([]string, len(bt.dropped))
	for i, oid := range bt.dropped {
		ids[i] = strconv.FormatUint(uint64(oid), 10)
	}
	rows, err := controlClient{ss: ss}.Query(ctx, "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ANY ('{"+strings.Join(ids, ",")+"}'::pg_catalog.oid[])", nil)
	if err != nil {
		ss.log.Warn("could not read which dropped tables a ROLLBACK TO brought back", "err", err)
		return
	}
	back := map[uint32]bool{}
	for _, r := range rows {
		oid, _ := strconv.ParseUint(string(r[0]), 10, 32)
		back[uint32(oid)] = true
	}
	keep := bt.dropped[:0]
	for _, oid := range bt.dropped {
		if !back[oid] {
			keep = append(keep, oid)
		}
	}
	bt.dropped = keep
	bt.view = nil
	ss.namesDirty = true
}
