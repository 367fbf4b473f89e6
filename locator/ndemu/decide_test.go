package ndemu

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/mdlayher/ndp"
)

// fakeDir is the emulator's input: who owns which address.
type fakeDir map[netip.Addr]Owner

func (d fakeDir) Owner(a netip.Addr) (Owner, bool) { o, ok := d[a]; return o, ok }

var (
	sir      = netip.MustParsePrefix("3333:0:0:1::/64")
	addrA    = netip.MustParseAddr("3333:0:0:1::a") // task on port 2 (this test's sender)
	addrB    = netip.MustParseAddr("3333:0:0:1::b") // task on port 3, same NVE
	addrR    = netip.MustParseAddr("3333:0:0:1::c") // task on nve-b, MAC known
	addrRnoM = netip.MustParseAddr("3333:0:0:1::d") // task on nve-b, MAC unknown
	addrUnk  = netip.MustParseAddr("3333:0:0:1::dead")
	addrOut  = netip.MustParseAddr("2001:db8::1")   // outside the SIR prefix, unknown
	addrL0   = netip.MustParseAddr("3333:0:0:1::e") // local task, port unknown
	macA     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macR     = ila.MAC{0x02, 0, 0, 0, 0, 0x0c}
	llA      = netip.MustParseAddr("fe80::a")
	testDir  = fakeDir{
		addrA:    {Local: true, Ifindex: 2, NVE: "nve-a"},
		addrB:    {Local: true, Ifindex: 3, NVE: "nve-a"},
		addrR:    {NVE: "nve-b", MAC: macR},
		addrRnoM: {NVE: "nve-b"},
		addrL0:   {Local: true, NVE: "nve-a"},
	}
)

func testPolicy(allowMove bool) *policy {
	return &policy{gatewayMAC: gatewayHW(), gatewayLL: ila.GatewayLinkLocal(), prefixes: []netip.Prefix{sir}, allowMoveByNA: allowMove, dir: testDir}
}

func snm(t *testing.T, a netip.Addr) netip.Addr {
	t.Helper()
	m, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tlla(mac net.HardwareAddr) []ndp.Option {
	return []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}}
}

func slla(mac net.HardwareAddr) []ndp.Option {
	return []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac}}
}

// in builds an input received on port 2 from the task owning addrA.
func in(src, dst netip.Addr, m ndp.Message) input {
	return input{ifindex: 2, srcMAC: macA, src: src, dst: dst, hopLimit: 255, msg: m}
}

var cmpOpts = []cmp.Option{
	cmp.AllowUnexported(action{}, out{}),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

func TestDecideSolicitation(t *testing.T) {
	t.Parallel()
	answer := func(target netip.Addr, router bool, dst netip.Addr, dstMAC net.HardwareAddr) action {
		return action{verdict: verdictAnswer, target: target, reply: out{
			msg: &ndp.NeighborAdvertisement{Router: router, Solicited: true, Override: true, TargetAddress: target, Options: tlla(gatewayHW())},
			dst: dst, dstMAC: dstMAC,
		}}
	}
	defend := func(target netip.Addr, router bool) action {
		return action{verdict: verdictDefend, reason: "address owned elsewhere", target: target, reply: out{
			msg: &ndp.NeighborAdvertisement{Router: router, Override: true, TargetAddress: target, Options: tlla(gatewayHW())},
			dst: allNodes, dstMAC: allNodesMAC,
		}}
	}
	otherMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	tests := []struct {
		name string
		in   input
		want action
	}{
		{"remote target multicast", in(addrA, snm(t, addrR), &ndp.NeighborSolicitation{TargetAddress: addrR, Options: slla(macA)}),
			answer(addrR, false, addrA, macA)},
		{"same NVE other port", in(addrA, snm(t, addrB), &ndp.NeighborSolicitation{TargetAddress: addrB, Options: slla(macA)}),
			answer(addrB, false, addrA, macA)},
		{"answer goes to the option's MAC", in(addrA, snm(t, addrB), &ndp.NeighborSolicitation{TargetAddress: addrB, Options: slla(otherMAC)}),
			answer(addrB, false, addrA, otherMAC)},
		{"NUD unicast probe without option uses frame source", in(addrA, addrR, &ndp.NeighborSolicitation{TargetAddress: addrR}),
			answer(addrR, false, addrA, macA)},
		{"from link-local source", in(llA, snm(t, addrR), &ndp.NeighborSolicitation{TargetAddress: addrR, Options: slla(macA)}),
			answer(addrR, false, llA, macA)},
		{"gateway link-local, router flag", in(llA, snm(t, ila.GatewayLinkLocal()), &ndp.NeighborSolicitation{TargetAddress: ila.GatewayLinkLocal(), Options: slla(macA)}),
			answer(ila.GatewayLinkLocal(), true, llA, macA)},
		{"gateway unicast NUD", in(llA, ila.GatewayLinkLocal(), &ndp.NeighborSolicitation{TargetAddress: ila.GatewayLinkLocal()}),
			answer(ila.GatewayLinkLocal(), true, llA, macA)},
		{"target with zone", in(addrA, snm(t, addrR), &ndp.NeighborSolicitation{TargetAddress: addrR.WithZone("eth0")}),
			answer(addrR, false, addrA, macA)},
		{"unknown target", in(addrA, snm(t, addrUnk), &ndp.NeighborSolicitation{TargetAddress: addrUnk, Options: slla(macA)}),
			action{verdict: verdictUnknown, reason: "unknown target", target: addrUnk}},
		{"unknown outside prefix", in(addrA, snm(t, addrOut), &ndp.NeighborSolicitation{TargetAddress: addrOut}),
			action{verdict: verdictUnknown, reason: "unknown target", target: addrOut}},
		{"own address", in(addrA, snm(t, addrA), &ndp.NeighborSolicitation{TargetAddress: addrA}),
			action{verdict: verdictIgnore, reason: "own address"}},
		{"DAD for someone else's address", in(netip.IPv6Unspecified(), snm(t, addrB), &ndp.NeighborSolicitation{TargetAddress: addrB}),
			defend(addrB, false)},
		{"DAD for a remote task's address", in(netip.IPv6Unspecified(), snm(t, addrR), &ndp.NeighborSolicitation{TargetAddress: addrR}),
			defend(addrR, false)},
		{"DAD for the gateway address", in(netip.IPv6Unspecified(), snm(t, ila.GatewayLinkLocal()), &ndp.NeighborSolicitation{TargetAddress: ila.GatewayLinkLocal()}),
			defend(ila.GatewayLinkLocal(), true)},
		{"DAD for own address stays silent", in(netip.IPv6Unspecified(), snm(t, addrA), &ndp.NeighborSolicitation{TargetAddress: addrA}),
			action{verdict: verdictIgnore, reason: "own address"}},
		{"DAD for local address on unknown port stays silent", in(netip.IPv6Unspecified(), snm(t, addrL0), &ndp.NeighborSolicitation{TargetAddress: addrL0}),
			action{verdict: verdictIgnore, reason: "local address, port unknown"}},
		{"local address on unknown port answered", in(addrA, snm(t, addrL0), &ndp.NeighborSolicitation{TargetAddress: addrL0}),
			answer(addrL0, false, addrA, macA)},
		{"DAD for unknown address stays silent", in(netip.IPv6Unspecified(), snm(t, addrUnk), &ndp.NeighborSolicitation{TargetAddress: addrUnk}),
			action{verdict: verdictUnknown, reason: "unknown target", target: addrUnk}},
		{"DAD with nonce option", in(netip.IPv6Unspecified(), snm(t, addrB), &ndp.NeighborSolicitation{TargetAddress: addrB, Options: []ndp.Option{&ndp.RawOption{Type: 14, Length: 1, Value: []byte{1, 2, 3, 4, 5, 6}}}}),
			defend(addrB, false)},
		{"DAD with source link-layer option", in(netip.IPv6Unspecified(), snm(t, addrB), &ndp.NeighborSolicitation{TargetAddress: addrB, Options: slla(macA)}),
			action{verdict: verdictInvalid, reason: "DAD probe with a source link-layer address"}},
		{"DAD sent unicast", in(netip.IPv6Unspecified(), addrB, &ndp.NeighborSolicitation{TargetAddress: addrB}),
			action{verdict: verdictInvalid, reason: "unicast solicitation not sent to its target"}},
		{"wrong solicited-node group", in(addrA, snm(t, addrB), &ndp.NeighborSolicitation{TargetAddress: addrR}),
			action{verdict: verdictInvalid, reason: "destination is not the target's solicited-node group"}},
		{"all-nodes destination", in(addrA, allNodes, &ndp.NeighborSolicitation{TargetAddress: addrR}),
			action{verdict: verdictInvalid, reason: "destination is not the target's solicited-node group"}},
		{"unicast to another address", in(addrA, addrB, &ndp.NeighborSolicitation{TargetAddress: addrR}),
			action{verdict: verdictInvalid, reason: "unicast solicitation not sent to its target"}},
		{"multicast target", in(addrA, allNodes, &ndp.NeighborSolicitation{TargetAddress: allNodes}),
			action{verdict: verdictInvalid, reason: "bad target"}},
		{"hop limit 254", input{ifindex: 2, srcMAC: macA, src: addrA, dst: snm(t, addrR), hopLimit: 254, msg: &ndp.NeighborSolicitation{TargetAddress: addrR}},
			action{verdict: verdictInvalid, reason: "hop limit not 255"}},
		{"multicast source", in(allNodes, snm(t, addrR), &ndp.NeighborSolicitation{TargetAddress: addrR}),
			action{verdict: verdictInvalid, reason: "bad source or destination"}},
		{"multicast frame source without option", input{ifindex: 2, srcMAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}, src: addrA, dst: snm(t, addrR), hopLimit: 255, msg: &ndp.NeighborSolicitation{TargetAddress: addrR}},
			action{verdict: verdictInvalid, reason: "no unicast link-layer address to answer"}},
	}
	pol := testPolicy(false)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := pol.decide(tc.in)
			if diff := cmp.Diff(tc.want, got, cmpOpts...); diff != "" {
				t.Errorf("decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideAdvertisement(t *testing.T) {
	t.Parallel()
	una := func(target netip.Addr, opts []ndp.Option) *ndp.NeighborAdvertisement {
		return &ndp.NeighborAdvertisement{Override: true, TargetAddress: target, Options: opts}
	}
	macRnet := net.HardwareAddr(macR[:])
	tests := []struct {
		name      string
		allowMove bool
		in        input
		want      action
	}{
		{"own address is an attach signal", false, in(addrA, allNodes, una(addrA, tlla(macA))),
			action{verdict: verdictClaim, reason: "own address", target: addrA, mac: macA}},
		{"own address to solicited-node group", false, in(addrA, snm(t, addrA), una(addrA, tlla(macA))),
			action{verdict: verdictClaim, reason: "own address", target: addrA, mac: macA}},
		{"MAC from frame when no option", false, in(addrA, allNodes, una(addrA, nil)),
			action{verdict: verdictClaim, reason: "own address", target: addrA, mac: macA}},
		{"unknown address inside SIR prefix", false, in(addrUnk, allNodes, una(addrUnk, tlla(macA))),
			action{verdict: verdictClaim, reason: "new address", target: addrUnk, mac: macA}},
		{"unknown address outside prefixes", false, in(llA, allNodes, una(addrOut, tlla(macA))),
			action{verdict: verdictIgnore, reason: "outside the SIR prefixes", target: addrOut, mac: macA}},
		{"task link-local", false, in(llA, allNodes, una(llA, tlla(macA))),
			action{verdict: verdictIgnore, reason: "outside the SIR prefixes", target: llA, mac: macA}},
		{"local address on unknown port", false, in(addrA, allNodes, una(addrL0, tlla(macA))),
			action{verdict: verdictClaim, reason: "local address, port unknown", target: addrL0, mac: macA}},
		{"another port's address", false, in(addrA, allNodes, una(addrB, tlla(macA))),
			action{verdict: verdictSpoofed, reason: "owned by another port of this NVE", target: addrB, mac: macA}},
		{"another port's address even with moves allowed", true, in(addrA, allNodes, una(addrB, tlla(macA))),
			action{verdict: verdictSpoofed, reason: "owned by another port of this NVE", target: addrB, mac: macA}},
		{"remote address refused by default", false, in(addrA, allNodes, una(addrRnoM, tlla(macA))),
			action{verdict: verdictSpoofed, reason: "owned by NVE nve-b", target: addrRnoM, mac: macA}},
		{"remote address with matching MAC refused by default", false, in(addrA, allNodes, una(addrR, tlla(macRnet))),
			action{verdict: verdictSpoofed, reason: "owned by NVE nve-b", target: addrR, mac: macRnet}},
		{"move allowed: matching MAC", true, in(addrA, allNodes, una(addrR, tlla(macRnet))),
			action{verdict: verdictClaim, reason: "move from NVE nve-b", target: addrR, mac: macRnet}},
		{"move allowed: owner MAC unknown", true, in(addrA, allNodes, una(addrRnoM, tlla(macA))),
			action{verdict: verdictClaim, reason: "move from NVE nve-b", target: addrRnoM, mac: macA}},
		{"move allowed: other MAC refused", true, in(addrA, allNodes, una(addrR, tlla(macA))),
			action{verdict: verdictSpoofed, reason: "owned by NVE nve-b with another MAC", target: addrR, mac: macA}},
		{"gateway address", true, in(llA, allNodes, una(ila.GatewayLinkLocal(), tlla(macA))),
			action{verdict: verdictSpoofed, reason: "gateway address", target: ila.GatewayLinkLocal(), mac: macA}},
		{"gateway MAC", true, in(addrA, allNodes, una(addrA, tlla(gatewayHW()))),
			action{verdict: verdictSpoofed, reason: "gateway MAC", target: addrA, mac: gatewayHW()}},
		{"solicited answer is no claim", false, in(addrB, ila.GatewayLinkLocal(), &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: addrB}),
			action{verdict: verdictIgnore, reason: "solicited advertisement"}},
		{"solicited to multicast", false, in(addrA, allNodes, &ndp.NeighborAdvertisement{Solicited: true, TargetAddress: addrA}),
			action{verdict: verdictInvalid, reason: "solicited advertisement to a multicast group"}},
		{"from unspecified", false, in(netip.IPv6Unspecified(), allNodes, una(addrA, nil)),
			action{verdict: verdictInvalid, reason: "advertisement from the unspecified address"}},
		{"multicast target", false, in(addrA, allNodes, una(allNodes, nil)),
			action{verdict: verdictInvalid, reason: "bad target"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := testPolicy(tc.allowMove).decide(tc.in)
			if diff := cmp.Diff(tc.want, got, cmpOpts...); diff != "" {
				t.Errorf("decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideRouterSolicitation(t *testing.T) {
	t.Parallel()
	allRouters := netip.MustParseAddr("ff02::2")
	tests := []struct {
		name string
		in   input
		want action
	}{
		{"from link-local: unicast answer", in(llA, allRouters, &ndp.RouterSolicitation{Options: slla(macA)}),
			action{verdict: verdictAdvertise, reply: out{dst: llA, dstMAC: macA}}},
		{"from link-local without option", in(llA, allRouters, &ndp.RouterSolicitation{}),
			action{verdict: verdictAdvertise, reply: out{dst: llA, dstMAC: macA}}},
		{"from unspecified: all-nodes", in(netip.IPv6Unspecified(), allRouters, &ndp.RouterSolicitation{}),
			action{verdict: verdictAdvertise, reply: out{dst: allNodes, dstMAC: allNodesMAC}}},
		{"from unspecified with option", in(netip.IPv6Unspecified(), allRouters, &ndp.RouterSolicitation{Options: slla(macA)}),
			action{verdict: verdictInvalid, reason: "solicitation from :: with a source link-layer address"}},
		{"from global: all-nodes", in(addrA, allRouters, &ndp.RouterSolicitation{}),
			action{verdict: verdictAdvertise, reply: out{dst: allNodes, dstMAC: allNodesMAC}}},
		{"router advertisement from a task", in(llA, allNodes, &ndp.RouterAdvertisement{}),
			action{verdict: verdictIgnore, reason: "router advertisement from a task"}},
	}
	pol := testPolicy(false)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := pol.decide(tc.in)
			if diff := cmp.Diff(tc.want, got, cmpOpts...); diff != "" {
				t.Errorf("decide (-want +got):\n%s", diff)
			}
		})
	}
}

// gatewayHW is ila.GatewayMAC as a net.HardwareAddr.
func gatewayHW() net.HardwareAddr { m := ila.GatewayMAC(); return m[:] }
