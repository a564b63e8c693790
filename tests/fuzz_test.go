package tests

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzFrontend sends arbitrary bytes to the proxy — from the first byte of the
// connection (the startup phase) when the first input byte is even, after a valid startup
// otherwise — and then checks that the proxy still serves a new client. A malformed or
// oversized message may only cost its own connection an error.
func FuzzFrontend(f *testing.F) {
	enc := func(msgs ...pgproto3.FrontendMessage) []byte {
		var b []byte
		for _, m := range msgs {
			b, _ = m.Encode(b)
		}
		return b
	}
	f.Add(append([]byte{1}, enc(&pgproto3.Query{String: "select 1; select 2"})...))
	f.Add(append([]byte{1}, enc(&pgproto3.Parse{Query: "select $1::int"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("7")}}, &pgproto3.Execute{}, &pgproto3.Sync{})...))
	f.Add(append([]byte{1}, enc(&pgproto3.Bind{PreparedStatement: "x"}, &pgproto3.Describe{ObjectType: 'Q'}, &pgproto3.Sync{})...))
	f.Add(append([]byte{1}, 'P', 0, 0, 0, 4, 'B', 0, 0, 0, 5, 1))
	f.Add(append([]byte{1}, 'Q', 0x7f, 0xff, 0xff, 0xff))
	f.Add(append([]byte{1}, 'd', 0, 0, 0, 5, 'x', 'c', 0, 0, 0, 4, 'X', 0, 0, 0, 4))
	f.Add([]byte{0, 0, 0, 0, 8, 4, 210, 22, 47})
	f.Add([]byte{0, 0, 0, 0, 16, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 0, 0})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 3, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		nc, err := net.DialTimeout("tcp", env.P.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if data[0]%2 == 1 {
			fe := pgproto3.NewFrontend(nc, nc)
			fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "postgres", "database": "postgres"}})
			fe.Flush()
			for {
				m, err := fe.Receive()
				if err != nil {
					t.Fatalf("startup: %v", err)
				}
				if _, ok := m.(*pgproto3.ReadyForQuery); ok {
					break
				}
			}
		}
		nc.Write(data[1:])
		buf := make([]byte, 64<<10)
		for {
			if _, err := nc.Read(buf); err != nil {
				break
			}
		}
		nc.Close()
		// The proxy serves everyone else.
		c := connect(t)
		var n int
		if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil || n != 1 {
			t.Fatalf("proxy stopped serving: %v", err)
		}
	})
}
