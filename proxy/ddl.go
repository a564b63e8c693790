package proxy

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// dropTables runs DROP TABLE naming distributed tables. The coordinator drops the tables
// in a transaction; each worker holding their shard tables drops them in a transaction of
// its own, on a connection with the session's settings; once every worker has, the
// coordinator commits the drop and the tables' metadata, and then the workers commit.
// The waits for other transactions' locks, on the coordinator and on the workers, are
// PostgreSQL's own: the session's lock_timeout and statement_timeout end them, as does a
// cancel request (the connections are the session's running ones), and a wait that ends
// so, or any other error of a worker's drop, rolls the whole statement back. A worker
// that cannot be reached keeps an orphaned shard table, with a warning, as does one whose
// COMMIT fails after the coordinator's.
func (x *execution) dropTables(ctx context.Context) error {
	ss, snap, st, in := x.ss, x.snap, x.st, x.in
	if ss.txn.tx != txIdle {
		return x.dropTablesInBlock(ctx) // blockdrop.go
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
	// READ COMMITTED whatever the session's default: the coordinator's DDL guard must see
	// the authorization (authorizeDDL) committed after the block's first statement.
	if err := c.Exec(ctx, "BEGIN ISOLATION LEVEL READ COMMITTED"); err != nil {
		return err
	}
	if err := ss.authorizeDDL(ctx, c, oids); err != nil {
		c.Exec(ctx, "ROLLBACK")
		return err
	}
	if err := x.running(c, func() error { return c.Exec(ctx, render(st.Text, in, nil, nil)) }); err != nil {
		c.Exec(ctx, "ROLLBACK")
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
	drops, failed, err := x.dropShardTables(ctx, byNode)
	if err == nil {
		err = ss.srv.store.DropTables(ctx, oids, func() error { return c.Exec(ctx, "COMMIT") })
	}
	if err != nil {
		if c.TxStatus != 'I' {
			c.Exec(ctx, "ROLLBACK")
		}
		drops.end(ctx, "ROLLBACK")
		return err
	}
	if _, err := ss.srv.store.Reload(ctx, ss.srv.cache); err != nil {
		ss.log.Warn("metadata reload after DROP TABLE failed", "err", err)
	}
	failed = append(failed, drops.end(ctx, "COMMIT")...)
	sort.Strings(failed)
	for _, f := range failed {
		x.out.Notice(pgerr.New(pgerr.Warning, "could not drop shard tables on %s", f).WithSeverity("WARNING").
			WithHint("Drop the tables named <table>_<shard id> on that node by hand."))
	}
	x.out.CommandComplete(st.Tag) // DROP TABLE, or DROP SCHEMA (router/ddlschema.go)
	return nil
}

// running runs fn, which waits for c, with c among the session's running connections: a
// cancel request reaches it. A cancel request that came first ends the statement at once.
func (x *execution) running(c *backend.Conn, fn func() error) error {
	x.ss.startRunning(c)
	defer x.ss.stopRunning(c)
	if x.ss.cancelled.Load() {
		return errUserCancel()
	}
	return fn()
}

// shardDrops are the workers' open transactions that dropped shard tables.
type shardDrops struct {
	ss    *session
	conns map[metadata.Node]workerConn
}

// dropShardTables drops each node's shard tables (byNode: their qualified names) in a
// transaction it leaves open, on the nodes in parallel. A node that cannot be reached is reported in failed (its shard
// tables stay, orphaned); any other error of a node's drop is returned, the first, and
// the caller rolls back the others (end).
func (x *execution) dropShardTables(ctx context.Context, byNode map[metadata.Node][]string) (drops *shardDrops, failed []string, err error) {
	ss := x.ss
	drops = &shardDrops{ss: ss, conns: map[metadata.Node]workerConn{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for node, cmds := range byNode {
		w, werr := ss.txn.workerConn(ctx, node)
		if werr != nil {
			mu.Lock()
			stop := !backend.Unavailable(werr)
			if !stop {
				failed = append(failed, fmtNode(node)+": "+werr.Error())
			} else if err == nil {
				err = werr
			}
			mu.Unlock()
			if stop {
				break
			}
			continue
		}
		drops.conns[node] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := w.conn()
			derr := x.running(c, func() error {
				// One statement: shards of tables that refer to each other (co-located
				// foreign keys) go together, in any order, as in PostgreSQL.
				return c.Exec(ctx, "BEGIN; DROP TABLE IF EXISTS "+strings.Join(cmds, ", "))
			})
			if derr == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if backend.Unavailable(derr) {
				failed = append(failed, fmtNode(node)+": "+derr.Error())
				return
			}
			if err == nil {
				err = derr
			}
		}()
	}
	wg.Wait()
	return drops, failed, err
}

// end ends the workers' transactions with sql (COMMIT or ROLLBACK), in parallel, and gives
// their connections back; it returns the nodes where a COMMIT failed.
func (d *shardDrops) end(ctx context.Context, sql string) []string {
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for node, w := range d.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.ss.txn.release(w)
			c := w.conn()
			if c.Broken() || c.TxStatus == 'I' {
				return
			}
			if err := c.Exec(ctx, sql); err != nil && sql == "COMMIT" {
				mu.Lock()
				failed = append(failed, fmtNode(node)+": "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	clear(d.conns)
	return failed
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
	// The tables whose co-located foreign keys refer to those truncated are truncated
	// too: the coordinator's statement named them or said CASCADE (else it failed). Each
	// shard table is truncated with CASCADE, as the worker would otherwise refuse to
	// truncate a referenced shard apart from the shard that refers to it.
	var tables []*metadata.Table
	seen := map[uint32]bool{}
	for _, oid := range st.Tables {
		if t := snap.TableByOID(oid); t != nil && !seen[oid] {
			seen[oid] = true
			tables = append(tables, t)
		}
	}
	for i := 0; i < len(tables); i++ {
		refs, err := x.referencingTables(ctx, tables[i].OID)
		if err != nil {
			return err
		}
		for _, r := range refs {
			if !seen[r.OID] {
				seen[r.OID] = true
				tables = append(tables, r)
			}
		}
	}
	var tasks []writeTask
	for _, t := range tables {
		for _, sh := range t.Shards {
			tasks = append(tasks, writeTask{shard: sh, sql: []byte("TRUNCATE TABLE " + router.ShardName(t.Schema, t.Name, sh.ID) + " CASCADE")})
		}
	}
	if len(tasks) == 0 {
		return nil
	}
	return x.runWrites(ctx, tasks)
}
