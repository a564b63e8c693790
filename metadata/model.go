package metadata

import (
	"fmt"
	"hash/fnv"
	"net"
	"sort"
	"strconv"
	"sync/atomic"
)

// ShardState is a placement's state, with pg_shard's numbering.
type ShardState int32

// Placement states. Only finalized placements are read or written; an inactive one missed a
// write and waits for repair.
const (
	StateFinalized ShardState = 1
	StateInactive  ShardState = 3
)

func (s ShardState) String() string {
	switch s {
	case StateFinalized:
		return "finalized"
	case StateInactive:
		return "inactive"
	case 0:
		return "invalid"
	case 2:
		return "cached"
	case 4:
		return "to_delete"
	}
	return "state" + strconv.Itoa(int(s))
}

// Node is a worker server, identified as pg_shard identifies it: by name and port.
type Node struct {
	Name string
	Port int
}

// Addr is host:port for dialing.
func (n Node) Addr() string { return net.JoinHostPort(n.Name, strconv.Itoa(n.Port)) }

func (n Node) String() string { return n.Name + ":" + strconv.Itoa(n.Port) }

// Less orders nodes as pg_shard does: by name (bytewise), then port.
func (n Node) Less(o Node) bool {
	if n.Name != o.Name {
		return n.Name < o.Name
	}
	return n.Port < o.Port
}

// Column is a column of a distributed table, as the coordinator's catalog describes it.
type Column struct {
	Name     string
	TypeOID  uint32 // the column's type (for domains, see HashType)
	HashType uint32 // the type whose hash function applies: the base type, under any domains
	TypeName string // format_type(atttypid, atttypmod)
	// BaseName names the base type without modifier (format_type(base, -1): bpchar, not
	// character, which would mean character(1)). Typmod is the modifier a value assigned
	// to the column is coerced to (the column's own, or its domain's; -1 for none), and
	// LengthFunc the function that applies it (the base type's length coercion in
	// pg_cast, schema-qualified; "" for none), which takes an isExplicit flag when
	// LengthArgs is 3.
	BaseName   string
	Typmod     int32
	LengthFunc string
	LengthArgs int
	NotNull    bool
	// Default is the column default's expression text, "" when there is none.
	Default string
	// DefaultOnShard is true when the default is a constant that the shard tables carry
	// themselves; other defaults are evaluated on the coordinator for every row.
	DefaultOnShard bool
	Identity       byte // 'a' (always), 'd' (by default) or 0
	Generated      byte // 's' for stored generated columns, else 0
	// ByteOrder is set when the column's collation orders strings byte by byte (C, POSIX,
	// C.UTF-8), or the type is not collatable: the proxy can then merge sorted streams of
	// it without the collation's rules.
	ByteOrder bool
}

// Assign returns SQL that coerces the value of the SQL expression x to the column's type
// as an INSERT assigns it (PostgreSQL's assignment coercion): the modifier is applied
// with its assignment rules, so that a value too long for character varying(n) is an
// error (22001) rather than cut, numeric(p,s) rounds, timestamp(p) rounds, and a domain's
// constraints are checked.
func (c *Column) Assign(x string) string {
	if c.Typmod < 0 || c.LengthFunc == "" || c.BaseName == "" {
		return "(" + x + ")::" + c.TypeName
	}
	e := c.LengthFunc + "((" + x + ")::" + c.BaseName + ", " + strconv.Itoa(int(c.Typmod))
	if c.LengthArgs == 3 {
		e += ", false"
	}
	e += ")"
	if c.TypeOID != c.HashType {
		e = "(" + e + ")::" + c.TypeName // the domain's constraints
	}
	return e
}

// HasTypmod reports whether values assigned to the column are coerced to a type modifier
// (char(n), varchar(n), numeric(p,s), timestamp(p), ..., directly or through a domain).
func (c *Column) HasTypmod() bool { return c.Typmod >= 0 && c.LengthFunc != "" }

// Table is a distributed table.
type Table struct {
	OID    uint32
	Schema string
	Name   string
	Method byte   // partition method: 'h' (hash)
	Key    string // partition column name
	// KeyIndex is the partition column's index in Columns, -1 if the column is gone.
	KeyIndex int
	Columns  []Column
	// HasUnique reports a unique index (primary key, unique constraint or index, deferrable
	// or not, partial or not) or an exclusion constraint on the table: what makes the
	// outcome of an INSERT depend on the rows already there, so that INSERTs to a
	// replicated shard must reach every placement in the same order. Nothing else on a
	// shard table does: CHECK and NOT NULL constraints, constant defaults and generated
	// columns look at the new row only, other defaults are evaluated on the coordinator,
	// and triggers, rules and foreign keys are not copied to shards.
	HasUnique bool
	// PrimaryKey are the indexes in Columns of the primary key's columns (none without
	// one).
	PrimaryKey []int
	// Shards are ordered by (Min, ID).
	Shards []*Shard

	disjoint bool // shards sorted and non-overlapping: binary search works
}

// KeyColumn returns the partition column, or nil if it no longer exists.
func (t *Table) KeyColumn() *Column {
	if t.KeyIndex < 0 || t.KeyIndex >= len(t.Columns) {
		return nil
	}
	return &t.Columns[t.KeyIndex]
}

// ColumnIndex returns the index of the named column, or -1.
func (t *Table) ColumnIndex(name string) int {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// QualifiedName is "schema.name" for messages (not quoted).
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// ShardsFor returns the shards whose interval holds hash token h, in order. pg_shard
// scanned every interval rather than computing an index, because the intervals are user
// editable metadata: gaps give no shard, overlaps give several.
func (t *Table) ShardsFor(h int32) []*Shard {
	if t.disjoint {
		i := sort.Search(len(t.Shards), func(i int) bool { return t.Shards[i].Max >= h })
		if i < len(t.Shards) && t.Shards[i].Min <= h {
			return t.Shards[i : i+1]
		}
		return nil
	}
	var out []*Shard
	for _, s := range t.Shards {
		if s.Min <= h && h <= s.Max {
			out = append(out, s)
		}
	}
	return out
}

// Shard is one hash-token interval [Min, Max] of a table.
type Shard struct {
	ID      int64
	TableID uint32
	Storage byte // 't' table
	Min     int32
	Max     int32
	// Placements in placement-id order (pg_shard's creation order).
	Placements []Placement
}

// Finalized returns the placements that serve reads and writes, in order.
func (s *Shard) Finalized() []Placement {
	out := make([]Placement, 0, len(s.Placements))
	for _, p := range s.Placements {
		if p.State == StateFinalized {
			out = append(out, p)
		}
	}
	return out
}

// Placement is a copy of a shard on a node.
type Placement struct {
	ID      int64
	ShardID int64
	State   ShardState
	Node    Node
}

// Snapshot is an immutable view of all distribution metadata.
type Snapshot struct {
	Version uint64
	// Generation is the coordinator's metadata generation that the snapshot was loaded at
	// (every committed change of the metadata tables bumps it); 0 when unknown.
	Generation int64
	// patched is the highest generation of the changes this proxy applied on top of the
	// loaded snapshot (WithPlacementStates through Cache.Apply), 0 when none.
	patched int64
	// patches are the generations of those changes, by placement: a change of an older
	// generation applied late (its proxy committed it before a newer change of the same
	// placement, but applied it after) must not undo the newer one.
	patches map[int64]placementPatch
	// SchemaVersion changes only when the distributed tables' definitions change (tables,
	// columns, partition keys), not when shards or placements do: plans depend on it.
	SchemaVersion uint64
	// Nodes are the registered workers, sorted by (name, port).
	Nodes []Node

	tables map[uint32]*Table
	byName map[[2]string]*Table
	shards map[int64]*Shard
	// aggregates are the names of the coordinator's aggregate functions.
	aggregates map[string]bool
	// DefaultByteOrder is set when the database's default collation orders strings byte
	// by byte.
	DefaultByteOrder bool
}

// SetAggregates records the names of the coordinator's aggregate functions (the router
// must know which calls aggregate). It is part of building a snapshot.
func (s *Snapshot) SetAggregates(names []string) {
	s.aggregates = make(map[string]bool, len(names))
	for _, n := range names {
		s.aggregates[n] = true
	}
}

// IsAggregate reports whether name is an aggregate function on the coordinator. Without a
// list it knows PostgreSQL's common built-in aggregates.
func (s *Snapshot) IsAggregate(name string) bool {
	if s.aggregates != nil {
		return s.aggregates[name]
	}
	switch name {
	case "count", "sum", "min", "max", "avg", "bool_and", "bool_or", "every", "string_agg", "array_agg",
		"stddev", "stddev_samp", "stddev_pop", "variance", "var_samp", "var_pop", "json_agg", "jsonb_agg",
		"bit_and", "bit_or", "bit_xor", "json_object_agg", "jsonb_object_agg", "xmlagg":
		return true
	}
	return false
}

var versions atomic.Uint64

// NewSnapshot builds a snapshot from its parts. It sorts nodes and shards and indexes
// everything; the arguments must not be modified afterwards.
func NewSnapshot(nodes []Node, tables []*Table) *Snapshot {
	s := &Snapshot{
		Version: versions.Add(1),
		Nodes:   nodes,
		tables:  make(map[uint32]*Table, len(tables)),
		byName:  make(map[[2]string]*Table, len(tables)),
		shards:  make(map[int64]*Shard),
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Less(nodes[j]) })
	for _, t := range tables {
		sort.Slice(t.Shards, func(i, j int) bool {
			a, b := t.Shards[i], t.Shards[j]
			if a.Min != b.Min {
				return a.Min < b.Min
			}
			return a.ID < b.ID
		})
		t.disjoint = true
		for i := 1; i < len(t.Shards); i++ {
			if t.Shards[i].Min <= t.Shards[i-1].Max {
				t.disjoint = false
			}
		}
		for _, sh := range t.Shards {
			if sh.Min > sh.Max {
				t.disjoint = false
			}
			s.shards[sh.ID] = sh
		}
		s.tables[t.OID] = t
		s.byName[[2]string{t.Schema, t.Name}] = t
	}
	s.SchemaVersion = schemaHash(s.Tables())
	return s
}

// schemaHash fingerprints the parts of the tables that plans depend on.
func schemaHash(tables []*Table) uint64 {
	h := fnv.New64a()
	for _, t := range tables {
		fmt.Fprintf(h, "%d|%s|%s|%c|%s|%d|%v|%v|", t.OID, t.Schema, t.Name, t.Method, t.Key, t.KeyIndex, t.HasUnique, t.PrimaryKey)
		for _, c := range t.Columns {
			fmt.Fprintf(h, "%s|%d|%d|%s|%v|%s|%v|%d|%d|%v|%s|%d|%s|%d|", c.Name, c.TypeOID, c.HashType, c.TypeName, c.NotNull, c.Default, c.DefaultOnShard, c.Identity, c.Generated, c.ByteOrder, c.BaseName, c.Typmod, c.LengthFunc, c.LengthArgs)
		}
	}
	return h.Sum64()
}

// Table returns the distributed table schema.name, or nil.
func (s *Snapshot) Table(schema, name string) *Table { return s.byName[[2]string{schema, name}] }

// TableByOID returns the distributed table with the given OID, or nil.
func (s *Snapshot) TableByOID(oid uint32) *Table { return s.tables[oid] }

// Shard returns the shard with the given id, or nil.
func (s *Snapshot) Shard(id int64) *Shard { return s.shards[id] }

// Tables returns the distributed tables ordered by schema and name.
func (s *Snapshot) Tables() []*Table {
	out := make([]*Table, 0, len(s.tables))
	for _, t := range s.tables {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Schema != out[j].Schema {
			return out[i].Schema < out[j].Schema
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// HasTables reports whether any table is distributed (a statement can then skip name
// resolution entirely when none is).
func (s *Snapshot) HasTables() bool { return len(s.tables) > 0 }

// WithPlacementStates returns a copy of s in which the given placements have new states. It
// is how a proxy applies its own state change at once, before the change's notification
// brings a full reload.
func (s *Snapshot) WithPlacementStates(states map[int64]ShardState) *Snapshot {
	tables := make([]*Table, 0, len(s.tables))
	for _, t := range s.tables {
		nt := *t
		nt.Shards = make([]*Shard, len(t.Shards))
		for i, sh := range t.Shards {
			nsh := *sh
			nsh.Placements = append([]Placement(nil), sh.Placements...)
			for j := range nsh.Placements {
				if st, ok := states[nsh.Placements[j].ID]; ok {
					nsh.Placements[j].State = st
				}
			}
			nt.Shards[i] = &nsh
		}
		tables = append(tables, &nt)
	}
	ns := NewSnapshot(append([]Node(nil), s.Nodes...), tables)
	ns.aggregates = s.aggregates
	ns.DefaultByteOrder = s.DefaultByteOrder
	ns.Generation, ns.patched, ns.patches = s.Generation, s.patched, s.patches
	return ns
}

// WithTables returns a copy of s with tables added (replacing any of the same OID): a
// session's own view of the metadata while its transaction block has distributed tables
// that no other session sees yet. The tables must not be modified afterwards.
func (s *Snapshot) WithTables(tables []*Table) *Snapshot {
	all := make([]*Table, 0, len(s.tables)+len(tables))
	added := make(map[uint32]bool, len(tables))
	for _, t := range tables {
		added[t.OID] = true
	}
	for _, t := range s.tables {
		if !added[t.OID] {
			all = append(all, t)
		}
	}
	return s.replaceTables(append(all, tables...))
}

// WithoutTables returns a copy of s without the tables of the given OIDs: a session's own
// view while its transaction block has dropped them.
func (s *Snapshot) WithoutTables(oids []uint32) *Snapshot {
	if len(oids) == 0 {
		return s
	}
	gone := make(map[uint32]bool, len(oids))
	for _, oid := range oids {
		gone[oid] = true
	}
	all := make([]*Table, 0, len(s.tables))
	for _, t := range s.tables {
		if !gone[t.OID] {
			all = append(all, t)
		}
	}
	return s.replaceTables(all)
}

// replaceTables is a copy of s with tables (copied: their shard lists are the copy's) as
// its tables.
func (s *Snapshot) replaceTables(tables []*Table) *Snapshot {
	all := make([]*Table, 0, len(tables))
	for _, t := range tables {
		nt := *t
		nt.Shards = append([]*Shard(nil), t.Shards...)
		all = append(all, &nt)
	}
	ns := NewSnapshot(append([]Node(nil), s.Nodes...), all)
	ns.aggregates = s.aggregates
	ns.DefaultByteOrder = s.DefaultByteOrder
	ns.Generation, ns.patched, ns.patches = s.Generation, s.patched, s.patches
	return ns
}

// placementPatch is a placement state change this proxy applied (Cache.Apply), with the
// generation it committed at.
type placementPatch struct {
	gen   int64
	state ShardState
}

// Cache holds the current snapshot. The zero value holds an empty snapshot.
type Cache struct {
	p atomic.Pointer[Snapshot]
}

var empty = NewSnapshot(nil, nil)

// Load returns the current snapshot; never nil.
func (c *Cache) Load() *Snapshot {
	if s := c.p.Load(); s != nil {
		return s
	}
	return empty
}

// Store makes s, a snapshot loaded from the coordinator, the current snapshot, unless
// the current one is newer: loaded at a later generation, or carrying a change of a
// later generation (Apply) that s does not have. It reports whether s was stored; a
// caller that needs the coordinator's current state loads again.
func (c *Cache) Store(s *Snapshot) bool {
	for {
		old := c.p.Load()
		if old != nil && (s.Generation < old.Generation || s.Generation < old.patched) {
			return false
		}
		if c.p.CompareAndSwap(old, s) {
			return true
		}
	}
}

// Replace makes s the current snapshot, whatever the current one is.
func (c *Cache) Replace(s *Snapshot) { c.p.Store(s) }

// Rebase makes s, a snapshot loaded from the coordinator, the current snapshot, with the
// changes this proxy applied (Apply) at later generations than s was loaded at applied
// on top of it: s cannot hold them, and dropping them would, say, show a placement that a
// repair finalized as inactive again, and writes would skip it until the next reload.
func (c *Cache) Rebase(s *Snapshot) {
	c.Update(func(cur *Snapshot) *Snapshot {
		states := map[int64]ShardState{}
		patches := map[int64]placementPatch{}
		patched := int64(0)
		for id, pp := range cur.patches {
			if pp.gen > s.Generation {
				states[id], patches[id] = pp.state, pp
				patched = max(patched, pp.gen)
			}
		}
		if len(states) == 0 {
			return s
		}
		ns := s.WithPlacementStates(states)
		ns.patches, ns.patched = patches, patched
		return ns
	})
}

// Apply records placement state changes that this proxy committed on the coordinator at
// generation gen, at once, before the change's notification brings a full reload. A
// current snapshot loaded at gen or later has them already (and perhaps later changes
// of the same placements), so it is kept as it is.
func (c *Cache) Apply(gen int64, states map[int64]ShardState) {
	c.Update(func(cur *Snapshot) *Snapshot {
		if gen != 0 && cur.Generation >= gen {
			return cur
		}
		// A placement that a newer change applied since the load keeps that change: two
		// changes of one placement may commit in one order and reach the cache in the
		// other (a mark committed just before a repair's finalization, and applied after
		// it, would make this proxy skip a finalized placement).
		apply := states
		if gen != 0 {
			apply = make(map[int64]ShardState, len(states))
			for id, st := range states {
				if cur.patches[id].gen < gen {
					apply[id] = st
				}
			}
			if len(apply) == 0 {
				return cur
			}
		}
		ns := cur.WithPlacementStates(apply)
		if gen != 0 {
			ns.patches = make(map[int64]placementPatch, len(cur.patches)+len(apply))
			for id, pp := range cur.patches {
				ns.patches[id] = pp
			}
			for id, st := range apply {
				ns.patches[id] = placementPatch{gen: gen, state: st}
			}
		}
		if gen > ns.patched {
			ns.patched = gen
		}
		return ns
	})
}

// Update applies f to the current snapshot and stores the result, retrying if another
// update raced with it.
func (c *Cache) Update(f func(*Snapshot) *Snapshot) {
	for {
		old := c.p.Load()
		cur := old
		if cur == nil {
			cur = empty
		}
		if c.p.CompareAndSwap(old, f(cur)) {
			return
		}
	}
}

// HashRange returns the token interval of shard i of n as pg_shard's final version splits
// the 2^32 hash tokens: evenly, with the remainder in the last shard.
func HashRange(i, n int) (min, max int32) {
	inc := int64(1<<32) / int64(n)
	lo := int64(-1<<31) + int64(i)*inc
	hi := lo + inc - 1
	if i == n-1 {
		hi = 1<<31 - 1
	}
	return int32(lo), int32(hi)
}

// PlacementNodes returns the nodes for the replicationFactor placements of shard i:
// node (i + k) mod N for k = 0..rf-1 over the sorted nodes.
func PlacementNodes(nodes []Node, i, replicationFactor int) ([]Node, error) {
	if replicationFactor > len(nodes) {
		return nil, fmt.Errorf("metadata: replication factor %d exceeds %d nodes", replicationFactor, len(nodes))
	}
	out := make([]Node, replicationFactor)
	for k := range out {
		out[k] = nodes[(i+k)%len(nodes)]
	}
	return out, nil
}
