package testutil

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BPFFS mounts a fresh bpffs on a directory under t.TempDir() and returns
// its path; it is unmounted when the test ends. Skips when the kernel
// refuses the mount.
func BPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpffs", dir, "bpf", 0, ""); err != nil {
		SkipIfPermission(t, "mount bpffs", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return dir
}
