package proxy

import (
	"context"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
)

// Schema changes of distributed tables inside a transaction block (ddlprop.go) commit
// with the block; until then the server's snapshot still describes the tables as they
// were before it. The session plans the rest of its block with the definitions its block
// left: after each schema change it reads the changed tables' definitions again through
// its own coordinator connection, which sees the uncommitted change, and adds them to
// its view of the metadata (ss.snapshot, blockdist.go), as it does for the tables its
// block distributed. So an INSERT or COPY names a column added or renamed in the block,
// leaves out one dropped in it, and gets a default set in it evaluated. A ROLLBACK TO a
// savepoint reads them again (what the block still holds of its changes); the block's
// end drops them (after a COMMIT the session's next statement reloads the metadata,
// ddlReload).

// afterBlockDDL brings the session's view in line with a schema change that ran inside
// its block and changed the tables of work.
func (ss *session) afterBlockDDL(ctx context.Context, work []*ddlWork) {
	ss.refreshBlockTables(ctx) // tables the block distributed
	bt := &ss.blockTables
	ownTables := map[uint32]bool{}
	for _, t := range bt.tables {
		ownTables[t.OID] = true
	}
	for _, w := range work {
		if !ownTables[w.t.OID] {
			ss.rereadAltered(ctx, w.t)
		}
	}
}

// rereadAltered reads t's definition as the session's block sees it and makes it the
// one the session plans with until the block ends.
func (ss *session) rereadAltered(ctx context.Context, t *metadata.Table) {
	bt := &ss.blockTables
	nt, err := store.LoadTableVia(ctx, controlClient{ss: ss}.Query, t.OID, t.Method, t.Key)
	if err != nil {
		// The session then plans with the definition from before the block, as
		// the server's snapshot has it: statements naming what the block changed
		// fail as they would without this view.
		ss.log.Warn("could not read again the definition of a table changed in the transaction block", "table", t.QualifiedName(), "err", err)
		delete(bt.altered, t.OID)
	} else {
		nt.Shards = nil // the server's, when the view is built
		if bt.altered == nil {
			bt.altered = map[uint32]*metadata.Table{}
		}
		bt.altered[t.OID] = nt
	}
	bt.view = nil
	ss.namesDirty = true
}

// alteredUndone is blockTablesUndone's part for the tables the block changed: at the
// block's end they are forgotten; after a ROLLBACK TO, read again.
func (ss *session) alteredUndone(ctx context.Context, ended bool) {
	bt := &ss.blockTables
	if len(bt.altered) == 0 {
		return
	}
	if ended {
		bt.altered = nil
		bt.view = nil
		ss.namesDirty = true
		return
	}
	for _, t := range bt.altered {
		ss.rereadAltered(ctx, t)
	}
}

// alteredTables are the tables the block changed as the view adds them to base: with
// base's shards (placement states change during the block), and only while base still
// has the table.
func (bt *blockTables) alteredTables(base *metadata.Snapshot) []*metadata.Table {
	var add []*metadata.Table
	for oid, t := range bt.altered {
		cur := base.TableByOID(oid)
		if cur == nil {
			continue
		}
		nt := *t
		nt.Shards = cur.Shards
		add = append(add, &nt)
	}
	return add
}
