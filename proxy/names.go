package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
	"github.com/pgshard/pgshard/router/sqllex"
)

// Name resolution. Which relation an unqualified name reaches depends on the session:
// its search_path (with "$user"), its temporary tables (pg_temp comes first), and every
// relation of that name in the schemas of the path, distributed or not. Rather than
// re-implement PostgreSQL's rules, the proxy asks the coordinator, in the client's
// session, where each name of a distributed table resolves (to_regclass), and plans with
// that answer (router.Session.Names).
//
// The answer is kept until something may change it:
//   - the session's settings (SET, RESET, DISCARD, set_config; the end of a block or a
//     ROLLBACK TO that undid some) mark it dirty;
//   - statements that may create, drop or rename relations or schemas (router's DDL)
//     advance the server's names epoch, which every session of this proxy checks; at the
//     end of a block that ran one, it advances again (others now see its outcome); a
//     temporary table created concerns its session only, which asks again itself;
//   - the metadata is loaded again (a new snapshot): the distributed tables changed, or
//     the coordinator's event trigger reported such a statement from elsewhere (another
//     proxy, a session on the coordinator itself).
//
// A session without its own coordinator connection has no temporary tables and only its
// startup settings: sessions alike share one answer (namesCache).

// namesState is one answer of the coordinator and what it was valid for.
type namesState struct {
	names map[string]string  // name -> schema of the relation it reaches
	key   string             // digest of names, for the plan cache
	snap  *metadata.Snapshot // the metadata it was asked for
	epoch uint64             // server names epoch
}

// namesCache holds the answers for sessions that share them, by user and settings.
type namesCache struct {
	mu sync.Mutex
	m  map[string]*namesState
}

func (nc *namesCache) get(key string, snap *metadata.Snapshot, epoch uint64) *namesState {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if st := nc.m[key]; st != nil && st.snap == snap && st.epoch == epoch {
		return st
	}
	return nil
}

func (nc *namesCache) put(key string, st *namesState) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.m == nil || len(nc.m) > 1000 {
		nc.m = map[string]*namesState{}
	}
	nc.m[key] = st
}

// sessionNames is where the names of distributed tables resolve in a session, and what
// says the answer may be out of date. It is the session's (embedded in it), used by its
// goroutine only.
type sessionNames struct {
	// names is the last answer; namesDirty is set when the session's settings may have
	// changed it; txNames when the block ran a statement that may have created, dropped
	// or renamed relations, txNamesOwn one that only this session can see (a temporary
	// table).
	names      *namesState
	namesDirty bool
	txNames    bool
	txNamesOwn bool
	namesRetry time.Time // after a failed resolution, when to ask again
	nameDeps   namesDeps
}

// namesDeps are what name resolution needs of the rest of the session, wired when it is
// built (initState). Where the question may be asked depends on the transaction layer:
// its coordinator connection (none: a pooled one with the session's settings, and an
// answer shared with sessions alike), whether the block has reached it, and the block's
// state; the answer depends on the user and the settings; the query is registered for
// cancel requests while it runs.
type namesDeps struct {
	srv       *Server // the names epoch, the shared answers, the pools
	log       *slog.Logger
	user      *string
	settings  *sessionSettings
	tx        *txStatus
	coord     *(*puddle.Resource[*backend.Conn])
	coordInTx *bool
	// coordConn returns the session's coordinator connection, taken on first use and
	// brought into the block.
	coordConn func(context.Context) (*backend.Conn, error)
	// startRunning and stopRunning register a connection running for the session.
	startRunning, stopRunning func(*backend.Conn)
	// lexMode is how the client's statements are read.
	lexMode func() sqllex.Mode
}

// routerSession is what the router needs to know of the session to plan the statement
// text sql against snap. A text of transaction control statements only (BEGIN, COMMIT,
// ROLLBACK, SAVEPOINT, ...) names no relation, so where names resolve is not asked. Above all, ending a block must never wait for a
// coordinator connection (which another session may hold for as long as it lives) just
// to learn names it does not use.
func (s *sessionNames) routerSession(ctx context.Context, snap *metadata.Snapshot, sql string) *router.Session {
	d := &s.nameDeps
	rs := &router.Session{User: *d.user, SearchPath: d.settings.settings.searchPath(), Lex: d.lexMode()}
	if !snap.HasTables() || sql != "" && txControlOnly(sql, rs.Lex) {
		return rs
	}
	if st := s.resolveNames(ctx, snap); st != nil {
		rs.Names, rs.NamesKey = st.names, st.key
	}
	return rs
}

// namesChanged records that a statement may have created, dropped or renamed relations;
// own is set when only this session can tell (it created a temporary table).
func (s *sessionNames) namesChanged(own bool) {
	d := &s.nameDeps
	s.namesDirty = true
	if own {
		if *d.tx != txIdle {
			s.txNamesOwn = true
		}
		return
	}
	d.srv.namesEpoch.Add(1)
	if *d.tx != txIdle {
		s.txNames = true
	}
}

// resolveNames returns where the names of snap's distributed tables resolve in this
// session now, asking the coordinator when the last answer may be out of date. It
// returns nil when the coordinator cannot answer (planning then follows search_path).
func (s *sessionNames) resolveNames(ctx context.Context, snap *metadata.Snapshot) *namesState {
	d := &s.nameDeps
	epoch := d.srv.namesEpoch.Load()
	if st := s.names; st != nil && !s.namesDirty && st.snap == snap && st.epoch == epoch {
		return st
	}
	if *d.tx == txFailed || time.Now().Before(s.namesRetry) {
		return s.names // nothing but the end of the block runs; or see below
	}
	st := s.askNames(ctx, snap, epoch)
	if st == nil {
		// The coordinator did not answer: plan with what was known last (or by
		// search_path), and ask again in a second rather than before every statement.
		s.namesRetry = time.Now().Add(time.Second)
		return s.names
	}
	return st
}

// askNames asks the coordinator where names resolve in this session (nil: no answer).
func (s *sessionNames) askNames(ctx context.Context, snap *metadata.Snapshot, epoch uint64) *namesState {
	d := &s.nameDeps
	if *d.coord == nil {
		shared := *d.user + "\x00" + d.settings.settings.key
		if st := d.srv.names.get(shared, snap, epoch); st != nil {
			s.names, s.namesDirty = st, false
			return st
		}
		pool, err := d.srv.pools.Get(d.srv.coordKey(*d.user))
		if err != nil {
			return nil
		}
		res, err := acquirePooled(ctx, pool)
		if err != nil {
			return nil
		}
		defer backend.Release(res)
		c := res.Value()
		if err := d.settings.applySettings(ctx, c); err != nil {
			return nil
		}
		st := s.queryNames(ctx, c, snap, epoch)
		if st != nil {
			d.srv.names.put(shared, st)
		}
		return st
	}
	var c *backend.Conn
	if *d.tx == txIdle || *d.coordInTx {
		var err error
		if c, err = d.coordConn(ctx); err != nil {
			return nil
		}
	} else {
		// The block has not reached the coordinator: its session state is the one
		// before the block, which a query outside the block reads as well.
		if c = (*d.coord).Value(); c.Broken() {
			return nil
		}
	}
	return s.queryNames(ctx, c, snap, epoch)
}

// queryNames asks c where each distributed table's name resolves.
func (s *sessionNames) queryNames(ctx context.Context, c *backend.Conn, snap *metadata.Snapshot, epoch uint64) *namesState {
	d := &s.nameDeps
	seen := map[string]bool{}
	var q strings.Builder
	q.WriteString(`SELECT r.name, n.nspname FROM pg_catalog.unnest(ARRAY[`)
	for _, t := range snap.Tables() {
		if seen[t.Name] {
			continue
		}
		if len(seen) > 0 {
			q.WriteString(", ")
		}
		seen[t.Name] = true
		q.WriteString(router.QuoteLiteral(t.Name))
	}
	q.WriteString(`]::pg_catalog.text[]) r(name)
		JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.quote_ident(r.name))
		JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace`)
	d.startRunning(c)
	rows, err := c.ExecRows(ctx, q.String())
	d.stopRunning(c)
	if err != nil {
		d.log.Warn("could not resolve table names on the coordinator", "err", err)
		return nil
	}
	st := &namesState{names: make(map[string]string, len(rows)), snap: snap, epoch: epoch}
	pairs := make([]string, 0, len(rows))
	for _, r := range rows {
		st.names[string(r[0])] = string(r[1])
		pairs = append(pairs, string(r[0])+"\x00"+string(r[1]))
	}
	sort.Strings(pairs)
	sum := sha256.Sum256([]byte(strings.Join(pairs, "\x01")))
	st.key = hex.EncodeToString(sum[:16])
	s.names, s.namesDirty = st, false
	return st
}

// txControlOnly reports whether every statement of sql is a transaction control
// statement (BEGIN, START, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE), which names
// no relation.
func txControlOnly(sql string, m sqllex.Mode) bool {
	toks := sqllex.ScanMode(sql, nil, m)
	first, any := true, false
	for _, t := range toks {
		if t.Kind == sqllex.Punct && sql[t.Start:t.End] == ";" {
			first = true
			continue
		}
		if !first {
			continue
		}
		first, any = false, true
		ok := false
		for _, kw := range txControlWords {
			if sqllex.Keyword(sql, t, kw) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return any
}

// txControlWords start transaction control statements.
var txControlWords = []string{"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}
