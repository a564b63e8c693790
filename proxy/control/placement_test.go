package control

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/pgerr"
)

// scriptedNodes creates shard tables on every node but the failing ones.
type scriptedNodes struct {
	mu      sync.Mutex
	failing map[metadata.Node]bool
}

func (n *scriptedNodes) DialWorker(context.Context, metadata.Node) (*pgconn.PgConn, error) {
	return nil, errors.New("not dialled in this test")
}

func (n *scriptedNodes) DialCoordinator(context.Context) (*pgconn.PgConn, error) {
	return nil, errors.New("not dialled in this test")
}

func (n *scriptedNodes) RunOnNode(_ context.Context, node metadata.Node, _ string, _ []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failing[node] {
		return errors.New("node down")
	}
	return nil
}

// quietClient drops notices.
type quietClient struct{}

func (quietClient) User() string { return "u" }
func (quietClient) Query(context.Context, string, [][]byte) ([][][]byte, error) {
	return nil, errors.New("no coordinator in this test")
}
func (quietClient) InTransactionBlock() bool                             { return false }
func (quietClient) Notice(*pgerr.Error)                                  {}
func (quietClient) Flush()                                               {}
func (quietClient) Rows(string, []pgproto3.FieldDescription, [][][]byte) {}

// TestPlaceShards: placement k of shard i is metadata.PlacementNodes's node (i+k) mod N;
// a failed node gives its place to the shard's next candidate, in candidate order.
func TestPlaceShards(t *testing.T) {
	nodes := []metadata.Node{{Name: "a", Port: 1}, {Name: "b", Port: 1}, {Name: "c", Port: 1}, {Name: "d", Port: 1}}
	def := &ddl.Table{OID: 1, Schema: "public", Name: "t", QuotedSchema: "public", QuotedName: "t",
		Columns: []ddl.Column{{Num: 1, Name: "k", QuotedName: "k", TypeOID: 23, TypeName: "integer"}}}
	ids := []int64{100, 101, 102, 103, 104}
	for _, c := range []struct {
		name    string
		failing []metadata.Node
	}{{"all up", nil}, {"c down", []metadata.Node{nodes[2]}}} {
		t.Run(c.name, func(t *testing.T) {
			down := map[metadata.Node]bool{}
			for _, n := range c.failing {
				down[n] = true
			}
			e := &Env{Client: quietClient{}, Nodes: &scriptedNodes{failing: down}}
			placed, _, err := e.placeShards(context.Background(), def, "", nodes, ids, 2)
			if err != nil {
				t.Fatal(err)
			}
			for i := range ids {
				cands, err := metadata.PlacementNodes(nodes, i, 3)
				if err != nil {
					t.Fatal(err)
				}
				var want []metadata.Node
				for _, n := range cands {
					if !down[n] && len(want) < 2 {
						want = append(want, n)
					}
				}
				if len(placed[i]) != 2 || placed[i][0] != want[0] || placed[i][1] != want[1] {
					t.Errorf("shard %d placed on %v, want %v", i, placed[i], want)
				}
			}
		})
	}
}
