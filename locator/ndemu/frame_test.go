package ndemu

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/mdlayher/ndp"
)

// nsFrame returns a well-formed NS frame from addrA/macA for target.
func nsFrame(t testing.TB, src, target netip.Addr) []byte {
	t.Helper()
	dst, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildFrame(macA, src, out{
		msg:    &ndp.NeighborSolicitation{TargetAddress: target, Options: slla(macA)},
		dst:    dst,
		dstMAC: multicastMAC(dst),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	b := nsFrame(t, addrA, addrR)
	got, err := parseFrame(b)
	if err != nil {
		t.Fatalf("parseFrame: %v", err)
	}
	want := input{
		srcMAC:   macA,
		src:      addrA,
		dst:      netip.MustParseAddr("ff02::1:ff00:c"),
		hopLimit: 255,
		msg:      &ndp.NeighborSolicitation{TargetAddress: addrR, Options: slla(macA)},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(input{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("parseFrame (-want +got):\n%s", diff)
	}
	if got, want := net.HardwareAddr(b[0:6]).String(), "33:33:ff:00:00:0c"; got != want {
		t.Errorf("destination MAC %s, want %s", got, want)
	}
	// Ethernet padding after the IPv6 payload is ignored.
	if _, err := parseFrame(append(b, 0, 0, 0, 0)); err != nil {
		t.Errorf("padded frame: %v", err)
	}
}

// TestChecksumVector checks the ila checksum helpers the emulator uses
// against a checksum computed by hand for a minimal message (RS with no
// options from fe80::1 to ff02::2).
func TestChecksumVector(t *testing.T) {
	t.Parallel()
	src, dst := netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::2")
	msg := []byte{133, 0, 0, 0, 0, 0, 0, 0}
	// Pseudo-header: fe80 + 0001 + ff02 + 0002 + length 8 + next header 58,
	// message: 0x8500. Sum = 0xfe80+0x0001+0xff02+0x0002+0x0008+0x003a+0x8500.
	sum := uint32(0xfe80 + 0x0001 + 0xff02 + 0x0002 + 0x0008 + 0x003a + 0x8500)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if got, err := ila.TransportChecksum(ila.ProtoICMPv6, src, dst, msg); err != nil || got != ^uint16(sum) {
		t.Fatalf("TransportChecksum = %#04x, %v; want %#04x", got, err, ^uint16(sum))
	}
	if ila.VerifyTransportChecksum(ila.ProtoICMPv6, src, dst, msg) {
		t.Fatal("message without checksum verifies")
	}
	binary.BigEndian.PutUint16(msg[2:4], ^uint16(sum))
	if !ila.VerifyTransportChecksum(ila.ProtoICMPv6, src, dst, msg) {
		t.Fatal("checksummed message does not verify")
	}
	// And the same value as x/net/icmp computes through ndp.
	b, err := ndp.MarshalMessageChecksum(&ndp.RouterSolicitation{}, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(msg, b); diff != "" {
		t.Errorf("ndp marshalled RS (-want +got):\n%s", diff)
	}
}

func TestParseFrameErrors(t *testing.T) {
	t.Parallel()
	good := nsFrame(t, addrA, addrR)
	mod := func(f func(b []byte) []byte) []byte {
		b := append([]byte(nil), good...)
		return f(b)
	}
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, errShort},
		{"truncated", good[:60], errShort},
		{"payload length beyond frame", mod(func(b []byte) []byte { b[14+5]++; return b }), errShort},
		{"not IPv6 ethertype", mod(func(b []byte) []byte { b[12] = 0x08; b[13] = 0; return b }), errNotND},
		{"IP version 4", mod(func(b []byte) []byte { b[14] = 0x45; return b }), errNotND},
		{"extension header", mod(func(b []byte) []byte { b[14+6] = 0; return b }), errNotND},
		{"ICMPv6 code 1", mod(func(b []byte) []byte { b[54+1] = 1; return b }), errNotND},
		{"bad checksum", mod(func(b []byte) []byte { b[54+2] ^= 0xff; return b }), errChecksum},
		{"target changed after checksum", mod(func(b []byte) []byte { b[54+8+15] ^= 1; return b }), errChecksum},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFrame(tc.frame)
			if !errors.Is(err, tc.want) {
				t.Errorf("parseFrame error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBuildFrameErrors(t *testing.T) {
	t.Parallel()
	if _, err := buildFrame(gatewayHW(), ila.GatewayLinkLocal(), out{msg: &ndp.RouterSolicitation{}, dst: allNodes}); err == nil {
		t.Error("missing destination MAC: no error")
	}
	bad := &ndp.NeighborAdvertisement{TargetAddress: netip.MustParseAddr("192.0.2.1")}
	if _, err := buildFrame(gatewayHW(), ila.GatewayLinkLocal(), out{msg: bad, dst: allNodes, dstMAC: allNodesMAC}); err == nil {
		t.Error("IPv4 target: no error")
	}
}
