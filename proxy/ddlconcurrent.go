package proxy

import (
	"context"
	"fmt"
	"strconv"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY of distributed tables, outside
// transaction blocks (25001 inside one, as PostgreSQL). Writes keep flowing: no shard
// write lock is taken, and each placement builds or drops its index CONCURRENTLY, one
// placement at a time, in transactions of its own.
//
// The coordinator's table is an empty prototype: it runs the statement without
// CONCURRENTLY (instant there), in a transaction authorized by ddlguard.go, as the
// client's role. The coordinator's event triggers still refuse CONCURRENTLY forms sent
// straight to it.
//
// CREATE INDEX CONCURRENTLY: the coordinator first, then each placement gets the
// coordinator's index definition (pg_get_indexdef) as CREATE INDEX CONCURRENTLY of
// <index>_<shard id> on its shard table. It is resumable: a placement that already has a
// valid index of that name on its shard table is skipped, one with an INVALID one (a
// build that failed or was cancelled) has it dropped (DROP INDEX CONCURRENTLY) and built
// again. When a placement fails (an error, an unreachable worker: it is not marked
// inactive) the statement stops with the placement's error and a hint saying how many
// placements have the index; the index stays on the coordinator, and running the same
// statement again (with or without IF NOT EXISTS) finds the coordinator's index of that
// name on that table and completes the placements that lack a valid one, instead of
// failing with 42P07; only when every placement had it already does it answer 42P07 (or
// IF NOT EXISTS's notice), as PostgreSQL would. An index left unnamed gets the name the
// coordinator chose, so its re-run creates another index, as in PostgreSQL.
//
// DROP INDEX CONCURRENTLY: the coordinator's DROP INDEX is tried first and rolled back
// (PostgreSQL's checks: ownership, constraints needing the index), then each placement
// runs DROP INDEX CONCURRENTLY IF EXISTS of its shard's index, then the coordinator drops
// its index for good. A failure half way leaves the index on the coordinator and on the
// placements not reached yet: running the statement again finishes it.

// createIndexConcurrently runs CREATE INDEX CONCURRENTLY on w's table.
func (x maintExec) createIndexConcurrently(ctx context.Context, sql string, w *ddlWork) error {
	ss, t := x.ss, w.t
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	name, ifNotExists := router.CreateIndexName(sql)
	var index int64
	if name != "" {
		if index, err = x.coordIndexOf(ctx, c, router.QuoteIdent(t.Schema)+"."+router.QuoteIdent(name), t); err != nil {
			return err
		}
	}
	resumed := index != 0
	if !resumed {
		if index, err = x.createCoordIndex(ctx, sql, w); err != nil || index == 0 {
			// (0: IF NOT EXISTS found another relation of that name, and said so.)
			if err == nil {
				x.out.CommandComplete("CREATE INDEX")
			}
			return err
		}
	}
	rows, err := c.ExecRows(ctx, fmt.Sprintf("SELECT c.relname, pg_catalog.pg_get_indexdef(c.oid) FROM pg_catalog.pg_class c WHERE c.oid = %d", index))
	if err != nil {
		return err
	}
	if len(rows) != 1 {
		return pgerr.New(pgerr.UndefinedObject, "the index was dropped on the coordinator while pgshard built it on the placements")
	}
	relname, def := string(rows[0][0]), string(rows[0][1])
	built := 0
	total := 0
	for _, sh := range t.Shards {
		total += len(sh.Finalized())
	}
	done := 0
	for _, sh := range t.Shards {
		create, err := router.ShardIndexDef(def, t, sh.ID)
		if err != nil {
			return err
		}
		idx, err := router.ShardIndexName(t, relname, sh.ID)
		if err != nil {
			return err
		}
		tbl, err := router.ShardTableName(t, sh.ID)
		if err != nil {
			return err
		}
		for _, p := range sh.Finalized() {
			did, err := x.buildPlacementIndex(ctx, p.Node, idx, tbl, create)
			if err != nil {
				return maintStopped(err, fmt.Sprintf("The index is on the coordinator and on %d of the %d placements (its build was stopped on the others). Run the same statement again, as it is or with IF NOT EXISTS, to build it on the others: an invalid index a failed build left behind is dropped and built again.", done, total))
			}
			done++
			if did {
				built++
			}
		}
	}
	ss.reloadAfterDDL(ctx)
	if resumed && built == 0 {
		if !ifNotExists {
			return pgerr.New(pgerr.Code("42P07"), "relation %q already exists", name)
		}
		x.out.Notice(pgerr.New(pgerr.Code("42P07"), "relation %q already exists, skipping", name).WithSeverity("NOTICE"))
	}
	x.out.CommandComplete("CREATE INDEX")
	return nil
}

// coordIndexOf returns the OID of the index the coordinator has under name (text for
// regclass) if it is an index of t, else 0.
func (x maintExec) coordIndexOf(ctx context.Context, c *backend.Conn, name string, t *metadata.Table) (int64, error) {
	rows, err := c.ExecRows(ctx, fmt.Sprintf("SELECT i.indexrelid::pg_catalog.int8 FROM pg_catalog.pg_index i WHERE i.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s) AND i.indrelid OPERATOR(pg_catalog.=) %d",
		router.QuoteLiteral(name), t.OID))
	if err != nil || len(rows) != 1 {
		return 0, err
	}
	return strconv.ParseInt(string(rows[0][0]), 10, 64)
}

// createCoordIndex runs the statement, without CONCURRENTLY, on the coordinator in an
// authorized transaction, and returns the OID of the index it created (0 when IF NOT
// EXISTS skipped it).
func (x maintExec) createCoordIndex(ctx context.Context, sql string, w *ddlWork) (int64, error) {
	coordSQL, err := router.CoordinatorMaint(sql)
	if err != nil {
		return 0, err
	}
	c, err := x.ss.txn.coordConn(ctx)
	if err != nil {
		return 0, err
	}
	before, err := ddlCatalog(ctx, c, w.t.OID)
	if err != nil {
		return 0, err
	}
	if _, err := x.coordAuthorized(ctx, coordSQL, []*ddlWork{w}, true); err != nil {
		return 0, err
	}
	after, err := ddlCatalog(ctx, c, w.t.OID)
	if err != nil {
		return 0, err
	}
	had := map[int64]bool{}
	for _, o := range before {
		had[o.oid] = true
	}
	for _, o := range after {
		if !had[o.oid] && o.kind == 'i' {
			return o.oid, nil
		}
	}
	return 0, nil
}

// buildPlacementIndex gives the placement on node its shard's index idx (on shard table
// tbl) with create (CREATE INDEX CONCURRENTLY): nothing when it has a valid one (false);
// an invalid one is dropped first. A failed build's invalid index is dropped again when
// the connection still can.
func (x maintExec) buildPlacementIndex(ctx context.Context, node metadata.Node, idx, tbl, create string) (bool, error) {
	built := false
	err := x.withPlacement(ctx, node, func(c *backend.Conn) error {
		exists, valid, err := placementIndex(ctx, c, idx, tbl)
		if err != nil || valid {
			return err
		}
		dropInvalid := func() error {
			return x.running(c, func() error { return c.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+idx) })
		}
		if exists {
			if err := dropInvalid(); err != nil {
				return err
			}
		}
		if err := x.running(c, func() error { return c.Exec(ctx, create) }); err != nil {
			if !c.Broken() {
				if exists, valid, qerr := placementIndex(context.WithoutCancel(ctx), c, idx, tbl); qerr == nil && exists && !valid {
					dropInvalid()
				}
			}
			return err
		}
		built = true
		return nil
	})
	return built, err
}

// placementIndex reports whether the placement has an index named idx on tbl, and
// whether it is valid.
func placementIndex(ctx context.Context, c *backend.Conn, idx, tbl string) (exists, valid bool, err error) {
	rows, err := c.ExecRows(ctx, fmt.Sprintf("SELECT i.indisvalid FROM pg_catalog.pg_index i WHERE i.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s) AND i.indrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)",
		router.QuoteLiteral(idx), router.QuoteLiteral(tbl)))
	if err != nil || len(rows) != 1 {
		return false, false, err
	}
	return true, string(rows[0][0]) == "t", nil
}

// dropIndexConcurrently runs DROP INDEX CONCURRENTLY of an index of w's table.
func (x maintExec) dropIndexConcurrently(ctx context.Context, sql string, w *ddlWork) error {
	index, err := x.indexRelname(ctx, sql)
	if err != nil {
		return err
	}
	coordSQL, err := router.CoordinatorMaint(sql)
	if err != nil {
		return err
	}
	work := []*ddlWork{w}
	if _, err := x.coordAuthorized(ctx, coordSQL, work, false); err != nil {
		return err
	}
	targets, nodes := maintTargets(work)
	for i, tg := range targets {
		idx, err := router.ShardIndexName(tg.T, index, tg.Shard)
		if err != nil {
			return err
		}
		if err := x.onPlacement(ctx, nodes[i], "DROP INDEX CONCURRENTLY IF EXISTS "+idx); err != nil {
			return maintStopped(err, fmt.Sprintf("The index was dropped from %d of the %d placements and is still on the coordinator. Run the statement again to drop it from the others.", i, len(targets)))
		}
	}
	tag, err := x.coordAuthorized(ctx, coordSQL, work, true)
	if err != nil {
		return err
	}
	x.ss.reloadAfterDDL(ctx)
	x.out.CommandComplete(tag)
	return nil
}
