package dnsbridge

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// sizeWriter packs every message like the miekg server would and counts
// messages, bytes and records.
type sizeWriter struct {
	fuzzWriter
	msgs, bytes, rrs int
}

func (w *sizeWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	w.msgs++
	w.bytes += len(b)
	w.rrs += len(m.Answer)
	return nil
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkScaleZone compares a zone of 1,000 tasks with one of
// ILA_BENCH_TASKS (default 100,000) in one run: the heap each zone holds
// and the time to build it from a list; queries per second of the handler
// (lookup, reply, pack; every CPU, uniformly random names of the zone, no
// network: the socket path does not depend on the zone's size), the two
// sizes interleaved twice; an AXFR (time, messages, bytes); and an IXFR
// after one move.
//
//	go test -run '^$' -bench ScaleZone -benchtime 2s ./dnsbridge
func BenchmarkScaleZone(b *testing.B) {
	big := 100_000
	if s := os.Getenv("ILA_BENCH_TASKS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("ILA_BENCH_TASKS=%q: want a positive integer", s)
		}
		big = v
	}
	type zoneRig struct {
		n     int
		s     *Server
		tasks []ila.Task
		qs    []*dns.Msg
	}
	var rigs []*zoneRig
	for _, n := range []int{1000, big} {
		h0 := heapInUse()
		t0 := time.Now()
		s, tasks := benchZoneCfg(b, n, Config{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		build := time.Since(t0)
		heap := heapInUse() - h0
		r := &zoneRig{n: n, s: s, tasks: tasks}
		for i, t := range tasks {
			if i%2 == 0 {
				r.qs = append(r.qs, new(dns.Msg).SetQuestion(t.Identifier.Hex()+".id.ila.internal.", dns.TypeAAAA))
			} else {
				r.qs = append(r.qs, new(dns.Msg).SetQuestion(t.Name+"."+t.Tenant+".ila.internal.", dns.TypeAAAA))
			}
		}
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(r.qs), func(i, j int) { r.qs[i], r.qs[j] = r.qs[j], r.qs[i] })
		// Every query must be answered (not NXDOMAIN) for the figure to
		// mean anything.
		for _, q := range r.qs[:min(len(r.qs), 100)] {
			if rep := s.respond(q, true, 0); rep.Rcode != dns.RcodeSuccess || len(rep.Answer) == 0 {
				b.Fatalf("%s: rcode %s, %d answers", q.Question[0].Name, dns.RcodeToString[rep.Rcode], len(rep.Answer))
			}
		}
		b.Run(fmt.Sprintf("tasks=%d/build", n), func(b *testing.B) {
			for b.Loop() {
			}
			b.ReportMetric(build.Seconds()*1000, "build-ms")
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(heap)/float64(n), "heap-B/task")
		})
		rigs = append(rigs, r)
	}
	for round := range 2 {
		for _, r := range rigs {
			b.Run(fmt.Sprintf("r%d/tasks=%d/query", round, r.n), func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					w := &discardWriter{fuzzWriter{udp: true}}
					i := rand.IntN(len(r.qs))
					for pb.Next() {
						r.s.ServeDNS(w, r.qs[i%len(r.qs)])
						i++
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "qps")
			})
		}
	}
	for _, r := range rigs {
		b.Run(fmt.Sprintf("tasks=%d/axfr", r.n), func(b *testing.B) {
			var w sizeWriter
			for b.Loop() {
				w = sizeWriter{}
				r.s.ServeDNS(&w, new(dns.Msg).SetAxfr("ila.internal."))
			}
			if w.rrs < r.n {
				b.Fatalf("AXFR of %d records for %d tasks", w.rrs, r.n)
			}
			b.ReportMetric(float64(w.bytes)/(1<<20), "MiB")
			b.ReportMetric(float64(w.msgs), "msgs")
			b.ReportMetric(float64(w.rrs), "rrs")
		})
		b.Run(fmt.Sprintf("tasks=%d/ixfr_after_move", r.n), func(b *testing.B) {
			var w sizeWriter
			rev := int64(1 << 20)
			for b.Loop() {
				b.StopTimer()
				_, from := r.s.z.state()
				t := r.tasks[int(rev)%len(r.tasks)]
				t.Locator = locA + ila.Locator(rev%2+1)
				t.Version = rev
				r.s.apply(upsert(rev, t))
				rev++
				q := new(dns.Msg).SetIxfr("ila.internal.", from, "", "")
				w = sizeWriter{}
				b.StartTimer()
				r.s.ServeDNS(&w, q)
			}
			b.ReportMetric(float64(w.bytes), "B")
			b.ReportMetric(float64(w.rrs), "rrs")
		})
	}
}
