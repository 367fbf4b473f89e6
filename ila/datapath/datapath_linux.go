package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/ilamesh/ilamesh/ila"
	"golang.org/x/sys/unix"
)

// ErrNotSupported means the kernel cannot run the datapath (no tcx, BTF,
// or a helper the programs use). It wraps ebpf.ErrNotSupported.
var ErrNotSupported = fmt.Errorf("ila datapath: %w", ebpf.ErrNotSupported)

// linkDir holds the pinned links under Config.PinPath.
const linkDir = "links"

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
	evMu   sync.Mutex // one ReadEvent at a time
	evrd   *ringbuf.Reader

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
	gw := ila.GatewayMAC()
	copy(c.GwMac[:], gw[:])
	if cfg.MissPolicy == MissDrop {
		c.Flags |= uint32(xlatIlaCfgFlagILA_F_MISS_DROP)
	}
	if cfg.UnknownPolicy == UnknownPass {
		c.Flags |= uint32(xlatIlaCfgFlagILA_F_UNKNOWN_PASS)
	}
	if cfg.Router {
		c.Flags |= uint32(xlatIlaCfgFlagILA_F_ROUTER)
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
	if d.evrd, err = ringbuf.NewReader(d.objs.IlaEvents); err != nil {
		rd.Close()
		d.objs.Close()
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
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
	if err := d.evrd.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close event ring buffer: %w", err))
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
		d.objs.IlaDomains, d.objs.IlaLocspace, d.objs.IlaCfg, d.objs.IlaPorts, d.objs.IlaStats, d.objs.IlaMissRl, d.objs.IlaMisses, d.objs.IlaGen,
		d.objs.IlaPortExts, d.objs.IlaPolicy, d.objs.IlaEvents, d.objs.IlaMonRl} {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin map: %w", err))
		}
	}
	return errors.Join(errs...)
}
