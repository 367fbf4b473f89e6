package mapsrv_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestHostProbeHoldsDeath: an NVE whose heartbeats stop while its host
// still answers (ilad crashed, the datapath forwards) is not declared
// dead and its tasks stay; once the host stops answering too it is dead
// DeadAfter intervals after the host's last answer. An NVE whose host
// never answers dies on time, as without the probe.
func TestHostProbeHoldsDeath(t *testing.T) {
	var mu sync.Mutex
	answers := map[netip.Addr]bool{}
	f := liveFixture(t, func(c *mapsrv.Config) {
		c.Liveness.HostProbe = func(_ context.Context, a netip.Addr) bool {
			mu.Lock()
			defer mu.Unlock()
			return answers[a]
		}
	})
	ctx := t.Context()
	nveA, err := f.svc.NVE(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	answers[nveA.Underlay] = true // a's host runs; c's does not answer
	mu.Unlock()
	f.register(t, "a", "web1", "2001:db8::1")
	f.register(t, "c", "web3", "2001:db8::3")
	f.heartbeat(t, "a", 0)
	f.heartbeat(t, "b", 0)
	f.heartbeat(t, "c", 0)
	step := func(d time.Duration) {
		t.Helper()
		f.clk.Advance(d)
		f.heartbeat(t, "b", 1)
		f.svc.DecideLiveness(ctx)
		f.svc.WaitHostProbes()
	}
	state := func(nve string) mapsrv.NVEState { return f.liveness(t, nve).State }
	task := func(name string) ila.State {
		rec, err := f.svc.Task(ctx, "t1", name)
		if err != nil {
			t.Fatal(err)
		}
		return rec.State
	}

	step(2100 * time.Millisecond) // suspect
	step(400 * time.Millisecond)  // probed while suspect: a's host answers at 2.5 s
	if state("a") != mapsrv.NVESuspect || state("c") != mapsrv.NVESuspect {
		t.Fatalf("after 2.5 s: a %s, c %s, want both suspect", state("a"), state("c"))
	}
	step(600 * time.Millisecond) // 3.1 intervals without a heartbeat
	if state("c") != mapsrv.NVEDead || task("web3") != ila.StateSuspended {
		t.Errorf("c (host silent) after 3.1 s: %s, web3 %s; want dead, suspended", state("c"), task("web3"))
	}
	if state("a") != mapsrv.NVESuspect || task("web1") != ila.StateActive {
		t.Errorf("a (host answers) after 3.1 s: %s, web1 %s; want suspect, active", state("a"), task("web1"))
	}
	if st := f.svc.LivenessStats(); st.DeathsHeld != 1 || st.HostAnswers == 0 || st.Deaths != 1 {
		t.Errorf("stats: held %d answers %d deaths %d; want 1, > 0, 1", st.DeathsHeld, st.HostAnswers, st.Deaths)
	}
	for range 10 { // the host keeps answering: held for as long
		step(500 * time.Millisecond)
	}
	if state("a") != mapsrv.NVESuspect || task("web1") != ila.StateActive {
		t.Errorf("a after 8.1 s, host answering: %s, web1 %s; want suspect, active", state("a"), task("web1"))
	}

	mu.Lock()
	answers[nveA.Underlay] = false // now the host is gone too
	mu.Unlock()
	last := f.clk.Now()
	step(2900 * time.Millisecond)
	if state("a") != mapsrv.NVESuspect {
		t.Errorf("a 2.9 s after its host's last answer: %s, want suspect", state("a"))
	}
	step(200 * time.Millisecond)
	if state("a") != mapsrv.NVEDead || task("web1") != ila.StateSuspended {
		t.Errorf("a %v after its host's last answer: %s, web1 %s; want dead, suspended", f.clk.Now().Sub(last), state("a"), task("web1"))
	}
}

// TestHostProbeRevival: an NVE held because its host answers comes back
// alive under its epoch when its agent heartbeats again (an ilad
// restart), with nothing failed over or fenced.
func TestHostProbeRevival(t *testing.T) {
	f := liveFixture(t, func(c *mapsrv.Config) {
		c.Liveness.HostProbe = func(context.Context, netip.Addr) bool { return true }
	})
	ctx := t.Context()
	f.register(t, "a", "web1", "2001:db8::1")
	f.heartbeat(t, "a", 0)
	for range 10 {
		f.clk.Advance(500 * time.Millisecond)
		f.svc.DecideLiveness(ctx)
		f.svc.WaitHostProbes()
	}
	if l := f.liveness(t, "a"); l.State != mapsrv.NVESuspect || l.Epoch != 1 {
		t.Fatalf("a after 5 s, host answering: %+v, want suspect at epoch 1", l)
	}
	if e := f.heartbeat(t, "a", 1); e != 1 {
		t.Errorf("epoch after the agent's return: %d, want 1 (not fenced)", e)
	}
	if l := f.liveness(t, "a"); l.State != mapsrv.NVEAlive {
		t.Errorf("a after its heartbeat: %s, want alive", l.State)
	}
	if rec, _ := f.svc.Task(ctx, "t1", "web1"); rec.State != ila.StateActive || rec.NVE != "a" {
		t.Errorf("web1: %s on %s, want active on a", rec.State, rec.NVE)
	}
}

// TestHostProbeFromFirstMissedHeartbeat: the host is probed from the
// first missed heartbeat, not only once the NVE is suspect, so an answer
// that can only come early (here: the host answers during the first two
// intervals of silence, later probes get no answer in time, as on a
// loaded machine) still holds off the death. Probing only while suspect
// declared it dead at 3.1 intervals (chaos reg-loss: a false death, 51-54
// pings lost).
func TestHostProbeFromFirstMissedHeartbeat(t *testing.T) {
	var f *fixture
	var start time.Time
	f = liveFixture(t, func(c *mapsrv.Config) {
		c.Liveness.HostProbe = func(context.Context, netip.Addr) bool {
			return f.clk.Now().Sub(start) < 2*time.Second
		}
	})
	ctx := t.Context()
	start = f.clk.Now()
	f.register(t, "a", "web1", "2001:db8::1")
	f.heartbeat(t, "a", 0)
	for _, d := range []time.Duration{1100, 500, 500, 500, 500} { // 1.1 .. 3.1 s
		f.clk.Advance(d * time.Millisecond)
		f.svc.DecideLiveness(ctx)
		f.svc.WaitHostProbes()
	}
	if l := f.liveness(t, "a"); l.State != mapsrv.NVESuspect {
		t.Errorf("a after 3.1 s of silence, its host answered at 1.1 and 1.6 s: %s, want suspect (held)", l.State)
	}
	if rec, _ := f.svc.Task(ctx, "t1", "web1"); rec.State != ila.StateActive {
		t.Errorf("web1: %s, want active", rec.State)
	}
}
