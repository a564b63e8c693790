package qualify

import (
	"strconv"
	"testing"
)

// TestExprCache: a cached answer is the answer Expr computes, errors included, and the
// cache stays within its bound.
func TestExprCache(t *testing.T) {
	for _, text := range []string{"now()", "NULL::text", "1 +", "lower('A')"} {
		want, wantErr := expr(text)
		for i := 0; i < 2; i++ {
			got, err := Expr(text)
			if got != want || (err == nil) != (wantErr == nil) {
				t.Fatalf("Expr(%q) call %d = %q, %v; want %q, %v", text, i, got, err, want, wantErr)
			}
		}
	}
	for i := 0; i < maxCached+10; i++ {
		if _, err := Expr("1 + " + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	cache.Lock()
	n := len(cache.m)
	cache.Unlock()
	if n > maxCached {
		t.Fatalf("cache holds %d results, over its bound of %d", n, maxCached)
	}
}
