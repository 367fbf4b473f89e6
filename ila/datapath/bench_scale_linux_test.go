package datapath

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// scaleLocators is how many remote NVEs the scale benchmarks spread their
// mappings over: the same set at every table size, so that the next-hop
// cache (4096 slots) sees the same destinations and only the mapping
// table differs.
const scaleLocators = 100

// scaleMappings returns n mappings in e's domain, identifiers spread over
// the whole 48 bits above the low 16 (neutral-map needs those non-zero).
func scaleMappings(e modeEnv, n int, seed uint64) []ila.Mapping {
	r := rand.New(rand.NewPCG(seed, 1))
	seen := make(map[ila.Identifier]bool, n)
	ms := make([]ila.Mapping, 0, n)
	for len(ms) < n {
		id := ila.Identifier(0x2000_0000_0000_0000 | r.Uint64()&0x0fff_ffff_ffff_0000 | 0x87)
		if seen[id] || id == idLocal || id == idLocalMAC || id == idRemote {
			continue
		}
		seen[id] = true
		loc := ila.Locator(0x2001_0db8_ff10_0000 + uint64(len(ms)%scaleLocators))
		ms = append(ms, ila.Mapping{SIR: e.dom.SIR, Identifier: id, Locator: loc, Csum: e.mode, Tenant: benchTenant})
	}
	return ms
}

// BenchmarkScaleLoad measures installing a large mapping table (the
// initial load of an NVE that holds every mapping), as one batch
// (UpsertMappings) and one by one (UpsertMapping), the resync of an
// unchanged table and of one where 1% moved, and the kernel memory the
// table takes (map info memlock). N mappings: ILA_BENCH_MAPPINGS (default
// 1,000,000) into a table of ILA_BENCH_TABLE entries (default 2^20).
//
//	go test -run '^$' -bench ScaleLoad -benchtime 1x ./ila/datapath
func BenchmarkScaleLoad(b *testing.B) {
	testutil.Privileged(b)
	n := envInt(b, "ILA_BENCH_MAPPINGS", 1_000_000)
	size := envInt(b, "ILA_BENCH_TABLE", DefaultMaxMappings)
	e := envFor(ila.CsumNeutralMap)
	ms := scaleMappings(e, n, 1)
	open := func(b *testing.B) *Datapath {
		d, err := Open(Config{MaxMappings: size})
		must(b, err)
		must(b, d.AddLocator(e.own, e.dom))
		return d
	}
	memlock := func(d *Datapath) float64 {
		info, err := d.objs.IlaMappings.Info()
		must(b, err)
		m, _ := info.Memlock()
		return float64(m)
	}
	b.Run(fmt.Sprintf("batch/%d", n), func(b *testing.B) {
		var d *Datapath
		for b.Loop() {
			b.StopTimer()
			if d != nil {
				d.Close()
			}
			d = open(b)
			runtime.GC()
			b.StartTimer()
			got, err := d.UpsertMappings(ms)
			must(b, err)
			if got != n {
				b.Fatalf("installed %d of %d", got, n)
			}
		}
		b.ReportMetric(memlock(d)/(1<<20), "MiB-kernel")
		b.ReportMetric(memlock(d)/float64(n), "B/mapping-kernel")
		b.StopTimer()
		// Resync: the same list again (nothing written), then with 1%
		// moved to another locator.
		start := time.Now()
		_, err := d.UpsertMappings(ms)
		must(b, err)
		b.ReportMetric(time.Since(start).Seconds(), "s-resync-same")
		moved := append([]ila.Mapping(nil), ms...)
		for i := 0; i < len(moved); i += 100 {
			moved[i].Locator = ila.Locator(0x2001_0db8_ff10_0000 + uint64((i+1)%scaleLocators))
		}
		start = time.Now()
		_, err = d.UpsertMappings(moved)
		must(b, err)
		b.ReportMetric(time.Since(start).Seconds(), "s-resync-1pct")
		d.Close()
	})
	b.Run(fmt.Sprintf("one_by_one/%d", n), func(b *testing.B) {
		var d *Datapath
		for b.Loop() {
			b.StopTimer()
			if d != nil {
				d.Close()
			}
			d = open(b)
			runtime.GC()
			b.StartTimer()
			for _, m := range ms {
				must(b, d.UpsertMapping(m))
			}
		}
		d.Close()
	})
}

func envInt(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var v int
	if _, err := fmt.Sscan(s, &v); err != nil || v <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// hitChains returns n identifiers in chains for the hit-path benchmark:
// a packet to (loc, chain[i]) translated onto loc with neutral-map comes
// out as (loc, chain[i+1]) (the C bit set, the low 16 bits adjusted), so a
// run of repeat passes on one skb looks up repeat different keys. Chains
// differ in their upper 48 bits, each at most per entries long.
func hitChains(loc ila.Locator, n, per int, seed uint64) [][]ila.Identifier {
	r := rand.New(rand.NewPCG(seed, 2))
	adj := ila.NeutralAdjust(ila.SIRPrefix(loc), loc, ila.CsumNeutralMap)
	var chains [][]ila.Identifier
	seen := map[ila.Identifier]bool{}
	for total := 0; total < n; {
		base := ila.Identifier(0x2000_0000_0000_0000|r.Uint64()&0x0fff_ffff_ffff_0000) | ila.CBit
		cur := base | ila.Identifier(1+r.IntN(0xfffe))
		var c []ila.Identifier
		for len(c) < min(per, n-total) && !seen[cur] {
			seen[cur] = true
			c = append(c, cur)
			cur = base | ila.Identifier(ila.Add1(uint16(cur), adj))
		}
		chains = append(chains, c)
		total += len(c)
	}
	return chains
}

// BenchmarkScaleHitPath measures the task ingress SIR->ILA hit path
// (neutral-map) with 1k and with 1M mappings installed (and 1M in a table
// of twice the default size), side by side in one run. As in
// ProgramPaths, one BPF_PROG_TEST_RUN repeats the program 200 times on one
// skb, and the kernel's mean per run is the figure; here the mappings
// form chains (see hitChains) so that the 200 passes look up 200
// different keys, each run starts at a random point of a random chain,
// and the mappings are inserted in random order: neither the CPU caches
// nor the program's per-CPU mapping cache (4096 slots) are flattered by a
// repeated key. "cache_off" sets the table generation to 0, which turns
// the per-CPU caches off: every packet takes the hash lookup.
// "hot1k_cache_off" draws the keys from the same 1,000 installed mappings
// at every size (the table's size, not the working set, differs). All
// translations go to one locator (the next-hop cache always hits).
// "router_cache_off" is cache_off through the ILA router's program (the
// same packets arriving on the uplink: a router holds every mapping).
//
//	go test -run '^$' -bench ScaleHitPath -benchtime 2000000x ./ila/datapath
func BenchmarkScaleHitPath(b *testing.B) {
	if v, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); err == nil && strings.TrimSpace(string(v)) != "0" {
		b.Logf("warning: kernel.bpf_stats_enabled=%s adds per-run accounting", strings.TrimSpace(string(v)))
	}
	big := envInt(b, "ILA_BENCH_MAPPINGS", 1_000_000)
	e := envFor(ila.CsumNeutralMap)
	loc := ila.Locator(0x2001_0db8_ff10_0001)
	type bed struct {
		name   string
		tb     *testbed
		chains [][]ila.Identifier
		frame  []byte
		rframe []byte // the same packet arriving from the uplink (the ILA router's)
		off    int    // offset of the destination identifier in frame (and rframe)
	}
	var beds []*bed
	for _, s := range []struct {
		name     string
		n, table int
	}{
		{"1k", 1000, DefaultMaxMappings},
		{fmt.Sprintf("%d", big), big, DefaultMaxMappings},
		{fmt.Sprintf("%d_table2x", big), big, 2 * DefaultMaxMappings},
	} {
		tb := newTestbed(b, Config{MaxMappings: s.table})
		d := tb.d
		must(b, d.objs.IlaPortExts.Put(uint32(tb.task), &xlatIlaPortExt{Tenant: uint32(benchTenant)}))
		must(b, d.objs.IlaPorts.Put(uint32(tb.task), &xlatIlaPort{Sir: ne(uint64(e.dom.SIR)), Id: ne(uint64(idLocal))}))
		chains := hitChains(loc, s.n, 60000, 3)
		var keys []xlatIlaKey
		for _, c := range chains {
			for _, id := range c {
				keys = append(keys, xlatIlaKey{Sir: ne(uint64(loc)), Id: ne(uint64(id))})
			}
		}
		rand.New(rand.NewPCG(4, 4)).Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		vals := make([]xlatIlaMapVal, len(keys))
		for i := range vals {
			vals[i] = xlatIlaMapVal{Loc: ne(uint64(loc)), Csum: uint8(e.mode), Tenant: uint32(benchTenant)}
		}
		// Written directly (a chain's keys are ILA addresses, which the
		// API would refuse as SIR keys), in random order.
		for i := 0; i < len(keys); i += batchChunk {
			j := min(i+batchChunk, len(keys))
			if _, err := d.objs.IlaMappings.BatchUpdate(keys[i:j], vals[i:j], nil); err != nil {
				b.Fatal(err)
			}
		}
		must(b, d.tablesChanged())
		bd := &bed{name: s.name, tb: tb, chains: chains}
		p := testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: e.sir(idLocal), Dst: ila.SIRPrefix(loc).Addr(chains[0][0]), Proto: ila.ProtoTCP, L4: l4(ila.ProtoTCP), HopLimit: 255}
		bd.frame = p.Frame()
		p.EthDst = uplinkMAC
		bd.rframe = p.Frame()
		dst := p.Dst.As16()
		bd.off = bytes.Index(bd.frame, dst[:]) + 8
		if bd.off < 8 {
			b.Fatal("destination not found in the frame")
		}
		beds = append(beds, bd)
		runtime.GC()
	}
	type variant struct {
		name     string
		cacheOff bool
		empty    bool
		hot      bool // keys from the same 1,000 mappings at every size
		router   bool // the ILA router's program on the uplink
	}
	variants := []variant{{"empty", false, true, false, false}, {"cache_on", false, false, false, false}, {"cache_off", true, false, false, false},
		{"hot1k_cache_off", true, false, true, false}, {"router_cache_off", true, false, false, true}}
	// Interleaved: each size in turn for each variant, twice, so that
	// drift on the shared machine shows.
	for round := range 2 {
		for _, v := range variants {
			for _, bd := range beds {
				if v.empty && bd != beds[0] {
					continue
				}
				name := fmt.Sprintf("r%d/%s/%s", round, v.name, bd.name)
				if v.empty {
					name = fmt.Sprintf("r%d/%s", round, v.name)
				}
				b.Run(name, func(b *testing.B) {
					d := bd.tb.d
					if v.cacheOff {
						must(b, d.objs.IlaGen.Put(uint32(0), uint64(0)))
						defer func() { must(b, d.tablesChanged()) }()
					}
					prog := d.objs.IlaTask
					if v.empty {
						prog = d.objs.IlaEmpty
					}
					r := rand.New(rand.NewPCG(uint64(round), 7))
					ctx := skbCtx(bd.tb.task)
					frame := append([]byte(nil), bd.frame...)
					if v.router {
						prog = d.objs.IlaRouter
						ctx = skbCtx(bd.tb.uplink)
						frame = append([]byte(nil), bd.rframe...)
					}
					var total, n uint64
					err := bd.tb.ns.Do(func() error {
						set := func() {
							c := bd.chains[r.IntN(len(bd.chains))]
							if v.hot {
								c = bd.chains[0][:min(len(bd.chains[0]), 1000)]
							}
							id := c[r.IntN(len(c)-benchRepeat)]
							for i := range 8 {
								frame[bd.off+i] = byte(uint64(id) >> (56 - 8*i))
							}
						}
						set()
						act, _, err := testRun(prog, frame, ctx, benchRepeat)
						if err != nil {
							return err
						}
						if want := uint32(actRedirect); !v.empty && act != want {
							return fmt.Errorf("action %d, want %d", act, want)
						}
						before, err := d.Stats()
						if err != nil {
							return err
						}
						b.ResetTimer()
						for n < uint64(b.N) {
							set()
							_, dur, err := testRun(prog, frame, ctx, benchRepeat)
							if err != nil {
								return err
							}
							total += uint64(dur) * benchRepeat
							n += benchRepeat
						}
						b.StopTimer()
						after, err := d.Stats()
						if err != nil {
							return err
						}
						// Every pass must have been a translation (a
						// hit), not a miss that happens to redirect.
						got := after.Translated - before.Translated
						if v.router {
							got = after.RouterTranslated - before.RouterTranslated
						}
						if !v.empty && got < n {
							return fmt.Errorf("%d of %d passes translated", got, n)
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(total)/float64(n), "ns/pkt")
				})
			}
		}
	}
}
