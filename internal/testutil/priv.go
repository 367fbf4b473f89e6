package testutil

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// Privileged skips t unless the test runs as root (it needs CAP_NET_ADMIN,
// CAP_SYS_ADMIN and CAP_BPF for namespaces, interfaces and BPF programs).
func Privileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF); run the test binary with sudo")
	}
}

// SkipIfPermission skips t when err says the kernel refused the operation
// (EPERM/EACCES, e.g. in an unprivileged container) and fails it otherwise
// when err is not nil.
func SkipIfPermission(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("%s: kernel refused: %v", what, err)
	}
	t.Fatalf("%s: %v", what, err)
}

// NeedTools skips t when one of the named programs is not on PATH
// (test/run.sh installs them).
func NeedTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("needs %s on PATH (test/run.sh installs it): %v", n, err)
		}
	}
}
