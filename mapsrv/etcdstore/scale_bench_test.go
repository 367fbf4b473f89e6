package etcdstore_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

// scaleRig is one embedded etcd filled with n tasks by real registrations
// (UDP registration protocol, mapsrv, conditional transactions writing the
// record and its name index), with a second NVE to move tasks to.
type scaleRig struct {
	n     int
	rig   *udpRig
	svc   *mapsrv.Service
	eps   []string
	store *etcdstore.Store
}

func newScaleRig(b *testing.B, n int) *scaleRig {
	cli, eps := etcdtest.Start(b)
	r := &scaleRig{n: n, rig: newUDPRig(b, eps, false), eps: eps, store: etcdstore.New(cli)}
	svc, err := mapsrv.New(mapsrv.Config{Store: r.store})
	if err != nil {
		b.Fatal(err)
	}
	r.svc = svc
	if err := svc.AddNVE(b.Context(), mapsrv.NVERecord{NVE: ila.NVE{Name: "b", Locators: []ila.Locator{locB}, Underlay: netip.MustParseAddr("fd99::2")}}); err != nil {
		b.Fatal(err)
	}
	var lat latencies
	start := time.Now()
	runBatch(b, n, &lat, r.rig.register)
	b.Logf("%d tasks registered in %v (%.0f/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	// The first move to b pins b's locator for the domain into b's NVE
	// record; concurrent first moves conflict on it (mapsrv.ErrConflict).
	// One move outside the measurement does it.
	if err := r.rig.register(n + 100_000); err != nil {
		b.Fatal(err)
	}
	if _, err := svc.Move(b.Context(), mapsrv.MoveRequest{Tenant: "bench", Name: r.name(n + 100_000), To: "b"}); err != nil {
		b.Fatal(err)
	}
	return r
}

func (r *scaleRig) name(i int) string { return fmt.Sprintf("vm-%d-%d", r.rig.round, i) }

// BenchmarkScaleStore compares a store holding 1,000 tasks with one
// holding ILA_BENCH_TASKS (default 100,000), each its own embedded etcd
// filled by real registrations, in one run: etcd's database size per
// task; a full list of the task records (what a mapsrv sweep, dnsbridge
// and ilad read at start or after a compaction): time and bytes; a
// watcher's list to synced (etcdstore.Watcher, the start of every
// consumer); and, interleaved between the two stores, registrations of
// new tasks and hot moves of existing ones (32 workers, latency p50/p99).
//
//	go test -run '^$' -bench ScaleStore -benchtime 1x ./mapsrv/etcdstore
func BenchmarkScaleStore(b *testing.B) {
	big := benchTasks(b, 100_000)
	rigs := []*scaleRig{newScaleRig(b, 1000), newScaleRig(b, big)}
	ctx := b.Context()
	for _, r := range rigs {
		b.Run(fmt.Sprintf("tasks=%d/store", r.n), func(b *testing.B) {
			for b.Loop() {
				c := etcdtest.NewClient(b, r.eps)
				st, err := c.Status(ctx, r.eps[0])
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(st.DbSize)/float64(r.n), "db-B/task")
				b.ReportMetric(float64(st.DbSizeInUse)/float64(r.n), "db-inuse-B/task")
				t0 := time.Now()
				kvs, _, err := etcdstore.New(c).List(ctx, mapsrv.Prefix+"map/")
				if err != nil {
					b.Fatal(err)
				}
				took := time.Since(t0)
				var bytes int
				for _, kv := range kvs {
					bytes += len(kv.Key) + len(kv.Value)
				}
				b.ReportMetric(took.Seconds()*1000, "list-ms")
				b.ReportMetric(float64(bytes)/(1<<20), "list-MiB")
				b.ReportMetric(float64(took.Nanoseconds())/float64(len(kvs)), "list-ns/task")
				t0 = time.Now()
				wctx, cancel := context.WithCancel(ctx)
				tasks := 0
				w := etcdstore.NewWatcher(c, c, etcdstore.WatchOptions{})
				_ = w.Watch(wctx, func(ev ila.Event) {
					switch ev.Type {
					case ila.EventTaskUpsert:
						tasks++
					case ila.EventSynced:
						cancel()
					}
				})
				cancel()
				b.ReportMetric(time.Since(t0).Seconds()*1000, "watch-synced-ms")
				if tasks < r.n {
					b.Fatalf("watcher listed %d tasks, want %d", tasks, r.n)
				}
			}
		})
	}
	// Registrations and moves, 500 at a time, alternating between the
	// stores so that both see the same machine load.
	const batch = 500
	reg := make([]latencies, len(rigs))
	mov := make([]latencies, len(rigs))
	for round := range 4 {
		for i, r := range rigs {
			base := r.n + round*batch
			runBatch(b, batch, &reg[i], func(j int) error { return r.rig.register(base + j) })
			// Tasks 0-999 go to b in rounds 0 and 1, back to a in 2 and 3.
			to := []string{"b", "b", "a", "a"}[round]
			runBatch(b, batch, &mov[i], func(j int) error {
				_, err := r.svc.Move(ctx, mapsrv.MoveRequest{Tenant: "bench", Name: r.name(round%2*batch + j), To: to})
				return err
			})
		}
	}
	for i, r := range rigs {
		b.Run(fmt.Sprintf("tasks=%d/ops", r.n), func(b *testing.B) {
			for b.Loop() {
			}
			b.ReportMetric(reg[i].quantile(0.5), "reg-p50-ms")
			b.ReportMetric(reg[i].quantile(0.99), "reg-p99-ms")
			b.ReportMetric(mov[i].quantile(0.5), "move-p50-ms")
			b.ReportMetric(mov[i].quantile(0.99), "move-p99-ms")
		})
	}
}
