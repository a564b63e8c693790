// Package testproxy runs pgshard proxies inside a test process.
package testproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/pgshard/pgshard/proxy"
)

// Proxy is a pgshard proxy running in this process.
type Proxy struct {
	Addr string // host:port it listens on
	Host string
	Port int

	srv    *proxy.Server
	cancel context.CancelFunc
	done   chan error
}

// Options configure StartProxy.
type Options struct {
	// Listen is the address (default 127.0.0.1:0, a free port).
	Listen string
	// RepairInterval enables the background repairer.
	RepairInterval time.Duration
	// LockTimeout bounds a repair's wait for the shard lock (default: the proxy's).
	LockTimeout time.Duration
	// Log receives the proxy's log; nil discards it unless PGSHARD_TEST_LOG is set.
	Log *slog.Logger
	// BatchRows sets the proxy's batch size for INSERT ... SELECT (default: the proxy's).
	BatchRows int
	// Config, if set, adjusts the proxy's configuration before it starts.
	Config func(*proxy.Config)
	// MaxClientConn, ClientLoginTimeout and ClientIdleTimeout set the proxy's client
	// limits (default: the proxy's).
	MaxClientConn      int
	ClientLoginTimeout time.Duration
	ClientIdleTimeout  time.Duration
	// IdleTransactionTimeout sets the proxy's IdleTransactionTimeout.
	IdleTransactionTimeout time.Duration
}

// StartProxy starts a proxy for the coordinator database at coordinatorURL.
func Start(ctx context.Context, coordinatorURL string, opts Options) (*Proxy, error) {
	log := opts.Log
	if log == nil {
		w := io.Discard
		if os.Getenv("PGSHARD_TEST_LOG") != "" {
			w = os.Stderr
		}
		log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := proxy.Config{Coordinator: coordinatorURL, Logger: log, RepairInterval: opts.RepairInterval, LockTimeout: opts.LockTimeout, BatchRows: opts.BatchRows,
		MaxClientConn: opts.MaxClientConn, ClientLoginTimeout: opts.ClientLoginTimeout, ClientIdleTimeout: opts.ClientIdleTimeout}
	cfg.IdleTransactionTimeout = opts.IdleTransactionTimeout
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	srv, err := proxy.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		srv.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Proxy{Addr: ln.Addr().String(), srv: srv, cancel: cancel, done: make(chan error, 1)}
	a := ln.Addr().(*net.TCPAddr)
	p.Host, p.Port = a.IP.String(), a.Port
	go func() {
		err := srv.Run(runCtx, ln)
		srv.Close()
		p.done <- err
	}()
	return p, nil
}

// URL is a connection URL for the proxy (database postgres, user postgres).
func (p *Proxy) URL() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", p.Addr)
}

// Server returns the proxy's server.
func (p *Proxy) Server() *proxy.Server { return p.srv }

// Stop shuts the proxy down and waits for it.
func (p *Proxy) Stop() error {
	p.cancel()
	err := <-p.done
	if errors.Is(err, proxy.ErrServerClosed) {
		return nil
	}
	return err
}
