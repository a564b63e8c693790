package protocol

import (
	"os/exec"
	"strings"
	"testing"
)

// The protocol layer knows nothing of shards: it must not depend on the metadata, the
// router or the backend connections, directly or through another package.
func TestKnowsNothingOfShards(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/metadata", "/router", "/proxy/backend"} {
			if strings.HasPrefix(dep, "github.com/pgshard/pgshard") && strings.Contains(dep, banned) {
				t.Errorf("package protocol depends on %s", dep)
			}
		}
	}
}
