package etcdstore_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const benchWorkers = 32

// latencies collects per-operation durations.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) report(b *testing.B, start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	p := func(q float64) float64 { return float64(l.d[int(q*float64(len(l.d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(l.d))/time.Since(start).Seconds(), "ops/s")
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}

// parallel runs n operations on benchWorkers goroutines.
func parallel(b *testing.B, n int, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var lat latencies
	start := time.Now()
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				lat.add(time.Since(t0))
			}
		}()
	}
	wg.Wait()
	lat.report(b, start)
}

// BenchmarkRegistration compares, against one embedded etcd in one run,
// the raw etcd put rate with the rate of registrations of new tasks
// through the UDP registration protocol (authenticate, read, conditional
// transaction writing the task and its name index, signed reply).
func BenchmarkRegistration(b *testing.B) {
	cli, eps := etcdtest.Start(b)
	b.Run("etcd-put", func(b *testing.B) {
		b.ResetTimer()
		parallel(b, b.N, func(i int) error {
			_, err := cli.Put(context.Background(), fmt.Sprintf("/bench/put/%016x", i), `{"domain":"prod","name":"bench","tenant":"t","identifier":"0:0:0:1","sir":"2001:db8::1","locator":"fd00:0:0:1","nve":"a","lifetime":"1m0s","version":1,"state":"active"}`)
			return err
		})
	})

	for _, serializable := range []bool{false, true} {
		name := "udp-register/linearizable-reads"
		if serializable {
			name = "udp-register/serializable-reads"
		}
		b.Run(name, func(b *testing.B) { benchUDPRegister(b, eps, serializable) })
	}
}

var benchRound atomic.Int64

// udpRig is a mapping service behind a registration server, and one
// client per worker.
type udpRig struct {
	clients []*regproto.Client
	store   *etcdstore.Store
	round   int64
}

func newUDPRig(b *testing.B, eps []string, serializable bool) *udpRig {
	keys := regproto.KeyFile{1: {NVE: "mapsrv", Secret: []byte("mapsrv-secret-0123456789abcdef")}}
	for i := range benchWorkers {
		keys[uint32(10+i)] = regproto.KeyEntry{NVE: "a", Secret: []byte(fmt.Sprintf("nve-a-secret-%02d-0123456789abcdef", i))}
	}
	store := etcdstore.NewWithOptions(etcdtest.NewClient(b, eps), etcdstore.Options{SerializableReads: serializable})
	svc, err := mapsrv.New(mapsrv.Config{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sirPrefix, Csum: ila.CsumNeutralMap}); err != nil {
		b.Fatal(err)
	}
	if err := svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: "a", Locators: []ila.Locator{locA}, Underlay: netip.MustParseAddr("fd99::1")}}); err != nil {
		b.Fatal(err)
	}
	conn := listenUDP(b)
	srv := &regproto.Server{Conn: conn, Keys: keys, KeyID: 1, Secret: keys[1].Secret, Handler: svc, MaxInFlight: 2 * benchWorkers}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = srv.Run(sctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	rig := &udpRig{store: store, round: benchRound.Add(1) << 8}
	for i := range benchWorkers {
		c := &regproto.Client{Server: addrOf(conn), KeyID: uint32(10 + i), Secret: keys[uint32(10+i)].Secret, Keys: keys, ServerKeyID: 1, Timeout: 2 * time.Second}
		b.Cleanup(func() { c.Close() })
		rig.clients = append(rig.clients, c)
	}
	return rig
}

// register registers new task i of the current round.
func (r *udpRig) register(i int) error {
	id := uint64(r.round)<<32 | uint64(i)<<1 | 1 // unique, low 16 bits never 0
	sir := sirPrefix.Addr(ila.Identifier(id))
	rep, err := r.clients[i%benchWorkers].Do(context.Background(), &regproto.Message{VMID: fmt.Sprintf("vm-%d-%d", r.round, i), Tenant: "bench", Addrs: []netip.Addr{sir}, Lifetime: 900})
	if err != nil {
		return err
	}
	return rep.Err()
}

func benchUDPRegister(b *testing.B, eps []string, serializable bool) {
	rig := newUDPRig(b, eps, serializable)
	b.ResetTimer()
	parallel(b, b.N, rig.register)
}

// BenchmarkRegistrationVsPut interleaves rounds of raw etcd puts, of UDP
// registrations of new tasks and of UDP refreshes of those tasks (500
// each, 32 workers) against one embedded etcd, so that all see the same
// machine load, and reports the rates, their ratios to the put rate and
// the p99 latencies.
func BenchmarkRegistrationVsPut(b *testing.B) {
	cli, eps := etcdtest.Start(b)
	rig := newUDPRig(b, eps, false)
	const batch = 500
	var putLat, newLat, refLat latencies
	var putTime, newTime, refTime time.Duration
	value := `{"domain":"prod","name":"bench","tenant":"t","identifier":"0:0:0:1","sir":"2001:db8::1","locator":"fd00:0:0:1","nve":"a","lifetime":"1m0s","version":1,"state":"active"}`
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		base := n * batch
		t0 := time.Now()
		runBatch(b, batch, &putLat, func(i int) error {
			_, err := cli.Put(context.Background(), fmt.Sprintf("/bench/put/%016x", base+i), value)
			return err
		})
		putTime += time.Since(t0)
		t0 = time.Now()
		runBatch(b, batch, &newLat, func(i int) error { return rig.register(base + i) })
		newTime += time.Since(t0)
		t0 = time.Now()
		runBatch(b, batch, &refLat, func(i int) error { return rig.register(base + i) })
		refTime += time.Since(t0)
	}
	b.StopTimer()
	ops := float64(b.N * batch)
	putRate, newRate, refRate := ops/putTime.Seconds(), ops/newTime.Seconds(), ops/refTime.Seconds()
	b.ReportMetric(putRate, "put/s")
	b.ReportMetric(newRate, "reg-new/s")
	b.ReportMetric(refRate, "reg-refresh/s")
	b.ReportMetric(newRate/putRate, "new/put")
	b.ReportMetric(refRate/putRate, "refresh/put")
	b.ReportMetric(putLat.quantile(0.99), "put-p99-ms")
	b.ReportMetric(newLat.quantile(0.99), "new-p99-ms")
	b.ReportMetric(refLat.quantile(0.99), "refresh-p99-ms")
	if batches, calls := rig.store.BatchStats(); batches > 0 {
		b.ReportMetric(float64(calls)/float64(batches), "txns/batch")
	}
	b.ReportMetric(0, "ns/op")
}

func (l *latencies) quantile(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	return float64(l.d[int(q*float64(len(l.d)-1))].Microseconds()) / 1000
}

// runBatch runs n operations on benchWorkers goroutines, recording
// latencies into lat.
func runBatch(b *testing.B, n int, lat *latencies, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				lat.add(time.Since(t0))
			}
		}()
	}
	wg.Wait()
}

// BenchmarkMoveToWatch measures the time from the start of a hot move
// (Service.Move: read, conditional transaction) to its event at each of
// N watchers (etcdstore.Watcher), N = 1, 10, 100. The p99 is over all
// watchers' events; "move-ms" is the move call itself (commit latency).
func BenchmarkMoveToWatch(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			cli, eps := etcdtest.Start(b)
			svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli), FlapMoves: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := svc.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sirPrefix, Csum: ila.CsumNeutralMap}); err != nil {
				b.Fatal(err)
			}
			for i, name := range []string{"a", "b"} {
				if err := svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: name, Locators: []ila.Locator{[]ila.Locator{locA, locB}[i]}, Underlay: netip.MustParseAddr("fd99::1")}}); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "a", Tenant: "t", Name: "vm", SIR: netip.MustParseAddr("2001:db8::1")}); err != nil {
				b.Fatal(err)
			}
			if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "b", Tenant: "t", Name: "pin", SIR: netip.MustParseAddr("2001:db8::2")}); err != nil {
				b.Fatal(err)
			}
			// Watchers share 10 clients at most, as ilad processes would
			// not share one connection.
			clients := make([]*clientv3.Client, min(n, 10))
			for i := range clients {
				clients[i] = etcdtest.NewClient(b, eps)
			}
			var (
				mu      sync.Mutex
				started = map[int64]time.Time{} // task version -> move start
				lat     latencies
				seen    sync.WaitGroup
			)
			wctx, wcancel := context.WithCancel(ctx)
			var wwg sync.WaitGroup
			var synced sync.WaitGroup
			synced.Add(n)
			for i := range n {
				c := clients[i%len(clients)]
				w := etcdstore.NewWatcher(c, c, etcdstore.WatchOptions{})
				wwg.Add(1)
				go func() {
					defer wwg.Done()
					first := true
					_ = w.Watch(wctx, func(ev ila.Event) {
						if ev.Type == ila.EventSynced && first {
							first = false
							synced.Done()
							return
						}
						if ev.Type != ila.EventTaskUpsert || ev.Task.Name != "vm" || first {
							return
						}
						now := time.Now()
						mu.Lock()
						t0, ok := started[ev.Task.Version]
						mu.Unlock()
						if ok {
							lat.add(now.Sub(t0))
							seen.Done()
						}
					})
				}()
			}
			synced.Wait()
			var moveLat latencies
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				to := []string{"b", "a"}[i%2]
				seen.Add(n)
				t0 := time.Now()
				mu.Lock()
				started[int64(i+2)] = t0
				mu.Unlock()
				rec, err := svc.Move(ctx, mapsrv.MoveRequest{Tenant: "t", Name: "vm", To: to})
				if err != nil {
					b.Fatal(err)
				}
				if rec.Version != int64(i+2) {
					b.Fatalf("version %d, want %d", rec.Version, i+2)
				}
				moveLat.add(time.Since(t0))
				seen.Wait()
			}
			b.StopTimer()
			wcancel()
			wwg.Wait()
			lat.report(b, start)
			moveLat.mu.Lock()
			slices.Sort(moveLat.d)
			b.ReportMetric(float64(moveLat.d[len(moveLat.d)*99/100].Microseconds())/1000, "move-p99-ms")
			moveLat.mu.Unlock()
		})
	}
}
