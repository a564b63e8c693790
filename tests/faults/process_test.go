package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshard/pgshard/tests/cluster"
	"github.com/pgshard/pgshard/tests/testproxy"
)

// startProxy starts another in-process proxy for the test.
func startProxy(t testing.TB) *testproxy.Proxy {
	t.Helper()
	p, err := testproxy.Start(context.Background(), env.c.Coordinator.URL("postgres"), testproxy.Options{LockTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

// buildBinary builds cmd/pgshard once per test run.
func buildBinary(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "pgshard")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/pgshard")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs `pgshard serve` as a separate process on a free port, with extra
// arguments.
func startProcess(t testing.TB, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr, "--coordinator", env.c.Coordinator.URL("postgres"), "--repair-interval", "0", "--log-level", "error"}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", addr)
	for i := 0; ; i++ {
		c, err := pgx.Connect(context.Background(), url)
		if err == nil {
			c.Close(context.Background())
			break
		}
		if i > 200 {
			cmd.Process.Kill()
			t.Fatalf("pgshard did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, url
}

// TestProxyKilledAfterMarking: the mark of a placement that missed a write is committed
// before the client hears of success. The proxy process is killed (SIGKILL) right after
// such a write; the mark is on the coordinator, and a restarted proxy avoids the placement.
func TestProxyKilledAfterMarking(t *testing.T) {
	defer resetFaults(t)
	bin := buildBinary(t)
	cmd, url := startProcess(t, bin)
	c := connectTo(t, url)
	tbl := table(t, c, 100)
	k, _ := keyOn(t, c, tbl, 1)
	env.fps[1].SetRefuse(true)
	env.fps[1].CutAll()
	c.exec(t, fmt.Sprintf("UPDATE %s SET v = 99 WHERE k = %d", tbl, k))
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	in := inactive(placements(t, tbl))
	if len(in) != 1 || in[0].workerIdx != 1 {
		t.Fatalf("after the kill: inactive %+v", in)
	}
	env.fps[1].SetRefuse(false)
	cmd2, url2 := startProcess(t, bin)
	defer func() {
		cmd2.Process.Signal(syscall.SIGINT)
		cmd2.Wait()
	}()
	c2 := connectTo(t, url2)
	// The restarted proxy reads from the finalized placement only.
	for i := 0; i < 5; i++ {
		if v := c2.int(t, fmt.Sprintf("SELECT v FROM %s WHERE k = %d", tbl, k)); v != 99 {
			t.Fatalf("restarted proxy read v = %d", v)
		}
	}
	var state string
	if err := c2.QueryRow(context.Background(), fmt.Sprintf("SHOW PLACEMENTS %d", in[0].shard)).Scan(nil, nil, nil, nil, nil, nil, &state); err != nil {
		t.Fatal(err)
	}
	repairAll(t, c2, tbl)
	consistent(t, tbl)
}
