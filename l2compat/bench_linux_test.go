//go:build linux

package l2compat

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// iperf3 runs a 5 s TCP test from client to server (in namespaces) and
// returns the receiver's goodput in Gbit/s.
func iperf3(b *testing.B, l *lab, server, client *testutil.NetNS, addr string) float64 {
	b.Helper()
	testutil.NeedTools(b, "iperf3")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", server.Name, "iperf3", "-s", "-1", "-B", addr, "-p", "5299")
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Wait()
	var out []byte
	var err error
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		out, err = exec.CommandContext(ctx, "ip", "netns", "exec", client.Name, "iperf3", "-c", addr, "-p", "5299", "-t", "5", "-J").Output()
		if err == nil {
			break
		}
	}
	if err != nil {
		b.Fatalf("iperf3 to %s: %v\n%s", addr, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("iperf3 json: %v", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

// BenchmarkIntegrationGoodput measures IPv4 TCP goodput between two tasks of
// one tenant on different NVEs (bridge -> VXLAN over the IPv6 fabric ->
// bridge) beside a plain veth pair between two namespaces, in the same run.
// Run with -benchtime=1x: each iteration is two 5 s iperf3 runs.
func BenchmarkIntegrationGoodput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	l := newLab(b)
	a1 := l.addTask("a1", "nve1", 100, "10.0.0.1", "02:00:00:00:01:01")
	a2 := l.addTask("a2", "nve2", 100, "10.0.0.2", "02:00:00:00:01:02")
	p1 := testutil.NewNetNS(b, "l2p1"+l.sfx)
	p2 := testutil.NewNetNS(b, "l2p2"+l.sfx)
	v1, v2 := testutil.Veth(b, p1, "eth0", p2, "eth0")
	for _, x := range []struct {
		ns   *testutil.NetNS
		link netlink.Link
		addr string
	}{{p1, v1, "10.9.0.1/24"}, {p2, v2, "10.9.0.2/24"}} {
		a, _ := netlink.ParseAddr(x.addr)
		if err := x.ns.Handle(b).AddrAdd(x.link, a); err != nil {
			b.Fatal(err)
		}
	}
	var vx, veth float64
	for range b.N {
		vx += iperf3(b, l, a2.ns, a1.ns, "10.0.0.2")
		veth += iperf3(b, l, p2, p1, "10.9.0.2")
	}
	b.ReportMetric(vx/float64(b.N), "vxlan-Gbit/s")
	b.ReportMetric(veth/float64(b.N), "veth-Gbit/s")
}

// BenchmarkIntegrationARPAnswers measures how many ARP requests per second
// the responder answers: a task sends b.N requests for a remote task of its
// tenant, keeping at most 32 unanswered.
func BenchmarkIntegrationARPAnswers(b *testing.B) {
	l := newLab(b)
	a1 := l.addTask("a1", "nve1", 100, "10.0.0.1", "02:00:00:00:01:01")
	a2 := l.addTask("a2", "nve2", 100, "10.0.0.2", "02:00:00:00:01:02")
	c := a1.sock(b, etherTypeARP)
	req := arpFrame(arp.OperationRequest, etherTypeARP, a1.mac, a1.ip, ila.MAC{}, a2.ip, broadcast)
	to := &packet.Addr{HardwareAddr: net.HardwareAddr(broadcast[:])}
	var answered atomic.Int64
	credits := make(chan struct{}, 32)
	for range cap(credits) {
		credits <- struct{}{}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			var p arp.Packet
			if n >= 14 && p.UnmarshalBinary(buf[14:n]) == nil && p.Operation == arp.OperationReply && p.SenderIP == a2.ip {
				answered.Add(1)
				select {
				case credits <- struct{}{}:
				default:
				}
			}
		}
	}()
	before := l.nves["nve1"].m.Stats()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		select {
		case <-credits:
		case <-time.After(100 * time.Millisecond): // a lost answer returns its credit late
		}
		if _, err := c.WriteTo(req, to); err != nil {
			b.Fatal(err)
		}
	}
	for deadline := time.Now().Add(2 * time.Second); answered.Load() < int64(b.N) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	c.Close()
	<-done
	after := l.nves["nve1"].m.Stats()
	b.ReportMetric(float64(answered.Load())/elapsed.Seconds(), "answers/s")
	b.ReportMetric(float64(answered.Load())/float64(b.N), "answered/sent")
	if got := after.ARPAnswered - before.ARPAnswered; got < uint64(answered.Load()) {
		b.Errorf("responder counted %d answers, task saw %d", got, answered.Load())
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkIntegrationMoveToFDB measures the time from a move commit (the
// task upsert with its new NVE and Previous set) to the FDB being programmed
// on every NVE, each NVE's Manager applying the event in parallel as their
// agents would: nve1 (a bystander with ports in the tenant) re-points the
// VXLAN entry, the old NVE installs the in-flight entry, the new one drops
// its remote entry. 1000 other tasks of the tenant are programmed first
// (that rate is reported too). Each sample is checked against the kernel's
// FDB outside the timing.
func BenchmarkIntegrationMoveToFDB(b *testing.B) {
	l := newLab(b)
	l.addTask("a1", "nve1", 100, "10.0.0.1", "02:00:00:00:01:01")
	l.addTask("a2", "nve2", 100, "10.0.0.2", "02:00:00:00:01:02")
	l.addTask("a3", "nve3", 100, "10.0.0.3", "02:00:00:00:01:03")
	const others = 1000
	start := time.Now()
	for i := range others {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		id, _ := ila.NewVNIPv4(100, ip)
		nve := []string{"nve2", "nve3"}[i%2]
		task := &ila.Task{Identifier: id, NVE: nve, MAC: ila.MAC{2, 1, 0, 0, byte(i >> 8), byte(i)}}
		l.srv.apply(b, ila.Event{Type: ila.EventTaskUpsert, Task: task}, "")
	}
	preload := time.Since(start)
	nve1 := l.nves["nve1"]
	vx, err := nve1.h.LinkByName(vxlanName(100))
	if err != nil {
		b.Fatal(err)
	}
	id, _ := ila.NewVNIPv4(100, netip.MustParseAddr("10.2.0.1"))
	mac := ila.MAC{2, 2, 0, 0, 0, 1}
	task := &ila.Task{Identifier: id, NVE: "nve2", MAC: mac, Version: 1}
	l.srv.apply(b, ila.Event{Type: ila.EventTaskUpsert, Task: task}, "")
	mgrs := []*Manager{l.nves["nve1"].m, l.nves["nve2"].m, l.nves["nve3"].m}
	samples := make([]time.Duration, 0, b.N)
	single := make([]time.Duration, 0, b.N) // nve1's own Apply
	b.ResetTimer()
	for i := range b.N {
		from, to := task.NVE, map[string]string{"nve2": "nve3", "nve3": "nve2"}[task.NVE]
		nt := *task
		nt.NVE, nt.Version = to, task.Version+1
		nt.Previous = []ila.Previous{{NVE: from, Until: time.Now().Add(time.Hour)}}
		task = &nt
		ev := ila.Event{Type: ila.EventTaskUpsert, Revision: int64(i + 1), Task: task}
		var wg sync.WaitGroup
		t0 := time.Now()
		var one time.Duration
		for j, m := range mgrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := time.Now()
				if err := m.Apply(ev); err != nil {
					b.Error(err)
				}
				if j == 0 {
					one = time.Since(s)
				}
			}()
		}
		wg.Wait()
		single = append(single, one)
		samples = append(samples, time.Since(t0))
		b.StopTimer()
		want := l.nves[to].underlay
		if got := vxlanDst(b, nve1.h, vx.Attrs().Index, mac); got != want {
			b.Fatalf("nve1 fdb %v -> %v, want %v", mac, got, want)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(samples, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(samples, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(percentile(single, 0.50).Microseconds()), "nve1-p50-µs")
	b.ReportMetric(float64(percentile(single, 0.99).Microseconds()), "nve1-p99-µs")
	b.ReportMetric(float64(3*others)/preload.Seconds(), "preload-entries/s")
}

// vxlanDst returns the VTEP the VXLAN FDB sends mac to.
func vxlanDst(b *testing.B, h *netlink.Handle, vx int, mac ila.MAC) netip.Addr {
	b.Helper()
	ns, err := h.NeighList(vx, unix.AF_BRIDGE)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range ns {
		if n.Flags&netlink.NTF_SELF != 0 && len(n.HardwareAddr) == 6 && [6]byte(n.HardwareAddr) == mac {
			a, _ := netip.AddrFromSlice(n.IP)
			return a.Unmap()
		}
	}
	return netip.Addr{}
}
