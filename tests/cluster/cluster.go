// Package cluster is the test suites' name for internal/localpg, which starts throwaway
// PostgreSQL servers (a coordinator and workers) from the installed server binaries. The
// code lives in internal/localpg so that `pgshard demo` can use it without the binary
// linking anything under tests/; this package keeps the names the tests were written
// against.
package cluster

import (
	"context"
	"os/exec"

	"github.com/pgshard/pgshard/internal/localpg"
)

type (
	// Options configures a cluster (see localpg.Options).
	Options = localpg.Options
	// Cluster is a coordinator and its workers (see localpg.Cluster).
	Cluster = localpg.Cluster
	// Server is one PostgreSQL server (see localpg.Server).
	Server = localpg.Server
	// Dir is a temporary directory removed by Remove or when the process ends (see
	// localpg.Dir).
	Dir = localpg.Dir
)

// Start initializes and starts a coordinator and opts.Workers workers (see localpg.Start).
func Start(ctx context.Context, opts Options) (*Cluster, error) { return localpg.Start(ctx, opts) }

// NewServer creates a server's data directory at dir (see localpg.NewServer).
func NewServer(ctx context.Context, dir string, settings []string) (*Server, error) {
	return localpg.NewServer(ctx, dir, settings)
}

// BinDir finds the PostgreSQL server binaries (see localpg.BinDir).
func BinDir() (string, error) { return localpg.BinDir() }

// Available reports whether the server binaries can be found.
func Available() bool { return localpg.Available() }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) { return localpg.FreePort() }

// Command returns a command that runs as the servers' user (see localpg.Command).
func Command(name string, args ...string) *exec.Cmd { return localpg.Command(name, args...) }

// Chown hands a directory tree to the servers' user.
func Chown(dir string) error { return localpg.Chown(dir) }

// TempDir creates a temporary directory that is removed by Remove or, at the latest, when
// the process ends, however it ends (see localpg.TempDir): for whatever a test harness
// keeps in the system's temporary directory.
func TempDir(pattern string) (*Dir, error) { return localpg.TempDir(pattern) }
