package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// tc action codes returned by the programs.
const (
	actOK       = 0
	actShot     = 2
	actRedirect = 7
)

var (
	nextHopMAC = ila.MAC{0x02, 0, 0, 0, 0, 0xbb} // fabric router, permanent neighbour of upl0
	uplinkMAC  = ila.MAC{0x02, 0, 0, 0, 0, 0xaa}
	taskMAC    = ila.MAC{0x02, 0, 0, 0, 0, 0x11}
	nextHop    = netip.MustParseAddr("fd00::2")

	idLocal    = ila.Identifier(0x2000_0000_0001_0087) // attached here
	idRemote   = ila.Identifier(0x2000_0000_0002_0087) // on another NVE
	idMoved    = ila.Identifier(0x2000_0000_0003_0087) // moved away: in flight
	idExpired  = ila.Identifier(0x2000_0000_0004_0087) // moved away, deadline passed
	idMissing  = ila.Identifier(0x2000_0000_0005_0087) // no mapping
	idLocalMAC = ila.Identifier(0x2000_0000_0006_0087) // attached here, MAC known
)

// modeEnv is one domain per checksum mode: its SIR prefix, this node's
// locator for it, a remote NVE's locator and the in-flight target.
type modeEnv struct {
	mode                 ila.CsumMode
	dom                  ila.Domain
	own, remote, newHome ila.Locator
}

func envFor(m ila.CsumMode) modeEnv {
	i := uint64(m)
	return modeEnv{
		mode:    m,
		dom:     ila.Domain{Name: m.String(), SIR: ila.SIRPrefix(0x3333_0000_0000_0001 + i), Csum: m},
		own:     ila.Locator(0x2001_0db8_ff00_0a00 + i),
		remote:  ila.Locator(0x2001_0db8_ff00_0b00 + i),
		newHome: ila.Locator(0x2001_0db8_ff00_0c00 + i),
	}
}

func (e modeEnv) sir(id ila.Identifier) netip.Addr { return e.dom.SIR.Addr(id) }

func (e modeEnv) ila(t testing.TB, id ila.Identifier, loc ila.Locator) netip.Addr {
	t.Helper()
	a, err := ila.SIRToILA(e.sir(id), loc, e.mode)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testbed is a Datapath whose programs are test-run inside a fresh network
// namespace with two veth task ports and an uplink routing the locator
// space to a permanent neighbour (so FIB lookups succeed).
type testbed struct {
	d                   *Datapath
	ns                  *testutil.NetNS
	task, task2, uplink int
}

func newTestbed(t testing.TB, cfg Config) *testbed {
	t.Helper()
	testutil.Privileged(t)
	if cfg.MaxMappings == 0 {
		cfg.MaxMappings = 4096
	}
	if cfg.MaxLocal == 0 {
		cfg.MaxLocal = 1024
	}
	d, err := Open(cfg)
	if err != nil {
		if errors.Is(err, ErrNotSupported) {
			t.Skipf("kernel: %v", err)
		}
		t.Fatalf("open: %+v", err)
	}
	t.Cleanup(func() { d.Close() })
	ns := testutil.NewNetNS(t, "dpt-"+testutil.Suffix())
	h := ns.Handle(t)
	tb := &testbed{d: d, ns: ns}
	mk := func(name string, mac ila.MAC) int {
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.HardwareAddr = net.HardwareAddr(mac[:])
		// No dummy driver everywhere: a veth pair with both ends up.
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
			t.Fatalf("veth %s: %v", name, err)
		}
		if p, err := h.LinkByName(name + "p"); err != nil || h.LinkSetUp(p) != nil {
			t.Fatalf("veth %sp up: %v", name, err)
		}
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Index
	}
	for _, k := range []string{"net/ipv6/conf/all/forwarding", "net/ipv6/conf/default/forwarding"} {
		if err := ns.Sysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	tb.task = mk("tsk0", ila.GatewayMAC())
	tb.task2 = mk("tsk1", ila.GatewayMAC())
	tb.uplink = mk("upl0", uplinkMAC)
	upl, _ := h.LinkByIndex(tb.uplink)
	addr, _ := netlink.ParseAddr("fd00::1/64")
	addr.Flags = 0x02 // IFA_F_NODAD
	if err := h.AddrAdd(upl, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: tb.uplink, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT,
		IP: nextHop.AsSlice(), HardwareAddr: net.HardwareAddr(nextHopMAC[:])}); err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("2001:db8:ff00::/40")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: tb.uplink, Dst: dst, Gw: nextHop.AsSlice()}); err != nil {
		t.Fatal(err)
	}
	for _, m := range ila.CsumModes {
		e := envFor(m)
		must(t, d.AddLocator(e.own, e.dom))
		must(t, d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idLocal, Ifindex: tb.task}))
		must(t, d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idLocalMAC, Ifindex: tb.task2, MAC: taskMAC}))
		must(t, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idLocal, Locator: e.own, Csum: m}))
		must(t, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idLocalMAC, Locator: e.own, Csum: m}))
		must(t, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idRemote, Locator: e.remote, Csum: m}))
		must(t, d.UpsertInFlight(ila.Mapping{SIR: e.dom.SIR, Identifier: idMoved, Locator: e.newHome, Csum: m}, time.Now().Add(time.Hour)))
		must(t, d.UpsertInFlight(ila.Mapping{SIR: e.dom.SIR, Identifier: idExpired, Locator: e.newHome, Csum: m}, time.Now().Add(-time.Second)))
	}
	return tb
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// skbCtx builds a struct __sk_buff with ingress_ifindex set (offset 36).
func skbCtx(ingress int) []byte {
	b := make([]byte, 192)
	binary.NativeEndian.PutUint32(b[36:], uint32(ingress))
	return b
}

// run test-runs prog on frame as if it arrived on ifindex, inside the
// testbed's namespace; returns the action and the output frame.
func (tb *testbed) run(t testing.TB, prog *ebpf.Program, ingress int, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	var ret uint32
	err := tb.ns.Do(func() error {
		var err error
		ret, err = prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out, Context: skbCtx(ingress)})
		return err
	})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret, out
}

func (tb *testbed) stats(t testing.TB) map[string]uint64 {
	t.Helper()
	s, err := tb.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.Counters
}

// delta returns the counters that changed. A redirect through the
// next-hop cache counts as fib_redirect here; TestNextHopCache checks the
// cache itself.
func delta(before, after map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	if n, ok := d["nh_cache_hit"]; ok {
		d["fib_redirect"] += n
		delete(d, "nh_cache_hit")
	}
	return d
}

func TestNextHopCache(t *testing.T) {
	tb := newTestbed(t, Config{})
	e := envFor(ila.CsumNeutralMap)
	pkt := func(n int) []byte {
		return testutil.Packet{EthDst: ila.GatewayMAC(), Src: e.sir(idLocal), Dst: e.sir(idRemote), Proto: ila.ProtoUDP,
			L4: testutil.UDP(1, 2, make([]byte, n))}.Frame()
	}
	var got []string
	for _, n := range []int{100, 100, 1500} {
		before := tb.stats(t)
		act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, pkt(n))
		d := tb.stats(t)
		got = append(got, fmt.Sprintf("act=%d fib=%d cache=%d stack=%d", act, d["fib_redirect"]-before["fib_redirect"],
			d["nh_cache_hit"]-before["nh_cache_hit"], d["fib_stack"]-before["fib_stack"]))
	}
	want := []string{
		"act=7 fib=1 cache=0 stack=0", // lookup, cached
		"act=7 fib=0 cache=1 stack=0", // cached next hop
		"act=0 fib=0 cache=0 stack=1", // over the cached MTU: full lookup says FRAG_NEEDED, the stack sends Packet Too Big
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	var nh xlatIlaNh
	var found bool
	var slot uint32
	it := tb.d.objs.IlaNhCache.Iterate()
	for it.Next(&slot, &nh) {
		if nh.Dst64 == ne(uint64(e.remote)) {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("no next-hop cache entry for %s", e.remote)
	}
	if nh.Mtu != 1500 || nh.Ifindex != uint32(tb.uplink) || ila.MAC(nh.Dmac) != nextHopMAC || ila.MAC(nh.Smac) != uplinkMAC {
		t.Errorf("cached next hop %+v, want mtu 1500 via ifindex %d %s -> %s", nh, tb.uplink, uplinkMAC, nextHopMAC)
	}
}

// l4 builds a transport segment of the given protocol (checksum unset).
func l4(proto uint8) []byte {
	switch proto {
	case ila.ProtoTCP:
		return testutil.TCP(40000, 80, 1, 0, testutil.TCPSyn, []byte("odd-length payload"))
	case ila.ProtoUDP:
		return testutil.UDP(40000, 53, []byte("some udp payload"))
	}
	return testutil.ICMPv6(128, 0, testutil.Echo(7, 1, []byte("ping!")))
}

var protos = []uint8{ila.ProtoTCP, ila.ProtoUDP, ila.ProtoICMPv6}

func protoName(p uint8) string {
	return map[uint8]string{ila.ProtoTCP: "tcp", ila.ProtoUDP: "udp", ila.ProtoICMPv6: "icmpv6"}[p]
}

// wireCsum is how the transport checksum of a packet with SIR source src
// and ILA destination dst (SIR destination sirDst) is valid on the wire
// under mode: no-action leaves it relative to the SIR address.
func wireCsumDst(mode ila.CsumMode, sirDst, ilaDst netip.Addr) netip.Addr {
	if mode == ila.CsumNoAction {
		return sirDst
	}
	return ilaDst
}

// frameWithCsumFor builds p's frame with the transport checksum computed
// from scratch as if the destination were csumDst.
func frameWithCsumFor(p testutil.Packet, csumDst netip.Addr) []byte {
	q := p
	q.Dst = csumDst
	seg := q.Frame()
	f := p
	f.Csum = testutil.CsumAsIs
	pr, err := testutil.Parse(seg)
	if err != nil {
		panic(err)
	}
	f.L4 = pr.L4
	return f.Frame()
}

func TestTaskIngressTranslate(t *testing.T) {
	tb := newTestbed(t, Config{})
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		for _, proto := range protos {
			t.Run(mode.String()+"/"+protoName(proto), func(t *testing.T) {
				src, sirDst := e.sir(idLocal), e.sir(idRemote)
				ilaDst := e.ila(t, idRemote, e.remote)
				in := testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: src, Dst: sirDst, Proto: proto, L4: l4(proto), HopLimit: 64}
				// Expected: from scratch, not by undoing the program's work.
				want := in
				want.EthDst, want.EthSrc, want.Dst, want.HopLimit = nextHopMAC, uplinkMAC, ilaDst, 63
				wantFrame := frameWithCsumFor(want, wireCsumDst(mode, sirDst, ilaDst))

				before := tb.stats(t)
				act, out := tb.run(t, tb.d.objs.IlaTask, tb.task, in.Frame())
				if act != actRedirect {
					t.Errorf("action %d, want redirect", act)
				}
				out = out[:len(wantFrame)]
				if diff := cmp.Diff(wantFrame, out); diff != "" {
					t.Errorf("frame (-want +got)\n%s", diff)
				}
				p, err := testutil.Parse(out)
				must(t, err)
				if got := ila.VerifyTransportChecksum(proto, p.Src, p.Dst, p.L4); got != (mode != ila.CsumNoAction) {
					t.Errorf("checksum valid on the wire = %v, want %v", got, mode != ila.CsumNoAction)
				}
				if diff := cmp.Diff(map[string]uint64{"rx_task": 1, "translated": 1, "fib_redirect": 1}, delta(before, tb.stats(t))); diff != "" {
					t.Errorf("counters (-want +got)\n%s", diff)
				}
			})
		}
	}
}

func TestTaskIngressExtensionHeaders(t *testing.T) {
	tb := newTestbed(t, Config{})
	e := envFor(ila.CsumAdjustTransport)
	src, sirDst := e.sir(idLocal), e.sir(idRemote)
	ilaDst := e.ila(t, idRemote, e.remote)
	payload := l4(ila.ProtoUDP)
	tests := []struct {
		name string
		ext  []testutil.Ext
		// whether the (first-fragment) transport checksum must be patched
		patched bool
	}{
		{"hop-by-hop+dstopts", []testutil.Ext{{Proto: testutil.ExtHopByHop}, {Proto: testutil.ExtDestOpts, Data: make([]byte, 12)}}, true},
		{"routing", []testutil.Ext{{Proto: testutil.ExtRouting, Data: []byte{0, 0}}}, true},
		{"first-fragment", []testutil.Ext{{Proto: testutil.ExtFragment, More: true, ID: 9}}, true},
		{"later-fragment", []testutil.Ext{{Proto: testutil.ExtFragment, FragOffset: 3, ID: 9}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: src, Dst: sirDst, Proto: ila.ProtoUDP, L4: payload, Ext: tc.ext}
			inFrame := in.Frame()
			want := in
			want.EthDst, want.EthSrc, want.Dst, want.HopLimit = nextHopMAC, uplinkMAC, ilaDst, 63
			want.Csum = testutil.CsumAsIs
			pin, err := testutil.Parse(inFrame)
			must(t, err)
			want.L4 = append([]byte(nil), pin.L4...)
			if tc.patched {
				// ila's incremental patch; for whole datagrams also from scratch below.
				must(t, ila.AdjustTransport(ila.ProtoUDP, sirDst, ilaDst, want.L4))
			}
			act, out := tb.run(t, tb.d.objs.IlaTask, tb.task, inFrame)
			if act != actRedirect {
				t.Errorf("action %d, want redirect", act)
			}
			wf := want.Frame()
			if diff := cmp.Diff(wf, out[:len(wf)]); diff != "" {
				t.Errorf("frame (-want +got)\n%s", diff)
			}
			if tc.name != "first-fragment" && tc.patched {
				p, err := testutil.Parse(out)
				must(t, err)
				if !ila.VerifyTransportChecksum(ila.ProtoUDP, p.Src, p.Dst, p.L4) {
					t.Error("checksum not valid from scratch over the ILA address")
				}
			}
		})
	}
}

func TestTaskIngressPolicies(t *testing.T) {
	tb := newTestbed(t, Config{})
	e := envFor(ila.CsumNeutralMap)
	src := e.sir(idLocal)
	udp := func(s, d netip.Addr) testutil.Packet {
		return testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: s, Dst: d, Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
	}
	ll := netip.MustParseAddr("fe80::1")
	ns := testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: ll, Dst: e.sir(idRemote), HopLimit: 255, Proto: ila.ProtoICMPv6,
		L4: testutil.ICMPv6(135, 0, append(make([]byte, 4), e.sir(idRemote).AsSlice()...))}
	// The same solicitation to the target's solicited-node address (address
	// resolution), and one to a non-ILA global address.
	nsMcast := ns
	nsMcast.Dst = netip.MustParseAddr("ff02::1:ff00:87")
	nsOther := ns
	nsOther.Dst = netip.MustParseAddr("2001:db8:1::1")
	localWant := udp(src, e.sir(idLocalMAC))
	localWant.EthDst, localWant.EthSrc, localWant.HopLimit = taskMAC, ila.GatewayMAC(), 63

	tests := []struct {
		name     string
		in       testutil.Packet
		ingress  int
		act      uint32
		want     *testutil.Packet // nil: frame unchanged
		counters map[string]uint64
	}{
		{"unicast neighbour solicitation to a SIR address is not routed on", ns, tb.task, actShot, nil, map[string]uint64{"rx_task": 1, "drop_nd_sir": 1}},
		{"multicast neighbour solicitation passes untouched", nsMcast, tb.task, actOK, nil, map[string]uint64{"rx_task": 1, "pass_nd": 1}},
		{"unicast neighbour solicitation to a non-ILA address passes", nsOther, tb.task, actOK, nil, map[string]uint64{"rx_task": 1, "pass_nd": 1}},
		{"spoofed source", udp(e.sir(idRemote), e.sir(idLocal)), tb.task, actShot, nil, map[string]uint64{"rx_task": 1, "drop_spoofed_source": 1}},
		{"source bound to another port", udp(e.sir(idLocalMAC), e.sir(idRemote)), tb.task, actShot, nil, map[string]uint64{"rx_task": 1, "drop_spoofed_source": 1}},
		{"link-local source to a SIR address", udp(ll, e.sir(idRemote)), tb.task, actShot, nil, map[string]uint64{"rx_task": 1, "drop_spoofed_source": 1}},
		{"link-local to link-local", udp(ll, netip.MustParseAddr("fe80::2")), tb.task, actOK, nil, map[string]uint64{"rx_task": 1, "pass_link_local": 1}},
		{"multicast", udp(ll, netip.MustParseAddr("ff02::16")), tb.task, actOK, nil, map[string]uint64{"rx_task": 1, "pass_multicast": 1}},
		{"to locator space", udp(src, e.remote.Addr(idRemote)), tb.task, actShot, nil, map[string]uint64{"rx_task": 1, "drop_locator_dst": 1}},
		{"to a non-ILA address", udp(src, netip.MustParseAddr("2001:db8:1::1")), tb.task, actOK, nil, map[string]uint64{"rx_task": 1, "pass_not_sir": 1}},
		{"to a local task (MAC known)", udp(src, e.sir(idLocalMAC)), tb.task, actRedirect, &localWant, map[string]uint64{"rx_task": 1, "local_delivered": 1}},
		{"miss passes untranslated", udp(src, e.sir(idMissing)), tb.task, actOK, nil, map[string]uint64{"rx_task": 1, "miss": 1, "miss_reported": 1, "pass_miss": 1}},
		{"second miss is rate limited", udp(src, e.sir(idMissing)), tb.task, actOK, nil, map[string]uint64{"rx_task": 1, "miss": 1, "miss_ratelimited": 1, "pass_miss": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in.Frame()
			want := in
			if tc.want != nil {
				want = tc.want.Frame()
			}
			before := tb.stats(t)
			act, out := tb.run(t, tb.d.objs.IlaTask, tc.ingress, in)
			if act != tc.act {
				t.Errorf("action %d, want %d", act, tc.act)
			}
			if diff := cmp.Diff(want, out[:len(want)]); diff != "" {
				t.Errorf("frame (-want +got)\n%s", diff)
			}
			if diff := cmp.Diff(tc.counters, delta(before, tb.stats(t))); diff != "" {
				t.Errorf("counters (-want +got)\n%s", diff)
			}
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	m, err := tb.d.ReadMiss(ctx)
	must(t, err)
	if diff := cmp.Diff(Miss{SIR: e.dom.SIR, Identifier: idMissing}, m); diff != "" {
		t.Errorf("miss (-want +got)\n%s", diff)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	if m, err := tb.d.ReadMiss(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second ReadMiss = %v, %v; want deadline exceeded (rate limited)", m, err)
	}
}

func TestMissDropAndUnknownPass(t *testing.T) {
	tb := newTestbed(t, Config{MissPolicy: MissDrop, UnknownPolicy: UnknownPass})
	e := envFor(ila.CsumNeutralMapAuto)
	miss := testutil.Packet{EthDst: ila.GatewayMAC(), Src: e.sir(idLocal), Dst: e.sir(idMissing), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
	if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, miss.Frame()); act != actShot {
		t.Errorf("miss with MissDrop: action %d, want drop", act)
	}
	unknown := testutil.Packet{EthDst: uplinkMAC, Src: envFor(ila.CsumNoAction).sir(idRemote), Dst: e.ila(t, idMissing, e.own), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
	if act, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, unknown.Frame()); act != actOK {
		t.Errorf("unknown with UnknownPass: action %d, want pass", act)
	}
	s := tb.stats(t)
	if s["drop_miss"] != 1 || s["pass_unknown"] != 1 {
		t.Errorf("counters drop_miss=%d pass_unknown=%d, want 1 and 1", s["drop_miss"], s["pass_unknown"])
	}
}

func TestUplinkDeliver(t *testing.T) {
	tb := newTestbed(t, Config{})
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		for _, proto := range protos {
			for _, withMAC := range []bool{false, true} {
				id := idLocal
				if withMAC {
					id = idLocalMAC
				}
				t.Run(fmt.Sprintf("%s/%s/mac=%v", mode, protoName(proto), withMAC), func(t *testing.T) {
					src := envFor(mode).sir(idRemote) // the peer's SIR address
					sirDst, ilaDst := e.sir(id), e.ila(t, id, e.own)
					// As the sending NVE put it on the wire.
					in := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: src, Dst: ilaDst, Proto: proto, L4: l4(proto), HopLimit: 60}
					inFrame := frameWithCsumFor(in, wireCsumDst(mode, sirDst, ilaDst))
					want := in
					want.Dst, want.HopLimit = sirDst, 59
					if withMAC {
						want.EthDst, want.EthSrc = taskMAC, ila.GatewayMAC()
					}
					wantFrame := want.Frame() // checksum from scratch over SIR addresses

					before := tb.stats(t)
					act, out := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, inFrame)
					if act != actRedirect {
						t.Errorf("action %d, want redirect", act)
					}
					if diff := cmp.Diff(wantFrame, out[:len(wantFrame)]); diff != "" {
						t.Errorf("frame (-want +got)\n%s", diff)
					}
					if diff := cmp.Diff(map[string]uint64{"rx_uplink": 1, "delivered": 1}, delta(before, tb.stats(t))); diff != "" {
						t.Errorf("counters (-want +got)\n%s", diff)
					}
				})
			}
		}
	}
}

func TestUplinkInFlightAndUnknown(t *testing.T) {
	tb := newTestbed(t, Config{})
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		for _, proto := range protos {
			t.Run(mode.String()+"/"+protoName(proto), func(t *testing.T) {
				src := e.sir(idRemote)
				sirDst, ilaDst := e.sir(idMoved), e.ila(t, idMoved, e.own)
				newDst := e.ila(t, idMoved, e.newHome)
				in := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: src, Dst: ilaDst, Proto: proto, L4: l4(proto), HopLimit: 60}
				want := in
				want.Dst, want.HopLimit, want.EthDst, want.EthSrc = newDst, 59, nextHopMAC, uplinkMAC
				wantFrame := frameWithCsumFor(want, wireCsumDst(mode, sirDst, newDst))
				before := tb.stats(t)
				act, out := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, frameWithCsumFor(in, wireCsumDst(mode, sirDst, ilaDst)))
				if act != actRedirect {
					t.Errorf("action %d, want redirect", act)
				}
				if diff := cmp.Diff(wantFrame, out[:len(wantFrame)]); diff != "" {
					t.Errorf("frame (-want +got)\n%s", diff)
				}
				if diff := cmp.Diff(map[string]uint64{"rx_uplink": 1, "inflight_forwarded": 1, "fib_redirect": 1}, delta(before, tb.stats(t))); diff != "" {
					t.Errorf("counters (-want +got)\n%s", diff)
				}
			})
		}
		t.Run(mode.String()+"/expired-and-unknown", func(t *testing.T) {
			for _, id := range []ila.Identifier{idExpired, idMissing} {
				in := testutil.Packet{EthDst: uplinkMAC, Src: e.sir(idRemote), Dst: e.ila(t, id, e.own), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
				before := tb.stats(t)
				if act, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, in.Frame()); act != actShot {
					t.Errorf("%s: action %d, want drop", id, act)
				}
				// No mapping either: the miss is reported (pull mode
				// fetches it) and the packet dropped.
				if diff := cmp.Diff(map[string]uint64{"rx_uplink": 1, "drop_unknown": 1, "miss_reported": 1}, delta(before, tb.stats(t))); diff != "" {
					t.Errorf("%s: counters (-want +got)\n%s", id, diff)
				}
			}
		})
	}
	e := envFor(ila.CsumNeutralMap)
	t.Run("locator-space source", func(t *testing.T) {
		in := testutil.Packet{EthDst: uplinkMAC, Src: e.remote.Addr(idRemote), Dst: e.ila(t, idLocal, e.own), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
		if act, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, in.Frame()); act != actShot {
			t.Errorf("action %d, want drop", act)
		}
	})
	t.Run("not our locator", func(t *testing.T) {
		in := testutil.Packet{EthDst: uplinkMAC, Src: e.sir(idRemote), Dst: netip.MustParseAddr("fd00::1"), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
		if act, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, in.Frame()); act != actOK {
			t.Errorf("action %d, want pass", act)
		}
	})
	n, err := tb.d.ExpireInFlight(time.Now())
	must(t, err)
	if n != len(ila.CsumModes) {
		t.Errorf("ExpireInFlight deleted %d, want %d", n, len(ila.CsumModes))
	}
}

func TestICMPErrorQuoteMappedBack(t *testing.T) {
	tb := newTestbed(t, Config{})
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		t.Run(mode.String(), func(t *testing.T) {
			taskAddr := e.sir(idLocal)
			peerSIR, peerILA := e.sir(idRemote), e.ila(t, idRemote, e.remote)
			router := netip.MustParseAddr("fd00::99")
			// The packet the task sent, as it was on the wire (ILA dst).
			sent := testutil.Packet{Src: taskAddr, Dst: peerILA, Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
			sentFrame := frameWithCsumFor(sent, wireCsumDst(mode, peerSIR, peerILA))
			quoteOnWire := append([]byte(nil), sentFrame[14:]...)
			// What the task sees quoted: its packet as it sent it (SIR
			// destination, transport checksum valid for it), in every mode.
			asSent := sent
			asSent.Dst = peerSIR
			quoteForTask := asSent.Frame()[14:]

			// 1. Error built by this NVE's stack, leaving on the task port.
			in := testutil.Packet{EthDst: taskMAC, EthSrc: ila.GatewayMAC(), Src: router, Dst: taskAddr, Proto: ila.ProtoICMPv6,
				L4: testutil.ICMPv6(1, 3, append(make([]byte, 4), quoteOnWire...))}
			want := in
			want.L4 = testutil.ICMPv6(1, 3, append(make([]byte, 4), quoteForTask...))
			act, out := tb.run(t, tb.d.objs.IlaTaskEgress, tb.task, in.Frame())
			wf := want.Frame()
			if act != actOK {
				t.Errorf("egress action %d, want ok", act)
			}
			if diff := cmp.Diff(wf, out[:len(wf)]); diff != "" {
				t.Errorf("egress frame (-want +got)\n%s", diff)
			}

			// 2. Error from a fabric router, sent to the task's SIR address,
			// translated to our locator by the ILA-R, arriving on the uplink.
			in2 := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: router, Dst: e.ila(t, idLocal, e.own), Proto: ila.ProtoICMPv6,
				L4: testutil.ICMPv6(1, 3, append(make([]byte, 4), quoteOnWire...))}
			in2Frame := frameWithCsumFor(in2, wireCsumDst(mode, taskAddr, in2.Dst))
			want2 := in2
			want2.Dst, want2.HopLimit = taskAddr, 63
			want2.L4 = testutil.ICMPv6(1, 3, append(make([]byte, 4), quoteForTask...))
			act, out = tb.run(t, tb.d.objs.IlaUplink, tb.uplink, in2Frame)
			wf = want2.Frame()
			if act != actRedirect {
				t.Errorf("uplink action %d, want redirect", act)
			}
			if diff := cmp.Diff(wf, out[:len(wf)]); diff != "" {
				t.Errorf("uplink frame (-want +got)\n%s", diff)
			}
		})
	}
}

func TestRouter(t *testing.T) {
	tb := newTestbed(t, Config{Router: true})
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		for _, proto := range protos {
			t.Run(mode.String()+"/"+protoName(proto), func(t *testing.T) {
				src, sirDst := e.sir(idLocal), e.sir(idRemote)
				ilaDst := e.ila(t, idRemote, e.remote)
				in := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: src, Dst: sirDst, Proto: proto, L4: l4(proto), HopLimit: 64}
				want := in
				want.EthDst, want.EthSrc, want.Dst, want.HopLimit = nextHopMAC, uplinkMAC, ilaDst, 63
				wantFrame := frameWithCsumFor(want, wireCsumDst(mode, sirDst, ilaDst))
				act, out := tb.run(t, tb.d.objs.IlaRouter, tb.uplink, in.Frame())
				if act != actRedirect {
					t.Errorf("action %d, want redirect", act)
				}
				if diff := cmp.Diff(wantFrame, out[:len(wantFrame)]); diff != "" {
					t.Errorf("frame (-want +got)\n%s", diff)
				}
			})
		}
	}
	e := envFor(ila.CsumNeutralMap)
	before := tb.stats(t)
	miss := testutil.Packet{EthDst: uplinkMAC, Src: e.sir(idLocal), Dst: e.sir(idMissing), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
	// The miss is dropped and answered with an ICMPv6 error to the
	// sender (TestRouterMissICMP checks the error itself).
	if act, _ := tb.run(t, tb.d.objs.IlaRouter, tb.uplink, miss.Frame()); act != actRedirect {
		t.Errorf("router miss: action %d, want redirect (ICMPv6 error to the sender)", act)
	}
	foreign := testutil.Packet{EthDst: uplinkMAC, Src: e.sir(idLocal), Dst: netip.MustParseAddr("2001:db8:1::1"), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}
	if act, _ := tb.run(t, tb.d.objs.IlaRouter, tb.uplink, foreign.Frame()); act != actOK {
		t.Errorf("router non-SIR: action %d, want pass", act)
	}
	if diff := cmp.Diff(map[string]uint64{"rx_router": 2, "drop_router_miss": 1, "pass_not_sir": 1, "miss_reported": 1, "router_icmp_sent": 1, "fib_redirect": 1}, delta(before, tb.stats(t))); diff != "" {
		t.Errorf("counters (-want +got)\n%s", diff)
	}
}

func TestMalformedAndNonIPv6(t *testing.T) {
	tb := newTestbed(t, Config{})
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	e := envFor(ila.CsumAdjustTransport)
	pkt := func(ext []testutil.Ext, seg []byte) []byte {
		return testutil.Packet{EthDst: ila.GatewayMAC(), Src: e.sir(idLocal), Dst: e.sir(idRemote), Proto: ila.ProtoUDP, L4: seg, Ext: ext}.Frame()
	}
	// A UDP packet cut after the IPv6 header: no checksum field to patch.
	cut := pkt(nil, l4(ila.ProtoUDP))[:54]
	// 7 chained destination-options headers: more than the program walks.
	var ext []testutil.Ext
	for i := 0; i < 7; i++ {
		ext = append(ext, testutil.Ext{Proto: testutil.ExtDestOpts})
	}
	deep := pkt(ext, l4(ila.ProtoUDP))
	badExt := pkt([]testutil.Ext{{Proto: testutil.ExtHopByHop}}, l4(ila.ProtoUDP))
	badExt[54+1] = 200 // length runs past the packet
	// The uplink passes all of these: their destinations are SIR
	// addresses, not one of its locators.
	tests := []struct {
		name     string
		frame    []byte
		task     uint32
		counters map[string]uint64
	}{
		{"arp", arp, actOK, map[string]uint64{"rx_task": 1, "pass_non_ipv6": 1}},
		{"udp header missing", cut, actShot, map[string]uint64{"rx_task": 1, "drop_error": 1}},
		{"too many extension headers under adjust-transport", deep, actShot, map[string]uint64{"rx_task": 1, "drop_error": 1}},
		{"extension header past the end", badExt, actShot, map[string]uint64{"rx_task": 1, "drop_error": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tb.stats(t)
			if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, tc.frame); act != tc.task {
				t.Errorf("task: action %d, want %d", act, tc.task)
			}
			if diff := cmp.Diff(tc.counters, delta(before, tb.stats(t))); diff != "" {
				t.Errorf("counters (-want +got)\n%s", diff)
			}
			if act, _ := tb.run(t, tb.d.objs.IlaUplink, tb.uplink, tc.frame); act != actOK {
				t.Errorf("uplink: action %d, want pass", act)
			}
		})
	}
}

func TestTableErrors(t *testing.T) {
	tb := newTestbed(t, Config{MaxMappings: 20})
	e := envFor(ila.CsumNeutralMap)
	var err error
	for i := 0; i < 40 && err == nil; i++ {
		err = tb.d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: ila.Identifier(0x2000_0000_1000_0001 + i), Locator: e.remote, Csum: e.mode})
	}
	if !errors.Is(err, ErrFull) {
		t.Errorf("filling the table: %v, want ErrFull", err)
	}
	s, _ := tb.d.Stats()
	if s.FullErrors != 1 {
		t.Errorf("FullErrors = %d, want 1", s.FullErrors)
	}
	bad := []struct {
		name string
		err  error
	}{
		{"zero low 16 bits under neutral-map", tb.d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: 0x2000_0000_0001_0000, Locator: e.remote, Csum: ila.CsumNeutralMap})},
		{"C bit set under neutral-map", tb.d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: 0x3000_0000_0001_0001, Locator: e.remote, Csum: ila.CsumNeutralMap})},
		{"locator serving another SIR prefix", tb.d.UpsertMapping(ila.Mapping{SIR: envFor(ila.CsumNoAction).dom.SIR, Identifier: 0x2000_0000_0001_0001, Locator: e.remote, Csum: ila.CsumNoAction})},
		{"locator equal to a SIR prefix", tb.d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: 0x2000_0000_0001_0001, Locator: ila.Locator(envFor(ila.CsumNoAction).dom.SIR), Csum: e.mode})},
		{"local without ifindex", tb.d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: 1})},
		{"attach without interface", tb.d.Attach(Attachment{Role: RoleTask})},
		{"router role on an NVE", tb.d.Attach(Attachment{Ifname: "lo", Role: RoleRouter})},
		{"attach to a missing interface", tb.d.Attach(Attachment{Ifname: "nonexistent0", Role: RoleTask})},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: no error", b.name)
		}
	}
}

func TestMappingsIterateAndRefcount(t *testing.T) {
	tb := newTestbed(t, Config{})
	e := envFor(ila.CsumNeutralMap)
	got := map[ila.Identifier]ila.Locator{}
	must(t, tb.d.Mappings(func(m ila.Mapping) bool {
		if m.SIR == e.dom.SIR {
			got[m.Identifier] = m.Locator
		}
		return true
	}))
	if diff := cmp.Diff(map[ila.Identifier]ila.Locator{idLocal: e.own, idLocalMAC: e.own, idRemote: e.remote}, got); diff != "" {
		t.Errorf("mappings (-want +got)\n%s", diff)
	}
	// Moving the only mapping off e.remote frees that locator: a task may
	// then send to it (it is no longer locator space).
	must(t, tb.d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idRemote, Locator: e.newHome, Csum: e.mode}))
	var v xlatIlaLocspaceVal
	if err := tb.d.objs.IlaLocspace.Lookup(ne(uint64(e.remote)), &v); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("locator %s still in locator space after its last mapping moved (refs %d, err %v)", e.remote, v.Refs, err)
	}
	must(t, tb.d.objs.IlaLocspace.Lookup(ne(uint64(e.newHome)), &v))
	// newHome is used by the in-flight entries for idMoved and idExpired
	// and now by this mapping.
	if v.Refs != 3 {
		t.Errorf("locator %s refs %d, want 3", e.newHome, v.Refs)
	}
	must(t, tb.d.DeleteMapping(e.dom.SIR, idRemote))
	must(t, tb.d.DeleteInFlight(e.dom.SIR, idMoved))
	must(t, tb.d.DeleteInFlight(e.dom.SIR, idExpired))
	if err := tb.d.objs.IlaLocspace.Lookup(ne(uint64(e.newHome)), &v); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("locator %s still in locator space after its users went (refs %d)", e.newHome, v.Refs)
	}
}

// TestAdoptedTables checks that a process adopting pinned maps carries on
// with the state an earlier one left: locator reference counts, own
// locators and domains (kept in user-space copies) are read at Open.
func TestAdoptedTables(t *testing.T) {
	testutil.Privileged(t)
	pin := testutil.BPFFS(t)
	cfg := Config{PinPath: pin, MaxMappings: 1024, MaxLocal: 64}
	e := envFor(ila.CsumNeutralMap)
	const idA, idB = ila.Identifier(0x2000_0000_0010_0087), ila.Identifier(0x2000_0000_0011_0087)
	d, err := Open(cfg)
	if err != nil {
		if errors.Is(err, ErrNotSupported) {
			t.Skipf("kernel: %v", err)
		}
		t.Fatal(err)
	}
	must(t, d.AddLocator(e.own, e.dom))
	for _, id := range []ila.Identifier{idA, idB} {
		must(t, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: id, Locator: e.remote, Csum: e.mode}))
	}
	must(t, d.Close())

	d2, err := Open(cfg)
	must(t, err)
	t.Cleanup(func() { _ = d2.Unpin(); d2.Close() })
	refs := func() (uint32, bool) {
		var v xlatIlaLocspaceVal
		err := d2.objs.IlaLocspace.Lookup(ne(uint64(e.remote)), &v)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, false
		}
		must(t, err)
		return v.Refs, true
	}
	// The SIR prefix adopted as a domain cannot become a locator, and the
	// adopted own locator cannot be claimed for another prefix.
	if err := d2.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idA, Locator: ila.Locator(e.dom.SIR), Csum: e.mode}); err == nil {
		t.Error("a SIR prefix adopted from the pins was accepted as a locator")
	}
	if err := d2.AddLocator(e.own, ila.Domain{Name: "other", SIR: e.dom.SIR + 100, Csum: e.mode}); !errors.Is(err, ila.ErrLocatorConflict) {
		t.Errorf("own locator claimed for a second prefix after adoption: %v", err)
	}
	// A mapping to the own locator is flagged as such.
	must(t, d2.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idB, Locator: e.own, Csum: e.mode}))
	var mv xlatIlaMapVal
	k := key(e.dom.SIR, idB)
	must(t, d2.objs.IlaMappings.Lookup(&k, &mv))
	if mv.Flags&uint8(xlatIlaMapFlagILA_MAP_F_OWN_LOC) == 0 {
		t.Error("mapping to the adopted own locator not flagged own")
	}
	// idB moved away: one user of e.remote left (idA, written by the first process).
	if n, ok := refs(); !ok || n != 1 {
		t.Errorf("after one of two mappings moved away: locator refs %d (present %v), want 1", n, ok)
	}
	must(t, d2.DeleteMapping(e.dom.SIR, idA))
	if n, ok := refs(); ok {
		t.Errorf("locator %s still in locator space (refs %d) after its last user went", e.remote, n)
	}
}

// TestStatsLayoutUpgrade checks that pinned counters of an older layout
// (fewer counters) are replaced while the tables are adopted.
func TestStatsLayoutUpgrade(t *testing.T) {
	testutil.Privileged(t)
	pin := testutil.BPFFS(t)
	cfg := Config{PinPath: pin, MaxMappings: 1024, MaxLocal: 64}
	e := envFor(ila.CsumNeutralMap)
	d, err := Open(cfg)
	if err != nil {
		if errors.Is(err, ErrNotSupported) {
			t.Skipf("kernel: %v", err)
		}
		t.Fatal(err)
	}
	must(t, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idRemote, Locator: e.remote, Csum: e.mode}))
	if d.StatsReset {
		t.Error("fresh pins reported as a counters reset")
	}
	must(t, d.Close())
	// What an older release pinned: one counter fewer.
	p := filepath.Join(pin, "ila_stats")
	must(t, os.Remove(p))
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8 * (uint32(len(statNames)) - 1), MaxEntries: 1})
	must(t, err)
	must(t, old.Pin(p))
	old.Close()

	d2, err := Open(cfg)
	if err != nil {
		t.Fatalf("open over counters of an older layout: %v", err)
	}
	if !d2.StatsReset {
		t.Error("StatsReset not reported")
	}
	var ids []ila.Identifier
	must(t, d2.Mappings(func(m ila.Mapping) bool { ids = append(ids, m.Identifier); return true }))
	if len(ids) != 1 || ids[0] != idRemote {
		t.Errorf("adopted mappings %v, want [%v]", ids, idRemote)
	}
	if _, err := d2.Stats(); err != nil {
		t.Errorf("stats after the reset: %v", err)
	}
	// Anything else incompatible is still refused.
	must(t, d2.Close())
	p = filepath.Join(pin, "ila_locals")
	must(t, os.Remove(p))
	bad, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 16, ValueSize: 4, MaxEntries: 8})
	must(t, err)
	must(t, bad.Pin(p))
	bad.Close()
	if d3, err := Open(cfg); err == nil {
		d3.Close()
		t.Error("a table of another layout was adopted")
	}
}

// TestStatEnumSync checks the Go counter names against the C enum in the
// program's BTF.
func TestStatEnumSync(t *testing.T) {
	spec, err := loadXlat()
	must(t, err)
	var enum *btf.Enum
	must(t, spec.Types.TypeByName("ila_stat", &enum))
	var got []string
	n := 0
	for _, v := range enum.Values {
		if v.Name == "STAT__MAX" {
			n = int(v.Value)
			continue
		}
		if int(v.Value) != len(got) {
			t.Fatalf("enum value %s = %d, want %d (dense)", v.Name, v.Value, len(got))
		}
		got = append(got, strings.ToLower(strings.TrimPrefix(v.Name, "STAT_")))
	}
	if diff := cmp.Diff(statNames[:], got); diff != "" {
		t.Errorf("stat names (-go +C)\n%s", diff)
	}
	if n != len(statNames) {
		t.Errorf("STAT__MAX %d, Go names %d", n, len(statNames))
	}
	var c xlatIlaCounters
	if len(c.V) != n {
		t.Errorf("STAT__MAX %d, counters struct %d", n, len(c.V))
	}
}

// TestCsumEnumSync checks the C checksum-mode enum against ila.CsumMode:
// the maps carry ila.CsumMode values that the programs compare with it.
func TestCsumEnumSync(t *testing.T) {
	// The constants bpf2go generated from ila.h.
	generated := []struct {
		c    xlatIlaCsum
		mode ila.CsumMode
	}{
		{xlatIlaCsumILA_CSUM_ADJUST_TRANSPORT, ila.CsumAdjustTransport},
		{xlatIlaCsumILA_CSUM_NEUTRAL_MAP, ila.CsumNeutralMap},
		{xlatIlaCsumILA_CSUM_NO_ACTION, ila.CsumNoAction},
		{xlatIlaCsumILA_CSUM_NEUTRAL_MAP_AUTO, ila.CsumNeutralMapAuto},
	}
	for _, g := range generated {
		if uint64(g.c) != uint64(g.mode) {
			t.Errorf("C %s = %d, Go %s = %d", g.mode, g.c, g.mode, uint8(g.mode))
		}
	}
	// Every member of the enum in the program's BTF, by name, against
	// every Go mode: none missing on either side.
	spec, err := loadXlat()
	must(t, err)
	var enum *btf.Enum
	must(t, spec.Types.TypeByName("ila_csum", &enum))
	c := make(map[string]uint64)
	for _, v := range enum.Values {
		c[v.Name] = v.Value
	}
	want := make(map[string]uint64)
	for _, m := range ila.CsumModes {
		want["ILA_CSUM_"+strings.ToUpper(strings.ReplaceAll(m.String(), "-", "_"))] = uint64(m)
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("checksum modes (-go +C)\n%s", diff)
	}
}

// TestLocalRebind: a task's SIR address moved to another port may no
// longer send from the old one (the ifindex-indexed fast path is cleared).
func TestLocalRebind(t *testing.T) {
	tb := newTestbed(t, Config{})
	e := envFor(ila.CsumNeutralMap)
	f := testutil.Packet{EthDst: ila.GatewayMAC(), Src: e.sir(idLocal), Dst: e.sir(idRemote), Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP)}.Frame()
	steps := []struct {
		name    string
		do      func() error
		onTask  uint32
		onTask2 uint32
	}{
		{"bound to task", func() error { return nil }, actRedirect, actShot},
		{"moved to task2", func() error {
			return tb.d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idLocal, Ifindex: tb.task2})
		}, actShot, actRedirect},
		{"deleted", func() error { return tb.d.DeleteLocal(e.dom.SIR, idLocal) }, actShot, actShot},
	}
	for _, s := range steps {
		must(t, s.do())
		if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task, f); act != s.onTask {
			t.Errorf("%s: from task: action %d, want %d", s.name, act, s.onTask)
		}
		if act, _ := tb.run(t, tb.d.objs.IlaTask, tb.task2, f); act != s.onTask2 {
			t.Errorf("%s: from task2: action %d, want %d", s.name, act, s.onTask2)
		}
	}
}

// TestRouterMissICMP: an ILA-R miss answers the sender with an ICMPv6
// destination unreachable, code 3, quoting the packet (up to 1280 bytes in
// all), at most once per identifier per second.
func TestRouterMissICMP(t *testing.T) {
	tb := newTestbed(t, Config{Router: true})
	h := tb.ns.Handle(t)
	_, sirNet, _ := net.ParseCIDR("3333::/16")
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: tb.uplink, Dst: sirNet, Gw: nextHop.AsSlice()}))
	routerAddr := netip.MustParseAddr("fd00::1") // upl0's address: the FIB's source for the sender
	type tcase struct {
		mode ila.CsumMode
		size int
		src  ila.Identifier
	}
	var cases []tcase
	for _, m := range ila.CsumModes {
		// idLocal has a mapping (the error goes to its ILA address),
		// idLocalMAC's is removed below (the error goes to the SIR address).
		cases = append(cases, tcase{m, 20, idLocal}, tcase{m, 1400, idLocal}, tcase{m, 20, idLocalMAC})
		must(t, tb.d.DeleteMapping(envFor(m).dom.SIR, idLocalMAC))
	}
	for _, tc := range cases {
		e, size := envFor(tc.mode), tc.size
		t.Run(fmt.Sprintf("%s/payload %d/%s", tc.mode, size, tc.src), func(t *testing.T) {
			missing := ila.Identifier(0x2000_0000_0077_0000 + uint64(size) + uint64(tc.src>>16&0xff)<<12)
			in := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: e.sir(tc.src), Dst: e.sir(missing), Proto: ila.ProtoUDP,
				L4: testutil.UDP(1, 2, make([]byte, size))}
			inFrame := in.Frame()
			quote := inFrame[14:]
			if len(quote) > 1280-48 {
				quote = quote[:1280-48]
			}
			want := testutil.Packet{EthDst: nextHopMAC, EthSrc: uplinkMAC, Src: routerAddr, Dst: e.sir(tc.src), Proto: ila.ProtoICMPv6,
				HopLimit: 63, L4: testutil.ICMPv6(1, 3, append(make([]byte, 4), quote...))}
			wantFrame := want.Frame() // checksum from scratch, SIR destination
			if tc.src == idLocal {
				// Translated like any packet to the sender: ILA
				// destination, checksum per the domain's mode.
				want.Dst = e.ila(t, tc.src, e.own)
				wantFrame = frameWithCsumFor(want, wireCsumDst(tc.mode, e.sir(tc.src), want.Dst))
			}
			before := tb.stats(t)
			act, out := tb.run(t, tb.d.objs.IlaRouter, tb.uplink, inFrame)
			if act != actRedirect {
				t.Fatalf("action %d, want redirect", act)
			}
			if diff := cmp.Diff(wantFrame, out[:len(wantFrame)]); diff != "" {
				t.Errorf("frame (-want +got)\n%s", diff)
			}
			if diff := cmp.Diff(map[string]uint64{"rx_router": 1, "drop_router_miss": 1, "miss_reported": 1, "router_icmp_sent": 1, "fib_redirect": 1},
				delta(before, tb.stats(t))); diff != "" {
				t.Errorf("counters (-want +got)\n%s", diff)
			}
			// Within the second: dropped silently.
			if act, _ := tb.run(t, tb.d.objs.IlaRouter, tb.uplink, inFrame); act != actShot {
				t.Errorf("second miss: action %d, want drop", act)
			}
		})
	}
}
