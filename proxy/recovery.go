package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
)

// Transaction recovery: the prepared parts of two-phase commits (twophase.go) that no
// session finished — the proxy died between PREPARE and COMMIT PREPARED, a worker was
// down or a connection was lost at COMMIT PREPARED, the coordinator connection was lost
// while the decision committed — are finished here, from the decision the coordinator
// holds. A pass, for each worker (only prepared transactions of the coordinator's
// database, with pgshard's gid prefix):
//
//   - a part whose coordinator transaction (the xid in its gid) is still in progress is
//     left alone: its session is deciding;
//   - else, a part with a commit record is committed (COMMIT PREPARED), one without is
//     rolled back (ROLLBACK PREPARED): the record was written in the coordinator
//     transaction, so it exists exactly when that transaction committed. Both are read
//     in one snapshot (store.RecoveryPass.Decide): "in progress" is what that snapshot
//     says, not txid_status, which says committed a moment before a new snapshot sees
//     the record;
//   - then the records of the worker's parts that are no longer prepared there are
//     deleted. A worker that cannot be reached keeps its records, for its return.
//
// A pass runs at the server's start, every RecoveryInterval, and on demand (RECOVER
// TRANSACTIONS). Passes of several proxies are serialized on the coordinator (a lock on
// the records' table); a part another proxy's pass or its session finished meanwhile
// ("does not exist") is simply done. What passes did is kept, bounded, for SHOW
// TRANSACTIONS.

// DefaultRecoveryInterval is the default of Config.RecoveryInterval.
const DefaultRecoveryInterval = 5 * time.Second

// gidPrefix starts the gid of every prepared part pgshard makes.
const gidPrefix = "pgshard_"

// recoveryLogSize bounds the recovery actions kept for SHOW TRANSACTIONS.
const recoveryLogSize = 200

// recoveryAction is one thing a recovery pass did.
type recoveryAction struct {
	At     time.Time
	Node   metadata.Node
	GID    string
	Action string // committed, rolled back, record deleted, failed: ...
}

// recoverer runs recovery passes for a server.
type recoverer struct {
	st    *store.Store
	cache *metadata.Cache
	// conn opens a connection to a worker as pgshard's own role (which must be the
	// sessions' roles' superuser to finish their prepared transactions).
	conn func(ctx context.Context, n metadata.Node) (*backend.Conn, func(), error)
	log  *slog.Logger

	pass sync.Mutex // one pass at a time in this proxy
	mu   sync.Mutex
	done []recoveryAction // ring, oldest first
}

// note records an action (and logs it).
func (r *recoverer) note(n metadata.Node, gid, action string) {
	r.log.Info("transaction recovery", "node", n.String(), "gid", gid, "action", action)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = append(r.done, recoveryAction{At: time.Now(), Node: n, GID: gid, Action: action})
	if len(r.done) > recoveryLogSize {
		r.done = append(r.done[:0], r.done[len(r.done)-recoveryLogSize:]...)
	}
}

// actions returns the actions kept, oldest first.
func (r *recoverer) actions() []recoveryAction {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recoveryAction(nil), r.done...)
}

// run runs a pass now and then every interval until ctx is done.
func (r *recoverer) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, recoveryPassTimeout)
		if _, err := r.runPass(pctx, false); err != nil && ctx.Err() == nil {
			r.log.Warn("transaction recovery pass failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// passResult counts what one pass did.
type passResult struct {
	committed, rolledBack, deleted, pending int
	skipped                                 bool // another proxy's pass held the lock
}

// runPass runs one pass. wait makes it wait (a few seconds) for another proxy's pass
// rather than skip.
func (r *recoverer) runPass(ctx context.Context, wait bool) (passResult, error) {
	r.pass.Lock()
	defer r.pass.Unlock()
	var res passResult
	var pass *store.RecoveryPass
	for i := 0; ; i++ {
		p, ok, err := r.st.BeginRecovery(ctx)
		if err != nil {
			return res, err
		}
		if ok {
			pass = p
			break
		}
		if !wait || i >= 50 {
			res.skipped = true
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, n := range r.cache.Load().Nodes {
		if err := r.recoverNode(ctx, pass, n, &res); err != nil {
			if errors.Is(err, errPassBroken) {
				pass.Abort(ctx)
				return res, err
			}
			r.log.Warn("transaction recovery cannot reach a worker; its prepared transactions wait for it", "node", n.String(), "err", err)
		}
	}
	return res, pass.End(ctx)
}

// errPassBroken wraps coordinator errors, which end the pass (worker errors only skip
// the worker).
var errPassBroken = errors.New("transaction recovery: coordinator")

// preparedGIDs lists pgshard's prepared transactions of the database on c.
func preparedGIDs(ctx context.Context, c *backend.Conn) (map[string]time.Time, error) {
	rows, err := c.ExecRows(ctx, "SELECT gid, extract(epoch FROM prepared)::pg_catalog.float8 FROM pg_catalog.pg_prepared_xacts WHERE database OPERATOR(pg_catalog.=) pg_catalog.current_database() AND gid OPERATOR(pg_catalog.~) '^pgshard_[0-9]+_[0-9]+$'")
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(rows))
	for _, r := range rows {
		secs, _ := strconv.ParseFloat(string(r[1]), 64)
		out[string(r[0])] = time.Unix(0, int64(secs*1e9))
	}
	return out, nil
}

// gidXid is the coordinator transaction id in a gid (0 if none).
func gidXid(gid string) int64 {
	rest, ok := strings.CutPrefix(gid, gidPrefix)
	if !ok {
		return 0
	}
	x, _, _ := strings.Cut(rest, "_")
	n, _ := strconv.ParseInt(x, 10, 64)
	return n
}

// recoverNode finishes the prepared parts on one worker and deletes the records of
// those no longer prepared there.
func (r *recoverer) recoverNode(ctx context.Context, pass *store.RecoveryPass, n metadata.Node, res *passResult) error {
	c, release, err := r.conn(ctx, n)
	if err != nil {
		return err
	}
	defer release()
	prepared, err := preparedGIDs(ctx, c)
	if err != nil {
		return err
	}
	if len(prepared) > 0 {
		gids := make([]string, 0, len(prepared))
		for g := range prepared {
			gids = append(gids, g)
		}
		sort.Strings(gids)
		xids := make([]int64, len(gids))
		for i, g := range gids {
			xids[i] = gidXid(g)
		}
		// In one snapshot: whether the coordinator transaction is over, and whether it
		// left the part's commit record (store.RecoveryPass.Decide).
		decisions, err := pass.Decide(ctx, n, gids, xids)
		if err != nil {
			return fmt.Errorf("%w: %w", errPassBroken, err)
		}
		var finished []string
		recorded := map[string]bool{}
		for _, g := range gids {
			switch decisions[g] {
			case store.DecisionPending:
				res.pending++
				continue
			case store.DecisionCommit:
				recorded[g] = true
			}
			finished = append(finished, g)
		}
		for _, g := range finished {
			cmd, action := "ROLLBACK PREPARED ", "rolled back"
			if recorded[g] {
				cmd, action = "COMMIT PREPARED ", "committed"
			}
			err := c.Exec(ctx, cmd+router.QuoteLiteral(g))
			switch {
			case err == nil:
				if recorded[g] {
					res.committed++
				} else {
					res.rolledBack++
				}
				r.note(n, g, action)
			case notPrepared(err):
				// Its session (or another pass) finished it meanwhile.
			default:
				r.note(n, g, "failed: "+err.Error())
				if backend.Unavailable(err) {
					return err
				}
			}
		}
	}
	// Records of parts no longer prepared: read the records, then what is prepared now
	// (a record seen was committed after its part was prepared, so a part missing from
	// the second list is finished).
	recs, err := pass.NodeRecords(ctx, n)
	if err != nil || len(recs) == 0 {
		if err != nil {
			return fmt.Errorf("%w: %w", errPassBroken, err)
		}
		return nil
	}
	now, err := preparedGIDs(ctx, c)
	if err != nil {
		return err
	}
	var gone []string
	for _, g := range recs {
		if _, ok := now[g]; !ok {
			gone = append(gone, g)
		}
	}
	if err := pass.Delete(ctx, gone); err != nil {
		return fmt.Errorf("%w: %w", errPassBroken, err)
	}
	res.deleted += len(gone)
	return nil
}

// inDoubt is a prepared part found on a worker, for SHOW TRANSACTIONS.
type inDoubt struct {
	node     metadata.Node
	gid      string
	prepared time.Time
}

// listInDoubt lists pgshard's prepared transactions on every worker it can reach (an
// unreachable one is named with an empty gid).
func (r *recoverer) listInDoubt(ctx context.Context) []inDoubt {
	var out []inDoubt
	for _, n := range r.cache.Load().Nodes {
		c, release, err := r.conn(ctx, n)
		if err != nil {
			out = append(out, inDoubt{node: n})
			continue
		}
		gids, err := preparedGIDs(ctx, c)
		release()
		if err != nil {
			out = append(out, inDoubt{node: n})
			continue
		}
		for g, at := range gids {
			out = append(out, inDoubt{node: n, gid: g, prepared: at})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].node != out[j].node {
			return out[i].node.Less(out[j].node)
		}
		return out[i].gid < out[j].gid
	})
	return out
}

// recoveryConnTimeout bounds connecting to a worker for recovery, recoveryPassTimeout a
// background pass.
const (
	recoveryConnTimeout = 10 * time.Second
	recoveryPassTimeout = 2 * time.Minute
)

// newRecoverer is the server's recoverer: it reaches workers as pgshard's own role, over
// connections of its own (not the pools', which sessions may hold every one of), one per
// worker and pass.
func newRecoverer(s *Server, user string) *recoverer {
	return &recoverer{
		st: s.store, cache: s.cache, log: s.log,
		conn: func(ctx context.Context, n metadata.Node) (*backend.Conn, func(), error) {
			cfg := s.pools.ConnConfig(s.workerKey(n, user))
			cfg.ConnectTimeout = recoveryConnTimeout
			if cfg.RuntimeParams == nil {
				cfg.RuntimeParams = map[string]string{}
			}
			cfg.RuntimeParams["application_name"] = "pgshard recovery"
			cfg.RuntimeParams["search_path"] = store.SearchPath
			c, err := backend.Dial(ctx, cfg)
			if err != nil {
				return nil, nil, err
			}
			return c, c.Terminate, nil
		},
	}
}

// recoveryAdmin is the server's recovery as control.Transactions.
type recoveryAdmin struct{ r *recoverer }

// Show lists the prepared parts on every worker with what recovery will do with each,
// then what recovery did recently (newest first).
func (a recoveryAdmin) Show(ctx context.Context) ([][]string, error) {
	r := a.r
	found := r.listInDoubt(ctx)
	recs, err := r.st.TxRecords(ctx, 0)
	if err != nil {
		return nil, err
	}
	// A record is its node's part's (store.RecoveryPass.Decide).
	type part struct {
		node metadata.Node
		gid  string
	}
	recorded := map[part]bool{}
	for _, rec := range recs {
		recorded[part{rec.Node, rec.GID}] = true
	}
	var xids []int64
	for _, d := range found {
		if d.gid != "" {
			xids = append(xids, gidXid(d.gid))
		}
	}
	statuses, err := r.st.TxStatuses(ctx, xids)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var rows [][]string
	for _, d := range found {
		port := strconv.Itoa(d.node.Port)
		if d.gid == "" {
			rows = append(rows, []string{d.node.Name, port, "", "unreachable", "", "the worker cannot be reached: its prepared transactions (if any) wait for it"})
			continue
		}
		detail := "no commit record: recovery rolls it back"
		switch st := statuses[gidXid(d.gid)]; {
		case st == "in progress":
			detail = "its coordinator transaction is in progress: its session is deciding"
		case recorded[part{d.node, d.gid}]:
			detail = "commit record: recovery commits it"
		}
		rows = append(rows, []string{d.node.Name, port, d.gid, "prepared", ageText(now.Sub(d.prepared)), detail})
	}
	acts := r.actions()
	for i := len(acts) - 1; i >= 0; i-- {
		act := acts[i]
		rows = append(rows, []string{act.Node.Name, strconv.Itoa(act.Node.Port), act.GID, "recovered", ageText(now.Sub(act.At)), act.Action})
	}
	return rows, nil
}

// ageText is a duration as seconds with one decimal ("2.5 s").
func ageText(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}

// Recover runs a pass now, waiting for another proxy's.
func (a recoveryAdmin) Recover(ctx context.Context) (committed, rolledBack, deleted, pending int, err error) {
	res, err := a.r.runPass(ctx, true)
	if err == nil && res.skipped {
		err = errors.New("another proxy's transaction recovery pass is running: try again")
	}
	return res.committed, res.rolledBack, res.deleted, res.pending, err
}

// exec runs sql on node as pgshard's own role, on a connection of its own.
func (r *recoverer) exec(ctx context.Context, n metadata.Node, sql string) error {
	c, release, err := r.conn(ctx, n)
	if err != nil {
		return err
	}
	defer release()
	return c.Exec(ctx, sql)
}
