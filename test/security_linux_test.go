//go:build linux

package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// TestManagementAPITLSAndRoles is finding 9 of issue 17 in the lab: the
// management API speaks TLS (ilactl verifies the certificate against the
// lab's CA and refuses it without), a read-only token lists but cannot
// move, an admin token moves, and every change leaves an audit line in
// mapsrv's log.
func TestManagementAPITLSAndRoles(t *testing.T) {
	l := upLab(t, lab.Config{NVEs: 2})
	m := l.Topology().Mapsrv
	if !strings.HasPrefix(m.API, "https://") || m.CAFile == "" || m.ReadOnlyTokenFile == "" {
		t.Fatalf("topology mapsrv %+v: want an https API, a CA file and a read-only token file", m)
	}
	ilactl := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", m.Netns, filepath.Join(binDir, "ilactl"), "--api", m.API}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	ro := []string{"--ca-file", m.CAFile, "--token-file", m.ReadOnlyTokenFile}
	admin := []string{"--ca-file", m.CAFile, "--token-file", m.TokenFile}
	if out, err := ilactl(append(ro, "task", "list")...); err != nil || !strings.Contains(out, "t1") {
		t.Errorf("read-only task list: %v\n%s", err, out)
	}
	if out, err := ilactl("--token-file", m.TokenFile, "task", "list"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("without the lab's CA: %v, want a certificate error\n%s", err, out)
	}
	if out, err := ilactl(append(ro, "task", "move", "t1", "--tenant", lab.IPv6Tenant, "--to", "nve2")...); err == nil || !strings.Contains(out, "read-only") {
		t.Errorf("move with the read-only token: %v, want it refused\n%s", err, out)
	}
	if m, err := l.Mapped(t.Context(), "t1"); err != nil || m.NVE != "nve1" {
		t.Errorf("after the refused move t1 is on %+v (%v), want nve1", m, err)
	}
	if out, err := ilactl(append(admin, "policy", "allow", "tenant1", "tenant2")...); err != nil {
		t.Errorf("admin policy allow: %v\n%s", err, out)
	}
	log, err := os.ReadFile(filepath.Join(l.StateDir(), "logs", "mapsrv.log"))
	if err != nil {
		t.Fatal(err)
	}
	var audit []string
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "api audit") && !strings.Contains(line, "/v1/domains") && !strings.Contains(line, "/v1/nves") && !strings.Contains(line, `"/v1/tasks"`) {
			audit = append(audit, line)
		}
	}
	if len(audit) != 2 || !strings.Contains(audit[0], "/v1/tasks/default/t1/move") || !strings.Contains(audit[0], "read-only") || !strings.Contains(audit[0], "403") ||
		!strings.Contains(audit[1], "/v1/policies") || !strings.Contains(audit[1], "admin") || !strings.Contains(audit[1], "201") {
		t.Errorf("audit lines:\n%s", strings.Join(audit, "\n"))
	}
}
