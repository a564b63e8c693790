package proxy

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/control"
	"github.com/pgshard/pgshard/router"
)

// Tables distributed inside the session's transaction block (master_create_distributed_table
// and master_create_worker_shards after BEGIN; proxy/control/blockdist.go). Their metadata
// rows are in the block's coordinator transaction, which no other session sees until the
// block commits: until then the session plans with its own view of the metadata, the
// server's snapshot with these tables added (snapshot). The view ends with the block (the
// server's snapshot is then reloaded, so that the session sees what its COMMIT committed
// at once), and a ROLLBACK TO a savepoint drops what it undid.

// blockTables are the session's tables distributed in its block, and the view built from
// them.
type blockTables struct {
	// tables are the versions added, in order (a table distributed, then with its
	// shards): the last one of a table is its current one.
	tables []*metadata.Table
	// altered are tables distributed before the block whose definitions a schema change
	// in the block changed, by OID, as the block sees them (ddlblock.go).
	altered map[uint32]*metadata.Table
	// base is the server snapshot the view was built on; view is the view.
	base, view *metadata.Snapshot
	// dropped are the distributed tables the block dropped (blockdrop.go), left out of
	// the view.
	dropped []uint32
}

// snapshot is the metadata the session plans with: the server's current snapshot, with
// the tables its transaction block distributed added.
func (ss *session) snapshot() *metadata.Snapshot {
	base := ss.srv.cache.Load()
	bt := &ss.blockTables
	if len(bt.tables) == 0 && len(bt.altered) == 0 && len(bt.dropped) == 0 {
		return base
	}
	if bt.view != nil && bt.base == base {
		return bt.view
	}
	latest := map[uint32]int{}
	for i, t := range bt.tables {
		latest[t.OID] = i
	}
	add := bt.alteredTables(base)
	for i, t := range bt.tables {
		if latest[t.OID] == i {
			add = append(add, t)
		}
	}
	bt.base, bt.view = base, base.WithTables(add).WithoutTables(bt.dropped)
	return bt.view
}

// addBlockTable makes t the session's current version of a table distributed in its block.
func (ss *session) addBlockTable(t *metadata.Table) {
	ss.blockTables.tables = append(ss.blockTables.tables, t)
	ss.srv.blockNames.add(ss, t)
	ss.blockTables.view = nil
	ss.namesDirty = true
}

// refreshBlockTables reads the definitions of the tables the block distributed again,
// after a schema change in the block (ALTER TABLE, CREATE INDEX) may have changed them:
// the session's view then plans with their new columns.
func (ss *session) refreshBlockTables(ctx context.Context) {
	bt := &ss.blockTables
	if len(bt.tables) == 0 {
		return
	}
	latest := map[uint32]*metadata.Table{}
	var order []uint32
	for _, t := range bt.tables {
		if latest[t.OID] == nil {
			order = append(order, t.OID)
		}
		latest[t.OID] = t
	}
	q := controlClient{ss: ss}.Query
	for _, oid := range order {
		old := latest[oid]
		nt, err := store.LoadTableVia(ctx, q, oid, old.Method, old.Key)
		if err != nil {
			ss.log.Warn("could not read again a table the transaction block distributed", "table", old.QualifiedName(), "err", err)
			continue
		}
		nt.Shards = old.Shards
		ss.addBlockTable(nt)
	}
}

// blockTablesUndone brings the session's view in line with the end of its block (ended),
// or with a ROLLBACK TO: the coordinator's block transaction says which of the tables'
// versions remain (the partition row, the shards).
func (ss *session) blockTablesUndone(ctx context.Context, ended bool) {
	ss.alteredUndone(ctx, ended) // tables the block changed (ddlblock.go)
	bt := &ss.blockTables
	if !ended {
		ss.blockDropsUndone(ctx)
	} else if len(bt.dropped) > 0 && len(bt.tables) == 0 {
		*bt = blockTables{}
		if _, err := ss.srv.store.Reload(ctx, ss.srv.cache); err != nil {
			ss.log.Warn("could not reload the metadata after a transaction block that dropped tables", "err", err)
		}
		return
	}
	if len(bt.tables) == 0 {
		return
	}
	if ended {
		*bt = blockTables{}
		ss.srv.blockNames.drop(ss)
		// A COMMIT made them everyone's: the session's next statement sees them without
		// waiting for the notification.
		if _, err := ss.srv.store.Reload(ctx, ss.srv.cache); err != nil {
			ss.log.Warn("could not reload the metadata after a transaction block that distributed tables", "err", err)
		}
		return
	}
	bt.view = nil
	ss.namesDirty = true
	keep := bt.tables[:0:0]
	state := map[uint32]string{}
	for _, t := range bt.tables {
		st, ok := state[t.OID]
		if !ok {
			rows, err := controlClient{ss: ss}.Query(ctx, "SELECT pgs_distribute.state($1::pg_catalog.oid)", [][]byte{[]byte(strconv.FormatUint(uint64(t.OID), 10))})
			if err != nil || len(rows) != 1 || len(rows[0]) != 1 {
				// The session then sees them as the others do (their prototypes refuse
				// writes if still distributed): nothing reaches shards the block may
				// have undone.
				ss.log.Warn("could not read which tables the transaction block still distributes", "err", err)
				bt.tables = nil
				ss.srv.blockNames.drop(ss)
				return
			}
			st = string(rows[0][0])
			state[t.OID] = st
		}
		switch {
		case st == "shards":
			keep = append(keep, t)
		case st == "partition" && len(t.Shards) == 0:
			keep = append(keep, t)
		}
	}
	bt.tables = keep
	ss.srv.blockNames.drop(ss)
	for _, t := range keep {
		ss.srv.blockNames.add(ss, t)
	}
}

// blockNames are the tables that sessions' transaction blocks distributed and have not
// committed yet, for the errors of their shards (unshardNames): a shard's error names
// "orders_pkey_102008", which the server's snapshot cannot map while only the block
// knows the shard. Shard ids are never used twice, so mapping them for every session is
// harmless: no other session can meet those shards.
type blockNames struct {
	n  atomic.Int32 // sessions with tables in tables; none: nothing to look at
	mu sync.Mutex
	// tables are each session's tables, by OID (the last version added).
	tables map[*session]map[uint32]*metadata.Table
	// base and view are the last view built (with), for reuse.
	base, view *metadata.Snapshot
}

func (b *blockNames) add(ss *session, t *metadata.Table) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tables == nil {
		b.tables = map[*session]map[uint32]*metadata.Table{}
	}
	if b.tables[ss] == nil {
		b.tables[ss] = map[uint32]*metadata.Table{}
		b.n.Add(1)
	}
	b.tables[ss][t.OID] = t
	b.view = nil
}

func (b *blockNames) drop(ss *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tables[ss] != nil {
		delete(b.tables, ss)
		b.n.Add(-1)
		b.view = nil
	}
}

// with returns snap with the blocks' tables added (snap itself when there are none).
func (b *blockNames) with(snap *metadata.Snapshot) *metadata.Snapshot {
	if b.n.Load() == 0 {
		return snap
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.view != nil && b.base == snap {
		return b.view
	}
	var add []*metadata.Table
	for _, ts := range b.tables {
		for _, t := range ts {
			if snap.TableByOID(t.OID) == nil {
				add = append(add, t)
			}
		}
	}
	b.base, b.view = snap, snap.WithTables(add)
	return b.view
}

// controlBlock is the session's transaction block as control.Block.
type controlBlock struct{ ss *session }

var _ control.Block = controlBlock{}

func (b controlBlock) RunOnWorker(ctx context.Context, node metadata.Node, role string, cmds []string) error {
	w, err := b.ss.txn.workerConn(ctx, node)
	if err != nil {
		return err
	}
	defer b.ss.txn.release(w)
	c := w.conn()
	rows, err := c.ExecRows(ctx, "SELECT pg_catalog.current_setting('role'), pg_catalog.current_setting('search_path')")
	if err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 2 {
		return pgerr.New(pgerr.InternalError, "unexpected answer reading the worker session's role")
	}
	// The statements are pgshard's, every name in them qualified: nothing on the
	// session's search_path may stand in for pg_catalog's. The settings are local to the
	// block, and set back to what they were.
	sql := "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)"
	if role != "" {
		sql += "; SELECT pg_catalog.set_config('role', " + router.QuoteLiteral(role) + ", true)"
	}
	sql += ";\n" + strings.Join(cmds, ";\n") + ";\nSELECT pg_catalog.set_config('role', " + router.QuoteLiteral(string(rows[0][0])) +
		", true), pg_catalog.set_config('search_path', " + router.QuoteLiteral(string(rows[0][1])) + ", true)"
	return c.Exec(ctx, sql)
}

func (b controlBlock) Wrote(ps []metadata.Placement) {
	for _, p := range ps {
		b.ss.txn.noteTxWrite(p)
	}
}

func (b controlBlock) AddTable(t *metadata.Table) { b.ss.addBlockTable(t) }

// sessionSnapshots is the session's view of the metadata as control.Snapshots.
type sessionSnapshots struct{ ss *session }

func (s sessionSnapshots) Load() *metadata.Snapshot { return s.ss.snapshot() }
