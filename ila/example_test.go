package ila_test

import (
	"fmt"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
)

func ExampleSIRToILA() {
	sir := netip.MustParseAddr("3333:0:0:1:2000:0:1:87")
	loc, _ := ila.ParseLocator("2001:0:87:0")
	for _, mode := range []ila.CsumMode{ila.CsumNeutralMap, ila.CsumNeutralMapAuto, ila.CsumAdjustTransport} {
		a, _ := ila.SIRToILA(sir, loc, mode)
		fmt.Printf("%-16s %s\n", mode, a)
	}
	// Output:
	// neutral-map      2001:0:87:0:3000:0:1:333
	// neutral-map-auto 2001:0:87:0:2000:0:1:1333
	// adjust-transport 2001:0:87:0:2000:0:1:87
}

func ExampleILAToSIR() {
	p, _ := ila.ParseSIRPrefix("3333:0:0:1::/64")
	sir, _ := ila.ILAToSIR(netip.MustParseAddr("2001:0:87:0:3000:0:1:333"), p, ila.CsumNeutralMap)
	fmt.Println(sir)
	// Output: 3333::1:2000:0:1:87
}

func ExampleNewVNIPv4() {
	id, _ := ila.NewVNIPv4(100, netip.MustParseAddr("10.0.0.5"))
	vnid, _ := id.VNID()
	p, _ := ila.ParseSIRPrefix("fd00:5151::/64")
	fmt.Println(id, id.Type(), vnid, id.IPv4(), p.Addr(id))
	// Output: 4000:64:a00:5 vn-ipv4 100 10.0.0.5 fd00:5151::4000:64:a00:5
}

func ExampleCheckIdentifier() {
	id, _ := ila.ParseIdentifier("2000:0:1:0")
	fmt.Println(ila.CheckIdentifier(id, ila.CsumNeutralMap))
	fmt.Println(ila.CheckIdentifier(id, ila.CsumAdjustTransport))
	// Output:
	// identifier low 16 bits are 0x0000 and cannot round-trip under a checksum-neutral mode (collides with 0xffff)
	// <nil>
}

func ExampleAdjustTransport() {
	src := netip.MustParseAddr("3333:0:0:1::1")
	sir := netip.MustParseAddr("3333:0:0:1:2000:0:1:87")
	loc, _ := ila.ParseLocator("2001:0:87:0")
	dst, _ := ila.SIRToILA(sir, loc, ila.CsumAdjustTransport)
	udp := []byte{0x30, 0x39, 0x00, 0x35, 0x00, 0x0a, 0, 0, 'h', 'i'}
	_ = ila.SetTransportChecksum(ila.ProtoUDP, src, sir, udp)
	_ = ila.AdjustTransport(ila.ProtoUDP, sir, dst, udp)
	fmt.Println(ila.VerifyTransportChecksum(ila.ProtoUDP, src, dst, udp))
	// Output: true
}
