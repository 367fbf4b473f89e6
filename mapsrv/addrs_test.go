package mapsrv_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// TestRegistrationSeveralAddresses: a task has one SIR address and one
// IPv4 address; a registration carrying more of either (pmip-04 lets the
// options repeat) is refused with reason 10, invalid request, and stores
// nothing, instead of keeping the first and dropping the rest unsaid.
func TestRegistrationSeveralAddresses(t *testing.T) {
	f := newFixture(t, nil)
	from := netip.MustParseAddrPort("[fd99::2]:4000")
	a := netip.MustParseAddr
	tests := []struct {
		name   string
		addrs  []netip.Addr
		vni    uint32
		reason regproto.Reason
	}{
		{"two SIR addresses", []netip.Addr{a("2001:db8::1"), a("2001:db8::2")}, 0, regproto.ReasonInvalid},
		{"two IPv4 addresses", []netip.Addr{a("10.0.0.1"), a("10.0.0.2")}, 42, regproto.ReasonInvalid},
		{"one of each", []netip.Addr{a("2001:db8::3"), a("10.0.0.3")}, 0, regproto.ReasonNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &regproto.Message{Type: regproto.TypeRequest, NVE: "a", VMID: "vm", Tenant: "t1", Addrs: tc.addrs, VNI: tc.vni, Lifetime: 15}
			rep := f.svc.Handle(t.Context(), from, req)
			if rep.Reason != tc.reason || rep.Status.Accepted() != (tc.reason == regproto.ReasonNone) {
				t.Fatalf("reply %s/%s, want reason %s", rep.Status, rep.Reason, tc.reason)
			}
			rec, err := f.svc.Task(t.Context(), "t1", "vm")
			if tc.reason != regproto.ReasonNone {
				if !errors.Is(err, mapsrv.ErrNotFound) {
					t.Errorf("refused registration stored %+v, %v", rec, err)
				}
				return
			}
			if err != nil || rec.SIR != a("2001:db8::3") {
				t.Errorf("stored %+v, %v", rec, err)
			}
		})
	}
}

// TestRegistrationSourceAddressIgnored: where packets go is the locator
// option or the NVE's own locator, and who registers is the key's owner
// (req.NVE); the request's source address (pmip-04's care-of address)
// plays no part, whatever it is.
func TestRegistrationSourceAddressIgnored(t *testing.T) {
	f := newFixture(t, nil)
	for i, from := range []string{"[fd99::2]:4000", "[2001:db8:ffff::7]:9", "192.0.2.1:1"} {
		req := &regproto.Message{Type: regproto.TypeRequest, NVE: "b", VMID: "vm", Tenant: "t1", Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::5")}, Lifetime: 15}
		if rep := f.svc.Handle(t.Context(), netip.MustParseAddrPort(from), req); !rep.Status.Accepted() || rep.Locator != locB {
			t.Fatalf("from %s: %s/%s locator %s, want accepted at b's locator", from, rep.Status, rep.Reason, rep.Locator)
		}
		rec, err := f.svc.Task(t.Context(), "t1", "vm")
		if err != nil || rec.NVE != "b" || rec.Locator != locB || rec.Version != 1 {
			t.Errorf("try %d from %s: stored %+v, %v; want at b, unchanged", i, from, rec, err)
		}
	}
}
