package proxy

import (
	"testing"

	"github.com/pgshard/pgshard/metadata"
)

// TestLostFinalized: a proxy that records a node anew after an operator accepted its data
// fails the statement over exactly when one of the node's placements it took for
// finalized no longer is (accept_held_node marked it inactive), whatever else changed.
func TestLostFinalized(t *testing.T) {
	snap := func(states ...metadata.ShardState) *metadata.Snapshot {
		tb := &metadata.Table{OID: 1, Schema: "public", Name: "t", Method: 'h', Key: "k"}
		for i, st := range states {
			id := int64(100 + i)
			tb.Shards = append(tb.Shards, &metadata.Shard{ID: id, TableID: 1, Storage: 't', Min: int32(i * 10), Max: int32(i*10 + 9),
				Placements: []metadata.Placement{{ID: 2 * id, ShardID: id, State: st, Node: nodeA}, {ID: 2*id + 1, ShardID: id, State: metadata.StateFinalized, Node: nodeB}}})
		}
		return metadata.NewSnapshot([]metadata.Node{nodeA, nodeB}, []*metadata.Table{tb})
	}
	F, I := metadata.StateFinalized, metadata.StateInactive
	for _, tc := range []struct {
		before, after []metadata.ShardState
		lost          bool
	}{
		{[]metadata.ShardState{F, F}, []metadata.ShardState{F, F}, false},
		{[]metadata.ShardState{F, F}, []metadata.ShardState{F, I}, true},
		{[]metadata.ShardState{I, F}, []metadata.ShardState{F, F}, false}, // repaired meanwhile
		{[]metadata.ShardState{I, I}, []metadata.ShardState{I, I}, false},
	} {
		if got := lostFinalized(snap(tc.before...), snap(tc.after...), nodeA); got != tc.lost {
			t.Errorf("lostFinalized(%v -> %v) = %v, want %v", tc.before, tc.after, got, tc.lost)
		}
		if lostFinalized(snap(tc.before...), snap(tc.after...), nodeB) {
			t.Errorf("lostFinalized(%v -> %v) on the other node, whose placements stay finalized", tc.before, tc.after)
		}
	}
}
