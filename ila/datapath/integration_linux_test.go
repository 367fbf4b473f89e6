package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// Two domains so that real traffic exercises a checksum-neutral mode and
// adjust-transport (the one that patches CHECKSUM_PARTIAL packets).
var itDomains = []ila.Domain{
	{Name: "neutral", SIR: 0x3333_0000_0000_0001, Csum: ila.CsumNeutralMap},
	{Name: "adjust", SIR: 0x3333_0000_0000_0002, Csum: ila.CsumAdjustTransport},
}

// nve is one NVE of the integration topology.
type nve struct {
	ns, task   *testutil.NetNS
	d          *Datapath
	locs       []ila.Locator // one per domain
	id         ila.Identifier
	taskIfidx  int // NVE end of the task veth
	taskMAC    ila.MAC
	uplinkName string
}

func (n *nve) sir(dom int) netip.Addr { return itDomains[dom].SIR.Addr(n.id) }

type topo struct {
	fab  *testutil.NetNS
	a, b *nve
}

func addAddr(t testing.TB, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	must(t, err)
	a.Flags = unix.IFA_F_NODAD
	must(t, h.AddrAdd(l, a))
}

func addRoute(t testing.TB, h *netlink.Handle, l netlink.Link, dst, gw string) {
	t.Helper()
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}
	if dst != "" {
		_, r.Dst, _ = net.ParseCIDR(dst)
	}
	must(t, h.RouteAdd(r))
}

func quietNS(t testing.TB, ns *testutil.NetNS, forwarding bool) {
	t.Helper()
	kv := map[string]string{
		"net/ipv6/conf/all/accept_dad": "0", "net/ipv6/conf/default/accept_dad": "0",
		"net/ipv6/conf/default/router_solicitations": "0",
	}
	if forwarding {
		kv["net/ipv6/conf/all/forwarding"] = "1"
		kv["net/ipv6/conf/default/forwarding"] = "1"
	}
	for k, v := range kv {
		must(t, ns.Sysctl(k, v))
	}
}

// newTopo builds: task A -- NVE A ==uplink== fabric ==uplink== NVE B -- task B.
// The fabric routes each NVE's locator /64s to it; NVEs default-route to
// the fabric. Datapaths are opened with cfgA/cfgB and attached.
func newTopo(t testing.TB, cfgA, cfgB Config) *topo {
	t.Helper()
	testutil.Privileged(t)
	sfx := testutil.Suffix()
	tp := &topo{fab: testutil.NewNetNS(t, "ilafab-"+sfx)}
	quietNS(t, tp.fab, true)
	hf := tp.fab.Handle(t)
	mk := func(name string, cfg Config, idx uint64) *nve {
		n := &nve{
			ns:         testutil.NewNetNS(t, "ilanve"+name+"-"+sfx),
			task:       testutil.NewNetNS(t, "ilatask"+name+"-"+sfx),
			id:         ila.Identifier(0x2000_0000_0000_0087 | idx<<16),
			uplinkName: "up",
			taskMAC:    ila.MAC{0x02, 0x7a, 0, 0, 0, byte(idx)},
		}
		quietNS(t, n.ns, true)
		quietNS(t, n.task, false)
		hn, ht := n.ns.Handle(t), n.task.Handle(t)
		// fabric <-> NVE uplink
		fl, ul := testutil.Veth(t, tp.fab, "f"+name, n.ns, "up")
		addAddr(t, hf, fl, fmt.Sprintf("fd00:%d::1/64", idx))
		addAddr(t, hn, ul, fmt.Sprintf("fd00:%d::2/64", idx))
		addRoute(t, hn, ul, "", fmt.Sprintf("fd00:%d::1", idx))
		for i := range itDomains {
			loc := ila.Locator(0x2001_0db8_0000_0000 | idx<<8 | uint64(i))
			n.locs = append(n.locs, loc)
			addRoute(t, hf, fl, loc.Prefix().String(), fmt.Sprintf("fd00:%d::2", idx))
		}
		// NVE <-> task; the NVE end carries the anycast gateway MAC.
		tl, el := testutil.Veth(t, n.ns, "t1", n.task, "eth0")
		must(t, hn.LinkSetHardwareAddr(tl, gatewayHW()))
		must(t, ht.LinkSetHardwareAddr(el, net.HardwareAddr(n.taskMAC[:])))
		n.taskIfidx = tl.Attrs().Index
		for i := range itDomains {
			addAddr(t, ht, el, netip.PrefixFrom(n.sir(i), 64).String())
		}
		d, err := Open(cfg)
		if err != nil {
			if errors.Is(err, ErrNotSupported) {
				t.Skipf("kernel: %v", err)
			}
			t.Fatalf("open: %+v", err)
		}
		n.d = d
		t.Cleanup(func() { n.d.Close() })
		return n
	}
	tp.a = mk("a", cfgA, 1)
	tp.b = mk("b", cfgB, 2)
	for _, pair := range [][2]*nve{{tp.a, tp.b}, {tp.b, tp.a}} {
		self, peer := pair[0], pair[1]
		for i, dom := range itDomains {
			must(t, self.d.AddLocator(self.locs[i], dom))
			l := Local{SIR: dom.SIR, Identifier: self.id, Ifindex: self.taskIfidx}
			if self == tp.a {
				l.MAC = self.taskMAC // A: MAC known (bpf_redirect); B: resolved by bpf_redirect_neigh
			}
			must(t, self.d.UpsertLocal(l))
			must(t, self.d.UpsertMapping(ila.Mapping{SIR: dom.SIR, Identifier: self.id, Locator: self.locs[i], Csum: dom.Csum}))
			must(t, self.d.UpsertMapping(ila.Mapping{SIR: dom.SIR, Identifier: peer.id, Locator: peer.locs[i], Csum: dom.Csum}))
			// In the product the ND emulator answers the task's neighbour
			// solicitations for SIR addresses with the gateway MAC; here a
			// static neighbour entry does that job.
			ht := self.task.Handle(t)
			el, err := ht.LinkByName("eth0")
			must(t, err)
			must(t, ht.NeighAdd(&netlink.Neigh{LinkIndex: el.Attrs().Index, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT,
				IP: peer.sir(i).AsSlice(), HardwareAddr: gatewayHW()}))
		}
		must(t, self.d.Attach(Attachment{Ifname: "t1", NetNS: self.ns.Path, Role: RoleTask}))
		must(t, self.d.Attach(Attachment{Ifname: "up", NetNS: self.ns.Path, Role: RoleUplink}))
	}
	testutil.WaitOperUp(t, tp.fab, "fa", "fb")
	for _, n := range []*nve{tp.a, tp.b} {
		testutil.WaitOperUp(t, n.ns, "up", "t1")
		testutil.WaitOperUp(t, n.task, "eth0")
	}
	return tp
}

// capture is an AF_PACKET socket on one interface of a namespace that
// records IPv6 frames with their "checksum not ready" (CHECKSUM_PARTIAL)
// status.
type capture struct {
	fd int
}

type captured struct {
	frame   []byte
	partial bool
}

func newCapture(t *testing.T, ns *testutil.NetNS, ifname string) *capture {
	t.Helper()
	c := &capture{fd: -1}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL)) // ETH_P_ALL: protocol taps do not see outgoing frames
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	if c.fd >= 0 {
		t.Cleanup(func() { unix.Close(c.fd) })
	}
	must(t, err)
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// drain returns the frames captured so far.
func (c *capture) drain(t *testing.T) []captured {
	t.Helper()
	var out []captured
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		must(t, err)
		cp := captured{frame: append([]byte(nil), buf[:n]...)}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		must(t, err)
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
				cp.partial = binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
			}
		}
		out = append(out, cp)
	}
}

// checkWire asserts that every TCP/UDP frame between the two tasks on the
// fabric carries the SIR source and the ILA destination, with a transport
// checksum valid from scratch (after emulating the offload a NIC would do
// for CHECKSUM_PARTIAL frames). Returns the number checked.
func checkWire(t *testing.T, frames []captured, dom int, src, dst *nve) int {
	t.Helper()
	wantDst, err := itDomains[dom].ToILA(dst.sir(dom), dst.locs[dom])
	must(t, err)
	n, partial := 0, 0
	defer func() {
		t.Logf("checked %d frames %s -> %s on the wire, %d of them CHECKSUM_PARTIAL", n, src.sir(dom), wantDst, partial)
	}()
	for _, c := range frames {
		p, err := testutil.Parse(c.frame)
		if err != nil || (p.Proto != ila.ProtoTCP && p.Proto != ila.ProtoUDP) {
			continue
		}
		if p.Src != src.sir(dom) {
			continue
		}
		n++
		if p.Dst != wantDst {
			t.Errorf("on the wire: dst %s, want ILA address %s", p.Dst, wantDst)
			continue
		}
		seg := p.L4
		if c.partial {
			partial++
			seg = testutil.CompleteOffload(p.Proto, seg)
		}
		if !ila.VerifyTransportChecksum(p.Proto, p.Src, p.Dst, seg) {
			t.Errorf("on the wire: %s->%s proto %d partial=%v: transport checksum invalid", p.Src, p.Dst, p.Proto, c.partial)
		}
	}
	return n
}

func udpPair(t testing.TB, from, to *nve, dom int, port int) (snd *net.UDPConn, rcv *net.UDPConn) {
	t.Helper()
	must(t, to.task.Do(func() error {
		var err error
		rcv, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.sir(dom), uint16(port))))
		return err
	}))
	t.Cleanup(func() { rcv.Close() })
	must(t, from.task.Do(func() error {
		var err error
		snd, err = net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from.sir(dom), 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.sir(dom), uint16(port))))
		return err
	}))
	t.Cleanup(func() { snd.Close() })
	return snd, rcv
}

// udpRoundTrip sends msg from -> to and checks it arrives from the SIR
// source address.
func udpRoundTrip(t *testing.T, snd, rcv *net.UDPConn, from netip.Addr, msg string) {
	t.Helper()
	if _, err := snd.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	must(t, rcv.SetReadDeadline(time.Now().Add(2*time.Second)))
	buf := make([]byte, 2048)
	n, ap, err := rcv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("receive %q: %v", msg, err)
	}
	if ap.Addr().Unmap() != from || string(buf[:n]) != msg {
		t.Errorf("received %q from %s, want %q from SIR %s", buf[:n], ap.Addr(), msg, from)
	}
}

func TestIntegrationTraffic(t *testing.T) {
	tp := newTopo(t, Config{MaxMappings: 1024}, Config{MaxMappings: 1024})
	capA, capB := newCapture(t, tp.fab, "fa"), newCapture(t, tp.fab, "fb")
	for dom := range itDomains {
		t.Run(itDomains[dom].Name+"/udp", func(t *testing.T) {
			ab, atB := udpPair(t, tp.a, tp.b, dom, 5000)
			ba, atA := udpPair(t, tp.b, tp.a, dom, 5001)
			for i := 0; i < 5; i++ {
				udpRoundTrip(t, ab, atB, tp.a.sir(dom), fmt.Sprintf("a->b %d", i))
				udpRoundTrip(t, ba, atA, tp.b.sir(dom), fmt.Sprintf("b->a %d %s", i, "odd"))
			}
			if n := checkWire(t, capB.drain(t), dom, tp.a, tp.b); n < 5 {
				t.Errorf("captured %d a->b datagrams on the fabric, want >= 5", n)
			}
			if n := checkWire(t, capA.drain(t), dom, tp.b, tp.a); n < 5 {
				t.Errorf("captured %d b->a datagrams on the fabric, want >= 5", n)
			}
		})
		t.Run(itDomains[dom].Name+"/tcp", func(t *testing.T) {
			var ln net.Listener
			must(t, tp.b.task.Do(func() error {
				var err error
				ln, err = net.Listen("tcp6", netip.AddrPortFrom(tp.b.sir(dom), 8080).String())
				return err
			}))
			defer ln.Close()
			var wg sync.WaitGroup
			var srvErr error
			var peer net.Addr
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := ln.Accept()
				if err != nil {
					srvErr = err
					return
				}
				defer c.Close()
				peer = c.RemoteAddr()
				_, srvErr = io.Copy(c, c) // echo
			}()
			var c net.Conn
			must(t, tp.a.task.Do(func() error {
				d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(tp.a.sir(dom), 0))}
				var err error
				c, err = d.Dial("tcp6", netip.AddrPortFrom(tp.b.sir(dom), 8080).String())
				return err
			}))
			must(t, c.SetDeadline(time.Now().Add(5*time.Second)))
			msg := make([]byte, 64<<10)
			for i := range msg {
				msg[i] = byte(i * 7)
			}
			go func() { _, _ = c.Write(msg); c.(*net.TCPConn).CloseWrite() }()
			got, err := io.ReadAll(c)
			c.Close()
			must(t, err)
			wg.Wait()
			if srvErr != nil {
				t.Fatal(srvErr)
			}
			if !cmp.Equal(msg, got) {
				t.Errorf("echo returned %d bytes, want the %d sent", len(got), len(msg))
			}
			if ap := peer.(*net.TCPAddr).AddrPort().Addr().Unmap(); ap != tp.a.sir(dom) {
				t.Errorf("server saw peer %s, want SIR %s", ap, tp.a.sir(dom))
			}
			// How many segments carry 64 KiB depends on GSO and on how the
			// sender's writes are split; a handshake, data and FIN are at
			// least 3 each way, every one of them checked by checkWire.
			if n := checkWire(t, capB.drain(t), dom, tp.a, tp.b); n < 3 {
				t.Errorf("captured %d a->b segments, want >= 3", n)
			}
			if n := checkWire(t, capA.drain(t), dom, tp.b, tp.a); n < 3 {
				t.Errorf("captured %d b->a segments, want >= 3", n)
			}
		})
	}
	for _, n := range []*nve{tp.a, tp.b} {
		s, err := n.d.Stats()
		must(t, err)
		if s.Translated == 0 || s.Delivered == 0 {
			t.Errorf("stats: translated %d delivered %d, want both > 0", s.Translated, s.Delivered)
		}
		if s.Counters["drop_spoofed_source"]+s.Counters["drop_error"]+s.Counters["drop_malformed"] != 0 {
			t.Errorf("unexpected drops: %v", s.Dropped)
		}
	}
}

// TestIntegrationRouterMiss: NVE A has no mapping for B, passes the packet
// untranslated (MissPass) and reports the miss; the ILA-R in the fabric
// translates it with its full table.
func TestIntegrationRouterMiss(t *testing.T) {
	tp := newTopo(t, Config{MaxMappings: 1024}, Config{MaxMappings: 1024})
	r, err := Open(Config{MaxMappings: 1024, Router: true})
	must(t, err)
	t.Cleanup(func() { r.Close() })
	const dom = 0
	for _, n := range []*nve{tp.a, tp.b} {
		must(t, r.AddDomain(itDomains[dom]))
		must(t, r.UpsertMapping(ila.Mapping{SIR: itDomains[dom].SIR, Identifier: n.id, Locator: n.locs[dom], Csum: itDomains[dom].Csum}))
	}
	for _, ifn := range []string{"fa", "fb"} {
		must(t, r.Attach(Attachment{Ifname: ifn, NetNS: tp.fab.Path, Role: RoleRouter}))
	}
	must(t, tp.a.d.DeleteMapping(itDomains[dom].SIR, tp.b.id))
	capB := newCapture(t, tp.fab, "fb")
	ab, atB := udpPair(t, tp.a, tp.b, dom, 6000)
	for i := 0; i < 3; i++ {
		udpRoundTrip(t, ab, atB, tp.a.sir(dom), fmt.Sprintf("via ILA-R %d", i))
	}
	if n := checkWire(t, capB.drain(t), dom, tp.a, tp.b); n != 3 {
		t.Errorf("captured %d translated datagrams towards B, want 3", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	m, err := tp.a.d.ReadMiss(ctx)
	must(t, err)
	if diff := cmp.Diff(Miss{SIR: itDomains[dom].SIR, Identifier: tp.b.id}, m); diff != "" {
		t.Errorf("miss (-want +got)\n%s", diff)
	}
	sa, err := tp.a.d.Stats()
	must(t, err)
	sr, err := r.Stats()
	must(t, err)
	if sa.Counters["pass_miss"] != 3 || sr.RouterTranslated != 3 {
		t.Errorf("NVE A pass_miss %d, router translated %d; want 3 and 3", sa.Counters["pass_miss"], sr.RouterTranslated)
	}
	// Now a mapping B does not have: the router drops and counts.
	ghost := ila.Identifier(0x2000_0000_0099_0087)
	gs := itDomains[dom].SIR.Addr(ghost)
	var snd *net.UDPConn
	must(t, tp.a.task.Do(func() error {
		var err error
		snd, err = net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tp.a.sir(dom), 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(gs, 9)))
		return err
	}))
	defer snd.Close()
	// Address unreachable is a soft error for UDP: only reported with
	// IPV6_RECVERR.
	rc, err := snd.SyscallConn()
	must(t, err)
	var serr error
	must(t, rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1) }))
	must(t, serr)
	ht := tp.a.task.Handle(t)
	el, err := ht.LinkByName("eth0")
	must(t, err)
	must(t, ht.NeighAdd(&netlink.Neigh{LinkIndex: el.Attrs().Index, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT,
		IP: gs.AsSlice(), HardwareAddr: gatewayHW()}))
	_, err = snd.Write([]byte("nobody"))
	must(t, err)
	deadline := time.Now().Add(2 * time.Second)
	for {
		sr, err = r.Stats()
		must(t, err)
		if sr.Dropped["router_miss"] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sr.Dropped["router_miss"] != 1 {
		t.Errorf("router drop_router_miss %d, want 1", sr.Dropped["router_miss"])
	}
	// The router answered with ICMPv6 address unreachable, sent to task A's
	// ILA address; A's connected socket reports it.
	must(t, snd.SetReadDeadline(time.Now().Add(2*time.Second)))
	if _, err := snd.Read(make([]byte, 64)); !errors.Is(err, unix.EHOSTUNREACH) {
		sa, _ := tp.a.d.Stats()
		sr, _ := r.Stats()
		t.Errorf("task A read after the miss: %v, want EHOSTUNREACH (ICMPv6 code 3)\nrouter %v\nA %v", err, sr.Counters, sa.Counters)
	}
	if sr.Counters["router_icmp_sent"] != 1 {
		t.Errorf("router_icmp_sent %d, want 1", sr.Counters["router_icmp_sent"])
	}
}

// TestIntegrationRestart replaces NVE A's loader while B's task receives a
// steady UDP stream from A's task: pinned maps and links keep forwarding
// while no process holds the datapath, and the new process adopts them.
func TestIntegrationRestart(t *testing.T) {
	pin := testutil.BPFFS(t)
	cfgA := Config{PinPath: pin, MaxMappings: 1024}
	tp := newTopo(t, cfgA, Config{MaxMappings: 1024})
	const dom = 0
	ab, atB := udpPair(t, tp.a, tp.b, dom, 7000)
	must(t, atB.SetReadBuffer(4<<20))
	// Resolve the neighbours on the path first: otherwise the stream's
	// first packets wait in a neighbour queue (sometimes for a
	// retransmitted solicitation) and one can overflow it, which is not
	// what this test is about.
	udpRoundTrip(t, ab, atB, tp.a.sir(dom), "warm-up")

	var (
		wg       sync.WaitGroup
		received atomic.Int64
		recvErr  error
	)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			_ = atB.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, err := atB.Read(buf)
			if err != nil {
				select {
				case <-stop:
					return
				default:
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				recvErr = err
				return
			}
			received.Add(1)
		}
	}()
	sent := 0
	phase := func(name string) {
		sb, _ := tp.b.d.Stats()
		t.Logf("%s: sent %d, received %d, B delivered %d", name, sent, received.Load(), sb.Delivered)
	}
	send := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if _, err := ab.Write([]byte(fmt.Sprintf("seq %d", sent))); err != nil {
				t.Fatalf("send: %v", err)
			}
			sent++
			time.Sleep(time.Millisecond)
		}
	}
	send(200 * time.Millisecond)
	phase("before restart")
	before, err := tp.a.d.Stats()
	must(t, err)
	must(t, tp.a.d.Close()) // the daemon exits; pins stay
	send(300 * time.Millisecond)
	phase("while no loader runs")
	d2, err := Open(cfgA) // the new daemon adopts the maps
	must(t, err)
	tp.a.d = d2
	// Its state is the old one.
	var ids []ila.Identifier
	must(t, d2.Mappings(func(m ila.Mapping) bool { ids = append(ids, m.Identifier); return true }))
	if len(ids) != 2*len(itDomains) {
		t.Errorf("adopted %d mappings, want %d", len(ids), 2*len(itDomains))
	}
	must(t, d2.Attach(Attachment{Ifname: "t1", NetNS: tp.a.ns.Path, Role: RoleTask}))
	must(t, d2.Attach(Attachment{Ifname: "up", NetNS: tp.a.ns.Path, Role: RoleUplink}))
	send(300 * time.Millisecond)
	phase("after restart")
	after, err := d2.Stats()
	must(t, err)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if recvErr != nil {
		t.Fatal(recvErr)
	}
	t.Logf("sent %d, received %d across the restart", sent, received.Load())
	if int(received.Load()) != sent {
		sb, _ := tp.b.d.Stats()
		t.Errorf("received %d of %d datagrams across the restart\nA: %v\nB: %v", received.Load(), sent, after.Counters, sb.Counters)
	}
	if after.Translated < before.Translated+uint64(sent)/2 {
		t.Errorf("translated counter went from %d to %d over %d packets: counters not adopted", before.Translated, after.Translated, sent)
	}
	// Only one program per hook: the pinned links were updated, not doubled.
	ents, err := os.ReadDir(filepath.Join(pin, "links"))
	must(t, err)
	if len(ents) != 1 {
		t.Errorf("%d pinned links, want 1 (the uplink; the task port has clsact filters)", len(ents))
	}
	must(t, d2.Unpin())
}

// TestIntegrationClsactFallback runs the traffic through the clsact + bpf
// filter attachment used on kernels without tcx.
func TestIntegrationClsactFallback(t *testing.T) {
	tp := newTopo(t, Config{MaxMappings: 1024}, Config{MaxMappings: 1024})
	for _, n := range []*nve{tp.a, tp.b} {
		for _, a := range []Attachment{{Ifname: "t1", NetNS: n.ns.Path, Role: RoleTask}, {Ifname: "up", NetNS: n.ns.Path, Role: RoleUplink}} {
			must(t, n.d.Detach(a))
			n.d.forceClsact = true
			must(t, n.d.Attach(a))
		}
		if len(n.d.links) != 0 || len(n.d.filters) != 3 {
			t.Fatalf("%d tcx links and %d filters, want 0 and 3", len(n.d.links), len(n.d.filters))
		}
	}
	const dom = 1 // adjust-transport
	before, err := tp.a.d.Stats()
	must(t, err)
	capB := newCapture(t, tp.fab, "fb")
	ab, atB := udpPair(t, tp.a, tp.b, dom, 5100)
	for i := 0; i < 3; i++ {
		udpRoundTrip(t, ab, atB, tp.a.sir(dom), fmt.Sprintf("clsact %d", i))
	}
	if n := checkWire(t, capB.drain(t), dom, tp.a, tp.b); n != 3 {
		t.Errorf("captured %d datagrams, want 3", n)
	}
	after, err := tp.a.d.Stats()
	must(t, err)
	if after.Translated-before.Translated != 3 {
		t.Errorf("translated %d packets through the filters, want 3", after.Translated-before.Translated)
	}
	for _, n := range []*nve{tp.a, tp.b} {
		for _, a := range []Attachment{{Ifname: "t1", NetNS: n.ns.Path, Role: RoleTask}, {Ifname: "up", NetNS: n.ns.Path, Role: RoleUplink}} {
			must(t, n.d.Detach(a))
		}
	}
	// Without the filters nothing translates: the datagram is routed
	// natively nowhere (no SIR routes), so it never arrives.
	_, err = ab.Write([]byte("no datapath"))
	must(t, err)
	must(t, atB.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	if _, err := atB.Read(make([]byte, 64)); err == nil {
		t.Error("datagram delivered with the filters detached")
	}
}

// gatewayHW is ila.GatewayMAC as a net.HardwareAddr.
func gatewayHW() net.HardwareAddr { m := ila.GatewayMAC(); return m[:] }
