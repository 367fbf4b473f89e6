// Package testutil holds helpers shared by tests: Ethernet/IPv6/TCP/UDP/ICMPv6
// frame builders and parsers written with encoding/binary, a privilege skip
// helper, a bpffs-in-a-tempdir helper and network-namespace helpers.
//
// Nothing here is used by production code.
package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
)

// EtherTypeIPv6 is the Ethernet type of IPv6.
const EtherTypeIPv6 = 0x86dd

// IPv6 extension header protocol numbers.
const (
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtDestOpts = 60
	ExtNone     = 59
)

// TCP flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// Csum says how Frame fills the transport checksum.
type Csum uint8

const (
	// CsumValid writes a correct checksum computed from scratch.
	CsumValid Csum = iota
	// CsumPartial writes what a sender leaving the checksum to offload
	// (CHECKSUM_PARTIAL) writes: the folded pseudo-header sum, not complemented.
	CsumPartial
	// CsumZero writes 0 (for UDP: "no checksum").
	CsumZero
	// CsumAsIs leaves the checksum field of L4 untouched.
	CsumAsIs
)

// Ext is one IPv6 extension header. Proto is its protocol number (ExtHopByHop,
// ExtRouting, ExtFragment, ExtDestOpts); Data is the body after the
// next-header byte (for hop-by-hop, routing and destination options the
// length byte is filled in by Frame, Data is padded to 8-byte units). For a
// fragment header Data is ignored and FragOffset/More/ID are used.
type Ext struct {
	Proto      uint8
	Data       []byte
	FragOffset uint16 // in 8-byte units
	More       bool
	ID         uint32
}

// Packet describes an Ethernet+IPv6 frame.
type Packet struct {
	EthDst, EthSrc ila.MAC
	Src, Dst       netip.Addr
	HopLimit       uint8 // 0 means 64
	TrafficClass   uint8
	FlowLabel      uint32
	Ext            []Ext
	Proto          uint8  // transport protocol number
	L4             []byte // transport header and payload
	Csum           Csum
}

// Frame serialises p. The transport checksum is filled per p.Csum over the
// full L4 (the pseudo-header uses p.Src and p.Dst).
func (p Packet) Frame() []byte {
	l4 := append([]byte(nil), p.L4...)
	if off, min, ok := ila.ChecksumOffset(p.Proto); ok && len(l4) >= min {
		switch p.Csum {
		case CsumValid:
			if err := ila.SetTransportChecksum(p.Proto, p.Src, p.Dst, l4); err != nil {
				panic(err) // unreachable: length checked above
			}
		case CsumPartial:
			binary.BigEndian.PutUint16(l4[off:], ila.PseudoHeaderSum(p.Proto, p.Src, p.Dst, len(l4)))
		case CsumZero:
			binary.BigEndian.PutUint16(l4[off:], 0)
		}
	}
	var ext []byte
	for i, e := range p.Ext {
		next := p.Proto
		if i+1 < len(p.Ext) {
			next = p.Ext[i+1].Proto
		}
		if e.Proto == ExtFragment {
			h := make([]byte, 8)
			h[0] = next
			fo := e.FragOffset << 3
			if e.More {
				fo |= 1
			}
			binary.BigEndian.PutUint16(h[2:], fo)
			binary.BigEndian.PutUint32(h[4:], e.ID)
			ext = append(ext, h...)
			continue
		}
		body := append([]byte(nil), e.Data...)
		for (len(body)+2)%8 != 0 {
			body = append(body, 0) // Pad1/PadN zeros are valid options
		}
		ext = append(ext, next, byte((len(body)+2)/8-1))
		ext = append(ext, body...)
	}
	first := p.Proto
	if len(p.Ext) > 0 {
		first = p.Ext[0].Proto
	}
	hl := p.HopLimit
	if hl == 0 {
		hl = 64
	}
	b := make([]byte, 14+40, 14+40+len(ext)+len(l4))
	copy(b[0:6], p.EthDst[:])
	copy(b[6:12], p.EthSrc[:])
	binary.BigEndian.PutUint16(b[12:], EtherTypeIPv6)
	ip := b[14:]
	binary.BigEndian.PutUint32(ip[0:], 6<<28|uint32(p.TrafficClass)<<20|p.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(l4)))
	ip[6] = first
	ip[7] = hl
	s, d := p.Src.As16(), p.Dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	b = append(b, ext...)
	return append(b, l4...)
}

// UDP returns a UDP header (checksum 0) followed by payload.
func UDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// TCP returns a 20-byte TCP header (checksum 0) followed by payload.
func TCP(sport, dport uint16, seq, ack uint32, flags uint8, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, payload...)
}

// ICMPv6 returns an ICMPv6 message (checksum 0): type, code, then body
// (for echo: identifier, sequence, data; for errors: 4 unused/MTU bytes
// then the quoted packet).
func ICMPv6(typ, code uint8, body []byte) []byte {
	b := make([]byte, 4, 4+len(body))
	b[0], b[1] = typ, code
	return append(b, body...)
}

// Echo returns an ICMPv6 echo request body.
func Echo(id, seq uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data))
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], seq)
	return append(b, data...)
}

// ErrShort reports a frame too short for the header being parsed.
var ErrShort = errors.New("frame truncated")

// Parsed is a parsed Ethernet+IPv6 frame; slices alias the input.
type Parsed struct {
	EthDst, EthSrc ila.MAC
	EtherType      uint16
	Src, Dst       netip.Addr
	HopLimit       uint8
	Proto          uint8 // transport protocol after extension headers
	FragOffset     uint16
	L4Off          int    // offset of the transport header in the frame
	L4             []byte // transport header and payload (IPv6 payload length bounded)
}

// Parse parses an Ethernet+IPv6 frame, skipping extension headers.
func Parse(b []byte) (Parsed, error) {
	var p Parsed
	if len(b) < 14 {
		return p, fmt.Errorf("ethernet header: %w", ErrShort)
	}
	copy(p.EthDst[:], b[0:6])
	copy(p.EthSrc[:], b[6:12])
	p.EtherType = binary.BigEndian.Uint16(b[12:])
	if p.EtherType != EtherTypeIPv6 {
		return p, fmt.Errorf("ethertype %#04x: not IPv6", p.EtherType)
	}
	return p, parseIPv6(b, 14, &p)
}

// ParseIPv6 parses a bare IPv6 packet (no Ethernet header).
func ParseIPv6(b []byte) (Parsed, error) {
	var p Parsed
	p.EtherType = EtherTypeIPv6
	return p, parseIPv6(b, 0, &p)
}

func parseIPv6(b []byte, off int, p *Parsed) error {
	if len(b) < off+40 {
		return fmt.Errorf("ipv6 header: %w", ErrShort)
	}
	ip := b[off:]
	if ip[0]>>4 != 6 {
		return fmt.Errorf("ip version %d: not IPv6", ip[0]>>4)
	}
	plen := int(binary.BigEndian.Uint16(ip[4:]))
	end := off + 40 + plen
	if end > len(b) {
		return fmt.Errorf("ipv6 payload length %d: %w", plen, ErrShort)
	}
	p.HopLimit = ip[7]
	p.Src = netip.AddrFrom16([16]byte(ip[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
	next := ip[6]
	o := off + 40
	for i := 0; i < 8; i++ {
		switch next {
		case ExtHopByHop, ExtRouting, ExtDestOpts:
			if o+8 > end {
				return fmt.Errorf("extension header %d: %w", next, ErrShort)
			}
			n := (int(b[o+1]) + 1) * 8
			next = b[o]
			o += n
			continue
		case ExtFragment:
			if o+8 > end {
				return fmt.Errorf("fragment header: %w", ErrShort)
			}
			p.FragOffset = binary.BigEndian.Uint16(b[o+2:]) >> 3
			next = b[o]
			o += 8
			continue
		}
		break
	}
	if o > end {
		return fmt.Errorf("extension headers: %w", ErrShort)
	}
	p.Proto = next
	p.L4Off = o
	p.L4 = b[o:end]
	return nil
}

// CompleteOffload returns a copy of l4 with the checksum completed the way
// a NIC finishes a CHECKSUM_PARTIAL packet: the field holds the pseudo-header
// sum, the device sums the transport bytes from the header on and stores the
// complement. Use it to check what a captured CHECKSUM_PARTIAL packet would
// carry on a real wire.
func CompleteOffload(proto uint8, l4 []byte) []byte {
	out := append([]byte(nil), l4...)
	off, min, ok := ila.ChecksumOffset(proto)
	if !ok || len(out) < min {
		return out
	}
	var s uint32
	for i := 0; i+1 < len(out); i += 2 {
		s += uint32(out[i])<<8 | uint32(out[i+1])
	}
	if len(out)%2 == 1 {
		s += uint32(out[len(out)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	c := ^uint16(s)
	if proto == ila.ProtoUDP && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(out[off:], c)
	return out
}
