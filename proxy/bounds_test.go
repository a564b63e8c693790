package proxy

import (
	"slices"
	"testing"
)

func TestDropEntries(t *testing.T) {
	for _, c := range []struct {
		list []string
		at   []int
		want []string
	}{
		{[]string{"BEGIN", "SAVEPOINT a"}, []int{1}, []string{"BEGIN"}},
		{[]string{"BEGIN", "SAVEPOINT a", "SET x", "SAVEPOINT b", "SET y"}, []int{1, 3}, []string{"BEGIN", "SET x", "SET y"}},
		{[]string{"BEGIN", "SET w", "SAVEPOINT a", "SAVEPOINT b"}, []int{2, 3}, []string{"BEGIN", "SET w"}},
	} {
		if got := dropEntries(slices.Clone(c.list), c.at); !slices.Equal(got, c.want) {
			t.Errorf("dropEntries(%q, %v) = %q, want %q", c.list, c.at, got, c.want)
		}
	}
}
