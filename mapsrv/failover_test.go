package mapsrv_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

func liveFixture(t *testing.T, mod func(*mapsrv.Config)) *fixture {
	return newFixture(t, func(c *mapsrv.Config) {
		c.Liveness = mapsrv.LivenessConfig{Interval: time.Second, SuspectAfter: 2, DeadAfter: 3, Replica: "r1"}
		if mod != nil {
			mod(c)
		}
	})
}

func (f *fixture) heartbeat(t *testing.T, nve string, epoch uint32) uint32 {
	t.Helper()
	e, err := f.svc.Heartbeat(t.Context(), nve, epoch)
	if err != nil {
		t.Fatalf("heartbeat %s epoch %d: %v", nve, epoch, err)
	}
	return e
}

func (f *fixture) liveness(t *testing.T, nve string) mapsrv.NVELiveness {
	t.Helper()
	n, err := f.svc.NVE(t.Context(), nve)
	if err != nil || n.Liveness == nil {
		t.Fatalf("nve %s: %+v, %v", nve, n.Liveness, err)
	}
	return *n.Liveness
}

func TestFailoverToStandby(t *testing.T) {
	// One move allowed by flap damping: the failover must not count as
	// a second one.
	f := liveFixture(t, func(c *mapsrv.Config) { c.FlapMoves = 1 })
	ctx := t.Context()
	f.register(t, "c", "web1", "2001:db8::1")
	if _, err := f.svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t1", Name: "web1", To: "a"}); err != nil {
		t.Fatal(err)
	}
	f.register(t, "a", "web2", "2001:db8::2")
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "web1", SIR: netip.MustParseAddr("2001:db8::1"), Standby: true, Lifetime: time.Minute}); err != nil {
		t.Fatalf("standby: %v", err)
	}
	before, _ := f.svc.Task(ctx, "t1", "web1")
	if before.Standby == nil || before.Standby.NVE != "b" || before.Standby.Locator != locB || before.NVE != "a" {
		t.Fatalf("after standby registration: %+v", before)
	}
	if e := f.heartbeat(t, "a", 0); e != 1 {
		t.Errorf("first epoch of a = %d, want 1", e)
	}
	f.heartbeat(t, "b", 0)
	f.heartbeat(t, "c", 0)
	if l := f.liveness(t, "a"); l.State != mapsrv.NVEAlive || l.Replica != "r1" || l.Epoch != 1 {
		t.Errorf("liveness of a: %+v", l)
	}
	step := func(d time.Duration) {
		f.clk.Advance(d)
		f.heartbeat(t, "b", 1)
		f.heartbeat(t, "c", 1)
		f.svc.DecideLiveness(ctx)
	}
	step(1500 * time.Millisecond) // a missed 1.5 intervals: nothing
	if l := f.liveness(t, "a"); l.State != mapsrv.NVEAlive {
		t.Errorf("a after 1.5 s: %s, want alive", l.State)
	}
	step(600 * time.Millisecond) // 2.1 intervals: suspect
	if l := f.liveness(t, "a"); l.State != mapsrv.NVESuspect || l.Epoch != 1 {
		t.Errorf("a after 2.1 s: %+v, want suspect at epoch 1", l)
	}
	if rec, _ := f.svc.Task(ctx, "t1", "web1"); rec.NVE != "a" {
		t.Errorf("a suspect: web1 already moved to %s", rec.NVE)
	}
	step(time.Second) // 3.1 intervals: dead
	if l := f.liveness(t, "a"); l.State != mapsrv.NVEDead || l.Epoch != 2 {
		t.Errorf("a after 3.1 s: %+v, want dead at epoch 2", l)
	}
	if l := f.liveness(t, "b"); l.State != mapsrv.NVEAlive {
		t.Errorf("b: %+v, want alive", l)
	}
	rec, err := f.svc.Task(ctx, "t1", "web1")
	if err != nil {
		t.Fatal(err)
	}
	// c: in flight since the move from c to a; a: the dead NVE.
	wantPrev := []ila.Previous{{Locator: locC, NVE: "c", Until: before.Updated.Add(10 * time.Second)}, {Locator: locA, NVE: "a", Until: f.clk.Now().Add(10 * time.Second)}}
	if rec.NVE != "b" || rec.Locator != locB || rec.State != ila.StateActive || rec.Version != before.Version+1 || rec.Standby != nil {
		t.Errorf("web1 after a died: nve %s loc %s state %s version %d (was %d) standby %+v", rec.NVE, rec.Locator, rec.State, rec.Version, before.Version, rec.Standby)
	}
	if diff := cmp.Diff(wantPrev, rec.Previous); diff != "" {
		t.Errorf("web1 previous (-want +got):\n%s", diff)
	}
	if len(rec.Moves) != 1 {
		t.Errorf("web1 moves = %d, want 1 (the failover is not a move)", len(rec.Moves))
	}
	rec2, _ := f.svc.Task(ctx, "t1", "web2")
	if rec2.NVE != "a" || rec2.State != ila.StateSuspended {
		t.Errorf("web2 (no standby) after a died: nve %s state %s, want a suspended", rec2.NVE, rec2.State)
	}
	if st := f.svc.LivenessStats(); st.Deaths != 1 || st.Failovers != 1 || st.Suspensions != 1 || st.Suspects != 1 || st.Dead != 1 || st.Alive != 2 {
		t.Errorf("liveness stats: %+v", st)
	}
	if st := f.svc.Stats(); st.DuplicatesMarked != 0 || st.MovesRefused != 0 {
		t.Errorf("flap damping counted the failover: %+v", st)
	}

	// a comes back. Under its old epoch it is fenced: its registrations
	// and heartbeats are refused, nothing changes.
	stale := mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "web1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot, Epoch: 1}
	if _, err := f.svc.Register(ctx, stale); !errors.Is(err, mapsrv.ErrFenced) {
		t.Errorf("registration from a under epoch 1: %v, want ErrFenced", err)
	}
	if e, err := f.svc.Heartbeat(ctx, "a", 1); !errors.Is(err, mapsrv.ErrFenced) || e != 2 {
		t.Errorf("heartbeat from a under epoch 1: %d, %v; want 2, ErrFenced", e, err)
	}
	if l := f.liveness(t, "a"); l.State != mapsrv.NVEDead {
		t.Errorf("a after a stale heartbeat: %s, want dead", l.State)
	}
	// While dead, even a registration without an epoch is refused.
	stale.Epoch = 0
	if _, err := f.svc.Register(ctx, stale); !errors.Is(err, mapsrv.ErrFenced) {
		t.Errorf("registration from dead a without epoch: %v, want ErrFenced", err)
	}
	// It rejoins under epoch 2 and registers what is still its own.
	if e := f.heartbeat(t, "a", 2); e != 2 {
		t.Errorf("rejoin epoch = %d", e)
	}
	if l := f.liveness(t, "a"); l.State != mapsrv.NVEAlive || l.Epoch != 2 {
		t.Errorf("a after rejoining: %+v", l)
	}
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "web2", SIR: netip.MustParseAddr("2001:db8::2"), Lifetime: time.Minute, Epoch: 2}); err != nil {
		t.Fatalf("web2 registered again at a: %v", err)
	}
	if rec2, _ := f.svc.Task(ctx, "t1", "web2"); rec2.NVE != "a" || rec2.State != ila.StateActive {
		t.Errorf("web2 after registering again: nve %s state %s", rec2.NVE, rec2.State)
	}
	if rec, _ := f.svc.Task(ctx, "t1", "web1"); rec.NVE != "b" {
		t.Errorf("web1 back on %s", rec.NVE)
	}
	if st := f.svc.LivenessStats(); st.Revivals != 1 || st.Fenced != 1 {
		t.Errorf("liveness stats after rejoin: %+v", st)
	}
}

func TestFailoverStandbyDeadToo(t *testing.T) {
	f := liveFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "web1", "2001:db8::1")
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "b", Name: "web1", Tenant: "t1", SIR: netip.MustParseAddr("2001:db8::1"), Standby: true}); err != nil {
		t.Fatal(err)
	}
	f.heartbeat(t, "a", 0)
	f.heartbeat(t, "b", 0)
	f.clk.Advance(3 * time.Second)
	f.svc.DecideLiveness(ctx)
	rec, _ := f.svc.Task(ctx, "t1", "web1")
	if rec.NVE != "a" || rec.State != ila.StateSuspended || rec.Standby != nil {
		t.Errorf("web1 after both died: nve %s state %s standby %+v; want a, suspended, none", rec.NVE, rec.State, rec.Standby)
	}
}

func TestStandbyRefusals(t *testing.T) {
	f := liveFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "web1", "2001:db8::1")
	sir := netip.MustParseAddr("2001:db8::1")
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "web1", SIR: sir, Standby: true}); err != nil {
		t.Fatal(err)
	}
	want, _ := f.svc.Task(ctx, "t1", "web1")
	for _, tc := range []struct {
		name string
		r    mapsrv.Registration
		err  error
	}{
		{"unknown task", mapsrv.Registration{NVE: "c", SIR: netip.MustParseAddr("2001:db8::99"), Standby: true}, mapsrv.ErrNotFound},
		{"hosting nve", mapsrv.Registration{NVE: "a", SIR: sir, Standby: true}, mapsrv.ErrInvalid},
		{"second standby", mapsrv.Registration{NVE: "c", SIR: sir, Standby: true}, mapsrv.ErrConflict},
		{"locator of another nve", mapsrv.Registration{NVE: "c", SIR: sir, Locator: locB, Standby: true}, mapsrv.ErrForbidden},
		{"unknown nve", mapsrv.Registration{NVE: "zz", SIR: sir, Standby: true}, mapsrv.ErrNotFound},
		{"name of another task", mapsrv.Registration{NVE: "c", Tenant: "t1", Name: "other", SIR: sir, Standby: true}, mapsrv.ErrInvalid},
	} {
		if _, err := f.svc.Register(ctx, tc.r); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	got, _ := f.svc.Task(ctx, "t1", "web1")
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("task changed by refused standbys (-want +got):\n%s", diff)
	}
	if _, err := f.svc.Heartbeat(ctx, "zz", 0); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("heartbeat from an unknown nve: %v, want ErrNotFound", err)
	}
	// The standby commits (the task moves to it by a claim, which the
	// orchestrator expects): the standby entry is used up.
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "web1", NVE: "b"}); err != nil {
		t.Fatal(err)
	}
	f.register(t, "b", "web1", "2001:db8::1")
	if got, _ := f.svc.Task(ctx, "t1", "web1"); got.NVE != "b" || got.Standby != nil {
		t.Errorf("after the standby's claim: nve %s standby %+v", got.NVE, got.Standby)
	}
}

func TestHeartbeatOverProtocol(t *testing.T) {
	f := liveFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "web1", "2001:db8::1")
	from := netip.MustParseAddrPort("[::1]:9")
	rep := f.svc.Handle(ctx, from, &regproto.Message{Type: regproto.TypeRequest, NVE: "a", Heartbeat: true})
	if rep.Status != regproto.StatusAccepted || rep.Epoch != 1 {
		t.Fatalf("heartbeat reply: %+v", rep)
	}
	rep = f.svc.Handle(ctx, from, &regproto.Message{Type: regproto.TypeRequest, NVE: "b", VMID: "web1", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, Lifetime: 15, Role: regproto.RoleStandby})
	if rep.Status != regproto.StatusAccepted || rep.Role != regproto.RoleStandby {
		t.Fatalf("standby reply: %+v", rep)
	}
	f.clk.Advance(3 * time.Second)
	f.svc.DecideLiveness(ctx)
	rep = f.svc.Handle(ctx, from, &regproto.Message{Type: regproto.TypeRequest, NVE: "a", Heartbeat: true, Epoch: 1})
	if rep.Status != regproto.StatusRejected || rep.Reason != regproto.ReasonFenced || rep.Epoch != 2 {
		t.Errorf("heartbeat under the old epoch: %+v", rep)
	}
	rep = f.svc.Handle(ctx, from, &regproto.Message{Type: regproto.TypeRequest, NVE: "a", VMID: "web1", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}, Lifetime: 15, Epoch: 1, Mode: regproto.MoveHot})
	if rep.Reason != regproto.ReasonFenced {
		t.Errorf("registration under the old epoch: %+v", rep)
	}
	if rec, _ := f.svc.Task(ctx, "t1", "web1"); rec.NVE != "b" {
		t.Errorf("web1 on %s, want b (the standby)", rec.NVE)
	}
	// Withdrawing a standby that is not there.
	rep = f.svc.Handle(ctx, from, &regproto.Message{Type: regproto.TypeRequest, NVE: "c", VMID: "web1", Tenant: "t1", Role: regproto.RoleStandby})
	if rep.Reason != regproto.ReasonUnknownTask {
		t.Errorf("withdraw of a standby c does not hold: %+v", rep)
	}
}

// TestHeartbeatHold: an NVE announcing a planned restart (ilad stopping)
// is not declared dead during the hold, and is after it.
func TestHeartbeatHold(t *testing.T) {
	f := liveFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "web1", "2001:db8::1")
	f.heartbeat(t, "a", 0)
	if _, err := f.svc.HeartbeatHold(ctx, "a", 1, 8*time.Second); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(10 * time.Second) // hold 8 s + dead time 3 s not over
	f.svc.DecideLiveness(ctx)
	if l := f.liveness(t, "a"); l.State == mapsrv.NVEDead {
		t.Errorf("a dead during its hold")
	}
	f.clk.Advance(1500 * time.Millisecond)
	f.svc.DecideLiveness(ctx)
	if l := f.liveness(t, "a"); l.State != mapsrv.NVEDead {
		t.Errorf("a after its hold and the dead time: %s, want dead", l.State)
	}
	// Over the protocol: the Lifetime of a heartbeat is the hold.
	f.heartbeat(t, "b", 0)
	rep := f.svc.Handle(ctx, netip.MustParseAddrPort("[::1]:9"), &regproto.Message{Type: regproto.TypeRequest, NVE: "b", Heartbeat: true, Epoch: 1, Lifetime: 2})
	if rep.Err() != nil {
		t.Fatal(rep.Err())
	}
	f.clk.Advance(10 * time.Second)
	f.svc.DecideLiveness(ctx)
	if l := f.liveness(t, "b"); l.State == mapsrv.NVEDead {
		t.Errorf("b dead during a hold of 2 units (8 s)")
	}
}
