package clients

import (
	"os"
	"os/exec"
	"testing"
)

// TestPsycopg2 runs testdata/workload.py with psycopg2 (Debian's python3-psycopg2).
func TestPsycopg2(t *testing.T) {
	python := findPsycopg2(t)
	w := prepare(t, "py")
	w.run(t, "testdata", nil, python, "workload.py")
	w.verify(t)
}

// findPsycopg2 returns a python3 that imports psycopg2: Debian's /usr/bin/python3 first
// (a python3 earlier on PATH, such as pyenv's, may lack it). When none does, it installs
// python3-psycopg2 with apt-get as root, and otherwise skips.
func findPsycopg2(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	found := false
	for _, py := range candidates {
		if _, err := os.Stat(py); err != nil {
			continue
		}
		found = true
		if exec.Command(py, "-c", "import psycopg2").Run() == nil {
			return py
		}
	}
	if !found {
		t.Skip("python3 not found: install python3 and python3-psycopg2 (Debian: apt-get install python3-psycopg2)")
	}
	if !canApt() {
		t.Skip("psycopg2 is not importable: install it (Debian, as root: apt-get install python3-psycopg2)")
	}
	if err := aptInstall(t, "python3-psycopg2"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import psycopg2").CombinedOutput(); err != nil {
		t.Fatalf("psycopg2 still not importable by /usr/bin/python3 after apt-get install python3-psycopg2: %v\n%s", err, out)
	}
	return "/usr/bin/python3"
}
