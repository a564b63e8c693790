package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgshard/pgshard/metadata"
	"github.com/pgshard/pgshard/proxy/backend"
	"github.com/pgshard/pgshard/router"
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

// routerSession is what the router needs to know of the session to plan a statement
// against snap.
func (ss *session) routerSession(ctx context.Context, snap *metadata.Snapshot) *router.Session {
	rs := &router.Session{User: ss.user, SearchPath: ss.settings.searchPath(), Lex: ss.lexMode()}
	if !snap.HasTables() {
		return rs
	}
	if st := ss.resolveNames(ctx, snap); st != nil {
		rs.Names, rs.NamesKey = st.names, st.key
	}
	return rs
}

// namesChanged records that a statement may have created, dropped or renamed relations;
// own is set when only this session can tell (it created a temporary table).
func (ss *session) namesChanged(own bool) {
	ss.namesDirty = true
	if own {
		if ss.tx != txIdle {
			ss.txNamesOwn = true
		}
		return
	}
	ss.srv.namesEpoch.Add(1)
	if ss.tx != txIdle {
		ss.txNames = true
	}
}

// resolveNames returns where the names of snap's distributed tables resolve in this
// session now, asking the coordinator when the last answer may be out of date. It
// returns nil when the coordinator cannot answer (planning then follows search_path).
func (ss *session) resolveNames(ctx context.Context, snap *metadata.Snapshot) *namesState {
	epoch := ss.srv.namesEpoch.Load()
	if st := ss.names; st != nil && !ss.namesDirty && st.snap == snap && st.epoch == epoch {
		return st
	}
	if ss.tx == txFailed || time.Now().Before(ss.namesRetry) {
		return ss.names // nothing but the end of the block runs; or see below
	}
	st := ss.askNames(ctx, snap, epoch)
	if st == nil {
		// The coordinator did not answer: plan with what was known last (or by
		// search_path), and ask again in a second rather than before every statement.
		ss.namesRetry = time.Now().Add(time.Second)
		return ss.names
	}
	return st
}

// askNames asks the coordinator where names resolve in this session (nil: no answer).
func (ss *session) askNames(ctx context.Context, snap *metadata.Snapshot, epoch uint64) *namesState {
	if ss.coord == nil {
		shared := ss.user + "\x00" + ss.settings.key
		if st := ss.srv.names.get(shared, snap, epoch); st != nil {
			ss.names, ss.namesDirty = st, false
			return st
		}
		pool, err := ss.srv.pools.Get(ss.srv.coordKey(ss.user))
		if err != nil {
			return nil
		}
		res, err := pool.Acquire(ctx)
		if err != nil {
			return nil
		}
		defer backend.Release(res)
		c := res.Value()
		if err := ss.applySettings(ctx, c); err != nil {
			return nil
		}
		st := ss.queryNames(ctx, c, snap, epoch)
		if st != nil {
			ss.srv.names.put(shared, st)
		}
		return st
	}
	var c *backend.Conn
	if ss.tx == txIdle || ss.coordInTx {
		var err error
		if c, err = ss.coordConn(ctx); err != nil {
			return nil
		}
	} else {
		// The block has not reached the coordinator: its session state is the one
		// before the block, which a query outside the block reads as well.
		if c = ss.coord.Value(); c.Broken() {
			return nil
		}
	}
	return ss.queryNames(ctx, c, snap, epoch)
}

// queryNames asks c where each distributed table's name resolves.
func (ss *session) queryNames(ctx context.Context, c *backend.Conn, snap *metadata.Snapshot, epoch uint64) *namesState {
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
	ss.startRunning(c)
	rows, err := c.ExecRows(ctx, q.String())
	ss.stopRunning(c)
	if err != nil {
		ss.log.Warn("could not resolve table names on the coordinator", "err", err)
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
	ss.names, ss.namesDirty = st, false
	return st
}
