//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

var (
	hostSide = netip.MustParseAddr("fd00:ff:c1::1")
	ctlHost  = netip.MustParseAddr("fd00:ff:c1::2")
)

func hostIfname(lab string) string {
	n := lab + "-h"
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// hostLink joins the host to the control namespace.
func (l *Lab) hostLink(ctl *node) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("host netlink: %w", err)
	}
	defer h.Close()
	ifn := hostIfname(l.cfg.Name)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifn}, PeerName: "host0", PeerNamespace: netlink.NsFd(ctl.ns.Fd())}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("add host link %s: %w", ifn, err)
	}
	if err := ctl.up("host0"); err != nil {
		return err
	}
	if err := ctl.addr("host0", netip.PrefixFrom(ctlHost, 64)); err != nil {
		return err
	}
	link, err := h.LinkByName(ifn)
	if err != nil {
		return fmt.Errorf("host link %s: %w", ifn, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("host link %s up: %w", ifn, err)
	}
	if err := h.AddrReplace(link, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(hostSide, 64)), Flags: 0x02 /* nodad */}); err != nil {
		return fmt.Errorf("host link %s address: %w", ifn, err)
	}
	if err := h.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipnet(ctlNet), Gw: ctlHost.AsSlice()}); err != nil {
		return fmt.Errorf("host route %s: %w", ctlNet, err)
	}
	l.topo.HostLink = &HostLink{Ifname: ifn, Addr: hostSide, Routes: []string{ctlNet.String() + " via " + ctlHost.String()}}
	return nil
}

// removeHostLink deletes the host end of a lab's host link, if any (it
// normally goes with the control namespace).
func removeHostLink(lab string) error {
	link, err := netlink.LinkByName(hostIfname(lab))
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("host link: %w", err)
	}
	if link.Type() != "veth" {
		return nil
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("remove host link %s: %w", link.Attrs().Name, err)
	}
	return nil
}
