//go:build linux

package l2compat

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// lab is the test topology: a fabric namespace routing the underlay /64s of
// two NVE namespaces, each running a Manager, and task namespaces attached
// to the NVEs by veth.
type lab struct {
	t         testing.TB
	sfx       string
	fabric    *testutil.NetNS
	nves      map[string]*labNVE
	tasks     map[string]*labTask
	srv       *fakeMapsrv
	moveStats []moveStat
}

type labNVE struct {
	name     string
	ns       *testutil.NetNS
	h        *netlink.Handle
	underlay netip.Addr
	m        *Manager
	fabIf    string // the fabric's interface toward this NVE
	spoofed  chan Claim
}

type labTask struct {
	name string
	ns   *testutil.NetNS
	vni  uint32
	ip   netip.Addr
	mac  ila.MAC
	nve  string
	port string // NVE-end veth name
	eth  *net.Interface
}

// fakeMapsrv stands in for the mapping authority: it holds the tasks and
// NVEs and feeds every change to every Manager (the agent's watch). On a
// move the new NVE hears first; delay holds back the event for some NVEs (a
// slow watch), applied records when each NVE got the last event.
type fakeMapsrv struct {
	mu       sync.Mutex
	rev      int64
	tasks    map[ila.Identifier]*ila.Task
	names    []string
	byNVE    map[string]*Manager
	inflight time.Duration
	claims   chan Claim
	moved    chan time.Time
	delay    map[string]time.Duration
	applied  map[string]time.Time
	claimAt  time.Time // last Attach call: the new NVE has installed local delivery
	// ackOnly makes Attach accept a claim without committing it, as ilad's
	// does (it only asks the agent to register; mapsrv may still refuse).
	ackOnly bool
	late    sync.WaitGroup
}

func (s *fakeMapsrv) apply(t testing.TB, ev ila.Event, first string) {
	t.Helper()
	s.rev++
	ev.Revision = s.rev
	order := []string{}
	if first != "" {
		order = append(order, first)
	}
	for _, n := range s.names {
		if n != first {
			order = append(order, n)
		}
	}
	for _, n := range order {
		m := s.byNVE[n]
		if d := s.delay[n]; d > 0 {
			s.late.Add(1)
			go func() {
				defer s.late.Done()
				time.Sleep(d)
				if err := m.Apply(ev); err != nil {
					t.Errorf("apply %v on %s: %v", ev.Type, n, err)
				}
				s.mu.Lock()
				s.applied[n] = time.Now()
				s.mu.Unlock()
			}()
			continue
		}
		if err := m.Apply(ev); err != nil {
			t.Errorf("apply %v on %s: %v", ev.Type, n, err)
		}
		s.applied[n] = time.Now()
	}
}

// attach is the agent's Attach: register the claim; mapsrv accepts a task
// re-appearing with its registered MAC and commits the move.
func (s *fakeMapsrv) attach(t testing.TB) func(ctx context.Context, c Claim) error {
	return func(ctx context.Context, c Claim) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.claimAt = time.Now()
		select {
		case s.claims <- c:
		default:
		}
		if s.ackOnly {
			return nil
		}
		id, err := ila.NewVNIPv4(c.VNI, c.IPv4)
		if err != nil {
			return err
		}
		old := s.tasks[id]
		if old == nil || old.MAC != c.MAC {
			return fmt.Errorf("claim %v: not registered", c)
		}
		if old.NVE == c.NVE {
			return nil
		}
		nt := *old
		nt.NVE = c.NVE
		nt.Version++
		nt.Previous = []ila.Previous{{NVE: old.NVE, Until: time.Now().Add(s.inflight)}}
		s.tasks[id] = &nt
		s.apply(t, ila.Event{Type: ila.EventTaskUpsert, Task: &nt}, c.NVE)
		select {
		case s.moved <- time.Now():
		default:
		}
		return nil
	}
}

func newLab(t testing.TB) *lab {
	t.Helper()
	testutil.Privileged(t)
	testutil.NeedTools(t, "ip", "ping")
	sfx := testutil.Suffix()
	l := &lab{t: t, sfx: sfx, nves: map[string]*labNVE{}, tasks: map[string]*labTask{},
		srv: &fakeMapsrv{tasks: map[ila.Identifier]*ila.Task{}, byNVE: map[string]*Manager{},
			inflight: 1500 * time.Millisecond, claims: make(chan Claim, 16), moved: make(chan time.Time, 4),
			delay: map[string]time.Duration{}, applied: map[string]time.Time{}}}
	l.fabric = testutil.NewNetNS(t, "l2fab"+sfx)
	if err := l.fabric.Sysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i, name := range []string{"nve1", "nve2", "nve3"} {
		n := &labNVE{name: name, fabIf: fmt.Sprintf("f%d", i+1), spoofed: make(chan Claim, 16)}
		n.ns = testutil.NewNetNS(t, fmt.Sprintf("l2%s%s", name, sfx))
		n.h = n.ns.Handle(t)
		n.underlay = netip.MustParseAddr(fmt.Sprintf("fd00:%d::1", i+1))
		for _, ns := range []*testutil.NetNS{n.ns} {
			for _, k := range []string{"net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad"} {
				if err := ns.Sysctl(k, "0"); err != nil {
					t.Fatal(err)
				}
			}
		}
		fa, nb := testutil.Veth(t, l.fabric, n.fabIf, n.ns, "up0")
		fh := l.fabric.Handle(t)
		for _, x := range []struct {
			h    *netlink.Handle
			link netlink.Link
			addr string
		}{{fh, fa, fmt.Sprintf("fd00:%d::f/64", i+1)}, {n.h, nb, n.underlay.String() + "/64"}} {
			if err := x.h.LinkSetMTU(x.link, 9000); err != nil {
				t.Fatal(err)
			}
			a, _ := netlink.ParseAddr(x.addr)
			a.Flags = unix.IFA_F_NODAD
			if err := x.h.AddrAdd(x.link, a); err != nil {
				t.Fatal(err)
			}
		}
		_, dst, _ := net.ParseCIDR("fd00::/16")
		if err := n.h.RouteAdd(&netlink.Route{LinkIndex: nb.Attrs().Index, Dst: dst, Gw: net.ParseIP(fmt.Sprintf("fd00:%d::f", i+1))}); err != nil {
			t.Fatal(err)
		}
		m, err := New(Config{NVE: name, Underlay: n.underlay, NetNS: n.ns.Path,
			Attach: l.srv.attach(t),
			Spoofed: func(c Claim, reason string) {
				select {
				case n.spoofed <- c:
				default:
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		n.m = m
		l.nves[name] = n
		l.srv.names = append(l.srv.names, name)
		l.srv.byNVE[name] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Run(ctx); err != nil {
				t.Errorf("run %s: %v", name, err)
			}
		}()
	}
	for _, n := range l.nves {
		l.srv.apply(t, ila.Event{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: n.name, Underlay: n.underlay}}, "")
	}
	// Wait for the underlay (neighbour discovery through the fabric).
	for _, to := range []string{"nve2", "nve3"} {
		out, err := l.run(l.nves["nve1"].ns, "ping", "-6", "-c", "1", "-w", "5", l.nves[to].underlay.String())
		if err != nil {
			t.Fatalf("underlay ping: %v\n%s", err, out)
		}
	}
	return l
}

// addTask creates a task namespace with eth0 (mac, ip/24) wired to nve and
// registers it.
func (l *lab) addTask(name, nve string, vni uint32, ip, mac string) *labTask {
	t := l.t
	t.Helper()
	n := l.nves[nve]
	tk := &labTask{name: name, vni: vni, ip: netip.MustParseAddr(ip), nve: nve, port: "t" + name}
	tk.mac, _ = ila.ParseMAC(mac)
	tk.ns = testutil.NewNetNS(t, "l2"+name+l.sfx)
	eth, _ := testutil.Veth(t, tk.ns, "eth0", n.ns, tk.port)
	h := tk.ns.Handle(t)
	if err := h.LinkSetHardwareAddr(eth, net.HardwareAddr(tk.mac[:])); err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(ip + "/24")
	if err := h.AddrAdd(eth, a); err != nil {
		t.Fatal(err)
	}
	tk.eth = &net.Interface{Index: eth.Attrs().Index, Name: "eth0", MTU: 1500, HardwareAddr: net.HardwareAddr(tk.mac[:])}
	if err := n.m.AddPort(tk.port, vni); err != nil {
		t.Fatal(err)
	}
	defer tk.announce(t) // after the registration below, as a booting VM would
	id, err := ila.NewVNIPv4(vni, tk.ip)
	if err != nil {
		t.Fatal(err)
	}
	task := &ila.Task{Name: name, Identifier: id, NVE: nve, VNI: vni, MAC: tk.mac, IPv4: tk.ip, Version: 1, State: ila.StateActive}
	l.srv.mu.Lock()
	l.srv.tasks[id] = task
	l.srv.apply(t, ila.Event{Type: ila.EventTaskUpsert, Task: task}, "")
	l.srv.mu.Unlock()
	l.tasks[name] = tk
	return tk
}

// announce waits for the task's link and sends a gratuitous ARP.
func (tk *labTask) announce(t testing.TB) {
	t.Helper()
	h := tk.ns.Handle(t)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(200 * time.Microsecond) {
		eth, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if eth.Attrs().OperState == netlink.OperUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: link not up", tk.name)
		}
	}
	c := tk.sock(t, etherTypeARP)
	defer c.Close()
	g := arpFrame(arp.OperationRequest, etherTypeARP, tk.mac, tk.ip, broadcast, tk.ip, broadcast)
	if _, err := c.WriteTo(g, &packet.Addr{HardwareAddr: broadcast[:]}); err != nil {
		t.Fatal(err)
	}
}

// arpSock opens a raw socket for ethertype et on the task's eth0.
func (tk *labTask) sock(t testing.TB, et int) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	if err := tk.ns.Do(func() (err error) {
		c, err = packet.Listen(tk.eth, packet.Raw, et, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// resolve sends an ARP request for target from tk and returns the MACs of
// the replies seen within wait.
func (tk *labTask) resolve(t testing.TB, c *packet.Conn, target netip.Addr, wait time.Duration) []ila.MAC {
	t.Helper()
	req := arpFrame(arp.OperationRequest, etherTypeARP, tk.mac, tk.ip, ila.MAC{}, target, broadcast)
	if _, err := c.WriteTo(req, &packet.Addr{HardwareAddr: net.HardwareAddr(broadcast[:])}); err != nil {
		t.Fatal(err)
	}
	var got []ila.MAC
	buf := make([]byte, 1500)
	deadline := time.Now().Add(wait)
	for {
		c.SetReadDeadline(deadline)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return got
		}
		var p arp.Packet
		if n < 14 || p.UnmarshalBinary(buf[14:n]) != nil || p.Operation != arp.OperationReply || p.SenderIP != target {
			continue
		}
		var m ila.MAC
		copy(m[:], p.SenderHardwareAddr)
		got = append(got, m)
	}
}

func (l *lab) run(ns *testutil.NetNS, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...).CombinedOutput()
	return string(out), err
}

// dump logs the state of every NVE (for failures).
func (l *lab) dump(t testing.TB) {
	t.Helper()
	for _, name := range l.srv.names {
		n := l.nves[name]
		t.Logf("%s stats %+v", name, n.m.Stats())
		for _, args := range [][]string{{"bridge", "-n", n.ns.Name, "fdb", "show", "dynamic"}, {"bridge", "-n", n.ns.Name, "fdb", "show", "static"}, {"ip", "-n", n.ns.Name, "neigh"}} {
			out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
			t.Logf("%s %v:\n%s", name, args[3:], out)
		}
	}
}

var pingRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

func pingCounts(out string) (sent, recv int, err error) {
	m := pingRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no ping summary in %q", out)
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ = strconv.Atoi(m[2])
	return sent, recv, nil
}

// frameCounter counts frames on a fabric interface (AF_PACKET, all
// ethertypes) that match.
type frameCounter struct {
	n    atomic.Int64
	c    *packet.Conn
	done chan struct{}
}

func countFrames(t testing.TB, ns *testutil.NetNS, ifname string, match func([]byte) bool) *frameCounter {
	t.Helper()
	fc := &frameCounter{done: make(chan struct{})}
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fc.c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(fc.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := fc.c.ReadFrom(buf)
			if err != nil {
				return
			}
			if match(buf[:n]) {
				fc.n.Add(1)
			}
		}
	}()
	t.Cleanup(fc.stop)
	return fc
}

func (fc *frameCounter) stop() {
	fc.c.Close()
	<-fc.done
}

// isVXLAN matches IPv6/UDP frames to port 4789.
func isVXLAN(b []byte) bool {
	return len(b) >= 14+40+8 && binary.BigEndian.Uint16(b[12:14]) == 0x86dd && b[14+6] == unix.IPPROTO_UDP &&
		binary.BigEndian.Uint16(b[14+40+2:]) == DefaultPort
}

func TestIntegrationIPv4Tenants(t *testing.T) {
	l := newLab(t)
	a1 := l.addTask("a1", "nve1", 100, "10.0.0.1", "02:00:00:00:01:01")
	a2 := l.addTask("a2", "nve2", 100, "10.0.0.2", "02:00:00:00:01:02")
	a3 := l.addTask("a3", "nve2", 100, "10.0.0.3", "02:00:00:00:01:03")
	// Tenant B reuses tenant A's addresses.
	b1 := l.addTask("b1", "nve1", 200, "10.0.0.1", "02:00:00:00:02:01")
	b2 := l.addTask("b2", "nve2", 200, "10.0.0.2", "02:00:00:00:02:02")
	l.addTask("c4", "nve3", 100, "10.0.0.4", "02:00:00:00:01:04")
	_ = a3

	t.Run("ping and tcp across NVEs", func(t *testing.T) {
		out, err := l.run(a1.ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.2")
		if _, recv, perr := pingCounts(out); err != nil || perr != nil || recv != 3 {
			l.dump(t)
			t.Fatalf("ping a1 -> a2: %v %v\n%s", err, perr, out)
		}
		out, err = l.run(b1.ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.2")
		if _, recv, perr := pingCounts(out); err != nil || perr != nil || recv != 3 {
			t.Fatalf("ping b1 -> b2: %v %v\n%s", err, perr, out)
		}
		tcpEcho(t, a1, a2)
	})

	t.Run("tenants isolated", func(t *testing.T) {
		// Same address, two tenants: each gets its own tenant's MAC.
		ca := a1.sock(t, etherTypeARP)
		if got := a1.resolve(t, ca, a2.ip, 300*time.Millisecond); len(got) != 1 || got[0] != a2.mac {
			t.Errorf("a1 resolves 10.0.0.2 to %v, want [%v]", got, a2.mac)
		}
		cb := b1.sock(t, etherTypeARP)
		if got := b1.resolve(t, cb, b2.ip, 300*time.Millisecond); len(got) != 1 || got[0] != b2.mac {
			t.Errorf("b1 resolves 10.0.0.2 to %v, want [%v]", got, b2.mac)
		}
		// The VXLAN ARP proxy tables hold each tenant's own remote tasks.
		for vni, want := range map[uint32]map[netip.Addr]ila.MAC{100: {a2.ip: a2.mac, a3.ip: a3.mac, netip.MustParseAddr("10.0.0.4"): l.tasks["c4"].mac}, 200: {b2.ip: b2.mac}} {
			h := l.nves["nve1"].h
			vx, err := h.LinkByName(vxlanName(vni))
			if err != nil {
				t.Fatal(err)
			}
			ns, err := h.NeighList(vx.Attrs().Index, unix.AF_INET)
			if err != nil {
				t.Fatal(err)
			}
			got := map[netip.Addr]ila.MAC{}
			for _, n := range ns {
				a, _ := netip.AddrFromSlice(n.IP)
				got[a.Unmap()] = ila.MAC(n.HardwareAddr)
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("nve1 neighbour entries on %s (-want +got):\n%s", vxlanName(vni), diff)
			}
		}
		// 10.0.0.3 exists only in tenant A: no answer in tenant B.
		if got := b1.resolve(t, cb, a3.ip, 300*time.Millisecond); len(got) != 0 {
			t.Errorf("b1 resolves tenant A's 10.0.0.3 to %v, want no answer", got)
		}
		// Frames sent by tenant B to tenant A's MAC go nowhere.
		watch := a2.sock(t, unix.ETH_P_ALL)
		_ = watch
		fc := countFrames(t, l.nves["nve2"].ns, a2.port, func(b []byte) bool {
			return len(b) >= 12 && [6]byte(b[6:12]) == b1.mac
		})
		if err := b1.ns.Do(func() error {
			c, err := packet.Listen(b1.eth, packet.Raw, etherTypeIPv4, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			f := make([]byte, 60)
			copy(f[0:6], a2.mac[:])
			copy(f[6:12], b1.mac[:])
			binary.BigEndian.PutUint16(f[12:], etherTypeIPv4)
			for range 20 {
				if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: a2.mac[:]}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		out, _ := l.run(b1.ns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.3")
		if _, recv, _ := pingCounts(out); recv != 0 {
			t.Errorf("b1 reached 10.0.0.3 (tenant A only):\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
		if n := fc.n.Load(); n != 0 {
			t.Errorf("%d frames from tenant B reached tenant A's port", n)
		}
	})

	t.Run("unknown address: no answer, no flood", func(t *testing.T) {
		// a2 asks on nve2, where a3 is in the same tenant and b2 in another.
		var fabric []*frameCounter
		for _, n := range l.nves {
			fabric = append(fabric, countFrames(t, l.fabric, n.fabIf, isVXLAN))
		}
		fromA2 := func(b []byte) bool { return len(b) >= 14 && [6]byte(b[6:12]) == a2.mac }
		sameTenant := countFrames(t, l.nves["nve2"].ns, a3.port, fromA2)
		otherTenant := countFrames(t, l.nves["nve2"].ns, b2.port, fromA2)
		nve2 := l.nves["nve2"].m
		before := nve2.Stats().ARPIgnored
		c := a2.sock(t, etherTypeARP)
		const n = 20
		for i := range n {
			if got := a2.resolve(t, c, netip.AddrFrom4([4]byte{10, 0, 0, byte(100 + i)}), 10*time.Millisecond); len(got) != 0 {
				t.Errorf("answer %v for unknown address", got)
			}
		}
		time.Sleep(100 * time.Millisecond)
		for i, fc := range fabric {
			if got := fc.n.Load(); got != 0 {
				t.Errorf("fabric interface %d carried %d VXLAN frames", i, got)
			}
		}
		if got := sameTenant.n.Load(); got != 0 {
			t.Errorf("%d frames from a2 flooded to a3's port (same tenant, same NVE)", got)
		}
		if got := otherTenant.n.Load(); got != 0 {
			t.Errorf("%d frames from a2 flooded to b2's port (other tenant)", got)
		}
		if got := nve2.Stats().ARPIgnored - before; got != n {
			t.Errorf("ARPIgnored grew by %d, want %d", got, n)
		}
		// The frame counter on a3's port does see what is sent to a3.
		if got := a2.resolve(t, c, a3.ip, 300*time.Millisecond); len(got) != 1 || got[0] != a3.mac {
			t.Errorf("a2 resolves a3 to %v", got)
		}
		out, err := l.run(a2.ns, "ping", "-c", "1", "-W", "1", a3.ip.String())
		if _, recv, perr := pingCounts(out); err != nil || perr != nil || recv != 1 {
			t.Errorf("ping a2 -> a3 (same NVE): %v %v\n%s", err, perr, out)
		}
		if sameTenant.n.Load() == 0 {
			t.Error("frame counter on a3's port saw nothing from a2's ping")
		}
	})

	t.Run("spoofed gratuitous ARP refused", func(t *testing.T) {
		c := a1.sock(t, etherTypeARP)
		g := arpFrame(arp.OperationRequest, etherTypeARP, a1.mac, a2.ip, broadcast, a2.ip, broadcast)
		if _, err := c.WriteTo(g, &packet.Addr{HardwareAddr: broadcast[:]}); err != nil {
			t.Fatal(err)
		}
		select {
		case sp := <-l.nves["nve1"].spoofed:
			if sp.IPv4 != a2.ip || sp.MAC != a1.mac {
				t.Errorf("spoofed claim %v", sp)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no spoofed callback")
		}
		select {
		case cl := <-l.srv.claims:
			t.Errorf("spoofed claim reached Attach: %v", cl)
		case <-time.After(100 * time.Millisecond):
		}
		if got := a1.resolve(t, c, a2.ip, 300*time.Millisecond); len(got) != 1 || got[0] != a2.mac {
			t.Errorf("after spoof, 10.0.0.2 resolves to %v, want [%v]", got, a2.mac)
		}
		// Frames with a2's MAC as source from a1's port do not steal a2's
		// traffic on nve1 (static, sticky entries; learning never moves them).
		if err := a1.ns.Do(func() error {
			raw, err := packet.Listen(a1.eth, packet.Raw, etherTypeIPv4, nil)
			if err != nil {
				return err
			}
			defer raw.Close()
			f := make([]byte, 60)
			copy(f[0:6], a1.mac[:])
			copy(f[6:12], a2.mac[:])
			binary.BigEndian.PutUint16(f[12:], etherTypeIPv4)
			for range 5 {
				if _, err := raw.WriteTo(f, &packet.Addr{HardwareAddr: a1.mac[:]}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		out, err := l.run(a1.ns, "ping", "-c", "2", "-i", "0.1", "-W", "1", "10.0.0.2")
		if _, recv, perr := pingCounts(out); err != nil || perr != nil || recv != 2 {
			l.dump(t)
			t.Errorf("ping a1 -> a2 after a1 spoofed a2's MAC: %v %v\n%s", err, perr, out)
		}
	})

	t.Run("hot move under ping loses nothing", func(t *testing.T) {
		l.move(t, a2, "nve1", 200, 300*time.Millisecond)
		// The old NVE keeps the in-flight redirect, then drops it.
		n2 := l.nves["nve2"].m
		deadline := time.Now().Add(5 * time.Second)
		for n2.Stats().InFlightEntries != 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if s := n2.Stats(); s.InFlightEntries != 0 {
			t.Errorf("old NVE in-flight entries after the timer = %d, want 0", s.InFlightEntries)
		}
		out, err := l.run(a3.ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.0.0.2")
		if _, recv, perr := pingCounts(out); err != nil || perr != nil || recv != 2 {
			t.Errorf("ping a3 (nve2) -> moved a2 (nve1): %v %v\n%s", err, perr, out)
		}
	})

	t.Run("RARP from moved task", func(t *testing.T) {
		c := a2.sock(t, etherTypeRARP)
		req := arpFrame(opRequestReverse, etherTypeRARP, a2.mac, netip.IPv4Unspecified(), a2.mac, netip.IPv4Unspecified(), broadcast)
		if _, err := c.WriteTo(req, &packet.Addr{HardwareAddr: broadcast[:]}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatalf("no RARP reply: %v", err)
			}
			var p arp.Packet
			if n < 14 || p.UnmarshalBinary(buf[14:n]) != nil || p.Operation != opReplyReverse {
				continue
			}
			if p.TargetIP != a2.ip || !equalMAC(p.TargetHardwareAddr, a2.mac) {
				t.Errorf("RARP reply gives %v for %v, want %v for %v", p.TargetIP, p.TargetHardwareAddr, a2.ip, a2.mac)
			}
			break
		}
	})

	t.Run("programmed state matches the mapping and the kernel", func(t *testing.T) {
		for _, name := range l.srv.names {
			l.nves[name].checkState(t)
		}
	})
}

// tcpEcho opens a TCP connection from a to b and echoes 64 KiB.
func tcpEcho(t testing.TB, a, b *labTask) {
	t.Helper()
	var ln net.Listener
	if err := b.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(b.ip.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	var c net.Conn
	if err := a.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", ln.Addr().String(), 3*time.Second)
		return err
	}); err != nil {
		t.Fatalf("tcp %s -> %s: %v", a.name, b.name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := make([]byte, 64<<10)
	for i := range msg {
		msg[i] = byte(i)
	}
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("tcp echo: %v", err)
	}
	if string(got) != string(msg) {
		t.Fatal("tcp echo: data differs")
	}
}

// move carries task tk's NVE-end veth to NVE to while pingers in a1 (on
// the new NVE) and c4 (on nve3) send count echo requests at 10 ms to tk. As
// a VM would after resuming, the task sends a gratuitous ARP once its link
// is up at the new NVE; the fake mapsrv commits the claim with the in-flight
// timer and feeds it to the new NVE, then the old one, and to nve3 only
// lateDelay later (a slow watch): meanwhile nve3 still sends to the old NVE,
// which must re-tunnel to the new one.
//
// Carrying a veth between namespaces takes the link down for the kernel's
// netns move (about 15 ms here): requests sent while the task has no link
// are lost whatever the forwarding state, and so are requests reaching the
// old NVE before it hears of the move (or reaching the new NVE before it
// handled the gratuitous ARP). Every other request must be answered:
// any loss caused by stale FDB state, missing in-flight forwarding or ARP
// fails the test.
func (l *lab) move(t testing.TB, tk *labTask, to string, count int, lateDelay time.Duration) {
	t.Helper()
	from, dst := l.nves[tk.nve], l.nves[to]
	garp := tk.sock(t, etherTypeARP)
	th := tk.ns.Handle(t)
	l.srv.mu.Lock()
	l.srv.delay["nve3"] = lateDelay
	l.srv.mu.Unlock()
	defer func() {
		l.srv.late.Wait()
		l.srv.mu.Lock()
		delete(l.srv.delay, "nve3")
		l.srv.mu.Unlock()
	}()
	// Frames the old NVE sends to the new one over the fabric: in-flight
	// re-tunneling (tk is the only task of its tenant between them).
	retunneled := countFrames(t, l.fabric, from.fabIf, func(b []byte) bool {
		return isVXLAN(b) && netip.AddrFrom16([16]byte(b[14+8:14+24])) == from.underlay &&
			netip.AddrFrom16([16]byte(b[14+24:14+40])) == dst.underlay
	})
	pingers := map[string]*pinger{"a1": newPinger(t, l.tasks["a1"], tk.ip), "c4": newPinger(t, l.tasks["c4"], tk.ip)}
	var wg sync.WaitGroup
	for _, p := range pingers {
		wg.Add(1)
		go func() { defer wg.Done(); p.run(count, 10*time.Millisecond) }()
	}
	time.Sleep(time.Duration(count/3) * 10 * time.Millisecond)

	start := time.Now()
	link, err := from.h.LinkByName(tk.port)
	if err != nil {
		t.Fatal(err)
	}
	if err := from.h.LinkSetNsFd(link, dst.ns.Fd()); err != nil {
		t.Fatal(err)
	}
	carried := time.Now()
	if err := dst.m.AddPort(tk.port, tk.vni); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	for {
		eth, err := th.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if eth.Attrs().OperState == netlink.OperUp {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("task link not up after the carry")
		}
		time.Sleep(100 * time.Microsecond)
	}
	linkUp := time.Now()
	g := arpFrame(arp.OperationRequest, etherTypeARP, tk.mac, tk.ip, broadcast, tk.ip, broadcast)
	if _, err := garp.WriteTo(g, &packet.Addr{HardwareAddr: broadcast[:]}); err != nil {
		t.Fatal(err)
	}
	sentGARP := time.Now()
	if err := from.m.RemovePort(tk.port); err != nil {
		t.Errorf("remove port on old NVE: %v", err)
	}
	select {
	case <-l.srv.moved:
		if s := from.m.Stats(); s.InFlightEntries != 1 {
			t.Errorf("old NVE in-flight entries = %d, want 1", s.InFlightEntries)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("gratuitous ARP did not lead to a committed move")
	}
	wg.Wait()
	l.srv.late.Wait()
	l.srv.mu.Lock()
	oldKnows, lateKnows, claimed := l.srv.applied[from.name], l.srv.applied["nve3"], l.srv.claimAt
	l.srv.mu.Unlock()
	t.Logf("carry %v, port added %v, task link up %v, gratuitous ARP sent %v, local delivery at new NVE %v, commit applied at old NVE %v, at nve3 %v",
		carried.Sub(start), added.Sub(start), linkUp.Sub(start), sentGARP.Sub(start), claimed.Sub(start), oldKnows.Sub(start), lateKnows.Sub(start))
	tk.nve = to
	// Requests are exposed if sent (or within 1 ms before) while the task had
	// no link and until its gratuitous ARP was handled (a1, same NVE), or
	// until the old NVE knew of the move (c4, re-tunneled by the old NVE).
	windows := map[string]time.Time{"a1": claimed, "c4": oldKnows}
	for name, p := range pingers {
		var lost, exposed int
		for seq, at := range p.sent {
			if p.recv[seq] {
				continue
			}
			lost++
			if !at.Before(start.Add(-time.Millisecond)) && !at.After(windows[name]) {
				exposed++
				continue
			}
			t.Errorf("%s: echo %d sent %v after the carry started was lost", name, seq, at.Sub(start))
		}
		t.Logf("%s pings: %d sent, %d received, %d lost (%d sent in the %v exposed window)",
			name, len(p.sent), len(p.sent)-lost, lost, exposed, windows[name].Sub(start))
		if len(p.sent) != count {
			t.Errorf("%s sent %d echo requests, want %d", name, len(p.sent), count)
		}
		l.moveStats = append(l.moveStats, moveStat{pinger: name, window: windows[name].Sub(start), lost: lost, sent: len(p.sent)})
	}
	time.Sleep(50 * time.Millisecond)
	if n := retunneled.n.Load(); n == 0 {
		t.Errorf("no frames re-tunneled by the old NVE while nve3 lagged %v", lateDelay)
	} else {
		t.Logf("old NVE re-tunneled %d frames to the new NVE", n)
	}
}

type moveStat struct {
	pinger string
	window time.Duration
	lost   int
	sent   int
}

// pinger sends ICMP echo requests from a task namespace (raw socket).
type pinger struct {
	t    testing.TB
	c    *icmp.PacketConn
	dst  netip.Addr
	id   int
	mu   sync.Mutex
	sent map[int]time.Time
	recv map[int]bool
}

func newPinger(t testing.TB, from *labTask, dst netip.Addr) *pinger {
	t.Helper()
	p := &pinger{t: t, dst: dst, id: int(time.Now().UnixNano() & 0xffff), sent: map[int]time.Time{}, recv: map[int]bool{}}
	if err := from.ns.Do(func() (err error) {
		p.c, err = icmp.ListenPacket("ip4:icmp", from.ip.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.c.Close() })
	return p
}

// run sends count requests every interval and collects replies until 1 s
// after the last one.
func (p *pinger) run(count int, interval time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := p.c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == p.id {
				p.mu.Lock()
				p.recv[e.Seq] = true
				p.mu.Unlock()
			}
		}
	}()
	start := time.Now()
	dst := &net.IPAddr{IP: net.IP(p.dst.AsSlice())}
	for i := range count {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: i, Data: []byte("l2compat-move")}}
		b, _ := m.Marshal(nil)
		p.mu.Lock()
		p.sent[i] = time.Now()
		p.mu.Unlock()
		if _, err := p.c.WriteTo(b, dst); err != nil {
			p.t.Logf("echo %d: %v", i, err)
		}
	}
	p.c.SetReadDeadline(time.Now().Add(time.Second))
	<-done
}

// TestIntegrationRestartAdopts checks that a Manager started over the
// devices of an earlier one (agent restart) keeps them and removes, at the
// end of the first list (EventSynced), the entries of tasks that are gone.
func TestIntegrationRestartAdopts(t *testing.T) {
	testutil.Privileged(t)
	sfx := testutil.Suffix()
	nve := testutil.NewNetNS(t, "l2r"+sfx)
	task := testutil.NewNetNS(t, "l2rt"+sfx)
	testutil.Veth(t, task, "eth0", nve, "tx")
	h := nve.Handle(t)
	underlay := netip.MustParseAddr("fd00:1::1")
	remote := netip.MustParseAddr("fd00:2::1")
	cfg := Config{NVE: "n1", Underlay: underlay, NetNS: nve.Path}
	r1 := &ila.Task{Identifier: mustVN(t, 100, "10.0.0.11"), NVE: "n2", MAC: ila.MAC{2, 0, 0, 0, 0, 0x11}}
	r2 := &ila.Task{Identifier: mustVN(t, 100, "10.0.0.12"), NVE: "n2", MAC: ila.MAC{2, 0, 0, 0, 0, 0x12}}
	feed := func(m *Manager, tasks ...*ila.Task) {
		t.Helper()
		evs := []ila.Event{{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: "n2", Underlay: remote}}}
		for _, tk := range tasks {
			evs = append(evs, ila.Event{Type: ila.EventTaskUpsert, Task: tk})
		}
		evs = append(evs, ila.Event{Type: ila.EventSynced})
		for _, ev := range evs {
			if err := m.Apply(ev); err != nil {
				t.Fatalf("apply %v: %v", ev.Type, err)
			}
		}
	}
	state := func() (fdb map[ila.MAC]netip.Addr, neigh map[netip.Addr]ila.MAC) {
		t.Helper()
		vx, err := h.LinkByName(vxlanName(100))
		if err != nil {
			t.Fatal(err)
		}
		fdb, neigh = map[ila.MAC]netip.Addr{}, map[netip.Addr]ila.MAC{}
		fs, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range fs {
			if n.Flags&netlink.NTF_SELF != 0 && n.IP != nil && len(n.HardwareAddr) == 6 {
				a, _ := netip.AddrFromSlice(n.IP)
				fdb[ila.MAC(n.HardwareAddr)] = a.Unmap()
			}
		}
		ns, err := h.NeighList(vx.Attrs().Index, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			a, _ := netip.AddrFromSlice(n.IP)
			neigh[a.Unmap()] = ila.MAC(n.HardwareAddr)
		}
		return fdb, neigh
	}
	opt := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

	m1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.AddPort("tx", 100); err != nil {
		t.Fatal(err)
	}
	feed(m1, r1, r2)
	fdb, neigh := state()
	if diff := cmp.Diff(map[ila.MAC]netip.Addr{r1.MAC: remote, r2.MAC: remote}, fdb, opt); diff != "" {
		t.Errorf("first run fdb (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[netip.Addr]ila.MAC{r1.Identifier.IPv4(): r1.MAC, r2.Identifier.IPv4(): r2.MAC}, neigh, opt); diff != "" {
		t.Errorf("first run neighbours (-want +got):\n%s", diff)
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: r2 was deleted while the agent was down.
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	if err := m2.AddPort("tx", 100); err != nil {
		t.Fatal(err)
	}
	feed(m2, r1)
	fdb, neigh = state()
	if diff := cmp.Diff(map[ila.MAC]netip.Addr{r1.MAC: remote}, fdb, opt); diff != "" {
		t.Errorf("after restart fdb (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[netip.Addr]ila.MAC{r1.Identifier.IPv4(): r1.MAC}, neigh, opt); diff != "" {
		t.Errorf("after restart neighbours (-want +got):\n%s", diff)
	}
	if s := m2.Stats(); s.FDBEntries != 1 || s.VNIs != 1 || s.Ports != 1 {
		t.Errorf("stats after restart %+v", s)
	}
	// The last port goes: the tenant's devices go with its entries.
	if err := m2.RemovePort("tx"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bridgeName(100), vxlanName(100)} {
		if _, err := h.LinkByName(name); err == nil {
			t.Errorf("%s still exists after the last port left", name)
		}
	}
}

// TestIntegrationInFlightOnly checks the old NVE's side of a move in a
// tenant it has no ports in any more: the in-flight entry (with hairpin on
// the VXLAN port) exists until Previous.Until, then the entry and the
// tenant's devices go; a renumbered NVE re-points the entries.
func TestIntegrationInFlightOnly(t *testing.T) {
	testutil.Privileged(t)
	nve := testutil.NewNetNS(t, "l2i"+testutil.Suffix())
	h := nve.Handle(t)
	m, err := New(Config{NVE: "n1", Underlay: netip.MustParseAddr("fd00:1::1"), NetNS: nve.Path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	n2, n3 := netip.MustParseAddr("fd00:2::1"), netip.MustParseAddr("fd00:3::1")
	for _, ev := range []ila.Event{
		{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: "n2", Underlay: n2}},
		{Type: ila.EventTaskUpsert, Task: &ila.Task{Identifier: mustVN(t, 300, "10.3.0.1"), NVE: "n2", MAC: ila.MAC{2, 0, 0, 0, 3, 1},
			Previous: []ila.Previous{{NVE: "n1", Until: time.Now().Add(500 * time.Millisecond)}}}},
	} {
		if err := m.Apply(ev); err != nil {
			t.Fatal(err)
		}
	}
	vx, err := h.LinkByName(vxlanName(300))
	if err != nil {
		t.Fatalf("no vxlan device for the in-flight entry: %v", err)
	}
	dst := func() netip.Addr {
		ns, err := h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.Flags&netlink.NTF_SELF != 0 && len(n.HardwareAddr) == 6 && ila.MAC(n.HardwareAddr) == (ila.MAC{2, 0, 0, 0, 3, 1}) {
				a, _ := netip.AddrFromSlice(n.IP)
				return a.Unmap()
			}
		}
		return netip.Addr{}
	}
	if got := dst(); got != n2 {
		t.Errorf("in-flight entry points at %v, want %v", got, n2)
	}
	if pi, err := h.LinkGetProtinfo(vx); err != nil || !pi.Hairpin {
		t.Errorf("hairpin not on for the VXLAN port during the in-flight timer (%v, %v)", err, pi)
	}
	if s := m.Stats(); s.InFlightEntries != 1 {
		t.Errorf("in-flight entries %d, want 1", s.InFlightEntries)
	}
	// The new NVE is renumbered while the timer runs.
	if err := m.Apply(ila.Event{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: "n2", Underlay: n3}}); err != nil {
		t.Fatal(err)
	}
	if got := dst(); got != n3 {
		t.Errorf("after renumbering the entry points at %v, want %v", got, n3)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := h.LinkByName(vxlanName(300))
		if err != nil && m.Stats().InFlightEntries == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in-flight state still there after the timer: stats %+v, link lookup %v", m.Stats(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := h.LinkByName(bridgeName(300)); err == nil {
		t.Errorf("%s still exists after the in-flight timer", bridgeName(300))
	}
}

// checkState compares the Manager's programmed FDB and neighbour entries with
// the desired state computed from its directory (the pure function), and
// with what the kernel holds.
func (n *labNVE) checkState(t *testing.T) {
	t.Helper()
	m := n.m
	m.mu.Lock()
	active := map[uint32]bool{}
	for vni, d := range m.vnis {
		if d.ports > 0 {
			active[vni] = true
		}
	}
	m.dirMu.RLock()
	want := m.dir.want(m.cfg.NVE, active, m.seen, m.claimed, time.Now())
	m.dirMu.RUnlock()
	fdb := maps.Clone(m.fdb)
	neigh := maps.Clone(m.neigh)
	vnis := slices.Collect(maps.Keys(m.vnis))
	ports := map[int]string{}
	for name, p := range m.ports {
		ports[p.info.Index] = name
	}
	m.mu.Unlock()
	opt := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if diff := cmp.Diff(want.FDB, fdb, opt); diff != "" {
		t.Errorf("%s: programmed FDB differs from the mapping's (-want +got):\n%s", n.name, diff)
	}
	if diff := cmp.Diff(want.Neigh, neigh, opt); diff != "" {
		t.Errorf("%s: programmed neighbours differ from the mapping's (-want +got):\n%s", n.name, diff)
	}
	kernel := map[fdbKey]fdbEntry{}
	kneigh := map[neighKey]ila.MAC{}
	for _, vni := range vnis {
		vx, err := n.h.LinkByName(vxlanName(vni))
		if err != nil {
			t.Fatal(err)
		}
		br, err := n.h.LinkByName(bridgeName(vni))
		if err != nil {
			t.Fatal(err)
		}
		all, err := n.h.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			if len(e.HardwareAddr) != 6 {
				continue
			}
			k := fdbKey{vni, ila.MAC(e.HardwareAddr)}
			switch {
			case e.LinkIndex == vx.Attrs().Index && e.Flags&netlink.NTF_SELF != 0 && e.IP != nil:
				a, _ := netip.AddrFromSlice(e.IP)
				f := kernel[k]
				f.Remote = a.Unmap()
				kernel[k] = f
			case e.MasterIndex == br.Attrs().Index && e.State&netlink.NUD_NOARP != 0 && ports[e.LinkIndex] != "":
				kernel[k] = fdbEntry{Port: ports[e.LinkIndex]}
			}
		}
		ns, err := n.h.NeighList(vx.Attrs().Index, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ns {
			a, _ := netip.AddrFromSlice(e.IP)
			kneigh[neighKey{vni, a.Unmap()}] = ila.MAC(e.HardwareAddr)
		}
	}
	for k, f := range fdb {
		f.InFlight = false
		fdb[k] = f
	}
	t.Logf("%s: %d FDB entries, %d neighbour entries, %d tenants", n.name, len(kernel), len(kneigh), len(vnis))
	if diff := cmp.Diff(fdb, kernel, opt); diff != "" {
		t.Errorf("%s: kernel FDB differs from the programmed one (-programmed +kernel):\n%s", n.name, diff)
	}
	if diff := cmp.Diff(neigh, kneigh, opt); diff != "" {
		t.Errorf("%s: kernel neighbours differ from the programmed ones (-programmed +kernel):\n%s", n.name, diff)
	}
}

// TestIntegrationSpoofedClaimReverted is finding 5 of issue 17: a task that
// sends a gratuitous ARP with another task's MAC and address must not keep
// that task's traffic on its own port. A claim for a task registered on
// another NVE gets local delivery at once (make before break) but loses it
// when the mapping does not commit the move; a claim for a task that lives
// behind another port of the same NVE is refused outright.
func TestIntegrationSpoofedClaimReverted(t *testing.T) {
	l := newLab(t)
	l.srv.mu.Lock()
	l.srv.ackOnly = true
	l.srv.mu.Unlock()
	a1 := l.addTask("a1", "nve1", 100, "10.0.0.1", "02:00:00:00:01:01") // the attacker
	v1 := l.addTask("v1", "nve1", 100, "10.0.0.5", "02:00:00:00:01:05") // a neighbour on the same NVE
	a2 := l.addTask("a2", "nve2", 100, "10.0.0.2", "02:00:00:00:01:02") // a task on another NVE
	n1 := l.nves["nve1"]
	for _, tk := range []*labTask{a1, v1} {
		waitFDB(t, n1, tk.vni, tk.mac, tk.port)
	}
	spoof := func(as *labTask) {
		t.Helper()
		c := a1.sock(t, etherTypeARP)
		g := arpFrame(arp.OperationRequest, etherTypeARP, as.mac, as.ip, broadcast, as.ip, broadcast)
		if _, err := c.WriteTo(g, &packet.Addr{HardwareAddr: broadcast[:]}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("claim of a remote task lapses", func(t *testing.T) {
		spoof(a2)
		select {
		case <-l.srv.claims:
		case <-time.After(2 * time.Second):
			t.Fatal("the claim never reached Attach")
		}
		start := time.Now()
		// The claim installed local delivery on the attacker's port; with no
		// commit from the mapping it goes back to the VXLAN port.
		deadline := start.Add(DefaultClaimTimeout + 5*time.Second)
		for fdbPort(t, n1, a2.vni, a2.mac) == a1.port && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := fdbPort(t, n1, a2.vni, a2.mac); got == a1.port {
			l.dump(t)
			t.Fatalf("%v after the claim: a2's MAC still on the attacker's port %s", time.Since(start).Round(time.Millisecond), got)
		}
		t.Logf("claim reverted after %v", time.Since(start).Round(time.Millisecond))
		out, err := l.run(v1.ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", a2.ip.String())
		if _, recv, perr := pingCounts(out); err != nil || perr != nil || recv != 2 {
			l.dump(t)
			t.Errorf("ping v1 -> a2 after the claim lapsed: %v %v\n%s", err, perr, out)
		}
		n1.checkState(t)
	})

	t.Run("same-NVE neighbour's MAC refused", func(t *testing.T) {
		before := n1.m.Stats().Spoofed
		spoof(v1)
		select {
		case sp := <-n1.spoofed:
			if sp.MAC != v1.mac {
				t.Errorf("spoofed claim %v", sp)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no spoofed callback")
		}
		if got := n1.m.Stats().Spoofed - before; got != 1 {
			t.Errorf("Spoofed grew by %d, want 1", got)
		}
		if got := fdbPort(t, n1, v1.vni, v1.mac); got != v1.port {
			l.dump(t)
			t.Errorf("v1's MAC on port %q after a1 claimed it, want %s", got, v1.port)
		}
		n1.checkState(t)
	})
}

// waitFDB waits until the bridge of tenant vni on n holds mac on port.
func waitFDB(t *testing.T, n *labNVE, vni uint32, mac ila.MAC, port string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); fdbPort(t, n, vni, mac) != port; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v never reached port %s (on %q)", n.name, mac, port, fdbPort(t, n, vni, mac))
		}
	}
}

// fdbPort returns the port that the kernel's bridge of tenant vni on n sends
// frames for mac to ("" if it has no entry).
func fdbPort(t *testing.T, n *labNVE, vni uint32, mac ila.MAC) string {
	t.Helper()
	br, err := n.h.LinkByName(bridgeName(vni))
	if err != nil {
		t.Fatal(err)
	}
	all, err := n.h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.MasterIndex != br.Attrs().Index || len(e.HardwareAddr) != 6 || ila.MAC(e.HardwareAddr) != mac {
			continue
		}
		link, err := n.h.LinkByIndex(e.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		return link.Attrs().Name
	}
	return ""
}
