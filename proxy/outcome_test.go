package proxy

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
)

func TestDecideWrite(t *testing.T) {
	ok := func(tag string) writeOutcome { return writeOutcome{kind: outcomeOK, tag: tag} }
	fail := func(code pgerr.Code) writeOutcome {
		return writeOutcome{kind: outcomeError, err: pgerr.New(code, "error %s", code)}
	}
	lost := func(sent bool) writeOutcome {
		return writeOutcome{kind: outcomeUnavailable, cause: errors.New("connection lost"), sent: sent}
	}
	type want struct {
		code    pgerr.Code // "" : success
		chosen  int
		marks   []int
		reasons []markReason
	}
	// The cases go by the rows of the README's failure model ("Failures and repair"),
	// each named after its row.
	const (
		rowMarked   = "marked inactive when unavailable while a sibling took the write"
		rowClient   = "errors a placement answers with are the client's"
		rowDiverge  = "divergence of data"
		rowNone     = "no placement available"
		rowLostWork = "transaction blocks lose a worker without failing"
	)
	for _, tc := range []struct {
		row     string
		name    string
		outs    []writeOutcome
		inBlock bool
		atomic  bool
		want    want
	}{
		{"writes go to every finalized placement", "all agree", []writeOutcome{ok("UPDATE 1"), ok("UPDATE 1")}, false, true, want{chosen: 0}},
		{"writes go to every finalized placement", "one placement", []writeOutcome{ok("INSERT 0 1")}, false, false, want{chosen: 0}},
		{rowMarked, "second unavailable", []writeOutcome{ok("UPDATE 1"), lost(true)}, false, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markUnavailable}}},
		{rowMarked, "first unavailable", []writeOutcome{lost(false), ok("UPDATE 1")}, false, true,
			want{chosen: 1, marks: []int{0}, reasons: []markReason{markUnavailable}}},
		{rowMarked, "two of three unavailable", []writeOutcome{lost(true), ok("UPDATE 1"), lost(false)}, false, true,
			want{chosen: 1, marks: []int{0, 2}, reasons: []markReason{markUnavailable, markUnavailable}}},
		{rowLostWork, "unavailable in a block", []writeOutcome{ok("UPDATE 1"), lost(true)}, true, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markUnavailable}}},
		// Errors every placement gives.
		{rowClient, "duplicate key everywhere", []writeOutcome{fail("23505"), fail("23505")}, false, true, want{code: "23505", chosen: -1}},
		{rowClient, "check violation everywhere", []writeOutcome{fail("23514"), fail("23514")}, false, true, want{code: "23514", chosen: -1}},
		{rowClient, "bad value everywhere", []writeOutcome{fail("22P02"), fail("22P02")}, false, true, want{code: "22P02", chosen: -1}},
		{rowClient, "unknown column everywhere", []writeOutcome{fail("42703"), fail("42703")}, true, true, want{code: "42703", chosen: -1}},
		// Errors only one placement may give. Defect 6: one placement's serialization
		// failure is the client's error.
		{rowClient, "40001 on one placement", []writeOutcome{fail("40001"), ok("UPDATE 1")}, true, true, want{code: "40001", chosen: -1}},
		{rowClient, "40001 outside a block", []writeOutcome{ok("UPDATE 1"), fail("40001")}, false, true, want{code: "40001", chosen: -1}},
		{rowClient, "deadlock", []writeOutcome{ok("UPDATE 1"), fail("40P01")}, false, true, want{code: "40P01", chosen: -1}},
		{rowClient, "lock timeout", []writeOutcome{fail("55P03"), ok("UPDATE 1")}, false, true, want{code: "55P03", chosen: -1}},
		{rowClient, "statement timeout or cancel", []writeOutcome{ok("UPDATE 1"), fail("57014")}, false, true, want{code: "57014", chosen: -1}},
		{rowClient, "failed transaction", []writeOutcome{ok("UPDATE 1"), fail("25P02")}, true, true, want{code: "25P02", chosen: -1}},
		{rowClient, "resource error: disk full", []writeOutcome{ok("UPDATE 1"), fail("53100")}, false, true, want{code: "53100", chosen: -1}},
		{rowClient, "resource error: out of memory", []writeOutcome{fail("53200"), ok("UPDATE 1")}, true, true, want{code: "53200", chosen: -1}},
		{rowClient, "division by zero on one", []writeOutcome{ok("UPDATE 1"), fail("22012")}, false, true, want{code: "22012", chosen: -1}},
		// A transaction-level error wins over an unavailable sibling: nothing is marked.
		{rowClient, "40001 and unavailable", []writeOutcome{fail("40001"), ok("UPDATE 1"), lost(true)}, false, true, want{code: "40001", chosen: -1}},
		// Different errors: the transaction-level one is the client's; nothing marked.
		{rowClient, "duplicate key and 40001", []writeOutcome{fail("23505"), fail("40001")}, false, true, want{code: "40001", chosen: -1}},
		{rowClient, "duplicate key and 40001 reversed", []writeOutcome{fail("40001"), fail("23505")}, false, true, want{code: "40001", chosen: -1}},
		// Defect 12b: a duplicate key while the other placement is lost marks nothing.
		{rowClient, "duplicate key and lost", []writeOutcome{fail("23505"), lost(true)}, false, true, want{code: "23505", chosen: -1}},
		{rowClient, "lost and duplicate key", []writeOutcome{lost(true), fail("23505")}, false, true, want{code: "23505", chosen: -1}},
		// A constraint violation on one placement while its siblings took the write: the
		// odd placement is marked, the statement succeeds.
		{rowDiverge, "duplicate key on one", []writeOutcome{ok("INSERT 0 1"), fail("23505")}, false, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markError}}},
		{rowDiverge, "exclusion violation on one", []writeOutcome{fail("23P01"), ok("INSERT 0 1")}, false, true,
			want{chosen: 1, marks: []int{0}, reasons: []markReason{markError}}},
		{rowDiverge, "check violation on one", []writeOutcome{ok("UPDATE 1"), fail("23514")}, false, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markError}}},
		// In a block too: it is decided by the rows there are.
		{rowDiverge, "duplicate key on one in a block", []writeOutcome{ok("INSERT 0 1"), fail("23505")}, true, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markError}}},
		// A different row count outside a block: the answer most placements gave wins,
		// the first placement's on a tie.
		{rowDiverge, "row counts differ, a tie", []writeOutcome{ok("DELETE 1"), ok("DELETE 0")}, false, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markRowCount}}},
		{rowDiverge, "majority row count", []writeOutcome{ok("DELETE 0"), ok("DELETE 1"), ok("DELETE 1")}, false, true,
			want{chosen: 1, marks: []int{0}, reasons: []markReason{markRowCount}}},
		// Inside a block a row count depends on each placement's snapshot: 40001.
		{rowDiverge, "row counts differ in a block", []writeOutcome{ok("DELETE 1"), ok("DELETE 0")}, true, true, want{code: "40001", chosen: -1}},
		// Nobody answered: could not modify any active placements, nothing marked.
		{rowNone, "all unavailable in a transaction", []writeOutcome{lost(true), lost(true)}, false, true, want{code: "XX000", chosen: -1}},
		{rowNone, "all unavailable, not sent", []writeOutcome{lost(false), lost(false)}, false, false, want{code: "XX000", chosen: -1}},
		{rowNone, "all unavailable in a block", []writeOutcome{lost(true), lost(true)}, true, true, want{code: "XX000", chosen: -1}},
		{rowNone, "no placement", nil, false, false, want{code: "XX000", chosen: -1}},
		// A single placement lost after the statement went out: 08006, never marked.
		{rowNone, "only placement lost", []writeOutcome{lost(true)}, false, false, want{code: "08006", chosen: -1}},
		// Several lost outside a transaction: the first that may have applied it is
		// kept, the others marked, the outcome unknown.
		{rowNone, "autocommit lost after sending", []writeOutcome{lost(false), lost(true), lost(true)}, false, false,
			want{code: "08006", chosen: -1, marks: []int{0, 2}, reasons: []markReason{markUnknown, markUnknown}}},
	} {
		t.Run(tc.row+"/"+tc.name, func(t *testing.T) {
			d := decideWrite(tc.outs, tc.inBlock, tc.atomic)
			got := want{chosen: d.chosen, marks: d.marks, reasons: d.reasons}
			if d.err != nil {
				got.code = pgerr.CodeOf(d.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v (err %v), want %+v", got, d.err, tc.want)
			}
			// Whatever happens, a placement that took the write is never marked.
			for _, i := range d.marks {
				if d.chosen >= 0 && tc.outs[i].kind == outcomeOK && tc.outs[i].tag == tc.outs[d.chosen].tag {
					t.Errorf("marked placement %d, which agrees with the chosen one", i)
				}
			}
			if len(d.marks) > 0 && len(d.marks) == len(tc.outs) {
				t.Errorf("every placement marked")
			}
		})
	}
}

// TestDecideCommit: the COMMIT of a write's own transaction on its placements (a write
// to several placements outside a block), by the README's rows: a placement that failed
// to commit while a sibling committed missed the write and is marked; the last
// placement that may hold the write is never marked.
func TestDecideCommit(t *testing.T) {
	for _, tc := range []struct {
		name              string
		outs              []commitOutcome
		marks             []int
		committed, unkown bool
	}{
		{"every placement committed", []commitOutcome{commitDone, commitDone}, nil, true, false},
		{"marked: lost during COMMIT while a sibling committed", []commitOutcome{commitDone, commitUnknown}, []int{1}, true, false},
		{"marked: COMMIT failed while a sibling committed", []commitOutcome{commitFailed, commitDone}, []int{0}, true, false},
		{"a placement that took no part is not marked", []commitOutcome{commitNone, commitDone}, nil, true, false},
		{"never the last that may hold it: both lost, the first kept", []commitOutcome{commitUnknown, commitUnknown}, []int{1}, false, true},
		{"never the last that may hold it: failed and lost", []commitOutcome{commitFailed, commitUnknown}, []int{0}, false, true},
		{"the client's error: COMMIT failed everywhere", []commitOutcome{commitFailed, commitFailed}, nil, false, false},
		{"a single placement lost during COMMIT: unknown", []commitOutcome{commitUnknown}, nil, false, true},
		{"no placement took part", []commitOutcome{commitNone, commitNone}, nil, false, false},
	} {
		marks, committed, unknown := decideCommit(tc.outs)
		if !reflect.DeepEqual(marks, tc.marks) || committed != tc.committed || unknown != tc.unkown {
			t.Errorf("%s: %v: marks %v committed %v unknown %v, want %v %v %v", tc.name, tc.outs, marks, committed, unknown, tc.marks, tc.committed, tc.unkown)
		}
	}
}

func TestDecideBlockCommit(t *testing.T) {
	n := func(i int) metadata.Node { return metadata.Node{Name: "w", Port: 5000 + i} }
	p := func(id, shard int64, node int) metadata.Placement {
		return metadata.Placement{ID: id, ShardID: shard, Node: n(node), State: metadata.StateFinalized}
	}
	lost := fmt.Errorf("w: %w", errLost)
	unavailable := func(err error) bool { return errors.Is(err, errLost) }
	serial := pgerr.New(pgerr.SerializationFailure, "could not serialize access")
	for _, tc := range []struct {
		name    string
		writes  map[metadata.Node][]metadata.Placement
		results map[metadata.Node]error
		marks   []int64
		code    pgerr.Code
	}{
		{"all committed",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0)}, n(1): {p(2, 10, 1)}},
			map[metadata.Node]error{n(0): nil, n(1): nil}, nil, ""},
		{"replication 2, one node lost",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0)}, n(1): {p(2, 10, 1)}},
			map[metadata.Node]error{n(0): nil, n(1): lost}, []int64{2}, ""},
		// Defect 9: replication 1, the node of a shard lost at COMMIT.
		{"replication 1, one node lost",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0)}, n(1): {p(2, 11, 1)}},
			map[metadata.Node]error{n(0): nil, n(1): lost}, nil, "08006"},
		{"both placements lost",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0)}, n(1): {p(2, 10, 1)}},
			map[metadata.Node]error{n(0): lost, n(1): lost}, []int64{2}, "08006"},
		{"serialization failure at commit, sibling committed",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0)}, n(1): {p(2, 10, 1)}},
			map[metadata.Node]error{n(0): nil, n(1): serial}, []int64{2}, ""},
		{"serialization failure everywhere",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0)}, n(1): {p(2, 10, 1)}},
			map[metadata.Node]error{n(0): serial, n(1): serial}, nil, "40001"},
		{"a node whose part of the block aborted",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0), p(3, 11, 0)}, n(1): {p(2, 10, 1)}},
			map[metadata.Node]error{n(0): pgerr.New(pgerr.InFailedSQLTransaction, "aborted"), n(1): nil}, []int64{1}, "25P02"},
		{"a node that only read fails",
			map[metadata.Node][]metadata.Placement{n(0): {p(1, 10, 0)}},
			map[metadata.Node]error{n(0): nil, n(1): lost}, nil, ""},
	} {
		// The README's row "COMMIT of a transaction block".
		t.Run("COMMIT of a transaction block/"+tc.name, func(t *testing.T) {
			d := decideBlockCommit(tc.writes, tc.results, unavailable)
			var ids []int64
			for _, m := range d.marks {
				ids = append(ids, m.ID)
			}
			var code pgerr.Code
			if d.err != nil {
				code = pgerr.CodeOf(d.err)
			}
			if !reflect.DeepEqual(ids, tc.marks) || code != tc.code {
				t.Errorf("marks %v, error %v; want %v, %s", ids, d.err, tc.marks, tc.code)
			}
		})
	}
}

var errLost = errors.New("connection lost")
