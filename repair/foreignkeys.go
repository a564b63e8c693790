package repair

import (
	"context"
	"strconv"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/router"
)

// Foreign keys between co-located distributed tables: shard i of the referencing table
// refers to shard i of the referenced one, on the same workers. A repair recreates both
// sides of them on the target worker:
//
//   - the repaired shard's own foreign keys, added once its rows are copied (the rows
//     they refer to are on the worker already);
//   - the foreign keys of the shards on the worker that refer to the repaired shard: its
//     DROP TABLE must CASCADE to them (PostgreSQL refuses it otherwise), and they are
//     added again, and validated, once the rows are back.
//
// Each is the coordinator's constraint (pg_get_constraintdef) rewritten for the shard as
// ALTER TABLE ... ADD FOREIGN KEY through pgshard rewrites it (router.ShardDDL).

// foreignKeys are the commands a repair of shard shardID of t runs after the copy, and
// whether its DROP must cascade to other shards' constraints.
type foreignKeys struct {
	after   []string
	cascade bool
}

// shardForeignKeys reads the foreign keys from and to t on the coordinator and renders
// them for the shard of t's index of shardID on the target worker.
func (r *Repairer) shardForeignKeys(ctx context.Context, t *metadata.Table, shardID int64) (foreignKeys, error) {
	var fks foreignKeys
	snap := r.Cache.Load()
	idx := -1
	for i, sh := range t.Shards {
		if sh.ID == shardID {
			idx = i
		}
	}
	rows, err := r.Store.Pool().Query(ctx, `SELECT co.conrelid::int8, co.confrelid::int8,
			'ALTER TABLE ' || co.conrelid::pg_catalog.regclass::text || ' ADD CONSTRAINT ' || pg_catalog.quote_ident(co.conname) || ' ' || pg_catalog.pg_get_constraintdef(co.oid)
		FROM pg_catalog.pg_constraint co
		WHERE co.contype OPERATOR(pg_catalog.=) 'f' AND (co.conrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid OR co.confrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid)
		ORDER BY co.conrelid, co.conname`, strconv.FormatUint(uint64(t.OID), 10))
	if err != nil {
		return fks, err
	}
	type fk struct {
		from, to uint32
		sql      string
	}
	var all []fk
	for rows.Next() {
		var from, to int64
		var sql string
		if err := rows.Scan(&from, &to, &sql); err != nil {
			rows.Close()
			return fks, err
		}
		all = append(all, fk{uint32(from), uint32(to), sql})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fks, err
	}
	for _, f := range all {
		from, to := snap.TableByOID(f.from), snap.TableByOID(f.to)
		if from == nil || to == nil || idx < 0 || idx >= len(from.Shards) {
			continue // a constraint pgshard did not make (it refuses the others)
		}
		if f.from != t.OID {
			fks.cascade = true
		}
		// The worker's search_path is pg_catalog's in the repair's sessions: names the
		// coordinator printed unqualified (public's) are qualified by the rewrite.
		sql, err := router.ShardDDL(f.sql, from, from.Shards[idx].ID, &router.DDLCatalog{Refs: []*metadata.Table{to}})
		if err != nil {
			return fks, pgerr.Wrap(err, pgerr.InternalError, "could not write the foreign keys of shard %d: %v", shardID, err)
		}
		if sql == "" {
			continue
		}
		// A constraint already there (a referencing shard the drop did not reach) stays.
		fks.after = append(fks.after, "DO $pgshard$BEGIN\n"+sql+";\nEXCEPTION WHEN duplicate_object THEN NULL;\nEND$pgshard$")
	}
	return fks, nil
}
