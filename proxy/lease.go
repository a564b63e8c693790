package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshard/pgshard/metadata/store"
	"github.com/pgshard/pgshard/pgerr"
)

// Lease modes.
const (
	leaseNone = iota
	leaseShared
	leaseExclusive
)

// leases make shard write locks hold across proxies. A proxy that writes to a replicated
// shard holds the shard's lease: a session-level advisory lock on the coordinator, shared
// for writes that commute and exclusive for the others (and for repair). Acquiring a lease
// costs a coordinator round trip, but a proxy keeps its leases while it uses them, so in
// steady state a write costs nothing extra. When another proxy needs a lease, it asks
// through NOTIFY and the holder lets go as soon as its writes to the shard are done (or
// after leaseIdle without use).
//
// If the lease connection is lost, the coordinator drops the locks with it; the proxy
// forgets its leases and takes them again.
type leases struct {
	cfg *pgconn.Config
	log *slog.Logger
	id  string // this proxy, to ignore its own requests

	mu   sync.Mutex
	held map[int64]*lease

	reqs  chan *leaseReq
	kick  chan struct{} // a lease may be releasable
	asked chan int64    // another proxy wants a lease
}

type lease struct {
	mode      int
	users     int
	wanted    bool // another proxy asked for it
	idleSince time.Time
}

type leaseReq struct {
	shard int64
	mode  int
	reply chan error
	next  time.Time // next attempt
	wait  time.Duration
	ctx   context.Context
}

const leaseIdle = 5 * time.Second

func newLeases(cfg *pgconn.Config, log *slog.Logger) *leases {
	var b [8]byte
	rand.Read(b[:])
	return &leases{
		cfg: cfg, log: log, id: hex.EncodeToString(b[:]),
		held:  map[int64]*lease{},
		reqs:  make(chan *leaseReq),
		kick:  make(chan struct{}, 1),
		asked: make(chan int64, 64),
	}
}

// acquire takes the lease of a shard in the given mode and returns its release. taken
// reports that the lease was not held already: another proxy may have changed the shard's
// metadata before letting it go.
func (l *leases) acquire(ctx context.Context, shard int64, mode int) (release func(), taken bool, err error) {
	l.mu.Lock()
	if h := l.held[shard]; h != nil && h.mode >= mode {
		h.users++
		l.mu.Unlock()
		return l.releaser(shard), false, nil
	}
	l.mu.Unlock()
	r := &leaseReq{shard: shard, mode: mode, reply: make(chan error, 1), ctx: ctx}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		return nil, false, context.Cause(ctx)
	}
	select {
	case err := <-r.reply:
		if err != nil {
			return nil, false, err
		}
		return l.releaser(shard), true, nil
	case <-ctx.Done():
		// The manager may still grant it: hand it back when it does.
		go func() {
			if err := <-r.reply; err == nil {
				l.releaser(shard)()
			}
		}()
		return nil, false, context.Cause(ctx)
	}
}

func (l *leases) releaser(shard int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			h := l.held[shard]
			if h != nil {
				h.users--
				if h.users == 0 {
					h.idleSince = time.Now()
					if h.wanted {
						select {
						case l.kick <- struct{}{}:
						default:
						}
					}
				}
			}
			l.mu.Unlock()
		})
	}
}

// onRequest handles another proxy's request (a notification payload "proxy:shard").
func (l *leases) onRequest(payload string) {
	from, shardText, ok := strings.Cut(payload, ":")
	if !ok || from == l.id {
		return
	}
	shard, err := strconv.ParseInt(shardText, 10, 64)
	if err != nil {
		return
	}
	select {
	case l.asked <- shard:
	default:
	}
}

// run owns the lease connection until ctx is done.
func (l *leases) run(ctx context.Context) {
	var pending []*leaseReq
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := pgconn.ConnectConfig(ctx, l.cfg)
		if err != nil {
			l.failPending(&pending, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if backoff < 5*time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 100 * time.Millisecond
		err = l.serve(ctx, conn, &pending)
		conn.Close(context.Background())
		// The locks went with the connection.
		l.mu.Lock()
		l.held = map[int64]*lease{}
		l.mu.Unlock()
		if ctx.Err() == nil {
			l.log.Warn("shard lease connection lost; leases dropped", "err", err)
		}
	}
	l.failPending(&pending, ctx.Err())
}

func (l *leases) failPending(pending *[]*leaseReq, err error) {
	if err == nil {
		return
	}
	for _, r := range *pending {
		// The cause (which names the coordinator) is for the log, not the client.
		l.log.Warn("write lease not taken", "shard", r.shard, "err", err)
		r.reply <- pgerr.Wrap(err, pgerr.ConnectionFailure, "could not obtain write lock: pgshard lost its connection to the coordinator")
	}
	*pending = nil
}

// serve grants, waits for and releases leases over conn, the lease connection, until ctx
// is done or conn fails. pending holds the requests waiting for another proxy to let go;
// those left when serve returns are retried on the next connection.
func (l *leases) serve(ctx context.Context, conn *pgconn.PgConn, pending *[]*leaseReq) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lc := &leaseConn{l: l, conn: conn, pending: pending, retry: time.NewTimer(time.Hour)}
	defer lc.retry.Stop()
	// Requests that were waiting when the connection was lost try again.
	if err := lc.attemptAll(ctx, func(*leaseReq) bool { return true }); err != nil {
		return err
	}
	lc.schedule()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-l.reqs:
			if err := lc.attempt(ctx, r); err != nil {
				*pending = append(*pending, r)
				return err
			}
		case <-lc.retry.C:
			due := func(r *leaseReq) bool { return !time.Now().Before(r.next) }
			if err := lc.attemptAll(ctx, due); err != nil {
				return err
			}
		case shard := <-l.asked:
			l.markWanted(shard)
			if err := lc.releaseIdle(ctx, false); err != nil {
				return err
			}
		case <-l.kick:
			if err := lc.releaseIdle(ctx, false); err != nil {
				return err
			}
		case <-tick.C:
			if err := lc.releaseIdle(ctx, true); err != nil {
				return err
			}
		}
		lc.schedule()
	}
}

// markWanted notes that another proxy asked for the lease of shard.
func (l *leases) markWanted(shard int64) {
	l.mu.Lock()
	if h := l.held[shard]; h != nil {
		h.wanted = true
	}
	l.mu.Unlock()
}

// leaseConn is serve's state for one lease connection: the connection, the requests
// waiting for a retry, and the timer of the earliest retry.
type leaseConn struct {
	l       *leases
	conn    *pgconn.PgConn
	pending *[]*leaseReq
	retry   *time.Timer
}

// exec runs one statement with text parameters and returns the first column of its last
// row ("" if none).
func (lc *leaseConn) exec(ctx context.Context, sql string, args ...string) (string, error) {
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	rr := lc.conn.ExecParams(ctx, sql, params, nil, nil, nil)
	var out string
	for rr.NextRow() {
		out = string(rr.Values()[0])
	}
	_, err := rr.Close()
	return out, err
}

// leaseKey is the advisory lock key of a shard's lease, as a parameter.
func leaseKey(shard int64) string {
	return strconv.FormatInt(store.LockKey(store.LockShard, shard), 10)
}

// unlock lets go of the coordinator lock of a lease held in mode.
func (lc *leaseConn) unlock(ctx context.Context, shard int64, mode int) error {
	fn := "pg_advisory_unlock"
	if mode == leaseShared {
		fn = "pg_advisory_unlock_shared"
	}
	_, err := lc.exec(ctx, "SELECT "+fn+"($1::int8)", leaseKey(shard))
	return err
}

// releaseIdle lets go of leases no local write uses that another proxy asked for, or
// (force) that were idle for long.
func (lc *leaseConn) releaseIdle(ctx context.Context, force bool) error {
	l := lc.l
	l.mu.Lock()
	var drop []int64
	var modes []int
	for shard, h := range l.held {
		if h.users == 0 && (h.wanted || force && time.Since(h.idleSince) > leaseIdle) {
			drop = append(drop, shard)
			modes = append(modes, h.mode)
			delete(l.held, shard)
		}
	}
	l.mu.Unlock()
	for i, shard := range drop {
		if err := lc.unlock(ctx, shard, modes[i]); err != nil {
			return err
		}
	}
	return nil
}

// try attempts to take a lease for a request; false means another proxy holds it (or
// local shared users must finish before an upgrade).
func (lc *leaseConn) try(ctx context.Context, r *leaseReq) (bool, error) {
	l := lc.l
	l.mu.Lock()
	h := l.held[r.shard]
	if h != nil && h.mode >= r.mode {
		h.users++
		l.mu.Unlock()
		return true, nil
	}
	upgrade := h != nil && h.users == 0
	if h != nil && !upgrade {
		l.mu.Unlock()
		return false, nil // shared users remain; wait for them
	}
	if upgrade {
		delete(l.held, r.shard)
	}
	l.mu.Unlock()
	if upgrade {
		if err := lc.unlock(ctx, r.shard, h.mode); err != nil {
			return false, err
		}
	}
	fn := "pg_try_advisory_lock"
	if r.mode == leaseShared {
		fn = "pg_try_advisory_lock_shared"
	}
	got, err := lc.exec(ctx, "SELECT "+fn+"($1::int8)", leaseKey(r.shard))
	if err != nil || got != "t" {
		return false, err
	}
	l.mu.Lock()
	l.held[r.shard] = &lease{mode: r.mode, users: 1}
	l.mu.Unlock()
	return true, nil
}

// attempt answers a request: with its context's error, with the lease, or (another proxy
// holds it) by asking the holder to let go and queueing the request for a retry with
// backoff. An error is the connection's: the request has had no answer.
func (lc *leaseConn) attempt(ctx context.Context, r *leaseReq) error {
	if r.ctx.Err() != nil {
		r.reply <- context.Cause(r.ctx)
		return nil
	}
	ok, err := lc.try(ctx, r)
	if err != nil {
		return err
	}
	if ok {
		r.reply <- nil
		return nil
	}
	if _, err := lc.exec(ctx, "SELECT pg_notify($1, $2)", store.LeaseChannel, lc.l.id+":"+strconv.FormatInt(r.shard, 10)); err != nil {
		return err
	}
	if r.wait == 0 {
		r.wait = time.Millisecond
	} else if r.wait < 50*time.Millisecond {
		r.wait *= 2
	}
	r.next = time.Now().Add(r.wait)
	*lc.pending = append(*lc.pending, r)
	return nil
}

// attemptAll attempts the pending requests for which due is true and keeps the others
// pending. On a connection error, the request that failed and those not yet attempted stay
// pending (unanswered) for the next connection.
func (lc *leaseConn) attemptAll(ctx context.Context, due func(*leaseReq) bool) error {
	queue := *lc.pending
	*lc.pending = nil
	for i, r := range queue {
		if !due(r) {
			*lc.pending = append(*lc.pending, r)
			continue
		}
		if err := lc.attempt(ctx, r); err != nil {
			*lc.pending = append(*lc.pending, queue[i:]...)
			return err
		}
	}
	return nil
}

// schedule sets the retry timer to the earliest pending retry.
func (lc *leaseConn) schedule() {
	pending := *lc.pending
	if len(pending) == 0 {
		return
	}
	next := pending[0].next
	for _, r := range pending {
		if r.next.Before(next) {
			next = r.next
		}
	}
	lc.retry.Reset(time.Until(next))
}
