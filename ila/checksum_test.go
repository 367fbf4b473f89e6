package ila

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// l4 builds a transport packet of proto with a random payload.
func l4(r *rand.Rand, proto uint8, payload int) []byte {
	var h int
	switch proto {
	case ProtoTCP:
		h = 20
	case ProtoUDP:
		h = 8
	case ProtoICMPv6:
		h = 8
	}
	b := make([]byte, h+payload)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	if proto == ProtoUDP {
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	}
	return b
}

// TestAdjustTransportMatchesScratch: patching the checksum for the
// SIR->ILA destination change gives exactly what a from-scratch computation
// over the ILA addresses gives, and back.
func TestAdjustTransportMatchesScratch(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoICMPv6} {
		for i := 0; i < 20000; i++ {
			src := SIRPrefix(r.Uint64()).Addr(Identifier(r.Uint64()))
			sir := SIRPrefix(r.Uint64()).Addr(Identifier(r.Uint64() &^ uint64(CBit)))
			loc := Locator(r.Uint64())
			dst, err := SIRToILA(sir, loc, CsumAdjustTransport)
			if err != nil {
				t.Fatal(err)
			}
			pkt := l4(r, proto, r.IntN(64))
			if err := SetTransportChecksum(proto, src, sir, pkt); err != nil {
				t.Fatal(err)
			}
			if err := AdjustTransport(proto, sir, dst, pkt); err != nil {
				t.Fatal(err)
			}
			off, _, _ := ChecksumOffset(proto)
			got := binary.BigEndian.Uint16(pkt[off:])
			want, _ := TransportChecksum(proto, src, dst, pkt)
			if got != want && !(proto != ProtoUDP && got^want == 0xffff && (got == 0 || want == 0)) {
				t.Fatalf("proto %d: patched %#04x, from scratch %#04x", proto, got, want)
			}
			if !VerifyTransportChecksum(proto, src, dst, pkt) {
				t.Fatalf("proto %d: patched checksum does not verify", proto)
			}
			// And ILA->SIR restores validity for the task.
			if err := AdjustTransport(proto, dst, sir, pkt); err != nil {
				t.Fatal(err)
			}
			if !VerifyTransportChecksum(proto, src, sir, pkt) {
				t.Fatalf("proto %d: checksum invalid after ILA->SIR", proto)
			}
		}
	}
}

// TestNeutralKeepsChecksum: a neutral mapping needs no transport change.
func TestNeutralKeepsChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, mode := range []CsumMode{CsumNeutralMap, CsumNeutralMapAuto} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoICMPv6} {
			for i := 0; i < 5000; i++ {
				src := SIRPrefix(r.Uint64()).Addr(Identifier(r.Uint64()))
				sir := SIRPrefix(r.Uint64()).Addr(Identifier(r.Uint64()&^uint64(CBit) | 1))
				dst, err := SIRToILA(sir, Locator(r.Uint64()), mode)
				if err != nil {
					t.Fatal(err)
				}
				pkt := l4(r, proto, r.IntN(64))
				if err := SetTransportChecksum(proto, src, sir, pkt); err != nil {
					t.Fatal(err)
				}
				if !VerifyTransportChecksum(proto, src, dst, pkt) {
					t.Fatalf("%v proto %d: checksum invalid on the wire to %v", mode, proto, dst)
				}
			}
		}
	}
}

// TestNoActionBreaksThenRestores documents no-action: wrong on the wire,
// right again after ILA->SIR.
func TestNoActionBreaksThenRestores(t *testing.T) {
	src := netip.MustParseAddr("3333:0:0:1::1")
	sir := netip.MustParseAddr("3333:0:0:1:2000:0:1:87")
	dst, _ := SIRToILA(sir, 0x2001_0000_0087_0000, CsumNoAction)
	pkt := make([]byte, 20)
	pkt[12] = 5 << 4
	if err := SetTransportChecksum(ProtoTCP, src, sir, pkt); err != nil {
		t.Fatal(err)
	}
	if VerifyTransportChecksum(ProtoTCP, src, dst, pkt) {
		t.Error("no-action: checksum unexpectedly valid on the wire")
	}
	back, _ := ILAToSIR(dst, SIRPrefixOf(sir), CsumNoAction)
	if !VerifyTransportChecksum(ProtoTCP, src, back, pkt) {
		t.Error("no-action: checksum invalid after ILA->SIR")
	}
}

func TestUDPZero(t *testing.T) {
	src := netip.MustParseAddr("3333:0:0:1::1")
	from := netip.MustParseAddr("3333:0:0:1::2")
	to := netip.MustParseAddr("2001:0:87::2")
	pkt := make([]byte, 8)
	binary.BigEndian.PutUint16(pkt[4:], 8)
	// A UDP checksum of 0 (none) stays 0.
	if err := AdjustTransport(ProtoUDP, from, to, pkt); err != nil {
		t.Fatal(err)
	}
	if c := binary.BigEndian.Uint16(pkt[6:]); c != 0 {
		t.Errorf("zero UDP checksum became %#04x", c)
	}
	if VerifyTransportChecksum(ProtoUDP, src, from, pkt) {
		t.Error("zero UDP checksum verified over IPv6")
	}
	// A computed 0 is written as 0xffff: find a payload that sums so.
	for v := 0; v < 0x10000; v++ {
		binary.BigEndian.PutUint16(pkt[0:], uint16(v))
		c, _ := TransportChecksum(ProtoUDP, src, from, pkt)
		x := uint32(PseudoHeaderSum(ProtoUDP, src, from, len(pkt)))
		x = sumBytes(x, pkt[:6])
		if ^fold(x) == 0 {
			if c != 0xffff {
				t.Fatalf("computed 0 returned as %#04x, want 0xffff", c)
			}
			return
		}
	}
	t.Fatal("no payload summed to zero")
}

func TestPseudoHeaderPartial(t *testing.T) {
	// CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum; the
	// device adds the data. Completing it gives the from-scratch checksum.
	r := rand.New(rand.NewPCG(9, 10))
	src := netip.MustParseAddr("3333:0:0:1::1")
	dst := netip.MustParseAddr("3333:0:0:1::2")
	pkt := l4(r, ProtoTCP, 33)
	binary.BigEndian.PutUint16(pkt[16:], PseudoHeaderSum(ProtoTCP, src, dst, len(pkt)))
	x := sumBytes(0, pkt)
	binary.BigEndian.PutUint16(pkt[16:], ^fold(x))
	if !VerifyTransportChecksum(ProtoTCP, src, dst, pkt) {
		t.Error("completed partial checksum does not verify")
	}
}

func TestChecksumErrors(t *testing.T) {
	a := netip.MustParseAddr("::1")
	if _, err := TransportChecksum(ProtoTCP, a, a, make([]byte, 19)); !errors.Is(err, ErrTruncated) {
		t.Errorf("short TCP: %v", err)
	}
	if _, err := TransportChecksum(99, a, a, make([]byte, 40)); err == nil {
		t.Error("unknown protocol accepted")
	}
	if err := AdjustTransport(ProtoUDP, a, a, make([]byte, 3)); !errors.Is(err, ErrTruncated) {
		t.Errorf("short UDP: %v", err)
	}
	if err := AdjustTransport(99, a, a, nil); err != nil {
		t.Errorf("unknown protocol should be left alone: %v", err)
	}
	if VerifyTransportChecksum(ProtoICMPv6, a, a, nil) {
		t.Error("empty ICMPv6 verified")
	}
}
