//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// oldPathSniffer watches, on the old NVE's uplink, packets still sent to a
// task's old ILA address, by source: the last one from each source NVE
// tells when that NVE's datapath switched to the new locator (taps see a
// packet before the ingress program rewrites it).
type oldPathSniffer struct {
	fd   int
	dst  [16]byte
	mu   sync.Mutex
	last map[netip.Addr]time.Time
	n    map[netip.Addr]int
	done chan struct{}
}

func (l *Lab) sniffOldPath(nve *NVE, oldILA netip.Addr) (*oldPathSniffer, error) {
	nn, err := l.node(nve.Netns)
	if err != nil {
		return nil, err
	}
	up, err := nn.link("up0")
	if err != nil {
		return nil, err
	}
	s := &oldPathSniffer{dst: oldILA.As16(), last: map[netip.Addr]time.Time{}, n: map[netip.Addr]int{}, done: make(chan struct{})}
	// ETH_P_ALL: only "all" taps run before the tc ingress program.
	proto := int(htons(unix.ETH_P_ALL))
	err = nn.ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: up.Attrs().Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s up0: %w", nve.Name, err)
	}
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// run reads until ctx ends.
func (s *oldPathSniffer) run(ctx context.Context) {
	defer close(s.done)
	defer unix.Close(s.fd)
	buf := make([]byte, 2048)
	for ctx.Err() == nil {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		now := time.Now()
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Pkttype == unix.PACKET_OUTGOING || ll.Protocol != htons(unix.ETH_P_IPV6) {
			continue
		}
		if n < 40 || buf[0]>>4 != 6 || [16]byte(buf[24:40]) != s.dst {
			continue
		}
		src := netip.AddrFrom16([16]byte(buf[8:24]))
		s.mu.Lock()
		s.last[src] = now
		s.n[src]++
		s.mu.Unlock()
	}
}

// result waits for run to end and returns the last arrival and count per
// source address.
func (s *oldPathSniffer) result() (map[netip.Addr]time.Time, map[netip.Addr]int) {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.n
}
