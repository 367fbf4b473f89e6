package mapsrv_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/mapsrvtest"
)

var addrCmp = cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{})

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc   *mapsrv.Service
	store *mapsrvtest.Store
	clk   *clock
	notes *recorder
}

type recorder struct {
	mu sync.Mutex
	ns []mapsrv.Notification
}

func (r *recorder) Notify(_ context.Context, n mapsrv.Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ns = append(r.ns, n)
	return nil
}

func (r *recorder) get() []mapsrv.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mapsrv.Notification(nil), r.ns...)
}

var (
	sirPrefix = ila.SIRPrefix(0x20010db800000000)
	locA      = ila.Locator(0xfd00000000000001)
	locB      = ila.Locator(0xfd00000000000002)
	locC      = ila.Locator(0xfd00000000000003)
)

func newFixture(t *testing.T, mod func(*mapsrv.Config)) *fixture {
	t.Helper()
	f := &fixture{store: &mapsrvtest.Store{}, clk: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, notes: &recorder{}}
	cfg := mapsrv.Config{Store: f.store, Now: f.clk.Now, Notifier: f.notes}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := mapsrv.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	ctx := t.Context()
	if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sirPrefix, Csum: ila.CsumNeutralMap}); err != nil {
		t.Fatalf("add domain: %v", err)
	}
	underlay := netip.MustParseAddr("fd99::2") // a; b and c the next ones
	for i, loc := range []ila.Locator{locA, locB, locC} {
		n := mapsrv.NVERecord{
			NVE:     ila.NVE{Name: []string{"a", "b", "c"}[i], Locators: []ila.Locator{loc}, Underlay: underlay},
			RegAddr: netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(7000+i)),
		}
		if err := svc.AddNVE(ctx, n); err != nil {
			t.Fatalf("add nve: %v", err)
		}
		underlay = underlay.Next()
	}
	return f
}

func (f *fixture) register(t *testing.T, nve, name string, sir string) mapsrv.TaskRecord {
	t.Helper()
	rec, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: nve, Tenant: "t1", Name: name, SIR: netip.MustParseAddr(sir), Lifetime: time.Minute})
	if err != nil {
		t.Fatalf("register %s at %s: %v", name, nve, err)
	}
	return rec
}

// expected announces a move of the task at sir to nve (the orchestrator's
// expectation) and registers nve as its standby (a prepared port there):
// what justifies its claim of the task (TestStandbyClaimNeedsExpectation).
func (f *fixture) expected(t *testing.T, nve, sir string) {
	t.Helper()
	a := netip.MustParseAddr(sir)
	if _, err := f.svc.Expect(t.Context(), mapsrv.ExpectRequest{Domain: "prod", Identifier: ila.IdentifierOf(a), NVE: nve}); err != nil {
		t.Fatalf("expect %s on %s: %v", sir, nve, err)
	}
	f.standby(t, nve, sir)
}

// standby registers nve as the standby of the task at sir (a prepared
// port there): the NVE's own word, which alone does not justify its claim
// of the task (TestStandbyClaimNeedsExpectation).
func (f *fixture) standby(t *testing.T, nve, sir string) {
	t.Helper()
	if _, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: nve, SIR: netip.MustParseAddr(sir), Lifetime: time.Minute, Standby: true}); err != nil {
		t.Fatalf("standby at %s for %s: %v", nve, sir, err)
	}
}

func TestRegisterNewAndRenew(t *testing.T) {
	f := newFixture(t, nil)
	rec := f.register(t, "a", "vm1", "2001:db8::1:0:0:1")
	want := ila.Task{
		Domain: "prod", Name: "vm1", Tenant: "t1", Identifier: 0x0001000000000001,
		SIR: netip.MustParseAddr("2001:db8::1:0:0:1"), Locator: locA, NVE: "a",
		Lifetime: ila.Duration(time.Minute), Expiry: f.clk.Now().Add(time.Minute),
		Version: 1, State: ila.StateActive, Updated: f.clk.Now(),
	}
	if diff := cmp.Diff(want, rec.Task, addrCmp); diff != "" {
		t.Errorf("registered task (-want +got):\n%s", diff)
	}
	f.clk.Advance(30 * time.Second)
	rec = f.register(t, "a", "vm1", "2001:db8::1:0:0:1")
	if rec.Version != 1 || !rec.Expiry.Equal(f.clk.Now().Add(time.Minute)) {
		t.Errorf("renewed task: version %d expiry %v, want 1 and %v", rec.Version, rec.Expiry, f.clk.Now().Add(time.Minute))
	}
	got, err := f.svc.Task(t.Context(), "t1", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, got, addrCmp); diff != "" {
		t.Errorf("Task (-registered +got):\n%s", diff)
	}
}

func TestRegisterRefusals(t *testing.T) {
	f := newFixture(t, nil)
	f.register(t, "a", "taken", "2001:db8::9")
	tests := []struct {
		name string
		r    mapsrv.Registration
		want error
	}{
		{"zero low 16 bits under neutral-map", mapsrv.Registration{NVE: "a", Name: "x", SIR: netip.MustParseAddr("2001:db8::1:0")}, ila.ErrZeroAdjust},
		{"C bit set", mapsrv.Registration{NVE: "a", Name: "x", SIR: netip.MustParseAddr("2001:db8::1000:0:0:1")}, ila.ErrCBitSet},
		{"other nve's locator", mapsrv.Registration{NVE: "a", Locator: locB, Name: "x", SIR: netip.MustParseAddr("2001:db8::5")}, mapsrv.ErrForbidden},
		{"unknown nve", mapsrv.Registration{NVE: "zz", Name: "x", SIR: netip.MustParseAddr("2001:db8::5")}, mapsrv.ErrNotFound},
		{"sir outside every domain", mapsrv.Registration{NVE: "a", Name: "x", SIR: netip.MustParseAddr("2001:db9::5")}, mapsrv.ErrNotFound},
		{"no address", mapsrv.Registration{NVE: "a", Name: "x"}, mapsrv.ErrInvalid},
		{"name with slash", mapsrv.Registration{NVE: "a", Name: "x/y", SIR: netip.MustParseAddr("2001:db8::5")}, mapsrv.ErrInvalid},
		{"name used by another task", mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "taken", SIR: netip.MustParseAddr("2001:db8::5")}, mapsrv.ErrConflict},
		{"negative lifetime", mapsrv.Registration{NVE: "a", Name: "x", SIR: netip.MustParseAddr("2001:db8::5"), Lifetime: -1}, mapsrv.ErrInvalid},
		{"bad mode", mapsrv.Registration{NVE: "a", Name: "x", SIR: netip.MustParseAddr("2001:db8::5"), Mode: ila.MoveMode(9)}, mapsrv.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.Register(t.Context(), tc.r)
			if !errors.Is(err, tc.want) {
				t.Errorf("Register = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRegisterIPv4Tenant(t *testing.T) {
	f := newFixture(t, nil)
	rec, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: "b", Tenant: "t4", Name: "v4", IPv4: netip.MustParseAddr("10.1.2.3"), VNI: 42})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ila.NewVNIPv4(42, netip.MustParseAddr("10.1.2.3"))
	if rec.Identifier != id || rec.SIR != sirPrefix.Addr(id) || rec.VNI != 42 || rec.Locator != locB {
		t.Errorf("ipv4 task: id %s sir %s vni %d loc %s; want %s %s 42 %s", rec.Identifier, rec.SIR, rec.VNI, rec.Locator, id, sirPrefix.Addr(id), locB)
	}
}

func TestHotMove(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.InFlight = 10 * time.Second })
	f.register(t, "a", "vm1", "2001:db8::1")
	f.clk.Advance(time.Second)
	rec, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b"})
	if err != nil {
		t.Fatal(err)
	}
	wantPrev := []ila.Previous{{Locator: locA, NVE: "a", Until: f.clk.Now().Add(10 * time.Second)}}
	if rec.NVE != "b" || rec.Locator != locB || rec.Version != 2 || rec.State != ila.StateActive {
		t.Errorf("after hot move: nve %s loc %s version %d state %s", rec.NVE, rec.Locator, rec.Version, rec.State)
	}
	if diff := cmp.Diff(wantPrev, rec.Previous); diff != "" {
		t.Errorf("previous (-want +got):\n%s", diff)
	}
	// Second hot move: the chain keeps a, adds b.
	f.clk.Advance(time.Second)
	rec, err = f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Previous) != 2 {
		t.Errorf("previous after two moves: %+v, want a and b", rec.Previous)
	}
	// The sweeper prunes in-flight entries once over.
	f.clk.Advance(9500 * time.Millisecond)
	if _, err := f.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec, _ = f.svc.Task(t.Context(), "t1", "vm1")
	if diff := cmp.Diff([]ila.Previous{{Locator: locB, NVE: "b", Until: f.clk.Now().Add(500 * time.Millisecond)}}, rec.Previous); diff != "" {
		t.Errorf("previous after prune (-want +got):\n%s", diff)
	}
}

func TestNotifications(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- f.svc.Run(ctx) }()
	f.register(t, "a", "vm1", "2001:db8::1")
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b"}); err != nil {
		t.Fatal(err)
	}
	// A registration at c (its standby) is a move from b: b and a (still
	// in flight) are told.
	f.expected(t, "c", "2001:db8::1")
	f.register(t, "c", "vm1", "2001:db8::1")
	deadline := time.Now().Add(5 * time.Second)
	for len(f.notes.get()) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	var got []string
	for _, n := range f.notes.get() {
		got = append(got, n.NVE+" "+n.To.String()+" "+n.Task.Locator.String())
	}
	want := []string{
		"a [::1]:7000 " + locB.String(),
		"b [::1]:7001 " + locC.String(),
		"a [::1]:7000 " + locC.String(),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notifications (-want +got):\n%s", diff)
	}
	if st := f.svc.Stats(); st.NotifySent != 3 || st.MovesHot != 2 {
		t.Errorf("stats: %+v", st)
	}
}

func TestColdMove(t *testing.T) {
	f := newFixture(t, nil)
	f.register(t, "a", "vm1", "2001:db8::1")
	rec, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b", Mode: ila.MoveCold})
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != ila.StateSuspended || rec.NVE != "a" || rec.Locator != locA || rec.PendingNVE != "b" {
		t.Errorf("after cold move: %+v", rec)
	}
	// The old NVE refreshing keeps it suspended.
	rec = f.register(t, "a", "vm1", "2001:db8::1")
	if rec.State != ila.StateSuspended {
		t.Errorf("refresh at old nve: state %s, want suspended", rec.State)
	}
	rec = f.register(t, "b", "vm1", "2001:db8::1")
	if rec.State != ila.StateActive || rec.NVE != "b" || rec.Locator != locB || rec.PendingNVE != "" || len(rec.Previous) != 0 {
		t.Errorf("after registering at the destination: %+v", rec)
	}
}

// TestClaimWhileSuspended: a task suspended by a cold move to b that
// registers at c (its standby) instead is where it registered (a move to
// c), not stuck suspended until c's next re-registration. Without the
// standby, c's claim is refused.
func TestClaimWhileSuspended(t *testing.T) {
	f := newFixture(t, nil)
	f.register(t, "a", "vm1", "2001:db8::1")
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b", Mode: ila.MoveCold}); err != nil {
		t.Fatal(err)
	}
	claimC := mapsrv.Registration{NVE: "c", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveCold}
	if _, err := f.svc.Register(t.Context(), claimC); !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Fatalf("claim at c, not its standby, while suspended for b: %v, want ErrUnjustified", err)
	}
	f.expected(t, "c", "2001:db8::1")
	rec, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: "c", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveCold})
	if err != nil {
		t.Fatalf("claim at c while suspended for b: %v", err)
	}
	if rec.NVE != "c" || rec.State != ila.StateActive || rec.PendingNVE != "" || rec.Locator != locC {
		t.Errorf("after the claim at c: nve %s state %s pending %q, want c, active, none", rec.NVE, rec.State, rec.PendingNVE)
	}
	// A cold claim without an announced move completes at once as well.
	f.expected(t, "a", "2001:db8::1")
	rec, err = f.svc.Register(t.Context(), mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveCold})
	if err != nil || rec.NVE != "a" || rec.State != ila.StateActive || rec.Locator != locA {
		t.Errorf("cold claim at a: %+v, %v; want active on a", rec, err)
	}
	for _, p := range rec.Previous {
		if p.NVE == "c" && p.Until.After(f.clk.Now()) {
			t.Errorf("cold move left an in-flight entry at c: %+v", p)
		}
	}
}

func TestFlapDamping(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.FlapMoves = 3; c.FlapWindow = time.Minute })
	f.register(t, "a", "vm1", "2001:db8::1")
	to := []string{"b", "a", "b"}
	for _, n := range to {
		f.clk.Advance(time.Second)
		if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: n}); err != nil {
			t.Fatalf("move to %s: %v", n, err)
		}
	}
	f.clk.Advance(time.Second)
	f.expected(t, "c", "2001:db8::1") // what justifies c's claim below
	before, _ := f.svc.Task(t.Context(), "t1", "vm1")
	notes := len(f.notes.get())
	// Asked first (Check), the 4th move is refused; made, it is refused
	// too; and so is a claim by another NVE (its standby). None of them changes
	// anything: the task stays active on b, nobody is notified.
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"check", func() error {
			_, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "a", Check: true})
			return err
		}},
		{"move", func() error {
			_, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "a"})
			return err
		}},
		{"claim", func() error {
			_, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: "c", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Mode: ila.MoveHot})
			return err
		}},
	} {
		if err := call.do(); !errors.Is(err, mapsrv.ErrDuplicate) || !strings.Contains(err.Error(), "3 moves within 1m0s") {
			t.Errorf("4th move within a minute (%s): %v, want a refusal by flap damping", call.name, err)
		}
		rec, _ := f.svc.Task(t.Context(), "t1", "vm1")
		if diff := cmp.Diff(before, rec, addrCmp); diff != "" {
			t.Errorf("the refused %s changed the task (-before +after):\n%s", call.name, diff)
		}
	}
	if n := len(f.notes.get()) - notes; n != 0 {
		t.Errorf("refusals sent %d notifications", n)
	}
	if st := f.svc.Stats(); st.MovesRefused != 3 {
		t.Errorf("moves refused: %d, want 3", st.MovesRefused)
	}
	// The serving NVE still refreshes it; once the first move leaves the
	// window, the next move goes through.
	f.register(t, "b", "vm1", "2001:db8::1")
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "a", Check: true}); err == nil {
		t.Errorf("check before the window moved on: accepted")
	}
	f.clk.Advance(57 * time.Second)
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "a", Check: true}); err != nil {
		t.Errorf("check once the first move left the window: %v", err)
	}
	if rec, _ := f.svc.Task(t.Context(), "t1", "vm1"); rec.NVE != "b" {
		t.Errorf("a check moved the task to %s", rec.NVE)
	}
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "a"}); err != nil {
		t.Errorf("move once the first move left the window: %v", err)
	}
	// Moves spread beyond the window are not damped.
	f2 := newFixture(t, func(c *mapsrv.Config) { c.FlapMoves = 3; c.FlapWindow = time.Minute })
	f2.register(t, "a", "vm1", "2001:db8::1")
	for i := range 10 {
		f2.clk.Advance(30 * time.Second)
		if _, err := f2.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: to[i%2]}); err != nil {
			t.Fatalf("slow move %d: %v", i, err)
		}
	}
}

func TestSweepExpiry(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "short", "2001:db8::1")
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "forever", SIR: netip.MustParseAddr("2001:db8::2"), MAC: ila.MAC{2, 0, 0, 0, 0, 2}}); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(59 * time.Second)
	if n, err := f.svc.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("sweep before expiry: %d, %v", n, err)
	}
	f.clk.Advance(time.Second)
	if n, err := f.svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep at expiry: %d, %v; want 1", n, err)
	}
	if _, err := f.svc.Task(ctx, "t1", "short"); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("expired task: %v, want ErrNotFound", err)
	}
	kvs, _, _ := f.store.List(ctx, mapsrv.NamePrefix)
	if len(kvs) != 1 || kvs[0].Key != mapsrv.NameKey("t1", "forever") {
		t.Errorf("name index after expiry: %v", kvs)
	}
	if st := f.svc.Stats(); st.Expiries != 1 {
		t.Errorf("expiries = %d", st.Expiries)
	}
}

func TestConcurrentMovesOneWinner(t *testing.T) {
	f := newFixture(t, nil)
	f.register(t, "a", "vm1", "2001:db8::1")
	// A store that lets both movers read before either writes.
	bs := &barrierStore{Store: f.store, n: 2}
	svc, err := mapsrv.New(mapsrv.Config{Store: bs})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, to := range []string{"b", "c"} {
		go func() {
			_, err := svc.Move(context.Background(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: to})
			errs <- err
		}()
	}
	var ok, conflict int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, mapsrv.ErrConflict):
			conflict++
		default:
			t.Errorf("move: %v", err)
		}
	}
	if ok != 1 || conflict != 1 {
		t.Errorf("concurrent moves: %d won, %d conflicts; want 1 and 1", ok, conflict)
	}
	rec, _ := f.svc.Task(t.Context(), "t1", "vm1")
	if rec.Version != 2 {
		t.Errorf("version after one winning move: %d, want 2", rec.Version)
	}
}

// TestMoveRetriesAfterNVEChange: a write of the destination NVE's record
// between the move's read and its commit (here the same value again, as
// a liveness transition or a locator pin would write it) conflicts with
// the move's transaction; the move is decided again and lands, once. A
// concurrent change of the task itself still fails the move
// (TestConcurrentMovesOneWinner).
func TestMoveRetriesAfterNVEChange(t *testing.T) {
	f := newFixture(t, nil)
	f.register(t, "a", "vm1", "2001:db8::1")
	for _, step := range []struct {
		to      string
		touches int
	}{{"b", 1}, {"a", 3}} {
		to, touches := step.to, step.touches
		ts := &touchStore{Store: f.store, key: mapsrv.NVEKey(to), left: touches}
		svc, err := mapsrv.New(mapsrv.Config{Store: ts, Now: f.clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		before, _ := f.svc.Task(t.Context(), "t1", "vm1")
		rec, err := svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: to})
		if err != nil {
			t.Fatalf("move to %s with %d writes of its NVE record in the way: %v", to, touches, err)
		}
		if rec.NVE != to || rec.Version != before.Version+1 {
			t.Errorf("moved record: nve %s version %d, want %s and %d", rec.NVE, rec.Version, to, before.Version+1)
		}
		if got := svc.Stats().MoveRetries; got != uint64(touches) {
			t.Errorf("move retries = %d, want %d", got, touches)
		}
		if ts.left != 0 {
			t.Errorf("%d writes of the NVE record not made: the move did not commit after them", ts.left)
		}
	}
	// More conflicts than the move's attempts: the conflict is the answer.
	ts := &touchStore{Store: f.store, key: mapsrv.NVEKey("b"), left: 100}
	svc, err := mapsrv.New(mapsrv.Config{Store: ts, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := f.svc.Task(t.Context(), "t1", "vm1")
	if _, err := svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b"}); !errors.Is(err, mapsrv.ErrConflict) {
		t.Errorf("move against an NVE record rewritten before every commit: %v, want ErrConflict", err)
	}
	if after, _ := f.svc.Task(t.Context(), "t1", "vm1"); after.Version != before.Version || after.NVE != before.NVE {
		t.Errorf("failed move changed the task: %+v -> %+v", before, after)
	}
}

// touchStore rewrites key (its own value again: only the revision moves)
// before each of the next left transactions that write a task record.
type touchStore struct {
	*mapsrvtest.Store
	key  string
	left int
}

func (s *touchStore) Txn(ctx context.Context, c []mapsrv.Cond, o []mapsrv.Op) (int64, error) {
	if s.left > 0 && slices.ContainsFunc(o, func(op mapsrv.Op) bool { return strings.HasPrefix(op.Key, mapsrv.MapPrefix) }) {
		kv, err := s.Store.Get(ctx, s.key)
		if err != nil || kv[0].Revision == 0 {
			return 0, fmt.Errorf("touch %s: %v (revision %d)", s.key, err, kv[0].Revision)
		}
		s.Store.Put(s.key, kv[0].Value)
		s.left--
	}
	return s.Store.Txn(ctx, c, o)
}

// barrierStore holds every Txn until n of them are waiting.
type barrierStore struct {
	*mapsrvtest.Store
	mu      sync.Mutex
	n       int
	waiting int
	release chan struct{}
}

func (b *barrierStore) Txn(ctx context.Context, c []mapsrv.Cond, o []mapsrv.Op) (int64, error) {
	b.mu.Lock()
	if b.release == nil {
		b.release = make(chan struct{})
	}
	rel := b.release
	b.waiting++
	if b.waiting == b.n {
		close(rel)
	}
	b.mu.Unlock()
	select {
	case <-rel:
	case <-time.After(5 * time.Second):
	}
	return b.Store.Txn(ctx, c, o)
}

func TestMalformedValuesSkipped(t *testing.T) {
	f := newFixture(t, nil)
	f.register(t, "a", "vm1", "2001:db8::1")
	f.store.Put(mapsrv.MapPrefix+"prod/zzzz", []byte("{not json"))
	f.store.Put(mapsrv.TaskKey("prod", 7), []byte(`{"domain":"prod","identifier":"0:0:0:8","locator":"1:2:3:4","nve":"a","state":"active"}`))
	f.store.Put(mapsrv.NVEKey("bad"), []byte(`[]`))
	f.store.Put(mapsrv.DomainKey("bad"), []byte(`{"name":"bad","sir_prefix":"nonsense"}`))
	f.store.Put(mapsrv.NameKey("t1", "ghost"), []byte(`"x"`))
	ctx := t.Context()
	tasks, err := f.svc.Tasks(ctx)
	if err != nil || len(tasks) != 1 {
		t.Errorf("Tasks = %d tasks, %v; want only vm1", len(tasks), err)
	}
	nves, err := f.svc.NVEs(ctx)
	if err != nil || len(nves) != 3 {
		t.Errorf("NVEs = %d, %v; want 3", len(nves), err)
	}
	doms, err := f.svc.Domains(ctx)
	if err != nil || len(doms) != 1 {
		t.Errorf("Domains = %d, %v; want 1", len(doms), err)
	}
	if _, err := f.svc.Task(ctx, "t1", "ghost"); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("task behind a malformed index: %v, want ErrNotFound", err)
	}
	if _, err := f.svc.Sweep(ctx); err != nil {
		t.Errorf("sweep over malformed values: %v", err)
	}
	if st := f.svc.Stats(); st.MalformedSkipped < 4 {
		t.Errorf("malformed skipped = %d, want >= 4", st.MalformedSkipped)
	}
	// A registration may replace a malformed value at its key.
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "a", Name: "ghost", Tenant: "t1", SIR: netip.MustParseAddr("2001:db8::7")}); err != nil {
		t.Errorf("register over malformed values: %v", err)
	}
}

func TestAddNVELocatorConflicts(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	if err := f.svc.AddDomain(ctx, ila.Domain{Name: "dev", SIR: 0x20010db8ffff0000, Csum: ila.CsumNoAction}); err != nil {
		t.Fatal(err)
	}
	u := netip.MustParseAddr("fd99::9")
	tests := []struct {
		name string
		n    mapsrv.NVERecord
		want error
	}{
		{"locator of another nve", mapsrv.NVERecord{NVE: ila.NVE{Name: "d", Locators: []ila.Locator{locA}, Underlay: u}}, mapsrv.ErrConflict},
		{"no locator", mapsrv.NVERecord{NVE: ila.NVE{Name: "d", Underlay: u}}, mapsrv.ErrInvalid},
		{"no underlay", mapsrv.NVERecord{NVE: ila.NVE{Name: "d", Locators: []ila.Locator{9}}}, mapsrv.ErrInvalid},
		{"pinned to unknown domain", mapsrv.NVERecord{NVE: ila.NVE{Name: "d", Locators: []ila.Locator{9}, Underlay: u}, LocatorDomains: map[string]string{ila.Locator(9).String(): "nope"}}, mapsrv.ErrNotFound},
		{"ok, pinned", mapsrv.NVERecord{NVE: ila.NVE{Name: "d", Locators: []ila.Locator{9, 10}, Underlay: u}, LocatorDomains: map[string]string{ila.Locator(9).String(): "dev"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := f.svc.AddNVE(ctx, tc.n); !errors.Is(err, tc.want) {
				t.Errorf("AddNVE = %v, want %v", err, tc.want)
			}
		})
	}
	// A task of prod on d's first unpinned locator pins it to prod; d's
	// locator 9 is dev's, so it may not carry prod.
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "d", Locator: 9, Name: "p", SIR: netip.MustParseAddr("2001:db8::3")}); !errors.Is(err, mapsrv.ErrForbidden) || !errors.Is(err, ila.ErrLocatorConflict) {
		t.Errorf("register prod task on dev locator: %v, want ErrForbidden and ila.ErrLocatorConflict", err)
	}
	rec, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "d", Name: "p", SIR: netip.MustParseAddr("2001:db8::3")})
	if err != nil || rec.Locator != 10 {
		t.Fatalf("register prod task on d: %v, locator %s; want 0:0:0:a", err, rec.Locator)
	}
	n, _ := f.svc.NVE(ctx, "d")
	if n.LocatorDomains[ila.Locator(10).String()] != "prod" {
		t.Errorf("locator 10 not pinned to prod: %v", n.LocatorDomains)
	}
}

func TestDeregister(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	if err := f.svc.Deregister(ctx, mapsrv.DeregisterRequest{Tenant: "t1", Name: "vm1", NVE: "b"}); !errors.Is(err, mapsrv.ErrForbidden) {
		t.Errorf("deregister by another nve: %v, want ErrForbidden", err)
	}
	if err := f.svc.Deregister(ctx, mapsrv.DeregisterRequest{Tenant: "t1", Name: "vm1"}); err != nil {
		t.Fatal(err)
	}
	kvs, _, _ := f.store.List(ctx, mapsrv.Prefix+"map/")
	if len(kvs) != 0 {
		t.Errorf("mappings left: %v", kvs)
	}
	if err := f.svc.Deregister(ctx, mapsrv.DeregisterRequest{Tenant: "t1", Name: "vm1"}); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("second deregister: %v, want ErrNotFound", err)
	}
}

func TestReplicasShareStore(t *testing.T) {
	// Two Services over one store: what one remembers of its own writes
	// must never override the other's.
	f := newFixture(t, nil)
	other, err := mapsrv.New(mapsrv.Config{Store: f.store, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	// The other replica, knowing nothing, sees the task and moves it
	// (b's standby registration through the first one justifies it).
	f.expected(t, "b", "2001:db8::1")
	rec, err := other.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1")})
	if err != nil || rec.Version != 2 || rec.NVE != "b" {
		t.Fatalf("move through the other replica: %+v, %v", rec, err)
	}
	// The first replica's memory of version 1 is stale: b refreshing is a
	// re-registration, not a move.
	rec = f.register(t, "b", "vm1", "2001:db8::1")
	if rec.Version != 2 || rec.NVE != "b" || len(rec.Previous) != 1 || rec.Previous[0].NVE != "a" {
		t.Errorf("refresh through the first replica: %+v", rec)
	}
	// A name taken through one replica is refused through the other.
	if _, err := other.Register(ctx, mapsrv.Registration{NVE: "c", Tenant: "t1", Name: "vm2", SIR: netip.MustParseAddr("2001:db8::2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "c", Tenant: "t1", Name: "vm2", SIR: netip.MustParseAddr("2001:db8::3")}); !errors.Is(err, mapsrv.ErrConflict) {
		t.Errorf("name taken through the other replica: %v, want ErrConflict", err)
	}
	if st := f.svc.Stats(); st.MovesHot != 0 {
		t.Errorf("first replica counted %d moves, want 0", st.MovesHot)
	}
}

func TestAddNVEKeepsPins(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1") // pins locA to prod
	// Replacing a's record (one more locator) keeps the pin. (A new
	// underlay is refused while vm1 is registered: TestAddNVEReplaceLive.)
	err := f.svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{locA, 0xfd000000000000aa}, Underlay: netip.MustParseAddr("fd99::2")}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.NVE(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{locA.String(): "prod"}, n.LocatorDomains); diff != "" {
		t.Errorf("pins after replacing the record (-want +got):\n%s", diff)
	}
	if n.Underlay != netip.MustParseAddr("fd99::2") || len(n.Locators) != 2 {
		t.Errorf("replaced record: %+v", n)
	}
}

// TestRegisterCachedRecordMatchesStore: registrations that start from the
// record this Service remembers (refreshes, moves by claim, which change
// the move history and previous locators) give the same record as the
// one decoded from the store.
func TestRegisterCachedRecordMatchesStore(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.FlapMoves = 100 })
	steps := []string{"a", "a", "b", "b", "a", "c", "a", "a"}
	for i, nve := range steps {
		f.clk.Advance(time.Second)
		// A claim from another NVE carries a move mode (a bare
		// registration from a previous NVE is refused, see
		// TestStaleRefreshDoesNotMoveBack) and is justified by a standby
		// registration (TestUnjustifiedClaimRefused).
		if i > 0 && steps[i-1] != nve {
			f.expected(t, nve, "2001:db8::1")
			f.clk.Advance(time.Second)
		}
		rec, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: nve, Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute, Mode: ila.MoveHot})
		if err != nil {
			t.Fatalf("step %d: register at %s: %v", i, nve, err)
		}
		got, err := f.svc.Task(t.Context(), "t1", "vm1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, rec, addrCmp); diff != "" {
			t.Errorf("step %d at %s: registered record differs from the stored one (-stored +registered):\n%s", i, nve, diff)
		}
	}
	got, err := f.svc.Task(t.Context(), "t1", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if got.NVE != "a" || len(got.Moves) != 4 || got.Version != 5 {
		t.Errorf("final record: nve %s, %d moves, version %d; want a, 4, 5", got.NVE, len(got.Moves), got.Version)
	}
}

// TestStaleRefreshDoesNotMoveBack: a periodic re-registration from the NVE
// a task just left, which crossed the move on the wire, is refused and the
// task stays where it moved; a claim with a move mode from that NVE (the
// task attached there again) moves it back once justified (that NVE is
// the task's standby); after the in-flight time a bare registration is a
// move again, as the draft has it.
func TestStaleRefreshDoesNotMoveBack(t *testing.T) {
	f := newFixture(t, func(c *mapsrv.Config) { c.InFlight = 10 * time.Second })
	f.register(t, "a", "vm1", "2001:db8::1")
	f.clk.Advance(time.Second)
	if _, err := f.svc.Move(t.Context(), mapsrv.MoveRequest{Tenant: "t1", Name: "vm1", To: "b"}); err != nil {
		t.Fatal(err)
	}
	reg := mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: time.Minute}
	_, err := f.svc.Register(t.Context(), reg)
	if !errors.Is(err, mapsrv.ErrConflict) {
		t.Fatalf("stale refresh from a: err = %v, want ErrConflict", err)
	}
	if rec, _ := f.svc.Task(t.Context(), "t1", "vm1"); rec.NVE != "b" || rec.Version != 2 {
		t.Fatalf("after the stale refresh: at %s version %d, want b version 2", rec.NVE, rec.Version)
	}
	claim := reg
	claim.Mode = ila.MoveHot
	if _, err := f.svc.Register(t.Context(), claim); !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Fatalf("claim with a mode from a, not the task's standby: %v, want ErrUnjustified", err)
	}
	f.expected(t, "a", "2001:db8::1")
	rec, err := f.svc.Register(t.Context(), claim)
	if err != nil || rec.NVE != "a" || rec.Locator != locA {
		t.Fatalf("claim with a mode from a: %v, at %s %s", err, rec.NVE, rec.Locator)
	}
	// From b now (the previous NVE) and after its in-flight time: a move.
	f.clk.Advance(11 * time.Second)
	breg := reg
	breg.NVE = "b"
	f.expected(t, "b", "2001:db8::1")
	if rec, err = f.svc.Register(t.Context(), breg); err != nil || rec.NVE != "b" {
		t.Fatalf("bare registration from b after the in-flight time: %v, at %s", err, rec.NVE)
	}
}
