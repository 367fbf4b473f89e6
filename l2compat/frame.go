package l2compat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"

	"github.com/ilamesh/ilamesh/ila"
)

// EtherTypes the responders listen for.
const (
	etherTypeARP  = 0x0806
	etherTypeRARP = 0x8035
	etherTypeIPv4 = 0x0800
)

// RARP operations (RFC 903).
const (
	opRequestReverse arp.Operation = 3
	opReplyReverse   arp.Operation = 4
)

var broadcast = ila.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Claim is a task's claim to an IPv4 address seen on a task-facing port: a
// gratuitous ARP. The agent turns it into a registration; mapsrv checks it.
type Claim struct {
	VNI     uint32
	IPv4    netip.Addr
	MAC     ila.MAC
	Port    string // task-facing port it arrived on
	Ifindex int    // index of that port in the NVE's namespace
	NVE     string // this NVE
}

func (c Claim) String() string {
	return fmt.Sprintf("vni %d %v is-at %v on %s", c.VNI, c.IPv4, c.MAC, c.Port)
}

// action says what a frame asks the Manager to do.
type action uint8

const (
	actNone       action = iota // not for us (wrong type, outgoing, ...)
	actMalformed                // unparsable or inconsistent ARP/RARP
	actARPAnswer                // reply holds the answer
	actARPIgnore                // request for an unknown or foreign address
	actGratuitous               // claim to pass to Attach
	actRefresh                  // gratuitous ARP repeating what the mapping says
	actSpoofed                  // gratuitous ARP for an address owned by another MAC
	actRARPAnswer               // reply holds the RARP answer
	actRARPIgnore               // RARP for a MAC unknown in this tenant
)

// verdict is the outcome of one frame.
type verdict struct {
	Act   action
	Reply []byte  // frame to send back out of the port
	To    ila.MAC // its destination
	Claim Claim
	// Moved is set for a gratuitous ARP of a task registered with the same
	// MAC on another NVE: it has moved here.
	Moved  bool
	Reason string
	// Sender is the source MAC of a well-formed ARP/RARP from the task side,
	// to remember which port it lives behind.
	Sender ila.MAC
}

// lookup is the directory as the responders see it.
type lookup interface {
	lookupIP(vni uint32, ip netip.Addr) (entry, bool)
	lookupMAC(vni uint32, mac ila.MAC) (entry, bool)
}

// portInfo is a task-facing port as the frame handler needs it.
type portInfo struct {
	Name  string
	Index int
	VNI   uint32
	MAC   ila.MAC // the port's own address (source of RARP replies)
}

var errShort = errors.New("short frame")

// handleFrame decides what to do with one Ethernet frame received on port p
// of NVE self. It never panics on any input.
func handleFrame(dir lookup, self string, p portInfo, frame []byte) verdict {
	if len(frame) < 14 {
		return verdict{Act: actMalformed, Reason: errShort.Error()}
	}
	var src ila.MAC
	copy(src[:], frame[6:12])
	et := binary.BigEndian.Uint16(frame[12:14])
	if et != etherTypeARP && et != etherTypeRARP {
		return verdict{Act: actNone}
	}
	var pkt arp.Packet
	if err := pkt.UnmarshalBinary(frame[14:]); err != nil {
		return verdict{Act: actMalformed, Reason: err.Error()}
	}
	if pkt.HardwareType != 1 || pkt.ProtocolType != etherTypeIPv4 || pkt.HardwareAddrLength != 6 || pkt.IPLength != 4 {
		return verdict{Act: actMalformed, Reason: "not ethernet/ipv4 arp"}
	}
	var sha, tha ila.MAC
	copy(sha[:], pkt.SenderHardwareAddr)
	copy(tha[:], pkt.TargetHardwareAddr)
	if sha != src || src[0]&1 != 0 || src.IsZero() {
		// A sender address that differs from the frame's source, or a
		// group source address: refuse to act on it.
		return verdict{Act: actMalformed, Reason: "sender hardware address does not match frame source"}
	}
	spa, tpa := pkt.SenderIP, pkt.TargetIP
	switch {
	case et == etherTypeRARP && pkt.Operation == opRequestReverse:
		return handleRARP(dir, p, src, tha)
	case et == etherTypeRARP:
		return verdict{Act: actNone}
	case pkt.Operation != arp.OperationRequest && pkt.Operation != arp.OperationReply:
		return verdict{Act: actMalformed, Reason: fmt.Sprintf("arp operation %d", pkt.Operation)}
	case spa.IsValid() && !spa.IsUnspecified() && spa == tpa:
		return handleGratuitous(dir, self, p, src, spa)
	case pkt.Operation == arp.OperationRequest:
		return handleRequest(dir, p, src, spa, tpa)
	}
	// An ordinary reply: tasks answer only the responder's own requests,
	// which it never sends.
	return verdict{Act: actNone, Sender: src}
}

func handleRequest(dir lookup, p portInfo, src ila.MAC, spa, tpa netip.Addr) verdict {
	t, ok := dir.lookupIP(p.VNI, tpa)
	if !ok || t.MAC.IsZero() || t.MAC == src || t.Suspended {
		// Unknown, another tenant's (different VNI, so not found), the
		// asker's own address (duplicate address probe), or suspended by a
		// cold move (its address is not used until it arrives): no answer.
		return verdict{Act: actARPIgnore, Sender: src}
	}
	reply := &arp.Packet{
		HardwareType: 1, ProtocolType: etherTypeIPv4, HardwareAddrLength: 6, IPLength: 4,
		Operation:          arp.OperationReply,
		SenderHardwareAddr: net.HardwareAddr(t.MAC[:]),
		SenderIP:           tpa,
		TargetHardwareAddr: net.HardwareAddr(src[:]),
		TargetIP:           ipOrZero(spa),
	}
	return verdict{Act: actARPAnswer, Reply: ethFrame(src, t.MAC, etherTypeARP, reply), To: src, Sender: src}
}

func handleGratuitous(dir lookup, self string, p portInfo, src ila.MAC, ip netip.Addr) verdict {
	c := Claim{VNI: p.VNI, IPv4: ip, MAC: src, Port: p.Name, Ifindex: p.Index, NVE: self}
	t, ok := dir.lookupIP(p.VNI, ip)
	switch {
	case !ok:
		return verdict{Act: actGratuitous, Claim: c, Sender: src}
	case !t.MAC.IsZero() && t.MAC != src:
		return verdict{Act: actSpoofed, Claim: c, Sender: src,
			Reason: fmt.Sprintf("address %v in vni %d is registered to %v on nve %q", ip, p.VNI, t.MAC, t.NVE)}
	case t.NVE == self && !t.MAC.IsZero():
		return verdict{Act: actRefresh, Claim: c, Sender: src}
	case t.MAC == src:
		return verdict{Act: actGratuitous, Claim: c, Sender: src, Moved: true}
	}
	return verdict{Act: actGratuitous, Claim: c, Sender: src}
}

func handleRARP(dir lookup, p portInfo, src, tha ila.MAC) verdict {
	t, ok := dir.lookupMAC(p.VNI, tha)
	if !ok {
		return verdict{Act: actRARPIgnore, Sender: src}
	}
	reply := &arp.Packet{
		HardwareType: 1, ProtocolType: etherTypeIPv4, HardwareAddrLength: 6, IPLength: 4,
		Operation:          opReplyReverse,
		SenderHardwareAddr: net.HardwareAddr(p.MAC[:]),
		SenderIP:           netip.IPv4Unspecified(),
		TargetHardwareAddr: net.HardwareAddr(tha[:]),
		TargetIP:           t.IP,
	}
	return verdict{Act: actRARPAnswer, Reply: ethFrame(src, p.MAC, etherTypeRARP, reply), To: src, Sender: src}
}

func ipOrZero(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	return netip.IPv4Unspecified()
}

// ethFrame builds an Ethernet frame carrying an ARP or RARP packet.
func ethFrame(dst, src ila.MAC, etherType uint16, p *arp.Packet) []byte {
	body, _ := p.MarshalBinary() // never fails for a well-formed packet
	b := make([]byte, 14, 14+len(body))
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
	return append(b, body...)
}
func equalMAC(b net.HardwareAddr, m ila.MAC) bool { return len(b) == 6 && [6]byte(b) == m }
