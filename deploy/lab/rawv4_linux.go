//go:build linux

package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// SendIPv4UDP sends one IPv4 UDP datagram with the given source address
// (which need not be the task's: tests of source validation) from task's
// eth0 to the task named to, at that task's MAC, as the bridge of their
// tenant would carry it.
func (l *Lab) SendIPv4UDP(taskName, to string, src netip.Addr, port uint16, payload []byte) error {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return err
	}
	dst, err := l.topo.TaskByName(to)
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(dst.MAC)
	if err != nil || !src.Is4() || !dst.IPv4.Is4() {
		return fmt.Errorf("ipv4 udp from %s to %s: want IPv4 addresses and a MAC", taskName, to)
	}
	tn, err := l.node(task.Netns)
	if err != nil {
		return err
	}
	eth, err := tn.link(task.taskIf())
	if err != nil {
		return err
	}
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.IPv4.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], port)
	binary.BigEndian.PutUint16(p[22:], port)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload))) // checksum 0: none (IPv4)
	copy(p[28:], payload)
	return tn.ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return fmt.Errorf("ipv4 socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: eth.Attrs().Index, Halen: 6}
		copy(sa.Addr[:], mac)
		if err := unix.Sendto(fd, p, 0, sa); err != nil {
			return fmt.Errorf("send ipv4 from %s: %w", taskName, err)
		}
		return nil
	})
}
