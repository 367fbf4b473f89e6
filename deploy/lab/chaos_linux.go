//go:build linux

package lab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/locator"
)

// fabricNetnsOf is the fabric namespace of n's data centre.
func (l *Lab) fabricNetnsOf(n *NVE) string {
	if d := l.dcIndex(n.DC); d <= len(l.topo.Fabric.DCs) && l.topo.Fabric.DCs[d-1].FabricNetns != "" {
		return l.topo.Fabric.DCs[d-1].FabricNetns
	}
	return l.topo.FabricNetns
}

// FlapLink sets NVE nve's fabric port (the fabric's end of its underlay
// link) down, waits down, and sets it up again, as a switch port that
// flaps: the NVE's end loses its carrier meanwhile. Nothing is restored
// by the lab afterwards: the fabric's routing (FRR) and the daemons must
// recover on their own.
func (l *Lab) FlapLink(ctx context.Context, nve string, down time.Duration) error {
	n, err := l.topo.NVEByName(nve)
	if err != nil {
		return err
	}
	fab, err := l.node(l.fabricNetnsOf(n))
	if err != nil {
		return err
	}
	link, err := fab.link(n.Name)
	if err != nil {
		return err
	}
	if err := fab.h.LinkSetDown(link); err != nil {
		return fmt.Errorf("flap %s: set %s down in %s: %w", nve, n.Name, fab.name(), err)
	}
	t := time.NewTimer(down)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	if err := fab.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("flap %s: set %s up in %s: %w", nve, n.Name, fab.name(), err)
	}
	return ctx.Err()
}

// IladTasks is what NVE nve's ilad says of its local tasks (its local API).
func (l *Lab) IladTasks(ctx context.Context, nve string) ([]locator.TaskStatus, error) {
	if _, err := l.topo.NVEByName(nve); err != nil {
		return nil, err
	}
	c, err := locator.NewClient(l.iladSock(nve))
	if err != nil {
		return nil, err
	}
	ts, err := c.Tasks(ctx)
	if err != nil {
		return nil, fmt.Errorf("tasks of %s: %w", nve, err)
	}
	return ts, nil
}

// FabricPortAddrs lists the IPv6 addresses of the fabric's port to NVE nve.
func (l *Lab) FabricPortAddrs(nve string) ([]netip.Addr, error) {
	n, err := l.topo.NVEByName(nve)
	if err != nil {
		return nil, err
	}
	fab, err := l.node(l.fabricNetnsOf(n))
	if err != nil {
		return nil, err
	}
	link, err := fab.link(n.Name)
	if err != nil {
		return nil, err
	}
	as, err := fab.h.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s in %s: %w", n.Name, fab.name(), err)
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip)
		}
	}
	return out, nil
}
