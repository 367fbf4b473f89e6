//go:build linux

package l2compat

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
)

type vniDev struct {
	vni      uint32
	br, vx   netlink.Link
	ports    int
	fdb      int
	inflight int
	neigh    int
	hairpin  bool
}

// setHairpin lets frames arriving over VXLAN go back out over VXLAN only
// while in-flight entries exist in the tenant (limits transient loops).
func (m *Manager) setHairpin(d *vniDev) error {
	want := d.inflight > 0
	if want == d.hairpin {
		return nil
	}
	if err := m.h.LinkSetHairpin(d.vx, want); err != nil {
		return fmt.Errorf("hairpin %v on %s: %w", want, d.vx.Attrs().Name, err)
	}
	d.hairpin = want
	return nil
}

func bridgeName(vni uint32) string { return fmt.Sprintf("l2br%d", vni) }
func vxlanName(vni uint32) string  { return fmt.Sprintf("l2vx%d", vni) }

// ensureVNI creates (or adopts) the bridge and VXLAN device of tenant vni.
func (m *Manager) ensureVNI(vni uint32) (*vniDev, error) {
	if d := m.vnis[vni]; d != nil {
		return d, nil
	}
	if vni == 0 || vni > MaxVNI {
		return nil, fmt.Errorf("vni %d: want 1 to %d", vni, MaxVNI)
	}
	brName, vxName := bridgeName(vni), vxlanName(vni)
	br, err := m.h.LinkByName(brName)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("bridge %s: %w", brName, err)
		}
		if err := m.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: brName, MTU: m.cfg.MTU}}); err != nil {
			return nil, fmt.Errorf("add bridge %s: %w", brName, err)
		}
		if br, err = m.h.LinkByName(brName); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", brName, err)
		}
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %s: exists as a %s device", brName, br.Type())
	}
	vx, err := m.h.LinkByName(vxName)
	if err != nil {
		if !isNotFound(err) {
			return nil, fmt.Errorf("vxlan %s: %w", vxName, err)
		}
		v := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: vxName, MTU: m.cfg.MTU},
			VxlanId:   int(vni),
			SrcAddr:   net.IP(m.cfg.Underlay.AsSlice()),
			Port:      int(m.cfg.Port),
			Learning:  false,
			Proxy:     true,
		}
		if err := m.h.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("add vxlan %s: %w", vxName, err)
		}
		if vx, err = m.h.LinkByName(vxName); err != nil {
			return nil, fmt.Errorf("vxlan %s: %w", vxName, err)
		}
	}
	if v, ok := vx.(*netlink.Vxlan); !ok || v.VxlanId != int(vni) {
		return nil, fmt.Errorf("vxlan %s: exists but is not vxlan id %d", vxName, vni)
	}
	if err := m.do(func() error {
		for _, name := range []string{brName, vxName} {
			if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6"), []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("disable ipv6 on %s/%s: %w", brName, vxName, err)
	}
	if err := m.h.LinkSetMaster(vx, br); err != nil {
		return nil, fmt.Errorf("enslave %s to %s: %w", vxName, brName, err)
	}
	if err := m.portFlags(vx, false); err != nil {
		return nil, err
	}
	if err := m.h.LinkSetHairpin(vx, false); err != nil {
		return nil, fmt.Errorf("hairpin off on %s: %w", vxName, err)
	}
	for _, l := range []netlink.Link{vx, br} {
		if err := m.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	d := &vniDev{vni: vni, br: br, vx: vx}
	m.vnis[vni] = d
	// Adopt FDB and neighbour entries left by an earlier run (an agent
	// restart keeps forwarding) so that the next sync removes stale ones.
	if old, err := m.h.NeighList(vx.Attrs().Index, unix.AF_INET); err == nil {
		for _, n := range old {
			ip, ok := netipFromIP(n.IP)
			if !ok || !ip.Is4() || len(n.HardwareAddr) != 6 || n.State&netlink.NUD_PERMANENT == 0 {
				continue
			}
			k := neighKey{vni, ip}
			if _, ok := m.neigh[k]; !ok {
				m.neigh[k] = ila.MAC(n.HardwareAddr)
				d.neigh++
			}
		}
	}
	if old, err := m.h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE); err == nil {
		for _, n := range old {
			var mac ila.MAC
			if len(n.HardwareAddr) != 6 || n.Flags&netlink.NTF_SELF == 0 || n.IP == nil {
				continue
			}
			copy(mac[:], n.HardwareAddr)
			if mac.IsZero() {
				continue
			}
			k := fdbKey{vni, mac}
			if _, ok := m.fdb[k]; !ok {
				if dst, ok := netipFromIP(n.IP); ok {
					m.fdb[k] = fdbEntry{Remote: dst}
					d.fdb++
				}
			}
		}
	}
	return d, nil
}

// portFlags sets a bridge port's flags: never flood unknown unicast,
// multicast or broadcast; learn only on task-facing ports.
func (m *Manager) portFlags(l netlink.Link, learning bool) error {
	name := l.Attrs().Name
	if err := m.h.LinkSetLearning(l, learning); err != nil {
		return fmt.Errorf("learning %v on %s: %w", learning, name, err)
	}
	if err := m.h.LinkSetFlood(l, false); err != nil {
		return fmt.Errorf("flood off on %s: %w", name, err)
	}
	idx := l.Attrs().Index
	return m.do(func() error {
		for _, a := range []int{nl.IFLA_BRPORT_MCAST_FLOOD, nl.IFLA_BRPORT_BCAST_FLOOD} {
			req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
			msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
			msg.Index = int32(idx)
			req.AddData(msg)
			pi := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
			pi.AddRtAttr(a, []byte{0})
			req.AddData(pi)
			if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
				return fmt.Errorf("bridge port flag %d off on %s: %w", a, name, err)
			}
		}
		return nil
	})
}

// gcVNIs removes the devices of tenants with no ports and no entries left.
func (m *Manager) gcVNIs() []error {
	var errs []error
	for vni, d := range m.vnis {
		if d.ports > 0 || d.fdb > 0 || d.neigh > 0 {
			continue
		}
		for _, l := range []netlink.Link{d.vx, d.br} {
			if err := ignoreNotFound(m.h.LinkDel(l)); err != nil {
				m.failed()
				errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			}
		}
		delete(m.vnis, vni)
	}
	return errs
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
