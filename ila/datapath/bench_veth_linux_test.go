package datapath

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

// The veth benchmarks compare, in the same topology and run, interleaved:
//   plain  the NVEs and the fabric route the SIR addresses natively (no
//          programs attached): the cost floor of forwarding through three
//          namespaces;
//   ila    the ILA programs attached (neutral-map domain);
//   vxlan  the NVEs carry the same traffic in VXLAN over the fabric (no
//          programs), the encapsulation alternative.
// They report metrics; they assert nothing about speed.

type fwdMode string

const (
	modePlain fwdMode = "plain"
	modeILA   fwdMode = "ila"
	modeVXLAN fwdMode = "vxlan"
)

type benchTopo struct {
	*topo
	vxlan bool
	cur   fwdMode
}

const benchDom = 0 // neutral-map

func newBenchTopo(b *testing.B) *benchTopo {
	b.Helper()
	bt := &benchTopo{topo: newTopo(b, Config{MaxMappings: 1024}, Config{MaxMappings: 1024})}
	hf := bt.fab.Handle(b)
	for _, n := range []*nve{bt.a, bt.b} {
		hn := n.ns.Handle(b)
		// Native routes for the plain mode: fabric -> NVE -> task port.
		idx := 1
		if n == bt.b {
			idx = 2
		}
		fl, err := hf.LinkByName(map[int]string{1: "fa", 2: "fb"}[idx])
		must(b, err)
		for dom := range itDomains {
			_, dst, _ := net.ParseCIDR(netip.PrefixFrom(n.sir(dom), 128).String())
			must(b, hf.RouteAdd(&netlink.Route{LinkIndex: fl.Attrs().Index, Dst: dst, Gw: net.ParseIP(fmt.Sprintf("fd00:%d::2", idx))}))
			must(b, hn.RouteAdd(&netlink.Route{LinkIndex: n.taskIfidx, Dst: dst}))
		}
		// Jumbo underlay so that VXLAN carries 1500-byte inner packets
		// unfragmented (as data centers deploy it); tasks stay at 1500.
		up, err := hn.LinkByName("up")
		must(b, err)
		must(b, hn.LinkSetMTU(up, 9000))
		must(b, hf.LinkSetMTU(fl, 9000))
	}
	bt.vxlan = bt.setupVXLAN(b)
	bt.cur = modeILA
	return bt
}

// setupVXLAN gives each NVE a VXLAN device towards the other and the
// neighbour/FDB entries for L3 over it; routes are added per mode.
func (bt *benchTopo) setupVXLAN(b *testing.B) bool {
	for i, n := range []*nve{bt.a, bt.b} {
		hn := n.ns.Handle(b)
		peer := bt.b
		local, remote := "fd00:1::2", "fd00:2::2"
		if i == 1 {
			peer = bt.a
			local, remote = remote, local
		}
		mac := net.HardwareAddr{0x02, 0x5e, 0, 0, 0, byte(i + 1)}
		peerMAC := net.HardwareAddr{0x02, 0x5e, 0, 0, 0, byte(2 - i)}
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx", MTU: 1500, HardwareAddr: mac}, VxlanId: 42,
			SrcAddr: net.ParseIP(local), Port: 4789, UDPCSum: true}
		if err := hn.LinkAdd(vx); err != nil {
			b.Logf("vxlan unavailable (%v): skipping the vxlan mode", err)
			return false
		}
		l, err := hn.LinkByName("vx")
		must(b, err)
		must(b, hn.LinkSetUp(l))
		must(b, hn.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT,
			IP: peer.sir(benchDom).AsSlice(), HardwareAddr: peerMAC}))
		must(b, hn.NeighAppend(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: net.ParseIP(remote), HardwareAddr: peerMAC}))
	}
	return true
}

// setMode switches forwarding: programs attached or not, VXLAN routes or not.
func (bt *benchTopo) setMode(b *testing.B, m fwdMode) {
	b.Helper()
	if m == bt.cur {
		return
	}
	for i, n := range []*nve{bt.a, bt.b} {
		hn := n.ns.Handle(b)
		peer := bt.b
		if i == 1 {
			peer = bt.a
		}
		_, dst, _ := net.ParseCIDR(netip.PrefixFrom(peer.sir(benchDom), 128).String())
		vx, _ := hn.LinkByName("vx")
		if bt.cur == modeVXLAN {
			must(b, hn.RouteDel(&netlink.Route{LinkIndex: vx.Attrs().Index, Dst: dst}))
		}
		for _, a := range []Attachment{{Ifname: "t1", NetNS: n.ns.Path, Role: RoleTask}, {Ifname: "up", NetNS: n.ns.Path, Role: RoleUplink}} {
			if m == modeILA {
				must(b, n.d.Attach(a))
			} else if bt.cur == modeILA {
				must(b, n.d.Detach(a))
			}
		}
		if m == modeVXLAN {
			must(b, hn.RouteAdd(&netlink.Route{LinkIndex: vx.Attrs().Index, Dst: dst}))
		}
	}
	bt.cur = m
}

// udpPPS floods 64-byte datagrams from task A to task B for d and returns
// the received packets per second.
func udpPPS(b *testing.B, bt *benchTopo, d time.Duration) float64 {
	snd, rcv := udpPair(b, bt.a, bt.b, benchDom, 9000+int(time.Now().UnixNano()%1000))
	_ = rcv.SetReadBuffer(8 << 20)
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 128)
		for {
			_ = rcv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := rcv.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	payload := make([]byte, 64)
	start := time.Now()
	for time.Since(start) < d {
		_, _ = snd.Write(payload)
	}
	elapsed := time.Since(start)
	<-done
	snd.Close()
	rcv.Close()
	return float64(got.Load()) / elapsed.Seconds()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func BenchmarkVethPPS(b *testing.B) {
	bt := newBenchTopo(b)
	res := map[fwdMode][]float64{}
	ratios := []float64{}
	for i := 0; i < 5; i++ { // interleaved; ratio within each round
		for _, m := range []fwdMode{modePlain, modeILA} {
			bt.setMode(b, m)
			udpPPS(b, bt, 100*time.Millisecond) // warm neighbours and caches
			res[m] = append(res[m], udpPPS(b, bt, time.Second))
		}
		ratios = append(ratios, res[modeILA][i]/res[modePlain][i])
	}
	b.Logf("pps plain %v\npps ila   %v", res[modePlain], res[modeILA])
	b.ReportMetric(median(res[modePlain]), "plain-pps")
	b.ReportMetric(median(res[modeILA]), "ila-pps")
	b.ReportMetric(median(ratios), "ila/plain")
}

type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// iperfTCP runs iperf3 (server in task B, client in task A) for secs
// seconds and returns the received goodput in Gbit/s. iperf3 needs no
// bpffs, so ip netns exec is fine here.
func iperfTCP(b *testing.B, bt *benchTopo, secs int) float64 {
	testutil.NeedTools(b, "iperf3")
	srv := exec.Command("ip", "netns", "exec", bt.b.task.Name, "iperf3", "-s", "-1", "-B", bt.b.sir(benchDom).String(), "-p", "5201")
	must(b, srv.Start())
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var out []byte
	var err error
	for try := 0; try < 20; try++ {
		time.Sleep(100 * time.Millisecond)
		out, err = exec.Command("ip", "netns", "exec", bt.a.task.Name, "iperf3", "-c", bt.b.sir(benchDom).String(), "-p", "5201",
			"-B", bt.a.sir(benchDom).String(), "-t", fmt.Sprint(secs), "-J").Output()
		if err == nil {
			break
		}
	}
	if err != nil {
		b.Fatalf("iperf3: %v\n%s", err, out)
	}
	var r iperfResult
	must(b, json.Unmarshal(out, &r))
	return r.End.SumReceived.BitsPerSecond / 1e9
}

func BenchmarkIperfTCP(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	bt := newBenchTopo(b)
	modes := []fwdMode{modePlain, modeILA}
	if bt.vxlan {
		modes = append(modes, modeVXLAN)
	}
	// Rounds of plain, ila, vxlan back to back; ratios are taken within a
	// round (the machine is shared, so absolute rates drift between
	// rounds) and the median over rounds is reported.
	res := map[fwdMode][]float64{}
	var vsPlain, vsVXLAN []float64
	for i := 0; i < 5; i++ {
		for _, m := range modes {
			bt.setMode(b, m)
			res[m] = append(res[m], iperfTCP(b, bt, 2))
		}
		vsPlain = append(vsPlain, res[modeILA][i]/res[modePlain][i])
		if bt.vxlan {
			vsVXLAN = append(vsVXLAN, res[modeILA][i]/res[modeVXLAN][i])
		}
	}
	for _, m := range modes {
		b.Logf("%-6s Gbit/s %.2f", m, res[m])
		b.ReportMetric(median(res[m]), string(m)+"-Gbps")
	}
	b.Logf("ila/plain per round %.3f", vsPlain)
	b.ReportMetric(median(vsPlain), "ila/plain")
	if bt.vxlan {
		b.Logf("ila/vxlan per round %.3f", vsVXLAN)
		b.ReportMetric(median(vsVXLAN), "ila/vxlan")
	}
}
