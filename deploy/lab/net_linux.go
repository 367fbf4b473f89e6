//go:build linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/internal/netns"
)

// node is an open namespace with a netlink handle on it.
type node struct {
	ns *netns.NS
	h  *netlink.Handle
}

func openNode(name string) (*node, error) {
	ns, err := netns.Open(name)
	if err != nil {
		return nil, err
	}
	h, err := ns.Handle()
	if err != nil {
		ns.Close()
		return nil, err
	}
	return &node{ns: ns, h: h}, nil
}

func newNode(name string) (*node, error) {
	ns, err := netns.New(name)
	if err != nil {
		return nil, err
	}
	h, err := ns.Handle()
	if err != nil {
		ns.Delete()
		return nil, err
	}
	n := &node{ns: ns, h: h}
	if err := n.up("lo"); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

func (n *node) close() {
	if n == nil {
		return
	}
	n.h.Close()
	n.ns.Close()
}

func (n *node) name() string { return n.ns.Name() }

func (n *node) link(name string) (netlink.Link, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s in %s: %w", name, n.name(), err)
	}
	return l, nil
}

func (n *node) up(name string) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if err := n.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", name, n.name(), err)
	}
	return nil
}

// veth creates a veth pair local <-> peer with peer moved into other.
func (n *node) veth(local string, localMAC net.HardwareAddr, other *node, peer string, peerMAC net.HardwareAddr) error {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: local, HardwareAddr: localMAC, TxQLen: 1000},
		PeerName:         peer,
		PeerHardwareAddr: peerMAC,
		PeerNamespace:    netlink.NsFd(other.ns.Fd()),
	}
	if err := n.h.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s(%s) <-> %s(%s): %w", local, n.name(), peer, other.name(), err)
	}
	if err := n.up(local); err != nil {
		return err
	}
	return other.up(peer)
}

func (n *node) addr(ifname string, p netip.Prefix) error {
	l, err := n.link(ifname)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: ipnet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.h.AddrReplace(l, a); err != nil {
		return fmt.Errorf("address %s on %s in %s: %w", p, ifname, n.name(), err)
	}
	return nil
}

// addrFlags adds an address with the given IFA_F_* flags.
func (n *node) addrFlags(ifname string, p netip.Prefix, flags int) error {
	l, err := n.link(ifname)
	if err != nil {
		return err
	}
	if err := n.h.AddrReplace(l, &netlink.Addr{IPNet: ipnet(p), Flags: flags}); err != nil {
		return fmt.Errorf("address %s on %s in %s: %w", p, ifname, n.name(), err)
	}
	return nil
}

// waitOperUp waits until ifname's operational state is up.
func (n *node) waitOperUp(ctx context.Context, ifname string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := n.link(ifname)
		if err != nil {
			return err
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %s in %s: not up after %v (state %s)", ifname, n.name(), timeout, l.Attrs().OperState)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// neighReachable installs a reachable neighbour entry.
func (n *node) neighReachable(ifname string, ip netip.Addr, mac net.HardwareAddr) error {
	l, err := n.link(ifname)
	if err != nil {
		return err
	}
	ne := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V6, State: netlink.NUD_REACHABLE, Flags: netlink.NTF_ROUTER, IP: net.IP(ip.AsSlice()), HardwareAddr: mac}
	if err := n.h.NeighSet(ne); err != nil {
		return fmt.Errorf("neighbour %s on %s in %s: %w", ip, ifname, n.name(), err)
	}
	return nil
}

// hasFDB reports whether the bridge port ifname has a forwarding entry
// for mac (learnt or static).
func (n *node) hasFDB(ifname string, mac net.HardwareAddr) (bool, error) {
	l, err := n.link(ifname)
	if err != nil {
		return false, err
	}
	ns, err := n.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return false, fmt.Errorf("fdb of %s in %s: %w", ifname, n.name(), err)
	}
	for _, e := range ns {
		if e.LinkIndex == l.Attrs().Index && bytes.Equal(e.HardwareAddr, mac) {
			return true, nil
		}
	}
	return false, nil
}

// routeMetric installs dst via gw out of ifname with a priority.
func (n *node) routeMetric(dst netip.Prefix, gw netip.Addr, ifname string, metric int) error {
	l, err := n.link(ifname)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(dst), Gw: net.IP(gw.AsSlice()), Priority: metric}
	if err := n.h.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %v dev %s metric %d in %s: %w", dst, gw, ifname, metric, n.name(), err)
	}
	return nil
}

// route installs dst via gw (if valid) out of ifname.
func (n *node) route(dst netip.Prefix, gw netip.Addr, ifname string) error {
	l, err := n.link(ifname)
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(dst)}
	if gw.IsValid() {
		r.Gw = net.IP(gw.AsSlice())
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := n.h.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %v dev %s in %s: %w", dst, gw, ifname, n.name(), err)
	}
	return nil
}

// sysctl writes a /proc/sys value inside the namespace.
func (n *node) sysctl(key, val string) error {
	return n.ns.Do(func() error {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, val, n.name(), err)
		}
		return nil
	})
}

func ipnet(p netip.Prefix) *net.IPNet {
	bits := 128
	if p.Addr().Is4() {
		bits = 32
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
