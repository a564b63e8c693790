package store

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/tests/cluster"
)

var coordinator struct {
	once sync.Once
	c    *cluster.Cluster
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if coordinator.c != nil {
		coordinator.c.Close()
	}
	os.Exit(code)
}

// setup opens a store on a test coordinator (started once for the package) and creates
// a distributed table with one shard of two placements on two (fictitious) nodes.
func setup(t *testing.T, table string) (context.Context, *Store, uint32) {
	t.Helper()
	if testing.Short() || !cluster.Available() {
		t.Skip("PostgreSQL server binaries not found (or -short)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	coordinator.once.Do(func() {
		coordinator.c, coordinator.err = cluster.Start(ctx, cluster.Options{})
	})
	if coordinator.err != nil {
		t.Fatal(coordinator.err)
	}
	s, err := Open(ctx, coordinator.c.Coordinator.URL("postgres"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, "CREATE TABLE public."+table+" (k int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var relid uint32
	if err := s.Pool().QueryRow(ctx, "SELECT $1::regclass::oid", "public."+table).Scan(&relid); err != nil {
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
	return ctx, s, relid
}

// TestReloadRacesRepair is issue 9's defect 12c, made deterministic: a reload reads the
// metadata (a placement inactive), then, before it stores its snapshot, a repair
// finalizes the placement and applies that to the cache. The reload must not install its
// older snapshot over the repair's change, and the cache must end with the placement
// finalized, as it is on the coordinator.
func TestReloadRacesRepair(t *testing.T) {
	ctx, s, relid := setup(t, "r")
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

// TestLastPlacementNeverMarked: a change that would leave a shard without a finalized
// placement is refused, also when two proxies mark the two placements of a shard at
// once (issue 9: the last finalized placement is never marked inactive).
func TestLastPlacementNeverMarked(t *testing.T) {
	ctx, s, relid := setup(t, "lp")
	cache := &metadata.Cache{}
	snap, err := s.Reload(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	ps := snap.TableByOID(relid).Shards[0].Placements
	inactive := func(id int64) map[int64]metadata.ShardState {
		return map[int64]metadata.ShardState{id: metadata.StateInactive}
	}
	var last *LastPlacementError
	if _, err := s.SetPlacementStates(ctx, map[int64]metadata.ShardState{ps[0].ID: metadata.StateInactive, ps[1].ID: metadata.StateInactive}); !errors.As(err, &last) {
		t.Errorf("marking both placements: %v", err)
	}
	for round := 0; round < 20; round++ {
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.SetPlacementStates(ctx, inactive(ps[i].ID))
			}()
		}
		wg.Wait()
		refused := 0
		for _, err := range errs {
			if errors.As(err, &last) {
				refused++
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if refused != 1 {
			t.Fatalf("round %d: %d of two concurrent marks refused (%v)", round, refused, errs)
		}
		var finalized int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pgs_distribution_metadata.shard_placement
			WHERE shard_id = $1 AND shard_state = 1`, ps[0].ShardID).Scan(&finalized); err != nil {
			t.Fatal(err)
		}
		if finalized != 1 {
			t.Fatalf("round %d: %d finalized placements", round, finalized)
		}
		if _, err := s.SetPlacementStates(ctx, map[int64]metadata.ShardState{ps[0].ID: metadata.StateFinalized, ps[1].ID: metadata.StateFinalized}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReloadKeepsNewerChange: when the loads keep coming back older than a change this
// proxy committed and applied (simulated here by a change applied at a generation the
// coordinator has not reached), Reload takes the load with the change kept on top; it
// used to replace the cache with the load, undoing the change (a repair's finalization)
// until the next reload, and writes in between skipped the finalized placement.
func TestReloadKeepsNewerChange(t *testing.T) {
	ctx, s, relid := setup(t, "k")
	cache := &metadata.Cache{}
	snap, err := s.Reload(ctx, cache)
	if err != nil {
		t.Fatal(err)
	}
	sh := snap.TableByOID(relid).Shards[0]
	target := sh.Placements[1]
	if err := s.ChangePlacementStates(ctx, cache, map[int64]metadata.ShardState{target.ID: metadata.StateInactive}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(ctx, cache); err != nil {
		t.Fatal(err)
	}
	cache.Apply(cache.Load().Generation+100, map[int64]metadata.ShardState{target.ID: metadata.StateFinalized})
	if _, err := s.Reload(ctx, cache); err != nil {
		t.Fatal(err)
	}
	for _, p := range cache.Load().Shard(sh.ID).Placements {
		if p.ID == target.ID && p.State != metadata.StateFinalized {
			t.Fatalf("after the reload the cache has placement %d %v; the change applied after the load made it finalized", p.ID, p.State)
		}
	}
}
