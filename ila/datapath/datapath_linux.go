package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ilamesh/ilamesh/ila"
)

// ErrNotSupported means the kernel cannot run the datapath (no tcx, BTF,
// or a helper the programs use). It wraps ebpf.ErrNotSupported.
var ErrNotSupported = fmt.Errorf("ila datapath: %w", ebpf.ErrNotSupported)

const (
	flagMissDrop    = 1
	flagUnknownPass = 2
	flagRouter      = 4
	linkDir         = "links"
	flagOwnLocator  = 1 // ILA_MAP_F_OWN_LOC
)

// Datapath is the loaded programs and their maps. Methods are safe for
// concurrent use.
type Datapath struct {
	cfg  Config
	objs xlatObjects

	mu      sync.Mutex // serialises table writes (locator reference counts) and attach
	links   map[string]link.Link
	filters map[string]clsactFilter // clsact fallback attachments
	// forceClsact makes Attach use the clsact fallback (tests).
	forceClsact bool

	readMu sync.Mutex // one ReadMiss at a time
	rd     *ringbuf.Reader

	full   atomic.Uint64
	closed atomic.Bool

	// StatsReset says Open found the pinned counters of an older layout (a
	// counter was added since they were pinned) and started new ones from
	// zero; the tables were adopted as usual.
	StatsReset bool

	// Copies of the small tables only this process writes (domains, own
	// locators, locator space with its reference counts), read at Open
	// and kept with every write under mu: a table write reads them instead
	// of asking the kernel (each lookup is a bpf syscall, and a move's
	// mapping write used to make a dozen). Keys are the map keys.
	domains  map[uint64]xlatIlaDomainVal
	mylocs   map[uint64]xlatIlaMylocVal
	locspace map[uint64]xlatIlaLocspaceVal
	// deferGen and genPending fold the cache invalidations of one
	// operation into one generation bump (see batch).
	deferGen, genPending bool
}

// Open loads the programs and creates (or, with a PinPath that holds them,
// adopts) the maps.
func Open(cfg Config) (*Datapath, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadXlat()
	if err != nil {
		return nil, fmt.Errorf("load ila program spec: %w", err)
	}
	spec.Maps["ila_mappings"].MaxEntries = uint32(cfg.MaxMappings)
	spec.Maps["ila_locals"].MaxEntries = uint32(cfg.MaxLocal)
	spec.Maps["ila_inflight"].MaxEntries = uint32(cfg.MaxLocal)
	var opts ebpf.CollectionOptions
	statsReset := false
	if cfg.PinPath != "" {
		if err := os.MkdirAll(filepath.Join(cfg.PinPath, linkDir), 0o700); err != nil {
			return nil, fmt.Errorf("datapath pin path: %w", err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(cfg.PinPath, &st); err != nil {
			return nil, fmt.Errorf("datapath pin path: %w", err)
		}
		if st.Type != unix.BPF_FS_MAGIC {
			return nil, fmt.Errorf("datapath pin path %s: not on a bpf filesystem (mount -t bpf bpffs <dir>)", cfg.PinPath)
		}
		opts.Maps.PinPath = cfg.PinPath
		reset, err := replaceStatsPin(spec, cfg.PinPath)
		if err != nil {
			return nil, err
		}
		statsReset = reset
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	d := &Datapath{cfg: cfg, StatsReset: statsReset, links: make(map[string]link.Link), filters: make(map[string]clsactFilter),
		domains: make(map[uint64]xlatIlaDomainVal), mylocs: make(map[uint64]xlatIlaMylocVal), locspace: make(map[uint64]xlatIlaLocspaceVal)}
	if err := spec.LoadAndAssign(&d.objs, &opts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("adopt pinned ila maps in %s (sizes or layout changed; Unpin first): %w", cfg.PinPath, err)
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("load ila programs: %w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("load ila programs: %w", err)
	}
	var c xlatIlaConfig
	copy(c.GwMac[:], GatewayMAC[:])
	if cfg.MissPolicy == MissDrop {
		c.Flags |= flagMissDrop
	}
	if cfg.UnknownPolicy == UnknownPass {
		c.Flags |= flagUnknownPass
	}
	if cfg.Router {
		c.Flags |= flagRouter
	}
	if err := d.objs.IlaCfg.Put(uint32(0), &c); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("write ila config: %w", err)
	}
	if err := d.tablesChanged(); err != nil {
		d.objs.Close()
		return nil, err
	}
	// Adopted maps hold what an earlier process wrote.
	if err := errors.Join(readAll(d.objs.IlaDomains, d.domains), readAll(d.objs.IlaMylocs, d.mylocs), readAll(d.objs.IlaLocspace, d.locspace)); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("read adopted ila tables: %w", err)
	}
	rd, err := ringbuf.NewReader(d.objs.IlaMisses)
	if err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("open miss ring buffer: %w", err)
	}
	d.rd = rd
	return d, nil
}

// replaceStatsPin removes the pinned counters map under dir if its layout
// differs from spec's (a release added a counter), so that loading creates
// it anew instead of refusing to adopt the whole set: counters restart from
// zero (Prometheus counters may reset), the tables (mappings, locals, ...)
// are kept and forwarding goes on. Programs still attached keep counting
// into the old map until they are replaced.
func replaceStatsPin(spec *ebpf.CollectionSpec, dir string) (bool, error) {
	ms := spec.Maps["ila_stats"]
	p := filepath.Join(dir, "ila_stats")
	old, err := ebpf.LoadPinnedMap(p, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pinned counters %s: %w", p, err)
	}
	same := old.Type() == ms.Type && old.KeySize() == ms.KeySize && old.ValueSize() == ms.ValueSize && old.MaxEntries() == ms.MaxEntries
	old.Close()
	if same {
		return false, nil
	}
	if err := os.Remove(p); err != nil {
		return false, fmt.Errorf("replace pinned counters of an older layout %s: %w", p, err)
	}
	return true, nil
}

// readAll copies every entry of m into into.
func readAll[V any](m *ebpf.Map, into map[uint64]V) error {
	var (
		k uint64
		v V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		into[k] = v
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", m, err)
	}
	return nil
}

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
		k    xlatIlaKey
		v    xlatIlaMapVal
		keys []xlatIlaKey
		vals []xlatIlaMapVal
	)
	want := ne(uint64(loc))
	it := d.objs.IlaMappings.Iterate()
	for it.Next(&k, &v) {
		if v.Loc != want || (v.Flags&flagOwnLocator != 0) == own {
			continue
		}
		if own {
			v.Flags |= flagOwnLocator
		} else {
			v.Flags &^= flagOwnLocator
		}
		keys, vals = append(keys, k), append(vals, v)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate mappings: %w", err)
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

func checkMapping(what string, m ila.Mapping) error {
	if m.SIR == 0 {
		return fmt.Errorf("%s %s: SIR prefix ::/64 is not usable", what, m.SIRAddr())
	}
	if m.Locator == 0 {
		return fmt.Errorf("%s %s: locator 0:0:0:0 is not usable", what, m.SIRAddr())
	}
	if uint64(m.Locator) == uint64(m.SIR) {
		return fmt.Errorf("%s %s: locator equals the SIR prefix", what, m.SIRAddr())
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ensureDomain registers m's SIR prefix with m's checksum mode if the node
// does not know it yet. Callers hold d.mu.
func (d *Datapath) ensureDomain(m ila.Mapping) error {
	if _, ok := d.domains[ne(uint64(m.SIR))]; ok {
		return nil
	}
	return d.addDomain(ila.Domain{Name: m.SIR.String(), SIR: m.SIR, Csum: m.Csum})
}

// UpsertMapping writes identifier -> locator. An unknown SIR prefix is
// registered as a domain with the mapping's checksum mode.
func (d *Datapath) UpsertMapping(m ila.Mapping) error {
	if err := checkMapping("mapping", m); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.batch(func() error { return d.upsertMapping(m) })
}

func (d *Datapath) upsertMapping(m ila.Mapping) error {
	if err := d.ensureDomain(m); err != nil {
		return err
	}
	k := key(m.SIR, m.Identifier)
	var old xlatIlaMapVal
	had := d.objs.IlaMappings.Lookup(&k, &old) == nil
	oldLoc := ila.Locator(he(old.Loc))
	v := xlatIlaMapVal{Loc: ne(uint64(m.Locator)), Csum: uint8(m.Csum)}
	if _, ok := d.mylocs[ne(uint64(m.Locator))]; ok {
		v.Flags |= flagOwnLocator
	}
	if had && old == v {
		return nil // a refresh: nothing to write, no cache to drop
	}
	if !had || oldLoc != m.Locator {
		if err := d.refLocator(m.Locator, m.SIR, m.Csum); err != nil {
			return fmt.Errorf("mapping %s: %w", m.SIRAddr(), err)
		}
	}
	if err := d.update(d.objs.IlaMappings, "mapping "+m.SIRAddr().String(), &k, &v); err != nil {
		if !had || oldLoc != m.Locator {
			_ = d.unrefLocator(m.Locator)
		}
		return err
	}
	if had && oldLoc != m.Locator {
		return d.unrefLocator(oldLoc)
	}
	return nil
}

// DeleteMapping removes a mapping; deleting an absent one is not an error.
func (d *Datapath) DeleteMapping(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(sir, id)
	var old xlatIlaMapVal
	if d.objs.IlaMappings.Lookup(&k, &old) != nil {
		return nil
	}
	return d.batch(func() error {
		if err := d.del(d.objs.IlaMappings, "mapping "+sir.Addr(id).String(), &k); err != nil {
			return err
		}
		return d.unrefLocator(ila.Locator(he(old.Loc)))
	})
}

// maxPortIfindex bounds the ifindex-indexed port table (C
// ILA_MAX_PORT_IFINDEX); larger ifindexes validate through ila_locals only.
const maxPortIfindex = 65536

// UpsertLocal binds a task's SIR address to its port: packets for it are
// delivered there and it may send only from there.
func (d *Datapath) UpsertLocal(l Local) error {
	if err := l.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(l.SIR, l.Identifier)
	var old xlatIlaLocalVal
	if d.objs.IlaLocals.Lookup(&k, &old) == nil && int(old.Ifindex) != l.Ifindex {
		if err := d.unbindPort(int(old.Ifindex), k); err != nil {
			return err
		}
	}
	v := xlatIlaLocalVal{Ifindex: uint32(l.Ifindex)}
	if !l.MAC.IsZero() {
		copy(v.Mac[:], l.MAC[:])
		v.HasMac = 1
	}
	if err := d.update(d.objs.IlaLocals, "local "+l.Addr().String(), &k, &v); err != nil {
		return err
	}
	if l.Ifindex < maxPortIfindex {
		var p xlatIlaPort
		if err := d.objs.IlaPorts.Lookup(uint32(l.Ifindex), &p); err != nil {
			return fmt.Errorf("read port %d: %w", l.Ifindex, err)
		}
		if p == (xlatIlaPort{}) {
			p = xlatIlaPort{Sir: k.Sir, Id: k.Id}
			if err := d.objs.IlaPorts.Put(uint32(l.Ifindex), &p); err != nil {
				return fmt.Errorf("write port %d: %w", l.Ifindex, err)
			}
		}
	}
	return nil
}

// unbindPort clears the port table slot of ifindex if it holds k.
func (d *Datapath) unbindPort(ifindex int, k xlatIlaKey) error {
	if ifindex <= 0 || ifindex >= maxPortIfindex {
		return nil
	}
	var p xlatIlaPort
	if err := d.objs.IlaPorts.Lookup(uint32(ifindex), &p); err != nil {
		return fmt.Errorf("read port %d: %w", ifindex, err)
	}
	if p.Sir != k.Sir || p.Id != k.Id {
		return nil
	}
	if err := d.objs.IlaPorts.Put(uint32(ifindex), &xlatIlaPort{}); err != nil {
		return fmt.Errorf("clear port %d: %w", ifindex, err)
	}
	return nil
}

// DeleteLocal removes a local task; deleting an absent one is not an error.
func (d *Datapath) DeleteLocal(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(sir, id)
	var old xlatIlaLocalVal
	if d.objs.IlaLocals.Lookup(&k, &old) != nil {
		return nil
	}
	if err := d.unbindPort(int(old.Ifindex), k); err != nil {
		return err
	}
	return d.del(d.objs.IlaLocals, "local "+sir.Addr(id).String(), &k)
}

func monotonic(t time.Time) uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	now := time.Duration(ts.Nano())
	d := time.Until(t)
	if now+d < 0 {
		return 0
	}
	return uint64(now + d)
}

// UpsertInFlight makes packets still arriving here for m's identifier be
// re-translated to m.Locator and sent back out, until the deadline.
func (d *Datapath) UpsertInFlight(m ila.Mapping, until time.Time) error {
	if err := checkMapping("in-flight entry", m); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	k := key(m.SIR, m.Identifier)
	var old xlatIlaInflightVal
	had := d.objs.IlaInflight.Lookup(&k, &old) == nil
	oldLoc := ila.Locator(he(old.Loc))
	if !had || oldLoc != m.Locator {
		if err := d.refLocator(m.Locator, m.SIR, m.Csum); err != nil {
			return fmt.Errorf("in-flight entry %s: %w", m.SIRAddr(), err)
		}
	}
	v := xlatIlaInflightVal{Loc: ne(uint64(m.Locator)), DeadlineNs: monotonic(until), Csum: uint8(m.Csum)}
	if err := d.update(d.objs.IlaInflight, "in-flight entry "+m.SIRAddr().String(), &k, &v); err != nil {
		if !had || oldLoc != m.Locator {
			_ = d.unrefLocator(m.Locator)
		}
		return err
	}
	if had && oldLoc != m.Locator {
		return d.unrefLocator(oldLoc)
	}
	return nil
}

// DeleteInFlight removes an in-flight entry; an absent one is not an error.
func (d *Datapath) DeleteInFlight(sir ila.SIRPrefix, id ila.Identifier) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.deleteInFlight(key(sir, id), sir.Addr(id).String())
}

func (d *Datapath) deleteInFlight(k xlatIlaKey, name string) error {
	var old xlatIlaInflightVal
	if d.objs.IlaInflight.Lookup(&k, &old) != nil {
		return nil
	}
	if err := d.del(d.objs.IlaInflight, "in-flight entry "+name, &k); err != nil {
		return err
	}
	return d.unrefLocator(ila.Locator(he(old.Loc)))
}

// ExpireInFlight deletes in-flight entries whose deadline is before now
// (the programs already ignore them) and returns how many it deleted.
func (d *Datapath) ExpireInFlight(now time.Time) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cut := monotonic(now)
	var (
		k    xlatIlaKey
		v    xlatIlaInflightVal
		dead []xlatIlaKey
	)
	it := d.objs.IlaInflight.Iterate()
	for it.Next(&k, &v) {
		if v.DeadlineNs <= cut {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate in-flight entries: %w", err)
	}
	for _, k := range dead {
		if err := d.deleteInFlight(k, ila.SIRPrefix(he(k.Sir)).Addr(ila.Identifier(he(k.Id))).String()); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}

// Mappings calls fn for every mapping until fn returns false.
func (d *Datapath) Mappings(fn func(ila.Mapping) bool) error {
	var (
		k xlatIlaKey
		v xlatIlaMapVal
	)
	it := d.objs.IlaMappings.Iterate()
	for it.Next(&k, &v) {
		m := ila.Mapping{SIR: ila.SIRPrefix(he(k.Sir)), Identifier: ila.Identifier(he(k.Id)), Locator: ila.Locator(he(v.Loc)), Csum: ila.CsumMode(v.Csum)}
		if !fn(m) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate mappings: %w", err)
	}
	return nil
}

// ReadMiss blocks until the programs report a miss or ctx ends.
func (d *Datapath) ReadMiss(ctx context.Context) (Miss, error) {
	d.readMu.Lock()
	defer d.readMu.Unlock()
	if err := ctx.Err(); err != nil {
		return Miss{}, err
	}
	// Flush wakes a blocked Read (SetDeadline cannot: Read holds the
	// reader's lock while it waits).
	stop := context.AfterFunc(ctx, func() { _ = d.rd.Flush() })
	defer stop()
	var rec ringbuf.Record
	for {
		err := d.rd.ReadInto(&rec)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return Miss{}, ctx.Err()
		}
		if errors.Is(err, ringbuf.ErrFlushed) {
			continue
		}
		return Miss{}, fmt.Errorf("read miss ring buffer: %w", err)
	}
	if len(rec.RawSample) < 16 {
		return Miss{}, fmt.Errorf("read miss ring buffer: record of %d bytes", len(rec.RawSample))
	}
	return Miss{
		SIR:        ila.SIRPrefix(binary.BigEndian.Uint64(rec.RawSample[0:8])),
		Identifier: ila.Identifier(binary.BigEndian.Uint64(rec.RawSample[8:16])),
	}, nil
}

// Stats sums the per-CPU counters.
func (d *Datapath) Stats() (Stats, error) {
	var per []xlatIlaCounters
	if err := d.objs.IlaStats.Lookup(uint32(0), &per); err != nil {
		return Stats{}, fmt.Errorf("read counters: %w", err)
	}
	vals := make([]uint64, len(statNames))
	for _, c := range per {
		for i := range vals {
			if i < len(c.V) {
				vals[i] += c.V[i]
			}
		}
	}
	return statsFrom(vals, d.full.Load()), nil
}

// program returns the programs for a role: ingress and (task only) egress.
func (d *Datapath) programs(r Role) (ingress, egress *ebpf.Program) {
	switch r {
	case RoleTask:
		return d.objs.IlaTask, d.objs.IlaTaskEgress
	case RoleUplink:
		return d.objs.IlaUplink, nil
	case RoleRouter:
		return d.objs.IlaRouter, nil
	}
	return nil, nil
}

// inNetNS runs fn on a locked OS thread in the network namespace at path
// ("" runs fn in the caller's namespace).
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", path, err)
			return // the thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

type attachPoint struct {
	name string // pin and map key
	prog *ebpf.Program
	at   ebpf.AttachType
}

// points resolves the interface (in its namespace) and names the hooks.
func (d *Datapath) points(a Attachment) (ifindex int, pts []attachPoint, err error) {
	ifindex = a.Ifindex
	var nsIno uint64
	err = inNetNS(a.NetNS, func() error {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err != nil {
			return fmt.Errorf("stat netns: %w", err)
		}
		nsIno = st.Ino
		if ifindex == 0 {
			ifi, err := net.InterfaceByName(a.Ifname)
			if err != nil {
				return err
			}
			ifindex = ifi.Index
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("attach %s: %w", a, err)
	}
	in, eg := d.programs(a.Role)
	pts = append(pts, attachPoint{fmt.Sprintf("tcx_%d_%d_ingress", nsIno, ifindex), in, ebpf.AttachTCXIngress})
	if eg != nil {
		pts = append(pts, attachPoint{fmt.Sprintf("tcx_%d_%d_egress", nsIno, ifindex), eg, ebpf.AttachTCXEgress})
	}
	return ifindex, pts, nil
}

func (d *Datapath) pinFile(name string) string {
	if d.cfg.PinPath == "" {
		return ""
	}
	return filepath.Join(d.cfg.PinPath, linkDir, name)
}

// Attach runs the role's programs on the interface. With a PinPath the
// links are pinned; if a pinned link for the same hook exists (left by a
// previous process) its program is replaced atomically.
func (d *Datapath) Attach(a Attachment) error {
	if err := a.validate(); err != nil {
		return err
	}
	if a.Role == RoleRouter && !d.cfg.Router {
		return fmt.Errorf("attach %s: router role needs Config.Router", a)
	}
	ifindex, pts, err := d.points(a)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range pts {
		if l, ok := d.links[p.name]; ok {
			if err := l.Update(p.prog); err != nil {
				return fmt.Errorf("attach %s: update %s: %w", a, p.at, err)
			}
			continue
		}
		if pf := d.pinFile(p.name); pf != "" {
			if l, err := link.LoadPinnedLink(pf, nil); err == nil {
				if err := l.Update(p.prog); err != nil {
					l.Close()
					return fmt.Errorf("attach %s: update pinned %s: %w", a, p.at, err)
				}
				d.links[p.name] = l
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("attach %s: load pinned link: %w", a, err)
			}
		}
		var l link.Link
		err := errors.ErrUnsupported
		if !d.forceClsact {
			err = inNetNS(a.NetNS, func() error {
				var err error
				l, err = link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.prog, Attach: p.at})
				return err
			})
		}
		if d.forceClsact || errors.Is(err, ebpf.ErrNotSupported) {
			// No tcx (kernel < 6.6): clsact + direct-action bpf filter.
			f := clsactFilter{netns: a.NetNS, ifindex: ifindex, egress: p.at == ebpf.AttachTCXEgress}
			if err := f.attach(p.prog, p.name); err != nil {
				return fmt.Errorf("attach %s: clsact fallback: %w", a, err)
			}
			d.filters[p.name] = f
			continue
		}
		if err != nil {
			return fmt.Errorf("attach %s: tcx %s: %w", a, p.at, err)
		}
		if pf := d.pinFile(p.name); pf != "" {
			if err := l.Pin(pf); err != nil {
				l.Close()
				return fmt.Errorf("attach %s: pin link: %w", a, err)
			}
		}
		d.links[p.name] = l
	}
	return nil
}

// Detach removes the role's programs from the interface (and their pins).
func (d *Datapath) Detach(a Attachment) error {
	if err := a.validate(); err != nil {
		return err
	}
	_, pts, err := d.points(a)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, p := range pts {
		if f, ok := d.filters[p.name]; ok {
			delete(d.filters, p.name)
			if err := f.detach(); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: %w", a, err))
			}
			continue
		}
		l, ok := d.links[p.name]
		if !ok {
			pf := d.pinFile(p.name)
			if pf == "" {
				continue
			}
			if l, err = link.LoadPinnedLink(pf, nil); err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("detach %s: load pinned link: %w", a, err))
				}
				continue
			}
		}
		delete(d.links, p.name)
		if d.cfg.PinPath != "" {
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: unpin: %w", a, err))
			}
		}
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// Close releases this process's handles. Pinned maps and links stay (the
// programs keep forwarding); without a PinPath everything is detached.
func (d *Datapath) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	var errs []error
	if err := d.rd.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close miss ring buffer: %w", err))
	}
	d.mu.Lock()
	for n, l := range d.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close link %s: %w", n, err))
		}
		delete(d.links, n)
	}
	if d.cfg.PinPath == "" {
		// Without pinning everything goes away with Close, filters too.
		for n, f := range d.filters {
			if err := f.detach(); err != nil {
				errs = append(errs, fmt.Errorf("close filter %s: %w", n, err))
			}
		}
	}
	clear(d.filters)
	d.mu.Unlock()
	if err := d.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close ila objects: %w", err))
	}
	return errors.Join(errs...)
}

// Unpin removes the pinned maps and links under PinPath; once the last
// handle closes, the programs are detached and the maps freed.
func (d *Datapath) Unpin() error {
	if d.cfg.PinPath == "" {
		return nil
	}
	var errs []error
	d.mu.Lock()
	for n, l := range d.links {
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", n, err))
		}
	}
	for n, f := range d.filters {
		if err := f.detach(); err != nil {
			errs = append(errs, fmt.Errorf("remove filter %s: %w", n, err))
		}
		delete(d.filters, n)
	}
	d.mu.Unlock()
	dir := filepath.Join(d.cfg.PinPath, linkDir)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", e.Name(), err))
		}
	}
	for _, m := range []*ebpf.Map{d.objs.IlaMappings, d.objs.IlaLocals, d.objs.IlaInflight, d.objs.IlaMylocs,
		d.objs.IlaDomains, d.objs.IlaLocspace, d.objs.IlaCfg, d.objs.IlaPorts, d.objs.IlaStats, d.objs.IlaMissRl, d.objs.IlaMisses, d.objs.IlaGen} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin map: %w", err))
		}
	}
	return errors.Join(errs...)
}
