//go:build linux

package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// SendARP sends one ARP packet from task's eth0 (in its namespace):
// op 1 request or 2 reply, sender sha/spa, target tpa, to the broadcast
// address. A gratuitous ARP is a request with spa == tpa.
func (l *Lab) SendARP(taskName string, op uint16, sha net.HardwareAddr, spa, tpa netip.Addr) error {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return err
	}
	return l.sendARP(task, task.taskIf(), op, sha, spa, tpa)
}

// sendARP is SendARP out of the task's interface ifname.
func (l *Lab) sendARP(task *Task, ifname string, op uint16, sha net.HardwareAddr, spa, tpa netip.Addr) error {
	taskName := task.Name
	tn, err := l.node(task.Netns)
	if err != nil {
		return err
	}
	eth, err := tn.link(ifname)
	if err != nil {
		return err
	}
	if sha == nil {
		sha = eth.Attrs().HardwareAddr
	}
	if !spa.Is4() || !tpa.Is4() || len(sha) != 6 {
		return fmt.Errorf("arp from %s: want IPv4 addresses and a 6-byte MAC", taskName)
	}
	var p [28]byte
	binary.BigEndian.PutUint16(p[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(p[2:], 0x0800) // IPv4
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:], op)
	copy(p[8:], sha)
	s4, t4 := spa.As4(), tpa.As4()
	copy(p[14:], s4[:])
	copy(p[24:], t4[:])
	return tn.ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("arp socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: eth.Attrs().Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		if err := unix.Sendto(fd, p[:], 0, to); err != nil {
			return fmt.Errorf("send arp from %s: %w", taskName, err)
		}
		return nil
	})
}

// SendGARP makes an IPv4 task announce its own address, as a booted or
// migrated VM does.
func (l *Lab) SendGARP(taskName string) error {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return err
	}
	return l.SendARP(taskName, 1, nil, task.IPv4, task.IPv4)
}

// SendND sends one Neighbour Discovery message from task's eth0: an NS for
// target (to its solicited-node multicast address) or, with na, an
// unsolicited NA with the override flag claiming target with the task's
// MAC (to all-nodes).
func (l *Lab) SendND(taskName string, target netip.Addr, na bool) error {
	return l.sendND(taskName, target, na, false)
}

// SendNUD sends one unicast NS for target to target itself, as a task's
// neighbour unreachability detection probe does (RFC 4861 7.3.3).
func (l *Lab) SendNUD(taskName string, target netip.Addr) error {
	return l.sendND(taskName, target, false, true)
}

func (l *Lab) sendND(taskName string, target netip.Addr, na, unicast bool) error {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return err
	}
	tn, err := l.node(task.Netns)
	if err != nil {
		return err
	}
	eth, err := tn.link(task.taskIf())
	if err != nil {
		return err
	}
	mac := eth.Attrs().HardwareAddr
	t16 := target.As16()
	var msg icmp.Message
	var dst netip.Addr
	if na {
		body := make([]byte, 4+16+8)
		body[0] = 0x20 // override
		copy(body[4:], t16[:])
		body[20], body[21] = 2, 1 // target link-layer address option
		copy(body[22:], mac)
		msg = icmp.Message{Type: ipv6.ICMPTypeNeighborAdvertisement, Body: &icmp.RawBody{Data: body}}
		dst = netip.MustParseAddr("ff02::1")
	} else {
		body := make([]byte, 4+16+8)
		copy(body[4:], t16[:])
		body[20], body[21] = 1, 1 // source link-layer address option
		copy(body[22:], mac)
		msg = icmp.Message{Type: ipv6.ICMPTypeNeighborSolicitation, Body: &icmp.RawBody{Data: body}}
		sn := [16]byte{0xff, 0x02, 10: 0, 11: 0x01, 12: 0xff, 13: t16[13], 14: t16[14], 15: t16[15]}
		dst = netip.AddrFrom16(sn)
		if unicast {
			dst = target
		}
	}
	b, err := msg.Marshal(nil) // the kernel fills the ICMPv6 checksum
	if err != nil {
		return err
	}
	return tn.ns.Do(func() error {
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", task.SIR.String())
		if err != nil {
			return fmt.Errorf("icmpv6 socket in %s: %w", task.Netns, err)
		}
		defer c.Close()
		pc := c.IPv6PacketConn()
		if err := pc.SetMulticastHopLimit(255); err != nil {
			return err
		}
		if err := pc.SetHopLimit(255); err != nil {
			return err
		}
		if err := pc.SetMulticastInterface(&net.Interface{Index: eth.Attrs().Index}); err != nil {
			return err
		}
		if _, err := c.WriteTo(b, &net.IPAddr{IP: net.IP(dst.AsSlice()), Zone: task.taskIf()}); err != nil {
			return fmt.Errorf("send nd from %s: %w", taskName, err)
		}
		return nil
	})
}
