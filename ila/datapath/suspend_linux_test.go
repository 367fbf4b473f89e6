//go:build linux

package datapath

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// idSuspended is a task attached here whose cold move is under way.
const idSuspended = ila.Identifier(0x2000_0000_0066_0087)

// TestUplinkSuspended: a packet arriving for a suspended local task is not
// delivered to its port; the sender gets an ICMPv6 address unreachable (at
// most one per second per task), later packets are dropped, both counted.
// Resumed, the task gets its packets again.
func TestUplinkSuspended(t *testing.T) {
	tb := newTestbed(t, Config{})
	fabricAddr := netip.MustParseAddr("fd00::1") // upl0's address: the FIB's source for the sender
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		t.Run(mode.String(), func(t *testing.T) {
			must(t, tb.d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idSuspended, Ifindex: tb.task2, MAC: taskMAC, Suspended: true}))
			src := e.sir(idRemote)
			sirDst, ilaDst := e.sir(idSuspended), e.ila(t, idSuspended, e.own)
			in := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: src, Dst: ilaDst, Proto: ila.ProtoUDP, L4: testutil.UDP(1, 2, make([]byte, 40)), HopLimit: 60}
			inFrame := frameWithCsumFor(in, wireCsumDst(mode, sirDst, ilaDst))

			// The error goes to the sender's ILA address (its mapping is
			// known here), quoting the packet as it arrived.
			want := testutil.Packet{EthDst: nextHopMAC, EthSrc: uplinkMAC, Src: fabricAddr, Dst: e.ila(t, idRemote, e.remote), Proto: ila.ProtoICMPv6,
				HopLimit: 63, L4: testutil.ICMPv6(1, 3, append(make([]byte, 4), inFrame[14:]...))}
			wantFrame := frameWithCsumFor(want, wireCsumDst(mode, src, want.Dst))

			before := tb.stats(t)
			act, out := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, inFrame)
			if act != actRedirect {
				t.Fatalf("action %d, want redirect (the ICMPv6 error)", act)
			}
			if diff := cmp.Diff(wantFrame, out[:len(wantFrame)]); diff != "" {
				t.Errorf("ICMPv6 error frame (-want +got)\n%s", diff)
			}
			if diff := cmp.Diff(map[string]uint64{"rx_uplink": 1, "drop_suspended": 1, "suspended_icmp_sent": 1, "fib_redirect": 1}, delta(before, tb.stats(t))); diff != "" {
				t.Errorf("counters (-want +got)\n%s", diff)
			}
			// Within the second: dropped without an error.
			before = tb.stats(t)
			if act, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, inFrame); act != actShot {
				t.Errorf("second packet: action %d, want drop", act)
			}
			if diff := cmp.Diff(map[string]uint64{"rx_uplink": 1, "drop_suspended": 1}, delta(before, tb.stats(t))); diff != "" {
				t.Errorf("second packet: counters (-want +got)\n%s", diff)
			}

			// A task of this NVE sending to it: a miss (the ILA router
			// answers), not a delivery.
			local := testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: e.sir(idLocal), Dst: sirDst, Proto: ila.ProtoUDP, L4: testutil.UDP(1, 2, nil), HopLimit: 64}
			before = tb.stats(t)
			if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, local.Frame()); act != actOK {
				t.Errorf("task to the suspended task: action %d, want pass (miss)", act)
			}
			if got := delta(before, tb.stats(t)); got["local_delivered"] != 0 || got["miss"] != 1 || got["pass_miss"] != 1 {
				t.Errorf("task to the suspended task: counters %v, want a miss passed on", got)
			}

			// Resumed (rolled back): delivered again.
			must(t, tb.d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idSuspended, Ifindex: tb.task2, MAC: taskMAC}))
			before = tb.stats(t)
			if act, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, inFrame); act != actRedirect {
				t.Errorf("resumed: action %d, want redirect to the port", act)
			}
			if diff := cmp.Diff(map[string]uint64{"rx_uplink": 1, "delivered": 1}, delta(before, tb.stats(t))); diff != "" {
				t.Errorf("resumed: counters (-want +got)\n%s", diff)
			}
			must(t, tb.d.DeleteLocal(e.dom.SIR, idSuspended))
		})
	}
}
