package backend

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/pgshard/pgshard/pgerr"
)

// Key identifies a pool: one server, user and database.
type Key struct {
	Host     string
	Port     int
	User     string
	Database string
}

func (k Key) String() string {
	return k.User + "@" + k.Host + ":" + strconv.Itoa(k.Port) + "/" + k.Database
}

// Config configures the pools.
type Config struct {
	// Base is the connection configuration every backend connection starts from (password,
	// TLS, timeouts); host, port, user and database are replaced per pool.
	Base *pgconn.Config
	// MaxConns bounds each pool (default 100).
	MaxConns int32
	// IdleTimeout closes connections idle for longer (default 5 minutes).
	IdleTimeout time.Duration
	// RuntimeParams are startup parameters for every backend connection.
	RuntimeParams map[string]string
	// OnConnect, when set, runs on every new connection of a pool before its first use
	// (the proxy checks there that a worker's data did not go back in time); an error
	// closes the connection and fails the Acquire. It is off the per-statement path.
	OnConnect func(ctx context.Context, k Key, c *Conn) error
}

// Pools holds one pool per Key, created on first use.
type Pools struct {
	cfg Config

	mu     sync.Mutex
	pools  map[Key]*Pool
	closed bool
}

// NewPools returns an empty set of pools.
func NewPools(cfg Config) *Pools {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 100
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	return &Pools{cfg: cfg, pools: map[Key]*Pool{}}
}

// Pool is a pool of connections to one server as one user.
type Pool struct {
	Key Key
	p   *puddle.Pool[*Conn]
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("backend: pools closed")

// Get returns the pool for k.
func (ps *Pools) Get(k Key) (*Pool, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, ErrClosed
	}
	if p := ps.pools[k]; p != nil {
		return p, nil
	}
	cfg := ps.connConfig(k)
	pp, err := puddle.NewPool(&puddle.Config[*Conn]{
		Constructor: func(ctx context.Context) (*Conn, error) { return ps.dial(ctx, k, cfg) },
		Destructor:  func(c *Conn) { c.Terminate() },
		MaxSize:     ps.cfg.MaxConns,
	})
	if err != nil {
		return nil, fmt.Errorf("backend: pool %s: %w", k, err)
	}
	p := &Pool{Key: k, p: pp}
	ps.pools[k] = p
	return p, nil
}

// dial makes a pool's new connection and runs Config.OnConnect on it.
func (ps *Pools) dial(ctx context.Context, k Key, cfg *pgconn.Config) (*Conn, error) {
	c, err := Dial(ctx, cfg)
	if err != nil || ps.cfg.OnConnect == nil {
		return c, err
	}
	if err := ps.cfg.OnConnect(ctx, k, c); err != nil {
		c.Terminate()
		return nil, err
	}
	return c, nil
}

// ConnConfig returns the connection configuration for k (for connections outside pools).
func (ps *Pools) ConnConfig(k Key) *pgconn.Config { return ps.connConfig(k) }

func (ps *Pools) connConfig(k Key) *pgconn.Config {
	cfg := ps.cfg.Base.Copy()
	set := func(c *pgconn.Config) {
		c.Host, c.Port, c.User, c.Database = k.Host, uint16(k.Port), k.User, k.Database
		if c.RuntimeParams == nil {
			c.RuntimeParams = map[string]string{}
		}
		for name, v := range ps.cfg.RuntimeParams {
			c.RuntimeParams[name] = v
		}
	}
	set(cfg)
	for _, fb := range cfg.Fallbacks {
		fb.Host, fb.Port = k.Host, uint16(k.Port)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	return cfg
}

// Acquire takes a connection from the pool, dialing one if none is idle.
func (p *Pool) Acquire(ctx context.Context) (*puddle.Resource[*Conn], error) {
	for {
		res, err := p.p.Acquire(ctx)
		if err != nil {
			var pe *pgerr.Error
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &pe) {
				// A server error from OnConnect is the answer itself (the server is
				// reachable; its use is refused), not unavailability.
				return nil, err
			}
			return nil, &UnavailableError{Addr: p.Key.Host + ":" + strconv.Itoa(p.Key.Port), Err: err}
		}
		c := res.Value()
		if c.Broken() || (res.IdleDuration() > 0 && c.peerClosed()) {
			// A server that restarted closed its idle connections: take a fresh one rather
			// than fail the first statement that uses a stale one.
			res.Destroy()
			continue
		}
		return res, nil
	}
}

// Release returns a connection to its pool, or destroys it if it is broken or not idle
// (in a transaction, or with an answer still to read).
func Release(res *puddle.Resource[*Conn]) {
	c := res.Value()
	if c.Discarding() && !c.Broken() {
		// Answers sent for with SendDiscard: read now, briefly, so that the next user
		// of the connection finds it in step (and the pool's check finds it idle).
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.drain()
		c.SetDeadline(time.Time{})
	}
	if c.Broken() || c.TxStatus != 'I' || c.Busy() {
		res.Destroy()
		return
	}
	c.used = time.Now()
	res.Release()
}

// Stats describes a pool for SHOW POOLS.
type Stats struct {
	Key       Key
	Total     int32
	Idle      int32
	Acquired  int32
	MaxConns  int32
	Acquires  int64
	WaitCount int64
	WaitTime  time.Duration
}

// Stats returns statistics for every pool.
func (ps *Pools) Stats() []Stats {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]Stats, 0, len(ps.pools))
	for k, p := range ps.pools {
		s := p.p.Stat()
		out = append(out, Stats{
			Key: k, Total: s.TotalResources(), Idle: s.IdleResources(), Acquired: s.AcquiredResources(),
			MaxConns: s.MaxResources(), Acquires: s.AcquireCount(), WaitCount: s.EmptyAcquireCount(),
			WaitTime: s.AcquireDuration(),
		})
	}
	return out
}

// CloseIdle closes connections idle for longer than the idle timeout. The proxy calls it
// periodically.
func (ps *Pools) CloseIdle() {
	ps.mu.Lock()
	pools := make([]*Pool, 0, len(ps.pools))
	for _, p := range ps.pools {
		pools = append(pools, p)
	}
	ps.mu.Unlock()
	for _, p := range pools {
		for _, res := range p.p.AcquireAllIdle() {
			if time.Since(res.Value().used) > ps.cfg.IdleTimeout || res.Value().Broken() {
				res.Destroy()
			} else {
				res.ReleaseUnused()
			}
		}
	}
}

// Close closes every pool, waiting for acquired connections to be released.
func (ps *Pools) Close() {
	ps.mu.Lock()
	ps.closed = true
	pools := ps.pools
	ps.pools = map[Key]*Pool{}
	ps.mu.Unlock()
	for _, p := range pools {
		p.p.Close()
	}
}
