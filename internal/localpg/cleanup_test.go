package localpg

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func serverPIDs(c *Cluster) []int {
	var pids []int
	for _, s := range c.Servers() {
		s.mu.Lock()
		if s.cmd != nil {
			pids = append(pids, s.cmd.Process.Pid)
		}
		s.mu.Unlock()
	}
	return pids
}

// waitGone waits until no process of pids is alive and dir has no entries.
func waitGone(t *testing.T, pids []int, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, "server process "+strconv.Itoa(pid))
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range entries {
			left = append(left, filepath.Join(dir, e.Name()))
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %s", strings.Join(left, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCloseRemovesEverything: Close stops the servers and removes the cluster's directory.
func TestCloseRemovesEverything(t *testing.T) {
	needServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	pids := serverPIDs(c)
	if len(pids) != 2 {
		t.Fatalf("%d server processes, want 2", len(pids))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("server process %d still running after Close", pid)
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s after Close: %v", c.dir, err)
	}
}

// TestNothingOutlivesTheProcess: a process that starts a cluster and dies without closing
// it (as a test binary does on a panic, a timeout or os.Exit) leaves neither running servers
// nor directories: not the cluster's, not the initdb template.
func TestNothingOutlivesTheProcess(t *testing.T) {
	if os.Getenv("LOCALPG_TEST_CHILD") != "" {
		// The child: start a cluster, say what it started, and wait to be killed.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := Start(ctx, Options{Workers: 1})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for _, pid := range serverPIDs(c) {
			fmt.Println("pid", pid)
		}
		fmt.Println("ready")
		time.Sleep(2 * time.Minute)
		os.Exit(1)
	}
	needServers(t)
	// A temporary directory of the child's own, to see everything it creates there.
	tmp, err := os.MkdirTemp("", "localpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(os.Args[0], "-test.run=^TestNothingOutlivesTheProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LOCALPG_TEST_CHILD=1", "TMPDIR="+tmp)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pids []int
	sc := bufio.NewScanner(out)
	for ready := false; !ready; {
		if !sc.Scan() {
			t.Fatalf("child ended before starting its cluster: %v", sc.Err())
		}
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "pid":
			pid, _ := strconv.Atoi(f[1])
			pids = append(pids, pid)
		case len(f) == 1 && f[0] == "ready":
			ready = true
		case len(f) > 0 && f[0] == "error":
			t.Fatal(sc.Text())
		}
	}
	entries, _ := os.ReadDir(tmp)
	if len(pids) != 2 || len(entries) == 0 {
		t.Fatalf("child: %d servers, %d directories in its TMPDIR", len(pids), len(entries))
	}
	// The harshest ending: no deferred function, no signal handler runs.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, pids, tmp)
}
