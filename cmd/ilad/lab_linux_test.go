//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The lab of the integration tests: a fabric namespace routing each NVE's
// locator /64 to it, NVE namespaces each running a real ilad (run(), with
// the real eBPF datapath, pinned on a test bpffs), a real mapsrv Service
// with its registration server (signed UDP) over a real embedded etcd, and
// task namespaces attached to NVEs by veth through ilad's local API.

var (
	labSIR    = mustPrefix("3333:0:0:1::/64")
	mapsrvReg = netip.MustParseAddrPort("[fd00:ff::1]:7481")
)

func mustPrefix(s string) ila.SIRPrefix {
	p, err := ila.ParseSIRPrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}

type lab struct {
	t        testing.TB
	sfx      string
	dir      string
	bpffs    string
	keys     string
	fab      *testutil.NetNS
	etcdDir  string
	etcd     []string
	cli      *clientv3.Client
	svc      *mapsrv.Service
	nves     []*labNVE
	log      *syncBuffer
	stopEtcd func()
}

type labNVE struct {
	name   string
	idx    int
	ns     *testutil.NetNS
	loc    ila.Locator
	api    string
	args   []string
	cancel context.CancelFunc
	done   chan error
}

type labTask struct {
	name string
	ns   *testutil.NetNS
	sir  netip.Addr
	mac  ila.MAC
	port string // NVE end
	nve  *labNVE
}

// syncBuffer collects the daemons' logs, shown when a test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func sysctl(t testing.TB, ns *testutil.NetNS, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if err := ns.Sysctl(kv[i], kv[i+1]); err != nil {
			t.Fatalf("%s: sysctl %s: %v", ns.Name, kv[i], err)
		}
	}
}

func addAddr(t testing.TB, h *netlink.Handle, l netlink.Link, p string) {
	t.Helper()
	pf := netip.MustParsePrefix(p)
	a := &netlink.Addr{IPNet: &net.IPNet{IP: pf.Addr().AsSlice(), Mask: net.CIDRMask(pf.Bits(), 128)}, Flags: 0x02 /* NODAD */}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s: %v", p, l.Attrs().Name, err)
	}
}

func addRoute(t testing.TB, h *netlink.Handle, l netlink.Link, dst string, gw string) {
	t.Helper()
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(netip.MustParseAddr(gw).AsSlice())}
	if dst != "" {
		pf := netip.MustParsePrefix(dst)
		r.Dst = &net.IPNet{IP: pf.Addr().AsSlice(), Mask: net.CIDRMask(pf.Bits(), 128)}
	} else {
		r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("route %s via %s: %v", dst, gw, err)
	}
}

// newLab builds n NVEs; extra[i] are more ilad flags for NVE i (1-based).
func newLab(t testing.TB, n int, extra map[int][]string) *lab {
	t.Helper()
	testutil.Privileged(t)
	testutil.NeedTools(t, "ip", "ping", "curl")
	if testing.Short() {
		t.Skip("integration lab skipped in -short mode")
	}
	l := &lab{t: t, sfx: testutil.Suffix(), dir: t.TempDir(), log: &syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon logs:\n%s", l.log.String())
		}
	})
	l.bpffs = testutil.BPFFS(t)

	// etcd (restartable: StartServer on a fixed dir) and mapsrv.
	l.etcdDir = t.TempDir()
	if len(l.etcdDir) > 80 {
		d, err := os.MkdirTemp("", "ilad-etcd")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		l.etcdDir = d
	}
	l.startEtcd()
	l.cli = etcdtest.NewClient(t, l.etcd)

	// Keys: mapsrv 1, NVE i 10+i.
	kf := regproto.KeyFile{}
	sec, _ := regproto.NewSecret()
	kf[1] = regproto.KeyEntry{NVE: "mapsrv", Secret: sec}
	for i := 1; i <= n; i++ {
		s, _ := regproto.NewSecret()
		kf[uint32(10+i)] = regproto.KeyEntry{NVE: fmt.Sprintf("nve%d", i), Secret: s}
	}
	l.keys = filepath.Join(l.dir, "keys")
	if err := os.WriteFile(l.keys, kf.Format(), 0o600); err != nil {
		t.Fatal(err)
	}

	// Fabric.
	l.fab = testutil.NewNetNS(t, "ilaf"+l.sfx)
	sysctl(t, l.fab, "net/ipv6/conf/all/forwarding", "1", "net/ipv6/conf/default/accept_dad", "0")
	fh := l.fab.Handle(t)
	lo, _ := fh.LinkByName("lo")
	addAddr(t, fh, lo, "fd00:ff::1/128")

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	svc, err := mapsrv.New(mapsrv.Config{
		Store:    etcdstore.New(l.cli),
		InFlight: 5 * time.Second,
		Notifier: fabNotifier{&mapsrv.RegNotifier{KeyID: 1, Secret: sec, Keys: kf, Timeout: 200 * time.Millisecond, Retries: 2}, l.fab},
		Logger:   slog.New(slog.NewTextHandler(l.log, nil)).With("component", "mapsrv"),
	})
	if err != nil {
		t.Fatal(err)
	}
	l.svc = svc
	wg.Add(1)
	go func() { defer wg.Done(); svc.Run(ctx) }()
	var conn *net.UDPConn
	if err := l.fab.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(mapsrvReg))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &regproto.Server{Conn: conn, Keys: kf, KeyID: 1, Secret: sec, Handler: svc}
	wg.Add(1)
	go func() { defer wg.Done(); srv.Run(ctx); conn.Close() }()

	if err := svc.AddDomain(t.Context(), ila.Domain{Name: "prod", SIR: labSIR, Csum: ila.CsumNeutralMap}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		l.addNVE(i, extra[i]...)
	}
	return l
}

func (l *lab) startEtcd() {
	srv := etcdtest.StartServer(l.t, l.etcdDir)
	l.etcd = srv.Endpoints()
	l.stopEtcd = srv.Close
}

func (l *lab) addNVE(i int, extra ...string) {
	t := l.t
	v := &labNVE{name: fmt.Sprintf("nve%d", i), idx: i, loc: ila.Locator(0x2001_0db8_0000_0000 | uint64(i)<<16)}
	v.ns = testutil.NewNetNS(t, fmt.Sprintf("ilan%d%s", i, l.sfx))
	sysctl(t, v.ns, "net/ipv6/conf/default/accept_dad", "0", "net/ipv6/conf/all/accept_dad", "0")
	fl, ul := testutil.Veth(t, l.fab, fmt.Sprintf("f%d", i), v.ns, "up0")
	fh, nh := l.fab.Handle(t), v.ns.Handle(t)
	addAddr(t, fh, fl, fmt.Sprintf("fd00:%d::1/64", i))
	addAddr(t, nh, ul, fmt.Sprintf("fd00:%d::2/64", i))
	addRoute(t, fh, fl, v.loc.Prefix().String(), fmt.Sprintf("fd00:%d::2", i))
	addRoute(t, nh, ul, "", fmt.Sprintf("fd00:%d::1", i))
	if err := l.svc.AddNVE(t.Context(), mapsrv.NVERecord{
		NVE:     ila.NVE{Name: v.name, Locators: []ila.Locator{v.loc}, Underlay: netip.MustParseAddr(fmt.Sprintf("fd00:%d::2", i))},
		RegAddr: netip.MustParseAddrPort(fmt.Sprintf("[fd00:%d::2]:7482", i)),
	}); err != nil {
		t.Fatal(err)
	}
	v.api = filepath.Join(l.dir, v.name+".sock")
	v.args = []string{
		"-node", v.name, "-locator", v.loc.String(), "-uplink", "up0", "-netns", v.ns.Path,
		"-etcd", strings.Join(l.etcd, ","), "-key-file", l.keys,
		"-notify-listen", fmt.Sprintf("[fd00:%d::2]:7482", i), "-bpffs", filepath.Join(l.bpffs, v.name),
		"-api", v.api, "-state-file", filepath.Join(l.dir, v.name+".tasks.json"), "-in-flight", "5s",
		"-log-level", "debug", "-metrics", "[::1]:9400",
	}
	if !slices.Contains(extra, "-mapsrv") { // -mapsrv repeated adds an address
		v.args = append(v.args, "-mapsrv", mapsrvReg.String())
	}
	v.args = append(v.args, extra...)
	l.nves = append(l.nves, v)
	l.start(v)
}

// start runs ilad for v and waits for its local API.
func (l *lab) start(v *labNVE) {
	t := l.t
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel, v.done = cancel, make(chan error, 1)
	go func() { v.done <- run(ctx, v.args, l.log) }()
	t.Cleanup(func() { l.stop(v) })
	c := l.client(v)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.Stats(t.Context())
		if err == nil && st.Synced {
			return
		}
		select {
		case err := <-v.done:
			v.done <- err
			t.Fatalf("ilad %s exited: %v", v.name, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ilad %s not ready: %v", v.name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops v's ilad (the datapath stays pinned and forwarding).
func (l *lab) stop(v *labNVE) {
	if v.cancel == nil {
		return
	}
	v.cancel()
	if err := <-v.done; err != nil {
		l.t.Errorf("ilad %s: %v", v.name, err)
	}
	v.cancel = nil
}

func (l *lab) client(v *labNVE) *locator.Client {
	c, err := locator.NewClient(v.api)
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

// addTask creates a task namespace linked to NVE v and attaches it through
// ilad's local API.
func (l *lab) addTask(v *labNVE, name string, id ila.Identifier) *labTask {
	t := l.t
	tk := &labTask{name: name, sir: labSIR.Addr(id), port: "v" + name, nve: v}
	tk.ns = testutil.NewNetNS(t, "ilat"+name+l.sfx)
	sysctl(t, tk.ns, "net/ipv6/conf/default/accept_dad", "0", "net/ipv6/conf/all/accept_dad", "0")
	tl, _ := testutil.Veth(t, tk.ns, "eth0", v.ns, tk.port)
	th := tk.ns.Handle(t)
	addAddr(t, th, tl, tk.sir.String()+"/128")
	addRoute(t, th, tl, "", "fe80::1")
	copy(tk.mac[:], tl.Attrs().HardwareAddr)
	l.attach(tk, v)
	return tk
}

func (l *lab) attach(tk *labTask, v *labNVE) {
	l.t.Helper()
	_, err := l.client(v).Attach(l.t.Context(), locator.TaskSpec{Name: tk.name, Tenant: "t1", Iface: tk.port, SIR: tk.sir, MAC: tk.mac})
	if err != nil {
		l.t.Fatalf("attach %s at %s: %v", tk.name, v.name, err)
	}
	tk.nve = v
}

// waitMapping waits until every ilad has tk at v's locator.
func (l *lab) waitMapping(tk *labTask, v *labNVE) {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range l.nves {
		for {
			if n.cancel == nil {
				break
			}
			st, err := l.svc.TaskByID(l.t.Context(), "prod", ila.IdentifierOf(tk.sir))
			if err == nil && st.Locator == v.loc {
				// mapsrv has it; the agents follow within milliseconds.
				time.Sleep(50 * time.Millisecond)
				break
			}
			if time.Now().After(deadline) {
				l.t.Fatalf("task %s not mapped to %s: %+v %v", tk.name, v.name, st, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// ping runs the task's own ping (kernel ND through fe80::1, no static
// neighbours). ip netns exec is fine here: ping does not need bpffs.
func ping(t *testing.T, from *labTask, to netip.Addr, count int) error {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", from.ns.Name, "ping", "-6", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.05", "-W", "1", to.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s -> %s: %v\n%s", from.name, to, err, out)
	}
	return nil
}

// udpEcho serves UDP echo on the task's SIR address until ctx is done.
func udpEcho(t *testing.T, ctx context.Context, tk *labTask, port int) {
	t.Helper()
	var conn *net.UDPConn
	if err := tk.ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp6", &net.UDPAddr{IP: tk.sir.AsSlice(), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	go func() {
		b := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			conn.WriteToUDPAddrPort(b[:n], from)
		}
	}()
}

// flow sends count numbered datagrams every interval from src to dst's echo
// server and counts the echoes; during(i) is called before datagram i is
// sent (from the sending goroutine, so it must return quickly or run its
// work on another goroutine). It returns the sequence numbers never echoed.
func flow(t *testing.T, src *labTask, dst netip.Addr, port, count int, interval time.Duration, during func(i int)) []int {
	t.Helper()
	var conn *net.UDPConn
	if err := src.ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp6", &net.UDPAddr{IP: src.sir.AsSlice()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make([]bool, count)
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 64)
		for {
			n, err := conn.Read(b)
			if err != nil {
				return
			}
			var i int
			if _, err := fmt.Sscanf(string(b[:n]), "seq %d", &i); err == nil && i >= 0 && i < count {
				mu.Lock()
				got[i] = true
				mu.Unlock()
			}
		}
	}()
	to := &net.UDPAddr{IP: dst.AsSlice(), Port: port}
	next := time.Now()
	for i := range count {
		if during != nil {
			during(i)
		}
		if _, err := conn.WriteToUDP([]byte(fmt.Sprintf("seq %d", i)), to); err != nil {
			t.Logf("send %d: %v", i, err)
		}
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
	time.Sleep(500 * time.Millisecond)
	conn.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	var lost []int
	for i, ok := range got {
		if !ok {
			lost = append(lost, i)
		}
	}
	return lost
}

var _ io.Writer = (*syncBuffer)(nil)

// carry moves the NVE end of tk's veth from NVE from to NVE to and attaches
// tk there through to's local API.
func (l *lab) carry(tk *labTask, from, to *labNVE) error {
	fh, err := netlink.NewHandleAt(vnetns.NsHandle(from.ns.Fd()))
	if err != nil {
		return err
	}
	defer fh.Close()
	link, err := fh.LinkByName(tk.port)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := fh.LinkSetNsFd(link, to.ns.Fd()); err != nil {
		return fmt.Errorf("carry %s to %s: %w", tk.port, to.name, err)
	}
	carried := time.Since(start)
	// The operator's move (mapsrv's API) is what justifies the attach at
	// to (docs/registration.md section 7.4); its registration there is
	// then a refresh.
	if _, err := l.svc.Move(context.Background(), mapsrv.MoveRequest{Domain: "prod", Identifier: ila.IdentifierOf(tk.sir), To: to.name}); err != nil {
		return fmt.Errorf("move %s to %s: %w", tk.name, to.name, err)
	}
	if _, err := l.client(to).Attach(context.Background(), locator.TaskSpec{Name: tk.name, Tenant: "t1", Iface: tk.port, SIR: tk.sir, MAC: tk.mac}); err != nil {
		return fmt.Errorf("attach %s at %s: %w", tk.name, to.name, err)
	}
	l.t.Logf("carried %s to %s in %v, attached and registered %v later", tk.port, to.name, carried, time.Since(start)-carried)
	tk.nve = to
	return nil
}

// addLink gives tk a second link, eth1, to NVE to (port name port) and
// attaches it there in standby: the destination of a hot move prepares
// local delivery before the switch.
func (l *lab) addLink(tk *labTask, to *labNVE, port string) {
	t := l.t
	e1, _ := testutil.Veth(t, tk.ns, "eth1", to.ns, port)
	copy(tk.mac[:], e1.Attrs().HardwareAddr) // the task's MAC behind the new port
	spec := locator.TaskSpec{Name: tk.name, Tenant: "t1", Iface: port, SIR: tk.sir, MAC: tk.mac, Standby: true}
	if _, err := l.client(to).Attach(t.Context(), spec); err != nil {
		t.Fatalf("standby attach %s at %s: %v", tk.name, to.name, err)
	}
}

// switchOver points tk's default route at eth1 and commits the standby
// attach at to (the registration moves the mapping).
func (l *lab) switchOver(tk *labTask, to *labNVE, port string) error {
	th, err := netlink.NewHandleAt(vnetns.NsHandle(tk.ns.Fd()))
	if err != nil {
		return err
	}
	defer th.Close()
	e1, err := th.LinkByName("eth1")
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: e1.Attrs().Index, Gw: net.ParseIP("fe80::1"), Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
	if err := th.RouteReplace(r); err != nil {
		return fmt.Errorf("route via eth1: %w", err)
	}
	// The orchestrator's expectation: what, with the standby
	// registration, justifies the commit's claim (docs/registration.md
	// 7.4).
	if _, err := l.svc.Expect(context.Background(), mapsrv.ExpectRequest{Domain: "prod", Identifier: ila.IdentifierOf(tk.sir), NVE: to.name}); err != nil {
		return fmt.Errorf("expect %s at %s: %w", tk.name, to.name, err)
	}
	start := time.Now()
	// Same spec as the standby attach, minus standby: commit.
	spec := locator.TaskSpec{Name: tk.name, Tenant: "t1", Iface: port, SIR: tk.sir, MAC: tk.mac}
	if _, err := l.client(to).Attach(context.Background(), spec); err != nil {
		return fmt.Errorf("commit %s at %s: %w", tk.name, to.name, err)
	}
	l.t.Logf("committed %s at %s in %v", tk.name, to.name, time.Since(start))
	tk.nve, tk.port = to, port
	return nil
}

// metrics returns v's Prometheus page (the listener is in v's namespace).
func (l *lab) metrics(v *labNVE) string {
	out, _ := exec.Command("ip", "netns", "exec", v.ns.Name, "curl", "-s", "http://[::1]:9400/metrics").CombinedOutput()
	return string(out)
}

// fabNotifier sends mapsrv's move notifications from the fabric namespace
// (where mapsrv's sockets live in this lab).
type fabNotifier struct {
	n   mapsrv.Notifier
	fab *testutil.NetNS
}

func (f fabNotifier) Notify(ctx context.Context, n mapsrv.Notification) error {
	return f.fab.Do(func() error { return f.n.Notify(ctx, n) })
}
