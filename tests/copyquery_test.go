package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// copyRows splits COPY output into rows: lines for text and CSV (the header line, if any,
// stays first), tuples for binary (after checking the header and the trailer). sorted
// sorts the rows (after the header) for outputs whose order the query leaves open.
func copyRows(t *testing.T, out []byte, bin, sorted bool) []string {
	t.Helper()
	var rows []string
	if bin {
		const hdr = 19
		if len(out) < hdr+2 || !bytes.HasPrefix(out, []byte("PGCOPY\n\xff\r\n\x00")) || !bytes.HasSuffix(out, []byte{0xff, 0xff}) {
			t.Fatalf("binary COPY output without header or trailer: %q", out)
		}
		rows = append(rows, string(out[:hdr]))
		b := out[hdr : len(out)-2]
		for len(b) > 0 {
			n := int(int16(binary.BigEndian.Uint16(b)))
			p := 2
			for i := 0; i < n; i++ {
				if p+4 > len(b) {
					t.Errorf("binary COPY output cut in a tuple: %q", out)
					return rows
				}
				l := int(int32(binary.BigEndian.Uint32(b[p:])))
				p += 4
				if l > 0 {
					p += l
				}
			}
			if n < 0 || p > len(b) {
				t.Errorf("binary COPY output with a bad tuple: %q", out)
				return rows
			}
			rows = append(rows, string(b[:p]))
			b = b[p:]
		}
	} else {
		rows = strings.SplitAfter(string(out), "\n")
		rows = rows[:len(rows)-1] // after the last newline
	}
	if sorted && len(rows) > 1 {
		sort.Strings(rows[1:])
	}
	return rows
}

// TestCopyQueryDistributed (issue 9, defect 14): COPY (SELECT ...) TO STDOUT over
// distributed tables answers every SELECT the proxy answers — ORDER BY, LIMIT, aggregates,
// DISTINCT, joins, subqueries — in text, CSV and binary, byte for byte as PostgreSQL
// answers the same COPY over a plain table; it was refused with 0A000 over several shards.
func TestCopyQueryDistributed(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	dist := uniqueName("cq")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v text, n numeric)", dist), dist, "k", 4, 2)
	plain := uniqueName("cq_plain")
	direct := connectServer(t, env.C.Coordinator)
	mustExec(t, direct, fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v text, n numeric)", plain))
	load := "INSERT INTO %s SELECT g, CASE WHEN g %% 7 = 0 THEN NULL ELSE 'v' || (g %% 13) || E'\\t,\"x' END, g / 3.0 FROM generate_series(1, 500) g"
	mustExec(t, conn, fmt.Sprintf(load, dist))
	mustExec(t, direct, fmt.Sprintf(load, plain))
	queries := []struct {
		sql    string
		sorted bool // the order is not fixed by the query
	}{
		{"SELECT k, v, n FROM %[1]s ORDER BY k", false},
		{"SELECT k, v FROM %[1]s ORDER BY v DESC NULLS LAST, k LIMIT 20 OFFSET 5", false},
		{"SELECT v, count(*), sum(n) FROM %[1]s GROUP BY v ORDER BY v", false},
		{"SELECT count(*), avg(n), max(v) FROM %[1]s", false},
		{"SELECT DISTINCT k %% 10 FROM %[1]s ORDER BY 1", false},
		{"SELECT a.k, b.v FROM %[1]s a JOIN %[1]s b ON b.k = a.k + 1 WHERE a.k < 50 ORDER BY a.k", false},
		{"SELECT k FROM %[1]s WHERE k IN (SELECT k * 2 FROM %[1]s) ORDER BY k DESC LIMIT 30", false},
		{"SELECT k, row_number() OVER (ORDER BY k) FROM %[1]s ORDER BY k LIMIT 10", false},
		{"SELECT k, v FROM %[1]s WHERE k = 42", false},
		{"SELECT k, v, n FROM %[1]s WHERE k > 400", true},
		{"SELECT * FROM %[1]s", true},
	}
	for _, q := range queries {
		for _, opts := range []string{"", " (FORMAT csv, HEADER)", " (FORMAT binary)"} {
			bin := strings.Contains(opts, "binary")
			var want, got bytes.Buffer
			if _, err := direct.PgConn().CopyTo(ctx, &want, "COPY ("+fmt.Sprintf(q.sql, plain)+") TO STDOUT"+opts); err != nil {
				t.Fatalf("%s%s on PostgreSQL: %v", q.sql, opts, err)
			}
			tag, err := conn.PgConn().CopyTo(ctx, &got, "COPY ("+fmt.Sprintf(q.sql, dist)+") TO STDOUT"+opts)
			if err != nil {
				t.Errorf("%s%s: %v", q.sql, opts, err)
				continue
			}
			w, g := copyRows(t, want.Bytes(), bin, q.sorted), copyRows(t, got.Bytes(), bin, q.sorted)
			if strings.Join(w, "") != strings.Join(g, "") {
				t.Errorf("%s%s:\nproxy %q\nPostgreSQL %q", q.sql, opts, trunc(strings.Join(g, "")), trunc(strings.Join(w, "")))
			}
			rows := len(w)
			if bin || strings.Contains(opts, "HEADER") {
				rows--
			}
			if tag.String() != fmt.Sprintf("COPY %d", rows) {
				t.Errorf("%s%s: tag %q, want COPY %d", q.sql, opts, tag, rows)
			}
		}
	}
	// COPY of the whole table in binary concatenates the shards into one stream.
	var got bytes.Buffer
	if _, err := conn.PgConn().CopyTo(ctx, &got, "COPY "+dist+" TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := direct.PgConn().CopyTo(ctx, &want, "COPY "+plain+" TO STDOUT (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	if w, g := copyRows(t, want.Bytes(), true, true), copyRows(t, got.Bytes(), true, true); strings.Join(w, "") != strings.Join(g, "") {
		t.Errorf("COPY %s TO STDOUT (FORMAT binary): %d rows, want %d", dist, len(g), len(w))
	}
	// Admin statements with comments around them are the proxy's (they went to the
	// coordinator, which knows no "nodes" parameter).
	for _, q := range []string{"/* comment */ SHOW NODES", "-- comment\n  show nodes ;", "\n\tSHOW /* c */ VERSION;"} {
		rr := conn.PgConn().Exec(ctx, q)
		res, err := rr.ReadAll()
		if err != nil || len(res) != 1 || len(res[0].Rows) == 0 {
			t.Errorf("%q: %v", q, err)
		}
	}
}

func trunc(s string) string {
	if len(s) > 400 {
		return s[:400] + "..."
	}
	return s
}
