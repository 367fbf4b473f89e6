//go:build linux

package owner

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/internal/netns"
)

// The test binary doubles as a creator that dies: with OWNER_TEST_DIR set
// it makes a namespace and a bpffs mount as a test would (claiming them in
// that registry first), says "ready" and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("OWNER_TEST_DIR"); dir != "" {
		if err := create(Registry{Dir: dir}, os.Getenv("OWNER_TEST_NETNS"), os.Getenv("OWNER_TEST_BPFFS")); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// create makes a namespace and a bpffs mount, recording them first.
func create(g Registry, ns, mnt string) error {
	if err := g.Claim(Netns, ns, ""); err != nil {
		return err
	}
	n, err := netns.New(ns)
	if err != nil {
		return err
	}
	n.Close()
	if err := g.Claim(BPFFS, mnt, ""); err != nil {
		return err
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	return unix.Mount("bpffs", mnt, "bpf", 0, "")
}

func TestRunning(t *testing.T) {
	self := os.Getpid()
	start, err := StartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	if !Running(self, start) {
		t.Errorf("Running(self) = false")
	}
	if Running(self, start+1) {
		t.Errorf("Running(self, another start time) = true: a reused pid would pass")
	}
	if Running(0, 0) || Running(-1, 0) {
		t.Errorf("Running of pid 0 or -1 = true")
	}

	child := exec.Command("cat")
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	pid := child.Process.Pid
	cs, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !Running(pid, cs) {
		t.Errorf("Running(child) = false while it runs")
	}
	in.Close()
	// Not reaped yet: a zombie has exited.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, st, err := stat(pid); err == nil && st == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child did not exit")
		}
	}
	if Running(pid, cs) {
		t.Errorf("Running(zombie child) = true")
	}
	_ = child.Wait()
	if Running(pid, cs) {
		t.Errorf("Running(reaped child) = true")
	}
}

func TestRegistry(t *testing.T) {
	g := Registry{Dir: filepath.Join(t.TempDir(), "owners")}
	if recs, err := g.List(); err != nil || len(recs) != 0 {
		t.Fatalf("List of a missing dir = %v, %v; want nothing", recs, err)
	}
	start, _ := StartTime(os.Getpid())
	claims := []Record{
		{Kind: Netns, Name: "ilafab-abc123"},
		{Kind: BPFFS, Name: "/tmp/TestX/001"},
		{Kind: Lab, Name: "lb0000001", StateDir: "/tmp/TestY/002/state"},
	}
	var want []Record
	for _, c := range claims {
		if err := g.Claim(c.Kind, c.Name, c.StateDir); err != nil {
			t.Fatal(err)
		}
		c.PID, c.Start = os.Getpid(), start
		want = append(want, c)
	}
	// Neither a record being written nor a foreign file is a record; the
	// foreign one is reported and left.
	if err := os.WriteFile(filepath.Join(g.Dir, ".netns.x.123"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.Dir, "junk"), []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := g.List()
	if err == nil || !strings.Contains(err.Error(), "junk") {
		t.Errorf("List error %v, want one naming the file junk", err)
	}
	wantSorted := []Record{want[1], want[2], want[0]} // bpffs, lab, netns
	if diff := cmp.Diff(wantSorted, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if r, err := g.Get(BPFFS, "/tmp/TestX/001"); err != nil || !r.CreatorAlive() {
		t.Errorf("Get = %+v, %v; want our own live record", r, err)
	}
	if _, err := os.Stat(filepath.Join(g.Dir, "junk")); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
	for _, c := range claims {
		if err := g.Release(c.Kind, c.Name); err != nil {
			t.Fatal(err)
		}
		if err := g.Release(c.Kind, c.Name); err != nil {
			t.Errorf("second Release: %v", err)
		}
	}
	if got, _ := g.List(); len(got) != 0 {
		t.Errorf("after Release: %+v", got)
	}

	for _, bad := range []struct {
		kind           Kind
		name, stateDir string
	}{{Netns, "", ""}, {Netns, "a/b", ""}, {Netns, "..", ""}, {Lab, "x\x00", "/s"}, {Lab, "lb1", ""}, {Lab, "lb1", "rel/s"}, {BPFFS, "relative/dir", ""}, {"car", "x", ""}} {
		if err := g.Claim(bad.kind, bad.name, bad.stateDir); err == nil {
			t.Errorf("Claim(%q, %q, %q) accepted", bad.kind, bad.name, bad.stateDir)
		}
	}
	// A hand-written lab record without a state dir is refused, not
	// taken for the default lab's.
	if err := os.WriteFile(g.path(Lab, "lb2"), []byte(`{"kind":"lab","name":"lb2","pid":1,"start":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := g.Get(Lab, "lb2"); err == nil {
		t.Errorf("Get of a lab record without a state dir = %+v, want an error", r)
	}
}

// TestIntegrationSweep: a creator killed like a timed-out test leaves a
// namespace and a bpffs mount; Sweep removes them and keeps the live
// creator's.
func TestIntegrationSweep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, bpffs)")
	}
	g := Registry{Dir: filepath.Join(t.TempDir(), "owners")}
	tmp := t.TempDir()
	dead := struct{ ns, mnt string }{netns.Unique("owd"), filepath.Join(tmp, "dead-bpffs")}
	live := struct{ ns, mnt string }{netns.Unique("owl"), filepath.Join(tmp, "live-bpffs")}
	t.Cleanup(func() {
		for _, n := range []string{dead.ns, live.ns} {
			_ = netns.Remove(n)
		}
		for _, m := range []string{dead.mnt, live.mnt} {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	})

	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "OWNER_TEST_DIR="+g.Dir, "OWNER_TEST_NETNS="+dead.ns, "OWNER_TEST_BPFFS="+dead.mnt)
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatalf("creator: %q", line)
	}
	if err := create(g, live.ns, live.mnt); err != nil {
		t.Fatal(err)
	}
	// While the creator runs, nothing of its goes.
	swept, err := g.Sweep(Netns, BPFFS)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range swept {
		if s.Outcome != Kept {
			t.Errorf("with every creator alive, %s %s: outcome %d, want kept", s.Kind, s.Name, s.Outcome)
		}
	}
	if len(swept) != 4 {
		t.Errorf("swept %d records, want 4", len(swept))
	}

	_ = child.Process.Signal(syscall.SIGKILL)
	_ = child.Wait()
	// A record whose creator and object are both gone.
	if err := os.WriteFile(g.path(Netns, "owgone"), fmt.Appendf(nil, `{"kind":"netns","name":"owgone","pid":%d,"start":1}`, child.Process.Pid), 0o644); err != nil {
		t.Fatal(err)
	}

	swept, err = g.Sweep(Netns, BPFFS)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Outcome{}
	for _, s := range swept {
		got[s.Name] = s.Outcome
	}
	want := map[string]Outcome{dead.ns: Removed, dead.mnt: Removed, "owgone": Forgotten, live.ns: Kept, live.mnt: Kept}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Sweep outcomes (-want +got):\n%s", diff)
	}
	if _, err := os.Lstat(filepath.Join(netns.Dir, dead.ns)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead creator's namespace %s still there: %v", dead.ns, err)
	}
	if _, err := os.Stat(dead.mnt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead creator's bpffs %s still there: %v", dead.mnt, err)
	}
	if _, err := os.Lstat(filepath.Join(netns.Dir, live.ns)); err != nil {
		t.Errorf("live creator's namespace %s removed: %v", live.ns, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(live.mnt, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Errorf("live creator's bpffs %s unmounted: %v", live.mnt, err)
	}
	recs, _ := g.List()
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{live.mnt, live.ns}, names); diff != "" {
		t.Errorf("records left (-want +got):\n%s", diff)
	}
}
