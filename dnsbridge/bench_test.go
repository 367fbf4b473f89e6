package dnsbridge

import (
	"fmt"
	"testing"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// benchZone returns a synced zone of n tasks.
func benchZone(b *testing.B, n int) (*Server, []ila.Task) { return benchZoneCfg(b, n, Config{}) }

// benchZoneCfg returns a synced zone of n tasks served with cfg.
func benchZoneCfg(b *testing.B, n int, cfg Config) (*Server, []ila.Task) {
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s.apply(upsert(1, testDomain))
	tasks := make([]ila.Task, n)
	for i := range tasks {
		tasks[i] = testTask(b, fmt.Sprintf("web-%d", i), "blue", uint64(0x10000+i+1), locA, "nve1", "")
		s.apply(upsert(2, tasks[i]))
	}
	s.apply(synced(2))
	return s, tasks
}

// discardWriter packs the reply like the miekg server would, and drops it.
type discardWriter struct{ fuzzWriter }

func (w *discardWriter) WriteMsg(m *dns.Msg) error {
	_, err := m.Pack()
	return err
}

// BenchmarkServeDNS is the handler alone (lookup, reply, pack) on 10k tasks,
// from every CPU at once.
func BenchmarkServeDNS(b *testing.B) {
	s, tasks := benchZone(b, 10_000)
	qs := make([]*dns.Msg, len(tasks))
	for i, t := range tasks {
		qs[i] = new(dns.Msg).SetQuestion(t.Identifier.Hex()+".id.ila.internal.", dns.TypeAAAA)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{fuzzWriter{udp: true}}
		i := 0
		for pb.Next() {
			s.ServeDNS(w, qs[i%len(qs)])
			i++
		}
	})
}

// BenchmarkMove is the cost of applying one move event to a zone of 10k
// tasks (the write lock is held for this long).
func BenchmarkMove(b *testing.B) {
	s, tasks := benchZone(b, 10_000)
	b.ResetTimer()
	for i := range b.N {
		t := tasks[i%len(tasks)]
		t.Locator = locA + ila.Locator(i%2+1)
		t.Version = int64(i + 2)
		s.apply(upsert(int64(i+3), t))
	}
}
