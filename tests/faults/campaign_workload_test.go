package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The campaign's tables: rows every client inserts with ids of its own (v counts the
// updates of the row), counters every client increments, and a table with one placement
// per shard.
const (
	campItems = "camp_items" // replication 2
	campCtr   = "camp_ctr"   // replication 2
	campSolo  = "camp_solo"  // replication 1
	campCtrN  = 40           // counters k = 1..campCtrN
)

// outcome is what a client can know of a write.
type outcome int

const (
	acked   outcome = iota // the client heard success: the write must be there
	failed                 // the client heard an error before any commit could happen: it must not be there
	unknown                // the connection was lost (or an error came) while it committed: there at most once
)

func (o outcome) String() string { return [...]string{"acked", "failed", "unknown"}[o] }

// classify maps a write's error to its outcome. commitPoint says whether the statement that
// failed was the one that commits (an autocommit write, COMMIT, or COPY): only there can a
// lost connection hide a commit. Any answer of the server other than a lost connection
// means the transaction did not commit (pgshard says so: an error means nothing is left).
func classify(err error, commitPoint bool) outcome {
	if err == nil {
		return acked
	}
	if !commitPoint {
		return failed
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return unknown
	}
	switch {
	case strings.HasPrefix(pe.Code, "08"), pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03":
		return unknown
	}
	return failed
}

// rowState is what a client knows of one of its rows.
type rowState struct {
	present    outcome // acked: there; failed: not there; unknown: maybe (the client leaves it alone)
	vMin, vMax int64   // v lies between them (acknowledged updates, plus those in doubt)
}

// ledger is everything the clients know, for the checker.
type ledger struct {
	mu     sync.Mutex
	rows   map[string]map[int64]*rowState // table -> id -> state
	ctrMin [campCtrN + 1]int64            // acknowledged increments per counter
	ctrMax [campCtrN + 1]int64            // plus increments in doubt
	groups [][]rowRef                     // rows inserted together in a block whose COMMIT was in doubt
	ops    map[string][3]int              // op kind -> count per outcome
	errs   map[string]int                 // error texts of failed and unknown ops (first line, counted)
	// failures counts the ops that were not acknowledged (the clients back off after one).
	failures int
}

type rowRef struct {
	table string
	id    int64
}

func newLedger() *ledger {
	l := &ledger{rows: map[string]map[int64]*rowState{}, ops: map[string][3]int{}, errs: map[string]int{}}
	for _, t := range []string{campItems, campSolo} {
		l.rows[t] = map[int64]*rowState{}
	}
	return l
}

// change is one effect of an operation, applied to the ledger with the op's outcome.
type change struct {
	insert, del, update bool
	ref                 rowRef
	ctr                 int // counter incremented (0: none)
}

// record applies the changes of an op with the given outcome.
func (l *ledger) record(kind string, o outcome, err error, changes []change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.ops[kind]
	n[o]++
	l.ops[kind] = n
	if o != acked {
		l.failures++
	}
	if err != nil {
		msg := err.Error()
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		if len(msg) > 160 {
			msg = msg[:160]
		}
		l.errs[o.String()+": "+msg]++
	}
	var group []rowRef
	for _, c := range changes {
		if c.ctr != 0 {
			switch o {
			case acked:
				l.ctrMin[c.ctr]++
				l.ctrMax[c.ctr]++
			case unknown:
				l.ctrMax[c.ctr]++
			}
			continue
		}
		rows := l.rows[c.ref.table]
		switch {
		case c.insert:
			switch o {
			case acked:
				rows[c.ref.id] = &rowState{present: acked}
			case failed:
				rows[c.ref.id] = &rowState{present: failed}
			case unknown:
				rows[c.ref.id] = &rowState{present: unknown}
				group = append(group, c.ref)
			}
		case c.del:
			switch o {
			case acked:
				rows[c.ref.id].present = failed
			case unknown:
				rows[c.ref.id].present = unknown
			}
		case c.update:
			switch o {
			case acked:
				rows[c.ref.id].vMin++
				rows[c.ref.id].vMax++
			case unknown:
				rows[c.ref.id].vMax++
			}
		}
	}
	if len(group) > 1 {
		l.groups = append(l.groups, group)
	}
}

// client is one session of the workload; it reconnects when its connection is lost.
type client struct {
	id   int
	url  string
	rng  *rand.Rand
	l    *ledger
	conn *pgx.Conn
	seq  int64
	mine map[string][]int64 // rows of this client that are certainly there, per table
}

// nextID returns a new id, unique over every client.
func (c *client) nextID() int64 {
	c.seq++
	return int64(c.id+1)*1_000_000_000 + c.seq
}

// run works until ctx is done.
func (c *client) run(ctx context.Context) {
	defer func() {
		if c.conn != nil {
			c.conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if c.conn == nil || c.conn.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			conn, err := pgx.Connect(cctx, c.url)
			cancel()
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			c.conn = conn
		}
		if !c.step() {
			// Back off after a failure: a coordinator that is down fails every
			// statement at once, and spinning clients would only measure that.
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(20+c.rng.Intn(80)) * time.Millisecond):
			}
		}
	}
}

// step runs one random operation and tells whether it succeeded. Its statements get a
// deadline of their own, not the run's context, so that the end of the run does not turn a
// write into one in doubt.
func (c *client) step() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.l.mu.Lock()
	before := c.l.failures
	c.l.mu.Unlock()
	c.op(ctx)
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	return c.l.failures == before
}

// op runs one random operation.
func (c *client) op(ctx context.Context) {
	switch r := c.rng.Intn(100); {
	case r < 15:
		c.insert(ctx, campItems, 1)
	case r < 25:
		c.insert(ctx, campItems, 2+c.rng.Intn(4))
	case r < 37:
		c.update(ctx, campItems)
	case r < 43:
		c.del(ctx)
	case r < 55:
		c.increment(ctx, 1)
	case r < 62:
		c.increment(ctx, 2+c.rng.Intn(3))
	case r < 68:
		c.copyRows(ctx)
	case r < 85:
		c.block(ctx, c.rng.Intn(10) == 0)
	case r < 92:
		c.insert(ctx, campSolo, 1+c.rng.Intn(2))
	default:
		c.update(ctx, campSolo)
	}
}

// exec runs one autocommit write and records it.
func (c *client) exec(ctx context.Context, kind, sql string, changes []change) outcome {
	_, err := c.conn.Exec(ctx, sql)
	o := classify(err, true)
	c.l.record(kind, o, err, changes)
	return o
}

func (c *client) insert(ctx context.Context, table string, n int) {
	var vals []string
	var changes []change
	for i := 0; i < n; i++ {
		id := c.nextID()
		vals = append(vals, fmt.Sprintf("(%d, %d, 0)", id, c.id))
		changes = append(changes, change{insert: true, ref: rowRef{table, id}})
	}
	kind := "insert " + table
	if n > 1 {
		kind += " multi-row"
	}
	if c.exec(ctx, kind, fmt.Sprintf("INSERT INTO %s (id, cl, v) VALUES %s", table, strings.Join(vals, ", ")), changes) == acked {
		for _, ch := range changes {
			c.mine[table] = append(c.mine[table], ch.ref.id)
		}
	}
}

// pick returns one of the client's certain rows of table (0 if none).
func (c *client) pick(table string) (int64, int) {
	ids := c.mine[table]
	if len(ids) == 0 {
		return 0, -1
	}
	i := c.rng.Intn(len(ids))
	return ids[i], i
}

// forget drops a row whose state the client no longer knows for certain.
func (c *client) forget(table string, i int) {
	ids := c.mine[table]
	ids[i] = ids[len(ids)-1]
	c.mine[table] = ids[:len(ids)-1]
}

func (c *client) update(ctx context.Context, table string) {
	id, i := c.pick(table)
	if i < 0 {
		c.insert(ctx, table, 1)
		return
	}
	o := c.exec(ctx, "update "+table, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = %d", table, id), []change{{update: true, ref: rowRef{table, id}}})
	if o == unknown {
		c.forget(table, i)
	}
}

func (c *client) del(ctx context.Context) {
	id, i := c.pick(campItems)
	if i < 0 {
		return
	}
	o := c.exec(ctx, "delete", fmt.Sprintf("DELETE FROM %s WHERE id = %d", campItems, id), []change{{del: true, ref: rowRef{campItems, id}}})
	if o != failed {
		c.forget(campItems, i)
	}
}

// increment adds one to n distinct counters in one statement (several shards when n > 1).
func (c *client) increment(ctx context.Context, n int) {
	ks := c.rng.Perm(campCtrN)[:n]
	var list []string
	var changes []change
	for _, k := range ks {
		list = append(list, fmt.Sprint(k+1))
		changes = append(changes, change{ctr: k + 1})
	}
	kind := "increment"
	if n > 1 {
		kind += " multi-shard"
	}
	c.exec(ctx, kind, fmt.Sprintf("UPDATE %s SET n = n + 1 WHERE k IN (%s)", campCtr, strings.Join(list, ", ")), changes)
}

// copyRows inserts rows with COPY FROM STDIN.
func (c *client) copyRows(ctx context.Context) {
	var b strings.Builder
	var changes []change
	for i := 0; i < 2+c.rng.Intn(5); i++ {
		id := c.nextID()
		fmt.Fprintf(&b, "%d\t%d\t0\n", id, c.id)
		changes = append(changes, change{insert: true, ref: rowRef{campItems, id}})
	}
	_, err := c.conn.PgConn().CopyFrom(ctx, strings.NewReader(b.String()), "COPY "+campItems+" (id, cl, v) FROM STDIN")
	o := classify(err, true)
	c.l.record("copy", o, err, changes)
	if err != nil && c.conn.PgConn().IsClosed() {
		c.conn.Close(context.Background())
	}
	if o == acked {
		for _, ch := range changes {
			c.mine[campItems] = append(c.mine[campItems], ch.ref.id)
		}
	}
}

// block runs a transaction block over several shards and workers: rows inserted into both
// replicated and unreplicated tables, one of the client's rows updated, counters
// incremented; it ends with COMMIT, or with ROLLBACK when rollback is set.
func (c *client) block(ctx context.Context, rollback bool) {
	var stmts []string
	var changes []change
	var inserted []int64
	for i := 0; i < 1+c.rng.Intn(3); i++ {
		id := c.nextID()
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (id, cl, v) VALUES (%d, %d, 0)", campItems, id, c.id))
		changes = append(changes, change{insert: true, ref: rowRef{campItems, id}})
		inserted = append(inserted, id)
	}
	if c.rng.Intn(2) == 0 {
		id := c.nextID()
		stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (id, cl, v) VALUES (%d, %d, 0)", campSolo, id, c.id))
		changes = append(changes, change{insert: true, ref: rowRef{campSolo, id}})
	}
	upd, ui := c.pick(campItems)
	if ui >= 0 {
		stmts = append(stmts, fmt.Sprintf("UPDATE %s SET v = v + 1 WHERE id = %d", campItems, upd))
		changes = append(changes, change{update: true, ref: rowRef{campItems, upd}})
	}
	ks := c.rng.Perm(campCtrN)[:1+c.rng.Intn(2)]
	sort.Ints(ks) // one order for every client: blocks do not deadlock each other on counters
	for _, k := range ks {
		stmts = append(stmts, fmt.Sprintf("UPDATE %s SET n = n + 1 WHERE k = %d", campCtr, k+1))
		changes = append(changes, change{ctr: k + 1})
	}
	kind := "block"
	if rollback {
		kind = "block rollback"
	}
	if _, err := c.conn.Exec(ctx, "BEGIN"); err != nil {
		c.l.record(kind, failed, err, changes)
		return
	}
	for _, s := range stmts {
		if _, err := c.conn.Exec(ctx, s); err != nil {
			c.l.record(kind, failed, err, changes)
			c.conn.Exec(ctx, "ROLLBACK")
			return
		}
	}
	end := "COMMIT"
	if rollback {
		end = "ROLLBACK"
	}
	tag, err := c.conn.Exec(ctx, end)
	o := classify(err, !rollback)
	if rollback && err == nil {
		o = failed
	}
	if err == nil && !rollback && tag.String() != "COMMIT" {
		// COMMIT of a failed block answers ROLLBACK.
		err = fmt.Errorf("COMMIT answered %q", tag.String())
		o = failed
	}
	c.l.record(kind, o, err, changes)
	switch o {
	case acked:
		c.mine[campItems] = append(c.mine[campItems], inserted...)
	case unknown:
		if ui >= 0 {
			c.forget(campItems, ui)
		}
	}
}
