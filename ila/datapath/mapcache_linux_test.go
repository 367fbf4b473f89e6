package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// onOneCPU runs fn inside the testbed's namespace on a thread bound to one
// CPU, so that every test run sees the same per-CPU mapping cache. fn runs
// off the test goroutine: it reports with t.Errorf, never t.Fatal.
func (tb *testbed) onOneCPU(t *testing.T, fn func(cpu int)) {
	t.Helper()
	err := tb.ns.Do(func() error {
		var old unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			return fmt.Errorf("get affinity: %w", err)
		}
		cpu := -1
		for i := 0; i < 1024; i++ {
			if old.IsSet(i) {
				cpu = i
				break
			}
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("set affinity: %w", err)
		}
		defer unix.SchedSetaffinity(0, &old)
		fn(cpu)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// cachedMapping returns the mapping cache entry for sir/id on cpu, if it is
// valid for the current generation. It reports errors with t.Errorf: it
// runs off the test goroutine.
func cachedMapping(t *testing.T, d *Datapath, cpu int, sir ila.SIRPrefix, id ila.Identifier) (xlatIlaMapEnt, bool) {
	t.Helper()
	var gen uint64
	if err := d.objs.IlaGen.Lookup(uint32(0), &gen); err != nil {
		t.Errorf("read mapping generation: %v", err)
	}
	var (
		slot uint32
		vals []xlatIlaMapEnt
	)
	it := d.objs.IlaMapCache.Iterate()
	for it.Next(&slot, &vals) {
		if cpu < len(vals) && vals[cpu].Sir == ne(uint64(sir)) && vals[cpu].Id == ne(uint64(id)) && vals[cpu].Gen == gen {
			return vals[cpu], true
		}
	}
	if err := it.Err(); err != nil {
		t.Errorf("iterate mapping cache: %v", err)
	}
	return xlatIlaMapEnt{}, false
}

// TestMappingCache checks that the per-CPU mapping cache serves hits and
// that every change to the mappings through the API takes effect on the
// next packet: a new locator, a deletion (miss) and the own-locator flag.
func TestMappingCache(t *testing.T) {
	tb := newTestbed(t, Config{})
	d := tb.d
	for _, mode := range ila.CsumModes {
		t.Run(mode.String(), func(t *testing.T) {
			e := envFor(mode)
			frame := func(dst ila.Identifier) []byte {
				return testutil.Packet{EthDst: ila.GatewayMAC(), EthSrc: taskMAC, Src: e.sir(idLocal), Dst: e.sir(dst),
					Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP), HopLimit: 64}.Frame()
			}
			type result struct {
				Act      uint32
				Dst      string
				Counters map[string]uint64
			}
			ilaAddr := map[ila.Locator]string{}
			for _, loc := range []ila.Locator{e.remote, e.newHome} {
				ilaAddr[loc] = e.ila(t, idRemote, loc).String()
			}
			ownAddr := e.ila(t, idLocalMAC, e.own).String()
			translated := func(loc ila.Locator) result {
				return result{actRedirect, ilaAddr[loc], map[string]uint64{"rx_task": 1, "translated": 1, "fib_redirect": 1}}
			}
			counters := func() map[string]uint64 {
				s, err := d.Stats()
				if err != nil {
					t.Errorf("stats: %v", err)
				}
				return s.Counters
			}
			tb.onOneCPU(t, func(cpu int) {
				run := func(dst ila.Identifier) result {
					before := counters()
					in := frame(dst)
					out := make([]byte, len(in)+256)
					act, err := d.objs.IlaTask.Run(&ebpf.RunOptions{Data: in, DataOut: out, Context: skbCtx(tb.task)})
					if err != nil {
						t.Errorf("test run: %v", err)
						return result{}
					}
					p, err := testutil.Parse(out[:len(in)])
					if err != nil {
						t.Errorf("parse output: %v", err)
						return result{}
					}
					return result{act, p.Dst.String(), delta(before, counters())}
				}
				do := func(what string, err error) {
					t.Helper()
					if err != nil {
						t.Errorf("%s: %v", what, err)
					}
				}
				check := func(what string, got, want result) {
					t.Helper()
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("%s (-want +got)\n%s", what, diff)
					}
				}

				check("first packet", run(idRemote), translated(e.remote))
				c, ok := cachedMapping(t, d, cpu, e.dom.SIR, idRemote)
				if !ok {
					t.Errorf("no valid cache entry for %s on cpu %d", e.sir(idRemote), cpu)
				}
				if c.Loc != ne(uint64(e.remote)) || c.Csum != uint8(mode) {
					t.Errorf("cache entry %+v, want locator %s mode %s", c, e.remote, mode)
				}
				check("cache hit", run(idRemote), translated(e.remote))

				do("move", d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idRemote, Locator: e.newHome, Csum: mode}))
				if _, ok := cachedMapping(t, d, cpu, e.dom.SIR, idRemote); ok {
					t.Errorf("cache entry still valid after UpsertMapping")
				}
				check("after move", run(idRemote), translated(e.newHome))
				check("after move, cached", run(idRemote), translated(e.newHome))

				do("delete", d.DeleteMapping(e.dom.SIR, idRemote))
				check("after delete", run(idRemote), result{actOK, e.sir(idRemote).String(), map[string]uint64{"rx_task": 1, "miss": 1, "pass_miss": 1, "miss_reported": 1}})
				check("after delete, again", run(idRemote), result{actOK, e.sir(idRemote).String(), map[string]uint64{"rx_task": 1, "miss": 1, "pass_miss": 1, "miss_ratelimited": 1}})
				do("re-add", d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idRemote, Locator: e.remote, Csum: mode}))
				check("after re-adding", run(idRemote), translated(e.remote))

				// The own-locator flag lives in the mapping: delivered
				// locally while the locator is ours, translated (towards
				// it) once it is not.
				local := result{actRedirect, e.sir(idLocalMAC).String(), map[string]uint64{"rx_task": 1, "local_delivered": 1}}
				check("own locator", run(idLocalMAC), local)
				check("own locator, cached", run(idLocalMAC), local)
				do("remove locator", d.RemoveLocator(e.own))
				check("locator removed", run(idLocalMAC), result{actRedirect, ownAddr, map[string]uint64{"rx_task": 1, "translated": 1, "fib_redirect": 1}})
				do("add locator", d.AddLocator(e.own, e.dom))
				check("locator added back", run(idLocalMAC), local)
			})
		})
	}
}

// TestUplinkCache checks the uplink's per-CPU cache (locator-space source,
// own locator, local binding): hits are served from it and every change
// to those tables through the API takes effect on the next packet.
func TestUplinkCache(t *testing.T) {
	tb := newTestbed(t, Config{})
	d := tb.d
	for _, mode := range ila.CsumModes {
		t.Run(mode.String(), func(t *testing.T) {
			e := envFor(mode)
			srcLoc := ila.Locator(0x2001_0db8_ff00_0d00 + uint64(mode)) // becomes locator space below
			dst := e.ila(t, idLocalMAC, e.own)
			frame := func(src netip.Addr) []byte {
				p := testutil.Packet{EthDst: uplinkMAC, EthSrc: nextHopMAC, Src: src, Dst: dst, Proto: ila.ProtoUDP, L4: l4(ila.ProtoUDP), HopLimit: 60}
				return frameWithCsumFor(p, wireCsumDst(mode, e.sir(idLocalMAC), dst))
			}
			peer, fromLocSpace := frame(e.sir(idRemote)), frame(srcLoc.Addr(idRemote))
			type result struct {
				Act      uint32
				Dst      string
				Counters map[string]uint64
			}
			counters := func() map[string]uint64 {
				s, err := d.Stats()
				if err != nil {
					t.Errorf("stats: %v", err)
				}
				return s.Counters
			}
			delivered := result{actRedirect, e.sir(idLocalMAC).String(), map[string]uint64{"rx_uplink": 1, "delivered": 1}}
			untouched := func(act uint32, counter string) result {
				return result{act, dst.String(), map[string]uint64{"rx_uplink": 1, counter: 1}}
			}
			tb.onOneCPU(t, func(cpu int) {
				run := func(in []byte) result {
					before := counters()
					out := make([]byte, len(in)+256)
					act, err := d.objs.IlaUplink.Run(&ebpf.RunOptions{Data: in, DataOut: out, Context: skbCtx(tb.uplink)})
					if err != nil {
						t.Errorf("test run: %v", err)
						return result{}
					}
					p, err := testutil.Parse(out[:len(in)])
					if err != nil {
						t.Errorf("parse output: %v", err)
						return result{}
					}
					return result{act, p.Dst.String(), delta(before, counters())}
				}
				do := func(what string, err error) {
					t.Helper()
					if err != nil {
						t.Errorf("%s: %v", what, err)
					}
				}
				check := func(what string, got, want result) {
					t.Helper()
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("%s (-want +got)\n%s", what, diff)
					}
				}

				check("first packet", run(peer), delivered)
				if !cachedUplink(t, d, cpu, e.dom.SIR, dst) {
					t.Errorf("no valid uplink cache entry for %s on cpu %d", dst, cpu)
				}
				check("cache hit", run(peer), delivered)

				do("delete local", d.DeleteLocal(e.dom.SIR, idLocalMAC))
				// Its mapping names our own locator: no redirect; the
				// miss is reported (once per mode: one per second).
				gone := untouched(actShot, "drop_unknown")
				gone.Counters["miss_reported"] = 1
				check("after DeleteLocal", run(peer), gone)
				do("re-add local", d.UpsertLocal(Local{SIR: e.dom.SIR, Identifier: idLocalMAC, Ifindex: tb.task2, MAC: taskMAC}))
				check("after UpsertLocal", run(peer), delivered)

				check("source not yet locator space", run(fromLocSpace), delivered)
				do("map to srcLoc", d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: idMissing, Locator: srcLoc, Csum: mode}))
				check("source is locator space", run(fromLocSpace), untouched(actShot, "drop_locator_src"))
				check("source is locator space, cached", run(fromLocSpace), untouched(actShot, "drop_locator_src"))
				do("unmap srcLoc", d.DeleteMapping(e.dom.SIR, idMissing))
				check("source no longer locator space", run(fromLocSpace), delivered)

				do("remove locator", d.RemoveLocator(e.own))
				check("locator removed", run(peer), untouched(actOK, "pass_not_ours"))
				do("add locator", d.AddLocator(e.own, e.dom))
				check("locator added back", run(peer), delivered)
			})
		})
	}
}

// cachedUplink reports whether the uplink cache on cpu holds a valid entry
// for packets from sir's prefix to dst. Reports errors with t.Errorf.
func cachedUplink(t *testing.T, d *Datapath, cpu int, sir ila.SIRPrefix, dst netip.Addr) bool {
	t.Helper()
	var gen uint64
	if err := d.objs.IlaGen.Lookup(uint32(0), &gen); err != nil {
		t.Errorf("read table generation: %v", err)
	}
	b := dst.As16()
	hi, id := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var (
		slot uint32
		vals []xlatIlaUpEnt
	)
	it := d.objs.IlaUpCache.Iterate()
	for it.Next(&slot, &vals) {
		if cpu >= len(vals) {
			continue
		}
		v := vals[cpu]
		if v.SrcHi == ne(uint64(sir)) && v.DstHi == ne(hi) && v.DstId == ne(id) && v.Gen == gen {
			return v.Flags == 2|4 // own locator, bound here
		}
	}
	if err := it.Err(); err != nil {
		t.Errorf("iterate uplink cache: %v", err)
	}
	return false
}
