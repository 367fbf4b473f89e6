//go:build linux

package test

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
	"github.com/ilamesh/ilamesh/internal/netns"
)

// upLab builds a lab for one test and removes it (and checks that nothing
// is left) when the test ends.
func upLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: builds a data center in network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root (network namespaces, eBPF); run with sudo")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	// Clear what dead runs left (an interrupted test, a killed lab).
	left, err := lab.DownAll("", nil)
	for _, l := range left {
		if l.Kept == "" {
			t.Logf("removed %s %s, left by pid %d (gone): %s", l.Kind, l.Name, l.PID, strings.Join(l.Removed, ", "))
		}
	}
	if err != nil {
		t.Logf("clearing what dead runs left: %v", err)
	}
	cfg.Name = netns.Unique("e")
	cfg.StateDir = filepath.Join(t.TempDir(), "s")
	cfg.BinDir = binDir
	if cfg.NVEs == 0 {
		cfg.NVEs = 3
	}
	cfg.Progress = func(s string) { t.Log(s) }
	l, err := lab.Up(t.Context(), cfg)
	t.Cleanup(func() {
		if l != nil {
			if t.Failed() {
				dumpLogs(t, cfg.StateDir)
			}
			if err := l.Down(); err != nil {
				t.Errorf("down: %v", err)
			}
		} else if err := lab.Down(cfg.StateDir, cfg.Name, nil); err != nil {
			t.Errorf("down: %v", err)
		}
		names, _ := netns.List()
		for _, n := range names {
			if strings.HasPrefix(n, cfg.Name+"-") {
				t.Errorf("namespace %s left behind", n)
			}
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/bpf", cfg.Name)); err == nil {
			t.Errorf("bpf pins /sys/fs/bpf/%s left behind", cfg.Name)
		}
	})
	if err != nil {
		if l != nil {
			dumpLogs(t, cfg.StateDir)
		}
		t.Fatalf("up: %v", err)
	}
	return l
}

func dumpLogs(t *testing.T, dir string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("--- %s (last lines)\n%s", filepath.Base(p), strings.Join(lines, "\n"))
	}
}

// ping runs a ping for d at 10 ms in the background.
func ping(ctx context.Context, l *lab.Lab, src string, dst netip.Addr, d time.Duration) <-chan *lab.FlowStats {
	ch := make(chan *lab.FlowStats, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		st, err := l.Ping(ctx, src, dst, 10*time.Millisecond, 0, 300*time.Millisecond)
		if err != nil {
			st = &lab.FlowStats{Error: err.Error()}
		}
		ch <- st
	}()
	return ch
}

func task(t *testing.T, l *lab.Lab, name string) *lab.Task {
	t.Helper()
	tk, err := l.Topology().TaskByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func reach(t *testing.T, l *lab.Lab, src string, dst netip.Addr) {
	t.Helper()
	if err := l.WaitReachable(t.Context(), src, dst, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// pingAll pings n times at 10 ms and wants every reply.
func pingAll(t *testing.T, l *lab.Lab, src string, dst netip.Addr, n int) {
	t.Helper()
	st, err := l.Ping(t.Context(), src, dst, 10*time.Millisecond, n, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != n || st.Received != n {
		t.Errorf("ping %s -> %s: sent %d received %d, want %d/%d", src, dst, st.Sent, st.Received, n, n)
	}
}

func logFlow(t *testing.T, f *lab.FlowStats) {
	t.Helper()
	t.Logf("%s: sent %d received %d lost %d reordered %d dup %d longest gap %v err %q",
		f.Name, f.Sent, f.Received, f.Lost, f.Reordered, f.Duplicates, time.Duration(f.LongestGap), f.Error)
}

// TestHotMoveUnderTraffic is the demo scenario: ping every 10 ms and a TCP
// stream towards a task that moves hot to another NVE; the TCP stream must
// survive intact, DNS must follow, and the ping outage is bounded.
func TestHotMoveUnderTraffic(t *testing.T) {
	l := upLab(t, lab.Config{})
	out := t.TempDir()
	rep, err := l.RunDemo(t.Context(), lab.DemoConfig{Before: time.Second, After: time.Second, Out: out})
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	var sb strings.Builder
	rep.Text(&sb)
	t.Log("\n" + sb.String())
	if len(rep.Flows) != 2 {
		t.Fatalf("flows = %d, want 2", len(rep.Flows))
	}
	p, s := rep.Flows[0], rep.Flows[1]
	if p.Sent < 150 || p.Received+p.Lost != p.Sent {
		t.Errorf("ping: sent %d received %d lost %d: want >= 150 sent and the counts to add up", p.Sent, p.Received, p.Lost)
	}
	// The bar is zero loss, which the make-before-break link meets (see
	// TestHotMoveDualUnderTraffic). Carrying the veth end drops the task's
	// carrier while the kernel moves the device (15-60 ms here) and the new
	// NVE's ilad needs ~50 ms to attach the port, so a few pings go; fail
	// beyond a 200 ms outage.
	if p.Lost > 20 {
		t.Errorf("ping lost %d packets (longest gap %v), want at most 20", p.Lost, time.Duration(p.LongestGap))
	}
	if p.Duplicates != 0 || p.Reordered != 0 {
		t.Errorf("ping: %d duplicates, %d reordered, want none", p.Duplicates, p.Reordered)
	}
	if s.Error != "" || s.Sent < 100 || s.Received != s.Sent || s.Reordered != 0 {
		t.Errorf("tcp: sent %d received %d reordered %d err %q: want the stream intact", s.Sent, s.Received, s.Reordered, s.Error)
	}
	if !rep.DNSChanged {
		t.Errorf("DNS did not follow the move: before %v after %v", rep.DNSBefore, rep.DNSAfter)
	}
	// The fabric's ILA router (ilad -role router) applied the move too.
	routerSeen := false
	for _, c := range rep.Convergence {
		if c.Node == "router" {
			routerSeen = c.Seen
		}
	}
	if !routerSeen {
		t.Errorf("the ILA router did not apply the move: %+v", rep.Convergence)
	}
	m, err := l.Mapped(t.Context(), "t3")
	if err != nil {
		t.Fatal(err)
	}
	if m.NVE != "nve2" || m.State != "active" || m.Version < 2 {
		t.Errorf("mapsrv: t3 on %s state %s version %d, want nve2 active >= 2", m.NVE, m.State, m.Version)
	}
	for _, f := range []string{"report.json", "timeline.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	// After the move everything flows again.
	pingAll(t, l, "t1", task(t, l, "t3").SIR, 30)
}

// TestHotMoveDualUnderTraffic is the same scenario with a make-before-break
// link (a second veth to the new NVE, the old one removed after the
// commit): nothing may be lost.
func TestHotMoveDualUnderTraffic(t *testing.T) {
	l := upLab(t, lab.Config{})
	rep, err := l.RunDemo(t.Context(), lab.DemoConfig{Before: time.Second, After: time.Second, Out: t.TempDir(), Via: lab.ViaDual})
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	var sb strings.Builder
	rep.Text(&sb)
	t.Log("\n" + sb.String())
	if len(rep.Flows) != 2 {
		t.Fatalf("flows = %d, want 2", len(rep.Flows))
	}
	for _, f := range rep.Flows {
		if f.Sent < 100 || f.Lost != 0 || f.Reordered != 0 || f.Duplicates != 0 || f.Error != "" {
			t.Errorf("%s: sent %d lost %d reordered %d dup %d err %q: want nothing lost", f.Name, f.Sent, f.Lost, f.Reordered, f.Duplicates, f.Error)
		}
	}
	if !rep.DNSChanged {
		t.Errorf("DNS did not follow the move")
	}
	t3 := task(t, l, "t3")
	if t3.TaskIfname != "eth1" || t3.NVE != "nve2" {
		t.Errorf("t3 after the move: interface %q on %s, want eth1 on nve2", t3.TaskIfname, t3.NVE)
	}
	// And back, the same way, under traffic.
	pc := ping(t.Context(), l, "t1", t3.SIR, time.Second)
	time.Sleep(300 * time.Millisecond)
	if _, err := l.MoveVia(t.Context(), "t3", "nve3", lab.MoveHot, lab.ViaDual); err != nil {
		t.Fatalf("move back: %v", err)
	}
	f := <-pc
	logFlow(t, f)
	if f.Sent < 80 || f.Lost != 0 {
		t.Errorf("ping across the move back: sent %d lost %d, want none lost", f.Sent, f.Lost)
	}
	pingAll(t, l, "t2", t3.SIR, 30)
}

// TestIPv4AndIPv6Tenants runs both tenants side by side, then moves an
// IPv4 task hot under traffic.
func TestIPv4AndIPv6Tenants(t *testing.T) {
	l := upLab(t, lab.Config{IPv4Tenant: true})
	t5 := task(t, l, "t5")
	if !t5.IPv4.IsValid() || t5.Tenant != lab.IPv4Tenant {
		t.Fatalf("t5 = %+v, want an IPv4 tenant task", t5)
	}
	reach(t, l, "t1", task(t, l, "t2").SIR)
	reach(t, l, "t4", t5.IPv4)
	v6 := ping(t.Context(), l, "t1", task(t, l, "t2").SIR, 500*time.Millisecond)
	v4 := ping(t.Context(), l, "t4", t5.IPv4, 500*time.Millisecond)
	for _, f := range []*lab.FlowStats{<-v6, <-v4} {
		logFlow(t, f)
		if f.Error != "" || f.Sent < 40 || f.Received != f.Sent {
			t.Errorf("%s: sent %d received %d (%s), want all", f.Name, f.Sent, f.Received, f.Error)
		}
	}
	// Hot move of the IPv4 task t5 from nve2 to nve3 under traffic.
	pc := ping(t.Context(), l, "t4", t5.IPv4, 1500*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	r, err := l.Move(t.Context(), "t5", "nve3", lab.MoveHot)
	if err != nil {
		t.Fatalf("move t5: %v", err)
	}
	f := <-pc
	logFlow(t, f)
	t.Logf("move via %s: link %v, committed %v after the start", r.Via, r.LinkMoved.Sub(r.Start), r.Committed.Sub(r.Start))
	if f.Error != "" || f.Sent < 100 || f.Lost != 0 || f.Received != f.Sent {
		t.Errorf("ipv4 ping across the hot move: sent %d received %d lost %d (%s), want >= 100 sent and none lost", f.Sent, f.Received, f.Lost, f.Error)
	}
	m, err := l.Mapped(t.Context(), "t5")
	if err != nil {
		t.Fatal(err)
	}
	if m.NVE != "nve3" {
		t.Errorf("mapsrv: t5 on %s, want nve3", m.NVE)
	}
	pingAll(t, l, "t4", t5.IPv4, 30)
	pingAll(t, l, "t6", t5.IPv4, 30)
	pingAll(t, l, "t1", task(t, l, "t3").SIR, 30)
}

// TestColdMove suspends a task, carries it over and lets it register at its
// destination; traffic resumes afterwards.
func TestColdMove(t *testing.T) {
	l := upLab(t, lab.Config{})
	t3 := task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)
	pc := ping(t.Context(), l, "t1", t3.SIR, 1500*time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	r, err := l.Move(t.Context(), "t3", "nve1", lab.MoveCold)
	if err != nil {
		t.Fatalf("cold move: %v", err)
	}
	f := <-pc
	logFlow(t, f)
	t.Logf("cold move: committed %v, link %v, attached %v after the start", r.Committed.Sub(r.Start), r.LinkMoved.Sub(r.Start), r.Attached.Sub(r.Start))
	if f.Sent < 100 || f.Received+f.Lost != f.Sent {
		t.Errorf("ping: sent %d received %d lost %d", f.Sent, f.Received, f.Lost)
	}
	// Everything sent in the last 500 ms (well after the move) arrives.
	var late, lateOK int
	cut := r.Done.Add(300 * time.Millisecond)
	got := map[int]bool{}
	for _, a := range f.Arrivals {
		got[a.Seq] = true
	}
	for seq := 0; seq < f.Sent; seq++ {
		if f.FirstSent.Add(time.Duration(seq) * 10 * time.Millisecond).After(cut) {
			late++
			if got[seq] {
				lateOK++
			}
		}
	}
	if late == 0 || lateOK != late {
		t.Errorf("after the cold move: %d of %d late pings answered, want all", lateOK, late)
	}
	m, err := l.Mapped(t.Context(), "t3")
	if err != nil {
		t.Fatal(err)
	}
	if m.NVE != "nve1" || m.State != "active" {
		t.Errorf("mapsrv: t3 on %s state %s, want nve1 active", m.NVE, m.State)
	}
	pingAll(t, l, "t2", t3.SIR, 30)
}

// TestIladRestartUnderTraffic restarts the ilad of the destination's NVE
// while packets flow: the pinned datapath keeps forwarding.
func TestIladRestartUnderTraffic(t *testing.T) {
	l := upLab(t, lab.Config{})
	t3 := task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)
	pc := ping(t.Context(), l, "t1", t3.SIR, 2*time.Second)
	time.Sleep(300 * time.Millisecond)
	if err := l.Stop(lab.ProcIlad("nve3"), 5*time.Second); err != nil {
		t.Fatalf("stop ilad: %v", err)
	}
	time.Sleep(400 * time.Millisecond)
	if err := l.StartIlad(t.Context(), "nve3"); err != nil {
		t.Fatalf("restart ilad: %v", err)
	}
	f := <-pc
	logFlow(t, f)
	if f.Sent < 150 || f.Lost != 0 {
		t.Errorf("ping across the ilad restart: sent %d lost %d (%v), want >= 150 sent and none lost", f.Sent, f.Lost, f.LostSeqs)
	}
	// The restarted agent still serves t3 and follows moves.
	if _, err := l.Move(t.Context(), "t3", "nve1", lab.MoveHot); err != nil {
		t.Fatalf("move after restart: %v", err)
	}
	reach(t, l, "t2", t3.SIR)
	pingAll(t, l, "t2", t3.SIR, 30)
}

// TestMapsrvRestartUnderTraffic stops the mapping service (and its embedded
// etcd) while packets flow, then starts it again and moves a task.
func TestMapsrvRestartUnderTraffic(t *testing.T) {
	l := upLab(t, lab.Config{})
	t3 := task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)
	pc := ping(t.Context(), l, "t1", t3.SIR, 2*time.Second)
	time.Sleep(300 * time.Millisecond)
	if err := l.Stop(lab.ProcMapsrv, 5*time.Second); err != nil {
		t.Fatalf("stop mapsrv: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := l.StartMapsrv(t.Context()); err != nil {
		t.Fatalf("restart mapsrv: %v", err)
	}
	f := <-pc
	logFlow(t, f)
	if f.Sent < 150 || f.Lost != 0 {
		t.Errorf("ping across the mapsrv restart: sent %d lost %d (%v), want none lost", f.Sent, f.Lost, f.LostSeqs)
	}
	m, err := l.Mapped(t.Context(), "t3")
	if err != nil {
		t.Fatal(err)
	}
	if m.NVE != "nve3" {
		t.Errorf("after restart mapsrv says t3 on %s, want nve3", m.NVE)
	}
	if _, err := l.Move(t.Context(), "t3", "nve1", lab.MoveHot); err != nil {
		t.Fatalf("move after mapsrv restart: %v", err)
	}
	reach(t, l, "t2", t3.SIR)
	pingAll(t, l, "t2", t3.SIR, 30)
}

// TestEtcdUnreachableUnderTraffic freezes the mapping service and its
// embedded etcd (SIGSTOP: connections hang, nothing answers) while packets
// flow; data planes keep forwarding with their last state.
func TestEtcdUnreachableUnderTraffic(t *testing.T) {
	l := upLab(t, lab.Config{})
	t3 := task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)
	reach(t, l, "t2", t3.SIR)
	p1 := ping(t.Context(), l, "t1", t3.SIR, 2500*time.Millisecond)
	p2 := ping(t.Context(), l, "t2", task(t, l, "t1").SIR, 2500*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if err := l.Pause(lab.ProcMapsrv, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := l.Pause(lab.ProcMapsrv, true); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*lab.FlowStats{<-p1, <-p2} {
		logFlow(t, f)
		if f.Sent < 200 || f.Lost != 0 {
			t.Errorf("%s with etcd unreachable: sent %d lost %d, want none lost", f.Name, f.Sent, f.Lost)
		}
	}
	// Once etcd answers again, the watches resync and a move works.
	if _, err := l.Move(t.Context(), "t3", "nve2", lab.MoveHot); err != nil {
		t.Fatalf("move after etcd came back: %v", err)
	}
	reach(t, l, "t1", t3.SIR)
	pingAll(t, l, "t1", t3.SIR, 30)
}

// isICMPv6 reports whether an Ethernet frame is ICMPv6 of type typ whose
// target (NS/NA) is target.
func isND(frame []byte, typ byte, target netip.Addr) bool {
	if len(frame) < 14+40+24 || binary.BigEndian.Uint16(frame[12:]) != 0x86dd || frame[14+6] != 58 || frame[14+40] != typ {
		return false
	}
	return !target.IsValid() || netip.AddrFrom16([16]byte(frame[14+40+8:14+40+24])) == target
}

// isARP reports whether an Ethernet frame is an ARP packet with op for tpa
// (or, with op 2, from spa == tpa).
func isARP(frame []byte, op uint16, addr netip.Addr) bool {
	if len(frame) < 14+28 || binary.BigEndian.Uint16(frame[12:]) != 0x0806 || binary.BigEndian.Uint16(frame[14+6:]) != op {
		return false
	}
	a := addr.As4()
	if op == 1 {
		return [4]byte(frame[14+24:14+28]) == a
	}
	return [4]byte(frame[14+14:14+18]) == a
}

// TestSpoofingAndUnknownTargets: a spoofed NA and a spoofed gratuitous ARP
// move nothing; an NS and an ARP request for unknown addresses get no
// answer and reach no other task.
func TestSpoofingAndUnknownTargets(t *testing.T) {
	l := upLab(t, lab.Config{IPv4Tenant: true})
	t1, t2, t3 := task(t, l, "t1"), task(t, l, "t2"), task(t, l, "t3")
	t4, t5, t6 := task(t, l, "t4"), task(t, l, "t5"), task(t, l, "t6")
	reach(t, l, "t2", t3.SIR)
	reach(t, l, "t6", t5.IPv4)

	t.Run("spoofed NA", func(t *testing.T) {
		before, err := l.Mapped(t.Context(), "t3")
		if err != nil {
			t.Fatal(err)
		}
		pc := ping(t.Context(), l, "t2", t3.SIR, time.Second)
		time.Sleep(200 * time.Millisecond)
		for range 3 {
			if err := l.SendND("t1", t3.SIR, true); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		f := <-pc
		logFlow(t, f)
		if f.Sent < 80 || f.Lost != 0 {
			t.Errorf("ping t2 -> t3 during the spoofed NA: sent %d lost %d, want none lost", f.Sent, f.Lost)
		}
		after, err := l.Mapped(t.Context(), "t3")
		if err != nil {
			t.Fatal(err)
		}
		if after.NVE != before.NVE || after.Version != before.Version || after.State != "active" {
			t.Errorf("spoofed NA from t1 changed t3: before %+v after %+v", before, after)
		}
	})

	t.Run("spoofed gratuitous ARP", func(t *testing.T) {
		before, err := l.Mapped(t.Context(), "t5")
		if err != nil {
			t.Fatal(err)
		}
		pc := ping(t.Context(), l, "t6", t5.IPv4, time.Second)
		time.Sleep(200 * time.Millisecond)
		for range 3 {
			// t4 claims t5's address with its own MAC.
			if err := l.SendARP("t4", 1, nil, t5.IPv4, t5.IPv4); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		f := <-pc
		logFlow(t, f)
		if f.Sent < 80 || f.Lost != 0 {
			t.Errorf("ping t6 -> t5 during the spoofed ARP: sent %d lost %d, want none lost", f.Sent, f.Lost)
		}
		after, err := l.Mapped(t.Context(), "t5")
		if err != nil {
			t.Fatal(err)
		}
		if after.NVE != before.NVE || after.Version != before.Version || after.State != "active" {
			t.Errorf("spoofed ARP from t4 changed t5: before %+v after %+v", before, after)
		}
	})

	t.Run("NS for an unknown address", func(t *testing.T) {
		unknown := netip.MustParseAddr("fd00:5151::2000:0:dead:beef")
		answers, err := l.StartCapture("t1", func(b []byte) bool { return isND(b, 136, unknown) })
		if err != nil {
			t.Fatal(err)
		}
		var floods []*lab.Capture
		for _, o := range []*lab.Task{t2, t3} {
			c, err := l.StartCapture(o.Name, func(b []byte) bool { return isND(b, 135, unknown) })
			if err != nil {
				t.Fatal(err)
			}
			floods = append(floods, c)
		}
		// A known target for comparison: the capture works and the
		// emulator answers.
		known, err := l.StartCapture("t1", func(b []byte) bool { return isND(b, 136, t2.SIR) })
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := l.SendND("t1", unknown, false); err != nil {
				t.Fatal(err)
			}
			if err := l.SendND("t1", t2.SIR, false); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		if n, _ := answers.Stop(); n != 0 {
			t.Errorf("%d NAs for the unknown %s, want none", n, unknown)
		}
		for i, c := range floods {
			if n, _ := c.Stop(); n != 0 {
				t.Errorf("NS for %s reached %s %d times, want no flood", unknown, []string{"t2", "t3"}[i], n)
			}
		}
		if n, _ := known.Stop(); n < 3 {
			t.Errorf("%d NAs for the known %s, want at least 3 (one per NS)", n, t2.SIR)
		}
	})

	t.Run("unicast NUD probe stays on the link", func(t *testing.T) {
		// The ND emulator answers a task's unicast probe of a neighbour; the
		// probe itself must not travel to the neighbour (the datapath drops
		// it after the emulator's tap saw it).
		answers, err := l.StartCapture("t1", func(b []byte) bool { return isND(b, 136, t2.SIR) })
		if err != nil {
			t.Fatal(err)
		}
		// On the fabric link of t1's NVE: NS frames carrying t2's address
		// (the NVE's stack would forward them there).
		leaked, err := l.StartUplinkCapture(t1.NVE, func(b []byte) bool { return isND(b, 135, t2.SIR) })
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := l.SendNUD("t1", t2.SIR); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		if n, _ := answers.Stop(); n < 3 {
			t.Errorf("%d NAs answered t1's unicast NUD probes for %s, want at least 3", n, t2.SIR)
		}
		if n, _ := leaked.Stop(); n != 0 {
			t.Errorf("t1's unicast NUD probe for %s left %s on its fabric link %d times, want none (kept on t1's link)", t2.SIR, t1.NVE, n)
		}
	})

	t.Run("ARP for an unknown address", func(t *testing.T) {
		unknown := netip.MustParseAddr("10.100.0.99")
		answers, err := l.StartCapture("t4", func(b []byte) bool { return isARP(b, 2, unknown) })
		if err != nil {
			t.Fatal(err)
		}
		var floods []*lab.Capture
		for _, o := range []*lab.Task{t5, t6} {
			c, err := l.StartCapture(o.Name, func(b []byte) bool { return isARP(b, 1, unknown) })
			if err != nil {
				t.Fatal(err)
			}
			floods = append(floods, c)
		}
		known, err := l.StartCapture("t4", func(b []byte) bool { return isARP(b, 2, t6.IPv4) })
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := l.SendARP("t4", 1, nil, t4.IPv4, unknown); err != nil {
				t.Fatal(err)
			}
			if err := l.SendARP("t4", 1, nil, t4.IPv4, t6.IPv4); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		if n, _ := answers.Stop(); n != 0 {
			t.Errorf("%d ARP replies for the unknown %s, want none", n, unknown)
		}
		for i, c := range floods {
			if n, _ := c.Stop(); n != 0 {
				t.Errorf("ARP request for %s reached %s %d times, want no flood", unknown, []string{"t5", "t6"}[i], n)
			}
		}
		if n, _ := known.Stop(); n < 3 {
			t.Errorf("%d ARP replies for the known %s, want at least 3", n, t6.IPv4)
		}
	})
	_ = t1
}
