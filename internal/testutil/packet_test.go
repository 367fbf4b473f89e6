package testutil

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
)

func TestFrameParse(t *testing.T) {
	src := netip.MustParseAddr("3333:0:0:1:2000:0:1:87")
	dst := netip.MustParseAddr("3333:0:0:1:2000:0:2:87")
	tests := []struct {
		name  string
		p     Packet
		proto uint8
	}{
		{"udp", Packet{Src: src, Dst: dst, Proto: ila.ProtoUDP, L4: UDP(1, 2, []byte("hello"))}, ila.ProtoUDP},
		{"tcp", Packet{Src: src, Dst: dst, Proto: ila.ProtoTCP, L4: TCP(1, 2, 3, 4, TCPSyn, []byte("x"))}, ila.ProtoTCP},
		{"icmp", Packet{Src: src, Dst: dst, Proto: ila.ProtoICMPv6, L4: ICMPv6(128, 0, Echo(1, 2, nil))}, ila.ProtoICMPv6},
		{"ext", Packet{Src: src, Dst: dst, Proto: ila.ProtoUDP, L4: UDP(1, 2, []byte("odd")),
			Ext: []Ext{{Proto: ExtHopByHop}, {Proto: ExtDestOpts, Data: make([]byte, 10)}, {Proto: ExtFragment, More: true, ID: 7}}}, ila.ProtoUDP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.p.Frame()
			p, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]any{src, dst, tc.proto, len(tc.p.L4)}, []any{p.Src, p.Dst, p.Proto, len(p.L4)}, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			if !ila.VerifyTransportChecksum(p.Proto, p.Src, p.Dst, p.L4) {
				t.Errorf("checksum not valid")
			}
		})
	}
}

func TestFramePartial(t *testing.T) {
	src := netip.MustParseAddr("2001:db8::1")
	dst := netip.MustParseAddr("2001:db8::2")
	f := Packet{Src: src, Dst: dst, Proto: ila.ProtoUDP, L4: UDP(1, 2, []byte("abc")), Csum: CsumPartial}.Frame()
	p, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if ila.VerifyTransportChecksum(p.Proto, p.Src, p.Dst, p.L4) {
		t.Fatal("partial checksum verified as complete")
	}
	if !ila.VerifyTransportChecksum(p.Proto, p.Src, p.Dst, CompleteOffload(p.Proto, p.L4)) {
		t.Fatal("partial checksum completed by emulated offload is not valid")
	}
}

func TestParseShort(t *testing.T) {
	f := Packet{Src: netip.IPv6Loopback(), Dst: netip.IPv6Loopback(), Proto: ila.ProtoUDP, L4: UDP(1, 2, nil)}.Frame()
	for n := 0; n < len(f); n++ {
		if _, err := Parse(f[:n]); err == nil {
			t.Errorf("Parse of %d of %d bytes: no error", n, len(f))
		}
	}
}
