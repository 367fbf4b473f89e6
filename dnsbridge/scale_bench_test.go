package dnsbridge

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// cpuTime returns the CPU time the process used so far (user and
// system, every thread: the garbage collector's workers too).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func numGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}

// load1 returns the 1-minute load average, or -1.
func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// BenchmarkScaleZone compares a zone of 1,000 tasks with one of
// ILA_BENCH_TASKS (default 100,000) in one run, in four rounds that
// alternate the sizes; each zone is built in its round and is the only
// one in the heap while it is measured (a dnsbridge serves one zone: the
// garbage collector's cost of the zone counts). Per zone: the time to
// build it from a list, the heap it holds and the time of one forced
// garbage collection with it; queries per second of the handler (every
// CPU; unpack, lookup, reply, pack, as the miekg server does; uniformly
// random names of the zone, half by name, half by identifier, read from
// one buffer of wire-format queries like datagrams; no sockets: the
// network path does not depend on the zone's size), also per second of
// CPU the process used (user and system, every thread: a figure the
// other load of a shared machine disturbs less than queries per second),
// and the garbage collections meanwhile; the 1-minute load average next
// to each figure. In the last round: an AXFR (time, messages, bytes) and
// an IXFR after one move.
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
	const rounds = 4
	for round := range rounds {
		for _, n := range []int{1000, big} {
			scaleRound(b, round, n, round == rounds-1)
		}
	}
}

func scaleRound(b *testing.B, round, n int, transfers bool) {
	h0 := heapInUse()
	t0 := time.Now()
	s, tasks := benchZoneCfg(b, n, Config{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	build := time.Since(t0)
	// The queries, packed one after the other in one buffer.
	var buf []byte
	var offs []int
	qs := make([]*dns.Msg, len(tasks))
	for i, t := range tasks {
		if i%2 == 0 {
			qs[i] = new(dns.Msg).SetQuestion(t.Identifier.Hex()+".id.ila.internal.", dns.TypeAAAA)
		} else {
			qs[i] = new(dns.Msg).SetQuestion(t.Name+"."+t.Tenant+".ila.internal.", dns.TypeAAAA)
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(qs), func(i, j int) { qs[i], qs[j] = qs[j], qs[i] })
	for i, q := range qs {
		q.Id = uint16(i)
		w, err := q.Pack()
		if err != nil {
			b.Fatal(err)
		}
		offs = append(offs, len(buf))
		buf = append(buf, w...)
		// Every query must be answered (not NXDOMAIN) for the figure to
		// mean anything.
		if i < 100 {
			if rep := s.respond(q, true, 0); rep.Rcode != dns.RcodeSuccess || len(rep.Answer) == 0 {
				b.Fatalf("%s: rcode %s, %d answers", q.Question[0].Name, dns.RcodeToString[rep.Rcode], len(rep.Answer))
			}
		}
	}
	offs = append(offs, len(buf))
	// Keep only the tasks the IXFR needs: the benchmark's own copies of
	// the tasks (strings, addresses) and queries are not the server's heap.
	qs, tasks = nil, slices.Clone(tasks[:min(len(tasks), 10)])
	heap := heapInUse() - h0 - uint64(cap(buf)+8*cap(offs))
	t0 = time.Now()
	runtime.GC()
	gcTime := time.Since(t0)
	b.Run(fmt.Sprintf("r%d/tasks=%d/build", round, n), func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(build.Seconds()*1000, "build-ms")
		b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(heap)/float64(n), "heap-B/task")
		b.ReportMetric(gcTime.Seconds()*1000, "gc-ms")
		b.ReportMetric(load1(), "load")
	})
	b.Run(fmt.Sprintf("r%d/tasks=%d/query", round, n), func(b *testing.B) {
		cpu0, gc0 := cpuTime(), numGC()
		b.RunParallel(func(pb *testing.PB) {
			w := &discardWriter{fuzzWriter{udp: true}}
			i := rand.IntN(n)
			for pb.Next() {
				m := new(dns.Msg)
				if err := m.Unpack(buf[offs[i]:offs[i+1]]); err != nil {
					b.Error(err)
					return
				}
				s.ServeDNS(w, m)
				if i++; i == n {
					i = 0
				}
			}
		})
		cpu, gcs := cpuTime()-cpu0, numGC()-gc0
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "qps")
		if cpu > 0 {
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "q/cpu-s")
		}
		b.ReportMetric(float64(gcs), "gcs")
		b.ReportMetric(load1(), "load")
	})
	if !transfers {
		return
	}
	b.Run(fmt.Sprintf("tasks=%d/axfr", n), func(b *testing.B) {
		var w sizeWriter
		for b.Loop() {
			w = sizeWriter{}
			s.ServeDNS(&w, new(dns.Msg).SetAxfr("ila.internal."))
		}
		if w.rrs < n {
			b.Fatalf("AXFR of %d records for %d tasks", w.rrs, n)
		}
		b.ReportMetric(float64(w.bytes)/(1<<20), "MiB")
		b.ReportMetric(float64(w.msgs), "msgs")
		b.ReportMetric(float64(w.rrs), "rrs")
		b.ReportMetric(load1(), "load")
	})
	b.Run(fmt.Sprintf("tasks=%d/ixfr_after_move", n), func(b *testing.B) {
		var w sizeWriter
		rev := int64(1 << 20)
		for b.Loop() {
			b.StopTimer()
			_, from := s.z.state()
			t := tasks[int(rev)%len(tasks)]
			t.Locator = locA + ila.Locator(rev%2+1)
			t.Version = rev
			s.apply(upsert(rev, t))
			rev++
			q := new(dns.Msg).SetIxfr("ila.internal.", from, "", "")
			w = sizeWriter{}
			b.StartTimer()
			s.ServeDNS(&w, q)
		}
		b.ReportMetric(float64(w.bytes), "B")
		b.ReportMetric(float64(w.rrs), "rrs")
	})
}
