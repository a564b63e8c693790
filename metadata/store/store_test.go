package store

import (
	"context"
	"testing"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/tests/cluster"
)

// TestReloadRacesRepair is issue 9's defect 12c, made deterministic: a reload reads the
// metadata (a placement inactive), then, before it stores its snapshot, a repair
// finalizes the placement and applies that to the cache. The reload must not install its
// older snapshot over the repair's change, and the cache must end with the placement
// finalized, as it is on the coordinator.
func TestReloadRacesRepair(t *testing.T) {
	if testing.Short() || !cluster.Available() {
		t.Skip("PostgreSQL server binaries not found (or -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := Open(ctx, c.Coordinator.URL("postgres"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, "CREATE TABLE r (k int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var relid uint32
	if err := s.Pool().QueryRow(ctx, "SELECT 'r'::regclass::oid").Scan(&relid); err != nil {
		t.Fatal(err)
	}
	nodes := []metadata.Node{{Name: "w1", Port: 1}, {Name: "w2", Port: 2}}
	for _, n := range nodes {
		if _, err := s.AddNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddPartition(ctx, relid, 'h', "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateShards(ctx, relid, []ShardRange{{Min: -1 << 31, Max: 1<<31 - 1}}, func(_ context.Context, ids []int64) ([][]metadata.Node, error) {
		return [][]metadata.Node{nodes}, nil
	}); err != nil {
		t.Fatal(err)
	}
	cache := &metadata.Cache{}
	snap, err := s.Reload(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	sh := snap.TableByOID(relid).Shards[0]
	target := sh.Placements[1]
	// The placement was marked inactive.
	if err := s.ChangePlacementStates(ctx, cache, map[int64]metadata.ShardState{target.ID: metadata.StateInactive}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(ctx, cache); err != nil {
		t.Fatal(err)
	}

	// A reload (as after a notification) that has read the metadata and waits to store
	// it while the repair commits.
	loaded, release := make(chan struct{}), make(chan struct{})
	first := true
	s.afterLoad = func() {
		if first {
			first = false
			close(loaded)
			<-release
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Reload(ctx, cache)
		done <- err
	}()
	<-loaded
	if err := s.ChangePlacementStates(ctx, cache, map[int64]metadata.ShardState{target.ID: metadata.StateFinalized}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, p := range cache.Load().Shard(sh.ID).Placements {
		if p.ID == target.ID && p.State != metadata.StateFinalized {
			t.Fatalf("after the late reload the cache has placement %d %v; the coordinator has it finalized", p.ID, p.State)
		}
	}
	// Generations grow with every committed change and are read with the snapshot.
	g1 := cache.Load().Generation
	if err := s.ChangePlacementStates(ctx, cache, map[int64]metadata.ShardState{target.ID: metadata.StateFinalized}); err != nil {
		t.Fatal(err)
	}
	snap, err = s.Reload(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Generation <= g1 || cache.Load() != snap {
		t.Errorf("generation %d after %d; stored: %v", snap.Generation, g1, cache.Load() == snap)
	}
}
