package protocol

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/pgerr"
)

// A Query that comes while the pipeline skips to Sync is dropped with the rest, as
// PostgreSQL drops it: no statement runs and no ReadyForQuery answers it.
func TestQueryWhileSkipping(t *testing.T) {
	msgs := append(pipeline("a"), &pgproto3.Query{String: "INSERT"}, &pgproto3.Flush{}, &pgproto3.Sync{})
	s := &script{fail: map[string]error{"Parse a": pgerr.New(pgerr.SyntaxError, "bad")}}
	out := serve(t, client(msgs...), s)
	eq(t, "calls", s.calls, []string{"Parse a", "Fail bad", "Sync"})
	eq(t, "answers", out.frames(t), []string{"E ERROR 42601", "ZI"})
}

// A Query after extended-protocol messages without a Sync ends their pipeline when it
// ends (PostgreSQL commits the implicit transaction both joined): Sync is called once,
// and not again after a later Query.
func TestQueryEndsPipeline(t *testing.T) {
	msgs := append(pipeline("a"), &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "SELECT 2"})
	s := &script{}
	out := serve(t, client(msgs...), s)
	eq(t, "calls", s.calls, []string{"Parse a", "Bind a", "Execute a", "Query SELECT 1", "Sync", "Query SELECT 2"})
	eq(t, "answers", out.frames(t), []string{"1", "2", "C", "C", "ZI", "C", "ZI"})
}
