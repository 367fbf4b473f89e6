//go:build linux

package main

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/vishvananda/netlink"
)

// BenchmarkPrepare times ilad's prepare of an arriving task through its
// local API (what a libvirt hook does at "started"): port (gateway MAC,
// fe80::1, sysctls), datapath attach, local entry, ND emulator and IPv4
// port hooks, no registration. Each iteration first creates a fresh veth
// (as QEMU creates its tap) and afterwards aborts the task and deletes the
// veth, outside the timer. p50/p99 are reported beside the mean.
//
//	go test -c -o /tmp/ilad.test ./cmd/ilad
//	sudo /tmp/ilad.test -test.run '^$' -test.bench Prepare -test.benchtime 200x
func BenchmarkPrepare(b *testing.B) {
	l := newLab(b, 1, nil)
	v := l.nves[0]
	c := l.client(v)
	tns := testutil.NewNetNS(b, "ilatb"+l.sfx)
	nh := v.ns.Handle(b)
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		port := fmt.Sprintf("vb%d", i)
		if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port}, PeerName: fmt.Sprintf("e%d", i), PeerNamespace: netlink.NsFd(tns.Fd())}); err != nil {
			b.Fatal(err)
		}
		spec := locator.TaskSpec{Name: "bench", Tenant: "t1", Iface: port, SIR: labSIR.Addr(ila.Identifier(0x2001)), MAC: ila.MAC{2, 0, 0, 0, 0x20, 0x01}}
		b.StartTimer()
		start := time.Now()
		st, err := c.Prepare(b.Context(), spec)
		took = append(took, time.Since(start))
		b.StopTimer()
		if err != nil || st.State != locator.StatePrepared {
			b.Fatalf("prepare: %+v, %v", st, err)
		}
		if err := c.Abort(b.Context(), "bench"); err != nil {
			b.Fatal(err)
		}
		if l, err := nh.LinkByName(port); err == nil {
			_ = nh.LinkDel(l)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	q := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
}
