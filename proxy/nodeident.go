package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
	"github.com/pgshard/pgshard/proxy/backend"
)

// A worker whose data went back in time — restored from an older copy of its data
// directory, initialized anew, or failed over to a standby that had not received
// everything — still answers, but its placements may lack acknowledged writes: reading
// them returns stale rows, and a write that finds them different from their siblings
// would blame the good copy. The proxy therefore checks each worker's identity — its
// system identifier, timeline and WAL position — against what was last seen (the
// coordinator's node_identity table, and this proxy's memory):
//
//   - on every new pool connection to the worker, before the connection's first use
//     (backend.Config.OnConnect). A worker that restarted has closed every connection, so
//     its first statement afterwards comes through here. When the worker's postmaster is
//     the one this proxy already verified and its WAL position did not go back, nothing
//     but the one identity query runs; otherwise the coordinator is asked.
//   - periodically (Config.NodeCheckInterval), on a pool connection, which advances the recorded
//     WAL position so that a restore to a copy older than that position is caught.
//   - before a repair copies from a placement (the repair's source must be trusted).
//
// A node whose data went back has every finalized placement marked inactive, durably,
// before the connection is used; the statement that made the connection fails over to
// another placement (reads) or leaves the node out (writes, which mark it as they do an
// unreachable one), and repair brings the placements back. The node's new identity is
// accepted then. A placement that is the last finalized one of its shard cannot be
// marked: the node is then held — every connection to it is refused with an error saying
// why, and repair refuses it as a source — until an operator deletes its node_identity
// row, which accepts its data as it is where it is the shard's only copy. Where the shard
// has other placements (all inactive: they missed writes), the stale copy must not become
// the one the shard is served and repaired from: the DELETE itself (a trigger,
// nodeident.sql) finalizes another placement and marks the node's inactive, and a proxy
// that records the node anew with an older snapshot reloads it (reloadAccepted).
//
// What is not caught: a copy taken after the last recorded WAL position (recorded at
// most about Config.NodeCheckInterval before the worker stopped), which lacks only the
// writes acknowledged since. A worker restarted with its own data shows the same
// identity and a WAL position that only grew: nothing is marked.

// defaultNodeCheckInterval is how often the proxy reads each worker's WAL position and
// records it, unless Config.NodeCheckInterval says otherwise.
const defaultNodeCheckInterval = time.Second

// identityQuery reads a worker's identity: system identifier, timeline, WAL position
// and the postmaster's start time. Every function it uses may be run by any role, and
// every name is qualified (it runs in the sessions of client roles).
const identityQuery = `SELECT s.system_identifier,
	CASE WHEN pg_catalog.pg_is_in_recovery() THEN c.timeline_id::pg_catalog.int8
	     ELSE pg_catalog.concat('x', pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::pg_catalog.bit(32)::pg_catalog.int8 END,
	COALESCE(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
	                         ELSE pg_catalog.pg_current_wal_lsn() END, c.redo_lsn)::pg_catalog.text,
	pg_catalog.date_part('epoch', pg_catalog.pg_postmaster_start_time())::pg_catalog.text
	FROM pg_catalog.pg_control_system() s, pg_catalog.pg_control_checkpoint() c`

// nodeIdents is the proxy's memory of its workers' identities.
type nodeIdents struct {
	mu    sync.Mutex
	nodes map[metadata.Node]*nodeIdent
}

// nodeIdent is what the proxy verified of one worker. mu serializes the checks of the
// node.
type nodeIdent struct {
	mu       sync.Mutex
	known    bool
	id       store.NodeIdentity // highest seen, for the verified postmaster
	start    string             // the verified postmaster's start time
	recorded uint64             // the WAL position last recorded on the coordinator
	held     string             // why the node is held ("" when it is not)
	// resetAt is when this proxy last learned that the node's placements were marked
	// inactive because its data went back (zero: never).
	resetAt time.Time
	// resetGen is the node's highest ResetGeneration this proxy knows of.
	resetGen int64
	// conn is the proxy's own connection for checkNode.
	conn *backend.Conn
}

// of returns the state of node n.
func (ni *nodeIdents) of(n metadata.Node) *nodeIdent {
	ni.mu.Lock()
	defer ni.mu.Unlock()
	if ni.nodes == nil {
		ni.nodes = map[metadata.Node]*nodeIdent{}
	}
	st := ni.nodes[n]
	if st == nil {
		st = &nodeIdent{}
		ni.nodes[n] = st
	}
	return st
}

// readIdentity runs identityQuery on c.
func readIdentity(ctx context.Context, c *backend.Conn) (store.NodeIdentity, string, error) {
	rows, err := c.ExecRows(ctx, identityQuery)
	if err != nil {
		return store.NodeIdentity{}, "", err
	}
	if len(rows) != 1 || len(rows[0]) != 4 {
		return store.NodeIdentity{}, "", fmt.Errorf("proxy: identity query returned %d rows", len(rows))
	}
	r := rows[0]
	var id store.NodeIdentity
	if id.SystemID, err = strconv.ParseInt(string(r[0]), 10, 64); err != nil {
		return id, "", fmt.Errorf("proxy: system identifier: %w", err)
	}
	if id.Timeline, err = strconv.ParseInt(string(r[1]), 10, 64); err != nil {
		return id, "", fmt.Errorf("proxy: timeline: %w", err)
	}
	if id.LSN, err = store.ParseLSN(string(r[2])); err != nil {
		return id, "", err
	}
	return id, string(r[3]), nil
}

// workerNode returns the registered worker a pool key reaches, if any.
func (s *Server) workerNode(k backend.Key) (metadata.Node, bool) {
	for _, n := range s.cache.Load().Nodes {
		if n.Name == k.Host && n.Port == k.Port {
			return n, true
		}
	}
	return metadata.Node{}, false
}

// checkNewConn is backend.Config.OnConnect: it verifies a worker's identity on a new
// connection before the connection is used.
func (s *Server) checkNewConn(ctx context.Context, k backend.Key, c *backend.Conn) error {
	n, ok := s.workerNode(k)
	if !ok {
		return nil // the coordinator, or a node no longer registered
	}
	// The pool may make the connection in the background, without the statement's
	// deadline: bound the check.
	ctx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	id, start, err := readIdentity(ctx, c)
	var pe *pgerr.Error
	switch {
	case err == nil:
		return s.verifyNode(ctx, n, id, start, identityOn(c), false)
	case errors.As(err, &pe) && !backend.Unavailable(err):
		// The worker answered the identity query with an error: say so, rather than
		// take the worker for unreachable.
		return pgerr.Wrap(err, pgerr.InternalError, "could not check the identity of worker %s: %s", fmtNode(n), pe.Message)
	default:
		return fmt.Errorf("proxy: read the identity of %s: %w", n, err)
	}
}

// verifyNode checks what node n says about itself (on a connection to the postmaster that
// started at start) against what was last seen. record asks that a WAL position beyond
// the recorded one be recorded. It returns nil when the node may be used; an
// *backend.UnavailableError when its data went back and its placements were just marked
// inactive (the caller's statement was routed before that, and must fail over); a
// *pgerr.Error when the node is held.
func (s *Server) verifyNode(ctx context.Context, n metadata.Node, id store.NodeIdentity, start string, read identityReader, record bool) error {
	st := s.idents.of(n)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.verifyLocked(ctx, st, n, id, start, read, record); err != nil {
		return err
	}
	if !record && !st.resetAt.IsZero() && time.Since(st.resetAt) < resetQuarantine && !hasFinalized(s.cache.Load(), n) {
		return &backend.UnavailableError{Addr: n.Addr(), Err: errors.New("the node's data went back in time; its placements are inactive until repaired")}
	}
	return nil
}

// identityTimeout bounds the identity check of a new connection (the worker's query and
// the coordinator's).
const identityTimeout = 15 * time.Second

// resetQuarantine is how long after a node's placements were marked inactive because its
// data went back new session connections to it are refused while none of its placements
// is finalized: a statement planned before the marks (a multi-shard read that met the
// node first on another shard) must not reach the node's other stale placements. The
// refusal makes such a statement fail over to another placement.
const resetQuarantine = 30 * time.Second

// hasFinalized reports whether node n holds a finalized placement in snap.
func hasFinalized(snap *metadata.Snapshot, n metadata.Node) bool {
	for _, t := range snap.Tables() {
		for _, sh := range t.Shards {
			for _, p := range sh.Placements {
				if p.Node == n && p.State == metadata.StateFinalized {
					return true
				}
			}
		}
	}
	return false
}

// identityReader reads a node's identity again, as readIdentity does.
type identityReader func(context.Context) (store.NodeIdentity, string, error)

// identityOn reads the identity on connection c.
func identityOn(c *backend.Conn) identityReader {
	return func(ctx context.Context) (store.NodeIdentity, string, error) { return readIdentity(ctx, c) }
}

// verifyLocked is verifyNode with st.mu held. id and start were read before; when the
// coordinator is asked, read reads them again under the record's lock
// (store.CheckNodeIdentity).
func (s *Server) verifyLocked(ctx context.Context, st *nodeIdent, n metadata.Node, id store.NodeIdentity, start string, read identityReader, record bool) error {
	if st.known && st.held == "" && start == st.start && store.WentBack(st.id, id) == "" {
		st.id.Timeline, st.id.LSN = max(st.id.Timeline, id.Timeline), max(st.id.LSN, id.LSN)
		if !record || st.id.LSN <= st.recorded {
			return nil
		}
	}
	rec, id, back, err := s.store.CheckNodeIdentity(ctx, n, func(ctx context.Context) (store.NodeIdentity, error) {
		var err error
		id, start, err = read(ctx)
		return id, err
	})
	if err != nil {
		return fmt.Errorf("proxy: could not check the identity of %s: %w", n, err)
	}
	if back == "" && !rec.Held {
		known := st.known
		st.known, st.id, st.start, st.recorded, st.held = true, id, start, max(id.LSN, rec.LSN), ""
		if rec.ResetGeneration > st.resetGen {
			// Another proxy marked the node's placements: statements this proxy planned
			// before must not reach them (see resetQuarantine).
			st.resetGen = rec.ResetGeneration
			if known {
				st.resetAt = time.Now()
			}
		}
		if rec.ResetGeneration > s.cache.Load().Generation {
			// ... nor its statements to come.
			if _, err := s.store.Reload(ctx, s.cache); err != nil {
				return fmt.Errorf("proxy: reload metadata after %s went back: %w", n, err)
			}
			st.resetAt = time.Now()
			return &backend.UnavailableError{Addr: n.Addr(), Err: errors.New("the node's data went back in time; its placements were marked inactive")}
		}
		if rec.New && rec.Generation > s.cache.Load().Generation {
			return s.reloadAccepted(ctx, st, n)
		}
		return nil
	}
	if back == "" {
		back = rec.WentBack
	}
	return s.nodeWentBack(ctx, st, n, id, start, back)
}

// reloadAccepted reloads the metadata when a node is recorded anew while this proxy's
// snapshot is older than the record: an operator who deleted a held node's row may have
// had its stale placements of replicated shards marked inactive in the same transaction
// (nodeident.sql, accept_held_node). When one of the node's placements that this proxy
// took for finalized no longer is, the statement that made the connection was routed
// with the old snapshot: it must fail over. Called with st.mu held.
func (s *Server) reloadAccepted(ctx context.Context, st *nodeIdent, n metadata.Node) error {
	before := s.cache.Load()
	snap, err := s.store.Reload(ctx, s.cache)
	if err != nil {
		return fmt.Errorf("proxy: reload metadata after %s was recorded anew: %w", n, err)
	}
	if !lostFinalized(before, snap, n) {
		return nil
	}
	st.resetAt = time.Now()
	return &backend.UnavailableError{Addr: n.Addr(), Err: errors.New("the node's data was accepted and its stale placements marked inactive")}
}

// lostFinalized reports whether a placement on node n that is finalized in before is not
// in after.
func lostFinalized(before, after *metadata.Snapshot, n metadata.Node) bool {
	now := map[int64]bool{}
	for _, t := range after.Tables() {
		for _, sh := range t.Shards {
			for _, p := range sh.Placements {
				if p.Node == n && p.State == metadata.StateFinalized {
					now[p.ID] = true
				}
			}
		}
	}
	for _, t := range before.Tables() {
		for _, sh := range t.Shards {
			for _, p := range sh.Placements {
				if p.Node == n && p.State == metadata.StateFinalized && !now[p.ID] {
					return true
				}
			}
		}
	}
	return false
}

// hasInactiveSibling reports whether shard sh has an inactive placement on a node other
// than n: one that deleting a held n's record finalizes instead of n's stale copy.
func hasInactiveSibling(sh *metadata.Shard, n metadata.Node) bool {
	for _, p := range sh.Placements {
		if p.Node != n && p.State == metadata.StateInactive {
			return true
		}
	}
	return false
}

// nodeWentBack handles a node whose data went back: it marks every finalized placement
// on it inactive (one by one, so that the last finalized placement of a shard, which is
// never marked, does not keep the others), then accepts the node's new identity, or holds
// the node if some placement could not be marked. Called with st.mu held.
func (s *Server) nodeWentBack(ctx context.Context, st *nodeIdent, n metadata.Node, id store.NodeIdentity, start, why string) error {
	if st.held == "" {
		s.log.Error("worker data went back in time: its placements may lack acknowledged writes", "node", n.String(), "why", why)
	}
	snap, err := s.store.Reload(ctx, s.cache)
	if err != nil {
		return fmt.Errorf("proxy: reload metadata to mark the placements of %s: %w", n, err)
	}
	var last, copied []int64 // shards whose last finalized placement is n's; those with other placements
	for _, t := range snap.Tables() {
		for _, sh := range t.Shards {
			for _, p := range sh.Placements {
				if p.Node != n || p.State != metadata.StateFinalized {
					continue
				}
				err := s.store.ChangePlacementStates(ctx, s.cache, map[int64]metadata.ShardState{p.ID: metadata.StateInactive})
				var lp *store.LastPlacementError
				switch {
				case errors.As(err, &lp):
					last = append(last, sh.ID)
					if hasInactiveSibling(sh, n) {
						copied = append(copied, sh.ID)
					}
				case err != nil:
					return fmt.Errorf("proxy: mark the placements of %s inactive: %w", n, err)
				default:
					s.log.Warn("placement marked inactive: its worker's data went back in time", "placement", p.ID, "shard", sh.ID, "node", n.String())
				}
			}
		}
	}
	held := len(last) > 0
	gen := s.cache.Load().Generation
	if err := s.store.ResolveNodeIdentity(ctx, n, id, held, why, gen); err != nil {
		return err
	}
	if held {
		if st.held == "" {
			s.log.Error("worker held: its data went back in time and it has the last finalized placement of shards, which are neither read, written nor repaired from until an operator decides",
				"node", n.String(), "why", why, "shards", last)
		}
		st.known, st.held = false, why
		detail := fmt.Sprintf("It holds the last finalized placement of shards %v, which may lack acknowledged writes.", last)
		if len(copied) > 0 {
			detail += fmt.Sprintf(" Shards %v have other placements, inactive: accepting the worker's data finalizes one of those instead of its stale copy.", copied)
		}
		return pgerr.New(pgerr.ObjectNotInPrereqState, "worker %s is not used: its data went back in time (%s)", fmtNode(n), why).
			WithDetail("%s", detail).
			WithHint("To accept its data as it is, delete its row of pgs_distribution_metadata.node_identity on the coordinator.")
	}
	st.known, st.id, st.start, st.recorded, st.held = true, id, start, id.LSN, ""
	st.resetAt, st.resetGen = time.Now(), max(st.resetGen, gen)
	return &backend.UnavailableError{Addr: n.Addr(), Err: fmt.Errorf("the node's data went back in time (%s); its placements were marked inactive", why)}
}

// checkNode reads and verifies node n's identity on the proxy's own connection to it
// (as the coordinator URL's role), recording its WAL position: the periodic check, and
// repair's check of its source.
func (s *Server) checkNode(ctx context.Context, n metadata.Node) error {
	st := s.idents.of(n)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.conn != nil && (st.conn.Broken() || st.conn.Pending()) {
		st.conn.Close()
		st.conn = nil
	}
	if st.conn == nil {
		cfg := s.pools.ConnConfig(s.workerKey(n, s.repair.User))
		cfg.RuntimeParams["application_name"] = "pgshard identity"
		c, err := backend.Dial(ctx, cfg)
		if err != nil {
			return &backend.UnavailableError{Addr: n.Addr(), Err: err}
		}
		st.conn = c
	}
	id, start, err := readIdentity(ctx, st.conn)
	if err != nil {
		st.conn.Close()
		st.conn = nil
		return fmt.Errorf("proxy: read the identity of %s: %w", n, err)
	}
	return s.verifyLocked(ctx, st, n, id, start, identityOn(st.conn), true)
}

// closeConns closes the proxy's own identity connections.
func (ni *nodeIdents) closeConns() {
	ni.mu.Lock()
	defer ni.mu.Unlock()
	for _, st := range ni.nodes {
		st.mu.Lock()
		if st.conn != nil {
			st.conn.Terminate()
			st.conn = nil
		}
		st.mu.Unlock()
	}
}

// CheckNodes checks every worker's identity once and records its WAL position, as the
// periodic check does; it returns the errors other than unavailability.
func (s *Server) CheckNodes(ctx context.Context) error {
	var errs []error
	for _, n := range s.cache.Load().Nodes {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.checkNode(cctx, n)
		cancel()
		if err != nil && !backend.Unavailable(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkNodes runs CheckNodes every Config.NodeCheckInterval until ctx is done.
func (s *Server) checkNodes(ctx context.Context) {
	defer s.idents.closeConns()
	every := s.cfg.NodeCheckInterval
	if every < 0 {
		<-ctx.Done()
		return
	}
	if every == 0 {
		every = defaultNodeCheckInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.CheckNodes(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("worker identity check failed", "err", err)
		}
	}
}
