//go:build linux

package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
	"github.com/ilamesh/ilamesh/deploy/lab/vm"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator"
)

// TestVMLiveMigration live-migrates a QEMU guest (TCG, a tap in its NVE's
// namespace) between NVEs under a 10 ms ping and a TCP echo stream, as
// libvirt would: the destination QEMU starts incoming, the libvirt hook
// (ilactl hook libvirt) prepares the task there, QMP migrate, the guest's
// announce commits it, the source's release detaches it; the source's
// ilad, told where the guest goes, redirects from its stop on. Loss is allowed
// only while the guest is paused (QEMU's downtime until the commit); TCP
// survives and DNS follows.
func TestVMLiveMigration(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds a data center in network namespaces")
	}
	testutil.NeedTools(t, "qemu-system-x86_64", "dpkg-deb")
	cache := os.Getenv("ILAMESH_VM_CACHE")
	if cache == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Skipf("no cache dir for the guest image: %v", err)
		}
		cache = filepath.Join(c, "ilamesh", "vm")
	}
	t.Setenv("ILAMESH_VM_CACHE", cache) // the lab builds its guest image there
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	_, err := vm.BuildImage(ctx, cache, func(s string) { t.Log(s) })
	cancel()
	if err != nil {
		t.Skipf("no guest image (needs busybox-static and the %s package from apt): %v", vm.KernelPackage, err)
	}
	l := upLab(t, lab.Config{VMTasks: 1})
	t.Cleanup(func() { // before the lab goes down: QEMU's and the guests' logs
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(l.StateDir(), "vm", "*", "*.log"))
		for _, p := range logs {
			b, _ := os.ReadFile(p)
			t.Logf("--- %s\n%s", strings.TrimPrefix(p, l.StateDir()+"/"), b[max(0, len(b)-3000):])
		}
	})
	rep, err := l.RunDemo(t.Context(), lab.DemoConfig{Before: time.Second, After: time.Second, Out: t.TempDir(), Workload: lab.WorkloadVM})
	if rep != nil {
		var sb strings.Builder
		rep.Text(&sb)
		t.Log("\n" + sb.String())
	}
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if rep.Workload != lab.WorkloadVM || rep.VM == nil || len(rep.Flows) != 2 {
		t.Fatalf("report: workload %q, vm %v, %d flows", rep.Workload, rep.VM, len(rep.Flows))
	}
	v := rep.VM
	if v.CommittedBy != "frame" || v.FirstFrame.IsZero() || v.Committed.Before(v.FirstFrame) || v.GuestResumed.Before(v.GuestStopped) || v.TotalTime <= 0 {
		t.Errorf("migration figures: %+v", v)
	}
	// The old NVE was told where the guest goes (the handover) and
	// redirected its packets from the guest's stop on.
	if v.EarlyRedirect.IsZero() {
		t.Errorf("the old NVE never redirected early (handover): %+v", v)
	} else if !v.EarlyRedirect.Before(v.Committed) {
		t.Logf("early redirect %v after the commit %v (a busy machine)", v.EarlyRedirect, v.Committed)
	}
	p, s := rep.Flows[0], rep.Flows[1]
	if p.Sent < 150 || s.Sent < 100 {
		t.Errorf("sent %d pings, %d stream chunks: want >= 150 and >= 100", p.Sent, s.Sent)
	}
	if s.Error != "" || s.Received != s.Sent {
		t.Errorf("tcp: sent %d received %d err %q: want the stream intact", s.Sent, s.Received, s.Error)
	}
	// Loss only inside the guest's pause (judged by the report).
	if len(rep.Problems) != 0 {
		t.Errorf("problems: %v", rep.Problems)
	}
	m, err := l.Mapped(t.Context(), "t4")
	if err != nil {
		t.Fatal(err)
	}
	if m.NVE != "nve2" || m.State != "active" {
		t.Errorf("mapsrv: t4 on %s state %s, want nve2 active", m.NVE, m.State)
	}
	pingAll(t, l, "t1", task(t, l, "t4").SIR, 30)
}

// TestCarryMove is the hot move that carries the NVE end of the task's only
// veth (ilalab --via carry), through the live migration's path: the port
// that arrives is prepared at the destination, the source redirects there
// at once (handover), and the task's own announce commits the move there.
func TestCarryMove(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds a data center in network namespaces")
	}
	l := upLab(t, lab.Config{})
	t3 := task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)
	pc := ping(t.Context(), l, "t1", t3.SIR, 1500*time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	r, err := l.MoveVia(t.Context(), "t3", "nve2", lab.MoveHot, lab.ViaCarry)
	if err != nil {
		t.Fatalf("move t3: %v", err)
	}
	f := <-pc
	logFlow(t, f)
	t.Logf("link moved %v, committed %v after the start", r.LinkMoved.Sub(r.Start), r.Committed.Sub(r.Start))
	client := func(nve string) *locator.Client {
		c, err := locator.NewClient(filepath.Join(l.StateDir(), "ilad-"+nve+".sock"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	st, err := client("nve2").Task(t.Context(), "t3")
	if err != nil || st.State != locator.StateActive || !st.Registered || (st.CommittedBy != locator.CommitByFrame && st.CommittedBy != locator.CommitByClaim) {
		t.Errorf("t3 at nve2: %+v, %v; want active, committed by its announce (frame or claim)", st, err)
	}
	old, err := client("nve3").Task(t.Context(), "t3")
	if err != nil || old.State != locator.StateMoved || old.HandoverTo != lab.LocatorOf(2) || old.RedirectedAt.IsZero() {
		t.Errorf("t3 at nve3: %+v, %v; want moved, handed over to nve2's locator and redirected", old, err)
	}
	m, err := l.Mapped(t.Context(), "t3")
	if err != nil || m.NVE != "nve2" {
		t.Fatalf("mapsrv: t3 %+v, %v; want it on nve2", m, err)
	}
	if f.Error != "" || f.Received == 0 {
		t.Errorf("ping across the carry: %+v", f)
	}
	pingAll(t, l, "t1", t3.SIR, 30)
	pingAll(t, l, "t2", t3.SIR, 30)
}
