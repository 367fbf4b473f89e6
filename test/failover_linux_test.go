//go:build linux

package test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// TestFailoverUnderPing: t1 (on nve1) has a hot standby on nve3; t2 pings
// it every 10 ms; nve1 dies (ilad killed, link down). mapsrv declares it
// dead after 3 heartbeats of 100 ms and moves t1 to nve3: the pings come
// back from the standby. nve1 then recovers and does not take t1 back.
// Bad input: a second standby, a standby on the NVE hosting the task, a
// recover of an NVE that never failed.
func TestFailoverUnderPing(t *testing.T) {
	l := upLab(t, lab.Config{Heartbeat: 100 * time.Millisecond})
	ctx := t.Context()
	t1 := task(t, l, "t1")
	if err := l.Standby(ctx, "t1", "nve1"); err == nil || !strings.Contains(err.Error(), "hosts the task") {
		t.Errorf("standby on the hosting NVE: %v", err)
	}
	if err := l.Recover(ctx, "nve2"); err == nil || !strings.Contains(err.Error(), "has not failed") {
		t.Errorf("recover of an NVE that never failed: %v", err)
	}
	if err := l.Standby(ctx, "t1", "nve3"); err != nil {
		t.Fatalf("standby: %v", err)
	}
	if err := l.Standby(ctx, "t1", "nve2"); err == nil {
		t.Error("a second standby was accepted")
	}
	before, err := l.Mapped(ctx, "t1")
	if err != nil || before.NVE != "nve1" {
		t.Fatalf("t1 before the failure: %+v, %v", before, err)
	}
	reach(t, l, "t2", t1.SIR)

	pc := ping(ctx, l, "t2", t1.SIR, 4*time.Second)
	time.Sleep(time.Second)
	failedAt := time.Now()
	if err := l.Fail(ctx, "nve1"); err != nil {
		t.Fatalf("fail nve1: %v", err)
	}
	r, err := l.WaitFailover(ctx, "t1", failedAt, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f := <-pc
	logFlow(t, f)
	t.Logf("failover of t1 from %s to %s: committed %v after the failure (version %d -> %d)", r.From, r.To, time.Duration(r.Commit), before.Version, r.Version)
	if r.Version != before.Version+1 {
		t.Errorf("version after the failover %d, want %d", r.Version, before.Version+1)
	}
	if f.Received == 0 || f.Error != "" {
		t.Fatalf("no pings answered across the failover: %+v", f)
	}
	// Traffic resumed: the pings of the last second were answered.
	if last := f.LastArrival; time.Since(last) > 1500*time.Millisecond {
		t.Errorf("last ping reply at %v, %v before the end: traffic did not resume", last, time.Since(last))
	}
	if err := l.Fail(ctx, "nve1"); err == nil {
		t.Error("failing nve1 twice was accepted")
	}

	// nve1 comes back: its ilad finds t1 mapped to nve3 and lets it go.
	if err := l.Recover(ctx, "nve1"); err != nil {
		t.Fatalf("recover nve1: %v", err)
	}
	time.Sleep(time.Second)
	if m, err := l.Mapped(ctx, "t1"); err != nil || m.NVE != "nve3" {
		t.Errorf("t1 after nve1 recovered: %+v, %v; want still on nve3", m, err)
	}
	pingAll(t, l, "t2", t1.SIR, 50)
}

// TestNoMassExpiryUnderPing: mapsrv (with its embedded etcd) is down for
// twice the registration lifetime while t1 pings t3 every 10 ms; nothing
// expires when it comes back (mapsrv's expiry counter; the NVEs' watches,
// which reconnect with a backoff, may hide an expiry followed by a
// re-registration from the ping), and no ping is lost.
func TestNoMassExpiryUnderPing(t *testing.T) {
	const lifetime = 8 * time.Second
	l := upLab(t, lab.Config{Lifetime: lifetime})
	ctx := t.Context()
	t3 := task(t, l, "t3")
	reach(t, l, "t1", t3.SIR)
	pc := ping(ctx, l, "t1", t3.SIR, 3*lifetime+6*time.Second)
	time.Sleep(500 * time.Millisecond)
	if err := l.Fail(ctx, lab.FailMapsrv); err != nil {
		t.Fatalf("fail mapsrv: %v", err)
	}
	time.Sleep(2 * lifetime)
	if err := l.Recover(ctx, lab.FailMapsrv); err != nil {
		t.Fatalf("recover mapsrv: %v", err)
	}
	f := <-pc
	logFlow(t, f)
	if f.Sent < 1500 || f.Lost != 0 || f.Error != "" {
		t.Errorf("ping across a mapsrv outage of 2 x lifetime: sent %d lost %d (%v) err %q, want none lost", f.Sent, f.Lost, f.LostSeqs, f.Error)
	}
	n, err := l.MapsrvMetric(ctx, "ila_mapsrv_expiries_total")
	if err != nil || n != 0 {
		t.Errorf("tasks expired by mapsrv after the outage: %v, %v; want 0", n, err)
	}
	for _, name := range []string{"t1", "t2", "t3"} {
		if m, err := l.Mapped(ctx, name); err != nil || m.State != "active" {
			t.Errorf("%s after the outage: %+v, %v", name, m, err)
		}
	}
}

// TestFailRouter: the lab's ILA router (inside the fabric namespace) dies
// and recovers. A host outside ILA (the control namespace) reaches tasks
// only through it: nothing comes back while it is dead, everything once
// it is back; tasks on NVEs, which hold the mappings, never need it.
func TestFailRouter(t *testing.T) {
	l := upLab(t, lab.Config{Fabric: lab.FabricStatic})
	ctx := t.Context()
	ctl := l.Topology().Mapsrv.Netns
	t3 := task(t, l, "t3")
	fromCtl := func(n int) *lab.FlowStats {
		t.Helper()
		st, err := l.PingFrom(ctx, ctl, "ctl", t3.SIR, 20*time.Millisecond, n, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if err := l.Recover(ctx, lab.FailRouter); err == nil || !strings.Contains(err.Error(), "has not failed") {
		t.Errorf("recover of a router that has not failed: %v", err)
	}
	if st := fromCtl(20); st.Received == 0 {
		t.Fatalf("the control namespace does not reach %s through the router: %+v", t3.SIR, st)
	}
	if err := l.Fail(ctx, lab.FailRouter); err != nil {
		t.Fatalf("fail router: %v", err)
	}
	if l.Running(lab.ProcRouter) {
		t.Error("the router's ilad runs after fail router")
	}
	if st := fromCtl(20); st.Received != 0 {
		t.Errorf("the control namespace reaches %s with the router dead: %d of %d answered", t3.SIR, st.Received, st.Sent)
	}
	pingAll(t, l, "t1", t3.SIR, 20)
	if err := l.Fail(ctx, lab.FailRouter); err == nil {
		t.Error("failing the router twice was accepted")
	}
	if err := l.Recover(ctx, lab.FailRouter); err != nil {
		t.Fatalf("recover router: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fromCtl(5).Received == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the control namespace does not reach %s 10s after the router recovered", t3.SIR)
		}
	}
	pingAll(t, l, "t1", t3.SIR, 20)
}

// TestFailoverCycles is the short form of the "no split brain" target
// (docs/FAILOVER.md, `ilalab demo --scenario failover --cycles 100`): t3
// and its standby take turns on nve3 and nve1 over 3 fail/recover
// cycles; the store never holds two records for t3 nor do two NVEs hold
// it as their own, and a recovered NVE never takes it back.
func TestFailoverCycles(t *testing.T) {
	l := upLab(t, lab.Config{Heartbeat: 100 * time.Millisecond})
	rep, err := l.RunFailoverCycles(t.Context(), lab.CyclesConfig{Cycles: 3, Settle: 500 * time.Millisecond})
	if rep != nil {
		var sb strings.Builder
		rep.Text(&sb)
		t.Log("\n" + sb.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.Done != 3 || rep.SplitBrain != 0 || rep.StealBacks != 0 || len(rep.Problems) != 0 {
		t.Errorf("cycles: done %d of 3, split brain %d, steal-backs %d, problems %q", rep.Done, rep.SplitBrain, rep.StealBacks, rep.Problems)
	}
	if rep.Samples < 10 {
		t.Errorf("only %d samples of the store and the NVEs over 3 cycles", rep.Samples)
	}
}

// TestFailoverDemo runs `ilalab demo --scenario failover` (its figures
// are docs/FAILOVER.md's, not judged here): t3's NVE dies under a 10 ms
// ping and a TCP echo flow from t1; the ping comes back from the standby,
// the TCP connection (whose state the lab's standby does not have) breaks
// after the failure and a new one carries data, and the recovered NVE
// does not take t3 back.
func TestFailoverDemo(t *testing.T) {
	l := upLab(t, lab.Config{Heartbeat: 100 * time.Millisecond})
	rep, err := l.RunFailoverDemo(t.Context(), time.Second, time.Second, t.TempDir())
	if rep != nil && len(rep.Flows) > 0 {
		var sb strings.Builder
		rep.Text(&sb)
		t.Log("\n" + sb.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failover == nil || rep.Failover.To != "nve2" || rep.AfterRecover.NVE != "nve2" {
		t.Fatalf("failover %+v, after the recovery on %q: want t3 on nve2 and kept there", rep.Failover, rep.AfterRecover.NVE)
	}
	if len(rep.Flows) != 2 {
		t.Fatalf("flows %d, want ping and tcp", len(rep.Flows))
	}
	end := rep.Flows[0].FirstSent.Add(4 * time.Second) // before 1s + after >= 3s
	for _, f := range rep.Flows {
		if f.Received == 0 || f.LastArrival.Before(end.Add(-time.Second)) {
			t.Errorf("%s: received %d, last at %v: traffic did not resume after the failover", f.Name, f.Received, f.LastArrival)
		}
	}
	if rep.TCP == nil || rep.TCP.Connections < 2 || len(rep.TCP.Breaks) == 0 {
		t.Fatalf("tcp %+v: want the connection broken by the failover and a new one", rep.TCP)
	}
	b := rep.TCP.Breaks[0]
	if b.At.Before(rep.Failover.FailedAt) || b.FirstEcho.IsZero() {
		t.Errorf("tcp break %+v: want it after the failure (%v) and data on the next connection", b, rep.Failover.FailedAt)
	}
	t.Logf("tcp: break seen %v after the failure (%s), first echo on the new connection %v after it",
		b.At.Sub(rep.Failover.FailedAt), b.Error, b.FirstEcho.Sub(rep.Failover.FailedAt))
}

// TestFailoverCyclesCatchSteal: the cycles' steal-back check fires when
// the task does go back to the recovered NVE (here an operator's move in
// the store, injected after the recovery).
func TestFailoverCyclesCatchSteal(t *testing.T) {
	l := upLab(t, lab.Config{Heartbeat: 100 * time.Millisecond})
	topo := l.Topology()
	move := func(ctx context.Context, recovered string) error {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", topo.Mapsrv.Netns, filepath.Join(binDir, "ilactl"),
			"--api", topo.Mapsrv.API, "--ca-file", topo.Mapsrv.CAFile, "--token-file", topo.Mapsrv.TokenFile,
			"task", "move", "t3", "--tenant", task(t, l, "t3").Tenant, "--to", recovered, "--mode", "cold").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ilactl task move: %w: %s", err, out)
		}
		return nil
	}
	rep, err := l.RunFailoverCycles(t.Context(), lab.CyclesConfig{Cycles: 2, Settle: 500 * time.Millisecond, Inject: move})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	rep.Text(&sb)
	t.Log("\n" + sb.String())
	if rep.StealBacks != 1 || rep.Done != 0 || !strings.HasPrefix(rep.Verdict, "FAIL") {
		t.Errorf("steal-backs %d, cycles done %d, verdict %q: want the move back caught in the first cycle", rep.StealBacks, rep.Done, rep.Verdict)
	}
}
