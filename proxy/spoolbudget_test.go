package proxy

import (
	"errors"
	"testing"

	"github.com/pgshard/pgshard/pgerr"
)

// A session's spools share its budget: together they keep at most work-mem in memory
// and temp-file-limit bytes in files, and give back what they held when they close.
func TestSpoolBudget(t *testing.T) {
	srv := &Server{cfg: Config{WorkMem: 64, TempDir: t.TempDir(), TempFileLimit: 100}}
	b := newSpoolBudget(srv, nil)
	a, c := b.newSpool(), b.newSpool()
	if err := a.WriteFrame('D', make([]byte, 40)); err != nil {
		t.Fatal(err)
	}
	if b.spoolMem != 45 || b.spoolFiles != 0 {
		t.Fatalf("after a write that fits: spoolMem %d, spoolFiles %d", b.spoolMem, b.spoolFiles)
	}
	// The second spool finds work-mem mostly taken by the first: what does not fit goes
	// to a file.
	if err := c.WriteFrame('D', make([]byte, 40)); err != nil {
		t.Fatal(err)
	}
	if b.spoolMem != 50 || b.spoolFiles != 1 || b.tempBytes != 40 {
		t.Fatalf("after a write past work-mem: spoolMem %d, spoolFiles %d, tempBytes %d", b.spoolMem, b.spoolFiles, b.tempBytes)
	}
	// The files of the session together are bounded.
	err := a.WriteFrame('D', make([]byte, 70))
	var e *pgerr.Error
	if !errors.As(err, &e) || e.Code != pgerr.ConfigurationLimitExceeded {
		t.Fatalf("past temp-file-limit: %v, want %s", err, pgerr.ConfigurationLimitExceeded)
	}
	a.Close()
	c.Close()
	if b.spoolMem != 0 || b.spoolFiles != 0 || b.tempBytes != 0 || srv.spoolFiles.Load() != 0 {
		t.Fatalf("after Close: spoolMem %d, spoolFiles %d, tempBytes %d, server files %d", b.spoolMem, b.spoolFiles, b.tempBytes, srv.spoolFiles.Load())
	}
}

// Without configuration the budget takes PostgreSQL's work_mem and pgshard's default
// temp-file-limit.
func TestSpoolBudgetDefaults(t *testing.T) {
	b := newSpoolBudget(&Server{}, nil)
	sp := b.newSpool()
	defer sp.Close()
	if sp.memMax != defaultWorkMem || sp.limit != defaultTempFileLimit {
		t.Fatalf("memMax %d, limit %d; want %d, %d", sp.memMax, sp.limit, defaultWorkMem, defaultTempFileLimit)
	}
}
