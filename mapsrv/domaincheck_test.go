package mapsrv_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestAddNVEReplaceLive: a live NVE's underlay, or a locator its tasks
// use, cannot be replaced while tasks are registered on it.
func TestAddNVEReplaceLive(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "vm1", "2001:db8::1")
	u := netip.MustParseAddr("fd99::2") // the fixture's underlay
	tests := []struct {
		name string
		n    mapsrv.NVERecord
		want error
		msg  string
	}{
		{"new underlay", mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{locA}, Underlay: netip.MustParseAddr("fd99::66")}}, mapsrv.ErrConflict, "underlay fd99::2 -> fd99::66 while 1 task(s) are registered on it (t1/vm1)"},
		{"locator replaced", mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{0xfd000000000000aa}, Underlay: u}}, mapsrv.ErrConflict, "locators [fd00:0:0:1] removed while 1 task(s)"},
		{"nve without tasks", mapsrv.NVERecord{NVE: ila.NVE{Name: "b", Locators: []ila.Locator{0xfd000000000000bb}, Underlay: netip.MustParseAddr("fd99::bb")}}, nil, ""},
		{"locator added", mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{locA, 0xfd000000000000aa}, Underlay: u}}, nil, ""},
		{"unused locator removed", mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{locA}, Underlay: u}}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := f.svc.AddNVE(ctx, tc.n)
			if !errors.Is(err, tc.want) || (tc.msg != "" && !strings.Contains(err.Error(), tc.msg)) {
				t.Errorf("AddNVE = %v, want %v (%q)", err, tc.want, tc.msg)
			}
		})
	}
	if rec, err := f.svc.Task(ctx, "t1", "vm1"); err != nil || rec.Locator != locA {
		t.Errorf("task after the refusals: %+v, %v", rec, err)
	}
	// Once the task is gone the underlay may change.
	if err := f.svc.Deregister(ctx, mapsrv.DeregisterRequest{Tenant: "t1", Name: "vm1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{locA}, Underlay: netip.MustParseAddr("fd99::66")}}); err != nil {
		t.Errorf("new underlay without tasks: %v", err)
	}
}

// TestDomainLocatorOverlap: a SIR prefix that is also a locator (either
// way round) is refused: ilad's datapath refuses it.
func TestDomainLocatorOverlap(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	err := f.svc.AddDomain(ctx, ila.Domain{Name: "clash", SIR: ila.SIRPrefix(locB), Csum: ila.CsumNoAction})
	if !errors.Is(err, mapsrv.ErrConflict) || !strings.Contains(err.Error(), "also a locator of nve b") {
		t.Errorf("domain whose prefix is nve b's locator: %v", err)
	}
	err = f.svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: "d", Locators: []ila.Locator{ila.Locator(sirPrefix)}, Underlay: netip.MustParseAddr("fd99::d")}})
	if !errors.Is(err, mapsrv.ErrConflict) || !strings.Contains(err.Error(), "SIR prefix of domain prod") {
		t.Errorf("nve whose locator is prod's prefix: %v", err)
	}
}

// TestAddDomainSIRIndex: the SIR prefix is unique in the store itself:
// of two concurrent additions of one prefix under two names (both read
// the domains before either writes), exactly one succeeds.
func TestAddDomainSIRIndex(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	kvs, err := f.store.Get(ctx, mapsrv.SIRIndexKey(sirPrefix))
	if err != nil || kvs[0].Revision == 0 || string(kvs[0].Value) != `{"domain":"prod"}` {
		t.Fatalf("index of prod: %+v, %v", kvs, err)
	}
	bs := &barrierStore{Store: f.store, n: 2}
	svc, err := mapsrv.New(mapsrv.Config{Store: bs})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, name := range []string{"x1", "x2"} {
		go func() {
			errs <- svc.AddDomain(context.Background(), ila.Domain{Name: name, SIR: 0x20010db8eeee0000, Csum: ila.CsumNoAction})
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
			t.Errorf("add domain: %v", err)
		}
	}
	if ok != 1 || conflict != 1 {
		t.Errorf("concurrent additions of one prefix: %d succeeded, %d conflicts; want 1 and 1", ok, conflict)
	}
	doms, _ := f.svc.Domains(ctx)
	if len(doms) != 2 {
		t.Errorf("domains: %+v, want prod and one of x1, x2", doms)
	}
}
