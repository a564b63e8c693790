package control

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/repair"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/pghash"
)

// superuserFunctions are the functions that change the cluster for every table (its
// nodes, or placements wherever they are), with the DETAIL of their refusal: they are for
// superusers only. (master_create_distributed_table and master_create_worker_shards need
// the table's ownership instead, as in pg_shard and Citus.)
var superuserFunctions = map[string]string{
	"master_add_node":             "Only superusers may register nodes: the proxy connects to them with its own credentials.",
	"master_copy_shard_placement": "Only superusers may change placements.",
}

// AuthorizeFunctions checks the client's right to call the named functions. The caller
// runs it before any argument is evaluated and whether or not any row calls a function,
// as PostgreSQL checks EXECUTE.
func (e *Env) AuthorizeFunctions(ctx context.Context, names []string) error {
	for _, name := range names {
		// Security check: superuserFunctions are for superusers only.
		if detail, ok := superuserFunctions[name]; ok {
			if err := e.requireSuperuser(ctx, "permission denied for function "+name, detail); err != nil {
				return err
			}
		}
	}
	return nil
}

// CallFunction runs one call of a pgshard SQL function, after AuthorizeFunctions. Arguments
// are in text form, already cast to the parameter types by the coordinator; the functions
// are strict (a NULL argument makes the call a no-op, as in PostgreSQL).
func (e *Env) CallFunction(ctx context.Context, name string, args [][]byte) error {
	for _, a := range args {
		if a == nil {
			return nil
		}
	}
	switch name {
	case "master_add_node":
		port, _ := strconv.Atoi(string(args[1]))
		return e.masterAddNode(ctx, string(args[0]), port)
	case "master_create_distributed_table":
		return e.masterCreateDistributedTable(ctx, string(args[0]), string(args[1]), args[2])
	case "master_create_worker_shards":
		n, _ := strconv.Atoi(string(args[1]))
		rf, _ := strconv.Atoi(string(args[2]))
		return e.masterCreateWorkerShards(ctx, string(args[0]), n, rf)
	case "master_copy_shard_placement":
		id, _ := strconv.ParseInt(string(args[0]), 10, 64)
		sp, _ := strconv.Atoi(string(args[2]))
		tp, _ := strconv.Atoi(string(args[4]))
		_, err := e.Repairer.Copy(ctx, repair.Request{ShardID: id, Source: metadata.Node{Name: string(args[1]), Port: sp},
			Target: metadata.Node{Name: string(args[3]), Port: tp}, Trigger: "function", User: e.Client.User()})
		return err
	}
	return pgerr.New(pgerr.UndefinedFunction, "function %s does not exist", name)
}

// masterAddNode registers a worker after checking that the proxy can reach it.
func (e *Env) masterAddNode(ctx context.Context, name string, port int) error {
	// Security check: the name and port are validated before anything connects to them
	// (pgshard's credentials go wherever a node points), and a second name for a
	// registered server is refused before the connection test.
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
	if err := sameServerRegistered(ctx, e.Snapshots.Load().Nodes, node); err != nil {
		return err
	}
	conn, err := e.Nodes.DialWorker(ctx, node)
	if err != nil {
		return pgerr.Wrap(err, pgerr.ConnectionFailure, "could not connect to node %s", fmtNode(node)).
			WithDetail("%v", err)
	}
	conn.Close(ctx)
	added, err := e.Store.AddNode(ctx, node)
	if err != nil {
		return err
	}
	if !added {
		e.Client.Notice(pgerr.New(pgerr.SuccessfulCompletion, "node %s is already registered", fmtNode(node)).WithSeverity("NOTICE"))
	}
	return e.Store.Reload(ctx)
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
func (e *Env) relationInfo(ctx context.Context, name string) (relInfo, error) {
	// pg_has_role(owner, 'USAGE') is PostgreSQL's ownership test (has_privs_of_role:
	// the owner itself, a role that inherits its privileges, or a superuser).
	rows, err := e.Client.Query(ctx, `SELECT c.oid, c.relkind, n.nspname, c.relname,
			pg_catalog.pg_get_userbyid(c.relowner), pg_catalog.pg_has_role(c.relowner, 'USAGE'),
			c.relpersistence OPERATOR(pg_catalog.=) 't',
			(SELECT i.inhparent::pg_catalog.regclass::pg_catalog.text FROM pg_catalog.pg_inherits i
			 WHERE c.relispartition AND i.inhrelid OPERATOR(pg_catalog.=) c.oid)
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
		WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass`, [][]byte{[]byte(name)})
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
func (e *Env) masterCreateDistributedTable(ctx context.Context, table, column string, method []byte) error {
	r, err := e.relationInfo(ctx, table)
	if err != nil {
		return err
	}
	oid, kind, schema, rel := r.oid, r.kind, r.schema, r.name
	if kind != 'r' {
		return pgerr.New(pgerr.WrongObjectType, "cannot distribute relation: %s", table).
			WithDetail("Distributed relations must be regular tables.")
	}
	// Security check: only the table's owner (or a role with its privileges, or a
	// superuser) may distribute it, checked before any other query about it.
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
	attnum, err := e.partitionColumn(ctx, oid, rel, column)
	if err != nil {
		return err
	}
	// The prototype must stay empty: rows in it would be invisible through pgshard.
	rows, err := e.Client.Query(ctx, "SELECT EXISTS (SELECT 1 FROM "+router.QuoteIdent(schema)+"."+router.QuoteIdent(rel)+")", nil)
	if err != nil {
		return err
	}
	if len(rows) == 1 && string(rows[0][0]) == "t" {
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q is not empty", rel).
			WithHint("Distribute the table while it is empty, then load its rows through pgshard.")
	}
	// Each shard enforces its own unique and exclusion constraints: one without the
	// partition column could be violated by rows on two shards, unnoticed.
	rows, err = e.Client.Query(ctx, `SELECT ic.relname FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
		LEFT JOIN pg_catalog.pg_constraint con ON con.conindid OPERATOR(pg_catalog.=) i.indexrelid AND con.conrelid OPERATOR(pg_catalog.=) i.indrelid AND con.contype OPERATOR(pg_catalog.=) 'x'
		WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND (i.indisunique OR i.indisexclusion)
		  AND NOT EXISTS (
		    SELECT 1 FROM pg_catalog.generate_subscripts(i.indkey, 1) s(p)
		    WHERE s.p OPERATOR(pg_catalog.<) i.indnkeyatts AND i.indkey[s.p] OPERATOR(pg_catalog.=) $2::pg_catalog.int2
		      AND (NOT i.indisexclusion OR (SELECT o.oprname FROM pg_catalog.pg_operator o WHERE o.oid OPERATOR(pg_catalog.=) con.conexclop[s.p OPERATOR(pg_catalog.+) 1]) OPERATOR(pg_catalog.=) '='))
		ORDER BY 1 LIMIT 1`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(strconv.Itoa(attnum))})
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
	rows, err = e.Client.Query(ctx, "SELECT relrowsecurity OR relforcerowsecurity FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid",
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10))})
	if err != nil {
		return err
	}
	if len(rows) == 1 && string(rows[0][0]) == "t" {
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot distribute table %q with row-level security enabled", rel).
			WithDetail("Its shards would not enforce it: every role with privileges on them would read and write all of their rows.").
			WithHint("Disable row-level security before distributing the table.")
	}
	if e.Block != nil {
		// Inside a transaction block: recorded in the block's coordinator transaction.
		return e.addPartitionInBlock(ctx, oid, rel, m, column)
	}
	if err := e.Store.AddPartition(ctx, oid, m, column); err != nil {
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
	return e.Store.Reload(ctx)
}

// partitionColumn checks that column of table oid (rel) can be its partition column, as
// pg_shard checks it, in the client's coordinator session, and returns its attnum.
func (e *Env) partitionColumn(ctx context.Context, oid uint32, rel, column string) (int, error) {
	// The partition column needs a default hash operator class for its type, found as
	// PostgreSQL's GetDefaultOpClass (and so pg_shard) finds it: for the base type under
	// any domains, one for the type itself, else exactly one whose input type the type
	// is binary-coercible to (varchar uses text_ops), preferring the category's
	// preferred type.
	rows, err := e.Client.Query(ctx, `WITH RECURSIVE col AS (
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
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(column)})
	if err != nil {
		return 0, err
	}
	if len(rows) == 0 {
		return 0, pgerr.New(pgerr.UndefinedColumn, "column %q of relation %q does not exist", column, rel)
	}
	attnum, _ := strconv.Atoi(string(rows[0][0]))
	typ, _ := strconv.ParseUint(string(rows[0][1]), 10, 32)
	typName := string(rows[0][2])
	if attnum < 0 {
		return 0, pgerr.New(pgerr.InvalidColumnReference, "column %q of relation %q is a system column", column, rel)
	}
	if string(rows[0][3]) != "t" {
		return 0, pgerr.New(pgerr.UndefinedObject, "data type %s has no default operator class for specified partition method", typName)
	}
	if !pghash.Supported(uint32(typ)) {
		return 0, pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot hash values of type %s", typName).
			WithHint("Partition columns may be of type smallint, integer, bigint, numeric, real, double precision, text, varchar, char, name, bytea, boolean, \"char\", oid, uuid, date, time, timestamp or timestamptz (or a domain over one of them).")
	}
	// Under a nondeterministic collation PostgreSQL hashes and compares text by the
	// collation ('abc' = 'ABC'), pgshard by its bytes: equal keys would land on
	// different shards, past the shards' unique constraints and the router's pruning.
	rows, err = e.Client.Query(ctx, `SELECT co.collname FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=) a.attcollation
		WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND a.attnum OPERATOR(pg_catalog.=) $2::pg_catalog.int2 AND NOT co.collisdeterministic`,
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), []byte(strconv.Itoa(attnum))})
	if err != nil {
		return 0, err
	}
	if len(rows) > 0 {
		return 0, pgerr.New(pgerr.FeatureNotSupported, "partition column %q may not use a nondeterministic collation", column).
			WithDetail("Values equal under collation %q may differ in their bytes, which pgshard hashes.", string(rows[0][0]))
	}
	return attnum, nil
}

// masterCreateWorkerShards creates a table's shards: shard_count hash ranges, each placed
// on replication_factor workers, with the shard tables created from the coordinator's
// definition. All metadata is written in one coordinator transaction; shard tables created
// before a failure are dropped again.
func (e *Env) masterCreateWorkerShards(ctx context.Context, table string, shardCount, rf int) error {
	r, err := e.relationInfo(ctx, table)
	if err != nil {
		return err
	}
	oid, rel := r.oid, r.name
	// Security check: only the table's owner (or a role with its privileges, or a
	// superuser) may create its shards, before its metadata or definition is read or any
	// worker is connected to.
	if !r.owned {
		return notOwner(rel)
	}
	snap := e.Snapshots.Load()
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
	if e.Block != nil {
		// Inside a transaction block: over the block's connections.
		return e.createShardsInBlock(ctx, t, rel, r.owner, snap.Nodes, shardCount, rf)
	}
	// The shard tables' definition, read from the coordinator.
	pc, err := e.Nodes.DialCoordinator(ctx)
	if err != nil {
		return err
	}
	def, err := ddl.Load(ctx, pc, oid)
	pc.Close(ctx)
	if err != nil {
		var tooLong *ddl.NameTooLongError
		if errors.As(err, &tooLong) {
			return pgerr.New(pgerr.NameTooLong, "%s", err.Error())
		}
		if errors.Is(err, ddl.ErrUnsupported) {
			return pgerr.New(pgerr.FeatureNotSupported, "cannot create the shards of %q: %s", rel, strings.TrimPrefix(err.Error(), "ddl: "))
		}
		return pgerr.Wrap(err, pgerr.InternalError, "could not read the definition of %q: %v", rel, err)
	}
	nodes := snap.Nodes
	ranges := make([]store.ShardRange, shardCount)
	for i := range ranges {
		ranges[i].Min, ranges[i].Max = metadata.HashRange(i, shardCount)
	}
	var created []createdShard
	ok, err := e.Store.CreateShards(ctx, oid, ranges, func(ctx context.Context, ids []int64) ([][]metadata.Node, error) {
		placed, c, err := e.placeShards(ctx, def, r.owner, nodes, ids, rf)
		created = c
		return placed, err
	})
	if err != nil || !ok {
		e.dropShardTables(ctx, def, r.owner, created)
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
	return e.Store.Reload(ctx)
}

// maxShardCount bounds master_create_worker_shards's shard_count (Citus's limit).
const maxShardCount = 64000

// createdShard is a shard table created on a node.
type createdShard struct {
	shard int64
	node  metadata.Node
}

// placeShards creates the shard tables: placement k of shard i goes to node (i+k) mod N
// over the nodes sorted by (name, port), metadata.PlacementNodes's rule;
// when a node fails, the shard tries the next node, as pg_shard did (one extra attempt when
// there are more nodes than replicas). Each node's tables are created in one transaction,
// nodes in parallel, as role owner (the table's owner: the shards are the owner's, whoever
// created them).
func (e *Env) placeShards(ctx context.Context, def *ddl.Table, owner string, nodes []metadata.Node, ids []int64, rf int) ([][]metadata.Node, []createdShard, error) {
	attempts := rf
	if len(nodes) > rf {
		attempts++
	}
	// The candidates of shard i, in order: metadata's placement rule, extended by the
	// extra attempt.
	cands := make([][]metadata.Node, len(ids))
	for i := range ids {
		c, err := metadata.PlacementNodes(nodes, i, attempts)
		if err != nil {
			return nil, nil, pgerr.Wrap(err, pgerr.InternalError, "could not place shard %d: %v", ids[i], err)
		}
		cands[i] = c
	}
	placed := make([][]metadata.Node, len(ids))
	next := make([]int, len(ids)) // next candidate k per shard
	var created []createdShard
	for round := 0; ; round++ {
		// Assign each shard short of rf placements its next candidates.
		work := map[metadata.Node][]int{}
		for i := range ids {
			for len(placed[i])+countPending(work, i) < rf && next[i] < attempts {
				node := cands[i][next[i]]
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
				results <- result{node, e.Nodes.RunOnNode(ctx, node, owner, cmds)}
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
				if err := objectRefused(r.err, r.node); err != nil {
					return nil, created, err
				}
				for _, i := range shards {
					e.Client.Notice(pgerr.New(pgerr.Warning, "could not create shard on \"%s:%d\"", r.node.Name, r.node.Port).
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
		for k, node := range cands[i] {
			order[node] = k
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

// objectRefused is the client's error for a worker's refusal to create a shard because an
// object the shard needs is missing there or differs (raised by the checks of
// ddl.Table.CreateCommands: a function, an extension, an enum's labels), else nil. Another
// worker would refuse it the same way, so it is not a node failure to try elsewhere.
func objectRefused(err error, node metadata.Node) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || (pe.Code != string(pgerr.FeatureNotSupported) && pe.Code != string(pgerr.DatatypeMismatch)) {
		return nil
	}
	return pgerr.New(pgerr.Code(pe.Code), "%s", pe.Message).WithHint("%s", pe.Hint).WithDetail("On worker %s.", fmtNode(node))
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

// dropShardTables removes shard tables created by a failed master_create_worker_shards.
func (e *Env) dropShardTables(ctx context.Context, def *ddl.Table, owner string, created []createdShard) {
	byNode := map[metadata.Node][]string{}
	for _, c := range created {
		if cmd, err := def.DropCommand(c.shard); err == nil {
			byNode[c.node] = append(byNode[c.node], cmd)
		}
	}
	for node, cmds := range byNode {
		if err := e.Nodes.RunOnNode(ctx, node, owner, cmds); err != nil {
			e.Log.Warn("could not drop shard tables after a failed shard creation", "node", node.String(), "err", err)
		}
	}
}

// fmtNode names a node as host:port in messages.
func fmtNode(n metadata.Node) string { return n.Name + ":" + strconv.Itoa(n.Port) }
