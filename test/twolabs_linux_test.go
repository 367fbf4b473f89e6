//go:build linux

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/internal/netns"
)

// TestTwoLabsDownIndependently (issue 18, weakness 7): two labs on one
// machine come up and go down independently, in either order, and leave
// no namespace behind, also when /run/netns became a bind mount of itself
// between them (as `ip netns add` makes it on a machine where it is not
// one yet, after boot): the first lab's names are then mounted twice, and
// `ilalab down` used to fail with "device or resource busy" and leave
// them. The test runs in a private mount namespace (unshare -m) that
// starts without that bind mount, so the host's mounts are not changed.
func TestTwoLabsDownIndependently(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	for _, c := range []string{"unshare", "ip", "umount"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("e2e: needs %s", c)
		}
	}
	a, b := netns.Unique("wa"), netns.Unique("wb")
	other := netns.Unique("wx")
	dir := t.TempDir()
	script := `
set -u
ilalab=$1 a=$2 b=$3 other=$4 dir=$5
cleanup() {
	$ilalab down -q --name $a --state-dir $dir/a >/dev/null 2>&1
	$ilalab down -q --name $b --state-dir $dir/b >/dev/null 2>&1
	ip netns del $other 2>/dev/null
}
trap cleanup EXIT
umount -l /run/netns 2>/dev/null # as after boot: not a mount point
$ilalab up -q --underlay-only --nves 1 --host-link=false --name $a --state-dir $dir/a >/dev/null || exit 1
ip netns add $other || exit 1 # makes /run/netns a bind mount of itself
$ilalab up -q --underlay-only --nves 1 --host-link=false --name $b --state-dir $dir/b >/dev/null || exit 1
ip netns del $other
echo "# down $a"
$ilalab down -q --name $a --state-dir $dir/a 2>&1 || echo "down $a failed"
echo "# left: $(ls /run/netns | grep -e "^$a-" | tr '\n' ' ')"
echo "# down $b"
$ilalab down -q --name $b --state-dir $dir/b 2>&1 || echo "down $b failed"
echo "# left: $(ls /run/netns | grep -e "^$a-" -e "^$b-" | tr '\n' ' ')"
`
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "bash", "-c", script, "sh",
		filepath.Join(binDir, "ilalab"), a, b, other, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	s := string(out)
	t.Logf("script:\n%s", s)
	if strings.Contains(s, "failed") || strings.Contains(s, "busy") {
		t.Errorf("ilalab down failed:\n%s", s)
	}
	for _, l := range strings.Split(s, "\n") {
		if left, ok := strings.CutPrefix(l, "# left: "); ok && strings.TrimSpace(left) != "" {
			t.Errorf("namespaces left after down: %s", left)
		}
	}
	// Nothing of either lab is left in the host's view either.
	names, _ := netns.List()
	for _, n := range names {
		if strings.HasPrefix(n, a+"-") || strings.HasPrefix(n, b+"-") {
			t.Errorf("namespace %s left on the host", n)
			_ = os.Remove(filepath.Join(netns.Dir, n))
		}
	}
}
