package control

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/ddl"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
)

// Distributing a table inside a transaction block. master_create_distributed_table and
// master_create_worker_shards called after BEGIN (a migration tool's, or psycopg2's
// default) write the metadata rows in the block's own coordinator transaction, through
// the SECURITY DEFINER functions of schema pgs_distribute (metadata/store/blockdist.sql,
// which check the table's ownership themselves), and create the shard tables over the
// block's worker connections: the rows, the shard tables and the CREATE TABLE before them
// commit together (the block's two-phase commit) or not at all. Until the block ends only
// its session sees the table as distributed (Block.AddTable); other sessions and proxies
// see it when the block commits (the metadata's notifications).

// queryFunc is the client's coordinator session as a query function of the loaders.
func (e *Env) queryFunc() func(ctx context.Context, sql string, args [][]byte) ([][][]byte, error) {
	return e.Client.Query
}

// addPartitionInBlock records the partition of table oid (rel) in the block's coordinator
// transaction, then adds the table to the session's view.
func (e *Env) addPartitionInBlock(ctx context.Context, oid uint32, rel string, method byte, column string) error {
	rows, err := e.Client.Query(ctx, "SELECT pgs_distribute.add_partition($1::pg_catalog.oid, $2::pg_catalog.text, $3::pg_catalog.text)",
		[][]byte{[]byte(strconv.FormatUint(uint64(oid), 10)), {method}, []byte(column)})
	if err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return pgerr.New(pgerr.InternalError, "unexpected answer recording the partition of %q", rel)
	}
	switch res := string(rows[0][0]); {
	case res == "exists":
		return pgerr.New(pgerr.DuplicateObject, "table %q is already distributed", rel)
	case res == "notempty":
		return pgerr.New(pgerr.ObjectNotInPrereqState, "table %q is not empty", rel).
			WithDetail("Its files hold pages: rows, or rows deleted and not yet vacuumed.").
			WithHint("Distribute the table while it is empty (TRUNCATE it first), then load its rows through pgshard.")
	case strings.HasPrefix(res, "users:"):
		return pgerr.New(pgerr.FeatureNotSupported, "pgshard cannot distribute table %q while functions, views, rules or policies refer to it: %s", rel, strings.TrimPrefix(res, "users:")).
			WithDetail("Functions, views, rules and policies run inside the coordinator, which holds only an empty prototype of a distributed table; its rows live on the shards.").
			WithHint("Drop them (or, for a function, stop naming the table in its body) before distributing the table.")
	case res != "":
		return pgerr.New(pgerr.InternalError, "unexpected answer recording the partition of %q: %s", rel, res)
	}
	t, err := store.LoadTableVia(ctx, e.queryFunc(), oid, method, column)
	if err != nil {
		return describeErr(err, rel)
	}
	e.Block.AddTable(t)
	return nil
}

// describeErr passes PostgreSQL's errors on and words others.
func describeErr(err error, rel string) error {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return err
	}
	return pgerr.Wrap(err, pgerr.InternalError, "could not read the definition of %q: %v", rel, err)
}

// createShardsInBlock creates the shards of t (rel, owned by owner) inside the block:
// the shard rows first (their ids name the shard tables), then the shard tables, each
// node's over the block's connection to it, then the placements. Placement k of shard i
// goes to node (i+k) mod N (metadata.PlacementNodes); a node that fails fails the
// statement, and with it the block (no other node is tried: the failed node's part of the
// block is aborted).
func (e *Env) createShardsInBlock(ctx context.Context, t *metadata.Table, rel, owner string, nodes []metadata.Node, shardCount, rf int) error {
	rows, err := e.Client.Query(ctx, "SELECT pg_catalog.current_setting('server_version_num')", nil)
	if err != nil {
		return err
	}
	if len(rows) != 1 {
		return pgerr.New(pgerr.InternalError, "unexpected answer to server_version_num")
	}
	num, _ := strconv.Atoi(string(rows[0][0]))
	def, err := ddl.LoadVia(ctx, e.queryFunc(), num/10000, t.OID)
	if err != nil {
		var tooLong *ddl.NameTooLongError
		if errors.As(err, &tooLong) {
			return pgerr.New(pgerr.NameTooLong, "%s", err.Error())
		}
		if errors.Is(err, ddl.ErrUnsupported) {
			return pgerr.New(pgerr.FeatureNotSupported, "cannot create the shards of %q: %s", rel, strings.TrimPrefix(err.Error(), "ddl: "))
		}
		return describeErr(err, rel)
	}
	mins := make([]string, shardCount)
	maxs := make([]string, shardCount)
	ranges := make([][2]int32, shardCount)
	for i := range ranges {
		lo, hi := metadata.HashRange(i, shardCount)
		ranges[i] = [2]int32{lo, hi}
		mins[i], maxs[i] = strconv.Itoa(int(lo)), strconv.Itoa(int(hi))
	}
	oid := []byte(strconv.FormatUint(uint64(t.OID), 10))
	rows, err = e.Client.Query(ctx, "SELECT pgs_distribute.add_shards($1::pg_catalog.oid, $2::pg_catalog.int4[], $3::pg_catalog.int4[])",
		[][]byte{oid, arrayLiteral(mins), arrayLiteral(maxs)})
	if err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return pgerr.New(pgerr.InternalError, "unexpected answer creating the shards of %q", rel)
	}
	ids, err := parseIntArray(rows[0][0])
	if err != nil || len(ids) != shardCount {
		return pgerr.New(pgerr.InternalError, "unexpected shard ids for %q: %s", rel, rows[0][0])
	}
	// The shard tables, by node, in the nodes' order.
	byNode := map[metadata.Node][]string{}
	placed := make([][]metadata.Node, shardCount)
	for i, id := range ids {
		cands, err := metadata.PlacementNodes(nodes, i, rf)
		if err != nil {
			return pgerr.Wrap(err, pgerr.InternalError, "could not place shard %d: %v", id, err)
		}
		cmds, err := def.CreateCommands(id)
		if err != nil {
			var tooLong *ddl.NameTooLongError
			if errors.As(err, &tooLong) {
				return pgerr.New(pgerr.NameTooLong, "%s", err.Error())
			}
			return err
		}
		placed[i] = cands
		for _, n := range cands {
			byNode[n] = append(byNode[n], cmds...)
		}
	}
	for _, n := range nodes {
		cmds := byNode[n]
		if len(cmds) == 0 {
			continue
		}
		if err := e.Block.RunOnWorker(ctx, n, owner, cmds); err != nil {
			var pe *pgerr.Error
			if errors.As(err, &pe) {
				ne := pgerr.New(pe.Code, "could not create shards on \"%s:%d\": %s", n.Name, n.Port, pe.Message)
				if pe.Detail != "" {
					ne = ne.WithDetail("%s", pe.Detail)
				}
				if pe.Hint != "" {
					ne = ne.WithHint("%s", pe.Hint)
				}
				return ne
			}
			return pgerr.Wrap(err, pgerr.ConnectionFailure, "could not create shards on \"%s:%d\": %v", n.Name, n.Port, err)
		}
	}
	var sids, names, ports []string
	for i, id := range ids {
		for _, n := range placed[i] {
			sids = append(sids, strconv.FormatInt(id, 10))
			names = append(names, n.Name)
			ports = append(ports, strconv.Itoa(n.Port))
		}
	}
	rows, err = e.Client.Query(ctx, "SELECT pgs_distribute.add_placements($1::pg_catalog.oid, $2::pg_catalog.int8[], $3::pg_catalog.text[], $4::pg_catalog.int4[])",
		[][]byte{oid, arrayLiteral(sids), arrayLiteral(names), arrayLiteral(ports)})
	if err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return pgerr.New(pgerr.InternalError, "unexpected answer recording the placements of %q", rel)
	}
	pids, err := parseIntArray(rows[0][0])
	if err != nil || len(pids) != len(sids) {
		return pgerr.New(pgerr.InternalError, "unexpected placement ids for %q: %s", rel, rows[0][0])
	}
	nt := *t
	nt.Shards = nil
	var wrote []metadata.Placement
	k := 0
	for i, id := range ids {
		sh := &metadata.Shard{ID: id, TableID: t.OID, Storage: 't', Min: ranges[i][0], Max: ranges[i][1]}
		for _, n := range placed[i] {
			p := metadata.Placement{ID: pids[k], ShardID: id, State: metadata.StateFinalized, Node: n}
			k++
			sh.Placements = append(sh.Placements, p)
			wrote = append(wrote, p)
		}
		nt.Shards = append(nt.Shards, sh)
	}
	e.Block.Wrote(wrote)
	e.Block.AddTable(&nt)
	return nil
}

// arrayLiteral is a PostgreSQL array literal of the values, each quoted.
func arrayLiteral(vals []string) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, r := range v {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// parseIntArray reads a one-dimensional array of integers in text form.
func parseIntArray(b []byte) ([]int64, error) {
	s := strings.TrimSpace(string(b))
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, errors.New("not an array")
	}
	s = s[1 : len(s)-1]
	if s == "" {
		return nil, nil
	}
	var out []int64
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
