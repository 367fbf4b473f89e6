//go:build linux

package ndemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/ilamesh/ilamesh/internal/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// packetConn is an AF_PACKET socket bound to one port, receiving only
// ICMPv6 RS/NS/NA frames (classic BPF filter) from every multicast group.
type packetConn struct {
	f       *os.File
	rc      syscall.RawConn
	ifindex int
}

// ndFilter is the socket filter: it keeps the ICMPv6 RS (133), NS (135)
// and NA (136) frames a task sends (IPv6 with ICMPv6 directly after the
// fixed header; not PACKET_OUTGOING: what this host sends out of the
// port). Socket filters in this module are written with x/net/bpf,
// attached before the socket is bound, and drop the host's own frames
// themselves (as l2compat's arpFromTasks).
var ndFilter = func() []bpf.RawInstruction {
	r, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2}, // ethertype
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IPV6, SkipTrue: 8},
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 6},
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 4},
		bpf.LoadAbsolute{Off: ethHeaderLen + ipv6HeaderLen, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 133, SkipTrue: 3},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 135, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 136, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	})
	if err != nil {
		panic(err) // static program
	}
	return r
}()

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openPort looks ifname up and opens its socket inside the network
// namespace at nsPath (the current one if empty).
func openPort(nsPath, ifname string) (*packetConn, int, error) {
	var (
		c       *packetConn
		ifindex int
	)
	err := netns.DoPath(nsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("find interface: %w", err)
		}
		ifindex = ifi.Index
		c, err = listenPacket(ifi.Index)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return c, ifindex, nil
}

func listenPacket(ifindex int) (*packetConn, error) {
	// Protocol 0: receive nothing until the filter is attached and the
	// socket bound, so no unfiltered frame from another port slips in.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w", os.NewSyscallError("socket", err))
	}
	fail := func(what string, err error) (*packetConn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket: %s: %w", what, err)
	}
	filter := make([]unix.SockFilter, len(ndFilter))
	for i, ins := range ndFilter {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fail("attach filter", os.NewSyscallError("setsockopt", err))
	}
	// Our own frames and the NVE kernel's are not input (kernel >= 4.20;
	// the filter drops them on older kernels).
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	// ETH_P_ALL makes the socket a tap that runs before tc ingress, so a
	// datapath program on the port cannot hide ND frames from it (only
	// XDP runs earlier). With PACKET_IGNORE_OUTGOING it costs nothing on
	// transmit; on receive the filter drops everything but ND.
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fail("bind", os.NewSyscallError("bind", err))
	}
	// Solicitations go to the targets' solicited-node groups, which the
	// NVE never joins: receive every multicast frame (dropped with the
	// socket).
	mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_ALLMULTI}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("all-multicast membership", os.NewSyscallError("setsockopt", err))
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("ndemu-packet-%d", ifindex))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	return &packetConn{f: f, rc: rc, ifindex: ifindex}, nil
}

// read returns the next frame received (never one sent from this host:
// the filter drops those).
func (c *packetConn) read(b []byte) (int, error) {
	var (
		n    int
		rerr error
	)
	err := c.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), b, 0)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err != nil {
		return 0, mapClosed(err)
	}
	if rerr != nil {
		return 0, os.NewSyscallError("recvfrom", rerr)
	}
	return n, nil
}

// write sends one whole Ethernet frame on the port.
func (c *packetConn) write(frame []byte) error {
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), frame, 0, &unix.SockaddrLinklayer{
			Protocol: htons(unix.ETH_P_IPV6),
			Ifindex:  c.ifindex,
			Halen:    6,
		})
		return werr != unix.EAGAIN && werr != unix.EINTR
	})
	if err != nil {
		return mapClosed(err)
	}
	if werr != nil {
		return os.NewSyscallError("sendto", werr)
	}
	return nil
}

func (c *packetConn) close() { _ = c.f.Close() }

func mapClosed(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// isTransient reports read errors after which the socket still works:
// the port went down (ENETDOWN, rebinds on up) or the receive queue
// overflowed.
func isTransient(err error) bool {
	return errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EINTR)
}
