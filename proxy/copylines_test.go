package proxy

import "testing"

// TestLineLog: the lines of the last rows are exact, older ones are forgotten, and the
// memory stays bounded however many rows are logged.
func TestLineLog(t *testing.T) {
	var l lineLog
	const rows = 3_000_000
	lineOf := func(n int64) int64 { return 10*n + n%7 } // increasing, uneven gaps
	for n := int64(1); n <= rows; n++ {
		l.add(lineOf(n))
	}
	for _, n := range []int64{rows, rows - 1, rows - 1000, rows - 100_000, rows - 200_000} {
		if got, ok := l.line(n); !ok || got != lineOf(n) {
			t.Fatalf("line(%d) = %d, %v; want %d", n, got, ok, lineOf(n))
		}
	}
	if _, ok := l.line(1); ok {
		t.Errorf("row 1 of %d still remembered", rows)
	}
	if _, ok := l.line(rows + 1); ok {
		t.Errorf("a row not logged has a line")
	}
	size := 0
	for _, c := range l.chunks {
		size += cap(c.deltas)
	}
	if size > 2*lineLogChunks*lineChunkBytes {
		t.Errorf("%d bytes for the line log", size)
	}
	var short lineLog
	short.add(5)
	short.add(9)
	if got, ok := short.line(2); !ok || got != 9 {
		t.Errorf("line(2) = %d, %v", got, ok)
	}
}
