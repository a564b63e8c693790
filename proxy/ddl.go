package proxy

import (
	"context"
	"sync"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router"
)

// dropTables runs DROP TABLE naming distributed tables: the coordinator drops the tables
// and their metadata in one transaction; then the shard tables are dropped on the workers
// (a worker that cannot be reached keeps an orphaned shard table, with a warning).
func (x *execution) dropTables(ctx context.Context) error {
	ss, snap, st, in := x.ss, x.snap, x.st, x.in
	if ss.txn.tx != txIdle {
		return pgerr.New(pgerr.ActiveSQLTransaction, "DROP TABLE of a distributed table cannot run inside a transaction block")
	}
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	var oids []uint32
	var tables []*metadata.Table
	for _, oid := range st.Tables {
		if t := snap.TableByOID(oid); t != nil {
			tables = append(tables, t)
			oids = append(oids, oid)
		}
	}
	// The client's role drops the tables on the coordinator (PostgreSQL checks that it
	// owns them); the proxy's own connection removes their metadata, which ordinary roles
	// may not write, and commits that only once the drop has committed.
	if err := c.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	if err := c.Exec(ctx, render(st.Text, in, nil, nil)); err != nil {
		c.Exec(ctx, "ROLLBACK")
		return err
	}
	err = ss.srv.store.DropTables(ctx, oids, func() error { return c.Exec(ctx, "COMMIT") })
	if err != nil {
		if c.TxStatus != 'I' {
			c.Exec(ctx, "ROLLBACK")
		}
		return err
	}
	if _, err := ss.srv.store.Reload(ctx, ss.srv.cache); err != nil {
		ss.log.Warn("metadata reload after DROP TABLE failed", "err", err)
	}
	// Drop the shard tables, node by node in parallel.
	byNode := map[metadata.Node][]string{}
	for _, t := range tables {
		for _, sh := range t.Shards {
			for _, p := range sh.Placements {
				byNode[p.Node] = append(byNode[p.Node], "DROP TABLE IF EXISTS "+router.ShardName(t.Schema, t.Name, sh.ID))
			}
		}
	}
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for node, cmds := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ss.srv.runOnNode(ctx, ss.user, node, "", cmds); err != nil {
				mu.Lock()
				failed = append(failed, fmtNode(node)+": "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, f := range failed {
		x.out.Notice(pgerr.New(pgerr.Warning, "could not drop shard tables on %s", f).WithSeverity("WARNING").
			WithHint("Drop the tables named <table>_<shard id> on that node by hand."))
	}
	x.out.CommandComplete("DROP TABLE")
	return nil
}

// truncate empties distributed tables on every placement and runs the statement on the
// coordinator (which truncates the prototypes and any coordinator tables it names), all in
// one transaction block (the client's, or one of its own).
func (x *execution) truncate(ctx context.Context) error {
	ss := x.ss
	own := ss.txn.tx == txIdle
	if own {
		ss.txn.beginBlock("BEGIN")
	}
	err := x.truncateIn(ctx)
	if own {
		if err != nil {
			ss.txn.endTx(ctx, false)
			return err
		}
		missed, cerr := ss.txn.endTx(ctx, true)
		if len(missed) > 0 {
			if merr := ss.srv.markInactive(ctx, missed, ss.conn.Results()); merr != nil {
				return merr
			}
		}
		if cerr != nil {
			return cerr
		}
		x.out.CommandComplete("TRUNCATE TABLE")
		return nil
	}
	if err == nil {
		x.out.CommandComplete("TRUNCATE TABLE")
	}
	return err
}

// truncateIn is truncate's work inside the block: the coordinator's statement, then
// every shard of the tables on every placement (as a write: placement failures are
// decided like a write's).
func (x *execution) truncateIn(ctx context.Context) error {
	ss, snap, st, in := x.ss, x.snap, x.st, x.in
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	if err := c.Exec(ctx, ownStatement(render(st.Text, in, nil, nil))); err != nil {
		return err
	}
	var tasks []writeTask
	for _, oid := range st.Tables {
		t := snap.TableByOID(oid)
		if t == nil {
			continue
		}
		for _, sh := range t.Shards {
			tasks = append(tasks, writeTask{shard: sh, sql: []byte("TRUNCATE TABLE " + router.ShardName(t.Schema, t.Name, sh.ID))})
		}
	}
	if len(tasks) == 0 {
		return nil
	}
	return x.runWrites(ctx, tasks)
}
