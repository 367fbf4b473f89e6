package locator

import (
	"encoding/binary"
	"net/netip"
)

// Ethernet types and ICMPv6 type the announce match reads.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherRARP = 0x8035
	etherIPv6 = 0x86dd
	icmp6NA   = 136
)

// isAnnounce reports whether frame, received from the task on its port,
// shows the task running behind it: QEMU's announce (RARP from the task's
// MAC), a gratuitous ARP or any ARP for the task's IPv4 address, an
// unsolicited neighbour advertisement for its SIR address, or any IPv4 or
// IPv6 packet from its own address. Frames from another MAC (when the
// task's is known) never count, nor does link-local chatter such as a
// router solicitation: a dual-homed task may send that on a standby link
// long before it switches.
func isAnnounce(frame []byte, t TaskSpec) bool {
	if len(frame) < 14 {
		return false
	}
	if !t.MAC.IsZero() && [6]byte(frame[6:12]) != [6]byte(t.MAC) {
		return false
	}
	p := frame[14:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case etherRARP:
		return true
	case etherARP:
		// Ethernet/IPv4 ARP: sender IP at 14, target IP at 24.
		if len(p) < 28 || binary.BigEndian.Uint16(p[2:]) != etherIPv4 || p[4] != 6 || p[5] != 4 {
			return false
		}
		spa, tpa := netip.AddrFrom4([4]byte(p[14:18])), netip.AddrFrom4([4]byte(p[24:28]))
		if t.IPv4.IsValid() {
			return spa == t.IPv4
		}
		return spa == tpa && spa.IsValid() && !spa.IsUnspecified()
	case etherIPv4:
		if len(p) < 20 || p[0]>>4 != 4 || !t.IPv4.IsValid() {
			return false
		}
		return netip.AddrFrom4([4]byte(p[12:16])) == t.IPv4
	case etherIPv6:
		if len(p) < 40 || p[0]>>4 != 6 {
			return false
		}
		if netip.AddrFrom16([16]byte(p[8:24])) == t.SIR {
			return true
		}
		// A neighbour advertisement for the SIR address (sent from a
		// link-local source): ICMPv6 right after the fixed header.
		if p[6] == 58 && len(p) >= 40+24 && p[40] == icmp6NA {
			return netip.AddrFrom16([16]byte(p[48:64])) == t.SIR
		}
	}
	return false
}
