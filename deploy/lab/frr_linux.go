//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// FRR's binaries (Debian's frr package) and its run directory: an
// instance started with -N NAME keeps its files in frrRunDir/NAME.
const (
	frrDir    = "/usr/lib/frr"
	frrRunDir = "/run/frr"
)

// removeFRRDirs removes the run directories of lab name's FRR instances.
func removeFRRDirs(name string) error {
	es, err := os.ReadDir(frrRunDir)
	if err != nil {
		return nil // no FRR, or nothing run
	}
	var errs []error
	for _, e := range es {
		if e.IsDir() && strings.HasPrefix(e.Name(), name+"-") {
			if err := os.RemoveAll(filepath.Join(frrRunDir, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("remove FRR dir: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// FRRInstalled reports whether FRR's zebra, bgpd and vtysh are installed.
func FRRInstalled() bool {
	if _, err := exec.LookPath("vtysh"); err != nil {
		return false
	}
	return isExec(filepath.Join(frrDir, "zebra")) && isExec(filepath.Join(frrDir, "bgpd"))
}

// The lab's BGP numbers: one AS per data centre, iBGP between a fabric
// and its hosts (the fabric is their route reflector in effect: the hosts
// need only their default route), eBGP between the data centres.
const (
	fabricASNBase = 65000 // DC d is AS 65000+d
	bgpHold       = 3 * time.Second
	// bgpRestart is the graceful restart time the NVEs offer by default
	// (Config.BGPRestart): a restarting or crashed ilad keeps its locator
	// routed this long, and so does a hung host after the hold time (a
	// dead link withdraws at once). It was 10 s: an ilad down longer made
	// its host's tasks unreachable although its datapath still forwarded
	// (issue 18 weakness 1, as h6-weak found it). mapsrv declares a host
	// that stops answering dead within a second, and moves its tasks
	// away, so a long restart time costs nothing there.
	bgpRestart = 120 * time.Second
)

// fabricLoopback is the fabric's own address (FRR's, on lo) in DC d;
// routerLoopback the ILA router's, which announces the SIR prefix.
func fabricLoopback(d int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0xff, 0, 0xfe, 0, byte(d), 15: 1})
}
func routerLoopback(d int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0xff, 0, 0xfe, 0, byte(d), 15: 2})
}

func (l *Lab) frr() bool { return l.topo.Fabric.Kind == FabricFRR }

// bgpRestart is the graceful restart time the NVEs offer the fabric.
func (l *Lab) bgpRestart() time.Duration {
	if s := l.topo.Fabric.BGPRestartSeconds; s > 0 {
		return time.Duration(s) * time.Second
	}
	return bgpRestart
}

// procFRR names a fabric's FRR daemon in the pid directory.
func procFRR(dc, daemon string) string { return "frr-" + dc + "-" + daemon }

// frrConfig is the FRR configuration of data centre dc (index d).
func (l *Lab) frrConfig(dc *DC, d int) string {
	var b strings.Builder
	asn := dc.ASN
	fmt.Fprintf(&b, "frr defaults datacenter\nhostname %s\nlog stdout informational\n!\n", dc.FabricNetns)
	// The ILA router is in the fabric namespace itself, so FRR refuses
	// the SIR prefix it announces ("martian or self next-hop": the next
	// hop is an address of this namespace); the session still shows the
	// router's state. The other DCs' routers' SIR prefix arrives over
	// eBGP and is kept out of the kernel: here the local router's
	// programs take SIR traffic on the fabric's ports before the kernel
	// routes it.
	// With the routers in namespaces of their own (Config.Routers) the
	// SIR prefix they announce is routed: over each live router (ECMP).
	fmt.Fprintf(&b, "ipv6 prefix-list ila-sir seq 5 permit %s\n!\n", SIRPrefix)
	if len(l.topo.Routers) == 0 {
		b.WriteString("route-map fabric-rib deny 10\n match ipv6 address prefix-list ila-sir\nexit\n!\n")
	}
	b.WriteString("route-map fabric-rib permit 20\nexit\n!\n")
	// Route-map changes take effect at once: with the default delay
	// (5 s) bgpd applied the table-map above once more 5 s after its
	// start, and zebra installed every route again, a delete then an
	// add each (IPv6 without kernel nexthop groups): the lab was up by
	// then, and a packet in that gap found no route (one ping lost at the
	// start of some e2e and chaos runs).
	b.WriteString("bgp route-map delay-timer 0\n!\n")
	hold := int(bgpHold / time.Second)
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id 10.255.%d.1\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n bgp graceful-restart\n timers bgp %d %d\n", asn, d, hold/3, hold)
	var peers []string
	for _, n := range l.topo.NVEs {
		if n.DC != dc.Name {
			continue
		}
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s description %s\n", n.Underlay, asn, n.Underlay, n.Name)
		peers = append(peers, n.Underlay.String())
	}
	if len(l.topo.Routers) == 0 {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s description ila-router\n neighbor %s update-source %s\n",
			routerLoopback(d), asn, routerLoopback(d), routerLoopback(d), fabricLoopback(d))
		peers = append(peers, routerLoopback(d).String())
	}
	for _, r := range l.topo.Routers {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s description %s\n", r.Addr, asn, r.Addr, r.Name)
		peers = append(peers, r.Addr.String())
	}
	for _, x := range l.dcLinks(dc.Name) {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s description %s\n", x.peer, x.peerASN, x.peer, x.peerDC)
		peers = append(peers, x.peer.String())
	}
	for _, p := range peers {
		fmt.Fprintf(&b, " neighbor %s timers %d %d\n neighbor %s timers connect 1\n", p, hold/3, hold, p)
	}
	b.WriteString(" address-family ipv6 unicast\n")
	for _, p := range peers {
		fmt.Fprintf(&b, "  neighbor %s activate\n", p)
	}
	if len(l.topo.Routers) > 0 {
		// Anycast: the same SIR prefix from every router, all used.
		b.WriteString("  maximum-paths ibgp 8\n")
	}
	b.WriteString("  table-map fabric-rib\n exit-address-family\n!\n")
	return b.String()
}

// dcLink is one end of a DC interconnect as the fabric of one DC sees it.
type dcLink struct {
	peer    netip.Addr
	peerASN uint32
	peerDC  string
}

// startFRR starts zebra and bgpd in every fabric namespace, each instance
// in its own path space (-N <fabric namespace>): its configuration, pid
// files and sockets are in /run/frr/<fabric namespace> (FRR's place for
// -N, so `vtysh -N <fabric namespace>` reaches it; the daemons run as user
// frr, which may not reach the lab's state dir), its logs in the lab's
// logs/. Lab names keep the instances of labs side by side apart; Down
// removes the directories.
func (l *Lab) startFRR(ctx context.Context) error {
	if !FRRInstalled() {
		return fmt.Errorf("%w: FRR (apt install frr: %s/zebra, %s/bgpd, vtysh); or use --fabric static", ErrMissing, frrDir, frrDir)
	}
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("%w: FRR's user frr: %v", ErrMissing, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := l.buildDCI(); err != nil {
		return err
	}
	for i := range l.topo.Fabric.DCs {
		dc := &l.topo.Fabric.DCs[i]
		d := i + 1
		fab, err := l.node(dc.FabricNetns)
		if err != nil {
			return err
		}
		if err := fab.addr("lo", netip.PrefixFrom(fabricLoopback(d), 128)); err != nil {
			return err
		}
		if err := fab.addr("lo", netip.PrefixFrom(routerLoopback(d), 128)); err != nil {
			return err
		}
		if err := os.MkdirAll(dc.FRRDir, 0o755); err != nil {
			return fmt.Errorf("frr dir: %w", err)
		}
		conf := filepath.Join(dc.FRRDir, "frr.conf")
		if err := os.WriteFile(conf, []byte(l.frrConfig(dc, d)), 0o644); err != nil {
			return fmt.Errorf("frr config: %w", err)
		}
		// The daemons drop to user frr: it writes the pid files, sockets
		// and log here.
		if err := os.Chown(dc.FRRDir, uid, gid); err != nil {
			return fmt.Errorf("frr dir: %w", err)
		}
		_ = os.Chown(conf, uid, gid)
		l.progress("starting FRR (zebra, bgpd) in %s, AS %d", dc.FabricNetns, dc.ASN)
		common := []string{"-N", dc.FabricNetns, "-u", "frr", "-g", "frr", "--log", "stdout"}
		zconf, err := l.zebraConfig(dc, uid, gid)
		if err != nil {
			return err
		}
		if _, err := l.start(procFRR(dc.Name, "zebra"), fab.ns, filepath.Join(frrDir, "zebra"),
			append(common, "-f", zconf)...); err != nil {
			return err
		}
		if err := waitFile(ctx, filepath.Join(dc.FRRDir, "zserv.api"), 10*time.Second); err != nil {
			return fmt.Errorf("zebra in %s: %w (log %s)", dc.FabricNetns, err, l.procs[procFRR(dc.Name, "zebra")].Log)
		}
		if _, err := l.start(procFRR(dc.Name, "bgpd"), fab.ns, filepath.Join(frrDir, "bgpd"),
			append(common, "-f", conf)...); err != nil {
			return err
		}
		if err := waitFile(ctx, filepath.Join(dc.FRRDir, "bgpd.vty"), 10*time.Second); err != nil {
			return fmt.Errorf("bgpd in %s: %w (log %s)", dc.FabricNetns, err, l.procs[procFRR(dc.Name, "bgpd")].Log)
		}
	}
	return nil
}

// zebraConfig writes zebra's configuration of data centre dc and returns
// its path. zebra installs routes without kernel nexthop groups: when a
// port goes down the kernel removes the nexthops through it, and zebra 8.4
// does not always put them back when the port returns. With the routers in
// namespaces of their own the SIR prefix's ECMP route kept one path; with
// the underlay ports keeping their addresses across a flap (an NVE's
// locator route is not withdrawn by BGP then), the locator route of a
// flapped NVE was sometimes never installed again ("Failed to enqueue
// dataplane install" in zebra's log, TestFabricFRR under load).
func (l *Lab) zebraConfig(dc *DC, uid, gid int) (string, error) {
	p := filepath.Join(dc.FRRDir, "zebra.conf")
	if err := os.WriteFile(p, []byte("no zebra nexthop kernel enable\n"), 0o644); err != nil {
		return "", fmt.Errorf("zebra config: %w", err)
	}
	_ = os.Chown(p, uid, gid)
	return p, nil
}

func waitFile(ctx context.Context, path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear in %v", path, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Vtysh runs one vtysh command on data centre dc's FRR (dc "" is the
// first) and returns its output.
func (l *Lab) Vtysh(ctx context.Context, dc, command string) (string, error) {
	if !l.frr() {
		return "", fmt.Errorf("lab %s: the fabric is %s, not frr", l.cfg.Name, l.topo.Fabric.Kind)
	}
	d := &l.topo.Fabric.DCs[0]
	for i := range l.topo.Fabric.DCs {
		if l.topo.Fabric.DCs[i].Name == dc {
			d = &l.topo.Fabric.DCs[i]
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "vtysh", "-N", d.FabricNetns, "-c", command).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -c %q on %s: %w: %s", command, d.FabricNetns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// bgpArgs are the -bgp-* flags of NVE n's ilad with an FRR fabric: iBGP
// to its fabric, short timers (a dead host's locator goes in 3s).
func (l *Lab) bgpArgs(n *NVE) []string {
	if !l.frr() {
		return nil
	}
	d := l.dcIndex(n.DC)
	return []string{
		"--bgp-asn", strconv.Itoa(fabricASNBase + d),
		"--bgp-router-id", fmt.Sprintf("10.255.%d.%d", d, 10+n.Index),
		"--bgp-peer", fmt.Sprintf("%d@%s", fabricASNBase+d, fabricSide(n.Index)),
		"--bgp-hold-time", bgpHold.String(),
		"--bgp-restart-time", l.bgpRestart().String(),
		"--bgp-next-hop", n.Underlay.String(),
	}
}

// routerBGPArgs are the ILA router's: it announces the SIR prefix from
// its loopback address to the FRR beside it.
func (l *Lab) routerBGPArgs(d int) []string {
	if !l.frr() {
		return nil
	}
	return []string{
		"--bgp-asn", strconv.Itoa(fabricASNBase + d),
		"--bgp-router-id", fmt.Sprintf("10.255.%d.2", d),
		"--bgp-peer", fmt.Sprintf("%d@%s", fabricASNBase+d, fabricLoopback(d)),
		"--bgp-local-address", routerLoopback(d).String(),
		"--bgp-hold-time", bgpHold.String(),
		"--bgp-next-hop", routerLoopback(d).String(),
	}
}

// dcIndex is the 1-based index of the named DC (1 when unknown).
func (l *Lab) dcIndex(name string) int {
	for i, dc := range l.topo.Fabric.DCs {
		if dc.Name == name {
			return i + 1
		}
	}
	return 1
}

// dcLinks are the interconnect peers of DC name's fabric (none with one
// DC).
func (l *Lab) dcLinks(name string) []dcLink {
	dcs := l.topo.Fabric.DCs
	if len(dcs) < 2 {
		return nil
	}
	var out []dcLink
	for _, dc := range dcs {
		if dc.Name == name {
			continue
		}
		// A hub: DC 1 peers with every DC, the others with DC 1.
		me, other := l.dcIndex(name), l.dcIndex(dc.Name)
		if me != 1 && other != 1 {
			continue
		}
		link := max(me, other)
		out = append(out, dcLink{peer: dciAddr(other, link), peerASN: dc.ASN, peerDC: dc.Name})
	}
	return out
}

// dciAddr is DC d's address on the interconnect link between DC 1 and DC
// link (a /126: fd00:ff:d0:<link>::<d>).
func dciAddr(d, link int) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfd, 0, 0, 0xff, 0, 0xd0, 0, byte(link), 15: byte(d)})
}

// planFabric fills the topology's fabric: its kind (frr by default where
// FRR is installed) and the data centre(s).
func (l *Lab) planFabric() {
	kind := l.cfg.Fabric
	if kind == "" {
		kind = FabricStatic
		if FRRInstalled() {
			kind = FabricFRR
		}
	}
	if l.cfg.UnderlayOnly {
		kind = FabricStatic
	}
	t := l.topo
	t.Fabric = FabricT{Kind: kind, BGPRestartSeconds: int(l.cfg.BGPRestart / time.Second)}
	for d := 1; d <= l.cfg.DCs; d++ {
		dc := DC{Name: fmt.Sprintf("dc%d", d), FabricNetns: t.FabricNetns}
		if d > 1 {
			dc.FabricNetns = l.nsName(fmt.Sprintf("fabric%d", d))
		}
		if kind == FabricFRR {
			dc.ASN = uint32(fabricASNBase + d)
			dc.FRRDir = filepath.Join(frrRunDir, dc.FabricNetns)
			dc.Vtysh = "vtysh -N " + dc.FabricNetns
		}
		t.Fabric.DCs = append(t.Fabric.DCs, dc)
	}
	// NVEs round robin: with 3 NVEs and 2 DCs nve1 and nve3 in dc1, nve2
	// in dc2, so that the demo (t3 from nve3 to nve2) crosses from dc1
	// to dc2.
	for i := range t.NVEs {
		t.NVEs[i].DC = t.Fabric.DCs[i%l.cfg.DCs].Name
	}
}

// fabricOf returns the fabric node of nve's DC, creating the namespace of
// a DC after the first (the first is fab).
func (l *Lab) fabricOf(nve NVE, fab *node, mk func(string) (*node, error)) (*node, error) {
	d := l.dcIndex(nve.DC)
	if d == 1 {
		return fab, nil
	}
	name := l.topo.Fabric.DCs[d-1].FabricNetns
	if n, ok := l.nodes[name]; ok {
		return n, nil
	}
	n, err := mk(name)
	if err != nil {
		return nil, err
	}
	for _, kv := range append([][2]string{
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}, keepAddrSysctls...) {
		if err := n.sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// buildDCI joins the fabrics of DC 2.. to DC 1's with an interconnect
// link each (dci<d> in DC 1, dci1 in DC d). BGP carries the locators over
// it; static routes carry the infrastructure: the control network (in DC
// 1) and the NVE links of the other DCs, so that registrations and move
// notifications cross it.
func (l *Lab) buildDCI() error {
	dcs := l.topo.Fabric.DCs
	if len(dcs) < 2 {
		return nil
	}
	f1, err := l.node(dcs[0].FabricNetns)
	if err != nil {
		return err
	}
	for d := 2; d <= len(dcs); d++ {
		fd, err := l.node(dcs[d-1].FabricNetns)
		if err != nil {
			return err
		}
		if1, ifd := fmt.Sprintf("dci%d", d), "dci1"
		l.progress("joining %s to %s (DC interconnect)", dcs[d-1].FabricNetns, dcs[0].FabricNetns)
		if err := f1.veth(if1, nil, fd, ifd, nil); err != nil {
			return err
		}
		if err := f1.addr(if1, netip.PrefixFrom(dciAddr(1, d), 126)); err != nil {
			return err
		}
		if err := fd.addr(ifd, netip.PrefixFrom(dciAddr(d, d), 126)); err != nil {
			return err
		}
		if err := fd.route(ctlNet, dciAddr(1, d), ifd); err != nil {
			return err
		}
		for _, n := range l.topo.NVEs {
			if l.dcIndex(n.DC) == d {
				if err := f1.route(underlayNet(n.Index), dciAddr(d, d), if1); err != nil {
					return err
				}
			} else if l.dcIndex(n.DC) == 1 {
				if err := fd.route(underlayNet(n.Index), dciAddr(1, d), ifd); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// startDCRouters starts the ILA router of every DC after the first (the
// first is started with the control plane): ilad -role router in the DC's
// fabric, on its NVEs' ports.
func (l *Lab) startDCRouters(ctx context.Context) error {
	for d := 2; d <= len(l.topo.Fabric.DCs); d++ {
		dc := &l.topo.Fabric.DCs[d-1]
		fab, err := l.node(dc.FabricNetns)
		if err != nil {
			return err
		}
		var ports []string
		for _, n := range l.topo.NVEs {
			if n.DC == dc.Name {
				ports = append(ports, n.Name)
			}
		}
		who := "router-" + dc.Name
		l.progress("starting the ILA router of %s in %s", dc.Name, dc.FabricNetns)
		args := append([]string{
			"--role", "router",
			"--node", who,
			"--ports", strings.Join(ports, ","),
			"--netns", filepath.Join("/var/run/netns", dc.FabricNetns),
			"--etcd", strings.Join(l.topo.Etcd.Endpoints, ","),
			"--bpffs", filepath.Join(l.pinRoot(), who),
			"--metrics", routerMetrics,
			"--api", l.iladSock(who), // read-only: ilactl where
			"--events", l.eventsPath(who),
			"--log-format", "json",
		}, l.routerBGPArgs(d)...)
		args = append(args, l.etcdAuth(etcdIlad, "--etcd-user", "--etcd-password-file")...)
		p, err := l.start(who, fab.ns, l.bins[BinIlad], args...)
		if err != nil {
			return err
		}
		dc.RouterPID = p.PID
	}
	return l.save()
}

// rtprotBGP is the kernel route protocol zebra installs BGP routes with.
const rtprotBGP = 186

// FabricRoutes lists the BGP routes in the kernel of DC dc's fabric (""
// is the first): what `ip -6 route show proto bgp` shows there.
func (l *Lab) FabricRoutes(dc string) (map[netip.Prefix]netip.Addr, error) {
	d := &l.topo.Fabric.DCs[0]
	for i := range l.topo.Fabric.DCs {
		if l.topo.Fabric.DCs[i].Name == dc {
			d = &l.topo.Fabric.DCs[i]
		}
	}
	n, err := l.node(d.FabricNetns)
	if err != nil {
		return nil, err
	}
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Protocol: rtprotBGP}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", d.FabricNetns, err)
	}
	out := map[netip.Prefix]netip.Addr{}
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		var gw netip.Addr
		if r.Gw != nil {
			gw, _ = netip.AddrFromSlice(r.Gw)
		}
		for _, nh := range r.MultiPath {
			if nh.Gw != nil && !gw.IsValid() {
				gw, _ = netip.AddrFromSlice(nh.Gw)
			}
		}
		out[netip.PrefixFrom(ip.Unmap(), ones)] = gw.Unmap()
	}
	return out, nil
}

// waitFabricRoutes waits until every fabric's kernel routes every NVE's
// locator (learnt over BGP): the lab is up when traffic can flow.
func (l *Lab) waitFabricRoutes(ctx context.Context) error {
	if !l.frr() {
		return nil
	}
	l.progress("waiting for FRR to learn every locator")
	deadline := time.Now().Add(30 * time.Second)
	for {
		var missing []string
		for _, dc := range l.topo.Fabric.DCs {
			got, err := l.FabricRoutes(dc.Name)
			if err != nil {
				return err
			}
			for _, n := range l.topo.NVEs {
				if _, ok := got[n.Locator.Prefix()]; !ok {
					missing = append(missing, n.Locator.Prefix().String()+" in "+dc.FabricNetns)
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fabric: no BGP route for %s after 30s (see %s)", strings.Join(missing, ", "), filepath.Join(l.dir, "logs"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SetUplink takes NVE nve's fabric link down or up (from the NVE's side;
// the fabric's port loses its carrier): a host that dies or loses its
// link, as the fabric sees it. Up restores the NVE's default route.
func (l *Lab) SetUplink(nve string, up bool) error {
	n, err := l.topo.NVEByName(nve)
	if err != nil {
		return err
	}
	nn, err := l.node(n.Netns)
	if err != nil {
		return err
	}
	link, err := nn.link("up0")
	if err != nil {
		return err
	}
	if !up {
		if err := nn.sysctl("net.ipv6.conf.up0.keep_addr_on_down", "1"); err != nil {
			return err
		}
		if err := nn.h.LinkSetDown(link); err != nil {
			return fmt.Errorf("uplink of %s down: %w", nve, err)
		}
		return nil
	}
	if err := nn.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("uplink of %s up: %w", nve, err)
	}
	return nn.route(netip.MustParsePrefix("::/0"), fabricSide(n.Index), "up0")
}
