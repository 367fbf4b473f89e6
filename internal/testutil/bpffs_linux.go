package testutil

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/internal/owner"
)

// BPFFS mounts a fresh bpffs on a directory under t.TempDir() and returns
// its path; it is unmounted when the test ends. Skips when the kernel
// refuses the mount. Like NewNetNS, it records the mount as this
// process's first, so that a test that dies before its cleanup does not
// leave it (and what is pinned in it) for good.
func BPFFS(t testing.TB) string {
	t.Helper()
	SweepStale(t)
	dir := t.TempDir()
	if err := (owner.Registry{}).Claim(owner.BPFFS, dir, ""); err != nil {
		SkipIfPermission(t, "record bpffs "+dir, err)
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, ""); err != nil {
		_ = (owner.Registry{}).Release(owner.BPFFS, dir)
		SkipIfPermission(t, "mount bpffs", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
			return
		}
		if err := (owner.Registry{}).Release(owner.BPFFS, dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// SweepStale removes the namespaces and bpffs mounts that test processes
// which have died left behind (see internal/owner), and logs them. Those
// of live processes, such as a test run beside this one, stay.
func SweepStale(t testing.TB) {
	t.Helper()
	swept, err := (owner.Registry{}).Sweep(owner.Netns, owner.BPFFS)
	for _, s := range swept {
		if s.Outcome == owner.Removed {
			t.Logf("removed %s %s left by pid %d, which is gone", s.Kind, s.Name, s.PID)
		}
	}
	if err != nil {
		t.Logf("clearing what dead test runs left: %v", err)
	}
}
