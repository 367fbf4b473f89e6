package datapath

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// testRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr. cilium/ebpf's
// Program.Run does not return the kernel-measured duration and
// Program.Benchmark cannot pass a context (ingress_ifindex), so the
// benchmark issues the command itself.
type testRunAttr struct {
	ProgFd      uint32
	Retval      uint32
	DataSizeIn  uint32
	DataSizeOut uint32
	DataIn      uint64
	DataOut     uint64
	Repeat      uint32
	Duration    uint32
	CtxSizeIn   uint32
	CtxSizeOut  uint32
	CtxIn       uint64
	CtxOut      uint64
	Flags       uint32
	CPU         uint32
	BatchSize   uint32
	_           uint32
}

const bpfProgTestRun = 10

// testRun runs prog repeat times on one skb built from data (with the
// context ctx, if any) and returns the action and the kernel's mean ns
// per run (syscall and skb setup excluded).
func testRun(prog *ebpf.Program, data, ctx []byte, repeat uint32) (uint32, uint32, error) {
	attr := testRunAttr{
		ProgFd:     uint32(prog.FD()),
		DataSizeIn: uint32(len(data)),
		DataIn:     uint64(uintptr(unsafe.Pointer(&data[0]))),
		Repeat:     repeat,
	}
	if len(ctx) > 0 {
		attr.CtxSizeIn = uint32(len(ctx))
		attr.CtxIn = uint64(uintptr(unsafe.Pointer(&ctx[0])))
	}
	var errno unix.Errno
	for {
		_, _, errno = unix.Syscall(unix.SYS_BPF, bpfProgTestRun, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno != unix.EINTR {
			break
		}
	}
	runtime.KeepAlive(data)
	runtime.KeepAlive(ctx)
	if errno != 0 {
		return 0, 0, errno
	}
	return attr.Retval, attr.Duration, nil
}

// A test run reuses one skb for all repetitions, and the programs rewrite
// it: after the first run the packet carries its translated destination.
// fixedPoint writes map entries (bypassing the Go API's invariants) so
// that the rewritten packet takes the same path with the same work again:
// e.g. a mapping for the ILA address pointing at the same locator. For
// neutral-map, whose C-bit adjustment moves the identifier on every pass,
// the entries follow the orbit for as many repetitions as one run does.
const benchRepeat = 200

// benchTenant tags the benchmark's ports and mappings: tenant isolation is
// on by default, so the paths measured are the same-tenant ones.
var benchTenant = ila.TenantOf("bench")

func putMapping(tb testing.TB, d *Datapath, a [2]uint64, loc ila.Locator, mode ila.CsumMode) {
	k := xlatIlaKey{Sir: ne(a[0]), Id: ne(a[1])}
	v := xlatIlaMapVal{Loc: ne(uint64(loc)), Csum: uint8(mode), Tenant: uint32(benchTenant)}
	must(tb, d.objs.IlaMappings.Put(&k, &v))
	must(tb, d.tablesChanged())
}

func halves(sir ila.SIRPrefix, id ila.Identifier) [2]uint64 {
	return [2]uint64{uint64(sir), uint64(id)}
}

// orbit returns the identifiers a repeated SIR->ILA translation onto the
// same locator walks through (first element: after the first pass).
func orbit(t testing.TB, e modeEnv, id ila.Identifier, loc ila.Locator, n int) []ila.Identifier {
	a, err := ila.SIRToILA(e.sir(id), loc, e.mode)
	must(t, err)
	cur := ila.IdentifierOf(a)
	out := []ila.Identifier{cur}
	for i := 1; i < n; i++ {
		o := ila.Add1(cur.Low16(), ila.NeutralAdjust(ila.SIRPrefix(loc), loc, e.mode))
		if e.mode.Neutral() {
			cur = cur&^0xffff | ila.Identifier(o)
			if e.mode == ila.CsumNeutralMap {
				cur |= ila.CBit
			}
		}
		out = append(out, cur)
	}
	return out
}

type benchCase struct {
	name    string
	prog    *ebpf.Program
	ingress int
	frame   []byte
	act     uint32
	port    *xlatIlaPort // if set, written as the ingress port's primary address first
}

func BenchmarkProgramPaths(b *testing.B) {
	if v, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); err == nil && strings.TrimSpace(string(v)) != "0" {
		b.Logf("warning: kernel.bpf_stats_enabled=%s adds per-run accounting", strings.TrimSpace(string(v)))
	}
	tb := newTestbed(b, Config{MaxMappings: 1 << 16})
	d := tb.d
	for _, port := range []int{tb.task, tb.task2} {
		must(b, d.objs.IlaPortExts.Put(uint32(port), &xlatIlaPortExt{Tenant: uint32(benchTenant)}))
	}
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		for _, id := range []ila.Identifier{idLocal, idLocalMAC} {
			must(b, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: id, Locator: e.own, Csum: mode, Tenant: benchTenant}))
		}
	}
	var cases []benchCase
	for _, mode := range ila.CsumModes {
		e := envFor(mode)
		pkt := func(src, dst ila.Identifier, dstLoc ila.Locator, ethDst ila.MAC) []byte {
			p := testutil.Packet{EthDst: ethDst, EthSrc: taskMAC, Src: e.sir(src), Proto: ila.ProtoTCP, L4: l4(ila.ProtoTCP), HopLimit: 255}
			if dstLoc == 0 {
				p.Dst = e.sir(dst)
			} else {
				p.Dst = e.ila(b, dst, dstLoc)
			}
			return p.Frame()
		}
		// task: SIR->ILA towards a remote locator.
		for _, id := range orbit(b, e, idRemote, e.remote, benchRepeat+1) {
			putMapping(b, d, halves(ila.SIRPrefix(e.remote), id), e.remote, mode)
		}
		// The source is the port's primary address (the ifindex-indexed
		// fast path), as for a task with one SIR address.
		primary := xlatIlaPort{Sir: ne(uint64(e.dom.SIR)), Id: ne(uint64(idLocal))}
		cases = append(cases, benchCase{"task_translate/" + mode.String(), d.objs.IlaTask, tb.task, pkt(idLocal, idRemote, 0, ila.GatewayMAC()), actRedirect, &primary})
		if mode == ila.CsumNeutralMap {
			// A secondary address: the source check falls back to the hash.
			other := xlatIlaPort{Sir: ne(uint64(e.dom.SIR)), Id: ne(uint64(idMissing))}
			cases = append(cases, benchCase{"task_translate_secondary_src/" + mode.String(), d.objs.IlaTask, tb.task, pkt(idLocal, idRemote, 0, ila.GatewayMAC()), actRedirect, &other})
		}
		// router: the same on the ILA-R program.
		cases = append(cases, benchCase{"router_translate/" + mode.String(), d.objs.IlaRouter, tb.uplink, pkt(idLocal, idRemote, 0, uplinkMAC), actRedirect, nil})
		// uplink: ILA->SIR and delivery. Fixed point: our "locator" table
		// also holds the SIR prefix (ILA->SIR of a SIR address is itself
		// for every mode but neutral-map, whose C bit is then clear).
		ml := xlatIlaMylocVal{Sir: ne(uint64(e.dom.SIR)), Csum: uint8(mode)}
		must(b, d.objs.IlaMylocs.Put(ne(uint64(e.dom.SIR)), &ml))
		cases = append(cases, benchCase{"uplink_deliver/" + mode.String(), d.objs.IlaUplink, tb.uplink, pkt(idRemote, idLocalMAC, e.own, uplinkMAC), actRedirect, nil})
		// uplink: in-flight re-translation (fixed point: the new locator
		// is also "ours", so the packet is re-translated onto itself).
		if mode != ila.CsumNeutralMap {
			nh := xlatIlaMylocVal{Sir: ne(uint64(e.dom.SIR)), Csum: uint8(mode)}
			must(b, d.objs.IlaMylocs.Put(ne(uint64(e.newHome)), &nh))
			cases = append(cases, benchCase{"uplink_inflight/" + mode.String(), d.objs.IlaUplink, tb.uplink, pkt(idRemote, idMoved, e.own, uplinkMAC), actRedirect, nil})
		}
	}
	e := envFor(ila.CsumNeutralMap)
	local := testutil.Packet{EthDst: ila.GatewayMAC(), Src: e.sir(idLocal), Dst: e.sir(idLocalMAC), Proto: ila.ProtoTCP, L4: l4(ila.ProtoTCP), HopLimit: 255}
	miss := local
	miss.Dst = e.sir(idMissing)
	cases = append(cases,
		benchCase{"task_local", d.objs.IlaTask, tb.task, local.Frame(), actRedirect, &xlatIlaPort{Sir: ne(uint64(e.dom.SIR)), Id: ne(uint64(idLocal))}},
		benchCase{"task_miss_pass", d.objs.IlaTask, tb.task, miss.Frame(), actOK, &xlatIlaPort{Sir: ne(uint64(e.dom.SIR)), Id: ne(uint64(idLocal))}},
	)
	must(b, d.tablesChanged()) // after the direct writes above
	empty := benchCase{"empty", d.objs.IlaEmpty, tb.task, local.Frame(), actOK, nil}
	// Interleave the empty program between the paths so that drift shows.
	var all []benchCase
	for i, c := range cases {
		if i%4 == 0 {
			all = append(all, empty)
		}
		all = append(all, c)
	}
	all = append(all, empty)
	for i, c := range all {
		b.Run(fmt.Sprintf("%02d_%s", i, c.name), func(b *testing.B) {
			ctx := skbCtx(c.ingress)
			if c.port != nil {
				must(b, d.objs.IlaPorts.Put(uint32(c.ingress), c.port))
			}
			var total, n uint64
			var runErr error
			err := tb.ns.Do(func() error {
				// warm-up and action check
				act, _, err := testRun(c.prog, c.frame, ctx, 1)
				if err != nil {
					return err
				}
				if act != c.act && os.Getenv("ILA_BENCH_NOCHECK") == "" {
					return fmt.Errorf("action %d, want %d", act, c.act)
				}
				b.ResetTimer()
				for n < uint64(b.N) {
					_, dur, err := testRun(c.prog, c.frame, ctx, benchRepeat)
					if err != nil {
						runErr = err
						break
					}
					total += uint64(dur) * benchRepeat
					n += benchRepeat
				}
				return runErr
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(total)/float64(n), "ns/pkt")
		})
	}
}

// BenchmarkUpsertMapping measures the control-plane write rate into a
// default-sized table: new identifiers (a full list), and one identifier
// moved back and forth between two remote locators (what every node agent
// does on a move: the locator reference counts change both ways).
func BenchmarkUpsertMapping(b *testing.B) {
	testutil.Privileged(b)
	d, err := Open(Config{})
	must(b, err)
	b.Cleanup(func() { d.Close() })
	e := envFor(ila.CsumNeutralMap)
	b.Run("new", func(b *testing.B) {
		i := 0
		for b.Loop() {
			id := ila.Identifier(0x2000_0000_0000_0001 + uint64(i%(1<<20))<<16)
			must(b, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: id, Locator: e.remote, Csum: e.mode}))
			i++
		}
	})
	b.Run("move", func(b *testing.B) {
		locs := [2]ila.Locator{e.remote, e.newHome}
		i := 0
		for b.Loop() {
			must(b, d.UpsertMapping(ila.Mapping{SIR: e.dom.SIR, Identifier: 0x1001, Locator: locs[i%2], Csum: e.mode}))
			i++
		}
	})
}
