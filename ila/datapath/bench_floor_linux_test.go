package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// BenchmarkScaleMemoryFloor measures what one table lookup costs by
// itself, at 1k and at 1M entries, side by side: the floor under any
// mapping table, whatever its layout. The program is the least a lookup
// needs (no packet parsing, no rewrite): it reads a cursor from a
// one-slot array, looks the cursor up in the table and stores the value's
// first four bytes as the next cursor. The table's values form one random
// cycle over all its entries (Sattolo's shuffle), so the 200 passes of one
// BPF_PROG_TEST_RUN are 200 dependent lookups of different, randomly
// placed entries: no cache and no prefetcher is flattered, as in
// BenchmarkScaleHitPath's chains.
//
// Variants: "array" is a directly indexed array (the kernel inlines the
// lookup: one access to the value, the cheapest table there is: the
// floor), "hash" a preallocated hash map (the bucket, then the element),
// "hash_noprealloc" one whose elements are allocated one by one, as the
// mapping table's are. Values are 16 bytes (a locator and an
// identifier: the least a hashed mapping entry can hold), 48 (the
// mapping table's value size rounded up to a cache line's worth of two
// entries), and for arrays 4 (an index into a table of locators, the
// identifier being the array's index: the most compact table there is).
//
//	go test -c -o /tmp/dp.test ./ila/datapath
//	cd ila/datapath && sudo /tmp/dp.test -test.run '^$' -test.bench ScaleMemoryFloor -test.benchtime 400000x
func BenchmarkScaleMemoryFloor(b *testing.B) {
	big := envInt(b, "ILA_BENCH_MAPPINGS", 1_000_000)
	type bed struct {
		name  string
		n     int
		table *ebpf.Map
		state *ebpf.Map
		prog  *ebpf.Program
	}
	var beds []*bed
	for _, kind := range []struct {
		name  string
		typ   ebpf.MapType
		flags uint32
	}{
		{"array", ebpf.Array, 0},
		{"hash", ebpf.Hash, 0},
		// As the mapping table is: elements allocated one by one
		// (kmalloc'ed, in the kernel's linear map) rather than in one
		// vmalloc'ed pool.
		{"hash_noprealloc", ebpf.Hash, unix.BPF_F_NO_PREALLOC},
	} {
		sizes := []int{16, 48}
		if kind.typ == ebpf.Array {
			// 4 bytes: the least an entry can be (a locator's index
			// in a table of locators, the identifier being the array's
			// index): 4 MiB at 1M, twice the L2 cache of a core here.
			sizes = []int{4, 16, 48}
		}
		for _, vsize := range sizes {
			for _, n := range []int{1000, big} {
				size := fmt.Sprint(n)
				if n == 1000 {
					size = "1k"
				}
				name := fmt.Sprintf("%s/v%d/%s", kind.name, vsize, size)
				bd, err := newFloorBed(kind.typ, kind.flags, vsize, n)
				if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) {
					b.Skipf("needs root and BPF: %v", err)
				}
				if err != nil {
					b.Fatalf("%s: %v", name, err)
				}
				b.Cleanup(bd.close)
				beds = append(beds, &bed{name: name, n: n, table: bd.table, state: bd.state, prog: bd.prog})
				runtime.GC()
			}
		}
	}
	frame := make([]byte, 64) // an Ethernet header's worth: the program does not read it
	for round := range 2 {
		for _, bd := range beds {
			b.Run(fmt.Sprintf("r%d/%s", round, bd.name), func(b *testing.B) {
				r := rand.New(rand.NewPCG(uint64(round), 11))
				var total, n uint64
				check := func(start uint32) error {
					// After a run the cursor has moved on: a stuck cursor
					// (a failed lookup) would measure a miss, not a hit.
					var cur uint32
					if err := bd.state.Lookup(uint32(0), &cur); err != nil {
						return err
					}
					if cur == start {
						return fmt.Errorf("cursor did not move from %d", start)
					}
					return nil
				}
				b.ResetTimer()
				for n < uint64(b.N) {
					start := uint32(r.IntN(bd.n))
					if err := bd.state.Put(uint32(0), start); err != nil {
						b.Fatal(err)
					}
					_, dur, err := testRun(bd.prog, frame, nil, benchRepeat)
					if err != nil {
						b.Fatal(err)
					}
					total += uint64(dur) * benchRepeat
					n += benchRepeat
					if n == benchRepeat {
						if err := check(start); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(total)/float64(n), "ns/lookup")
			})
		}
	}
}

type floorBed struct {
	table, state *ebpf.Map
	prog         *ebpf.Program
}

func (f *floorBed) close() {
	if f.prog != nil {
		f.prog.Close()
	}
	for _, m := range []*ebpf.Map{f.table, f.state} {
		if m != nil {
			m.Close()
		}
	}
}

// newFloorBed builds a table of n entries of vsize bytes whose first four
// bytes link the entries in one random cycle, the cursor slot, and the
// program that follows the cycle one step per run.
func newFloorBed(kind ebpf.MapType, flags uint32, vsize, n int) (*floorBed, error) {
	f := &floorBed{}
	var err error
	spec := &ebpf.MapSpec{Name: "floor_table", Type: kind, Flags: flags, KeySize: 4, ValueSize: uint32(vsize), MaxEntries: uint32(n)}
	if f.table, err = ebpf.NewMap(spec); err != nil {
		return nil, err
	}
	if f.state, err = ebpf.NewMap(&ebpf.MapSpec{Name: "floor_cursor", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}); err != nil {
		f.close()
		return nil, err
	}
	// Sattolo: a single cycle through all n entries.
	next := make([]uint32, n)
	for i := range next {
		next[i] = uint32(i)
	}
	r := rand.New(rand.NewPCG(5, 5))
	for i := n - 1; i > 0; i-- {
		j := r.IntN(i)
		next[i], next[j] = next[j], next[i]
	}
	// Written in random order, so that a hash map's elements (taken from
	// its preallocated pool in insertion order) are not laid out along the
	// cycle.
	order := r.Perm(n)
	switch vsize {
	case 4:
		err = fillFloor[[4]byte](f.table, order, next)
	case 16:
		err = fillFloor[[16]byte](f.table, order, next)
	case 48:
		err = fillFloor[[48]byte](f.table, order, next)
	default:
		err = fmt.Errorf("value size %d not built in", vsize)
	}
	if err != nil {
		f.close()
		return nil, err
	}
	insns := asm.Instructions{
		// r7 = &cursor (slot 0)
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, f.state.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R7, asm.R0),
		// r0 = &table[*cursor]
		asm.LoadMem(asm.R8, asm.R7, 0, asm.Word),
		asm.StoreMem(asm.RFP, -8, asm.R8, asm.Word),
		asm.LoadMapPtr(asm.R1, f.table.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		// *cursor = next
		asm.LoadMem(asm.R9, asm.R0, 0, asm.Word),
		asm.StoreMem(asm.R7, 0, asm.R9, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
	if f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "floor", Type: ebpf.SchedCLS, License: "GPL", Instructions: insns}); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// fillFloor writes table[i] = next[i] (in the value's first four bytes)
// for every i, in the given order, in batches.
func fillFloor[V ~[4]byte | ~[16]byte | ~[48]byte](table *ebpf.Map, order []int, next []uint32) error {
	keys := make([]uint32, 0, batchChunk)
	vals := make([]V, 0, batchChunk)
	for k, i := range order {
		var v V
		binary.NativeEndian.PutUint32(unsafe.Slice((*byte)(unsafe.Pointer(&v)), 4), next[i])
		keys = append(keys, uint32(i))
		vals = append(vals, v)
		if len(keys) == batchChunk || k == len(order)-1 {
			if _, err := table.BatchUpdate(keys, vals, nil); err != nil {
				return err
			}
			keys, vals = keys[:0], vals[:0]
		}
	}
	return nil
}
