package mapsrv_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

func TestAllocateAddress(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	a, created, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Tenant: "t1", Name: "pod1"})
	if err != nil || !created {
		t.Fatalf("allocate pod1: %v (created %v)", err, created)
	}
	if a.Domain != "prod" || !sirPrefix.Contains(a.SIR) || a.Identifier.Type() != ila.TypeLUID || ila.IdentifierOf(a.SIR) != a.Identifier {
		t.Fatalf("allocation %+v: want a LUID in prod's prefix %s", a, sirPrefix)
	}
	// Same name again (a re-ADD on another node): same address.
	again, created, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Domain: "prod", Tenant: "t1", Name: "pod1"})
	if err != nil || created || again.SIR != a.SIR {
		t.Fatalf("allocate pod1 again: %v, %v, created %v; want %v, not created", again.SIR, err, created, a.SIR)
	}
	// The allocation outlives a registration and its deregistration.
	f.register(t, "a", "pod1", a.SIR.String())
	if err := f.svc.Deregister(ctx, mapsrv.DeregisterRequest{Tenant: "t1", Name: "pod1"}); err != nil {
		t.Fatal(err)
	}
	if again, _, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Tenant: "t1", Name: "pod1"}); err != nil || again.SIR != a.SIR {
		t.Fatalf("allocate pod1 after its deregistration: %v, %v; want %v", again.SIR, err, a.SIR)
	}
	// Other names get other addresses.
	seen := map[netip.Addr]bool{a.SIR: true}
	for _, n := range []string{"pod2", "pod3", "pod4"} {
		b, _, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Tenant: "t1", Name: n})
		if err != nil {
			t.Fatal(err)
		}
		if seen[b.SIR] {
			t.Fatalf("%s got %v, already handed out", n, b.SIR)
		}
		seen[b.SIR] = true
	}
	if got, err := f.svc.Allocation(ctx, "t1", "pod1"); err != nil || got.SIR != a.SIR {
		t.Fatalf("get allocation: %v, %v", got, err)
	}
	// Release: gone, and the identifier's reservation with it.
	if err := f.svc.ReleaseAddress(ctx, "t1", "pod1"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ReleaseAddress(ctx, "t1", "pod1"); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Fatalf("second release: %v, want ErrNotFound", err)
	}
	kvs, _, err := f.store.List(ctx, mapsrv.AllocIDPrefix)
	if err != nil || len(kvs) != 3 {
		t.Fatalf("identifier reservations after a release: %d (%v), want 3", len(kvs), err)
	}
}

func TestAllocateKeepsRegisteredAddress(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	rec := f.register(t, "a", "vm1", "2001:db8::1:0:0:7")
	a, created, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Tenant: "t1", Name: "vm1"})
	if err != nil || !created || a.SIR != rec.SIR {
		t.Fatalf("allocate for registered vm1: %v, %v, created %v; want %v", a.SIR, err, created, rec.SIR)
	}
	// A registered task's identifier is never handed to another name:
	// draw many and check none is vm1's.
	for i := range 20 {
		b, _, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Tenant: "t1", Name: "p" + string(rune('a'+i))})
		if err != nil || b.SIR == rec.SIR {
			t.Fatalf("allocate: %v, %v", b.SIR, err)
		}
	}
}

func TestAllocateErrors(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		req  mapsrv.AllocRequest
		want error
	}{
		{"no name", mapsrv.AllocRequest{Tenant: "t1"}, mapsrv.ErrInvalid},
		{"slash in name", mapsrv.AllocRequest{Name: "a/b"}, mapsrv.ErrInvalid},
		{"unknown domain", mapsrv.AllocRequest{Domain: "nope", Name: "x"}, mapsrv.ErrNotFound},
	} {
		if _, _, err := f.svc.AllocateAddress(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Two domains: the domain is required.
	if err := f.svc.AddDomain(ctx, ila.Domain{Name: "dev", SIR: ila.SIRPrefix(0x20010db800000001), Csum: ila.CsumNeutralMap}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Name: "x"}); !errors.Is(err, mapsrv.ErrInvalid) {
		t.Errorf("no domain among two: %v, want ErrInvalid", err)
	}
	// A name allocated in one domain is not handed out in another.
	if _, _, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Domain: "prod", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Domain: "dev", Name: "x"}); !errors.Is(err, mapsrv.ErrConflict) {
		t.Errorf("same name in another domain: %v, want ErrConflict", err)
	}
	// A malformed stored allocation is replaced, not trusted.
	if _, err := f.store.Txn(ctx, nil, []mapsrv.Op{{Key: mapsrv.AllocKey("default", "y"), Value: []byte(`{"domain":"prod"`)}}); err != nil {
		t.Fatal(err)
	}
	if a, created, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Domain: "prod", Name: "y"}); err != nil || !created || !sirPrefix.Contains(a.SIR) {
		t.Errorf("allocate over a malformed value: %v, %v, created %v", a, err, created)
	}
}

func TestAllocateIPv4(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	subnet := netip.MustParsePrefix("10.7.0.0/29") // 6 host addresses
	gw := netip.MustParseAddr("10.7.0.1")
	req := func(name string) mapsrv.AllocRequest {
		return mapsrv.AllocRequest{Tenant: "v4", Name: name, VNI: 70, IPv4Net: subnet, IPv4Exclude: []netip.Addr{gw}}
	}
	// A registered task of the VNI holds its address: never handed out.
	taken := netip.MustParseAddr("10.7.0.3")
	id, _ := ila.NewVNIPv4(70, taken)
	if _, err := f.svc.Register(ctx, mapsrv.Registration{NVE: "a", Tenant: "v4", Name: "old", SIR: sirPrefix.Addr(id), IPv4: taken, VNI: 70, Lifetime: time.Minute}); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for _, n := range []string{"p1", "p2", "p3", "p4"} {
		a, created, err := f.svc.AllocateAddress(ctx, req(n))
		if err != nil || !created {
			t.Fatalf("allocate %s: %v (created %v)", n, err, created)
		}
		want, _ := ila.NewVNIPv4(70, a.IPv4)
		if a.VNI != 70 || !subnet.Contains(a.IPv4) || a.IPv4 == gw || a.IPv4 == taken || a.Identifier != want || a.SIR != sirPrefix.Addr(want) {
			t.Fatalf("allocation %+v: want a VN-IPv4 identifier of vni 70 in %v, not %v or %v", a, subnet, gw, taken)
		}
		if o, dup := seen[a.IPv4]; dup || a.IPv4 == subnet.Addr() || a.IPv4 == netip.MustParseAddr("10.7.0.7") {
			t.Fatalf("%s got %v (held by %q, or the network or broadcast address)", n, a.IPv4, o)
		}
		seen[a.IPv4] = n
	}
	// The same name again: the same address.
	if a, created, err := f.svc.AllocateAddress(ctx, req("p1")); err != nil || created || seen[a.IPv4] != "p1" {
		t.Fatalf("allocate p1 again: %+v, %v, created %v", a, err, created)
	}
	// The registered task asking adopts its address.
	if a, created, err := f.svc.AllocateAddress(ctx, req("old")); err != nil || !created || a.IPv4 != taken {
		t.Fatalf("allocate for the registered task: %+v, %v, created %v; want %v", a, err, created, taken)
	}
	// Six host addresses, one excluded, five held: full.
	if _, _, err := f.svc.AllocateAddress(ctx, req("p5")); !errors.Is(err, mapsrv.ErrConflict) {
		t.Fatalf("allocate in a full subnet: %v, want ErrConflict", err)
	}
	// A name holding a LUID does not get an IPv4 address, and back.
	if _, _, err := f.svc.AllocateAddress(ctx, mapsrv.AllocRequest{Tenant: "v4", Name: "p1"}); !errors.Is(err, mapsrv.ErrConflict) {
		t.Errorf("p1 without vni: %v, want ErrConflict", err)
	}
	for _, tc := range []struct {
		name string
		req  mapsrv.AllocRequest
	}{
		{"subnet without vni", mapsrv.AllocRequest{Name: "x", IPv4Net: subnet}},
		{"vni without subnet", mapsrv.AllocRequest{Name: "x", VNI: 70}},
		{"ipv6 subnet", mapsrv.AllocRequest{Name: "x", VNI: 70, IPv4Net: netip.MustParsePrefix("2001:db8::/64")}},
		{"host route", mapsrv.AllocRequest{Name: "x", VNI: 70, IPv4Net: netip.MustParsePrefix("10.0.0.1/32")}},
		{"vni too large", mapsrv.AllocRequest{Name: "x", VNI: 1 << 28, IPv4Net: subnet}},
		{"ipv6 exclude", mapsrv.AllocRequest{Name: "x", VNI: 70, IPv4Net: subnet, IPv4Exclude: []netip.Addr{netip.MustParseAddr("::1")}}},
	} {
		if _, _, err := f.svc.AllocateAddress(ctx, tc.req); !errors.Is(err, mapsrv.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
}
