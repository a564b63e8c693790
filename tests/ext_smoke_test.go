package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestExtendedSmoke(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := uniqueName("ext")
	distribute(t, connect(t), fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v text, d date)", table), table, "k", 4, 2)
	for i := 0; i < 20; i++ {
		if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES ($1, $2, $3)", table), i, fmt.Sprint("v", i), "2020-01-02"); err != nil {
			t.Fatal(err)
		}
	}
	var v string
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT v FROM %s WHERE k = $1", table), 7).Scan(&v); err != nil || v != "v7" {
		t.Fatalf("%q %v", v, err)
	}
	var n int64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE k > $1", table), 3).Scan(&n); err != nil || n != 16 {
		t.Fatalf("%d %v", n, err)
	}
	rows, _ := conn.Query(ctx, fmt.Sprintf("SELECT k, v, d FROM %s", table))
	cnt := 0
	for rows.Next() {
		cnt++
	}
	if rows.Err() != nil || cnt != 20 {
		t.Fatalf("%d %v", cnt, rows.Err())
	}
	tag, err := conn.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = $2 WHERE k = $1", table), 3, "x")
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatal(tag, err)
	}
	var nodes int
	rows, err = conn.Query(ctx, "SHOW NODES")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		nodes++
	}
	if rows.Err() != nil || nodes != 4 {
		t.Fatalf("nodes %d %v", nodes, rows.Err())
	}
	b := &pgx.Batch{}
	b.Queue(fmt.Sprintf("SELECT v FROM %s WHERE k = $1", table), 1)
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 2")
	br := conn.SendBatch(ctx, b)
	br.Exec()
	_, err = br.Exec()
	if err == nil {
		t.Fatal("expected division error")
	}
	br.Close()
	// A batch is one implicit transaction: its failure undoes its writes.
	b = &pgx.Batch{}
	b.Queue(fmt.Sprintf("INSERT INTO %s VALUES ($1, 'batch')", table), 1001)
	b.Queue(fmt.Sprintf("UPDATE %s SET v = 'batch' WHERE k = $1", table), 2)
	b.Queue("SELECT 1/0")
	if err := conn.SendBatch(ctx, b).Close(); err == nil {
		t.Fatal("expected a division error")
	}
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE v = 'batch'", table)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after the failed batch %d rows of it remain (%v)", n, err)
	}
	b = &pgx.Batch{}
	b.Queue(fmt.Sprintf("INSERT INTO %s VALUES ($1, 'batch')", table), 1001)
	b.Queue(fmt.Sprintf("UPDATE %s SET v = 'batch' WHERE k = $1", table), 2)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE v = 'batch'", table)).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the batch %d rows of it, want 2 (%v)", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
		t.Fatal(n, err)
	}
	_, err = conn.Exec(ctx, "PREPARE pp AS SELECT v FROM "+table+" WHERE k = $1")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "EXECUTE pp(5)").Scan(&v); err != nil || v != "v5" {
		t.Fatal(v, err)
	}
}

func TestCancelSmoke(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env.P.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := uniqueName("cancel")
	distribute(t, connect(t), fmt.Sprintf("CREATE TABLE %s (k int NOT NULL, v int)", table), table, "k", 4, 2)
	mustExec(t, connect(t), fmt.Sprintf("INSERT INTO %s VALUES (1,1),(2,2),(3,3),(4,4)", table))
	for _, q := range []string{
		fmt.Sprintf("SELECT pg_sleep(20) FROM %s WHERE k = 1", table),
		fmt.Sprintf("SELECT pg_sleep(20) FROM %s", table),
		fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE pg_sleep(20) IS NOT NULL", table),
		"SELECT pg_sleep(20)",
	} {
		start := time.Now()
		timer := time.AfterFunc(500*time.Millisecond, func() { conn.PgConn().CancelRequest(ctx) })
		_, err := conn.Exec(ctx, q)
		timer.Stop()
		if err == nil || time.Since(start) > 5*time.Second {
			t.Errorf("%s: %v after %s", q, err, time.Since(start))
		}
		t.Logf("%s: %v", q, err)
		var n int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatalf("after cancel: %v", err)
		}
	}
}
