package datapath

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/vishvananda/netlink"
)

// BenchmarkAttachTask times attaching the task-facing programs (ingress
// and egress) to a fresh port, as a prepare does: tcx (Config.TaskTCX:
// two links, each waiting for an RCU grace period under the RTNL) against
// the clsact filters (the default). Each iteration makes a veth first and removes it afterwards,
// outside the timer.
//
//	go test -c -o /tmp/dp.test ./ila/datapath
//	sudo /tmp/dp.test -test.run '^$' -test.bench AttachTask -test.benchtime 100x
func BenchmarkAttachTask(b *testing.B) {
	testutil.Privileged(b)
	for _, mode := range []string{"tcx", "clsact"} {
		b.Run(mode, func(b *testing.B) {
			ns := testutil.NewNetNS(b, "ilaab-"+testutil.Suffix())
			peer := testutil.NewNetNS(b, "ilaabp-"+testutil.Suffix())
			h := ns.Handle(b)
			d, err := Open(Config{MaxMappings: 1024, TaskTCX: mode == "tcx"})
			if err != nil {
				b.Skipf("datapath: %v", err)
			}
			b.Cleanup(func() { d.Close() })
			var took []time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				name := fmt.Sprintf("ab%d", i)
				if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: fmt.Sprintf("p%d", i), PeerNamespace: netlink.NsFd(peer.Fd())}); err != nil {
					b.Fatal(err)
				}
				l, err := h.LinkByName(name)
				if err != nil {
					b.Fatal(err)
				}
				a := Attachment{Ifname: name, Ifindex: l.Attrs().Index, NetNS: ns.Path, Role: RoleTask}
				b.StartTimer()
				start := time.Now()
				err = d.Attach(a)
				took = append(took, time.Since(start))
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Detach(a); err != nil {
					b.Fatal(err)
				}
				_ = h.LinkDel(l)
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
		})
	}
}
