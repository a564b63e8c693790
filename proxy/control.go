package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/control"
	"github.com/pgshard/pgshard/proxy/protocol"
	"github.com/pgshard/pgshard/repair"
	"github.com/pgshard/pgshard/router"
)

// The session's adapters to package control, which runs pgshard's SQL functions and
// admin statements.

// controlEnv returns the environment of one control-plane statement of the session,
// which arrived by the extended protocol or not, its results going to out.
func controlEnv(ss *session, extended bool, out *protocol.Results) *control.Env {
	return &control.Env{
		Client:    controlClient{ss: ss, extended: extended, out: out},
		Nodes:     controlNodes{ss},
		Store:     controlStore{ss.srv},
		Snapshots: sessionSnapshots{ss}, // with the tables its block distributed (blockdist.go)
		Pools:     ss.srv.pools,
		Repairer:  ss.srv.repair,
		// SHOW TRANSACTIONS, RECOVER TRANSACTIONS (recovery.go).
		Transactions: recoveryAdmin{ss.srv.recovery},
		Stats:        ss.srv.counters,
		Version:      Version,
		Log:          ss.log,
	}
}

// admin answers an admin statement (a plan of kind Admin), its rows in the result
// formats the client's Bind asked for (extended protocol).
func (ss *session) admin(ctx context.Context, st *router.Statement, extended bool, formats []int16, out *protocol.Results) {
	env := controlEnv(ss, extended, out)
	env.Client = controlClient{ss: ss, extended: extended, out: out, formats: formats}
	// The statement's waits (a repair's for the shard's write lock) end as the client's
	// lock waits do: at its statement_timeout, lock_timeout or a cancel request.
	bounded, stop, err := boundStatement(ctx, &ss.txn.waits)
	if err != nil {
		out.Msg(ss.errorMessage(err))
		return
	}
	defer stop()
	bounded = repair.WithLockTimeout(bounded, ss.txn.waits.lockTimeout)
	run := func() error { return env.Admin(bounded, st.Command.Name, st.Command.Arg) }
	if st.Command.Name == "SHOW DRIFT" {
		run = func() error { return ss.showDrift(bounded, env, st.Command) } // drift.go
	}
	if err := run(); err != nil {
		var pe *pgerr.Error
		if cause := context.Cause(bounded); bounded.Err() != nil && errors.As(cause, &pe) {
			err = cause
		}
		out.Msg(ss.errorMessage(err))
	}
}

// controlClient is the session as control.Client, for one statement.
type controlClient struct {
	ss       *session
	extended bool
	out      *protocol.Results
	// formats are the Bind's result formats (extended protocol): the RowDescription
	// that Describe sent announced them, so the rows come in them.
	formats []int16
}

func (c controlClient) User() string { return c.ss.user }

func (c controlClient) Query(ctx context.Context, sql string, args [][]byte) ([][][]byte, error) {
	conn, err := c.ss.txn.coordConn(ctx)
	if err != nil {
		return nil, err
	}
	return conn.QueryParams(ctx, sql, args, nil)
}

func (c controlClient) InTransactionBlock() bool { return c.ss.txn.tx != txIdle }

func (c controlClient) Notice(e *pgerr.Error) { c.out.Notice(e) }

func (c controlClient) Flush() { c.out.Flush() }

func (c controlClient) Rows(tag string, fields []pgproto3.FieldDescription, rows [][][]byte) {
	if !c.extended {
		c.out.Msg(&pgproto3.RowDescription{Fields: fields})
	}
	for _, r := range rows {
		if c.extended {
			r = binaryColumns(fields, r, c.formats)
		}
		c.out.Msg(&pgproto3.DataRow{Values: r})
	}
	c.out.CommandComplete(tag)
}

// binaryColumns converts the text values of an admin row to binary where formats ask
// for it: admin columns are text, int4 and int8, whose binary forms are the text's bytes
// and big-endian integers.
func binaryColumns(fields []pgproto3.FieldDescription, row [][]byte, formats []int16) [][]byte {
	out, copied := row, false
	for i, v := range row {
		if v == nil || i >= len(fields) || formatOf(formats, i) != 1 {
			continue
		}
		var b []byte
		switch fields[i].DataTypeOID {
		case pgtype.Int4OID:
			n, _ := strconv.ParseInt(string(v), 10, 32)
			b = binary.BigEndian.AppendUint32(nil, uint32(n))
		case pgtype.Int8OID:
			n, _ := strconv.ParseInt(string(v), 10, 64)
			b = binary.BigEndian.AppendUint64(nil, uint64(n))
		default:
			continue
		}
		if !copied {
			out, copied = append([][]byte(nil), row...), true
		}
		out[i] = b
	}
	return out
}

// controlNodes opens the session's connections for control.
type controlNodes struct{ ss *session }

func (n controlNodes) DialWorker(ctx context.Context, node metadata.Node) (*pgconn.PgConn, error) {
	return pgconn.ConnectConfig(ctx, n.ss.srv.pools.ConnConfig(n.ss.srv.workerKey(node, n.ss.user)))
}

func (n controlNodes) DialCoordinator(ctx context.Context) (*pgconn.PgConn, error) {
	pc, err := pgconn.ConnectConfig(ctx, n.ss.srv.pools.ConnConfig(n.ss.srv.coordKey(n.ss.user)))
	if err != nil {
		return nil, coordUnavailable(err)
	}
	return pc, nil
}

func (n controlNodes) RunOnNode(ctx context.Context, node metadata.Node, role string, cmds []string) error {
	return n.ss.srv.runOnNode(ctx, n.ss.user, node, role, cmds)
}

// controlStore is the metadata store, reloading into the server's cache.
type controlStore struct{ srv *Server }

func (s controlStore) AddNode(ctx context.Context, n metadata.Node) (bool, error) {
	return s.srv.store.AddNode(ctx, n)
}

func (s controlStore) AddPartition(ctx context.Context, relid uint32, method byte, key string) error {
	return s.srv.store.AddPartition(ctx, relid, method, key)
}

func (s controlStore) CreateShards(ctx context.Context, relid uint32, ranges []store.ShardRange,
	place func(ctx context.Context, shardIDs []int64) ([][]metadata.Node, error)) (bool, error) {
	return s.srv.store.CreateShards(ctx, relid, ranges, place)
}

func (s controlStore) Repairs(ctx context.Context, limit int) ([]store.Repair, error) {
	return s.srv.store.Repairs(ctx, limit)
}

func (s controlStore) Reload(ctx context.Context) error {
	_, err := s.srv.store.Reload(ctx, s.srv.cache)
	return err
}

// counters reads the server's counters for SHOW STATS.
func (s *Server) counters() control.Counters {
	hits, misses := s.router.Stats()
	return control.Counters{
		Database: s.Database(), Clients: s.stats.clients.Load(), Xacts: s.stats.xacts.Load(),
		Queries: s.stats.queries.Load(), Received: s.stats.received.Load(), Sent: s.stats.sent.Load(),
		QueryTimeUs: s.stats.queryTimeUs.Load(), Errors: s.stats.errors.Load(),
		PlanCacheHits: hits, PlanCacheMisses: misses,
	}
}
