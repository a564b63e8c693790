package proxy

import (
	"slices"
	"strings"
	"testing"

	"github.com/pgshard/pgshard/router"
)

func TestPinnedHashes(t *testing.T) {
	eq := &router.Cond{Kind: router.CondEq}
	all := &router.Cond{Kind: router.CondAll}
	cases := []struct {
		name   string
		c      *router.Cond
		hashes []int32
		want   []int32
		ok     bool
	}{
		{"k = a", eq, []int32{7}, []int32{7}, true},
		{"k = a AND x", &router.Cond{Kind: router.CondAnd, Args: []*router.Cond{all, eq}}, []int32{7}, []int32{7}, true},
		{"k IN (a, b)", &router.Cond{Kind: router.CondOr, Args: []*router.Cond{eq, eq}}, []int32{1, 2}, []int32{1, 2}, true},
		{"k = a OR x", &router.Cond{Kind: router.CondOr, Args: []*router.Cond{eq, all}}, []int32{1}, nil, false},
		{"(k = a OR k = b) AND k = c", &router.Cond{Kind: router.CondAnd, Args: []*router.Cond{
			{Kind: router.CondOr, Args: []*router.Cond{eq, eq}}, eq}}, []int32{1, 2, 3}, []int32{3}, true},
		{"x", all, nil, nil, false},
	}
	for _, c := range cases {
		i := 0
		got, ok := pinnedHashes(c.c, c.hashes, &i)
		if ok != c.ok || ok && !slices.Equal(got, c.want) || i != len(c.hashes) {
			t.Errorf("%s: got %v %v (consumed %d), want %v %v", c.name, got, ok, i, c.want, c.ok)
		}
	}
}

func TestLockSQL(t *testing.T) {
	sql := lockSQL(normalizeLocks([]lockReq{{9, true}, {3, false}}), 1234, false)
	want := "SELECT pg_catalog.pg_advisory_xact_lock_shared(3::pg_catalog.int8), pg_catalog.pg_advisory_xact_lock(9::pg_catalog.int8), pg_catalog.pg_sequence_last_value(1234::pg_catalog.oid::pg_catalog.regclass)"
	if sql != want {
		t.Errorf("lockSQL:\n%s\nwant\n%s", sql, want)
	}
	if !strings.HasSuffix(lockSQL(nil, 0, true), ", pg_catalog.txid_current()") {
		t.Error("lockSQL with the xid")
	}
	if !strings.HasSuffix(lockSQL(nil, 0, false), "NULL::pg_catalog.int8") {
		t.Error("lockSQL without an epoch sequence")
	}
}

func TestHoldLocksSQL(t *testing.T) {
	if got := holdLocksSQL(map[int64]bool{9: true, 3: false}); got != "SELECT pg_catalog.pg_advisory_lock_shared(3::pg_catalog.int8), pg_catalog.pg_advisory_lock(9::pg_catalog.int8)" {
		t.Errorf("holdLocksSQL: %s", got)
	}
	if got := releaseHeldLocksSQL(map[int64]bool{9: true, 3: false}); got != "SELECT pg_catalog.pg_advisory_unlock_shared(3::pg_catalog.int8), pg_catalog.pg_advisory_unlock(9::pg_catalog.int8)" {
		t.Errorf("releaseHeldLocksSQL: %s", got)
	}
	if holdLocksSQL(nil) != "" || releaseHeldLocksSQL(nil) != "" {
		t.Error("holdLocksSQL without locks")
	}
}
