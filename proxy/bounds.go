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

// preparedBound checks that the session's prepared statements and portals may grow by
// cost bytes.
func (ss *session) preparedBound(cost int64) error {
	limit := ss.srv.cfg.MaxPreparedMemory
	if limit == 0 {
		limit = defaultMaxPreparedMemory
	}
	if limit > 0 && ss.preparedBytes+cost > limit {
		return pgerr.New(pgerr.ProgramLimitExceeded, "prepared statements and portals of this session exceed pgshard's max-prepared-memory (%d bytes)", limit).
			WithDetail("The session holds %d prepared statements and %d portals.", len(ss.stmts), len(ss.portals)).
			WithHint("Close the prepared statements (DEALLOCATE) and portals no longer needed, or raise --max-prepared-memory (PGSHARD_MAX_PREPARED_MEMORY).")
	}
	return nil
}

// putStmt stores a prepared statement under name (replacing the unnamed statement), within
// the session's max-prepared-memory.
func (ss *session) putStmt(name string, ps *prepared) error {
	old := int64(0)
	if prev := ss.stmts[name]; prev != nil {
		old = preparedCost(prev)
	}
	cost := preparedCost(ps)
	if err := ss.preparedBound(cost - old); err != nil {
		return err
	}
	ss.preparedBytes += cost - old
	ss.stmts[name] = ps
	return nil
}

// dropStmt removes a prepared statement.
func (ss *session) dropStmt(name string) {
	if ps := ss.stmts[name]; ps != nil {
		ss.preparedBytes -= preparedCost(ps)
		delete(ss.stmts, name)
	}
}

// dropAllStmts removes every prepared statement (DEALLOCATE ALL, DISCARD ALL).
func (ss *session) dropAllStmts() {
	for _, ps := range ss.stmts {
		ss.preparedBytes -= preparedCost(ps)
	}
	ss.stmts = map[string]*prepared{}
}

// cacheDescription keeps a statement description for the session's later statements of
// the same text.
func (ss *session) cacheDescription(key string, d description) {
	if len(ss.descCache) >= descCacheMax {
		ss.descCache = map[string]description{}
	}
	ss.descCache[key] = d
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
func (ss *session) setBound(sql string) error {
	if len(sql) > maxSessionSettings {
		return settingsTooLarge()
	}
	return nil
}
