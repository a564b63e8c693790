package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestCopy: COPY FROM STDIN splits rows by shard onto every placement (text and CSV, with
// options and column lists, defaults filled in); a bad row aborts everything; COPY TO
// STDOUT and COPY (SELECT ...) TO STDOUT read all shards.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	conn := connect(t)
	table := uniqueName("copy")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (id bigserial, k text NOT NULL, v int, note text)", table), table, "k", 8, 2)
	pc := conn.PgConn()
	var data strings.Builder
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&data, "key%d\t%d\tnote\\twith tab %d\n", i, i, i)
	}
	tag, err := pc.CopyFrom(ctx, strings.NewReader(data.String()), fmt.Sprintf("COPY %s (k, v, note) FROM STDIN", table))
	if err != nil || tag.RowsAffected() != 5000 {
		t.Fatalf("copy text: %v %v", tag, err)
	}
	var csv strings.Builder
	csv.WriteString("k;v;note\n")
	for i := 5000; i < 6000; i++ {
		fmt.Fprintf(&csv, "\"key%d\";%d;\"multi\nline \"\"quoted\"\"\"\n", i, i)
	}
	tag, err = pc.CopyFrom(ctx, strings.NewReader(csv.String()), fmt.Sprintf("COPY %s (k, v, note) FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER ';')", table))
	if err != nil || tag.RowsAffected() != 1000 {
		t.Fatalf("copy csv: %v %v", tag, err)
	}
	if got := queryString(t, conn, fmt.Sprintf("select count(*) || '/' || (max(id) - min(id) + 1) || '/' || sum(v) from %s", table)); got != fmt.Sprintf("6000/6000/%d", 5999*6000/2) {
		t.Errorf("after COPY: %s", got)
	}
	if got := queryString(t, conn, fmt.Sprintf("select note from %s where k = 'key5001'", table)); got != "multi\nline \"quoted\"" {
		t.Errorf("csv value %q", got)
	}
	if got := queryString(t, conn, fmt.Sprintf("select note from %s where k = 'key7'", table)); got != "note\twith tab 7" {
		t.Errorf("text value %q", got)
	}
	if total := checkPlacements(t, table, "hashtext(k)"); total != 6000 {
		t.Errorf("rows on workers: %d", total)
	}
	// A bad row (line 3) aborts the whole COPY: nothing is stored anywhere.
	_, err = pc.CopyFrom(ctx, strings.NewReader("a1\t1\tx\na2\t2\tx\na3\tnot a number\tx\na4\t4\tx\n"), fmt.Sprintf("COPY %s (k, v, note) FROM STDIN", table))
	var pe *pgconn.PgError
	if !asPg(err, &pe) || pe.Code != "22P02" || !strings.Contains(pe.Where, "line 3") {
		t.Errorf("bad row: %v (where %q)", err, whereOf(err))
	}
	_, err = pc.CopyFrom(ctx, strings.NewReader("b1\t1\tx\n\\N\t2\tx\n"), fmt.Sprintf("COPY %s (k, v, note) FROM STDIN", table))
	if !asPg(err, &pe) || pe.Code != "22004" {
		t.Errorf("NULL key: %v", err)
	}
	if got := queryString(t, conn, fmt.Sprintf("select count(*)::text from %s", table)); got != "6000" {
		t.Errorf("after failed COPYs: %s rows", got)
	}
	// COPY TO STDOUT: all shards, one header.
	var out strings.Builder
	tag, err = pc.CopyTo(ctx, &out, fmt.Sprintf("COPY %s (k, v) TO STDOUT WITH (FORMAT csv, HEADER)", table))
	if err != nil || tag.RowsAffected() != 6000 {
		t.Fatalf("copy out: %v %v", tag, err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6001 || lines[0] != "k,v" || strings.Count(out.String(), "k,v\n") != 1 {
		t.Errorf("copy out: %d lines, first %q", len(lines), lines[0])
	}
	out.Reset()
	tag, err = pc.CopyTo(ctx, &out, fmt.Sprintf("COPY (SELECT k, v * 2 FROM %s WHERE v < 10) TO STDOUT", table))
	if err != nil || tag.RowsAffected() != 10 {
		t.Errorf("copy (select): %v %v", tag, err)
	}
	out.Reset()
	tag, err = pc.CopyTo(ctx, &out, fmt.Sprintf("COPY (SELECT k FROM %s WHERE k = 'key3') TO STDOUT", table))
	if err != nil || out.String() != "key3\n" {
		t.Errorf("copy (select) one shard: %q %v", out.String(), err)
	}
	// psql's \copy in both directions.
	script := fmt.Sprintf("\\copy %s (k, v) from stdin\nz1\t1\nz2\t2\n\\.\n\\copy (select k, v from %s where k like 'z%%') to stdout\n", table, table)
	if o, err := psql(t, env.P, script); err != nil || !strings.Contains(o, "z1\t1") || !strings.Contains(o, "z2\t2") {
		t.Errorf("psql \\copy: %v\n%s", err, o)
	}
}

func asPg(err error, pe **pgconn.PgError) bool {
	p, ok := err.(*pgconn.PgError)
	if ok {
		*pe = p
	}
	return ok
}

func whereOf(err error) string {
	if p, ok := err.(*pgconn.PgError); ok {
		return p.Where
	}
	return ""
}
