package mapsrv_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/mapsrvtest"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// BenchmarkHandle measures the CPU and allocations of the mapping
// service's part of a registration (Service.Handle over the in-memory
// store, no etcd, no UDP): registrations of new tasks, and refreshes of
// known ones.
func BenchmarkHandle(b *testing.B) {
	ctx := context.Background()
	sir := ila.SIRPrefix(0x20010db800000000)
	newSvc := func(b *testing.B) *mapsrv.Service {
		svc, err := mapsrv.New(mapsrv.Config{Store: &mapsrvtest.Store{}})
		if err != nil {
			b.Fatal(err)
		}
		if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sir, Csum: ila.CsumNeutralMap}); err != nil {
			b.Fatal(err)
		}
		if err := svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{0xfd00000000000001}, Underlay: netip.MustParseAddr("fd99::1")}}); err != nil {
			b.Fatal(err)
		}
		return svc
	}
	req := func(i int) *regproto.Message {
		return &regproto.Message{Type: regproto.TypeRequest, NVE: "a", VMID: fmt.Sprintf("vm-%d", i), Tenant: "bench", Addrs: []netip.Addr{sir.Addr(ila.Identifier(i<<1 | 1))}, Lifetime: 900}
	}
	from := netip.MustParseAddrPort("[fd99::1]:4000")
	run := func(b *testing.B, svc *mapsrv.Service, reqs []*regproto.Message) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if rep := svc.Handle(ctx, from, reqs[i]); rep.Err() != nil {
				b.Fatal(rep.Err())
			}
		}
	}
	b.Run("new", func(b *testing.B) {
		svc := newSvc(b)
		reqs := make([]*regproto.Message, b.N)
		for i := range reqs {
			reqs[i] = req(i)
		}
		run(b, svc, reqs)
	})
	b.Run("refresh", func(b *testing.B) {
		svc := newSvc(b)
		reqs := make([]*regproto.Message, b.N)
		for i := range reqs {
			reqs[i] = req(i % 1000)
		}
		for i := range min(b.N, 1000) {
			if rep := svc.Handle(ctx, from, reqs[i]); rep.Err() != nil {
				b.Fatal(rep.Err())
			}
		}
		run(b, svc, reqs)
	})
}
