package proxy

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgshard/pgshard/pgerr"
)

// The store counts every statement and portal it holds, and gives the bytes back when
// they go, however they go: a later statement must not be refused for memory the
// session no longer holds.
func TestStmtStoreAccounting(t *testing.T) {
	s := newStmtStore(0)
	a := &prepared{sql: "SELECT 1"}
	b := &prepared{sql: "SELECT " + strings.Repeat("x", 100)}
	if err := s.putStmt("a", a); err != nil {
		t.Fatal(err)
	}
	if err := s.putStmt("b", b); err != nil {
		t.Fatal(err)
	}
	if want := preparedCost(a) + preparedCost(b); s.preparedBytes != want {
		t.Fatalf("preparedBytes = %d, want %d", s.preparedBytes, want)
	}
	// Replacing a statement counts the difference only.
	if err := s.putStmt("a", b); err != nil {
		t.Fatal(err)
	}
	if want := 2 * preparedCost(b); s.preparedBytes != want {
		t.Fatalf("after replacing: preparedBytes = %d, want %d", s.preparedBytes, want)
	}
	s.dropStmt("a")
	s.dropStmt("missing")
	if want := preparedCost(b); s.preparedBytes != want || len(s.stmts) != 1 {
		t.Fatalf("after dropStmt: preparedBytes = %d (want %d), %d statements", s.preparedBytes, want, len(s.stmts))
	}
	s.portals["p"] = &portal{name: "p", cost: portalCost([][]byte{[]byte("abc")})}
	s.preparedBytes += s.portals["p"].cost
	s.dropPortal("p")
	s.dropPortal("p")
	s.dropAllStmts()
	if s.preparedBytes != 0 || len(s.stmts) != 0 || len(s.portals) != 0 {
		t.Fatalf("after dropping everything: preparedBytes = %d, %d statements, %d portals", s.preparedBytes, len(s.stmts), len(s.portals))
	}
}

// Past max-prepared-memory a statement is refused with 54000 and the store is left as
// it was; a negative bound means none.
func TestStmtStoreBound(t *testing.T) {
	ps := &prepared{sql: "SELECT 1"}
	s := newStmtStore(preparedCost(ps))
	if err := s.putStmt("a", ps); err != nil {
		t.Fatal(err)
	}
	err := s.putStmt("b", ps)
	var e *pgerr.Error
	if !errors.As(err, &e) || e.Code != pgerr.ProgramLimitExceeded {
		t.Fatalf("past the bound: %v, want %s", err, pgerr.ProgramLimitExceeded)
	}
	if len(s.stmts) != 1 || s.preparedBytes != preparedCost(ps) {
		t.Fatalf("a refused statement changed the store: %d statements, %d bytes", len(s.stmts), s.preparedBytes)
	}
	// The same statement replaced in place costs nothing more.
	if err := s.putStmt("a", ps); err != nil {
		t.Fatalf("replacing within the bound: %v", err)
	}
	unbounded := newStmtStore(-1)
	for _, n := range []string{"a", "b", "c"} {
		if err := unbounded.putStmt(n, ps); err != nil {
			t.Fatalf("without a bound: %v", err)
		}
	}
	if s := newStmtStore(0); s.preparedBound(defaultMaxPreparedMemory+1) == nil {
		t.Fatal("the default bound let past more than its bytes")
	}
}

// The description cache starts again empty once full rather than grow.
func TestStmtStoreDescCache(t *testing.T) {
	s := newStmtStore(0)
	for i := range descCacheMax + 1 {
		s.cacheDescription(strings.Repeat("k", i+1), description{})
	}
	if len(s.descCache) != 1 {
		t.Fatalf("descCache holds %d entries after passing its bound, want 1", len(s.descCache))
	}
}
