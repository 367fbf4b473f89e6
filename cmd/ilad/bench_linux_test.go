//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/ila/datapath"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/internal/testutil"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Move convergence: N node agents (locator.Agent, each with its own etcd
// client and etcdstore watcher, as N ilads would have) follow one embedded
// etcd; a task is moved back and forth by mapsrv.Service.Move; for every
// move the time from the start of the Move call (mapsrv's commit is inside
// it) to the new locator being written to each agent's datapath is
// recorded. Beside it, in the same process and etcd, the raw figure: N
// plain clientv3 watchers, time from the start of a Put to its delivery.
//
// The datapath is the real eBPF one (ila/datapath, maps only, no program
// attached; one per agent) when run as root with ILA_BENCH_REAL=1, else the
// map-backed locatortest.Datapath; the report says which.
//
//	go test -c -o /tmp/ilad.test ./cmd/ilad
//	sudo ILA_BENCH_REAL=1 /tmp/ilad.test -test.run '^$' -test.bench MoveConvergence -test.benchtime 300x

// stamp is a task event applied by an agent: OnEvent runs after the
// datapath write.
type stamp struct {
	id      ila.Identifier
	loc     ila.Locator
	at      time.Time
	updated time.Time // mapsrv's commit timestamp of the record
}

type realDP struct{ *datapath.Datapath }

func (d realDP) UpsertLocal(l locator.Local) error {
	return d.Datapath.UpsertLocal(datapath.Local{SIR: l.SIR, Identifier: l.Identifier, Ifindex: l.Ifindex, MAC: l.MAC})
}
func (d realDP) AttachPort(string, int) error { return nil }
func (d realDP) DetachPort(string, int) error { return nil }

func quantiles(d []time.Duration) (p50, p99, max time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return q(0.50), q(0.99), d[len(d)-1]
}

// ILA_BENCH_AGENTS=1000 (a comma-separated list) sets the agent counts
// (default 1,10,100). ILA_BENCH_PROXY=1 runs each count twice: the agents
// watching etcd directly, and through an etcd gRPC proxy (etcdtest.StartProxy:
// grpc-proxy's KV and watch services, identical watches coalesced into
// one); the raw watchers always watch etcd directly. "cpu-us/event" is the
// process CPU time (all of it: etcd, mapsrv, the agents or watchers) of
// each phase divided by the events delivered (moves x agents).
func BenchmarkMoveConvergence(b *testing.B) {
	real := os.Getenv("ILA_BENCH_REAL") == "1"
	if real {
		testutil.Privileged(b)
	}
	counts := []int{1, 10, 100}
	if s := os.Getenv("ILA_BENCH_AGENTS"); s != "" {
		counts = nil
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v <= 0 {
				b.Fatalf("ILA_BENCH_AGENTS=%q: want positive integers", s)
			}
			counts = append(counts, v)
		}
	}
	proxies := []bool{false}
	if os.Getenv("ILA_BENCH_PROXY") == "1" {
		proxies = []bool{false, true}
	}
	for _, n := range counts {
		for _, proxy := range proxies {
			name := fmt.Sprintf("agents=%d", n)
			if proxy {
				name += "/grpc-proxy"
			}
			b.Run(name, func(b *testing.B) { benchMoves(b, n, real, proxy) })
		}
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchMoves(b *testing.B, n int, real, proxy bool) {
	cli, eps := etcdtest.Start(b)
	agentEps := eps
	if proxy {
		agentEps = etcdtest.StartProxy(b, eps)
	}
	ctx := b.Context()
	// Flap damping must not stop a benchmark that moves one task hundreds
	// of times a second, but the record must stay the size it has in
	// production (at most FlapMoves=5 recent move times, usually one):
	// every watcher decodes it. Moves here come 1-15 ms apart, so a 1 ms
	// window keeps one or two; the size is logged.
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli), FlapMoves: 1 << 30, FlapWindow: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	sir := labSIR
	if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sir, Csum: ila.CsumNeutralMap}); err != nil {
		b.Fatal(err)
	}
	locs := []ila.Locator{0x2001_0db8_0000_0a00, 0x2001_0db8_0000_0b00}
	for i, l := range locs {
		if err := svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: "nve" + strconv.Itoa(i), Locators: []ila.Locator{l}, Underlay: netip.MustParseAddr(fmt.Sprintf("fd00::%d", i+1))}}); err != nil {
			b.Fatal(err)
		}
	}
	const id = ila.Identifier(0x1001)
	if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "nve0", Domain: "prod", Tenant: "t", Name: "mover", SIR: sir.Addr(id)}); err != nil {
		b.Fatal(err)
	}

	// N agents, each with its own etcd client and watcher.
	actx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	chans := make([]chan stamp, n)
	for i := range n {
		var dp locator.Datapath = locatortest.NewDatapath()
		if real {
			d, err := datapath.Open(datapath.Config{MaxMappings: 1024, MaxLocal: 64})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			dp = realDP{d}
		}
		chans[i] = make(chan stamp, 4096)
		c := etcdtest.NewClient(b, agentEps)
		ch := chans[i]
		a, err := locator.New(locator.Config{
			Node: fmt.Sprintf("bench%d", i), Locators: []locator.LocatorSpec{{Locator: ila.Locator(0x2001_0db8_0001_0000 + uint64(i))}},
			Datapath: dp, Source: etcdstore.NewWatcher(c, c, etcdstore.WatchOptions{}),
			OnEvent: func(ev ila.Event) {
				if ev.Type == ila.EventTaskUpsert && ev.Task != nil {
					select {
					case ch <- stamp{ev.Task.Identifier, ev.Task.Locator, time.Now(), ev.Task.Updated}:
					default:
					}
				}
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(actx) }()
	}
	// Wait until every agent has the task.
	for i := range n {
		for s := range chans[i] {
			if s.id == id {
				break
			}
		}
	}

	// Raw etcd watchers.
	raws := make([]chan time.Time, n)
	for i := range n {
		raws[i] = make(chan time.Time, 4096)
		c := etcdtest.NewClient(b, eps)
		wch := c.Watch(clientv3.WithRequireLeader(actx), "/bench/raw/", clientv3.WithPrefix())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range wch {
				for range r.Events {
					raws[i] <- time.Now()
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // watchers established

	var agentLat, agentAll, commitLat, rawLat, rawAll []time.Duration
	var agentCPU, rawCPU time.Duration
	b.ResetTimer()
	for m := range b.N {
		to := m%2 + 1
		if to == 2 {
			to = 0
		}
		want := locs[to]
		c0 := cpuTime()
		t0 := time.Now()
		if _, err := svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t", Name: "mover", Domain: "prod", To: "nve" + strconv.Itoa(to)}); err != nil {
			b.Fatal(err)
		}
		var worst time.Duration
		for i := range n {
			for s := range chans[i] {
				if s.id == id && s.loc == want {
					d := s.at.Sub(t0)
					agentLat = append(agentLat, d)
					commitLat = append(commitLat, s.at.Sub(s.updated))
					worst = max(worst, d)
					break
				}
			}
		}
		agentAll = append(agentAll, worst)
		agentCPU += cpuTime() - c0

		c0 = cpuTime()
		t0 = time.Now()
		if _, err := cli.Put(ctx, "/bench/raw/k", strconv.Itoa(m)); err != nil {
			b.Fatal(err)
		}
		worst = 0
		for i := range n {
			d := (<-raws[i]).Sub(t0)
			rawLat = append(rawLat, d)
			worst = max(worst, d)
		}
		rawAll = append(rawAll, worst)
		rawCPU += cpuTime() - c0
	}
	b.StopTimer()
	if r, err := cli.Get(ctx, mapsrv.TaskKey("prod", id)); err == nil && len(r.Kvs) == 1 {
		b.Logf("task record: %d bytes", len(r.Kvs[0].Value))
	}
	a50, a99, amax := quantiles(agentLat)
	w50, w99, wmax := quantiles(agentAll)
	c50, c99, cmax := quantiles(commitLat)
	r50, r99, rmax := quantiles(rawLat)
	v50, v99, vmax := quantiles(rawAll)
	kind := "map-backed fake datapath"
	if real {
		kind = "real eBPF datapath maps"
	}
	if proxy {
		kind += ", agents through an etcd gRPC proxy"
	}
	b.Logf("%d agents, %d moves, %s", n, b.N, kind)
	b.Logf("move -> agent datapath, per agent:   p50 %v p99 %v max %v", a50, a99, amax)
	b.Logf("move -> all agents converged:        p50 %v p99 %v max %v", w50, w99, wmax)
	b.Logf("record commit stamp -> agent:        p50 %v p99 %v max %v", c50, c99, cmax)
	b.Logf("raw etcd put -> watch, per watcher:  p50 %v p99 %v max %v", r50, r99, rmax)
	b.Logf("raw etcd put -> all watchers:        p50 %v p99 %v max %v", v50, v99, vmax)
	b.ReportMetric(float64(a50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(a99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(c50.Microseconds())/1000, "commit-p50-ms")
	b.ReportMetric(float64(c99.Microseconds())/1000, "commit-p99-ms")
	b.ReportMetric(float64(r50.Microseconds())/1000, "raw-p50-ms")
	b.ReportMetric(float64(r99.Microseconds())/1000, "raw-p99-ms")
	b.ReportMetric(float64(w99.Microseconds())/1000, "all-p99-ms")
	b.ReportMetric(float64(v99.Microseconds())/1000, "raw-all-p99-ms")
	events := float64(b.N * n)
	b.ReportMetric(float64(agentCPU.Microseconds())/events, "cpu-us/event")
	b.ReportMetric(float64(rawCPU.Microseconds())/events, "raw-cpu-us/event")
}
