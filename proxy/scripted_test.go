package proxy

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/backend"
)

// A scripted backend stands in for a PostgreSQL server in the executor's unit tests: a
// real *backend.Conn over a net.Pipe whose far end a goroutine plays from a script, one
// reply per statement. The executor's decisions (which placement, failover, which error
// reaches the client) can then be tested without a server, and a reply can be made to
// fail exactly where a test wants it to.

// reply is a scripted server's answer to one statement (a Query, or the messages up to
// a Sync).
type reply struct {
	msgs []pgproto3.BackendMessage
	// hangUp closes the connection once msgs are sent: a server that goes away
	// mid-statement (hangUp with no msgs: before answering anything).
	hangUp bool
}

// rows is the reply of a successful one-column text query returning vals.
func rows(vals ...string) reply {
	msgs := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
		Name: []byte("v"), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1}}}}
	for _, v := range vals {
		msgs = append(msgs, &pgproto3.DataRow{Values: [][]byte{[]byte(v)}})
	}
	msgs = append(msgs, &pgproto3.CommandComplete{CommandTag: []byte("SELECT " + itoa(len(vals)))},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return reply{msgs: msgs}
}

// serverError is the reply of a statement the server refuses with an error.
func serverError(code, msg string) reply {
	return reply{msgs: []pgproto3.BackendMessage{&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: msg},
		&pgproto3.ReadyForQuery{TxStatus: 'I'}}}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// scripted is a connection to addr whose server answers each statement with the next
// reply. The server's goroutine ends when the script says to hang up or the connection
// is closed, which the test's cleanup does and waits for; it records what it received
// in *got (one string per statement: its SQL).
func scripted(t *testing.T, addr string, got *[]string, replies ...reply) *backend.Conn {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		be := pgproto3.NewBackend(server, server)
		for _, r := range replies {
			for end := false; !end; {
				msg, err := be.Receive()
				if err != nil {
					return
				}
				switch m := msg.(type) {
				case *pgproto3.Query:
					*got = append(*got, m.String)
					end = true
				case *pgproto3.Parse:
					*got = append(*got, m.Query)
				case *pgproto3.Sync:
					end = true
				case *pgproto3.Terminate:
					return
				}
			}
			for _, m := range r.msgs {
				be.Send(m)
			}
			if err := be.Flush(); err != nil || r.hangUp {
				return
			}
		}
		for {
			if _, err := be.Receive(); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		client.Close()
		<-done
	})
	return backend.NewConn(client, addr)
}

// scriptedBackends are backends (conns.go) for executor tests: each node hands out its
// scripted connections in order, and refuses connections once it has none left (or when
// it never had any), as an unreachable node does.
type scriptedBackends struct {
	t        *testing.T
	coord    *backend.Conn
	workers  map[metadata.Node][]*backend.Conn
	released []*backend.Conn
}

func (b *scriptedBackends) coordConn(ctx context.Context) (*backend.Conn, error) {
	if b.coord == nil {
		return nil, &backend.UnavailableError{Addr: "coordinator", Err: errors.New("connection refused")}
	}
	return b.coord, nil
}

func (b *scriptedBackends) workerConn(ctx context.Context, node metadata.Node) (workerConn, error) {
	q := b.workers[node]
	if len(q) == 0 {
		return workerConn{}, &backend.UnavailableError{Addr: node.Addr(), Err: errors.New("connection refused")}
	}
	c := q[0]
	b.workers[node] = q[1:]
	// A pool of its own, as workerConn holds a pooled resource.
	pool, err := puddle.NewPool(&puddle.Config[*backend.Conn]{
		Constructor: func(context.Context) (*backend.Conn, error) { return c, nil },
		Destructor:  func(c *backend.Conn) { c.Close() },
		MaxSize:     1,
	})
	if err != nil {
		return workerConn{}, err
	}
	b.t.Cleanup(pool.Close)
	res, err := pool.Acquire(ctx)
	if err != nil {
		return workerConn{}, err
	}
	return workerConn{res: res}, nil
}

func (b *scriptedBackends) release(w workerConn) {
	if w.res != nil && !w.pinned {
		b.released = append(b.released, w.conn())
		backend.Release(w.res)
	}
}
