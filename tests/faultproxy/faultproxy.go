// Package faultproxy is a TCP proxy for fault tests: it sits between pgshard and one
// PostgreSQL server and can refuse new connections, cut existing ones, delay traffic, or
// cut a connection when a given protocol message passes — the way Citus tests failures
// with mitmproxy, in Go and in-process.
//
// Rules inspect the frontend (client to server) stream, which the proxy splits into
// protocol messages; the backend stream is copied as it is.
package faultproxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections on a loopback port to Target.
type Proxy struct {
	Target string

	ln   net.Listener
	host string
	port int

	mu     sync.Mutex
	conns  map[*link]struct{}
	refuse bool
	delay  time.Duration
	rules  []*Rule
	closed bool

	wg sync.WaitGroup
}

// Action is what a rule does when it fires.
type Action int

// Actions.
const (
	// CutBefore closes the connection before the matching message reaches the server.
	CutBefore Action = iota
	// CutAfter lets the message through and closes the connection right after, before
	// the server's answer can reach the client.
	CutAfter
)

// Rule fires on frontend messages of type Type (0: any) whose text matches Pattern.
type Rule struct {
	Type    byte
	Pattern *regexp.Regexp
	// After skips the first After matches (over all connections).
	After  int
	Action Action

	hits  int
	fired chan struct{}
}

// Fired is closed when the rule has fired.
func (r *Rule) Fired() <-chan struct{} { return r.fired }

// Start listens on a free loopback port.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := ln.Addr().(*net.TCPAddr)
	p := &Proxy{Target: target, ln: ln, host: a.IP.String(), port: a.Port, conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Host and Port are where the proxy listens.
func (p *Proxy) Host() string { return p.host }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.port }

// Addr is host:port.
func (p *Proxy) Addr() string { return net.JoinHostPort(p.host, strconv.Itoa(p.port)) }

// SetRefuse makes the proxy drop new connections at once (as if the server were down).
func (p *Proxy) SetRefuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// SetDelay delays every chunk of data in both directions.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// CutAll closes every open connection abruptly.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	for _, l := range ls {
		l.cut()
	}
}

// Add installs a rule and returns it.
func (p *Proxy) Add(r *Rule) *Rule {
	r.fired = make(chan struct{})
	p.mu.Lock()
	p.rules = append(p.rules, r)
	p.mu.Unlock()
	return r
}

// CutOnQuery cuts the connection when a Query or Parse message whose SQL matches pattern
// passes (after skipping after matches).
func (p *Proxy) CutOnQuery(pattern string, after int, action Action) *Rule {
	return p.Add(&Rule{Pattern: regexp.MustCompile(pattern), After: after, Action: action})
}

// ClearRules removes every rule.
func (p *Proxy) ClearRules() {
	p.mu.Lock()
	p.rules = nil
	p.mu.Unlock()
}

// Reset removes rules, delay and refusal.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.rules, p.delay, p.refuse = nil, 0, false
	p.mu.Unlock()
}

// Close stops the proxy and cuts its connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse, closed := p.refuse, p.closed
		p.mu.Unlock()
		if refuse || closed {
			abort(c)
			continue
		}
		s, err := net.DialTimeout("tcp", p.Target, 5*time.Second)
		if err != nil {
			abort(c)
			continue
		}
		l := &link{p: p, client: c, server: s}
		p.mu.Lock()
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			l.frontend()
		}()
		go func() {
			defer p.wg.Done()
			l.backend()
		}()
	}
}

// abort closes a connection with a reset.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// link is one proxied connection.
type link struct {
	p              *Proxy
	client, server net.Conn
	once           sync.Once
	// hold stops server-to-client traffic (a CutAfter rule fired: the server's answer
	// must not reach the client).
	hold atomic.Bool
}

func (l *link) cut() {
	l.once.Do(func() {
		abort(l.client)
		abort(l.server)
		l.p.mu.Lock()
		delete(l.p.conns, l)
		l.p.mu.Unlock()
	})
}

func (l *link) wait() {
	l.p.mu.Lock()
	d := l.p.delay
	l.p.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
}

// backend copies the server's bytes to the client.
func (l *link) backend() {
	defer l.cut()
	buf := make([]byte, 32<<10)
	for {
		n, err := l.server.Read(buf)
		if l.hold.Load() {
			n = 0 // the answer is dropped
		}
		if n > 0 {
			l.wait()
			if _, werr := l.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// frontend forwards the client's messages one by one, applying the rules.
func (l *link) frontend() {
	defer l.cut()
	c := l.client
	// Startup phase: untyped packets (SSLRequest, GSSENCRequest, StartupMessage).
	for {
		pkt, err := readUntyped(c)
		if err != nil {
			return
		}
		l.wait()
		if _, err := l.server.Write(pkt); err != nil {
			return
		}
		if len(pkt) >= 8 {
			code := binary.BigEndian.Uint32(pkt[4:8])
			if code == 80877103 || code == 80877104 {
				continue // the server answers N; the startup message follows
			}
		}
		break
	}
	hdr := make([]byte, 5)
	for {
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:]))
		if n < 4 || n > 1<<30 {
			return
		}
		msg := make([]byte, 5+n-4)
		copy(msg, hdr)
		if _, err := io.ReadFull(c, msg[5:]); err != nil {
			return
		}
		action, fire := l.match(msg[0], msg[5:])
		if fire && action == CutBefore {
			return
		}
		if fire {
			l.hold.Store(true)
		}
		l.wait()
		if _, err := l.server.Write(msg); err != nil {
			return
		}
		if fire {
			// Give the server time to run the message before the connection goes.
			time.Sleep(100 * time.Millisecond)
			return
		}
	}
}

// match applies the rules to a frontend message.
func (l *link) match(typ byte, body []byte) (Action, bool) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules {
		if r.Type != 0 && r.Type != typ {
			continue
		}
		if r.Type == 0 && typ != 'Q' && typ != 'P' {
			continue
		}
		if r.Pattern != nil && !r.Pattern.Match(sqlOf(typ, body)) {
			continue
		}
		select {
		case <-r.fired:
			continue // fires once
		default:
		}
		r.hits++
		if r.hits <= r.After {
			continue
		}
		close(r.fired)
		return r.Action, true
	}
	return 0, false
}

// sqlOf returns the SQL text of a Query or Parse message body (or the whole body).
func sqlOf(typ byte, body []byte) []byte {
	switch typ {
	case 'Q':
		return trimZero(body)
	case 'P':
		// Parse: statement name, then the query.
		for i, b := range body {
			if b == 0 {
				rest := body[i+1:]
				for j, c := range rest {
					if c == 0 {
						return rest[:j]
					}
				}
				return rest
			}
		}
	}
	return body
}

func trimZero(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == 0 {
		return b[:len(b)-1]
	}
	return b
}

func readUntyped(c net.Conn) ([]byte, error) {
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr))
	if n < 8 || n > 10000 {
		return nil, errors.New("faultproxy: bad startup packet")
	}
	pkt := make([]byte, n)
	copy(pkt, hdr)
	_, err := io.ReadFull(c, pkt[4:])
	return pkt, err
}
