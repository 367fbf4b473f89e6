//go:build linux

package lab

import (
	"net"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
)

// gatewayLL is the link-local address of the anycast gateway MAC (EUI-64):
// the kernel's own address on every NVE port, used by the plain lab.
var gatewayLL = netip.MustParseAddr("fe80::1a:ff:fe00:1")

// routerLL is the gateway address ilad gives every task port and
// advertises in its router advertisements.
var routerLL = ila.GatewayLinkLocal()

// gatewayMAC is the anycast gateway MAC of every task port.
func gatewayMAC() net.HardwareAddr { m := ila.GatewayMAC(); return m[:] }

// plainRoutes makes the underlay-only lab forward between tasks without ILA:
// each task routes via its NVE's gateway address, each NVE delivers its
// tasks' /128s locally, and the fabric routes each task's SIR /128 to its
// NVE. A move then rewrites the fabric route (see Move). This is the
// baseline the ILA lab is measured against and the fallback for testing the
// lab itself.
func (l *Lab) plainRoutes() error {
	fab, err := l.node(l.topo.FabricNetns)
	if err != nil {
		return err
	}
	for i := range l.topo.Tasks {
		task := &l.topo.Tasks[i]
		nve, err := l.topo.NVEByName(task.NVE)
		if err != nil {
			return err
		}
		nn, err := l.node(nve.Netns)
		if err != nil {
			return err
		}
		tn, err := l.node(task.Netns)
		if err != nil {
			return err
		}
		if err := tn.route(netip.MustParsePrefix("::/0"), gatewayLL, "eth0"); err != nil {
			return err
		}
		if err := l.localRoutes(nn, task); err != nil {
			return err
		}
		if err := fab.route(netip.PrefixFrom(task.SIR, 128), nve.Underlay, nve.Name); err != nil {
			return err
		}
	}
	return nil
}

// plainMove points the fabric's route for task at its new NVE.
func (l *Lab) plainMove(task *Task, to *NVE) error {
	fab, err := l.node(l.topo.FabricNetns)
	if err != nil {
		return err
	}
	return fab.route(netip.PrefixFrom(task.SIR, 128), to.Underlay, to.Name)
}
