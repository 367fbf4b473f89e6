//go:build linux

package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/internal/netns"
)

// TestCLIDownAll: a lab whose builder has exited and which runs no daemon
// (`ilalab up --underlay-only`) is what `ilalab down --all` removes, and
// it says so; a second run finds nothing of it.
func TestCLIDownAll(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	name := netns.Unique("g")
	state := filepath.Join(t.TempDir(), "s")
	ilalab := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, "ilalab"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ilalab %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		_, _ = exec.Command(filepath.Join(binDir, "ilalab"), "down", "--name", name, "--state-dir", state, "-q").CombinedOutput()
	})
	ilalab("up", "--underlay-only", "--nves", "1", "--host-link=false", "--name", name, "--state-dir", state, "-q")
	out := ilalab("down", "--all")
	want := fmt.Sprintf("removed lab %s (state %s), left by pid ", name, state)
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, want) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("down --all did not report %q:\n%s", want, out)
	}
	for _, n := range []string{name + "-fabric", name + "-nve1", name + "-t1", "state dir " + state} {
		if !strings.Contains(line, n) {
			t.Errorf("down --all: %q does not name %s", line, n)
		}
	}
	names, _ := netns.List()
	for _, n := range names {
		if strings.HasPrefix(n, name+"-") {
			t.Errorf("namespace %s left after down --all", n)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir left after down --all: %v", err)
	}
	if out := ilalab("down", "--all"); strings.Contains(out, name) {
		t.Errorf("second down --all still names %s:\n%s", name, out)
	}
}
