package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/repair"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/pghash"
)

// voidOID is the type of the functions' results (they return void, like pg_shard's).
const voidOID = 2278

// execFunction runs a statement calling pgshard's SQL functions: the coordinator evaluates
// the rest of the query (FROM, WHERE, the arguments); each function runs once per row.
func (ss *session) execFunction(ctx context.Context, st *router.Statement, in *router.Input, prm *params) error {
	if ss.tx != 'I' {
		return pgerr.New(pgerr.ActiveSQLTransaction, "%s cannot run inside a transaction block", st.Calls[0].Func)
	}
	// As PostgreSQL checks EXECUTE, before any argument is evaluated and whether or not
	// any row calls the function.
	for _, call := range st.Calls {
		if detail, ok := superuserFunctions[call.Func]; ok {
			if err := ss.requireSuperuser(ctx, "permission denied for function "+call.Func, detail); err != nil {
				return err
			}
		}
	}
	c, err := ss.coordConn(ctx)
	if err != nil {
		return err
	}
	argSQL := ss.render(st.ArgQuery, in, nil, nil)
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
			out.Fields = append(out.Fields, pgproto3.FieldDescription{Name: []byte(col.Name), DataTypeOID: voidOID, DataTypeSize: 4, TypeModifier: -1})
		} else {
			f := desc.Fields[col.ArgIndex]
			f.Name = []byte(col.Name)
			out.Fields = append(out.Fields, f)
		}
	}
	if !ss.call.extended {
		ss.w.Msg(out)
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
			if err := ss.callFunction(ctx, call.Func, row[call.Arg0:call.Arg0+call.NArgs]); err != nil {
				return err
			}
			dr.Values = append(dr.Values, []byte{})
		}
		ss.w.Msg(dr)
	}
	ss.commandComplete("SELECT " + strconv.Itoa(nrows))
	return nil
}

// insufficientPrivilege is PostgreSQL's SQLSTATE for permission denied.
const insufficientPrivilege pgerr.Code = "42501"

// superuserFunctions are the functions that change the cluster for every table (its
// nodes, or placements wherever they are), with the DETAIL of their refusal: they are for
// superusers only. (master_create_distributed_table and master_create_worker_shards need
// the table's ownership instead, as in pg_shard and Citus.)
var superuserFunctions = map[string]string{
	"master_add_node":             "Only superusers may register nodes: the proxy connects to them with its own credentials.",
	"master_copy_shard_placement": "Only superusers may change placements.",
}

// superuser reports whether the session's current role (after SET ROLE, as PostgreSQL
// checks privileges) is a superuser on the coordinator.
func (ss *session) superuser(ctx context.Context) (bool, error) {
	c, err := ss.coordConn(ctx)
	if err != nil {
		return false, err
	}
	// is_superuser follows SET ROLE and SET SESSION AUTHORIZATION, and no client can set it.
	rows, err := c.QueryParams(ctx, "SELECT pg_catalog.current_setting('is_superuser')", nil, nil)
	if err != nil {
		return false, err
	}
	return len(rows) == 1 && string(rows[0][0]) == "on", nil
}

// requireSuperuser refuses a session whose current role is not a superuser, with 42501,
// message and detail.
func (ss *session) requireSuperuser(ctx context.Context, message, detail string) error {
	su, err := ss.superuser(ctx)
	if err != nil {
		return err
	}
	if !su {
		return pgerr.New(insufficientPrivilege, "%s", message).WithDetail("%s", detail)
	}
	return nil
}

// callFunction runs one call. Arguments are in text form, already cast to the parameter
// types by the coordinator; the functions are strict (a NULL argument makes the call a
// no-op, as in PostgreSQL).
func (ss *session) callFunction(ctx context.Context, name string, args [][]byte) error {
	for _, a := range args {
		if a == nil {
			return nil
		}
	}
	switch name {
	case "master_add_node":
		port, _ := strconv.Atoi(string(args[1]))
		return ss.masterAddNode(ctx, string(args[0]), port)
	case "master_create_distributed_table":
		return ss.masterCreateDistributedTable(ctx, string(args[0]), string(args[1]), args[2])
	case "master_create_worker_shards":
		n, _ := strconv.Atoi(string(args[1]))
		rf, _ := strconv.Atoi(string(args[2]))
		return ss.masterCreateWorkerShards(ctx, string(args[0]), n, rf)
	case "master_copy_shard_placement":
		id, _ := strconv.ParseInt(string(args[0]), 10, 64)
		sp, _ := strconv.Atoi(string(args[2]))
		tp, _ := strconv.Atoi(string(args[4]))
		_, err := ss.srv.repair.Copy(ctx, repair.Request{ShardID: id, Source: metadata.Node{Name: string(args[1]), Port: sp},
			Target: metadata.Node{Name: string(args[3]), Port: tp}, Trigger: "function", User: ss.user})
		return err
	}
	return pgerr.New(pgerr.UndefinedFunction, "function %s does not exist", name)
}

// masterAddNode registers a worker after checking that the proxy can reach it.
func (ss *session) masterAddNode(ctx context.Context, name string, port int) error {
	switch {
	case name == "":
		return pgerr.New(pgerr.InvalidParameterValue, "node name must not be empty")
	case len(name) > 255:
		return pgerr.New(pgerr.InvalidParameterValue, "hostname exceeds the maximum length of 255")
	case port <= 0 || port > 65535:
		return pgerr.New(pgerr.InvalidParameterValue, "invalid port number %d", port)
	case !validNodeName(name):
		return pgerr.New(pgerr.InvalidParameterValue, "invalid node name %q", name).
			WithDetail("A node is named by a host name or an IP address, not a Unix-socket directory, a list of hosts or connection options.")
	}
	node := metadata.Node{Name: name, Port: port}
	if err := sameServerRegistered(ctx, ss.srv.cache.Load().Nodes, node); err != nil {
		return err
	}
	conn, err := pgconn.ConnectConfig(ctx, ss.srv.pools.ConnConfig(ss.srv.workerKey(node, ss.user)))
	if err != nil {
		return pgerr.Wrap(err, pgerr.ConnectionFailure, "could not connect to node %s", fmtNode(node)).
			WithDetail("%v", err)
	}
	conn.Close(ctx)
	added, err := ss.srv.store.AddNode(ctx, node)
	if err != nil {
		return err
	}
	if !added {
		ss.sendNotice(pgerr.New(pgerr.SuccessfulCompletion, "node %s is already registered", fmtNode(node)).WithSeverity("NOTICE"))
	}
	_, err = ss.srv.store.Reload(ctx, ss.srv.cache)
	return err
}

// validNodeName reports whether name is an IP address (not 0.0.0.0 or ::, which name no
// server) or a host name (letters, digits, '-' and '_' in dot-separated labels): nothing
// the connection library would read as a Unix-socket directory, a list of hosts or
// options.
func validNodeName(name string) bool {
	if ip := net.ParseIP(name); ip != nil {
		return !ip.IsUnspecified()
	}
	if len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// sameServerRegistered refuses a node whose name resolves to an address of a node
// registered under another name with the same port (localhost for 127.0.0.1): its
// placements would count as on two nodes. The same name and port again is left to the
// caller (a no-op).
func sameServerRegistered(ctx context.Context, registered []metadata.Node, node metadata.Node) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var addrs map[string]bool
	for _, r := range registered {
		if r.Port != node.Port || r.Name == node.Name {
			continue
		}
		if addrs == nil {
			a, err := net.DefaultResolver.LookupHost(ctx, node.Name)
			if err != nil {
				return pgerr.Wrap(err, pgerr.ConnectionFailure, "could not resolve node name %q", node.Name).WithDetail("%v", err)
			}
			addrs = map[string]bool{}
			for _, x := range a {
				addrs[x] = true
			}
		}
		other, err := net.DefaultResolver.LookupHost(ctx, r.Name)
		if err != nil {
			continue // an unresolvable registered node is no duplicate of one that resolves
		}
		for _, x := range other {
			if addrs[x] {
				return pgerr.New(pgerr.DuplicateObject, "node %s is already registered as %s", fmtNode(node), fmtNode(r)).
					WithDetail("Both names lead to %s.", net.JoinHostPort(x, strconv.Itoa(node.Port)))
			}
		}
	}
	return nil
}

// relInfo describes a relation, and whether the session's current role may act as its
// owner.
type relInfo struct {
	oid          uint32
	kind         byte
	schema, name string
	owner        string // the owning role's name
	owned        bool   // the current role is a superuser or has the owner's privileges
	temp         bool   // a temporary table
	partitionOf  string // the parent of a partition, else ""
}

// relationInfo resolves a table name as the session would (search_path) on the
// coordinator, with its owner.
func (ss *session) relationInfo(ctx context.Context, name string) (relInfo, error) {
	c, err := ss.coordConn(ctx)
	if err != nil {
		return relInfo{}, err
	}
	// pg_has_role(owner, 'USAGE') is PostgreSQL's ownership test (has_privs_of_role:
	// the owner itself, a role that inherits its privileges, or a superuser).
	rows, err := c.QueryParams(ctx, `SELECT c.oid, c.relkind, n.nspname, c.relname,
			pg_catalog.pg_get_userbyid(c.relowner), pg_catalog.pg_has_role(c.relowner, 'USAGE'),
			c.relpersistence OPERATOR(pg_catalog.=) 't',
			(SELECT i.inhparent::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_inherits i
			 WHERE c.relispartition AND i.inhrelid OPERATOR(pg_catalog.=) c.oid)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
		WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass`, [][]byte{[]byte(name)}, nil)
	if err != nil {
		return relInfo{}, err
	}
	if len(rows) != 1 {
		return relInfo{}, pgerr.New(pgerr.UndefinedTable, "relation %q does not exist", name)
	}
	o, _ := strconv.ParseUint(string(rows[0][0]), 10, 32)
	return relInfo{oid: uint32(o), kind: rows[0][1][0], schema: string(rows[0][2]), name: string(rows[0][3]),
		owner: string(rows[0][4]), owned: string(rows[0][5]) == "t", temp: string(rows[0][6]) == "t",
		partitionOf: string(rows[0][7])}, nil
}

// notOwner is PostgreSQL's refusal of a command on a table the current role does not own.
func notOwner(rel string) error {
	return pgerr.New(insufficientPrivilege, "must be owner of table %s", rel)
}

// masterCreateDistributedTable records a table as distributed on a column, with pg_shard's
// checks.
func (ss *session) masterCreateDistributedTable(ctx context.Context, table, column string, method []byte) error {
	r, err := ss.relationInfo(ctx, table)
	if err != nil {
		return err
	}
	oid, kind, schema, rel := r.oid, r.kind, r.schema, r.name
	if kind != 'r' {
		return pgerr.New(pgerr.WrongObjectType, "cannot distribute relation: %s", table).
			WithDetail("Distributed relations must be regular tables.")
	}
	if !r.owned {
		return notOwner(rel)
	}
	// Neither can have shards (their definition is refused when the shards are created),
	// and a temporary table's metadata would outlive it: no event trigger sees it go.
	if r.temp {
		return pgerr.New(pgerr.FeatureNotSupported, "cannot distribute a temporary table")
	}
	if r.partitionOf != "" {
		return pgerr.New(pgerr.FeatureNotSupported, "cannot distribute relation %q: it is a partition of %s", rel, r.partitionOf)
	}
	if len(column) >= 64 {
		return pgerr.New(pgerr.NameTooLong, "column name too long")
	}
	m := byte('h')
	if len(method) > 0 {
		m = method[0]
	}
	switch m {
	case 'h':
	case 'r':
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard only supports hash partitioning")
	default:
		return pgerr.New(pgerr.InvalidParameterValue, "unrecognized table partition type: %c", m)
	}
	c, err := ss.coordConn(ctx)
	if err != nil {
		return err
	}
	// The partition column needs a default hash operator class for its type, found as
	// PostgreSQL's GetDefaultOpClass (and so pg_shard) finds it: for the base type under
	// any domains, one for the type itself, else exactly one whose input type the type
	// is binary-coercible to (varchar uses text_ops), preferring the category's
	// preferred type.
	rows, err := c.QueryParams(ctx, `WITH RECURSIVE col AS (
			SELECT a.attnum, a.atttypid FROM pg_catalog.pg_attribute a
			WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name AND NOT a.attisdropped),
		chain(oid, depth) AS (
			SELECT atttypid, 0 FROM col
			UNION ALL
			SELECT t.typbasetype, ch.depth OPERATOR(pg_catalog.+) 1 FROM chain ch JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) ch.oid WHERE t.typtype OPERATOR(pg_catalog.=) 'd'),
		base AS (SELECT oid FROM chain ORDER BY depth DESC LIMIT 1),
		cands AS (
			SELECT o.opcintype OPERATOR(pg_catalog.=) base.oid AS exact, it.typispreferred AS preferred
			FROM base, pg_catalog.pg_opclass o
			JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) o.opcmethod
			JOIN pg_catalog.pg_type it ON it.oid OPERATOR(pg_catalog.=) o.opcintype
			WHERE am.amname OPERATOR(pg_catalog.=) 'hash' AND o.opcdefault
			  AND (o.opcintype OPERATOR(pg_catalog.=) base.oid OR EXISTS (
			        SELECT 1 FROM pg_catalog.pg_cast pc
			        WHERE pc.castsource OPERATOR(pg_catalog.=) base.oid AND pc.casttarget OPERATOR(pg_catalog.=) o.opcintype AND pc.castmethod OPERATOR(pg_catalog.=) 'b')))
		SELECT col.attnum, base.oid, pg_catalog.format_type(col.atttypid, NULL),
			(SELECT pg_catalog.count(*) FILTER (WHERE exact) OPERATOR(pg_catalog.=) 1
			     OR (pg_catalog.count(*) FILTER (WHERE exact) OPERATOR(pg_catalog.=) 0
			         AND (pg_catalog.count(*) FILTER (WHERE preferred) OPERATOR(pg_catalog.=) 1
			              OR (pg_catalog.count(*) FILTER (WHERE preferred) OPERATOR(pg_catalog.=) 0 AND pg_catalog.count(*) OPERATOR(pg_catalog.=) 1))) FROM cands)
		FROM col, base`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(column)}, nil)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return pgerr.New(pgerr.UndefinedColumn, "column %q of relation %q does not exist", column, rel)
	}
	attnum, _ := strconv.Atoi(string(rows[0][0]))
	typ, _ := strconv.ParseUint(string(rows[0][1]), 10, 32)
	typName := string(rows[0][2])
	if attnum < 0 {
		return pgerr.New(pgerr.InvalidColumnReference, "column %q of relation %q is a system column", column, rel)
	}
	if string(rows[0][3]) != "t" {
		return pgerr.New(pgerr.UndefinedObject, "data type %s has no default operator class for specified partition method", typName)
	}
	if !pghash.Supported(uint32(typ)) {
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot hash values of type %s", typName).
			WithHint("Partition columns may be of type smallint, integer, bigint, numeric, real, double precision, text, varchar, char, name, bytea, boolean, \"char\", oid, uuid, date, time, timestamp or timestamptz (or a domain over one of them).")
	}
	// Under a nondeterministic collation PostgreSQL hashes and compares text by the
	// collation ('abc' = 'ABC'), pgshard by its bytes: equal keys would land on
	// different shards, past the shards' unique constraints and the router's pruning.
	rows, err = c.QueryParams(ctx, `SELECT co.collname FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=) a.attcollation
		WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.attnum OPERATOR(pg_catalog.=) $2::pg_catalog.int2 AND NOT co.collisdeterministic`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(strconv.Itoa(attnum))}, nil)
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		return pgerr.New(pgerr.FeatureNotSupported, "partition column %q may not use a nondeterministic collation", column).
			WithDetail("Values equal under collation %q may differ in their bytes, which pgshard hashes.", string(rows[0][0]))
	}
	// The prototype must stay empty: rows in it would be invisible through pgshard.
	rows, err = c.QueryParams(ctx, "SELECT EXISTS (SELECT 1 FROM "+router.QuoteIdent(schema)+"."+router.QuoteIdent(rel)+")", nil, nil)
	if err != nil {
		return err
	}
	if len(rows) == 1 && string(rows[0][0]) == "t" {
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q is not empty", rel).
			WithHint("Distribute the table while it is empty, then load its rows through pgshard.")
	}
	// Each shard enforces its own unique and exclusion constraints: one without the
	// partition column could be violated by rows on two shards, unnoticed.
	rows, err = c.QueryParams(ctx, `SELECT ic.relname FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
		LEFT JOIN pg_catalog.pg_constraint con ON con.conindid OPERATOR(pg_catalog.=) i.indexrelid AND con.conrelid OPERATOR(pg_catalog.=) i.indrelid AND con.contype OPERATOR(pg_catalog.=) 'x'
		WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND (i.indisunique OR i.indisexclusion)
		  AND NOT EXISTS (
		    SELECT 1 FROM pg_catalog.generate_subscripts(i.indkey, 1) s(p)
		    WHERE s.p OPERATOR(pg_catalog.<) i.indnkeyatts AND i.indkey[s.p] OPERATOR(pg_catalog.=) $2::pg_catalog.int2
		      AND (NOT i.indisexclusion OR (SELECT o.oprname FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) con.conexclop[s.p OPERATOR(pg_catalog.+) 1]) OPERATOR(pg_catalog.=) '='))
		ORDER BY 1 LIMIT 1`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(strconv.Itoa(attnum))}, nil)
	if err != nil {
		return err
	}
	if len(rows) == 1 {
		return pgerr.New(pgerr.FeatureNotSupported, "cannot distribute relation %q: its unique index %q does not include the partition column %q", rel, string(rows[0][0]), column).
			WithDetail("Each shard enforces uniqueness only among its own rows, so a PRIMARY KEY, UNIQUE or EXCLUDE constraint must include the partition column (compared with = in an EXCLUDE).").
			WithHint("Add the partition column to the constraint, or drop the constraint, before distributing the table.")
	}
	// Row security is not carried to the shards (they are read and written as plain
	// tables): rows PostgreSQL would hide from other roles would be theirs to read.
	rows, err = c.QueryParams(ctx, "SELECT relrowsecurity OR relforcerowsecurity FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10))}, nil)
	if err != nil {
		return err
	}
	if len(rows) == 1 && string(rows[0][0]) == "t" {
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot distribute table %q with row-level security enabled", rel).
			WithDetail("Its shards would not enforce it: every role with privileges on them would read and write all of their rows.").
			WithHint("Disable row-level security before distributing the table.")
	}
	if err := ss.srv.store.AddPartition(ctx, oid, m, column); err != nil {
		var users *store.UsersError
		switch {
		case errors.As(err, &users):
			// They would run inside the coordinator, against the empty prototype.
			return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot distribute table %q while functions, views, rules or policies refer to it: %s", rel, users.Objects).
				WithDetail("Functions, views, rules and policies run inside the coordinator, which holds only an empty prototype of a distributed table; its rows live on the shards.").
				WithHint("Drop them (or, for a function, stop naming the table in its body) before distributing the table.")
		case errors.Is(err, store.ErrAlreadyDistributed):
			return pgerr.New(pgerr.DuplicateObject, "table %q is already distributed", rel)
		case errors.Is(err, store.ErrNotEmpty):
			return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q is not empty", rel).
				WithDetail("Its files hold pages: rows, or rows deleted and not yet vacuumed.").
				WithHint("Distribute the table while it is empty (TRUNCATE it first), then load its rows through pgshard.")
		}
		return err
	}
	_, err = ss.srv.store.Reload(ctx, ss.srv.cache)
	return err
}

// masterCreateWorkerShards creates a table's shards: shard_count hash ranges, each placed
// on replication_factor workers, with the shard tables created from the coordinator's
// definition. All metadata is written in one coordinator transaction; shard tables created
// before a failure are dropped again.
func (ss *session) masterCreateWorkerShards(ctx context.Context, table string, shardCount, rf int) error {
	r, err := ss.relationInfo(ctx, table)
	if err != nil {
		return err
	}
	oid, rel := r.oid, r.name
	if !r.owned {
		return notOwner(rel)
	}
	snap := ss.srv.cache.Load()
	t := snap.TableByOID(oid)
	switch {
	case t == nil:
		return pgerr.New(pgerr.UndefinedObject, "no partition column is defined for relation %q", rel)
	case t.Method != 'h':
		return pgerr.New(pgerr.FeatureNotSupported, "unsupported table partition type: %c", t.Method)
	case len(t.Shards) > 0:
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q has already had shards created for it", rel)
	case shardCount <= 0:
		return pgerr.New(pgerr.InvalidParameterValue, "shard_count must be positive")
	case shardCount > maxShardCount:
		// The ranges are allocated at once, and each shard is a table on every replica.
		return pgerr.New(pgerr.InvalidParameterValue, "shard_count (%d) exceeds the maximum of %d", shardCount, maxShardCount)
	case rf <= 0:
		return pgerr.New(pgerr.InvalidParameterValue, "replication_factor must be positive")
	case rf > len(snap.Nodes):
		return pgerr.New(pgerr.InvalidParameterValue, "replication_factor (%d) exceeds number of worker nodes (%d)", rf, len(snap.Nodes)).
			WithHint("Add more worker nodes or try again with a lower replication factor.")
	}
	// The shard tables' definition, read from the coordinator.
	pc, err := pgconn.ConnectConfig(ctx, ss.srv.pools.ConnConfig(ss.srv.coordKey(ss.user)))
	if err != nil {
		return coordUnavailable(err)
	}
	def, err := ddl.Load(ctx, pc, oid)
	pc.Close(ctx)
	if err != nil {
		var tooLong *ddl.NameTooLongError
		if errors.As(err, &tooLong) {
			return pgerr.New(pgerr.NameTooLong, "%s", err.Error())
		}
		return pgerr.Wrap(err, pgerr.InternalError, "could not read the definition of %q: %v", rel, err)
	}
	nodes := snap.Nodes
	ranges := make([]store.ShardRange, shardCount)
	for i := range ranges {
		ranges[i].Min, ranges[i].Max = metadata.HashRange(i, shardCount)
	}
	var created []createdShard
	ok, err := ss.srv.store.CreateShards(ctx, oid, ranges, func(ctx context.Context, ids []int64) ([][]metadata.Node, error) {
		placed, c, err := ss.placeShards(ctx, def, r.owner, nodes, ids, rf)
		created = c
		return placed, err
	})
	if err != nil || !ok {
		ss.dropShardTables(ctx, def, r.owner, created)
	}
	if errors.Is(err, store.ErrCreatingShards) {
		return pgerr.New(pgerr.LockNotAvailable, "the shards of table %q are being created by another session", rel)
	}
	if err != nil {
		return err
	}
	if !ok {
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q has already had shards created for it", rel)
	}
	_, err = ss.srv.store.Reload(ctx, ss.srv.cache)
	return err
}

// maxShardCount bounds master_create_worker_shards's shard_count (Citus's limit).
const maxShardCount = 64000

// createdShard is a shard table created on a node.
type createdShard struct {
	shard int64
	node  metadata.Node
}

// placeShards creates the shard tables: placement k of shard i goes to node (i+k) mod N;
// when a node fails, the shard tries the next node, as pg_shard did (one extra attempt when
// there are more nodes than replicas). Each node's tables are created in one transaction,
// nodes in parallel, as role owner (the table's owner: the shards are the owner's, whoever
// created them).
func (ss *session) placeShards(ctx context.Context, def *ddl.Table, owner string, nodes []metadata.Node, ids []int64, rf int) ([][]metadata.Node, []createdShard, error) {
	n := len(nodes)
	attempts := rf
	if n > rf {
		attempts++
	}
	placed := make([][]metadata.Node, len(ids))
	next := make([]int, len(ids)) // next candidate k per shard
	var created []createdShard
	for round := 0; ; round++ {
		// Assign each shard short of rf placements its next candidates.
		work := map[metadata.Node][]int{}
		for i := range ids {
			for len(placed[i])+countPending(work, i) < rf && next[i] < attempts {
				node := nodes[(i+next[i])%n]
				next[i]++
				work[node] = append(work[node], i)
			}
		}
		if len(work) == 0 {
			break
		}
		type result struct {
			node metadata.Node
			err  error
		}
		results := make(chan result, len(work))
		var wg sync.WaitGroup
		for node, shards := range work {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var cmds []string
				for _, i := range shards {
					c, err := def.CreateCommands(ids[i])
					if err != nil {
						results <- result{node, err}
						return
					}
					cmds = append(cmds, c...)
				}
				results <- result{node, ss.runOnNode(ctx, node, owner, cmds)}
			}()
		}
		wg.Wait()
		close(results)
		for r := range results {
			shards := work[r.node]
			if r.err != nil {
				var tooLong *ddl.NameTooLongError
				if errors.As(r.err, &tooLong) {
					return nil, created, pgerr.New(pgerr.NameTooLong, "%s", r.err.Error())
				}
				for _, i := range shards {
					ss.sendNotice(pgerr.New(pgerr.Warning, "could not create shard on \"%s:%d\"", r.node.Name, r.node.Port).
						WithSeverity("WARNING").WithDetail("shard %d: %v", ids[i], r.err))
				}
				continue
			}
			for _, i := range shards {
				placed[i] = append(placed[i], r.node)
				created = append(created, createdShard{ids[i], r.node})
			}
		}
	}
	for i := range ids {
		// Keep placements in candidate order (node (i+k) mod N).
		order := map[metadata.Node]int{}
		for k := 0; k < attempts; k++ {
			order[nodes[(i+k)%n]] = k
		}
		ps := placed[i]
		for a := 1; a < len(ps); a++ {
			for b := a; b > 0 && order[ps[b]] < order[ps[b-1]]; b-- {
				ps[b], ps[b-1] = ps[b-1], ps[b]
			}
		}
		if len(ps) < rf {
			return nil, created, pgerr.New(pgerr.InternalError, "could not satisfy specified replication factor").
				WithDetail("Created %d shard replicas, less than the requested replication factor of %d.", len(ps), rf)
		}
	}
	return placed, created, nil
}

func countPending(work map[metadata.Node][]int, i int) int {
	n := 0
	for _, shards := range work {
		for _, s := range shards {
			if s == i {
				n++
			}
		}
	}
	return n
}

// runOnNode runs statements on a worker in one transaction, over a connection of its own
// as the session's user; with role set, as that role (SET LOCAL ROLE: the session's user
// must be a member of it on the worker, as on the coordinator).
func (ss *session) runOnNode(ctx context.Context, node metadata.Node, role string, cmds []string) error {
	cfg := ss.srv.pools.ConnConfig(ss.srv.workerKey(node, ss.user))
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

// dropShardTables removes shard tables created by a failed master_create_worker_shards.
func (ss *session) dropShardTables(ctx context.Context, def *ddl.Table, owner string, created []createdShard) {
	byNode := map[metadata.Node][]string{}
	for _, c := range created {
		if cmd, err := def.DropCommand(c.shard); err == nil {
			byNode[c.node] = append(byNode[c.node], cmd)
		}
	}
	for node, cmds := range byNode {
		if err := ss.runOnNode(ctx, node, owner, cmds); err != nil {
			ss.log.Warn("could not drop shard tables after a failed shard creation", "node", node.String(), "err", err)
		}
	}
}
