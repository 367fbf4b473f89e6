//go:build linux

package ndemu_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"
)

// BenchmarkIntegrationNSAnswer measures the time from a Neighbor
// Solicitation leaving a task's interface to the emulator's answer arriving
// there, over real veths and namespaces (one outstanding at a time).
// Reports p50/p99 besides ns/op.
func BenchmarkIntegrationNSAnswer(b *testing.B) {
	testutil.Privileged(b)
	d := &dir{}
	_, tasks, em := setup(b, d, nil)
	t1 := tasks[0]

	var fd int
	if err := t1.ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IPV6)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: t1.eth0.Attrs().Index}); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	}); err != nil {
		b.Fatalf("socket in t1: %v", err)
	}
	defer unix.Close(fd)
	frame := nsFrameFor(b, t1.mac, addr1, addr2)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: t1.eth0.Attrs().Index, Halen: 6}
	buf := make([]byte, 2048)
	lat := make([]time.Duration, 0, b.N)
	before := em.Stats()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			b.Fatalf("send NS: %v", err)
		}
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				b.Fatalf("no answer: %v", err)
			}
			f := buf[:n]
			if n >= 54+24 && f[20] == 58 && f[54] == 136 && netip.AddrFrom16([16]byte(f[62:78])) == addr2 {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	// The counter moves just after the frame left: allow it a moment.
	waitFor(b, time.Second, func() string {
		if got := em.Stats().NASent - before.NASent; got < uint64(b.N) {
			return fmt.Sprintf("emulator sent %d NAs for %d solicitations", got, b.N)
		}
		return ""
	})
}

// nsFrameFor builds an NS frame from a task (mac, src) for target.
func nsFrameFor(tb testing.TB, mac net.HardwareAddr, src, target netip.Addr) []byte {
	tb.Helper()
	dst, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		tb.Fatal(err)
	}
	icmp, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac}}}, src, dst)
	if err != nil {
		tb.Fatal(err)
	}
	d := dst.As16()
	f := make([]byte, 54, 54+len(icmp))
	copy(f[0:6], []byte{0x33, 0x33, d[12], d[13], d[14], d[15]})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], 0x86dd)
	f[14] = 0x60
	binary.BigEndian.PutUint16(f[18:20], uint16(len(icmp)))
	f[20], f[21] = 58, 255
	s := src.As16()
	copy(f[22:38], s[:])
	copy(f[38:54], d[:])
	return append(f, icmp...)
}
