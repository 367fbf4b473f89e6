package l2compat

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"

	"github.com/ilamesh/ilamesh/ila"
)

func testDir(t *testing.T) *directory {
	t.Helper()
	d := newDirectory()
	for _, tk := range []*ila.Task{
		{Identifier: mustVN(t, 100, "10.0.0.1"), NVE: "n1", MAC: macA},
		{Identifier: mustVN(t, 100, "10.0.0.2"), NVE: "n2", MAC: macB},
		{Identifier: mustVN(t, 200, "10.0.0.3"), NVE: "n2", MAC: ila.MAC{2, 0, 0, 0, 2, 3}},
	} {
		e, _ := taskEntry(tk)
		d.upsert(e)
	}
	return d
}

func TestHandleFrame(t *testing.T) {
	ip := netip.MustParseAddr
	zero := netip.IPv4Unspecified()
	other := ila.MAC{2, 0, 0, 0, 9, 9}
	port := portInfo{Name: "ta1", Index: 7, VNI: 100, MAC: ila.MAC{0xaa, 0, 0, 0, 0, 1}}
	tests := []struct {
		name  string
		frame []byte
		want  verdict
	}{
		{"request for same tenant",
			arpFrame(arp.OperationRequest, etherTypeARP, macA, ip("10.0.0.1"), ila.MAC{}, ip("10.0.0.2"), broadcast),
			verdict{Act: actARPAnswer, To: macA, Sender: macA,
				Reply: arpFrame(arp.OperationReply, etherTypeARP, macB, ip("10.0.0.2"), macA, ip("10.0.0.1"), macA)}},
		{"request for other tenant's address",
			arpFrame(arp.OperationRequest, etherTypeARP, macA, ip("10.0.0.1"), ila.MAC{}, ip("10.0.0.3"), broadcast),
			verdict{Act: actARPIgnore, Sender: macA}},
		{"request for unknown address",
			arpFrame(arp.OperationRequest, etherTypeARP, macA, ip("10.0.0.1"), ila.MAC{}, ip("10.0.0.99"), broadcast),
			verdict{Act: actARPIgnore, Sender: macA}},
		{"probe for own address",
			arpFrame(arp.OperationRequest, etherTypeARP, macA, zero, ila.MAC{}, ip("10.0.0.1"), broadcast),
			verdict{Act: actARPIgnore, Sender: macA}},
		{"probe for an address in use",
			arpFrame(arp.OperationRequest, etherTypeARP, other, zero, ila.MAC{}, ip("10.0.0.2"), broadcast),
			verdict{Act: actARPAnswer, To: other, Sender: other,
				Reply: arpFrame(arp.OperationReply, etherTypeARP, macB, ip("10.0.0.2"), other, zero, other)}},
		{"gratuitous after a move",
			arpFrame(arp.OperationRequest, etherTypeARP, macB, ip("10.0.0.2"), broadcast, ip("10.0.0.2"), broadcast),
			verdict{Act: actGratuitous, Sender: macB, Moved: true,
				Claim: Claim{VNI: 100, IPv4: ip("10.0.0.2"), MAC: macB, Port: "ta1", Ifindex: 7, NVE: "n1"}}},
		{"gratuitous reply for a new address",
			arpFrame(arp.OperationReply, etherTypeARP, other, ip("10.0.0.50"), broadcast, ip("10.0.0.50"), broadcast),
			verdict{Act: actGratuitous, Sender: other,
				Claim: Claim{VNI: 100, IPv4: ip("10.0.0.50"), MAC: other, Port: "ta1", Ifindex: 7, NVE: "n1"}}},
		{"gratuitous refresh of a local task",
			arpFrame(arp.OperationRequest, etherTypeARP, macA, ip("10.0.0.1"), broadcast, ip("10.0.0.1"), broadcast),
			verdict{Act: actRefresh, Sender: macA,
				Claim: Claim{VNI: 100, IPv4: ip("10.0.0.1"), MAC: macA, Port: "ta1", Ifindex: 7, NVE: "n1"}}},
		{"spoofed gratuitous",
			arpFrame(arp.OperationRequest, etherTypeARP, other, ip("10.0.0.2"), broadcast, ip("10.0.0.2"), broadcast),
			verdict{Act: actSpoofed, Sender: other,
				Claim:  Claim{VNI: 100, IPv4: ip("10.0.0.2"), MAC: other, Port: "ta1", Ifindex: 7, NVE: "n1"},
				Reason: `address 10.0.0.2 in vni 100 is registered to 02:00:00:00:01:02 on nve "n2"`}},
		{"rarp for a known MAC",
			arpFrame(opRequestReverse, etherTypeRARP, macB, zero, macB, zero, broadcast),
			verdict{Act: actRARPAnswer, To: macB, Sender: macB,
				Reply: arpFrame(opReplyReverse, etherTypeRARP, port.MAC, zero, macB, ip("10.0.0.2"), macB)}},
		{"rarp for another tenant's MAC",
			arpFrame(opRequestReverse, etherTypeRARP, macA, zero, ila.MAC{2, 0, 0, 0, 2, 3}, zero, broadcast),
			verdict{Act: actRARPIgnore, Sender: macA}},
		{"sender differs from frame source",
			func() []byte {
				f := arpFrame(arp.OperationRequest, etherTypeARP, macA, ip("10.0.0.1"), ila.MAC{}, ip("10.0.0.2"), broadcast)
				copy(f[6:12], other[:])
				return f
			}(),
			verdict{Act: actMalformed, Reason: "sender hardware address does not match frame source"}},
		{"ipv4 frame", append(make([]byte, 12), 0x08, 0x00, 0x45), verdict{Act: actNone}},
		{"short", []byte{1, 2, 3}, verdict{Act: actMalformed, Reason: "short frame"}},
		{"truncated arp", arpFrame(arp.OperationRequest, etherTypeARP, macA, ip("10.0.0.1"), ila.MAC{}, ip("10.0.0.2"), broadcast)[:30],
			verdict{Act: actMalformed, Reason: "unexpected EOF"}},
	}
	d := testDir(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := handleFrame(d, "n1", port, tc.frame)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("verdict (-want +got):\n%s", diff)
			}
		})
	}
}

func arpFrame(op arp.Operation, et uint16, sha ila.MAC, spa netip.Addr, tha ila.MAC, tpa netip.Addr, dst ila.MAC) []byte {
	p := &arp.Packet{HardwareType: 1, ProtocolType: etherTypeIPv4, HardwareAddrLength: 6, IPLength: 4,
		Operation: op, SenderHardwareAddr: sha[:], SenderIP: spa, TargetHardwareAddr: tha[:], TargetIP: tpa}
	return ethFrame(dst, sha, et, p)
}

// FuzzHandleFrame checks that no frame panics the responders and that every
// reply is a well-formed ARP/RARP reply to the frame's source, from the same
// tenant.
func FuzzHandleFrame(f *testing.F) {
	ip := netip.MustParseAddr
	zero := netip.IPv4Unspecified()
	f.Add(arpFrame(arp.OperationRequest, etherTypeARP, macA, ip("10.0.0.1"), ila.MAC{}, ip("10.0.0.2"), broadcast))
	f.Add(arpFrame(arp.OperationRequest, etherTypeARP, macB, ip("10.0.0.2"), broadcast, ip("10.0.0.2"), broadcast))
	f.Add(arpFrame(opRequestReverse, etherTypeRARP, macB, zero, macB, zero, broadcast))
	f.Add([]byte{})
	d := newDirectory()
	for _, tk := range []*ila.Task{
		{Identifier: func() ila.Identifier { id, _ := ila.NewVNIPv4(100, ip("10.0.0.1")); return id }(), NVE: "n1", MAC: macA},
		{Identifier: func() ila.Identifier { id, _ := ila.NewVNIPv4(100, ip("10.0.0.2")); return id }(), NVE: "n2", MAC: macB},
		{Identifier: func() ila.Identifier { id, _ := ila.NewVNIPv4(200, ip("10.0.0.2")); return id }(), NVE: "n2", MAC: ila.MAC{2, 0, 0, 0, 2, 2}},
	} {
		e, _ := taskEntry(tk)
		d.upsert(e)
	}
	port := portInfo{Name: "ta1", Index: 7, VNI: 100, MAC: ila.MAC{0xaa, 0, 0, 0, 0, 1}}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := handleFrame(d, "n1", port, b)
		if v.Reply == nil {
			return
		}
		var src ila.MAC
		copy(src[:], b[6:12])
		if v.To != src || [6]byte(v.Reply[0:6]) != src {
			t.Fatalf("reply to %v, frame source %v", v.To, src)
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(v.Reply[14:]); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		switch p.Operation {
		case arp.OperationReply:
			e, ok := d.lookupIP(100, p.SenderIP)
			if !ok || !equalMAC(p.SenderHardwareAddr, e.MAC) {
				t.Fatalf("reply %v is-at %v not from tenant 100's mapping", p.SenderIP, p.SenderHardwareAddr)
			}
		case opReplyReverse:
			var tha ila.MAC
			copy(tha[:], p.TargetHardwareAddr)
			e, ok := d.lookupMAC(100, tha)
			if !ok || e.IP != p.TargetIP {
				t.Fatalf("rarp reply %v for %v not from tenant 100's mapping", p.TargetIP, tha)
			}
		default:
			t.Fatalf("reply operation %d", p.Operation)
		}
	})
}
