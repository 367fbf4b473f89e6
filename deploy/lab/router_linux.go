//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/ila/datapath"
)

// The lab's ILA routers (ilad -role router). Either one router inside the
// fabric namespace, its programs on the fabric's ports (Config.Routers 0,
// the default), or Config.Routers routers each in a namespace of its own
// (<name>-rtr<i>) joined to the fabric by a link, each announcing the SIR
// prefix over BGP to the fabric's FRR: anycast, the fabric routes the SIR
// prefix over every live router (ECMP). `ilalab fail|recover router`.

// FailRouter names the lab's ILA router for Fail and Recover (with
// several routers: router1, router2, ...).
const FailRouter = "router"

// routerLinkNet is router i's link to the fabric: fd00:ff:e0:<i>::/64,
// the fabric ::1, the router ::2.
func routerLinkAddr(i, host int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0xff, 0, 0xe0, 0, byte(i), 15: byte(host)})
}

// planRouters adds the routers of Config.Routers to the topology.
func (l *Lab) planRouters() error {
	if l.cfg.Routers > 0 && !l.frr() {
		return fmt.Errorf("routers %d: the routers announce the SIR prefix over BGP: needs an FRR fabric (apt install frr), not %s", l.cfg.Routers, l.topo.Fabric.Kind)
	}
	for i := 1; i <= l.cfg.Routers; i++ {
		name := fmt.Sprintf("router%d", i)
		l.topo.Routers = append(l.topo.Routers, RouterNS{
			Name: name, Netns: l.nsName(fmt.Sprintf("rtr%d", i)), FabricIf: fmt.Sprintf("rtr%d", i),
			Addr: routerLinkAddr(i, 2), FabricSide: routerLinkAddr(i, 1),
			PinPath: filepath.Join(l.pinRoot(), name), Metrics: routerMetrics,
		})
	}
	if len(l.topo.Routers) > 0 {
		l.topo.Router = Router{Netns: l.topo.Routers[0].Netns, Mode: fmt.Sprintf("%d ila-r full table (ilad -role router), each in its namespace, anycast SIR prefix over BGP", len(l.topo.Routers))}
	}
	return nil
}

// routerByName returns the router namespace named name ("router" is the
// only one).
func (t *Topology) routerByName(name string) (*RouterNS, error) {
	if name == FailRouter && len(t.Routers) == 1 {
		return &t.Routers[0], nil
	}
	var names []string
	for i := range t.Routers {
		if t.Routers[i].Name == name {
			return &t.Routers[i], nil
		}
		names = append(names, t.Routers[i].Name)
	}
	return nil, fmt.Errorf("router %s: not in the lab (routers: %s)", name, strings.Join(names, ", "))
}

// isRouter says whether what names one of the lab's ILA routers.
func (t *Topology) isRouter(what string) bool {
	if what == FailRouter {
		return true
	}
	_, err := t.routerByName(what)
	return err == nil && len(t.Routers) > 0
}

// startRouters starts the ILA router(s) of the first DC.
func (l *Lab) startRouters(ctx context.Context) error {
	if len(l.topo.Routers) == 0 {
		return l.startRouter(ctx)
	}
	for i := range l.topo.Routers {
		r := &l.topo.Routers[i]
		if err := l.buildRouterNS(r); err != nil {
			return err
		}
		if err := l.startRouterNS(ctx, r); err != nil {
			return err
		}
	}
	return l.save()
}

// startRouter starts (or restarts) the ILA router inside the fabric
// namespace, on the fabric's ports.
func (l *Lab) startRouter(ctx context.Context) error {
	t := l.topo
	l.progress("starting the ILA router (ilad -role router) in %s", t.FabricNetns)
	fab, err := l.node(t.FabricNetns)
	if err != nil {
		return err
	}
	t.Router.PinPath = filepath.Join(l.pinRoot(), "router")
	t.Router.Metrics = routerMetrics
	_ = os.Remove(l.iladSock(procRouter)) // left by a killed router
	p, err := l.start(procRouter, fab.ns, l.bins[BinIlad], l.routerArgs()...)
	if err != nil {
		return err
	}
	t.Router.PID = p.PID
	t.Router.Mode = "ila-r full table (ilad -role router) on " + strings.Join(l.routerPorts(), ",")
	return l.waitMetrics(ctx, procRouter, t.FabricNetns, routerMetrics)
}

// buildRouterNS creates router r's namespace and its link to the fabric.
func (l *Lab) buildRouterNS(r *RouterNS) error {
	fab, err := l.node(l.topo.FabricNetns)
	if err != nil {
		return err
	}
	l.progress("building %s (%s)", r.Name, r.Netns)
	rn, err := newNode(r.Netns)
	if err != nil {
		return err
	}
	l.nodes[r.Netns] = rn
	for _, kv := range [][2]string{
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	} {
		if err := rn.sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := fab.veth(r.FabricIf, nil, rn, "fab0", nil); err != nil {
		return err
	}
	return l.routerAddrs(r, fab, rn)
}

// routerAddrs puts the addresses of router r's link and its default route
// (the kernel drops them when the link goes down).
func (l *Lab) routerAddrs(r *RouterNS, fab, rn *node) error {
	if err := fab.addr(r.FabricIf, netip.PrefixFrom(r.FabricSide, 64)); err != nil {
		return err
	}
	if err := rn.addr("fab0", netip.PrefixFrom(r.Addr, 64)); err != nil {
		return err
	}
	return rn.route(netip.MustParsePrefix("::/0"), r.FabricSide, "fab0")
}

// startRouterNS starts (or restarts) router r's ilad in its namespace:
// its programs on its fabric link, its BGP speaker announcing the SIR
// prefix to the fabric's FRR.
func (l *Lab) startRouterNS(ctx context.Context, r *RouterNS) error {
	rn, err := l.node(r.Netns)
	if err != nil {
		return err
	}
	l.progress("starting %s (ilad -role router) in %s", r.Name, r.Netns)
	d := 1
	args := append(l.etcdAuth(etcdIlad, "--etcd-user", "--etcd-password-file"),
		"--role", "router",
		"--node", r.Name,
		"--ports", "fab0",
		"--netns", filepath.Join("/var/run/netns", r.Netns),
		"--etcd", strings.Join(l.topo.Etcd.Endpoints, ","),
		"--bpffs", r.PinPath,
		"--metrics", r.Metrics,
		"--api", l.iladSock(r.Name), // read-only: ilactl where
		"--events", l.eventsPath(r.Name),
		"--log-format", "json",
		"--bgp-asn", strconv.Itoa(fabricASNBase+d),
		"--bgp-router-id", fmt.Sprintf("10.255.%d.%d", d, 200+routerIndex(r.Name)),
		"--bgp-peer", fmt.Sprintf("%d@%s", fabricASNBase+d, r.FabricSide),
		"--bgp-local-address", r.Addr.String(),
		"--bgp-hold-time", bgpHold.String(),
		"--bgp-next-hop", r.Addr.String(),
	)
	_ = os.Remove(l.iladSock(r.Name))
	p, err := l.start(r.Name, rn.ns, l.bins[BinIlad], args...)
	if err != nil {
		return err
	}
	r.PID = p.PID
	return l.waitMetrics(ctx, r.Name, r.Netns, r.Metrics)
}

// routerEvents names the router whose events file the demos read: the
// router, or the first of several.
func (l *Lab) routerEvents() string {
	if len(l.topo.Routers) > 0 {
		return l.topo.Routers[0].Name
	}
	return procRouter
}

func routerIndex(name string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(name, "router"))
	return i
}

// waitMetrics waits until the daemon proc serves its metrics inside
// namespace nsName (it has attached its programs by then).
func (l *Lab) waitMetrics(ctx context.Context, proc, nsName, addr string) error {
	n, err := l.node(nsName)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		_ = n.ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				ok = true
			}
			return nil
		})
		if ok {
			return nil
		}
		if p := l.procs[proc]; p != nil && p.exited() {
			return fmt.Errorf("%s exited during start; see %s", proc, p.Log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: metrics %s not answering after 20s (log %s)", proc, addr, l.procs[proc].Log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// failRouter makes an ILA router die. In its own namespace: its ilad
// killed and its link down on both ends (the fabric's FRR drops its
// route to the SIR prefix when the link goes, or at the BGP hold time).
// Inside the fabric namespace: its ilad killed and its programs with it
// (the pinned links and maps removed: a dead router host forwards
// nothing); the fabric's own routing goes on.
func (l *Lab) failRouter(what string) error {
	if len(l.topo.Routers) == 0 {
		if what != FailRouter {
			return fmt.Errorf("fail %s: the lab has one router, %q", what, FailRouter)
		}
		if l.topo.Router.Failed {
			return fmt.Errorf("fail router: already failed (ilalab recover router)")
		}
		l.progress("failing the ILA router: kill ilad, remove its programs")
		if err := l.Kill(procRouter); err != nil {
			return err
		}
		if err := removeRouterDatapath(l.topo.Router.PinPath, filepath.Join("/var/run/netns", l.topo.FabricNetns), l.routerPorts()); err != nil {
			return fmt.Errorf("fail router: remove its programs: %w", err)
		}
		l.topo.Router.Failed = true
		return l.save()
	}
	r, err := l.topo.routerByName(what)
	if err != nil {
		return err
	}
	if r.Failed {
		return fmt.Errorf("fail %s: already failed (ilalab recover %s)", r.Name, r.Name)
	}
	l.progress("failing %s: kill ilad, link down", r.Name)
	if err := l.Kill(r.Name); err != nil {
		return err
	}
	if err := l.routerLink(r, false); err != nil {
		return err
	}
	r.Failed = true
	return l.save()
}

// recoverRouter brings back a router failRouter took down.
func (l *Lab) recoverRouter(ctx context.Context, what string) error {
	if len(l.topo.Routers) == 0 {
		if what != FailRouter {
			return fmt.Errorf("recover %s: the lab has one router, %q", what, FailRouter)
		}
		if !l.topo.Router.Failed {
			return fmt.Errorf("recover router: it has not failed")
		}
		if err := l.startRouter(ctx); err != nil {
			return err
		}
		l.topo.Router.Failed = false
		return l.save()
	}
	r, err := l.topo.routerByName(what)
	if err != nil {
		return err
	}
	if !r.Failed {
		return fmt.Errorf("recover %s: it has not failed", r.Name)
	}
	l.progress("recovering %s: link up, ilad restarted", r.Name)
	if err := l.routerLink(r, true); err != nil {
		return err
	}
	if err := l.startRouterNS(ctx, r); err != nil {
		return err
	}
	r.Failed = false
	return l.save()
}

// routerLink sets router r's link (both ends) up or down.
func (l *Lab) routerLink(r *RouterNS, up bool) error {
	fab, err := l.node(l.topo.FabricNetns)
	if err != nil {
		return err
	}
	rn, err := l.node(r.Netns)
	if err != nil {
		return err
	}
	if err := setLinkPair(rn, "fab0", fab, r.FabricIf, up); err != nil || !up {
		return err
	}
	return l.routerAddrs(r, fab, rn)
}

// SIRNextHops lists the next hops of the SIR prefix's BGP route in the
// first fabric's kernel: one per live router in its own namespace (ECMP),
// none without.
func (l *Lab) SIRNextHops() ([]netip.Addr, error) {
	fab, err := l.node(l.topo.FabricNetns)
	if err != nil {
		return nil, err
	}
	return fab.bgpNextHops(SIRPrefix)
}

// bgpNextHops lists the next hops of the kernel's BGP route to dst.
func (n *node) bgpNextHops(dst netip.Prefix) ([]netip.Addr, error) {
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Protocol: rtprotBGP, Dst: ipnet(dst)}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_DST)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", n.name(), err)
	}
	var out []netip.Addr
	for _, r := range rs {
		if r.Gw != nil {
			gw, _ := netip.AddrFromSlice(r.Gw)
			out = append(out, gw.Unmap())
		}
		for _, nh := range r.MultiPath {
			if nh.Gw != nil {
				gw, _ := netip.AddrFromSlice(nh.Gw)
				out = append(out, gw.Unmap())
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// removeRouterDatapath removes what a router host's death takes with it:
// the programs on its ports (detached here, at once, rather than by the
// kernel's deferred release of unpinned links) and its pinned maps.
func removeRouterDatapath(pin, nsPath string, ports []string) error {
	dp, err := datapath.Open(datapath.Config{Router: true, PinPath: pin})
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ports {
		if err := dp.Detach(datapath.Attachment{Ifname: p, NetNS: nsPath, Role: datapath.RoleRouter}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := dp.Unpin(); err != nil {
		errs = append(errs, err)
	}
	if err := dp.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(pin); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
