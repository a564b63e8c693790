package proxy

import (
	"context"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// blockFunctions are the SQL functions that run inside a transaction block.
var blockFunctions = map[string]bool{"master_create_distributed_table": true, "master_create_worker_shards": true}

// voidOID is the type of the functions' results (they return void, like pg_shard's),
// but for those whose signature names another (the sizes: bigint).
const voidOID = 2278

// callField describes the result column of a call of function fn.
func callField(name, fn string) pgproto3.FieldDescription {
	if oid := router.Functions[fn].Result; oid != 0 {
		return pgproto3.FieldDescription{Name: []byte(name), DataTypeOID: oid, DataTypeSize: 8, TypeModifier: -1}
	}
	return pgproto3.FieldDescription{Name: []byte(name), DataTypeOID: voidOID, DataTypeSize: 4, TypeModifier: -1}
}

// execFunction runs a statement calling pgshard's SQL functions: the coordinator evaluates
// the rest of the query (FROM, WHERE, the arguments); each function runs once per row.
func (x *execution) execFunction(ctx context.Context) error {
	ss, st, in, prm := x.ss, x.st, x.in, x.prm
	ctl := controlEnv(ss, x.extended, x.out)
	if ss.txn.tx != txIdle {
		// Tables are distributed inside a block in the block's own transactions
		// (blockdist.go); the other functions change the cluster for everyone, outside.
		for _, call := range st.Calls {
			if !blockFunctions[call.Func] && !sizeFunction(call.Func) {
				return pgerr.New(pgerr.ActiveSQLTransaction, "%s cannot run inside a transaction block", call.Func)
			}
		}
		ctl.Block = controlBlock{ss}
		ctl.Snapshots = sessionSnapshots{ss}
	}
	// As PostgreSQL checks EXECUTE, before any argument is evaluated and whether or not
	// any row calls the function.
	names := make([]string, len(st.Calls))
	for i, call := range st.Calls {
		names[i] = call.Func
	}
	if err := ctl.AuthorizeFunctions(ctx, names); err != nil {
		return err
	}
	if st.Outer != nil {
		return x.inlineSizes(ctx)
	}
	c, err := ss.txn.coordConn(ctx)
	if err != nil {
		return err
	}
	argSQL := render(st.ArgQuery, in, nil, nil)
	var args [][]byte
	var oids []uint32
	var formats []int16
	if prm != nil {
		args, oids, formats = prm.values, prm.oids, prm.formats
	}
	// Describe the argument query's columns and fetch its rows (in text: the functions
	// read their arguments as text).
	w := c.Writer()
	w.Msg(&pgproto3.Parse{Query: argSQL, ParameterOIDs: oids})
	w.Msg(&pgproto3.Bind{Parameters: args, ParameterFormatCodes: formats})
	w.Msg(&pgproto3.Describe{ObjectType: 'P'})
	w.Msg(&pgproto3.Execute{})
	w.Msg(&pgproto3.Sync{})
	if err := ss.sendTo(c); err != nil {
		return err
	}
	// The rows are set aside first (the calls need the connection): in memory up to
	// work-mem, beyond in a temporary file.
	rows := ss.newSpool()
	defer rows.Close()
	desc, nrows, err := spoolRows(ctx, c, rows)
	ss.stopRunning(c)
	if err != nil {
		if e, ok := err.(*pgerr.Error); ok {
			e.Position = 0
		}
		return err
	}
	out := &pgproto3.RowDescription{}
	for _, col := range st.Columns {
		if col.Call >= 0 {
			out.Fields = append(out.Fields, callField(col.Name, st.Calls[col.Call].Func))
		} else {
			f := desc.Fields[col.ArgIndex]
			f.Name = []byte(col.Name)
			out.Fields = append(out.Fields, f)
		}
	}
	if !x.extended {
		x.out.Msg(out)
	}
	for {
		_, b, err := rows.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		row, err := backend.RowValues(b)
		if err != nil {
			return err
		}
		if len(row) < len(desc.Fields) {
			return pgerr.New(pgerr.InternalError, "short row from the argument query")
		}
		dr := &pgproto3.DataRow{}
		for _, col := range st.Columns {
			if col.Call < 0 {
				dr.Values = append(dr.Values, row[col.ArgIndex])
				continue
			}
			call := st.Calls[col.Call]
			if sizeFunction(call.Func) {
				v, err := x.sizeCall(ctx, call.Func, row[call.Arg0])
				if err != nil {
					return err
				}
				dr.Values = append(dr.Values, v)
				continue
			}
			if err := ctl.CallFunction(ctx, call.Func, row[call.Arg0:call.Arg0+call.NArgs]); err != nil {
				return err
			}
			dr.Values = append(dr.Values, []byte{})
		}
		if x.extended {
			dr.Values = binaryColumns(out.Fields, dr.Values, x.results)
		}
		x.out.Msg(dr)
	}
	x.out.CommandComplete("SELECT " + strconv.Itoa(nrows))
	return nil
}

// insufficientPrivilege is PostgreSQL's SQLSTATE for permission denied.
const insufficientPrivilege pgerr.Code = "42501"

// runOnNode runs statements on a worker in one transaction, over a connection of its own
// as user (the session's); with role set, as that role (SET LOCAL ROLE: the user must be
// a member of it on the worker, as on the coordinator).
func (s *Server) runOnNode(ctx context.Context, user string, node metadata.Node, role string, cmds []string) error {
	cfg := s.pools.ConnConfig(s.workerKey(node, user))
	// The statements are pgshard's, every name in them qualified: nothing on the role's
	// search_path may stand in for pg_catalog's.
	cfg.RuntimeParams["search_path"] = store.SearchPath
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	sql := "BEGIN;\n"
	if role != "" {
		sql += "SET LOCAL ROLE " + router.QuoteIdent(role) + ";\n"
	}
	sql += strings.Join(cmds, ";\n") + ";\nCOMMIT"
	_, err = conn.Exec(ctx, sql).ReadAll()
	return err
}
