//go:build linux

package test

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// waitRoute waits up to d until the fabric's kernel has (want) or has not
// the BGP route to prefix, and returns how long that took.
func waitRoute(t *testing.T, l *lab.Lab, prefix netip.Prefix, want bool, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		rs, err := l.FabricRoutes("")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rs[prefix]; ok == want {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("route %s in the fabric: want present=%v after %v; routes %v", prefix, want, d, rs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFabricFRR: FRR in the fabric learns every NVE's locator from the
// NVEs' ilad (next hop: the NVE's underlay address); a host whose link
// dies is withdrawn at once, a hung ilad after the hold time plus the
// graceful restart time, and both come back.
func TestFabricFRR(t *testing.T) {
	if !lab.FRRInstalled() {
		t.Skip("e2e: FRR is not installed (apt install frr)")
	}
	l := upLab(t, lab.Config{Fabric: lab.FabricFRR, BGPRestart: 10 * time.Second}) // the hung ilad below waits it out
	topo := l.Topology()
	if topo.Fabric.Kind != lab.FabricFRR || len(topo.Fabric.DCs) != 1 {
		t.Fatalf("topology fabric %+v: want frr, one DC", topo.Fabric)
	}
	rs, err := l.FabricRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	out, err := l.Vtysh(t.Context(), "", "show bgp ipv6 unicast")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range topo.NVEs {
		if gw, ok := rs[n.Locator.Prefix()]; !ok || gw != n.Underlay {
			t.Errorf("fabric kernel route for %s (%s): via %v (present %v); want via %s, proto bgp", n.Name, n.Locator.Prefix(), gw, ok, n.Underlay)
		}
		if !strings.Contains(out, n.Locator.Prefix().String()) {
			t.Errorf("vtysh show bgp ipv6 unicast lacks %s:\n%s", n.Locator.Prefix(), out)
		}
	}
	if len(rs) != len(topo.NVEs) {
		t.Errorf("fabric BGP routes %v: want exactly one per NVE", rs)
	}
	t1, t3 := task(t, l, "t1"), task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)

	// ilactl nve drain withdraws the locator, undrain announces it again.
	nve1 := topo.NVEs[0]
	sock := filepath.Join(l.StateDir(), "ilad-"+nve1.Name+".sock")
	for _, verb := range []string{"drain", "bgp", "undrain"} {
		out, err := exec.CommandContext(t.Context(), filepath.Join(binDir, "ilactl"), "nve", verb, "--ilad", sock).CombinedOutput()
		if err != nil {
			t.Fatalf("ilactl nve %s: %v\n%s", verb, err, out)
		}
		t.Logf("ilactl nve %s:\n%s", verb, out)
		switch verb {
		case "drain":
			took := waitRoute(t, l, nve1.Locator.Prefix(), false, 10*time.Second)
			t.Logf("drain: %s withdrawn from the fabric in %v", nve1.Locator.Prefix(), took)
		case "bgp":
			if !strings.Contains(string(out), "drained true") || !strings.Contains(string(out), "established") {
				t.Errorf("ilactl nve bgp on a drained NVE: want drained true and the session established:\n%s", out)
			}
		case "undrain":
			waitRoute(t, l, nve1.Locator.Prefix(), true, 10*time.Second)
		}
	}

	// A dead link: the fabric's port goes down, FRR drops the route.
	nve3 := topo.NVEs[2]
	if err := l.SetUplink(nve3.Name, false); err != nil {
		t.Fatal(err)
	}
	took := waitRoute(t, l, nve3.Locator.Prefix(), false, 10*time.Second)
	t.Logf("link down: %s withdrawn from the fabric in %v", nve3.Locator.Prefix(), took)
	if err := l.SetUplink(nve3.Name, true); err != nil {
		t.Fatal(err)
	}
	took = waitRoute(t, l, nve3.Locator.Prefix(), true, 20*time.Second)
	t.Logf("link up: %s routed again in %v", nve3.Locator.Prefix(), took)
	reach(t, l, "t1", t3.SIR)

	// A hung ilad (stopped; its datapath keeps forwarding): the session
	// dies at the hold time (3s) and FRR keeps the route as stale for the
	// graceful restart time (10s), then withdraws it.
	nve2 := topo.NVEs[1]
	pid := nve2.PID
	if pid == 0 {
		t.Fatalf("no ilad pid for %s", nve2.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)
	time.Sleep(time.Second)
	if _, ok := mustRoutes(t, l)[nve2.Locator.Prefix()]; !ok {
		t.Fatalf("%s withdrawn 1s after ilad stopped: want it kept until hold + restart time", nve2.Locator.Prefix())
	}
	took = time.Second + waitRoute(t, l, nve2.Locator.Prefix(), false, 25*time.Second)
	t.Logf("hung ilad: %s withdrawn after %v (hold 3s + graceful restart 10s)", nve2.Locator.Prefix(), took)
	if took < 10*time.Second {
		t.Errorf("hung ilad's locator withdrawn after %v: want the graceful restart time (10s) to pass first", took)
	}
	cont()
	took = waitRoute(t, l, nve2.Locator.Prefix(), true, 20*time.Second)
	t.Logf("ilad continued: %s routed again in %v", nve2.Locator.Prefix(), took)
	reach(t, l, "t1", task(t, l, "t2").SIR)
	_ = t1
}

func mustRoutes(t *testing.T, l *lab.Lab) map[netip.Prefix]netip.Addr {
	t.Helper()
	rs, err := l.FabricRoutes("")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestInterDCMove: two data centres, each a fabric with FRR, its NVEs and
// its ILA router, the fabrics joined by an interconnect with eBGP. Every
// fabric routes every locator (its own over iBGP from the hosts, the
// other DC's over eBGP); t3 moves hot from nve3 (dc1) to nve2 (dc2) under
// a 10 ms ping from t1 (dc1) and a TCP stream from t2 (dc2): nothing lost,
// and t1's packets then go straight to t3's new locator in dc2.
func TestInterDCMove(t *testing.T) {
	if !lab.FRRInstalled() {
		t.Skip("e2e: FRR is not installed (apt install frr)")
	}
	l := upLab(t, lab.Config{Fabric: lab.FabricFRR, DCs: 2})
	topo := l.Topology()
	if len(topo.Fabric.DCs) != 2 {
		t.Fatalf("fabric %+v: want 2 DCs", topo.Fabric)
	}
	dcOf := map[string]string{}
	for _, n := range topo.NVEs {
		dcOf[n.Name] = n.DC
	}
	if dcOf["nve1"] != "dc1" || dcOf["nve2"] != "dc2" || dcOf["nve3"] != "dc1" {
		t.Fatalf("nves[].dc = %v: want nve1, nve3 in dc1 and nve2 in dc2", dcOf)
	}
	for _, dc := range topo.Fabric.DCs {
		rs, err := l.FabricRoutes(dc.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range topo.NVEs {
			gw, ok := rs[n.Locator.Prefix()]
			switch {
			case !ok:
				t.Errorf("%s: no route for %s's locator %s", dc.Name, n.Name, n.Locator.Prefix())
			case n.DC == dc.Name && gw != n.Underlay:
				t.Errorf("%s: %s via %s, want via the host %s (iBGP)", dc.Name, n.Locator.Prefix(), gw, n.Underlay)
			case n.DC != dc.Name && !gw.IsLinkLocalUnicast() && !strings.HasPrefix(gw.String(), "fd00:ff:d0:"):
				// FRR's datacenter defaults use the other fabric's
				// link-local address on the interconnect as next hop.
				t.Errorf("%s: %s via %s, want via the DC interconnect (eBGP)", dc.Name, n.Locator.Prefix(), gw)
			}
		}
	}
	rep, err := l.RunDemo(t.Context(), lab.DemoConfig{Before: time.Second, After: time.Second, Out: t.TempDir()})
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
	t3 := task(t, l, "t3")
	if t3.NVE != "nve2" {
		t.Fatalf("t3 on %s after the move, want nve2 (dc2)", t3.NVE)
	}
	for _, c := range rep.Convergence {
		if (c.Node == "nve1" || c.Node == "router") && !c.Seen {
			t.Errorf("%s (dc1) did not apply the move: %+v", c.Node, rep.Convergence)
		}
	}
	pingAll(t, l, "t1", t3.SIR, 30)
}

// waitSIRNextHops waits up to d until the fabric routes the SIR prefix
// over exactly want (BGP, ECMP) and returns how long that took.
func waitSIRNextHops(t *testing.T, l *lab.Lab, want []netip.Addr, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, err := l.SIRNextHops()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("SIR prefix %s in the fabric: via %v after %v, want via %v", lab.SIRPrefix, got, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAnycastSIRRouters: two ILA routers, each in its own namespace on a
// link to the fabric, announce the SIR prefix to the fabric's FRR, which
// routes it over both (ECMP). A host outside ILA (the control namespace:
// no mapping, its packets to a SIR address take a router) pings t3 every
// 10 ms while each router in turn fails (ilad killed, link down) and
// recovers: the fabric drops the dead router's path and the pings keep
// being answered by the other.
func TestAnycastSIRRouters(t *testing.T) {
	if !lab.FRRInstalled() {
		t.Skip("e2e: FRR is not installed (apt install frr)")
	}
	l := upLab(t, lab.Config{Fabric: lab.FabricFRR, Routers: 2})
	ctx := t.Context()
	topo := l.Topology()
	if len(topo.Routers) != 2 {
		t.Fatalf("topology routers %+v: want 2", topo.Routers)
	}
	r1, r2 := topo.Routers[0], topo.Routers[1]
	both := []netip.Addr{r1.Addr, r2.Addr}
	slices.SortFunc(both, netip.Addr.Compare)
	took := waitSIRNextHops(t, l, both, 15*time.Second)
	t.Logf("fabric routes %s over both routers %v (after %v)", lab.SIRPrefix, both, took)
	out, err := l.Vtysh(ctx, "", "show bgp ipv6 unicast "+lab.SIRPrefix.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("vtysh show bgp ipv6 unicast %s:\n%s", lab.SIRPrefix, out)
	if !strings.Contains(out, "multipath") {
		t.Errorf("FRR does not use both paths of %s as multipath:\n%s", lab.SIRPrefix, out)
	}
	ctl := topo.Mapsrv.Netns
	t3 := task(t, l, "t3")
	st, err := l.PingFrom(ctx, ctl, "ctl", t3.SIR, 20*time.Millisecond, 10, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if st.Received == 0 {
		t.Fatalf("the control namespace does not reach %s through the routers: %+v", t3.SIR, st)
	}
	for _, r := range []lab.RouterNS{r1, r2} {
		other := r2
		if r.Name == r2.Name {
			other = r1
		}
		pctx, cancel := context.WithCancel(ctx)
		pc := make(chan *lab.FlowStats, 1)
		go func() {
			st, err := l.PingFrom(pctx, ctl, "ctl", t3.SIR, 10*time.Millisecond, 0, 300*time.Millisecond)
			if err != nil {
				st = &lab.FlowStats{Error: err.Error()}
			}
			pc <- st
		}()
		time.Sleep(500 * time.Millisecond)
		if err := l.Fail(ctx, r.Name); err != nil {
			cancel()
			t.Fatalf("fail %s: %v", r.Name, err)
		}
		took := waitSIRNextHops(t, l, []netip.Addr{other.Addr}, 15*time.Second)
		t.Logf("%s failed: the fabric routes %s over %s only, after %v", r.Name, lab.SIRPrefix, other.Name, took)
		time.Sleep(time.Second)
		cancel()
		f := <-pc
		logFlow(t, f)
		if f.Error != "" || f.Received == 0 {
			t.Fatalf("ping from outside across the failure of %s: %+v", r.Name, f)
		}
		if since := time.Since(f.LastArrival); since > 1200*time.Millisecond {
			t.Errorf("last reply %v before the end: traffic from outside did not resume over %s", since, other.Name)
		}
		if err := l.Fail(ctx, r.Name); err == nil {
			t.Errorf("failing %s twice was accepted", r.Name)
		}
		if err := l.Recover(ctx, r.Name); err != nil {
			t.Fatalf("recover %s: %v", r.Name, err)
		}
		took = waitSIRNextHops(t, l, both, 20*time.Second)
		t.Logf("%s recovered: both routers again after %v", r.Name, took)
	}
	if err := l.Recover(ctx, r1.Name); err == nil || !strings.Contains(err.Error(), "has not failed") {
		t.Errorf("recover of a router that has not failed: %v", err)
	}
	if err := l.Fail(ctx, "router"); err == nil || !strings.Contains(err.Error(), "router1, router2") {
		t.Errorf("fail router with two routers: %v, want the routers named", err)
	}
	pingAll(t, l, "t1", t3.SIR, 20)
}
