package ndemu

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/mdlayher/ndp"
)

// checkAction checks the invariants every decision keeps, whatever the
// input: replies are only ever NAs carrying the gateway MAC to a unicast
// MAC or all-nodes, and they marshal into a frame that parses back.
func checkAction(t *testing.T, pol *policy, in input, a action) {
	t.Helper()
	switch a.verdict {
	case verdictAnswer, verdictDefend:
		na, ok := a.reply.msg.(*ndp.NeighborAdvertisement)
		if !ok {
			t.Fatalf("%v reply is %T, want NA", a.verdict, a.reply.msg)
		}
		if got := sourceLLA(na.Options, ndp.Target); got.String() != gatewayHW().String() {
			t.Fatalf("reply carries MAC %s, want the gateway MAC", got)
		}
		if a.verdict == verdictDefend && (a.reply.dst != allNodes || na.Solicited) {
			t.Fatalf("DAD defence to %s solicited=%v", a.reply.dst, na.Solicited)
		}
		if a.verdict == verdictAnswer && (!na.Solicited || a.reply.dst != in.src || a.reply.dstMAC[0]&1 != 0) {
			t.Fatalf("answer to %s/%s solicited=%v, want unicast to the soliciter %s", a.reply.dst, a.reply.dstMAC, na.Solicited, in.src)
		}
		if _, known := testDir[na.TargetAddress]; !known && na.TargetAddress != pol.gatewayLL {
			t.Fatalf("answered for %s, which nobody owns", na.TargetAddress)
		}
		b, err := buildFrame(pol.gatewayMAC, pol.gatewayLL, a.reply)
		if err != nil {
			t.Fatalf("build reply: %v", err)
		}
		back, err := parseFrame(b)
		if err != nil {
			t.Fatalf("parse own reply: %v", err)
		}
		if diff := cmp.Diff(a.reply.msg, back.msg, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("reply round trip (-sent +parsed):\n%s", diff)
		}
	case verdictClaim, verdictSpoofed:
		if !a.target.IsValid() {
			t.Fatalf("%v without target", a.verdict)
		}
	}
}

// FuzzDecide feeds arbitrary ICMPv6 bytes through ndp.ParseMessage into the
// decision logic, from the usual sources and destinations.
func FuzzDecide(f *testing.F) {
	for _, m := range []ndp.Message{
		&ndp.NeighborSolicitation{TargetAddress: addrR, Options: slla(macA)},
		&ndp.NeighborSolicitation{TargetAddress: addrA},
		&ndp.NeighborAdvertisement{Override: true, TargetAddress: addrA, Options: tlla(macA)},
		&ndp.NeighborAdvertisement{Override: true, TargetAddress: addrB, Options: tlla(macA)},
		&ndp.RouterSolicitation{Options: slla(macA)},
		&ndp.RouterAdvertisement{RouterLifetime: 1800e9},
	} {
		b, err := ndp.MarshalMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
	}
	type ctx struct{ src, dst netip.Addr }
	ctxs := func(target netip.Addr) []ctx {
		s, _ := ndp.SolicitedNodeMulticast(target)
		return []ctx{
			{addrA, s}, {netip.IPv6Unspecified(), s}, {llA, s}, {addrA, target},
			{llA, allNodes}, {addrA, allNodes}, {llA, netip.MustParseAddr("ff02::2")},
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, sel uint8) {
		m, err := ndp.ParseMessage(b)
		if err != nil {
			return
		}
		target := addrR
		switch m := m.(type) {
		case *ndp.NeighborSolicitation:
			if m.TargetAddress.Is6() {
				target = m.TargetAddress.WithZone("")
			}
		case *ndp.NeighborAdvertisement:
			if m.TargetAddress.Is6() {
				target = m.TargetAddress.WithZone("")
			}
		}
		cs := ctxs(target)
		c := cs[int(sel)%len(cs)]
		pol := testPolicy(sel&0x80 != 0)
		in := input{ifindex: 2, srcMAC: macA, src: c.src, dst: c.dst, hopLimit: 255, msg: m}
		checkAction(t, pol, in, pol.decide(in))
	})
}

// FuzzParseFrame feeds arbitrary frames through parseFrame (checksum and
// all) into the decision logic. With fix set, the ICMPv6 checksum is
// corrected first so that mutations reach the message parser.
func FuzzParseFrame(f *testing.F) {
	f.Add(nsFrame(f, addrA, addrR), true)
	f.Add(nsFrame(f, netip.IPv6Unspecified(), addrB), true)
	f.Add(nsFrame(f, addrA, addrUnk), false)
	f.Add([]byte{}, false)
	pol := testPolicy(false)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			fixChecksum(b)
		}
		in, err := parseFrame(b)
		if err != nil {
			return
		}
		in.ifindex = 2
		checkAction(t, pol, in, pol.decide(in))
	})
}

// fixChecksum rewrites the ICMPv6 checksum of a frame in place, if the
// frame is long enough to hold one where parseFrame looks.
func fixChecksum(b []byte) {
	if len(b) < ethHeaderLen+ipv6HeaderLen+4 {
		return
	}
	ip := b[ethHeaderLen:]
	plen := int(ip[4])<<8 | int(ip[5])
	if plen < 4 || ipv6HeaderLen+plen > len(ip) {
		return
	}
	icmp := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	_ = ila.SetTransportChecksum(ila.ProtoICMPv6, src, dst, icmp) // plen >= 4: cannot fail
}
