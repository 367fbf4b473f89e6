package mapsrv_test

import (
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestSuspendTimeout: a cold move whose task never registers at its
// destination is rolled back after Config.SuspendTimeout, although the old
// NVE keeps re-registering it; a move that completes in time is not.
func TestSuspendTimeout(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.SuspendTimeout = 30 * time.Second })
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	f.register(t, "a", "vm2", "2001:db8::2")
	for _, name := range []string{"vm1", "vm2"} {
		if _, err := f.svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t1", Name: name, To: "b", Mode: ila.MoveCold}); err != nil {
			t.Fatal(err)
		}
	}
	// The old NVE keeps refreshing vm1; vm2 arrives at b in time.
	for range 3 {
		f.clk.Advance(10*time.Second - time.Millisecond)
		if rec := f.register(t, "a", "vm1", "2001:db8::1"); rec.State != ila.StateSuspended {
			t.Fatalf("refresh at the old nve: state %s, want suspended", rec.State)
		}
		if _, err := f.svc.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if rec, err := f.svc.Task(ctx, "t1", "vm1"); err != nil || rec.State != ila.StateSuspended {
		t.Fatalf("before the timeout: %+v, %v; want suspended", rec, err)
	}
	f.register(t, "b", "vm2", "2001:db8::2")
	f.clk.Advance(3 * time.Millisecond) // 30s after the move
	if _, err := f.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := f.svc.Task(ctx, "t1", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != ila.StateActive || rec.NVE != "a" || rec.Locator != locA || rec.PendingNVE != "" || !rec.PendingUntil.IsZero() || rec.Version != 3 {
		t.Errorf("after the timeout: %+v; want active at a again, version 3", rec)
	}
	if rec, err := f.svc.Task(ctx, "t1", "vm2"); err != nil || rec.State != ila.StateActive || rec.NVE != "b" {
		t.Errorf("vm2 (arrived in time): %+v, %v; want active at b", rec, err)
	}
	if n := f.svc.Stats().SuspendTimeouts; n != 1 {
		t.Errorf("SuspendTimeouts = %d, want 1", n)
	}
	// A refresh after the rollback leaves it active at a.
	if rec := f.register(t, "a", "vm1", "2001:db8::1"); rec.State != ila.StateActive {
		t.Errorf("refresh after the rollback: %s", rec.State)
	}
}
