//go:build linux

package locator

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/vishvananda/netlink"
)

// NetlinkPorts prepares task-facing ports with netlink in a network
// namespace: the anycast gateway MAC, fe80::1/64 without DAD, IPv6
// forwarding on, router advertisements and DAD off, link up.
type NetlinkPorts struct {
	// NS is the NVE's namespace; nil means the current one.
	NS *netns.NS
	// GatewayMAC is the anycast MAC of every NVE's task ports.
	GatewayMAC ila.MAC
	// Handle is a netlink handle in NS.
	Handle *netlink.Handle
}

// NewNetlinkPorts opens a netlink handle in ns (nil: current namespace).
func NewNetlinkPorts(ns *netns.NS, gw ila.MAC) (*NetlinkPorts, error) {
	var h *netlink.Handle
	var err error
	if ns != nil {
		h, err = ns.Handle()
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, err
	}
	return &NetlinkPorts{NS: ns, GatewayMAC: gw, Handle: h}, nil
}

// Close releases the netlink handle.
func (p *NetlinkPorts) Close() { p.Handle.Close() }

func (p *NetlinkPorts) do(fn func() error) error {
	if p.NS == nil {
		return fn()
	}
	return p.NS.Do(fn)
}

// Sysctl writes /proc/sys/<key> in the ports' namespace.
func (p *NetlinkPorts) Sysctl(key, value string) error {
	return p.do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// Prepare implements Ports.
func (p *NetlinkPorts) Prepare(ifname string) (Port, error) {
	l, err := p.Handle.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return Port{}, fmt.Errorf("port %s: %w", ifname, ErrNoPort)
		}
		return Port{}, fmt.Errorf("port %s: %w", ifname, err)
	}
	gw := net.HardwareAddr(p.GatewayMAC[:])
	if p.GatewayMAC != (ila.MAC{}) && l.Attrs().HardwareAddr.String() != gw.String() {
		if err := p.Handle.LinkSetHardwareAddr(l, gw); err != nil {
			return Port{}, fmt.Errorf("port %s: set gateway MAC %s: %w", ifname, gw, err)
		}
	}
	// One trip into the namespace for every sysctl.
	err = p.do(func() error {
		for _, kv := range [][2]string{
			{"net/ipv6/conf/" + ifname + "/disable_ipv6", "0"},
			{"net/ipv6/conf/" + ifname + "/accept_dad", "0"},
			{"net/ipv6/conf/" + ifname + "/accept_ra", "0"},
			{"net/ipv6/conf/" + ifname + "/forwarding", "1"},
			{"net/ipv6/conf/all/forwarding", "1"},
		} {
			if err := os.WriteFile(filepath.Join("/proc/sys", kv[0]), []byte(kv[1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s: %w", kv[0], err)
			}
		}
		// Best effort: no EUI-64 link-local beside fe80::1, and neighbour
		// entries from a task's unsolicited NA after a move (Linux >= 5.19).
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/addr_gen_mode", []byte("1"), 0o644)
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/accept_untracked_na", []byte("1"), 0o644)
		return nil
	})
	if err != nil {
		return Port{}, fmt.Errorf("port %s: %w", ifname, err)
	}
	ll := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(ila.GatewayLinkLocal().AsSlice()), Mask: net.CIDRMask(64, 128)}, Flags: 0x02 /* IFA_F_NODAD */}
	if err := p.Handle.AddrReplace(l, ll); err != nil {
		return Port{}, fmt.Errorf("port %s: add %s: %w", ifname, ila.GatewayLinkLocal(), err)
	}
	if err := p.Handle.LinkSetUp(l); err != nil {
		return Port{}, fmt.Errorf("port %s: set up: %w", ifname, err)
	}
	port := Port{Name: ifname, Ifindex: l.Attrs().Index}
	// The task's MAC, if the kernel has already seen it (e.g. it resolved
	// fe80::1).
	if ns, err := p.Handle.NeighList(port.Ifindex, netlink.FAMILY_V6); err == nil {
		for _, n := range ns {
			if len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
				copy(port.PeerMAC[:], n.HardwareAddr)
				break
			}
		}
	}
	return port, nil
}

// Release implements Ports. The port may already be gone.
func (p *NetlinkPorts) Release(ifname string) error {
	l, err := p.Handle.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("port %s: %w", ifname, err)
	}
	ll := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(ila.GatewayLinkLocal().AsSlice()), Mask: net.CIDRMask(64, 128)}}
	if err := p.Handle.AddrDel(l, ll); err != nil {
		return fmt.Errorf("port %s: remove %s: %w", ifname, ila.GatewayLinkLocal(), err)
	}
	return nil
}

// Alive implements PortLiveness: the port still exists under its name and
// index, is administratively up and has carrier (or cannot tell).
func (p *NetlinkPorts) Alive(port Port) bool {
	l, err := p.Handle.LinkByIndex(port.Ifindex)
	if err != nil {
		return false
	}
	at := l.Attrs()
	if at.Name != port.Name || at.Flags&net.FlagUp == 0 {
		return false
	}
	return at.OperState == netlink.OperUp || at.OperState == netlink.OperUnknown
}
