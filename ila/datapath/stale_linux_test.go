//go:build linux

package datapath

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestUplinkStaleSenderRedirected: a packet for one of our locators whose
// task is neither here nor in flight (its in-flight time is over, the
// sender's mapping is stale) is re-translated to the locator this node's
// table holds for it, not dropped.
func TestUplinkStaleSenderRedirected(t *testing.T) {
	tb := newTestbed(t, Config{})
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		for _, proto := range protos {
			t.Run(mode.String()+"/"+protoName(proto), func(t *testing.T) {
				// idRemote lives at e.remote; the sender still uses our
				// locator for it.
				src := e.sir(idLocal)
				sirDst, staleDst := e.sir(idRemote), e.ila(t, idRemote, e.own)
				newDst := e.ila(t, idRemote, e.remote)
				in := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: src, Dst: staleDst, Proto: proto, L4: l4(proto), HopLimit: 60}
				want := in
				want.Dst, want.HopLimit, want.EthDst, want.EthSrc = newDst, 59, nextHopMAC, uplinkMAC
				wantFrame := frameWithCsumFor(want, wireCsumDst(mode, sirDst, newDst))
				before := tb.stats(t)
				act, out := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, frameWithCsumFor(in, wireCsumDst(mode, sirDst, staleDst)))
				if act != actRedirect {
					t.Fatalf("action %d, want redirect", act)
				}
				if diff := cmp.Diff(wantFrame, out[:len(wantFrame)]); diff != "" {
					t.Errorf("frame (-want +got)\n%s", diff)
				}
				if diff := cmp.Diff(map[string]uint64{"rx_uplink": 1, "stale_redirected": 1, "fib_redirect": 1}, delta(before, tb.stats(t))); diff != "" {
					t.Errorf("counters (-want +got)\n%s", diff)
				}
			})
		}
	}
}
