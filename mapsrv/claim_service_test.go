package mapsrv_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestUnjustifiedClaimRefused is finding 3 of issue 17: one NVE's key
// could claim any task of any tenant onto its own locator. A claim from
// an NVE that does not host the task moves it only when justified (here:
// the claimant is the task's standby); otherwise it is refused and
// nothing changes.
func TestUnjustifiedClaimRefused(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	before := f.register(t, "a", "vm1", "2001:db8::1")
	claim := mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot}
	for _, mode := range []ila.MoveMode{ila.MoveHot, ila.MoveWarm, ila.MoveCold, ila.MoveNone} {
		c := claim
		c.Mode = mode
		_, err := f.svc.Register(ctx, c)
		if !errors.Is(err, mapsrv.ErrConflict) || !strings.Contains(fmtErr(err), "not justified") {
			t.Errorf("claim (mode %q) from b of a task on a: err = %v, want a conflict saying it is not justified", mode, err)
		}
	}
	// Under another name (the API's rename), and without one (ND).
	for _, c := range []mapsrv.Registration{
		{NVE: "b", Tenant: "t2", Name: "mine", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot},
		{NVE: "b", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot},
	} {
		if _, err := f.svc.Register(ctx, c); !errors.Is(err, mapsrv.ErrConflict) {
			t.Errorf("claim %s/%s from b: err = %v, want a conflict", c.Tenant, c.Name, err)
		}
	}
	after, err := f.svc.Task(ctx, "t1", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if after.NVE != "a" || after.Locator != locA || after.Version != before.Version || after.State != ila.StateActive {
		t.Errorf("after the refused claims: %s %s version %d %s, want a %s version %d active", after.NVE, after.Locator, after.Version, after.State, locA, before.Version)
	}
	if n := len(f.notes.get()); n != 0 {
		t.Errorf("%d notifications sent for refused claims", n)
	}
	// Justified: b registers as the task's standby (a prepared port), then
	// claims it.
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Standby: true}); err != nil {
		t.Fatalf("standby at b: %v", err)
	}
	rec, err := f.svc.Register(ctx, claim)
	if err != nil || rec.NVE != "b" || rec.Locator != locB || rec.MovedBy != mapsrv.MovedByStandby {
		t.Fatalf("claim from b as the task's standby: %v, at %s %s by %q; want it moved to b by its standby", err, rec.NVE, rec.Locator, rec.MovedBy)
	}
	// c is nobody's standby: refused again.
	c := claim
	c.NVE = "c"
	if _, err := f.svc.Register(ctx, c); !errors.Is(err, mapsrv.ErrConflict) {
		t.Errorf("claim from c: err = %v, want a conflict", err)
	}
}

// TestNoStandbyClaims: with Config.NoStandbyClaims a standby registration
// only serves failover; a claim from the standby is refused and the
// operator's move is what moves the task.
func TestNoStandbyClaims(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.NoStandbyClaims = true })
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	f.standby(t, "b", "2001:db8::1")
	claim := mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot}
	if _, err := f.svc.Register(ctx, claim); !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Fatalf("claim from the standby: %v, want ErrUnjustified", err)
	}
	if rec, err := f.svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b"}); err != nil || rec.NVE != "b" || rec.MovedBy != mapsrv.MovedByOperator {
		t.Fatalf("operator move to b: %v, at %s by %q", err, rec.NVE, rec.MovedBy)
	}
	if rec, err := f.svc.Register(ctx, claim); err != nil || rec.NVE != "b" {
		t.Fatalf("registration at b after the move: %v, at %s", err, rec.NVE)
	}
	if st := f.svc.Stats(); st.ClaimsUnjustified != 1 {
		t.Errorf("%d unjustified claims counted, want 1", st.ClaimsUnjustified)
	}
}

// TestClaimOfOrphanedTask: a task whose NVE is gone, or whose lifetime
// is over, may be claimed by any NVE that hosts it now.
func TestClaimOfOrphanedTask(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	f.clk.Advance(2 * time.Minute) // the lifetime (1m) is over; the sweeper has not run
	rec, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot})
	if err != nil || rec.NVE != "b" {
		t.Fatalf("claim of an expired task: %v, at %s; want it on b", err, rec.NVE)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
