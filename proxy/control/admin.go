package control

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/pgerr"
)

// Type OIDs of admin result columns.
const (
	textOID = 25
	int4OID = 23
	int8OID = 20
)

type adminCol struct {
	name string
	oid  uint32
}

// Columns of the admin statements' results.
var adminColumns = map[string][]adminCol{
	"SHOW NODES": {{"node_name", textOID}, {"node_port", int4OID}, {"registered", textOID},
		{"finalized_placements", int4OID}, {"inactive_placements", int4OID}},
	"SHOW SHARDS": {{"table_name", textOID}, {"shard_id", int8OID}, {"min_value", int4OID}, {"max_value", int4OID},
		{"placements", int4OID}, {"finalized", int4OID}, {"inactive", int4OID}},
	"SHOW PLACEMENTS": {{"placement_id", int8OID}, {"shard_id", int8OID}, {"table_name", textOID},
		{"node_name", textOID}, {"node_port", int4OID}, {"shard_state", int4OID}, {"state", textOID}},
	"SHOW REPAIRS": {{"repair_id", int8OID}, {"shard_id", int8OID}, {"placement_id", int8OID},
		{"source", textOID}, {"target", textOID}, {"state", textOID}, {"rows_copied", int8OID}, {"bytes_copied", int8OID},
		{"progress", textOID}, {"trigger", textOID}, {"started_at", textOID}, {"finished_at", textOID}, {"error", textOID}},
	"SHOW POOLS": {{"database", textOID}, {"user", textOID}, {"host", textOID}, {"port", int4OID},
		{"sv_active", int4OID}, {"sv_idle", int4OID}, {"sv_total", int4OID}, {"max_conns", int4OID},
		{"acquires", int8OID}, {"waits", int8OID}, {"wait_us", int8OID}, {"pool_mode", textOID}},
	"SHOW STATS": {{"database", textOID}, {"cl_active", int8OID}, {"total_xact_count", int8OID},
		{"total_query_count", int8OID}, {"total_received", int8OID}, {"total_sent", int8OID},
		{"total_query_time", int8OID}, {"avg_query_time", int8OID}, {"total_errors", int8OID},
		{"plan_cache_hits", int8OID}, {"plan_cache_misses", int8OID}},
	"SHOW VERSION": {{"version", textOID}},
	"SHOW TRANSACTIONS": {{"node_name", textOID}, {"node_port", int4OID}, {"gid", textOID}, {"state", textOID},
		{"age", textOID}, {"detail", textOID}},
	"RECOVER TRANSACTIONS": {{"committed", int4OID}, {"rolled_back", int4OID}, {"records_deleted", int4OID},
		{"in_progress", int4OID}},
	// SHOW DRIFT is answered by the proxy itself (proxy/drift.go).
	"SHOW DRIFT": {{"table_name", textOID}, {"shard_id", int8OID}, {"node_name", textOID}, {"node_port", int4OID},
		{"item", textOID}, {"coordinator", textOID}, {"placement", textOID}},
	"REPAIR SHARD": {{"shard_id", int8OID}, {"placement_id", int8OID}, {"source", textOID}, {"target", textOID},
		{"rows_copied", int8OID}, {"bytes_copied", int8OID}, {"seconds", textOID}},
}

// Fields describes the result columns of admin command cmd (router.AdminCommand's Name),
// for Describe.
func Fields(cmd string) []pgproto3.FieldDescription {
	return fieldsOf(adminColumns[cmd])
}

func fieldsOf(cols []adminCol) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, 0, len(cols))
	for _, c := range cols {
		size := int16(-1)
		switch c.oid {
		case int4OID:
			size = 4
		case int8OID:
			size = 8
		}
		out = append(out, pgproto3.FieldDescription{Name: []byte(c.name), DataTypeOID: c.oid, DataTypeSize: size, TypeModifier: -1})
	}
	return out
}

// Admin answers the admin statement cmd (router.AdminCommand's Name) with argument arg.
//
// Who may run what: superuserAdmin's statements are for superusers only (checked first,
// before anything is read); SHOW SHARDS and SHOW VERSION are for everyone; SHOW POOLS
// shows an ordinary role only its own pools. The SHOW statements read the current
// snapshot, the pools and the counters in the proxy; SHOW REPAIRS reads the metadata
// store over pgshard's connection; REPAIR SHARD runs the repairer (pgshard's connections,
// the client's user for the workers).
func (e *Env) Admin(ctx context.Context, cmd, arg string) error {
	// Security check: the superuser-only statements, before any argument is looked at.
	if detail, ok := superuserAdmin[cmd]; ok {
		if err := e.requireSuperuser(ctx, "permission denied to run "+cmd, detail); err != nil {
			return err
		}
	}
	switch cmd {
	case "SHOW NODES":
		return e.showNodes()
	case "SHOW SHARDS":
		return e.showShards(arg)
	case "SHOW PLACEMENTS":
		return e.showPlacements(arg)
	case "SHOW REPAIRS":
		return e.showRepairs(ctx)
	case "SHOW POOLS":
		return e.showPools(ctx)
	case "SHOW STATS":
		return e.showStats()
	case "SHOW VERSION":
		e.adminRows("SHOW", adminColumns[cmd], [][]string{{"pgshard " + e.Version}})
		return nil
	case "REPAIR SHARD":
		return e.repairShard(ctx, arg)
	case "SHOW TRANSACTIONS", "RECOVER TRANSACTIONS":
		return e.transactions(ctx, cmd)
	}
	return nil
}

// superuserAdmin are the admin statements for superusers only (PgBouncer keeps its whole
// console to admin_users and stats_users), with the DETAIL of their refusal. SHOW SHARDS
// and SHOW VERSION are for everyone (they tell what pg_class and version() tell); SHOW
// POOLS shows an ordinary role its own pools, without server addresses.
var superuserAdmin = map[string]string{
	"SHOW NODES":           "Only superusers may see the workers' addresses.",
	"SHOW PLACEMENTS":      "Only superusers may see the workers' addresses.",
	"SHOW REPAIRS":         "Only superusers may see the repairs and the workers' addresses.",
	"SHOW STATS":           "Only superusers may see the activity of every session.",
	"REPAIR SHARD":         "Only superusers may change placements.",
	"SHOW TRANSACTIONS":    "Only superusers may see the prepared transactions and the workers' addresses.",
	"RECOVER TRANSACTIONS": "Only superusers may finish prepared transactions.",
}

// adminRows sends a result set of text values (with its RowDescription, unless it answers
// an Execute: Describe gave that).
func (e *Env) adminRows(tag string, cols []adminCol, rows [][]string) {
	values := make([][][]byte, len(rows))
	for i, r := range rows {
		for _, v := range r {
			values[i] = append(values[i], []byte(v))
		}
	}
	e.Client.Rows(tag, fieldsOf(cols), values)
}

func (e *Env) showNodes() error {
	snap := e.Snapshots.Load()
	type counts struct{ finalized, inactive int }
	per := map[metadata.Node]*counts{}
	for _, n := range snap.Nodes {
		per[n] = &counts{}
	}
	nodes := append([]metadata.Node(nil), snap.Nodes...)
	for _, t := range snap.Tables() {
		for _, sh := range t.Shards {
			for _, p := range sh.Placements {
				c := per[p.Node]
				if c == nil {
					c = &counts{}
					per[p.Node] = c
					nodes = append(nodes, p.Node)
				}
				if p.State == metadata.StateFinalized {
					c.finalized++
				} else {
					c.inactive++
				}
			}
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Less(nodes[j]) })
	var rows [][]string
	for _, n := range nodes {
		c := per[n]
		registered := "no"
		for _, r := range snap.Nodes {
			if r == n {
				registered = "yes"
			}
		}
		rows = append(rows, []string{n.Name, strconv.Itoa(n.Port), registered, strconv.Itoa(c.finalized), strconv.Itoa(c.inactive)})
	}
	e.adminRows("SHOW", adminColumns["SHOW NODES"], rows)
	return nil
}

func (e *Env) showShards(table string) error {
	snap := e.Snapshots.Load()
	var rows [][]string
	found := table == ""
	for _, t := range snap.Tables() {
		if table != "" && !tableMatches(t, table) {
			continue
		}
		found = true
		for _, sh := range t.Shards {
			fin := len(sh.Finalized())
			rows = append(rows, []string{t.QualifiedName(), strconv.FormatInt(sh.ID, 10), strconv.Itoa(int(sh.Min)), strconv.Itoa(int(sh.Max)),
				strconv.Itoa(len(sh.Placements)), strconv.Itoa(fin), strconv.Itoa(len(sh.Placements) - fin)})
		}
	}
	if !found {
		return pgerr.New(pgerr.UndefinedTable, "distributed table %q does not exist", table)
	}
	e.adminRows("SHOW", adminColumns["SHOW SHARDS"], rows)
	return nil
}

// tableMatches compares a table with a name as a user writes it (table or schema.table;
// unquoted names fold to lower case).
func tableMatches(t *metadata.Table, name string) bool {
	var parts []string
	inq := false
	start := 0
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '"':
			inq = !inq
		case '.':
			if !inq {
				parts = append(parts, name[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, name[start:])
	for i, p := range parts {
		if len(p) >= 2 && p[0] == '"' && p[len(p)-1] == '"' {
			parts[i] = strings.ReplaceAll(p[1:len(p)-1], `""`, `"`)
		} else {
			parts[i] = strings.ToLower(p)
		}
	}
	switch len(parts) {
	case 1:
		return parts[0] == t.Name
	case 2:
		return parts[0] == t.Schema && parts[1] == t.Name
	}
	return false
}

func (e *Env) showPlacements(arg string) error {
	snap := e.Snapshots.Load()
	var want int64 = -1
	if arg != "" {
		id, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return pgerr.New(pgerr.InvalidTextRep, "invalid shard id %q", arg)
		}
		if snap.Shard(id) == nil {
			return pgerr.New(pgerr.UndefinedObject, "shard with ID %d does not exist", id)
		}
		want = id
	}
	var rows [][]string
	for _, t := range snap.Tables() {
		for _, sh := range t.Shards {
			if want >= 0 && sh.ID != want {
				continue
			}
			for _, p := range sh.Placements {
				rows = append(rows, []string{strconv.FormatInt(p.ID, 10), strconv.FormatInt(sh.ID, 10), t.QualifiedName(),
					p.Node.Name, strconv.Itoa(p.Node.Port), strconv.Itoa(int(p.State)), p.State.String()})
			}
		}
	}
	e.adminRows("SHOW", adminColumns["SHOW PLACEMENTS"], rows)
	return nil
}

// showPools lists the backend pools: all of them to a superuser; to anyone else, the
// pools of the session's own user, with host and port NULL (the workers' addresses are
// for superusers).
func (e *Env) showPools(ctx context.Context) error {
	su, err := e.superuser(ctx)
	if err != nil {
		return err
	}
	var rows [][][]byte
	stats := e.Pools.Stats()
	sort.Slice(stats, func(i, j int) bool { return stats[i].Key.String() < stats[j].Key.String() })
	for _, p := range stats {
		host, port := []byte(p.Key.Host), []byte(strconv.Itoa(p.Key.Port))
		if !su {
			if p.Key.User != e.Client.User() {
				continue
			}
			host, port = nil, nil
		}
		row := [][]byte{[]byte(p.Key.Database), []byte(p.Key.User), host, port}
		for _, v := range []string{strconv.Itoa(int(p.Acquired)), strconv.Itoa(int(p.Idle)), strconv.Itoa(int(p.Total)), strconv.Itoa(int(p.MaxConns)),
			strconv.FormatInt(p.Acquires, 10), strconv.FormatInt(p.WaitCount, 10), strconv.FormatInt(p.WaitTime.Microseconds(), 10), "transaction"} {
			row = append(row, []byte(v))
		}
		rows = append(rows, row)
	}
	e.Client.Rows("SHOW", fieldsOf(adminColumns["SHOW POOLS"]), rows)
	return nil
}

func (e *Env) showStats() error {
	st := e.Stats()
	q := st.Queries
	avg := int64(0)
	if q > 0 {
		avg = st.QueryTimeUs / q
	}
	row := []string{st.Database, strconv.FormatInt(st.Clients, 10), strconv.FormatInt(st.Xacts, 10),
		strconv.FormatInt(q, 10), strconv.FormatInt(st.Received, 10), strconv.FormatInt(st.Sent, 10),
		strconv.FormatInt(st.QueryTimeUs, 10), strconv.FormatInt(avg, 10), strconv.FormatInt(st.Errors, 10),
		strconv.FormatUint(st.PlanCacheHits, 10), strconv.FormatUint(st.PlanCacheMisses, 10)}
	e.adminRows("SHOW", adminColumns["SHOW STATS"], [][]string{row})
	return nil
}

// showRepairs lists running and recent repairs from the coordinator.
func (e *Env) showRepairs(ctx context.Context) error {
	rows, err := e.Store.Repairs(ctx, 100)
	if err != nil {
		return err
	}
	var out [][]string
	for _, r := range rows {
		finished := ""
		if !r.FinishedAt.IsZero() {
			finished = r.FinishedAt.UTC().Format("2006-01-02 15:04:05.000Z07")
		}
		out = append(out, []string{strconv.FormatInt(r.ID, 10), strconv.FormatInt(r.ShardID, 10), strconv.FormatInt(r.PlacementID, 10),
			r.Source.String(), r.Target.String(), r.State, strconv.FormatInt(r.RowsCopied, 10), strconv.FormatInt(r.BytesCopied, 10),
			fmt.Sprintf("%d%%", r.Progress()), r.Trigger, r.StartedAt.UTC().Format("2006-01-02 15:04:05.000Z07"), finished, r.Error})
	}
	e.adminRows("SHOW", adminColumns["SHOW REPAIRS"], out)
	return nil
}
