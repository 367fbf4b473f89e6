//go:build linux

package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/owner"
)

// The test binary doubles as a run that dies: with LAB_TEST_OWNERS set it
// builds the underlay-only labs named in LAB_TEST_LABS (name=statedir,
// comma-separated) and a namespace LAB_TEST_NETNS the way a test would,
// recording them in that registry, says "ready" and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("LAB_TEST_OWNERS"); dir != "" {
		if err := dyingRun(dir); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func dyingRun(ownerDir string) error {
	for _, l := range strings.Split(os.Getenv("LAB_TEST_LABS"), ",") {
		name, dir, _ := strings.Cut(l, "=")
		lab, err := Up(context.Background(), Config{Name: name, StateDir: dir, NVEs: 1, UnderlayOnly: true, OwnerDir: ownerDir})
		if err != nil {
			return err
		}
		lab.Close()
	}
	ns := os.Getenv("LAB_TEST_NETNS")
	if err := (owner.Registry{Dir: ownerDir}).Claim(owner.Netns, ns, ""); err != nil {
		return err
	}
	n, err := netns.New(ns)
	if err != nil {
		return err
	}
	return n.Close()
}

// TestIntegrationDownAll: a run killed like a timed-out test leaves two
// labs and a namespace; DownAll removes the lab with nothing running and
// the namespace, and keeps the lab one of whose daemons still runs and the
// lab of a live process.
func TestIntegrationDownAll(t *testing.T) {
	privileged(t)
	owners := filepath.Join(t.TempDir(), "owners")
	dead := netns.Unique("ld")
	daemon := netns.Unique("lm")
	deadNS := netns.Unique("lnd")
	deadDir, daemonDir := filepath.Join(t.TempDir(), "s"), filepath.Join(t.TempDir(), "s")
	t.Cleanup(func() {
		_ = Down(deadDir, dead, nil)
		_ = Down(daemonDir, daemon, nil)
		_ = netns.Remove(deadNS)
	})

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "LAB_TEST_OWNERS="+owners, "LAB_TEST_LABS="+dead+"="+deadDir+","+daemon+"="+daemonDir, "LAB_TEST_NETNS="+deadNS)
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatalf("dying run: %q", line)
	}

	// The live lab, built by this process.
	live := netns.Unique("ll")
	liveDir := filepath.Join(t.TempDir(), "s")
	ll, err := Up(t.Context(), Config{Name: live, StateDir: liveDir, NVEs: 1, UnderlayOnly: true, OwnerDir: owners})
	t.Cleanup(func() {
		if ll != nil {
			if err := ll.Down(); err != nil {
				t.Errorf("down %s: %v", live, err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	// Nothing goes while the run lives.
	left, err := DownAll(owners, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l.Kept == "" {
			t.Errorf("with its creator alive, %s %s was removed: %v", l.Kind, l.Name, l.Removed)
		}
	}

	// One lab keeps a daemon running after the run dies.
	sleep := exec.Command("sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", sleep.Process.Pid))
	if err := os.MkdirAll(filepath.Join(daemonDir, "pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(daemonDir, "pids", "mapsrv.pid"), fmt.Appendf(nil, "%d %s\n", sleep.Process.Pid, exe), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = child.Process.Signal(syscall.SIGKILL)
	_ = child.Wait()

	var lines []string
	left, err = DownAll(owners, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l.Kept != "" {
			lines = append(lines, fmt.Sprintf("kept %s %s: %s", l.Kind, l.Name, l.Kept))
		} else {
			lines = append(lines, fmt.Sprintf("removed %s %s: %s", l.Kind, l.Name, strings.Join(l.Removed, ", ")))
		}
	}
	want := []string{
		fmt.Sprintf("removed lab %s: namespace %s-ctl, namespace %s-fabric, namespace %s-nve1, namespace %s-t1, state dir %s", dead, dead, dead, dead, dead, deadDir),
		fmt.Sprintf("kept lab %s: pid %d, which built it, runs", live, os.Getpid()),
		fmt.Sprintf("kept lab %s: mapsrv runs (pid %d)", daemon, sleep.Process.Pid),
		fmt.Sprintf("removed netns %s: netns %s", deadNS, deadNS),
	}
	if diff := cmp.Diff(sorted(want), sorted(lines)); diff != "" {
		t.Errorf("DownAll (-want +got):\n%s", diff)
	}
	names := mustList(t)
	for _, n := range names {
		if strings.HasPrefix(n, dead+"-") || n == deadNS {
			t.Errorf("namespace %s of the dead run left", n)
		}
	}
	for _, keep := range []string{live + "-fabric", daemon + "-fabric"} {
		if !slices.Contains(names, keep) {
			t.Errorf("namespace %s of a live lab removed", keep)
		}
	}
	if _, err := os.Stat(deadDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir of the dead lab left: %v", err)
	}
	recs, _ := owner.Registry{Dir: owners}.List()
	var got []string
	for _, r := range recs {
		got = append(got, r.Name)
	}
	if diff := cmp.Diff(sorted([]string{live, daemon}), sorted(got)); diff != "" {
		t.Errorf("records left (-want +got):\n%s", diff)
	}

	// Down of a recorded lab releases its record.
	if err := ll.Down(); err != nil {
		t.Fatal(err)
	}
	ll = nil
	if _, err := (owner.Registry{Dir: owners}).Get(owner.Lab, live); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record of %s after its Down: %v", live, err)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// clearStale removes what dead runs left (DownAll on the default records)
// before a test builds a lab of its own, and logs it.
func clearStale(t *testing.T) {
	t.Helper()
	left, err := DownAll("", nil)
	for _, l := range left {
		if l.Kept == "" {
			t.Logf("removed %s %s, left by pid %d (gone): %s", l.Kind, l.Name, l.PID, strings.Join(l.Removed, ", "))
		}
	}
	if err != nil {
		t.Logf("clearing what dead runs left: %v", err)
	}
}
