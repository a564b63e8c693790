package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/proxy/pgwire"
	"github.com/pgshard/pgshard/router"
)

// Schema changes of distributed tables (router kind DDL: ALTER TABLE, CREATE INDEX, DROP
// INDEX, ALTER INDEX ... RENAME, GRANT/REVOKE, COMMENT). They run in the session's
// transaction block, or in a block of their own outside one, so that the block's commit
// (endTx: two-phase commit over the coordinator and the workers) makes them atomic:
//
//  1. the shards' write locks, exclusively (as a write to every shard takes them);
//  2. the client's statement on the coordinator, as the client's role: PostgreSQL checks
//     ownership and privileges, and chooses the names of unnamed constraints and indexes,
//     which the proxy reads from the catalog before and after (router.DDLCatalog);
//  3. the statement rewritten for each shard (router.ShardDDL) on every placement, as a
//     write: a placement that is unavailable is marked inactive (repair recreates it from
//     the coordinator's definition), a shard none of whose placements took it fails the
//     statement, and any error a placement answers fails it and the block.
//
// Once committed, the proxy reloads its metadata (columns, defaults, names) before the
// client's next statement; inside a client's block, at its COMMIT.

// ddl runs a DDL plan.
func (x *execution) ddl(ctx context.Context) error {
	if x.st.Maint != nil {
		return maintExec{x}.maint(ctx) // CONCURRENTLY, REINDEX, CLUSTER, VACUUM, ANALYZE (maint.go)
	}
	ss, st := x.ss, x.st
	sql := render(st.Text, x.in, nil, nil)
	work, err := x.ddlTables(ctx, sql)
	if err != nil {
		return err
	}
	if len(work) == 0 {
		// Indexes of no distributed table: the coordinator's business alone.
		return x.coordinatorStatement(ctx, sql)
	}
	own := ss.txn.tx == txIdle
	if own {
		// READ COMMITTED whatever the session's default: the authorization the guard
		// looks for is committed after the block's first statement (ddlguard.go).
		ss.txn.beginBlock("BEGIN ISOLATION LEVEL READ COMMITTED")
	}
	tag, err := x.ddlIn(ctx, sql, work)
	if !own {
		if err == nil {
			ss.ddlReload = true
			ss.afterBlockDDL(ctx, work) // the rest of the block plans with the new definitions (ddlblock.go)
			x.out.CommandComplete(tag)
		}
		return err
	}
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
	ss.reloadAfterDDL(ctx)
	if cerr != nil {
		return cerr
	}
	x.out.CommandComplete(tag)
	return nil
}

// reloadAfterDDL loads the metadata again after a schema change committed: the tables'
// columns, defaults and names changed.
func (ss *session) reloadAfterDDL(ctx context.Context) {
	ss.ddlReload = false
	if _, err := ss.srv.store.Reload(ctx, ss.srv.cache); err != nil {
		ss.log.Warn("metadata reload after a schema change failed", "err", err)
	}
}

// ddlWork is one distributed table a DDL statement changes, with what its rewrite for the
// shards needs.
type ddlWork struct {
	t   *metadata.Table
	cat *router.DDLCatalog
}

// ddlTables returns the distributed tables the statement changes, in a stable order.
func (x *execution) ddlTables(ctx context.Context, sql string) ([]*ddlWork, error) {
	snap, st := x.snap, x.st
	if name, _ := router.DDLEnumName(sql); name != "" {
		return x.enumTables(ctx, name) // ddldeps.go
	}
	if schema, name := router.DDLFunctionName(sql); name != "" {
		return x.functionTables(ctx, schema, name) // ddldeps.go
	}
	var work []*ddlWork
	if !st.IndexLookup {
		var refs []*metadata.Table
		for _, oid := range st.References {
			ref := snap.TableByOID(oid)
			if ref == nil {
				return nil, pgerr.New(pgerr.ObjectNotInPrereqState, "a table the foreign key refers to is no longer distributed")
			}
			refs = append(refs, ref)
		}
		for _, oid := range st.Tables {
			if t := snap.TableByOID(oid); t != nil {
				work = append(work, &ddlWork{t: t, cat: &router.DDLCatalog{Refs: refs}})
			}
		}
		return work, nil
	}
	names, _, err := router.DDLIndexNames(sql)
	if err != nil {
		return nil, err
	}
	lits := make([]string, len(names))
	for i, n := range names {
		lits[i] = router.QuoteLiteral(n)
	}
	rows, err := sessionQuery(ctx, x.ss, "SELECT n.pos::int8, i.indrelid::int8 FROM pg_catalog.unnest(ARRAY["+strings.Join(lits, ", ")+
		"]::pg_catalog.text[]) WITH ORDINALITY n(name, pos) JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(n.name) ORDER BY 1")
	if err != nil {
		return nil, err
	}
	byOID := map[uint32]*ddlWork{}
	for _, r := range rows {
		pos, _ := strconv.Atoi(string(r[0]))
		oid, _ := strconv.ParseUint(string(r[1]), 10, 32)
		t := snap.TableByOID(uint32(oid))
		if t == nil {
			continue
		}
		w := byOID[t.OID]
		if w == nil {
			w = &ddlWork{t: t, cat: &router.DDLCatalog{}}
			byOID[t.OID] = w
			work = append(work, w)
		}
		w.cat.Objects = append(w.cat.Objects, pos-1)
	}
	return work, nil
}

// ddlIn is ddl's work inside the block: locks, the coordinator's statement, the shards'.
func (x *execution) ddlIn(ctx context.Context, sql string, work []*ddlWork) (string, error) {
	ss, st := x.ss, x.st
	var tasks []writeTask
	var owners []*ddlWork
	for _, w := range work {
		for _, sh := range w.t.Shards {
			tasks = append(tasks, writeTask{shard: sh})
			owners = append(owners, w)
		}
	}
	// The shards of the other distributed tables a foreign key ties the statement's
	// tables to are locked exclusively too: those the statement's foreign keys refer to
	// (it locks their shard tables on the workers and checks their rows), and, for ALTER
	// TABLE, those whose foreign keys refer to the altered table (a column's new type,
	// a dropped key rebuild or drop their constraints on the workers as on the
	// coordinator). All in the one request that takes a statement's locks in key order
	// (takeLocks): the coordinator's deadlock detector sees any cycle with the writes
	// that take those tables' locks, which no worker's detector would see.
	locks := tasks
	var tied []uint32
	lockTable := func(w *ddlWork, t *metadata.Table) {
		tied = append(tied, t.OID)
		if t.OID == w.t.OID {
			return
		}
		for _, sh := range t.Shards {
			locks = append(locks[:len(locks):len(locks)], writeTask{shard: sh})
		}
	}
	for _, w := range work {
		for _, ref := range w.cat.Refs {
			lockTable(w, ref)
		}
		if st.Tag != "ALTER TABLE" || st.IndexLookup {
			continue
		}
		referencing, err := x.referencingTables(ctx, w.t.OID)
		if err != nil {
			return "", err
		}
		for _, t := range referencing {
			lockTable(w, t)
		}
	}
	if len(locks) > 0 {
		if err := x.lockShards(ctx, locks); err != nil {
			return "", err
		}
		currentShards(ss.srv.cache.Load(), tasks)
	}
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return "", err
	}
	var before map[*ddlWork][]catalogObject
	if st.DDLCatalog {
		before = map[*ddlWork][]catalogObject{}
		for _, w := range work {
			if before[w], err = ddlCatalog(ctx, c, w.t.OID); err != nil {
				return "", err
			}
		}
	}
	// The coordinator's event triggers refuse schema changes of distributed tables that
	// pgshard did not authorize for this transaction (ddlguard.go).
	// (A foreign key adds triggers to the referenced table as well.)
	oids := make([]uint32, 0, len(work)+len(tied))
	for _, w := range work {
		oids = append(oids, w.t.OID)
	}
	oids = append(oids, tied...)
	if err := ss.authorizeDDL(ctx, c, oids); err != nil {
		return "", err
	}
	tag, err := x.coordinatorDDL(ctx, c, sql)
	if err != nil {
		return "", err
	}
	wrap, err := x.shardPrelude(ctx, c, sql, work) // ddlschema.go
	if err != nil {
		return "", err
	}
	if st.DDLCatalog {
		for _, w := range work {
			after, err := ddlCatalog(ctx, c, w.t.OID)
			if err != nil {
				return "", err
			}
			w.cat.Kinds = map[string]byte{}
			w.cat.ShardFKs = map[string]bool{}
			had := map[int64]bool{}
			for _, o := range before[w] {
				had[o.oid] = true
				if o.kind != 'i' {
					w.cat.Kinds[o.name] = o.kind
				}
				if o.kind == 'f' && x.snap.TableByOID(o.ref) != nil {
					w.cat.ShardFKs[o.name] = true
				}
			}
			for _, o := range after {
				if !had[o.oid] {
					w.cat.Added = append(w.cat.Added, router.DDLObject{Name: o.name, Kind: o.kind})
				}
			}
		}
	}
	if exprs := router.DDLColumnDefaults(sql); len(exprs) > 0 {
		for _, w := range work {
			if err := x.computedDefaults(ctx, c, w, exprs); err != nil { // ddldefault.go
				return "", err
			}
		}
	}
	adapt, err := x.newShardStatements(ctx, c, sql, work) // ddldeps.go
	if err != nil {
		return "", err
	}
	var run []writeTask
	for i, task := range tasks {
		w := owners[i]
		shardSQL, err := router.ShardDDL(sql, w.t, task.shard.ID, w.cat)
		if err != nil {
			return "", err
		}
		if shardSQL == "" {
			continue
		}
		task.sql = []byte(wrap(adapt.adapt(w, shardSQL)))
		run = append(run, task)
	}
	if len(run) == 0 {
		return tag, nil
	}
	if err := x.shardWrites(ctx, run); err != nil {
		return "", err
	}
	return tag, nil
}

// referencingTables returns the distributed tables other than oid with foreign keys that
// refer to table oid.
func (x *execution) referencingTables(ctx context.Context, oid uint32) ([]*metadata.Table, error) {
	rows, err := sessionQuery(ctx, x.ss, fmt.Sprintf("SELECT DISTINCT conrelid::int8 FROM pg_catalog.pg_constraint WHERE confrelid OPERATOR(pg_catalog.=) %d AND contype OPERATOR(pg_catalog.=) 'f' ORDER BY 1", oid))
	if err != nil {
		return nil, err
	}
	var out []*metadata.Table
	for _, r := range rows {
		rel, _ := strconv.ParseUint(string(r[0]), 10, 32)
		if t := x.snap.TableByOID(uint32(rel)); t != nil && t.OID != oid {
			out = append(out, t)
		}
	}
	return out, nil
}

// shardWrites runs the shards' statements as writes. The shards' notices repeat the
// coordinator's (a DROP ... IF EXISTS that skips, once per shard) and are dropped; the
// warnings of placements marked inactive reach the client.
func (x *execution) shardWrites(ctx context.Context, tasks []writeTask) error {
	orig := x.out.Writer
	var buf bytes.Buffer
	side := pgwire.NewWriter(&buf)
	x.out.Redirect(side)
	err := x.runWrites(ctx, tasks)
	x.out.Redirect(orig)
	side.Flush()
	b := buf.Bytes()
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if n < 4 || len(b) < 1+n {
			break
		}
		typ, body := b[0], b[5:1+n]
		b = b[1+n:]
		if typ == 'N' {
			if e := backend.DecodeError(body); e.Severity == "NOTICE" || e.Severity == "INFO" || e.Severity == "DEBUG" || e.Severity == "LOG" {
				continue
			}
		}
		orig.Raw(typ, body)
	}
	return err
}

// catalogObject is a constraint (kind: its contype) or an index backing none (kind 'i')
// of a table.
type catalogObject struct {
	name string
	kind byte
	oid  int64
	ref  uint32 // a foreign key's referenced table
}

// ddlCatalog reads a table's constraints and indexes, in creation order, in the block.
func ddlCatalog(ctx context.Context, c *backend.Conn, oid uint32) ([]catalogObject, error) {
	rows, err := c.ExecRows(ctx, fmt.Sprintf(`SELECT conname, contype::text, oid::int8, confrelid::int8 FROM pg_catalog.pg_constraint WHERE conrelid = %[1]d
		UNION ALL
		SELECT c.relname, 'i', c.oid::int8, 0 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = %[1]d AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = %[1]d)
		ORDER BY 3`, oid))
	if err != nil {
		return nil, err
	}
	out := make([]catalogObject, 0, len(rows))
	for _, r := range rows {
		o := catalogObject{name: string(r[0])}
		if len(r[1]) > 0 {
			o.kind = r[1][0]
		}
		o.oid, _ = strconv.ParseInt(string(r[2]), 10, 64)
		ref, _ := strconv.ParseUint(string(r[3]), 10, 32)
		o.ref = uint32(ref)
		out = append(out, o)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].oid < out[j].oid })
	return out, nil
}

// coordinatorDDL runs the client's statement on the coordinator (the block's connection)
// and returns its command tag; its notices go to the client as they come.
func (x *execution) coordinatorDDL(ctx context.Context, c *backend.Conn, sql string) (string, error) {
	var tag string
	err := x.running(c, func() error {
		stop := c.WatchContext(ctx)
		defer stop()
		c.Query(sql)
		if err := c.Flush(); err != nil {
			return err
		}
		var first error
		for {
			t, b, err := c.Next()
			if err != nil {
				return err
			}
			switch t {
			case 'N':
				x.out.Raw('N', b)
			case 'C':
				tag = string(trimZero(b))
			case 'E':
				if first == nil {
					first = c.DecodeError(b)
				}
			case 'Z':
				return first
			}
		}
	})
	return tag, err
}
