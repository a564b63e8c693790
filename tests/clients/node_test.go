package clients

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nodePackages are the npm packages the node-postgres workload needs, pinned so that the
// cached install stays valid.
var nodePackages = []string{"pg@8.23.1", "pg-copy-streams@6.0.6"}

// TestNodePostgres runs testdata/workload.js with node-postgres and pg-copy-streams.
func TestNodePostgres(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: install Node.js and npm (Debian: apt-get install nodejs npm)")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm not found: install npm (Debian: apt-get install npm)")
	}
	modules := nodeModules(t, npm)
	w := prepare(t, "node")
	w.run(t, "testdata", []string{"NODE_PATH=" + modules}, node, "workload.js")
	w.verify(t)
}

// nodeModules installs nodePackages once into a cache directory named after their
// versions and returns its node_modules. A half-done install never becomes visible: npm
// runs in a temporary directory that is renamed into place when it has finished.
func nodeModules(t *testing.T, npm string) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(strings.Join(nodePackages, " ")))
	base = filepath.Join(base, "pgshard")
	dir := filepath.Join(base, "node-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(modules); err == nil {
		return modules
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(base, "node-installing-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	t.Logf("npm install %s into %s", strings.Join(nodePackages, " "), dir)
	cmd := exec.Command(npm, append([]string{"install", "--no-audit", "--no-fund", "--no-save", "--prefix", tmp}, nodePackages...)...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s: %v\n%s", strings.Join(nodePackages, " "), err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another test process may have finished first.
		if _, serr := os.Stat(modules); serr != nil {
			t.Fatalf("move the npm install into place: %v", err)
		}
	}
	return modules
}
