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
	// Justified: the orchestrator expects the task on b, b registers as
	// its standby (a prepared port), then claims it.
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b"}); err != nil {
		t.Fatalf("expect vm1 on b: %v", err)
	}
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Standby: true}); err != nil {
		t.Fatalf("standby at b: %v", err)
	}
	rec, err := f.svc.Register(ctx, claim)
	if err != nil || rec.NVE != "b" || rec.Locator != locB || rec.MovedBy != mapsrv.MovedByExpected {
		t.Fatalf("claim from b as the task's expected standby: %v, at %s %s by %q; want it moved to b by %q", err, rec.NVE, rec.Locator, rec.MovedBy, mapsrv.MovedByExpected)
	}
	if rec.Expect != nil {
		t.Errorf("expectation %+v kept after the move it announced", *rec.Expect)
	}
	// c is nobody's standby: refused again.
	c := claim
	c.NVE = "c"
	if _, err := f.svc.Register(ctx, c); !errors.Is(err, mapsrv.ErrConflict) {
		t.Errorf("claim from c: err = %v, want a conflict", err)
	}
}

// TestStandbyClaimNeedsExpectation is the rest of finding 3 of issue 17:
// a standby registration is the claimant's own word, so a compromised NVE
// (its own valid key) registered as the standby of another NVE's task and
// then claimed it. By default that claim is refused and the task stays;
// it is accepted only while an orchestrator's expectation (Expect, admin
// token) names that NVE; an expired expectation does not count.
func TestStandbyClaimNeedsExpectation(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	before := f.register(t, "a", "vm1", "2001:db8::1")
	claim := mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot}
	f.standby(t, "b", "2001:db8::1") // b's own word
	for _, mode := range []ila.MoveMode{ila.MoveHot, ila.MoveWarm, ila.MoveCold, ila.MoveNone} {
		c := claim
		c.Mode = mode
		if _, err := f.svc.Register(ctx, c); !errors.Is(err, mapsrv.ErrUnjustified) || !strings.Contains(fmtErr(err), "no unexpired expectation") {
			t.Errorf("claim (mode %q) from b, the task's standby, without an expectation: err = %v, want ErrUnjustified naming the expectation", mode, err)
		}
	}
	unmoved := func(when string) {
		t.Helper()
		after, err := f.svc.Task(ctx, "t1", "vm1")
		if err != nil {
			t.Fatal(err)
		}
		if after.NVE != "a" || after.Locator != locA || after.State != ila.StateActive || len(after.Moves) != 0 {
			t.Errorf("%s: %s %s %s moves %v, want still active on a %s", when, after.NVE, after.Locator, after.State, after.Moves, locA)
		}
	}
	unmoved("after the standby's claims")
	if n := len(f.notes.get()); n != 0 {
		t.Errorf("%d notifications sent for refused claims", n)
	}

	// An expectation naming another NVE does not help b.
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "c", TTL: time.Minute}); err != nil {
		t.Fatalf("expect vm1 on c: %v", err)
	}
	if _, err := f.svc.Register(ctx, claim); !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Errorf("claim from b while c is expected: %v, want ErrUnjustified", err)
	}
	// Expired: the claim comes after the TTL.
	rec, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b", TTL: 30 * time.Second})
	if err != nil {
		t.Fatalf("expect vm1 on b: %v", err)
	}
	if rec.Expect == nil || rec.Expect.NVE != "b" || !rec.Expect.Until.Equal(f.clk.Now().Add(30*time.Second)) {
		t.Fatalf("expectation in the record: %+v, want b until now+30s", rec.Expect)
	}
	f.clk.Advance(30 * time.Second)
	f.register(t, "a", "vm1", "2001:db8::1") // a refreshes the task (the expectation is due now)
	if _, err := f.svc.Register(ctx, claim); !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Errorf("claim from b after its expectation expired: %v, want ErrUnjustified", err)
	}
	unmoved("after the claims with a wrong or an expired expectation")

	// Unexpect: the orchestrator calls the move off.
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b"}); err != nil {
		t.Fatal(err)
	}
	if rec, err := f.svc.Unexpect(ctx, "t1", "vm1", "", 0); err != nil || rec.Expect != nil {
		t.Fatalf("unexpect: %v, expectation %+v", err, rec.Expect)
	}
	if _, err := f.svc.Register(ctx, claim); !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Errorf("claim from b after the expectation was dropped: %v, want ErrUnjustified", err)
	}
	unmoved("after the claim once the expectation was dropped")

	// Expected, within the TTL: the claim moves the task.
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(59 * time.Second)
	rec, err = f.svc.Register(ctx, claim)
	if err != nil || rec.NVE != "b" || rec.MovedBy != mapsrv.MovedByExpected || rec.Version != before.Version+1 || rec.Expect != nil {
		t.Fatalf("claim from b, expected: %v, at %s by %q version %d expectation %+v; want on b by %q, version %d, the expectation used up", err, rec.NVE, rec.MovedBy, rec.Version, rec.Expect, mapsrv.MovedByExpected, before.Version+1)
	}
	if st := f.svc.Stats(); st.ClaimsUnjustified != 7 {
		t.Errorf("%d unjustified claims counted, want 7", st.ClaimsUnjustified)
	}
	// Used up: back to a needs its own expectation.
	f.standby(t, "a", "2001:db8::1")
	back := claim
	back.NVE = "a"
	if _, err := f.svc.Register(ctx, back); !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Errorf("claim back from a with the used-up expectation: %v, want ErrUnjustified", err)
	}
}

// TestExpectRefusals: bad expectations are refused with a clear error
// and change nothing.
func TestExpectRefusals(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.MaxExpectTTL = 5 * time.Minute })
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	for _, tc := range []struct {
		req  mapsrv.ExpectRequest
		want error
		msg  string
	}{
		{mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1"}, mapsrv.ErrInvalid, "nve"},
		{mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b", TTL: -time.Second}, mapsrv.ErrInvalid, "negative"},
		{mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b", TTL: 6 * time.Minute}, mapsrv.ErrInvalid, "maximum 5m0s"},
		{mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "a"}, mapsrv.ErrInvalid, "already there"},
		{mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "zz"}, mapsrv.ErrNotFound, "nve zz"},
		{mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b c"}, mapsrv.ErrInvalid, "nve"},
		{mapsrv.ExpectRequest{Tenant: "t1", Name: "nope", NVE: "b"}, mapsrv.ErrNotFound, "nope"},
		{mapsrv.ExpectRequest{NVE: "b"}, mapsrv.ErrInvalid, "required"},
	} {
		_, err := f.svc.Expect(ctx, tc.req)
		if !errors.Is(err, tc.want) || !strings.Contains(fmtErr(err), tc.msg) {
			t.Errorf("expect %+v: %v, want %v mentioning %q", tc.req, err, tc.want, tc.msg)
		}
	}
	if rec, err := f.svc.Task(ctx, "t1", "vm1"); err != nil || rec.Expect != nil {
		t.Errorf("after the refused expectations: %v, expectation %+v", err, rec.Expect)
	}
}

// TestExpectDroppedBySweepAndMoves: an expectation leaves the record when
// its time is over (the sweeper) or when the task moves (an operator's
// move, here to another NVE than the expected one).
func TestExpectDroppedBySweepAndMoves(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b", TTL: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(10 * time.Second)
	if _, err := f.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if rec, err := f.svc.Task(ctx, "t1", "vm1"); err != nil || rec.Expect != nil {
		t.Errorf("after the expectation's time and a sweep: %v, expectation %+v, want none", err, rec.Expect)
	}
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b"}); err != nil {
		t.Fatal(err)
	}
	if rec, err := f.svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "c"}); err != nil || rec.NVE != "c" || rec.Expect != nil {
		t.Errorf("operator move to c: %v, on %s, expectation %+v; want on c without one", err, rec.NVE, rec.Expect)
	}
}

// TestNoStandbyClaims: with StandbyClaimsOff a standby registration only
// serves failover; a claim from the standby is refused, even an expected
// one, and the operator's move is what moves the task.
func TestNoStandbyClaims(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.StandbyClaims = mapsrv.StandbyClaimsOff })
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	f.standby(t, "b", "2001:db8::1")
	if _, err := f.svc.Expect(ctx, mapsrv.ExpectRequest{Tenant: "t1", Name: "vm1", NVE: "b"}); err != nil {
		t.Fatal(err)
	}
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

// TestTrustStandbyClaims: with StandbyClaimsTrust (mapsrv
// --standby-claims=trust) a standby registration alone justifies the
// claim, as before the expectation existed.
func TestTrustStandbyClaims(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.StandbyClaims = mapsrv.StandbyClaimsTrust })
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	f.standby(t, "b", "2001:db8::1")
	rec, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot})
	if err != nil || rec.NVE != "b" || rec.MovedBy != mapsrv.MovedByStandby {
		t.Fatalf("claim from the standby, trusted: %v, at %s by %q", err, rec.NVE, rec.MovedBy)
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
