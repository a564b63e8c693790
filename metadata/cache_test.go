package metadata

import "testing"

// snapshotAt is a snapshot loaded at generation gen with one shard of two placements in
// the given states.
func snapshotAt(gen int64, s1, s2 ShardState) *Snapshot {
	t := &Table{OID: 1, Schema: "public", Name: "t", Method: 'h', Key: "k", Shards: []*Shard{{
		ID: 10, TableID: 1, Min: -1 << 31, Max: 1<<31 - 1,
		Placements: []Placement{{ID: 1, ShardID: 10, State: s1}, {ID: 2, ShardID: 10, State: s2}},
	}}}
	s := NewSnapshot(nil, []*Table{t})
	s.Generation = gen
	return s
}

func stateOf(c *Cache, id int64) ShardState {
	for _, p := range c.Load().Shard(10).Placements {
		if p.ID == id {
			return p.State
		}
	}
	return 0
}

// TestCacheGenerations: an older snapshot never replaces a newer one (issue 9, defect
// 12c: a reload that read the metadata before a repair finalized a placement must not
// install its snapshot after the repair's own update).
func TestCacheGenerations(t *testing.T) {
	var c Cache
	if !c.Store(snapshotAt(5, StateFinalized, StateInactive)) {
		t.Fatal("first snapshot refused")
	}
	// A repair commits at generation 6 and applies its change at once.
	c.Apply(6, map[int64]ShardState{2: StateFinalized})
	if stateOf(&c, 2) != StateFinalized {
		t.Fatal("Apply did not change the placement")
	}
	// A reload that loaded at 5 (before the repair) finishes late: refused.
	if c.Store(snapshotAt(5, StateFinalized, StateInactive)) {
		t.Error("a snapshot loaded before the change replaced it")
	}
	if stateOf(&c, 2) != StateFinalized {
		t.Errorf("placement 2 is %v after a stale reload", stateOf(&c, 2))
	}
	// The reload after the change's notification is taken.
	if !c.Store(snapshotAt(6, StateFinalized, StateFinalized)) {
		t.Error("a snapshot at the change's generation was refused")
	}
	// Then a mark at 8 is applied; a change at 7 applied late is not lost either (its
	// loaded base is older), and a load at 7 does not replace the mark at 8.
	c.Apply(8, map[int64]ShardState{1: StateInactive})
	if c.Store(snapshotAt(7, StateFinalized, StateFinalized)) {
		t.Error("a snapshot at 7 replaced a change at 8")
	}
	if stateOf(&c, 1) != StateInactive {
		t.Errorf("placement 1 is %v", stateOf(&c, 1))
	}
	// A change the loaded snapshot has already is not applied again over it (it may have
	// been superseded in the same load).
	c.Store(snapshotAt(9, StateFinalized, StateFinalized))
	c.Apply(8, map[int64]ShardState{1: StateInactive})
	if stateOf(&c, 1) != StateFinalized {
		t.Errorf("an old change was applied over a newer load: placement 1 is %v", stateOf(&c, 1))
	}
	// Equal generations: a fresh load of the same generation replaces (schema changes
	// made by DDL do not bump the generation).
	if !c.Store(snapshotAt(9, StateInactive, StateFinalized)) {
		t.Error("a load at the same generation was refused")
	}
}

// TestCacheApplyOutOfOrder: two changes of one placement committed by this proxy reach the
// cache in the other order (a mark of the placement committed at 6 and applied only after
// a repair's finalization committed at 7 and applied): the newer state stays, or writes
// would skip a finalized placement. A late change of another placement is still applied.
func TestCacheApplyOutOfOrder(t *testing.T) {
	var c Cache
	c.Store(snapshotAt(5, StateFinalized, StateInactive))
	c.Apply(7, map[int64]ShardState{2: StateFinalized})
	c.Apply(6, map[int64]ShardState{2: StateInactive})
	if got := stateOf(&c, 2); got != StateFinalized {
		t.Errorf("placement 2 is %v after a late older change; want finalized (the newer change)", got)
	}
	c.Apply(6, map[int64]ShardState{1: StateInactive})
	if got := stateOf(&c, 1); got != StateInactive {
		t.Errorf("placement 1 is %v; a late change of another placement was lost", got)
	}
	// A load at the newest generation clears the record: later changes apply.
	c.Store(snapshotAt(7, StateFinalized, StateFinalized))
	c.Apply(8, map[int64]ShardState{2: StateInactive})
	if got := stateOf(&c, 2); got != StateInactive {
		t.Errorf("placement 2 is %v after a change at 8", got)
	}
}

// TestCacheRebase: a snapshot loaded after the cache's own but before a change this proxy
// applied keeps that change (issue 9: a reload that could not store its snapshot took it
// as it was, dropping a repair's finalization, and writes skipped the finalized
// placement, which then silently missed them).
func TestCacheRebase(t *testing.T) {
	var c Cache
	c.Store(snapshotAt(5, StateFinalized, StateInactive))
	c.Apply(8, map[int64]ShardState{2: StateFinalized})
	c.Apply(6, map[int64]ShardState{1: StateInactive})
	c.Rebase(snapshotAt(7, StateFinalized, StateInactive))
	if got := stateOf(&c, 2); got != StateFinalized {
		t.Errorf("placement 2 is %v after a rebase on a load at 7; the change at 8 made it finalized", got)
	}
	if got := stateOf(&c, 1); got != StateFinalized {
		t.Errorf("placement 1 is %v: the load at 7 holds what came after the change at 6", got)
	}
	if c.Load().Generation != 7 {
		t.Errorf("generation %d, want 7", c.Load().Generation)
	}
	// The kept change still guards against older loads, and a load at its generation
	// replaces it.
	if c.Store(snapshotAt(7, StateFinalized, StateInactive)) {
		t.Error("a load at 7 replaced the change at 8")
	}
	if !c.Store(snapshotAt(8, StateFinalized, StateFinalized)) {
		t.Error("a load at 8 was refused")
	}
}
