//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
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
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

// One NVE, a million mappings in the store: BenchmarkScaleList fills an
// embedded etcd with ILA_BENCH_TASKS task records (default 1,000,000;
// the records are a real registration's record with the identifier, name,
// MAC and NVE varied, written straight to etcd in 128-put transactions;
// with ILA_BENCH_INDEXES=1 also the name and MAC index entries a
// registration writes, else none) over 1,000 NVEs, then starts a node agent
// (locator.Agent with its own etcd client and etcdstore.Watcher, as ilad
// runs it) and measures
//   - push: the time from Run to every mapping installed, the Go heap the
//     agent holds afterwards (the process also runs etcd: heap measured
//     after GC, before and after), the datapath's kernel memory;
//   - resync: the agent's watch is cut, 1% of the tasks move and etcd is
//     compacted; from the watch's return (ErrCompacted, a re-list) to the
//     agent synced again with the moves installed, while a sampler counts
//     the installed mappings (they must never drop) and deletes are
//     counted (there must be none);
//   - restart: ilad restarts over the table it left (the real datapath's
//     maps pinned in bpffs, closed and opened again): the mappings held
//     when the new agent starts, its time to synced with the store, and
//     the datapath writes it made (none when nothing changed);
//   - pull: the same list into a pull-mode agent (working set capped).
//
// s-list-delivered is when the watcher has delivered the whole list
// (its EventSynced), s-list-to-installed when the agent has written it.
// ILA_BENCH_CPUPROFILE=file profiles the agent's start (file.push,
// file.pull) and restart (file.restart).
//
// With ILA_BENCH_REAL=1 (root) the datapath is the real eBPF one (maps
// only, nothing attached), else locatortest.Datapath.
//
//	go test -c -o /tmp/ilad.test ./cmd/ilad
//	sudo ILA_BENCH_REAL=1 /tmp/ilad.test -test.run '^$' -test.bench ScaleList -test.benchtime 1x
func BenchmarkScaleList(b *testing.B) {
	real := os.Getenv("ILA_BENCH_REAL") == "1"
	if real {
		testutil.Privileged(b)
	}
	n := 1_000_000
	if s := os.Getenv("ILA_BENCH_TASKS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("ILA_BENCH_TASKS=%q: want a positive integer", s)
		}
		n = v
	}
	cli, eps := etcdtest.Start(b)
	ctx := b.Context()
	start := time.Now()
	fill, err := fillStore(ctx, cli, n, 1000)
	if err != nil {
		b.Fatal(err)
	}
	st, err := cli.Status(ctx, eps[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("store: %d tasks written in %v; etcd db %d MiB (%d B/task), record %d B", n, time.Since(start).Round(time.Millisecond), st.DbSize>>20, st.DbSize/int64(n), fill.recSize)

	for _, mode := range []locator.Mode{locator.ModePush, locator.ModePull} {
		b.Run(string(mode), func(b *testing.B) {
			for b.Loop() {
				scaleAgent(b, eps, cli, fill, n, mode, real)
			}
		})
	}
}

type filled struct {
	dom     ila.Domain
	recs    []mapsrv.TaskRecord
	recSize int
}

// fillStore writes n task records spread over nves NVEs (and the NVE and
// domain records) straight into etcd.
func fillStore(ctx context.Context, cli *clientv3.Client, n, nves int) (filled, error) {
	svc, err := mapsrv.New(mapsrv.Config{Store: etcdstore.New(cli)})
	if err != nil {
		return filled{}, err
	}
	dom := ila.Domain{Name: "prod", SIR: labSIR, Csum: ila.CsumNeutralMap}
	if err := svc.AddDomain(ctx, dom); err != nil {
		return filled{}, err
	}
	locs := make([]ila.Locator, nves)
	for i := range nves {
		locs[i] = ila.Locator(0x2001_0db8_1000_0000 + uint64(i)<<8)
		if err := svc.AddNVE(ctx, mapsrv.NVERecord{NVE: ila.NVE{Name: fmt.Sprintf("nve%d", i), Locators: []ila.Locator{locs[i]}, Underlay: netip.AddrFrom16([16]byte{0xfd, 15: byte(i), 14: byte(i >> 8)})}}); err != nil {
			return filled{}, err
		}
	}
	// One real registration gives the record every other is made from.
	const first = ila.Identifier(0x1001)
	if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "nve0", Domain: "prod", Tenant: "bench", Name: "t0", SIR: labSIR.Addr(first), MAC: ila.MAC{2, 0, 0, 0, 0, 1}}); err != nil {
		return filled{}, err
	}
	resp, err := cli.Get(ctx, mapsrv.TaskKey("prod", first))
	if err != nil || len(resp.Kvs) != 1 {
		return filled{}, fmt.Errorf("read the template record: %v", err)
	}
	var tmpl mapsrv.TaskRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &tmpl); err != nil {
		return filled{}, err
	}
	f := filled{dom: dom, recs: make([]mapsrv.TaskRecord, n), recSize: len(resp.Kvs[0].Value)}
	for i := range n {
		r := tmpl
		id := ila.Identifier(0x2000_0000_0000_0001 + uint64(i+1)<<16)
		r.Identifier, r.SIR = id, labSIR.Addr(id)
		r.Name = "t" + strconv.Itoa(i)
		r.MAC = ila.MAC{2, 1, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		r.NVE, r.Locator = fmt.Sprintf("nve%d", i%nves), locs[i%nves]
		f.recs[i] = r
	}
	if err := putRecords(ctx, cli, f.recs); err != nil {
		return filled{}, err
	}
	if os.Getenv("ILA_BENCH_INDEXES") == "1" {
		return f, putIndexes(ctx, cli, f.recs)
	}
	return f, nil
}

// putIndexes writes the name and MAC index entries a registration writes
// beside each record (keys under the watched prefix that are not records).
func putIndexes(ctx context.Context, cli *clientv3.Client, recs []mapsrv.TaskRecord) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := 0; i < len(recs); i += 64 {
		chunk := recs[i:min(i+64, len(recs))]
		g.Go(func() error {
			ops := make([]clientv3.Op, 0, 2*len(chunk))
			for _, r := range chunk {
				v, err := json.Marshal(mapsrv.Index{Domain: r.Domain, Identifier: r.Identifier})
				if err != nil {
					return err
				}
				ops = append(ops, clientv3.OpPut(mapsrv.NameKey(r.Tenant, r.Name), string(v)), clientv3.OpPut(mapsrv.MACKey(r.MAC), string(v)))
			}
			_, err := cli.Txn(gctx).Then(ops...).Commit()
			return err
		})
	}
	return g.Wait()
}

// putRecords writes task records in transactions of 128 puts (etcd's
// default --max-txn-ops), four at a time.
func putRecords(ctx context.Context, cli *clientv3.Client, recs []mapsrv.TaskRecord) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := 0; i < len(recs); i += 128 {
		chunk := recs[i:min(i+128, len(recs))]
		g.Go(func() error {
			ops := make([]clientv3.Op, 0, len(chunk))
			for _, r := range chunk {
				v, err := json.Marshal(r)
				if err != nil {
					return err
				}
				ops = append(ops, clientv3.OpPut(mapsrv.TaskKey(r.Domain, r.Identifier), string(v)))
			}
			_, err := cli.Txn(gctx).Then(ops...).Commit()
			return err
		})
	}
	return g.Wait()
}

// countingDP counts mapping deletes and upserts (one per mapping of a
// batch) on its way to the datapath.
type countingDP struct {
	locator.Datapath
	upserts, deletes atomic.Int64
}

func (c *countingDP) UpsertMapping(m ila.Mapping) error {
	c.upserts.Add(1)
	return c.Datapath.UpsertMapping(m)
}

func (c *countingDP) UpsertMappings(ms []ila.Mapping) (int, error) {
	c.upserts.Add(int64(len(ms)))
	if b, ok := c.Datapath.(locator.MappingBatcher); ok {
		return b.UpsertMappings(ms)
	}
	for i, m := range ms {
		if err := c.Datapath.UpsertMapping(m); err != nil {
			return i, err
		}
	}
	return len(ms), nil
}

func (c *countingDP) DeleteMapping(sir ila.SIRPrefix, id ila.Identifier) error {
	c.deletes.Add(1)
	return c.Datapath.DeleteMapping(sir, id)
}

// syncTimer notes when the first EventSynced leaves the source: the
// whole list delivered, before the agent writes its batch.
type syncTimer struct {
	locator.MappingSource
	firstSynced atomic.Pointer[time.Time]
}

func (s *syncTimer) Watch(ctx context.Context, fn func(ila.Event)) error {
	return s.MappingSource.Watch(ctx, func(ev ila.Event) {
		if ev.Type == ila.EventSynced && s.firstSynced.Load() == nil {
			t := time.Now()
			s.firstSynced.Store(&t)
		}
		fn(ev)
	})
}

// gateWatcher lets the benchmark cut the agent's watch and hold its next
// one until released (a partition).
type gateWatcher struct {
	clientv3.Watcher
	mu     sync.Mutex
	open   chan struct{}
	cancel context.CancelFunc
	waits  atomic.Int64 // Watch calls held at the gate
}

func (g *gateWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	g.waits.Add(1)
	select {
	case <-open:
	case <-ctx.Done():
	}
	wctx, cancel := context.WithCancel(ctx)
	g.mu.Lock()
	g.cancel = cancel
	g.mu.Unlock()
	return g.Watcher.Watch(wctx, key, opts...)
}

func (g *gateWatcher) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
	if g.cancel != nil {
		g.cancel()
	}
}

func (g *gateWatcher) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

func heapMiB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}

func scaleAgent(b *testing.B, eps []string, cli *clientv3.Client, f filled, n int, mode locator.Mode, real bool) {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var base locator.Datapath = locatortest.NewDatapath()
	var dp *datapath.Datapath
	var pin string // the real datapath's maps are pinned: the restart adopts them
	if real {
		var err error
		if pin, err = os.MkdirTemp("/sys/fs/bpf", "ilad-scale-"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(pin)
		if dp, err = datapath.Open(datapath.Config{PinPath: pin}); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = dp.Unpin(); dp.Close() }()
		base = realDP{dp}
	}
	cdp := &countingDP{Datapath: base}
	c := etcdtest.NewClient(b, eps)
	gate := &gateWatcher{Watcher: c, open: make(chan struct{})}
	close(gate.open)
	errs := make(chan error, 16)
	src := &syncTimer{MappingSource: etcdstore.NewWatcher(c, gate, etcdstore.WatchOptions{MinBackoff: time.Millisecond, OnError: func(err error) {
		select {
		case errs <- err:
		default:
		}
	}})}
	a, err := locator.New(locator.Config{
		Node: "bench", Mode: mode, Locators: []locator.LocatorSpec{{Locator: 0x2001_0db8_0fff_0000}},
		Datapath: cdp,
		Source:   src,
	})
	if err != nil {
		b.Fatal(err)
	}
	heap0 := heapMiB()
	stopProfile := startProfile(b, string(mode))
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func(locator.Stats) bool) locator.Stats {
		for {
			s := a.Stats()
			if ok(s) {
				return s
			}
			select {
			case err := <-done:
				b.Fatalf("%s: agent stopped: %v", what, err)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	// The list phase (every record delivered to the agent) and the sync
	// (the batch into the datapath) separately.
	s := waitFor("list", func(s locator.Stats) bool { return s.Synced })
	took := time.Since(start)
	stopProfile()
	listed := src.firstSynced.Load().Sub(start)
	b.ReportMetric(took.Seconds(), "s-list-to-installed")
	b.ReportMetric(listed.Seconds(), "s-list-delivered")
	b.ReportMetric(float64(s.Mappings), "mappings")
	b.ReportMetric(heapMiB()-heap0, "MiB-heap-agent")
	if dp != nil {
		if mem, err := dp.MappingsMemory(); err == nil {
			b.ReportMetric(float64(mem)/(1<<20), "MiB-kernel-table")
		}
	}
	if mode == locator.ModePull {
		if s.Mappings >= n {
			b.Errorf("pull mode installed %d mappings", s.Mappings)
		}
		return
	}
	n++ // the template task
	if s.Mappings != n {
		b.Fatalf("installed %d mappings, want %d", s.Mappings, n)
	}

	// Resync after a compaction: cut the watch, wait for the re-list it
	// makes at once (the watcher always lists after a broken watch) and
	// for its watch to be held at the gate; move 1%, compact; release.
	syncs := s.Syncs
	gate.cut()
	waitFor("first re-list", func(s locator.Stats) bool { return s.Syncs > syncs })
	for gate.waits.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	syncs = a.Stats().Syncs
	var moved []mapsrv.TaskRecord
	for i := 0; i < len(f.recs); i += 100 {
		r := f.recs[i]
		r.Locator = f.recs[(i+1)%len(f.recs)].Locator
		r.NVE = f.recs[(i+1)%len(f.recs)].NVE
		r.Version++
		moved = append(moved, r)
	}
	if err := putRecords(ctx, cli, moved); err != nil {
		b.Fatal(err)
	}
	resp, err := cli.Get(ctx, "/")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		b.Fatal(err)
	}
	for len(errs) > 0 {
		<-errs
	}
	up0, del0 := cdp.upserts.Load(), cdp.deletes.Load()
	// The sampler: how many mappings the datapath holds, every 20 ms (a
	// read of a million takes longer than that) until the resync ends.
	minSeen := n
	stop := make(chan struct{})
	sampled := make(chan int)
	go func() {
		samples := 0
		for {
			select {
			case <-stop:
				sampled <- samples
				return
			default:
			}
			cnt := 0
			_ = base.Mappings(func(ila.Mapping) bool { cnt++; return true })
			minSeen = min(minSeen, cnt)
			samples++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	t0 := time.Now()
	gate.release()
	waitFor("resync", func(s locator.Stats) bool { return s.Syncs > syncs })
	resync := time.Since(t0)
	close(stop)
	samples := <-sampled
	compacted := false
	for len(errs) > 0 {
		if e := <-errs; e != nil && isCompacted(e) {
			compacted = true
		}
	}
	if !compacted {
		b.Errorf("the watch did not resume into a compaction")
	}
	b.ReportMetric(resync.Seconds(), "s-resync-1pct")
	b.ReportMetric(float64(cdp.upserts.Load()-up0), "resync-upserts")
	b.ReportMetric(float64(cdp.deletes.Load()-del0), "resync-deletes")
	b.ReportMetric(float64(minSeen), "resync-min-installed")
	b.Logf("resync: %d samples of the datapath table, fewest mappings seen %d of %d", samples, minSeen, n)
	if minSeen < n || cdp.deletes.Load() != del0 {
		b.Errorf("forwarding gap during the resync: %d mappings at worst, %d deletes", minSeen, cdp.deletes.Load()-del0)
	}
	got := map[ila.Identifier]ila.Locator{}
	_ = base.Mappings(func(m ila.Mapping) bool {
		got[m.Identifier] = m.Locator
		return true
	})
	for _, r := range moved {
		if got[r.Identifier] != r.Locator {
			b.Fatalf("after the resync %s maps to %s, want %s", r.Identifier, got[r.Identifier], r.Locator)
		}
	}

	// ilad restarts: the agent stops, the datapath is closed (the real
	// one keeps its pinned maps: the programs would keep forwarding) and
	// opened again; a new agent adopts the table and syncs with the store.
	cancel()
	<-done
	done <- nil // for the deferred receive
	if real {
		dp.Close()
		var err error
		if dp, err = datapath.Open(datapath.Config{PinPath: pin}); err != nil {
			b.Fatal(err)
		}
		base = realDP{dp}
	}
	held := 0
	_ = base.Mappings(func(ila.Mapping) bool { held++; return true })
	cdp2 := &countingDP{Datapath: base}
	c2 := etcdtest.NewClient(b, eps)
	a2, err := locator.New(locator.Config{
		Node: "bench", Mode: mode, Locators: []locator.LocatorSpec{{Locator: 0x2001_0db8_0fff_0000}},
		Datapath: cdp2, Source: etcdstore.NewWatcher(c2, c2, etcdstore.WatchOptions{}),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(b.Context())
	defer cancel2()
	done2 := make(chan error, 1)
	stopProfile = startProfile(b, "restart")
	t0 = time.Now()
	go func() { done2 <- a2.Run(ctx2) }()
	for s := a2.Stats(); !s.Synced; s = a2.Stats() {
		select {
		case err := <-done2:
			b.Fatalf("restarted agent stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.ReportMetric(time.Since(t0).Seconds(), "s-restart-to-synced")
	stopProfile()
	b.ReportMetric(float64(held), "restart-held-at-start")
	b.ReportMetric(float64(cdp2.upserts.Load()+cdp2.deletes.Load()), "restart-writes")
	if held != n || a2.Stats().Mappings != n {
		b.Errorf("restart: %d mappings held at the start, %d after the sync; want %d", held, a2.Stats().Mappings, n)
	}
	cancel2()
	if err := <-done2; err != nil {
		b.Errorf("restarted agent: %v", err)
	}
}

// startProfile starts a CPU profile of the agent's start into
// $ILA_BENCH_CPUPROFILE.<name> when that variable is set (the
// benchmark's own -test.cpuprofile would include the fill).
func startProfile(b *testing.B, name string) func() {
	p := os.Getenv("ILA_BENCH_CPUPROFILE")
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p + "." + name)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func isCompacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }
