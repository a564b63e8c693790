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
	for _, tc := range []struct {
		name    string
		outs    []writeOutcome
		inBlock bool
		atomic  bool
		want    want
	}{
		{"all agree", []writeOutcome{ok("UPDATE 1"), ok("UPDATE 1")}, false, true, want{chosen: 0}},
		{"one placement", []writeOutcome{ok("INSERT 0 1")}, false, false, want{chosen: 0}},
		{"second unavailable", []writeOutcome{ok("UPDATE 1"), lost(true)}, false, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markUnavailable}}},
		{"first unavailable", []writeOutcome{lost(false), ok("UPDATE 1")}, false, true,
			want{chosen: 1, marks: []int{0}, reasons: []markReason{markUnavailable}}},
		{"unavailable in a block", []writeOutcome{ok("UPDATE 1"), lost(true)}, true, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markUnavailable}}},
		// Defect 6: one placement's serialization failure is the client's error.
		{"40001 on one placement", []writeOutcome{fail("40001"), ok("UPDATE 1")}, true, true, want{code: "40001", chosen: -1}},
		{"40001 outside a block", []writeOutcome{ok("UPDATE 1"), fail("40001")}, false, true, want{code: "40001", chosen: -1}},
		{"deadlock", []writeOutcome{ok("UPDATE 1"), fail("40P01")}, false, true, want{code: "40P01", chosen: -1}},
		{"lock timeout", []writeOutcome{fail("55P03"), ok("UPDATE 1")}, false, true, want{code: "55P03", chosen: -1}},
		{"statement timeout", []writeOutcome{ok("UPDATE 1"), fail("57014")}, false, true, want{code: "57014", chosen: -1}},
		{"failed transaction", []writeOutcome{ok("UPDATE 1"), fail("25P02")}, true, true, want{code: "25P02", chosen: -1}},
		{"disk full", []writeOutcome{ok("UPDATE 1"), fail("53100")}, false, true, want{code: "53100", chosen: -1}},
		{"division by zero on one", []writeOutcome{ok("UPDATE 1"), fail("22012")}, false, true, want{code: "22012", chosen: -1}},
		// A transaction-level error wins over an unavailable sibling: nothing is marked.
		{"40001 and unavailable", []writeOutcome{fail("40001"), ok("UPDATE 1"), lost(true)}, false, true, want{code: "40001", chosen: -1}},
		// Different errors: the transaction-level one is the client's; nothing marked.
		{"duplicate key and 40001", []writeOutcome{fail("23505"), fail("40001")}, false, true, want{code: "40001", chosen: -1}},
		{"duplicate key and 40001 reversed", []writeOutcome{fail("40001"), fail("23505")}, false, true, want{code: "40001", chosen: -1}},
		// Every placement refuses: the client's error.
		{"duplicate key everywhere", []writeOutcome{fail("23505"), fail("23505")}, false, true, want{code: "23505", chosen: -1}},
		// Defect 12b: a duplicate key while the other placement is lost marks nothing.
		{"duplicate key and lost", []writeOutcome{fail("23505"), lost(true)}, false, true, want{code: "23505", chosen: -1}},
		{"lost and duplicate key", []writeOutcome{lost(true), fail("23505")}, false, true, want{code: "23505", chosen: -1}},
		// Divergence of data outside a block: the odd placement is marked.
		{"duplicate key on one", []writeOutcome{ok("INSERT 0 1"), fail("23505")}, false, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markError}}},
		{"exclusion violation on one", []writeOutcome{fail("23P01"), ok("INSERT 0 1")}, false, true,
			want{chosen: 1, marks: []int{0}, reasons: []markReason{markError}}},
		{"row counts differ", []writeOutcome{ok("DELETE 1"), ok("DELETE 0")}, false, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markRowCount}}},
		{"majority row count", []writeOutcome{ok("DELETE 0"), ok("DELETE 1"), ok("DELETE 1")}, false, true,
			want{chosen: 1, marks: []int{0}, reasons: []markReason{markRowCount}}},
		// A constraint violation is decided by the rows there are, in a block too.
		{"duplicate key on one in a block", []writeOutcome{ok("INSERT 0 1"), fail("23505")}, true, true,
			want{chosen: 0, marks: []int{1}, reasons: []markReason{markError}}},
		// A row count in a block depends on each placement's snapshot.
		{"row counts differ in a block", []writeOutcome{ok("DELETE 1"), ok("DELETE 0")}, true, true, want{code: "40001", chosen: -1}},
		// Nobody answered.
		{"all unavailable in a transaction", []writeOutcome{lost(true), lost(true)}, false, true, want{code: "XX000", chosen: -1}},
		{"all unavailable, not sent", []writeOutcome{lost(false), lost(false)}, false, false, want{code: "XX000", chosen: -1}},
		// A lone placement lost after the statement went out: unknown, never marked.
		{"only placement lost", []writeOutcome{lost(true)}, false, false, want{code: "08006", chosen: -1}},
		{"autocommit lost after sending", []writeOutcome{lost(false), lost(true), lost(true)}, false, false,
			want{code: "08006", chosen: -1, marks: []int{0, 2}, reasons: []markReason{markUnknown, markUnknown}}},
		{"no placement", nil, false, false, want{code: "XX000", chosen: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
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

func TestDecideCommit(t *testing.T) {
	for _, tc := range []struct {
		outs              []commitOutcome
		marks             []int
		committed, unkown bool
	}{
		{[]commitOutcome{commitDone, commitDone}, nil, true, false},
		{[]commitOutcome{commitDone, commitUnknown}, []int{1}, true, false},
		{[]commitOutcome{commitFailed, commitDone}, []int{0}, true, false},
		{[]commitOutcome{commitNone, commitDone}, nil, true, false},
		{[]commitOutcome{commitUnknown, commitUnknown}, []int{1}, false, true},
		{[]commitOutcome{commitFailed, commitUnknown}, []int{0}, false, true},
		{[]commitOutcome{commitFailed, commitFailed}, nil, false, false},
		{[]commitOutcome{commitUnknown}, nil, false, true},
		{[]commitOutcome{commitNone, commitNone}, nil, false, false},
	} {
		marks, committed, unknown := decideCommit(tc.outs)
		if !reflect.DeepEqual(marks, tc.marks) || committed != tc.committed || unknown != tc.unkown {
			t.Errorf("%v: marks %v committed %v unknown %v, want %v %v %v", tc.outs, marks, committed, unknown, tc.marks, tc.committed, tc.unkown)
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
		t.Run(tc.name, func(t *testing.T) {
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
