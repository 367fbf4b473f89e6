package ila

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Transport protocol numbers whose checksums cover the IPv6 pseudo-header.
const (
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// ChecksumOffset returns the offset of the checksum field in the transport
// header of proto and the minimum header length that holds it.
func ChecksumOffset(proto uint8) (off, min int, ok bool) {
	switch proto {
	case ProtoTCP:
		return 16, 20, true
	case ProtoUDP:
		return 6, 8, true
	case ProtoICMPv6:
		return 2, 4, true
	}
	return 0, 0, false
}

// sumBytes adds b to s as big-endian 16-bit words (odd trailing byte padded
// with zero), RFC 1071.
func sumBytes(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// PseudoHeaderSum is the folded one's-complement sum of the IPv6
// pseudo-header (RFC 8200 section 8.1) for an upper-layer packet of length n.
// With checksum offload (CHECKSUM_PARTIAL) this value, not complemented, is
// what the checksum field holds before the device completes it.
func PseudoHeaderSum(proto uint8, src, dst netip.Addr, n int) uint16 {
	s, d := src.As16(), dst.As16()
	var x uint32
	x = sumBytes(x, s[:])
	x = sumBytes(x, d[:])
	x += uint32(n>>16) + uint32(n&0xffff)
	x += uint32(proto)
	return fold(x)
}

// TransportChecksum computes from scratch the checksum of the upper-layer
// packet l4 (header and payload) sent from src to dst, with l4's own
// checksum field taken as zero. A UDP result of 0 is returned as 0xffff
// (RFC 8200: a zero UDP checksum is not allowed over IPv6).
func TransportChecksum(proto uint8, src, dst netip.Addr, l4 []byte) (uint16, error) {
	off, min, ok := ChecksumOffset(proto)
	if !ok {
		return 0, fmt.Errorf("protocol %d: %w", proto, ErrBadMode)
	}
	if len(l4) < min {
		return 0, fmt.Errorf("protocol %d header of %d bytes: %w", proto, len(l4), ErrTruncated)
	}
	x := uint32(PseudoHeaderSum(proto, src, dst, len(l4)))
	x = sumBytes(x, l4[:off])
	x = sumBytes(x, l4[off+2:])
	c := ^fold(x)
	if proto == ProtoUDP && c == 0 {
		c = 0xffff
	}
	return c, nil
}

// SetTransportChecksum computes the checksum of l4 and writes it in place.
func SetTransportChecksum(proto uint8, src, dst netip.Addr, l4 []byte) error {
	c, err := TransportChecksum(proto, src, dst, l4)
	if err != nil {
		return err
	}
	off, _, _ := ChecksumOffset(proto)
	binary.BigEndian.PutUint16(l4[off:], c)
	return nil
}

// VerifyTransportChecksum reports whether the checksum carried in l4 is
// valid for a packet from src to dst.
func VerifyTransportChecksum(proto uint8, src, dst netip.Addr, l4 []byte) bool {
	off, min, ok := ChecksumOffset(proto)
	if !ok || len(l4) < min {
		return false
	}
	have := binary.BigEndian.Uint16(l4[off:])
	if proto == ProtoUDP && have == 0 {
		return false // zero UDP checksums are not valid over IPv6
	}
	x := uint32(PseudoHeaderSum(proto, src, dst, len(l4)))
	x = sumBytes(x, l4)
	return fold(x) == 0xffff
}

// PatchChecksum returns checksum c updated for an address in the covered
// data changing from `from` to `to` (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
func PatchChecksum(c uint16, from, to netip.Addr) uint16 {
	x := Add1(^c, ^AddrSum(from))
	x = Add1(x, AddrSum(to))
	return ^x
}

// AdjustTransport patches, in place, the checksum of the upper-layer packet
// l4 for its destination (or source) address changing from `from` to `to`:
// the adjust-transport mode. A UDP checksum of 0 (none) stays 0 and a
// computed 0 is written as 0xffff. Protocols without a pseudo-header
// checksum are left alone.
func AdjustTransport(proto uint8, from, to netip.Addr, l4 []byte) error {
	off, min, ok := ChecksumOffset(proto)
	if !ok {
		return nil
	}
	if len(l4) < min {
		return fmt.Errorf("protocol %d header of %d bytes: %w", proto, len(l4), ErrTruncated)
	}
	c := binary.BigEndian.Uint16(l4[off:])
	if proto == ProtoUDP && c == 0 {
		return nil
	}
	c = PatchChecksum(c, from, to)
	if proto == ProtoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
	return nil
}
