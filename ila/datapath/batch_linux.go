package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
)

// batchChunk is how many entries one BPF_MAP_*_BATCH call carries.
const batchChunk = 8192

// dumpLimit: a batch larger than this reads the whole mapping table in
// batches instead of looking up each key (one syscall per key).
const dumpLimit = 4096

// UpsertMappings writes many mappings at once, as UpsertMapping would one
// after the other, with BPF_MAP_UPDATE_BATCH and one cache invalidation
// for the lot: the initial load and the resync of a large table. Entries
// already holding the same value are not written. It stops at the first
// mapping it cannot write and returns how many of ms (a prefix) took
// effect, and the error.
func (d *Datapath) UpsertMappings(ms []ila.Mapping) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int
	err := d.batch(func() error {
		var err error
		n, err = d.upsertMappings(ms)
		return err
	})
	return n, err
}

// refDelta is a pending change of a locator's reference count.
type refDelta struct {
	sir  ila.SIRPrefix
	mode ila.CsumMode
	n    int
}

// pendRef is the reference count change of one queued write.
type pendRef struct {
	had         bool
	oldLoc, loc ila.Locator
	sir         ila.SIRPrefix
	mode        ila.CsumMode
}

func (d *Datapath) upsertMappings(ms []ila.Mapping) (int, error) {
	old, err := d.oldMappings(ms)
	if err != nil {
		return 0, err
	}
	deltas := map[ila.Locator]*refDelta{}
	delta := func(loc ila.Locator, sir ila.SIRPrefix, mode ila.CsumMode, n int) {
		r := deltas[loc]
		if r == nil {
			r = &refDelta{}
			deltas[loc] = r
		}
		if n > 0 {
			r.sir, r.mode = sir, mode
		}
		r.n += n
	}
	var (
		keys []xlatIlaKey
		vals []xlatIlaMapVal
		idx  []int // the index in ms of each of keys
		// pend: this chunk's reference changes, applied once it is written.
		pend  []pendRef
		done  int // entries of ms that took effect
		first error
	)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		w, err := d.objs.IlaMappings.BatchUpdate(keys, vals, &ebpf.BatchOptions{ElemFlags: uint64(ebpf.UpdateAny)})
		for _, p := range pend[:w] {
			if p.had && p.oldLoc == p.loc {
				continue
			}
			delta(p.loc, p.sir, p.mode, 1)
			if p.had {
				delta(p.oldLoc, 0, 0, -1)
			}
		}
		if err != nil {
			done = idx[w]
			keys, vals, idx, pend = keys[:0], vals[:0], idx[:0], pend[:0]
			if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
				d.full.Add(1)
				return fmt.Errorf("write mappings: %w (%d entries): %w", ErrFull, d.objs.IlaMappings.MaxEntries(), err)
			}
			return fmt.Errorf("write mappings: %w", err)
		}
		keys, vals, idx, pend = keys[:0], vals[:0], idx[:0], pend[:0]
		return nil
	}
	for i, m := range ms {
		if first = d.checkBatchMapping(m, deltas); first != nil {
			break
		}
		k := key(m.SIR, m.Identifier)
		o, had := old[k]
		v := xlatIlaMapVal{Loc: ne(uint64(m.Locator)), Csum: uint8(m.Csum), Tenant: uint32(m.Tenant)}
		if _, ok := d.mylocs[ne(uint64(m.Locator))]; ok {
			v.Flags |= uint8(xlatIlaMapFlagILA_MAP_F_OWN_LOC)
		}
		done++
		if had && o == v {
			continue // a refresh: nothing to write
		}
		old[k] = v
		oldLoc := ila.Locator(he(o.Loc))
		// Later entries of ms see this one as written; if the chunk
		// fails before it, the error ends the batch anyway.
		pend = append(pend, pendRef{had: had, oldLoc: oldLoc, loc: m.Locator, sir: m.SIR, mode: m.Csum})
		keys = append(keys, k)
		vals = append(vals, v)
		idx = append(idx, i)
		if len(keys) == batchChunk {
			if first = flush(); first != nil {
				break
			}
		}
	}
	// What was queued before a stop is written all the same (a prefix
	// of ms); after a failed write the queue is empty.
	if err := flush(); err != nil {
		first = errors.Join(first, err)
	}
	// The reference counts: new locators were entered (with one
	// placeholder reference) by checkBatchMapping before any mapping
	// used them; increments before decrements, so that a count never
	// passes through zero on the way.
	for loc, r := range deltas {
		if r.n > 0 {
			if err := d.addRefs(loc, r.n); err != nil {
				first = errors.Join(first, err)
			}
		}
	}
	for loc, r := range deltas {
		for i := r.n; i < 0; i++ {
			if err := d.unrefLocator(loc); err != nil {
				first = errors.Join(first, err)
				break
			}
		}
	}
	if done > 0 {
		// The mapping table changed under the programs' caches.
		if err := d.tablesChanged(); err != nil {
			first = errors.Join(first, err)
		}
	}
	return done, first
}

// checkBatchMapping runs UpsertMapping's checks for m and enters a locator
// new to the locator space (with a placeholder reference, dropped again
// through deltas). Callers hold d.mu.
func (d *Datapath) checkBatchMapping(m ila.Mapping, deltas map[ila.Locator]*refDelta) error {
	if err := checkMapping("mapping", m); err != nil {
		return err
	}
	if err := d.ensureDomain(m); err != nil {
		return err
	}
	lk := ne(uint64(m.Locator))
	if v, ok := d.locspace[lk]; ok {
		if he(v.Sir) != uint64(m.SIR) {
			return fmt.Errorf("mapping %s: locator %s for %s: already serves %s: %w", m.SIRAddr(), m.Locator, m.SIR, ila.SIRPrefix(he(v.Sir)), ila.ErrLocatorConflict)
		}
		return nil
	}
	if err := d.refLocator(m.Locator, m.SIR, m.Csum); err != nil {
		return fmt.Errorf("mapping %s: %w", m.SIRAddr(), err)
	}
	r := deltas[m.Locator]
	if r == nil {
		r = &refDelta{}
		deltas[m.Locator] = r
	}
	r.n-- // the placeholder
	return nil
}

// addRefs adds n users to loc, which is in the locator space. Callers
// hold d.mu.
func (d *Datapath) addRefs(loc ila.Locator, n int) error {
	k := ne(uint64(loc))
	v, ok := d.locspace[k]
	if !ok {
		return fmt.Errorf("locator space %s: not entered", loc)
	}
	v.Refs += uint32(n)
	if err := d.update(d.objs.IlaLocspace, "locator space "+loc.String(), k, &v); err != nil {
		return err
	}
	d.locspace[k] = v
	return nil
}

// oldMappings returns the current values of ms's keys that exist: a key
// lookup each for a small batch, the whole table read in batches for a
// large one.
func (d *Datapath) oldMappings(ms []ila.Mapping) (map[xlatIlaKey]xlatIlaMapVal, error) {
	if len(ms) <= dumpLimit {
		old := make(map[xlatIlaKey]xlatIlaMapVal, len(ms))
		for _, m := range ms {
			k := key(m.SIR, m.Identifier)
			var v xlatIlaMapVal
			if d.objs.IlaMappings.Lookup(&k, &v) == nil {
				old[k] = v
			}
		}
		return old, nil
	}
	old := make(map[xlatIlaKey]xlatIlaMapVal, len(ms)) // ms's entries are added to it
	err := d.dumpMappings(func(k xlatIlaKey, v xlatIlaMapVal) bool {
		old[k] = v
		return true
	})
	return old, err
}

// dumpMappings calls fn for every entry of the mapping table, read with
// BPF_MAP_LOOKUP_BATCH, until fn returns false. Entries written or
// deleted meanwhile may or may not be seen.
func (d *Datapath) dumpMappings(fn func(xlatIlaKey, xlatIlaMapVal) bool) error {
	var (
		cur  ebpf.MapBatchCursor
		keys = make([]xlatIlaKey, batchChunk)
		vals = make([]xlatIlaMapVal, batchChunk)
	)
	for {
		n, err := d.objs.IlaMappings.BatchLookup(&cur, keys, vals, nil)
		for i := range n {
			if !fn(keys[i], vals[i]) {
				return nil
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read mappings: %w", err)
		}
	}
}

// MappingsMemory returns the kernel memory the mapping table takes (the
// map's memlock figure: its buckets and entries).
func (d *Datapath) MappingsMemory() (uint64, error) {
	info, err := d.objs.IlaMappings.Info()
	if err != nil {
		return 0, fmt.Errorf("mapping table info: %w", err)
	}
	m, ok := info.Memlock()
	if !ok {
		return 0, fmt.Errorf("mapping table info: no memlock figure: %w", ErrNotSupported)
	}
	return m, nil
}
