//go:build linux

package ndemu_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator/ndemu"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The topology: one NVE namespace with ports p1..p3 (gateway MAC, fe80::1,
// forwarding on, routes to each task's SIR address), and task namespaces
// t1..t3 whose eth0 is the other end. Tasks get only their SIR address
// (/128): the on-link prefix and the default route must come from the
// emulator's Router Advertisements.
var (
	sirPrefix = netip.MustParsePrefix("3333:0:0:1::/64")
	addr1     = netip.MustParseAddr("3333:0:0:1::a1")
	addr2     = netip.MustParseAddr("3333:0:0:1::a2")
	addr3     = netip.MustParseAddr("3333:0:0:1::a3")
	addrFar   = netip.MustParseAddr("3333:0:0:1::b9") // a task on another NVE
	addrDead  = netip.MustParseAddr("3333:0:0:1::dead")
)

type task struct {
	ns   *testutil.NetNS
	port string // NVE end
	idx  int    // ifindex of the NVE end
	mac  net.HardwareAddr
	h    *netlink.Handle
	eth0 netlink.Link
}

// dir is the Directory fake: the emulator's input.
type dir struct {
	mu sync.Mutex
	m  map[netip.Addr]ndemu.Owner
}

func (d *dir) Owner(a netip.Addr) (ndemu.Owner, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.m[a]
	return o, ok
}

type event struct {
	Kind    string
	Ifindex int
	Addr    netip.Addr
	MAC     string
	Reason  string
}

type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) UnsolicitedNA(_ context.Context, ifindex int, addr netip.Addr, mac net.HardwareAddr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{Kind: "claim", Ifindex: ifindex, Addr: addr, MAC: mac.String()})
}

func (r *recorder) Spoofed(ifindex int, addr netip.Addr, mac net.HardwareAddr, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{Kind: "spoofed", Ifindex: ifindex, Addr: addr, MAC: mac.String(), Reason: reason})
}

func (r *recorder) UnknownTarget(_ context.Context, ifindex int, addr netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{Kind: "miss", Ifindex: ifindex, Addr: addr})
}

var _ ndemu.MissReporter = (*recorder)(nil)

func (r *recorder) take() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

func sysctl(t testing.TB, ns *testutil.NetNS, key, val string) {
	t.Helper()
	if err := ns.Sysctl(key, val); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, val, ns.Name, err)
	}
}

func run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// waitFor polls cond until it returns "" or the timeout ends.
func waitFor(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setup builds the topology and starts an emulator on the NVE ends.
func setup(t testing.TB, d *dir, ev ndemu.Events) (nve *testutil.NetNS, tasks []*task, em *ndemu.Emulator) {
	t.Helper()
	sfx := testutil.Suffix()
	nve = testutil.NewNetNS(t, "ndn"+sfx)
	nh := nve.Handle(t)
	sysctl(t, nve, "net/ipv6/conf/all/forwarding", "1")
	for i, a := range []netip.Addr{addr1, addr2, addr3} {
		ns := testutil.NewNetNS(t, fmt.Sprintf("ndt%d%s", i+1, sfx))
		tk := &task{ns: ns, port: fmt.Sprintf("p%d", i+1), h: ns.Handle(t)}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: tk.port, HardwareAddr: gatewayHW()},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(ns.Fd()),
		}
		if err := nh.LinkAdd(veth); err != nil {
			testutil.SkipIfPermission(t, "add veth", err)
		}
		pl, err := nh.LinkByName(tk.port)
		if err != nil {
			t.Fatal(err)
		}
		tk.idx = pl.Attrs().Index
		if tk.eth0, err = tk.h.LinkByName("eth0"); err != nil {
			t.Fatal(err)
		}
		tk.mac = tk.eth0.Attrs().HardwareAddr
		// Port setup as the agent does it (see the package doc).
		sysctl(t, nve, "net/ipv6/conf/"+tk.port+"/addr_gen_mode", "1")
		sysctl(t, nve, "net/ipv6/conf/"+tk.port+"/accept_ra", "0")
		if err := nh.AddrAdd(pl, &netlink.Addr{IPNet: ipnet(ila.GatewayLinkLocal(), 64), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatal(err)
		}
		if err := nh.LinkSetUp(pl); err != nil {
			t.Fatal(err)
		}
		if err := nh.RouteAdd(&netlink.Route{LinkIndex: tk.idx, Dst: ipnet(a, 128)}); err != nil {
			t.Fatal(err)
		}
		// The task: defaults, except faster ND timers to keep the test short.
		sysctl(t, ns, "net/ipv6/neigh/eth0/retrans_time_ms", "100")
		sysctl(t, ns, "net/ipv6/conf/eth0/router_solicitation_delay", "0")
		if i < 2 { // t3 gets its addresses in the DAD test
			if err := tk.h.AddrAdd(tk.eth0, &netlink.Addr{IPNet: ipnet(a, 128), Flags: unix.IFA_F_NODAD}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tk.h.LinkSetUp(tk.eth0); err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, tk)
	}
	d.mu.Lock()
	d.m = map[netip.Addr]ndemu.Owner{
		addr1:   {Local: true, Ifindex: tasks[0].idx, NVE: "nve-a"},
		addr2:   {Local: true, Ifindex: tasks[1].idx, NVE: "nve-a"},
		addr3:   {Local: true, Ifindex: tasks[2].idx, NVE: "nve-a"},
		addrFar: {NVE: "nve-b", MAC: ila.MAC{2, 0, 0, 0, 0xb, 9}},
	}
	d.mu.Unlock()

	em, err := ndemu.New(ndemu.Config{
		Prefixes:   []netip.Prefix{sirPrefix},
		RAInterval: time.Second,
		// Finite, so that the task's route shows "expires".
		PrefixLifetime: time.Hour,
		NetNS:          nve.Path,
		Directory:      d,
		Events:         ev,
		Logger:         slog.New(slog.NewJSONHandler(testLog, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- em.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for _, tk := range tasks {
		if err := em.AddPort(t.Context(), tk.port); err != nil {
			testutil.SkipIfPermission(t, "add port", err)
		}
	}
	return nve, tasks, em
}

func ipnet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 128)}
}

var (
	// Linux installs an RA's on-link prefix as "proto kernel"; "expires"
	// (the finite PrefixLifetime) shows it came from the RA.
	reOnLink  = regexp.MustCompile(`(?m)^3333:0:0:1::/64 dev eth0 proto kernel metric \d+ expires `)
	reDefault = regexp.MustCompile(`(?m)^default via fe80::1 dev eth0 proto ra `)
)

func TestIntegrationND(t *testing.T) {
	testutil.Privileged(t)
	testutil.NeedTools(t, "ip", "ping")
	d := &dir{}
	rec := &recorder{}
	nve, tasks, em := setup(t, d, rec)
	t1, t2, t3 := tasks[0], tasks[1], tasks[2]

	t.Run("RouterAdvertisement", func(t *testing.T) {
		for _, tk := range tasks {
			waitFor(t, 10*time.Second, func() string {
				out, err := run(t, "ip", "-n", tk.ns.Name, "-6", "route", "show")
				if err != nil {
					return fmt.Sprintf("ip route: %v: %s", err, out)
				}
				if !reOnLink.MatchString(out) || !reDefault.MatchString(out) {
					return fmt.Sprintf("%s: want the SIR prefix on-link and default via fe80::1 from RA, routes:\n%s", tk.ns.Name, out)
				}
				return ""
			})
		}
		if st := em.Stats(); st.RASent < 3 || st.Ports != 3 {
			t.Errorf("stats %+v: want >= 3 RAs sent on 3 ports", st)
		}
	})

	t.Run("PingResolvesThroughEmulator", func(t *testing.T) {
		before := em.Stats()
		out, err := run(t, "ip", "netns", "exec", t1.ns.Name, "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", addr2.String())
		if err != nil {
			t.Fatalf("ping %s from t1: %v\n%s", addr2, err, out)
		}
		for _, c := range []struct {
			tk   *task
			peer netip.Addr
		}{{t1, addr2}, {t2, addr1}} {
			out, err := run(t, "ip", "-n", c.tk.ns.Name, "-6", "neigh", "show", c.peer.String())
			if err != nil {
				t.Fatalf("ip neigh: %v: %s", err, out)
			}
			if !regexp.MustCompile(`lladdr 02:1a:00:00:00:01 (router )?(REACHABLE|STALE|DELAY|PROBE)`).MatchString(out) {
				t.Errorf("%s: neighbour %s = %q, want the gateway MAC, learnt dynamically", c.tk.ns.Name, c.peer, out)
			}
			out, _ = run(t, "ip", "-n", c.tk.ns.Name, "-6", "neigh", "show", "nud", "permanent")
			if strings.TrimSpace(out) != "" {
				t.Errorf("%s has static neighbour entries: %s", c.tk.ns.Name, out)
			}
		}
		after := em.Stats()
		if after.NSReceived <= before.NSReceived || after.NASent <= before.NASent {
			t.Errorf("stats before %+v after %+v: want NS received and NA sent", before, after)
		}
	})

	t.Run("UnknownTargetSilent", func(t *testing.T) {
		rec.take()
		before := em.Stats()
		atPort := startCapture(t, nve, t1.port) // positive control: the NS arrive
		atT1 := startCapture(t, t1.ns, "eth0")
		atT2 := startCapture(t, t2.ns, "eth0")
		atT3 := startCapture(t, t3.ns, "eth0")
		out, err := run(t, "ip", "netns", "exec", t1.ns.Name, "ping", "-6", "-n", "-c", "1", "-W", "1", addrDead.String())
		if err == nil {
			t.Fatalf("ping to unknown %s answered:\n%s", addrDead, out)
		}
		waitFor(t, 5*time.Second, func() string {
			out, _ := run(t, "ip", "-n", t1.ns.Name, "-6", "neigh", "show", addrDead.String())
			if !strings.Contains(out, "FAILED") {
				return "t1 neighbour entry for " + addrDead.String() + " not FAILED: " + out
			}
			return ""
		})
		time.Sleep(200 * time.Millisecond)
		port := atPort.stop()
		if port.ns[addrDead] == 0 {
			t.Fatalf("control: no NS for %s seen at the NVE port (%+v)", addrDead, port)
		}
		if got := atT1.stop(); got.na[addrDead] != 0 {
			t.Errorf("t1 received %d NAs for unknown %s", got.na[addrDead], addrDead)
		}
		for _, c := range []*capture{atT2, atT3} {
			if got := c.stop(); got.ns[addrDead]+got.na[addrDead] != 0 {
				t.Errorf("%s saw ND traffic for %s (flooded): %+v", c.where, addrDead, got)
			}
		}
		after := em.Stats()
		if after.UnknownIgnored-before.UnknownIgnored < uint64(port.ns[addrDead]) {
			t.Errorf("unknown ignored %d -> %d, want +%d", before.UnknownIgnored, after.UnknownIgnored, port.ns[addrDead])
		}
		// The miss was reported once (damped), for the agent to fetch.
		var misses []event
		for _, e := range rec.take() {
			if e.Kind == "miss" {
				misses = append(misses, e)
			}
		}
		if diff := cmp.Diff([]event{{Kind: "miss", Ifindex: t1.idx, Addr: addrDead}}, misses, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("miss reports (-want +got):\n%s", diff)
		}
	})

	t.Run("DAD", func(t *testing.T) {
		before := em.Stats()
		// addr2 belongs to t2: t3's DAD must fail. addr3 is t3's own: it
		// must succeed.
		for _, a := range []netip.Addr{addr2, addr3} {
			if err := t3.h.AddrAdd(t3.eth0, &netlink.Addr{IPNet: ipnet(a, 128)}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, func() string {
			addrs, err := t3.h.AddrList(t3.eth0, netlink.FAMILY_V6)
			if err != nil {
				return err.Error()
			}
			state := map[netip.Addr]int{}
			for _, a := range addrs {
				ip, _ := netip.AddrFromSlice(a.IP)
				state[ip] = a.Flags
			}
			f2, ok2 := state[addr2]
			f3, ok3 := state[addr3]
			switch {
			case !ok2 || !ok3:
				return fmt.Sprintf("addresses missing: %v", state)
			case f3&unix.IFA_F_DADFAILED != 0:
				t.Fatalf("t3's own %s failed DAD", addr3)
			case f2&unix.IFA_F_DADFAILED == 0:
				return fmt.Sprintf("%s flags %#x: not dadfailed yet", addr2, f2)
			case f3&unix.IFA_F_TENTATIVE != 0:
				return fmt.Sprintf("%s flags %#x: still tentative", addr3, f3)
			}
			return ""
		})
		if after := em.Stats(); after.DADDefended <= before.DADDefended {
			t.Errorf("DAD defended %d -> %d", before.DADDefended, after.DADDefended)
		}
		out, _ := run(t, "ip", "-n", t3.ns.Name, "-6", "addr", "show", "dev", "eth0")
		if !regexp.MustCompile(`inet6 3333:0:0:1::a2/128 scope global tentative dadfailed`).MatchString(out) &&
			!regexp.MustCompile(`inet6 3333:0:0:1::a2/128 scope global dadfailed tentative`).MatchString(out) {
			t.Errorf("ip addr in t3 does not show %s dadfailed:\n%s", addr2, out)
		}
		// Drop the failed address so it does not disturb the rest.
		if err := t3.h.AddrDel(t3.eth0, &netlink.Addr{IPNet: ipnet(addr2, 128)}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("UnsolicitedNA", func(t *testing.T) {
		rec.take()
		before := em.Stats()
		var c *ndp.Conn
		if err := t3.ns.Do(func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
			return err
		}); err != nil {
			t.Fatalf("ndp.Listen in t3: %v", err)
		}
		defer c.Close()
		send := func(target netip.Addr) {
			na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: target,
				Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: t3.mac}}}
			// Inside the namespace: the zone (eth0) is resolved there.
			if err := t3.ns.Do(func() error { return c.WriteTo(na, nil, netip.MustParseAddr("ff02::1")) }); err != nil {
				t.Fatalf("send NA for %s: %v", target, err)
			}
		}
		send(addr2)   // t2's address, another port: spoofed
		send(addrFar) // a task on nve-b: spoofed (moves by NA not allowed)
		send(addr3)   // t3's own: attach signal
		mac := t3.mac.String()
		want := map[event]bool{
			{Kind: "spoofed", Ifindex: t3.idx, Addr: addr2, MAC: mac, Reason: "owned by another port of this NVE"}:     true,
			{Kind: "spoofed", Ifindex: t3.idx, Addr: addrFar, MAC: mac, Reason: "owned by NVE nve-b with another MAC"}: true,
			{Kind: "claim", Ifindex: t3.idx, Addr: addr3, MAC: mac}:                                                    true,
		}
		var got []event
		waitFor(t, 5*time.Second, func() string {
			got = append(got, rec.take()...)
			seen := 0
			for _, e := range got {
				if want[e] {
					seen++
				}
			}
			if seen < len(want) {
				return fmt.Sprintf("events %+v, want %v", got, want)
			}
			return ""
		})
		time.Sleep(300 * time.Millisecond) // anything else would show by now
		got = append(got, rec.take()...)
		for _, e := range got {
			if !want[e] {
				t.Errorf("unexpected event %+v", e)
			}
		}
		// The refusal is logged with the MAC as text (JSON would show a
		// net.HardwareAddr as base64).
		if logs := testLog.String(); !strings.Contains(logs, `"mac":"`+mac+`"`) {
			t.Errorf("log lacks the refused NA's MAC %s as text:\n%s", mac, logs)
		}
		after := em.Stats()
		if after.SpoofedRefused-before.SpoofedRefused < 2 || after.Claims-before.Claims < 1 {
			t.Errorf("stats before %+v after %+v: want 2 spoofed, 1 claim", before, after)
		}
		// The refused claim changed nothing: t1 still reaches t2.
		if out, err := run(t, "ip", "netns", "exec", t1.ns.Name, "ping", "-6", "-n", "-c", "1", "-W", "2", addr2.String()); err != nil {
			t.Errorf("ping %s after spoofed NA: %v\n%s", addr2, err, out)
		}
	})

	t.Run("Ports", func(t *testing.T) {
		if err := em.AddPort(t.Context(), t1.port); err == nil {
			t.Error("AddPort twice: no error")
		}
		if err := em.AddPort(t.Context(), "nosuch0"); err == nil {
			t.Error("AddPort of a missing interface: no error")
		}
		if err := em.RemovePort("nosuch0"); err == nil {
			t.Error("RemovePort of an unserved port: no error")
		}
		if err := em.RemovePort(t3.port); err != nil {
			t.Fatal(err)
		}
		if got := em.Ports(); len(got) != 2 || got[t3.port] != 0 {
			t.Errorf("ports after remove: %v", got)
		}
		// Removed port: a DAD probe there is no longer defended.
		before := em.Stats()
		if err := t3.h.AddrAdd(t3.eth0, &netlink.Addr{IPNet: ipnet(addr1, 128)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() string {
			addrs, _ := t3.h.AddrList(t3.eth0, netlink.FAMILY_V6)
			for _, a := range addrs {
				if a.IP.Equal(addr1.AsSlice()) && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
					return ""
				}
			}
			return fmt.Sprintf("%s on t3 not settled: %v", addr1, addrs)
		})
		if after := em.Stats(); after.DADDefended != before.DADDefended {
			t.Errorf("DAD defended on a removed port: %d -> %d", before.DADDefended, after.DADDefended)
		}
		if err := em.AddPort(t.Context(), t3.port); err != nil {
			t.Fatalf("re-add port: %v", err)
		}
	})

	// Withdrawing the prefix (domain deleted) removes the tasks' on-link
	// route at once; the default route stays.
	t.Run("PrefixWithdrawal", func(t *testing.T) {
		routes := func() string {
			out, err := run(t, "ip", "-n", t1.ns.Name, "-6", "route", "show")
			if err != nil {
				t.Fatalf("ip route: %v: %s", err, out)
			}
			return out
		}
		waitFor(t, 5*time.Second, func() string {
			if out := routes(); !reOnLink.MatchString(out) {
				return "precondition: no on-link route:\n" + out
			}
			return ""
		})
		if err := em.SetPrefixes(nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, func() string {
			if out := routes(); reOnLink.MatchString(out) || !reDefault.MatchString(out) {
				return "want the on-link route gone and the default route kept:\n" + out
			}
			return ""
		})
		if err := em.SetPrefixes([]netip.Prefix{sirPrefix}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, func() string {
			if out := routes(); !reOnLink.MatchString(out) {
				return "on-link route not back:\n" + out
			}
			return ""
		})
	})

	// t3 now holds its own addr3 and addr1 (t1's, accepted while the port
	// was not served). With ndisc_notify its kernel announces both by
	// unsolicited NA when its MAC changes (as after a move): one is an
	// attach signal, the other is refused.
	t.Run("KernelUnsolicitedNA", func(t *testing.T) {
		rec.take()
		sysctl(t, t3.ns, "net/ipv6/conf/eth0/ndisc_notify", "1")
		mac := net.HardwareAddr{0x02, 0, 0, 0, 0x03, 0x33}
		if err := t3.h.LinkSetHardwareAddr(t3.eth0, mac); err != nil {
			t.Fatalf("change t3 MAC: %v", err)
		}
		want := map[event]bool{
			{Kind: "claim", Ifindex: t3.idx, Addr: addr3, MAC: mac.String()}:                                                true,
			{Kind: "spoofed", Ifindex: t3.idx, Addr: addr1, MAC: mac.String(), Reason: "owned by another port of this NVE"}: true,
		}
		var got []event
		waitFor(t, 5*time.Second, func() string {
			got = append(got, rec.take()...)
			seen := map[event]bool{}
			for _, e := range got {
				if !want[e] {
					t.Fatalf("unexpected event %+v", e)
				}
				seen[e] = true
			}
			if len(seen) < len(want) {
				return fmt.Sprintf("events %+v, want %v", got, want)
			}
			return ""
		})
	})
}

// capture counts ND frames seen on one interface, by target address.
type capture struct {
	where string
	fd    int
	done  chan counts
	stopc chan struct{}
}

type counts struct {
	ns, na map[netip.Addr]int
}

func startCapture(t *testing.T, ns *testutil.NetNS, ifname string) *capture {
	t.Helper()
	c := &capture{where: ns.Name + "/" + ifname, done: make(chan counts, 1), stopc: make(chan struct{})}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", c.where, err)
	}
	go func() {
		defer unix.Close(c.fd)
		got := counts{ns: map[netip.Addr]int{}, na: map[netip.Addr]int{}}
		buf := make([]byte, 65536)
		for {
			select {
			case <-c.stopc:
				c.done <- got
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				c.done <- got
				return
			}
			b := buf[:n]
			if n < 14+40+24 || binary.BigEndian.Uint16(b[12:14]) != 0x86dd || b[14+6] != 58 {
				continue
			}
			target := netip.AddrFrom16([16]byte(b[54+8 : 54+24]))
			switch b[54] {
			case 135:
				got.ns[target]++
			case 136:
				got.na[target]++
			}
		}
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *capture) stop() counts {
	select {
	case <-c.stopc:
		return counts{}
	default:
		close(c.stopc)
	}
	return <-c.done
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// gatewayHW is ila.GatewayMAC as a net.HardwareAddr.
func gatewayHW() net.HardwareAddr { m := ila.GatewayMAC(); return m[:] }
