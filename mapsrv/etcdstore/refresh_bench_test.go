package etcdstore_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkRefreshFanout measures what registration refreshes cost the
// watchers of /ila/v1/ (every NVE, dnsbridge and sweeper): N tasks
// (ILA_BENCH_TASKS, default 10,000) refreshed once each - what N tasks
// do every half lifetime - through a running mapsrv.Service over an
// embedded etcd, with a watch on /ila/v1/ counting what it delivers. Two
// NVEs side by side in one process: "written", an NVE that does not
// heartbeat to the replica (its refreshes are written to the task record,
// as every refresh was before renew.go), and "held", an NVE whose
// heartbeats the replica hears (it decides for it and holds the refreshes
// in memory). Reported per round: watch events per refresh, etcd writes
// per refresh anywhere (etcd revisions: mapsrv batches concurrent
// transactions into one; the replica's status key included),
// the refresh rate and latency (32 workers), and the watched writes per
// second N tasks with 120 s lifetimes would make (N/60 x events per
// refresh).
//
//	go test -run '^$' -bench RefreshFanout -benchtime 3x ./mapsrv/etcdstore
func BenchmarkRefreshFanout(b *testing.B) {
	n := benchTasks(b, 10_000)
	cli, _ := etcdtest.Start(b)
	ctx := b.Context()
	svc, err := mapsrv.New(mapsrv.Config{
		Store:         etcdstore.New(cli),
		SweepInterval: time.Hour, // the sweeper's reads are not measured
		Liveness:      mapsrv.LivenessConfig{Interval: time.Second, Replica: "r1"},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sirPrefix, Csum: ila.CsumNeutralMap}); err != nil {
		b.Fatal(err)
	}
	nves := []string{"written", "held"}
	for i, name := range nves {
		loc := ila.Locator(0xfd00000000000001 + uint64(i))
		if err := svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: name, Locators: []ila.Locator{loc}, Underlay: netip.AddrFrom16([16]byte{0xfd, 0x99, 15: byte(i + 1)})}}); err != nil {
			b.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	b.Cleanup(func() { cancel(); <-done })
	// The held NVE heartbeats as ilad does; Run writes the replica's
	// status key every few seconds.
	if _, err := svc.Heartbeat(ctx, "held", 0); err != nil {
		b.Fatal(err)
	}
	if err := svc.WriteReplicaStatus(ctx); err != nil {
		b.Fatal(err)
	}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				_, _ = svc.Heartbeat(rctx, "held", 0)
			}
		}
	}()
	reg := func(nve string, i int) error {
		id := ila.Identifier(uint64(i)<<1 | 1)
		if nve == "held" {
			id |= 1 << 40
		}
		_, err := svc.Register(ctx, mapsrv.Registration{NVE: nve, Tenant: "bench", Name: fmt.Sprintf("%s-%d", nve, i), SIR: sirPrefix.Addr(id), Lifetime: 2 * time.Minute})
		return err
	}
	for _, nve := range nves {
		var lat latencies
		start := time.Now()
		runBatch(b, n, &lat, func(i int) error { return reg(nve, i) })
		b.Logf("%d tasks registered on %s in %v", n, nve, time.Since(start).Round(time.Millisecond))
	}

	// The watch counts what every consumer of /ila/v1/ would receive.
	var events atomic.Int64
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := cli.Watch(clientv3.WithRequireLeader(wctx), mapsrv.Prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // created
	marks := make(chan string, 1)
	go func() {
		for resp := range wch {
			for _, ev := range resp.Events {
				if k := string(ev.Kv.Key); k[len(k)-5:] == "/mark" {
					marks <- string(ev.Kv.Value)
					continue
				}
				events.Add(1)
			}
		}
	}()
	// flush waits until the watch has delivered everything before a mark.
	mark := 0
	flush := func() {
		mark++
		v := strconv.Itoa(mark)
		if _, err := cli.Put(ctx, mapsrv.Prefix+"bench/mark", v); err != nil {
			b.Fatal(err)
		}
		for got := range marks {
			if got == v {
				return
			}
		}
	}
	rev := func() int64 {
		resp, err := cli.Get(ctx, "/ila/none")
		if err != nil {
			b.Fatal(err)
		}
		return resp.Header.Revision
	}
	for _, nve := range nves {
		b.Run("refresh="+nve, func(b *testing.B) {
			var evs, writes int64
			var lat latencies
			var took time.Duration
			rounds := 0
			for b.Loop() {
				flush()
				e0, r0 := events.Load(), rev()
				start := time.Now()
				runBatch(b, n, &lat, func(i int) error { return reg(nve, i) })
				took += time.Since(start)
				r1 := rev()
				flush()
				evs += events.Load() - e0
				writes += r1 - r0
				rounds++
			}
			per := float64(evs) / float64(n*rounds)
			b.ReportMetric(per, "watched-events/refresh")
			b.ReportMetric(float64(writes)/float64(n*rounds), "etcd-revisions/refresh")
			b.ReportMetric(float64(n*rounds)/took.Seconds(), "refreshes/s")
			b.ReportMetric(lat.quantile(0.5), "p50-ms")
			b.ReportMetric(lat.quantile(0.99), "p99-ms")
			b.ReportMetric(float64(n)/60*per, "watched-writes/s@lifetime120s")
			b.ReportMetric(0, "ns/op")
		})
	}
	b.Logf("refreshes held in memory: %d", svc.Stats().RefreshesHeld)
}

// benchTasks returns ILA_BENCH_TASKS, or def when it is not set.
func benchTasks(b *testing.B, def int) int {
	s := os.Getenv("ILA_BENCH_TASKS")
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("ILA_BENCH_TASKS=%q: want a positive integer", s)
	}
	return v
}
