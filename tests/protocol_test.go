package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestEncryptionRequests: GSSENCRequest and SSLRequest are answered 'N' and the startup
// goes on in plaintext.
func TestEncryptionRequests(t *testing.T) {
	nc, err := net.DialTimeout("tcp", env.P.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	for _, code := range []uint32{80877104, 80877103} {
		req := make([]byte, 8)
		binary.BigEndian.PutUint32(req, 8)
		binary.BigEndian.PutUint32(req[4:], code)
		nc.Write(req)
		var b [1]byte
		if _, err := io.ReadFull(nc, b[:]); err != nil || b[0] != 'N' {
			t.Fatalf("request %d: answer %q, %v", code, b[0], err)
		}
	}
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "postgres", "database": "postgres"}})
	fe.Send(&pgproto3.Query{String: "select 40 + 2"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var got string
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := m.(*pgproto3.DataRow); ok {
			got = string(d.Values[0])
		}
		if z, ok := m.(*pgproto3.ReadyForQuery); ok && got != "" {
			_ = z
			break
		}
	}
	if got != "42" {
		t.Errorf("got %q", got)
	}
}

// TestErrorFields: a shard's error reaches the client with SQLSTATE, detail, hint and a
// position mapped back to the client's statement, exactly as plain PostgreSQL reports it.
func TestErrorFields(t *testing.T) {
	conn := connect(t)
	table := uniqueName("errfields")
	distribute(t, conn, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v int CHECK (v > 0))", table), table, "k", 4, 1)
	direct := connectServer(t, env.C.Coordinator)
	plain := uniqueName("errplain")
	mustExec(t, direct, fmt.Sprintf("CREATE TABLE %s (k int PRIMARY KEY, v int CHECK (v > 0))", plain))
	ctx := context.Background()
	pgErr := func(c interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}, sql string) *pgconn.PgError {
		_, err := c.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("%s: %v", sql, err)
		}
		return pe
	}
	// Position: the proxy rewrote the table name, so the shard's position must be mapped.
	for _, q := range []string{
		"SELECT v, nosuchcolumn FROM %s WHERE k = 1",
		"select   k,\n  v + 'x'::int FROM %s WHERE k = 2",
	} {
		a := pgErr(conn, fmt.Sprintf(q, table))
		b := pgErr(direct, fmt.Sprintf(q, plain))
		if a.Code != b.Code || a.Position != b.Position || a.Message != b.Message {
			t.Errorf("%q: proxy %s %q at %d; PostgreSQL %s %q at %d", q, a.Code, a.Message, a.Position, b.Code, b.Message, b.Position)
		}
	}
	mustExec(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", table))
	mustExec(t, direct, fmt.Sprintf("INSERT INTO %s VALUES (1, 1)", plain))
	a := pgErr(conn, fmt.Sprintf("INSERT INTO %s VALUES (1, 5)", table))
	b := pgErr(direct, fmt.Sprintf("INSERT INTO %s VALUES (1, 5)", plain))
	if a.Code != "23505" || a.Detail != b.Detail {
		t.Errorf("duplicate key: proxy %s %q / %q; PostgreSQL %q", a.Code, a.Message, a.Detail, b.Detail)
	}
	a = pgErr(conn, fmt.Sprintf("INSERT INTO %s VALUES (2, -1)", table))
	if a.Code != "23514" || a.ConstraintName == "" {
		t.Errorf("check violation: %s %q constraint %q", a.Code, a.Message, a.ConstraintName)
	}
	// A notice from the coordinator and one from a worker both reach the client.
	var notices []string
	for _, w := range env.C.Workers {
		mustExec(t, connectServer(t, w), `CREATE OR REPLACE FUNCTION pgshard_test_notice() RETURNS bool
			LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'from a worker'; RETURN true; END $$`)
	}
	cfg, _ := pgconn.ParseConfig(env.P.URL())
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	if _, err := pc.Exec(ctx, "DROP TABLE IF EXISTS no_such_table_here").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, fmt.Sprintf("SELECT k FROM %s WHERE k = 1 AND pgshard_test_notice()", table)).ReadAll(); err != nil {
		t.Fatal(err)
	}
	if len(notices) != 2 || notices[0] != `table "no_such_table_here" does not exist, skipping` || notices[1] != "from a worker" {
		t.Errorf("notices: %q", notices)
	}
}
