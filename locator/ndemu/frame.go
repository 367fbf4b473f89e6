package ndemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/mdlayher/ndp"
)

const (
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
	etherTypeIPv6 = 0x86dd
	protoICMPv6   = 58
)

var (
	errShort    = errors.New("frame too short")
	errNotND    = errors.New("not an ICMPv6 ND message")
	errChecksum = errors.New("bad ICMPv6 checksum")
)

// parseFrame validates an Ethernet frame carrying an ND message (no IPv6
// extension headers: RFC 6980 forbids fragmenting ND, and no other header
// is used with it) and decodes the message with ndp.ParseMessage. The
// ifindex of the result is left 0.
func parseFrame(b []byte) (input, error) {
	if len(b) < ethHeaderLen+ipv6HeaderLen+4 {
		return input{}, errShort
	}
	if binary.BigEndian.Uint16(b[12:14]) != etherTypeIPv6 {
		return input{}, errNotND
	}
	ip := b[ethHeaderLen:]
	if ip[0]>>4 != 6 {
		return input{}, fmt.Errorf("IP version %d: %w", ip[0]>>4, errNotND)
	}
	if ip[6] != protoICMPv6 {
		return input{}, errNotND
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < 4 || ipv6HeaderLen+plen > len(ip) {
		return input{}, errShort
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	icmp := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	if icmp[1] != 0 {
		return input{}, fmt.Errorf("ICMPv6 code %d: %w", icmp[1], errNotND)
	}
	if !ila.VerifyTransportChecksum(ila.ProtoICMPv6, src, dst, icmp) {
		return input{}, errChecksum
	}
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		return input{}, fmt.Errorf("parse ND message: %w", err)
	}
	return input{
		srcMAC:   net.HardwareAddr(b[6:12:12]),
		src:      src,
		dst:      dst,
		hopLimit: ip[7],
		msg:      m,
	}, nil
}

// buildFrame marshals o as an Ethernet frame from srcMAC/src.
func buildFrame(srcMAC net.HardwareAddr, src netip.Addr, o out) ([]byte, error) {
	if len(o.dstMAC) != 6 || len(srcMAC) != 6 {
		return nil, errors.New("build frame: link-layer addresses must be 6 bytes")
	}
	icmp, err := ndp.MarshalMessageChecksum(o.msg, src, o.dst)
	if err != nil {
		return nil, fmt.Errorf("marshal ND message: %w", err)
	}
	if len(icmp) > 0xffff {
		return nil, errors.New("build frame: message too long")
	}
	b := make([]byte, ethHeaderLen+ipv6HeaderLen, ethHeaderLen+ipv6HeaderLen+len(icmp))
	copy(b[0:6], o.dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6] = protoICMPv6
	ip[7] = ndp.HopLimit
	s, d := src.As16(), o.dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	return append(b, icmp...), nil
}

// multicastMAC returns the Ethernet group address of an IPv6 multicast
// address (RFC 2464 section 7).
func multicastMAC(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}
