package localpg

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// A Dir is a temporary directory that is removed by Remove or, at the latest, when the
// process ends.
//
// Deferred functions and TestMain's code after m.Run do not run when a test binary panics,
// times out or calls os.Exit, and nothing in the process runs when it is killed. So the
// removal is also left to a small watcher process (sh) that holds the read end of a pipe
// whose only writer is this process: when this process ends, however it ends, the kernel
// closes the write end, the watcher reads end-of-file and removes the directory (retrying
// while dying servers release it). Remove removes the directory itself and then tells the
// watcher, with a line on the pipe, to exit without touching the path again.
type Dir struct {
	Path string

	mu      sync.Mutex
	watcher *exec.Cmd
	pipe    *os.File // write end; nil once released
}

// live holds every Dir not yet removed: were a Dir garbage collected, the finalizer of
// its pipe would close the write end and the watcher would remove the directory while
// it is in use.
var live = struct {
	sync.Mutex
	dirs map[*Dir]struct{}
}{dirs: map[*Dir]struct{}{}}

// watchScript is the watcher: $1 is the directory. A line on stdin means "removed, stand
// down"; end-of-file means the owner has died.
const watchScript = `if read -r _; then exit 0; fi
i=0
while [ -e "$1" ] && [ $i -lt 300 ]; do rm -rf -- "$1" 2>/dev/null || sleep 0.1; i=$((i+1)); done`

// TempDir creates a new directory in the system's temporary directory (os.MkdirTemp's
// pattern) that is removed by Remove or, at the latest, when the process ends.
func TempDir(pattern string) (*Dir, error) {
	path, err := os.MkdirTemp("", pattern)
	if err != nil {
		return nil, fmt.Errorf("localpg: temp dir: %w", err)
	}
	d := &Dir{Path: path}
	r, w, err := os.Pipe()
	if err != nil {
		os.RemoveAll(path)
		return nil, fmt.Errorf("localpg: watcher pipe: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", watchScript, "pgshard-localpg-watcher", path)
	cmd.Stdin = r
	// Its own process group: a terminal's Ctrl-C, which ends the owner, must not end the
	// watcher too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		os.RemoveAll(path)
		return nil, fmt.Errorf("localpg: start the watcher of %s: %w", path, err)
	}
	d.watcher, d.pipe = cmd, w
	live.Lock()
	live.dirs[d] = struct{}{}
	live.Unlock()
	return d, nil
}

// Remove removes the directory and everything in it, and stops its watcher.
func (d *Dir) Remove() error {
	err := os.RemoveAll(d.Path)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pipe == nil {
		return err
	}
	if err == nil {
		// Removed: the watcher must not remove a later directory of the same name.
		d.pipe.Write([]byte("removed\n"))
	}
	// Without the line (the removal failed), end-of-file makes the watcher try again.
	d.pipe.Close()
	d.pipe = nil
	d.watcher.Wait()
	live.Lock()
	delete(live.dirs, d)
	live.Unlock()
	if err != nil {
		return fmt.Errorf("localpg: remove %s: %w", d.Path, err)
	}
	return nil
}
