package proxy

import "github.com/pgshard/pgshard/pgerr"

// What a session keeps for its client grows only within bounds: its prepared statements
// (counted against max-prepared-memory), their descriptions (descCacheMax), and the
// results it sets aside (spool.go: work-mem, then temporary files up to temp-file-limit).

// defaultMaxPreparedMemory is the default of Config.MaxPreparedMemory.
const defaultMaxPreparedMemory = 256 << 20

// descCacheMax bounds the entries of a session's description cache: past it, the cache
// starts again empty (the descriptions of the session's prepared statements are held by
// the statements themselves).
const descCacheMax = 1000

// preparedCost estimates the memory a prepared statement holds: its plan grows with its
// text (about twelve times the text was measured, for the plan, the description and the
// text itself), plus a fixed part.
func preparedCost(ps *prepared) int64 { return 16*int64(len(ps.sql)) + 1024 }

// portalCost estimates the memory of a portal with these parameter values.
func portalCost(values [][]byte) int64 {
	n := int64(256)
	for _, v := range values {
		n += int64(len(v)) + 24
	}
	return n
}

// initState builds the session's state that is neither protocol nor transaction nor
// executor, each part with the dependencies it declares (bounds.go, spool.go,
// settings.go, names.go).
func initState(ss *session) {
	ss.stmtStore = newStmtStore(ss.srv.cfg.MaxPreparedMemory)
	ss.spoolBudget = newSpoolBudget(ss.srv, ss.log)
	ss.setDeps = settingsDeps{coord: &ss.txn.coord, tx: &ss.txn.tx, user: &ss.user, params: &ss.params, log: ss.log}
	ss.nameDeps = namesDeps{srv: ss.srv, log: ss.log, user: &ss.user, settings: &ss.sessionSettings,
		tx: &ss.txn.tx, coord: &ss.txn.coord, coordInTx: &ss.txn.coordInTx, coordConn: ss.txn.coordConn,
		startRunning: ss.startRunning, stopRunning: ss.stopRunning, lexMode: ss.lexMode}
}

// stmtStore holds a session's prepared statements and portals, and the descriptions it
// caches, within the session's max-prepared-memory: the client decides how many it keeps,
// so every one is counted (preparedCost, portalCost) and one past the bound is refused
// with 54000 rather than let a client grow the proxy without limit. It is the session's
// (embedded in it) and, as the rest of the session, used by its goroutine only.
type stmtStore struct {
	// stmts and portals are the session's prepared statements and portals by name ("" is
	// the unnamed one).
	stmts   map[string]*prepared
	portals map[string]*portal
	// descCache caches statement descriptions by text and parameter types.
	descCache map[string]description
	// preparedBytes is the estimated memory of stmts and portals.
	preparedBytes int64
	// maxPrepared is Config.MaxPreparedMemory: 0 for the default, < 0 for no bound.
	maxPrepared int64
}

// newStmtStore returns an empty store bounded by maxPrepared (Config.MaxPreparedMemory).
func newStmtStore(maxPrepared int64) stmtStore {
	return stmtStore{
		stmts:       map[string]*prepared{},
		portals:     map[string]*portal{},
		descCache:   map[string]description{},
		maxPrepared: maxPrepared,
	}
}

// preparedBound checks that the session's prepared statements and portals may grow by
// cost bytes.
func (s *stmtStore) preparedBound(cost int64) error {
	limit := s.maxPrepared
	if limit == 0 {
		limit = defaultMaxPreparedMemory
	}
	if limit > 0 && s.preparedBytes+cost > limit {
		return pgerr.New(pgerr.ProgramLimitExceeded, "prepared statements and portals of this session exceed pgshard's max-prepared-memory (%d bytes)", limit).
			WithDetail("The session holds %d prepared statements and %d portals.", len(s.stmts), len(s.portals)).
			WithHint("Close the prepared statements (DEALLOCATE) and portals no longer needed, or raise --max-prepared-memory (PGSHARD_MAX_PREPARED_MEMORY).")
	}
	return nil
}

// putStmt stores a prepared statement under name (replacing the unnamed statement), within
// the session's max-prepared-memory.
func (s *stmtStore) putStmt(name string, ps *prepared) error {
	old := int64(0)
	if prev := s.stmts[name]; prev != nil {
		old = preparedCost(prev)
	}
	cost := preparedCost(ps)
	if err := s.preparedBound(cost - old); err != nil {
		return err
	}
	s.preparedBytes += cost - old
	s.stmts[name] = ps
	return nil
}

// dropStmt removes a prepared statement.
func (s *stmtStore) dropStmt(name string) {
	if ps := s.stmts[name]; ps != nil {
		s.preparedBytes -= preparedCost(ps)
		delete(s.stmts, name)
	}
}

// dropAllStmts removes every prepared statement (DEALLOCATE ALL, DISCARD ALL).
func (s *stmtStore) dropAllStmts() {
	for _, ps := range s.stmts {
		s.preparedBytes -= preparedCost(ps)
	}
	s.stmts = map[string]*prepared{}
}

// dropPortal removes a portal and what it set aside.
func (s *stmtStore) dropPortal(name string) {
	if pt := s.portals[name]; pt != nil {
		pt.pending.Close()
		pt.pending = nil
		s.preparedBytes -= pt.cost
		delete(s.portals, name)
	}
}

// cacheDescription keeps a statement description for the session's later statements of
// the same text.
func (s *stmtStore) cacheDescription(key string, d description) {
	if len(s.descCache) >= descCacheMax {
		s.descCache = map[string]description{}
	}
	s.descCache[key] = d
}

// maxReplay bounds the text of the statements that bring a backend joining a transaction
// block to the block's state (BEGIN, SET, SAVEPOINT: txReplay).
const maxReplay = 16 << 20

// maxReplayEntries bounds the number of those statements.
const maxReplayEntries = 10000

// replayBound checks that sql may join the block's replay.
func (t *txnState) replayBound(sql string) error {
	n := len(sql)
	for _, s := range t.txReplay {
		n += len(s) + 2
	}
	if n > maxReplay || len(t.txReplay) >= maxReplayEntries {
		return pgerr.New(pgerr.ProgramLimitExceeded, "the settings and savepoints of this transaction block exceed %d statements or %d bytes", maxReplayEntries, maxReplay).
			WithHint("pgshard replays them on every backend that joins the block: end the block, or set these parameters outside it.")
	}
	return nil
}

// dropEntries removes the entries at the given increasing indexes of list.
func dropEntries(list []string, at []int) []string {
	out := list[:at[0]]
	for k, i := range at {
		end := len(list)
		if k+1 < len(at) {
			end = at[k+1]
		}
		if i+1 < end {
			out = append(out, list[i+1:end]...)
		}
	}
	return out
}

// maxSessionSettings bounds the text of a session's settings, which the proxy keeps and
// applies to every worker connection the session uses.
const maxSessionSettings = 1 << 20

func settingsTooLarge() error {
	return pgerr.New(pgerr.ProgramLimitExceeded, "the session's settings exceed %d bytes", maxSessionSettings).
		WithHint("pgshard applies them to every worker connection the session uses: RESET the large ones.")
}

// setBound checks that a SET statement may run: one that alone exceeds
// maxSessionSettings is refused before it runs (a session's settings that grow past it
// otherwise keep it off the workers: refreshSettings).
func (st *sessionSettings) setBound(sql string) error {
	if len(sql) > maxSessionSettings {
		return settingsTooLarge()
	}
	return nil
}
