package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
)

// ne converts a 64-bit address half to the map representation: its
// network-order bytes read as a native integer.
func ne(v uint64) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return binary.NativeEndian.Uint64(b[:])
}

// he is the inverse of ne.
func he(v uint64) uint64 {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], v)
	return binary.BigEndian.Uint64(b[:])
}

func key(sir ila.SIRPrefix, id ila.Identifier) xlatIlaKey {
	return xlatIlaKey{Sir: ne(uint64(sir)), Id: ne(uint64(id))}
}

// tablesChanged gives the tables a new generation (ila_gen), invalidating
// every program's per-CPU caches of them (ila_map_cache, ila_up_cache).
// Call it after each change to a cached table: a cache entry filled before
// it carries the old generation. The value is random rather than a counter
// so that two processes sharing the pinned maps never write the same one.
func (d *Datapath) tablesChanged() error {
	if d.deferGen {
		d.genPending = true
		return nil
	}
	g := rand.Uint64()
	for g == 0 { // 0 disables the caches
		g = rand.Uint64()
	}
	if err := d.objs.IlaGen.Put(uint32(0), g); err != nil {
		return fmt.Errorf("write table generation: %w", err)
	}
	return nil
}

// batch runs fn (holding d.mu) with the cache invalidations of its writes
// folded into one generation bump after the last of them. Programs may
// use an entry cached before the first write until that bump, as they
// may between any write and its bump.
func (d *Datapath) batch(fn func() error) error {
	d.deferGen = true
	err := fn()
	d.deferGen = false
	if d.genPending {
		d.genPending = false
		if gerr := d.tablesChanged(); gerr != nil {
			err = errors.Join(err, gerr)
		}
	}
	return err
}

// cached reports whether the programs cache lookups in m (see
// tablesChanged). The uplink cache also holds whether a prefix is in
// ila_locspace: refLocator and unrefLocator invalidate when a locator
// enters or leaves it (reference counts alone change nothing cached).
func (d *Datapath) cached(m *ebpf.Map) bool {
	return m == d.objs.IlaMappings || m == d.objs.IlaLocals || m == d.objs.IlaMylocs
}

// update writes, maps a full table to ErrFull, and invalidates the
// programs' caches of m.
func (d *Datapath) update(m *ebpf.Map, what string, k, v any) error {
	if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
		if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
			d.full.Add(1)
			return fmt.Errorf("write %s: %w (%d entries): %w", what, ErrFull, m.MaxEntries(), err)
		}
		return fmt.Errorf("write %s: %w", what, err)
	}
	if d.cached(m) {
		if err := d.tablesChanged(); err != nil {
			return fmt.Errorf("write %s: %w", what, err)
		}
	}
	return nil
}

// del deletes and invalidates the programs' caches of m.
func (d *Datapath) del(m *ebpf.Map, what string, k any) error {
	if err := m.Delete(k); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", what, err)
	}
	if d.cached(m) {
		if err := d.tablesChanged(); err != nil {
			return fmt.Errorf("delete %s: %w", what, err)
		}
	}
	return nil
}

// refLocator counts one more user (own locator, mapping or in-flight
// entry) of loc as locator space serving sir. Callers hold d.mu.
func (d *Datapath) refLocator(loc ila.Locator, sir ila.SIRPrefix, mode ila.CsumMode) error {
	k := ne(uint64(loc))
	v, ok := d.locspace[k]
	switch {
	case ok:
		if he(v.Sir) != uint64(sir) {
			return fmt.Errorf("locator %s for %s: already serves %s: %w", loc, sir, ila.SIRPrefix(he(v.Sir)), ila.ErrLocatorConflict)
		}
		v.Refs++
	default:
		if _, ok := d.domains[k]; ok {
			return fmt.Errorf("locator %s: is also a SIR prefix", loc)
		}
		v = xlatIlaLocspaceVal{Sir: ne(uint64(sir)), Refs: 1}
	}
	v.Csum = uint8(mode)
	if err := d.update(d.objs.IlaLocspace, "locator space "+loc.String(), k, &v); err != nil {
		return err
	}
	d.locspace[k] = v
	if v.Refs == 1 { // new in locator space
		if err := d.tablesChanged(); err != nil {
			return fmt.Errorf("locator space %s: %w", loc, err)
		}
	}
	return nil
}

// unrefLocator drops one user of loc. Callers hold d.mu.
func (d *Datapath) unrefLocator(loc ila.Locator) error {
	k := ne(uint64(loc))
	v, ok := d.locspace[k]
	if !ok {
		return nil
	}
	if v.Refs <= 1 {
		if err := d.del(d.objs.IlaLocspace, "locator space "+loc.String(), k); err != nil {
			return err
		}
		delete(d.locspace, k)
		if err := d.tablesChanged(); err != nil {
			return fmt.Errorf("locator space %s: %w", loc, err)
		}
		return nil
	}
	v.Refs--
	if err := d.update(d.objs.IlaLocspace, "locator space "+loc.String(), k, &v); err != nil {
		return err
	}
	d.locspace[k] = v
	return nil
}

func (d *Datapath) addDomain(dom ila.Domain) error {
	k := ne(uint64(dom.SIR))
	if _, ok := d.locspace[k]; ok {
		return fmt.Errorf("domain %s: SIR prefix %s is also a locator", dom.Name, dom.SIR)
	}
	v := xlatIlaDomainVal{Csum: uint8(dom.Csum)}
	if old, ok := d.domains[k]; ok && old == v {
		return nil
	}
	if err := d.update(d.objs.IlaDomains, "domain "+dom.SIR.String(), k, &v); err != nil {
		return err
	}
	d.domains[k] = v
	return nil
}

// AddDomain registers a SIR prefix and its checksum mode: destinations in
// it are ILA traffic (a lookup miss is a miss, not foreign traffic).
func (d *Datapath) AddDomain(dom ila.Domain) error {
	if err := dom.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addDomain(dom)
}

// AddLocator registers a locator of this node serving domain dom (and the
// domain itself).
func (d *Datapath) AddLocator(loc ila.Locator, dom ila.Domain) error {
	if err := dom.Validate(); err != nil {
		return err
	}
	if loc == 0 {
		return fmt.Errorf("locator 0:0:0:0 is not usable")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.addDomain(dom); err != nil {
		return err
	}
	k := ne(uint64(loc))
	old, had := d.mylocs[k]
	if had && he(old.Sir) != uint64(dom.SIR) {
		return fmt.Errorf("locator %s for %s: already serves %s: %w", loc, dom.SIR, ila.SIRPrefix(he(old.Sir)), ila.ErrLocatorConflict)
	}
	if !had {
		if err := d.refLocator(loc, dom.SIR, dom.Csum); err != nil {
			return err
		}
	}
	v := xlatIlaMylocVal{Sir: ne(uint64(dom.SIR)), Csum: uint8(dom.Csum)}
	if err := d.update(d.objs.IlaMylocs, "own locator "+loc.String(), k, &v); err != nil {
		if !had {
			_ = d.unrefLocator(loc)
		}
		return err
	}
	d.mylocs[k] = v
	return d.markOwn(loc, true)
}

// markOwn sets or clears the own-locator flag of every mapping to loc.
// Callers hold d.mu.
func (d *Datapath) markOwn(loc ila.Locator, own bool) error {
	var (
		keys []xlatIlaKey
		vals []xlatIlaMapVal
	)
	want := ne(uint64(loc))
	// Read in batches (BPF_MAP_LOOKUP_BATCH), not one syscall per entry:
	// ilad adds its locators at every start, and at a million mappings
	// an entry-by-entry walk took over a second of a restart.
	if err := d.dumpMappings(func(k xlatIlaKey, v xlatIlaMapVal) bool {
		if v.Loc != want || (v.Flags&uint8(xlatIlaMapFlagILA_MAP_F_OWN_LOC) != 0) == own {
			return true
		}
		if own {
			v.Flags |= uint8(xlatIlaMapFlagILA_MAP_F_OWN_LOC)
		} else {
			v.Flags &^= uint8(xlatIlaMapFlagILA_MAP_F_OWN_LOC)
		}
		keys, vals = append(keys, k), append(vals, v)
		return true
	}); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	for i := range keys {
		// Update only existing entries: a concurrent delete wins.
		if err := d.objs.IlaMappings.Update(&keys[i], &vals[i], ebpf.UpdateExist); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return errors.Join(fmt.Errorf("mark mappings of locator %s: %w", loc, err), d.tablesChanged())
		}
	}
	return d.tablesChanged()
}

// RemoveLocator forgets a locator of this node.
func (d *Datapath) RemoveLocator(loc ila.Locator) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := ne(uint64(loc))
	if _, ok := d.mylocs[k]; !ok {
		return nil
	}
	if err := d.del(d.objs.IlaMylocs, "own locator "+loc.String(), k); err != nil {
		return err
	}
	delete(d.mylocs, k)
	if err := d.markOwn(loc, false); err != nil {
		return err
	}
	return d.unrefLocator(loc)
}
