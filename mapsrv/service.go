package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Move modes.
const (
	ModeHot  = "hot"
	ModeWarm = "warm"
	ModeCold = "cold"
)

// MaxLifetime is the longest lifetime the registration protocol can carry
// (a 16-bit count of 4-second units).
const MaxLifetime = 65535 * 4 * time.Second

// Config configures a Service. Store is required; every other field has a
// documented zero-value default.
type Config struct {
	Store Store
	// InFlight is how long a previous NVE keeps forwarding packets in
	// flight after a hot move. Default 10s.
	InFlight time.Duration
	// FlapMoves and FlapWindow: a task moved more than FlapMoves times
	// within FlapWindow is marked duplicate. Defaults 5 and 180s.
	FlapMoves  int
	FlapWindow time.Duration
	// MaxLifetime caps granted lifetimes. Default (and upper bound)
	// MaxLifetime.
	MaxLifetime time.Duration
	// SweepInterval is the period of the lifetime sweeper. Default 1s.
	SweepInterval time.Duration
	// Events, if set, feeds the sweeper with the store's changes (the
	// etcdstore Watcher's Watch): each sweep then reads only the tasks
	// whose expiry or in-flight deadline is due, and lists every task only
	// every FullSweepInterval. Nil: every sweep lists every task.
	Events func(ctx context.Context, fn func(ila.Event)) error
	// FullSweepInterval is the period of full sweeps when Events is set.
	// Default 1m.
	FullSweepInterval time.Duration
	// Notifier sends move notifications to previous NVEs. Nil: none.
	Notifier Notifier
	// NotifyQueue is the number of notifications waiting to be sent
	// before new ones are dropped. Default 1024.
	NotifyQueue int
	// Logger receives the Run loop's logs. Nil: discarded.
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

func (c *Config) validate() error {
	if c.Store == nil {
		return fmt.Errorf("mapsrv config: store is required")
	}
	if c.InFlight < 0 || c.FlapMoves < 0 || c.FlapWindow < 0 || c.MaxLifetime < 0 || c.SweepInterval < 0 {
		return fmt.Errorf("mapsrv config: negative duration or count")
	}
	if c.InFlight == 0 {
		c.InFlight = 10 * time.Second
	}
	if c.FlapMoves == 0 {
		c.FlapMoves = 5
	}
	if c.FlapWindow == 0 {
		c.FlapWindow = 180 * time.Second
	}
	if c.MaxLifetime == 0 || c.MaxLifetime > MaxLifetime {
		c.MaxLifetime = MaxLifetime
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = time.Second
	}
	if c.FullSweepInterval <= 0 {
		c.FullSweepInterval = time.Minute
	}
	if c.NotifyQueue <= 0 {
		c.NotifyQueue = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Notification asks a previous NVE to redirect a task's traffic to its new
// locator (the draft's Registration Request from the management node).
type Notification struct {
	NVE  string         // previous NVE
	To   netip.AddrPort // its registration listener
	Task ila.Task       // the task as now stored (Locator = new locator)
}

// Notifier delivers move notifications.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// Stats are the Service's counters since it started.
type Stats struct {
	RegAccepted, RegRejected, RegConflict, RegError uint64
	Deregistrations                                 uint64
	MovesHot, MovesWarm, MovesCold                  uint64
	MovesRefused                                    uint64
	DuplicatesMarked                                uint64
	Expiries                                        uint64
	StoreErrors                                     uint64
	MalformedSkipped                                uint64
	NotifySent, NotifyFailed, NotifyDropped         uint64
}

type counters struct {
	regAccepted, regRejected, regConflict, regError atomic.Uint64
	deregs                                          atomic.Uint64
	movesHot, movesWarm, movesCold, movesRefused    atomic.Uint64
	dups, expiries, storeErrors, malformed          atomic.Uint64
	notifySent, notifyFailed, notifyDropped         atomic.Uint64
}

// Service is the mapping authority. Its methods are safe for concurrent use.
type Service struct {
	cfg    Config
	store  Store
	log    *slog.Logger
	notify chan Notification
	c      counters

	mu      sync.Mutex
	malSeen map[string]int64 // key -> revision of malformed values already logged

	cache recordCache // domains and NVEs for the registration path
	kvs   kvCache     // task and index entries this Service wrote
}

// New returns a Service over cfg.Store.
func New(cfg Config) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Service{
		cfg:     cfg,
		store:   cfg.Store,
		log:     cfg.Logger,
		notify:  make(chan Notification, cfg.NotifyQueue),
		malSeen: make(map[string]int64),
	}, nil
}

// Stats returns a snapshot of the counters.
func (s *Service) Stats() Stats {
	c := &s.c
	return Stats{
		RegAccepted: c.regAccepted.Load(), RegRejected: c.regRejected.Load(),
		RegConflict: c.regConflict.Load(), RegError: c.regError.Load(),
		Deregistrations: c.deregs.Load(),
		MovesHot:        c.movesHot.Load(), MovesWarm: c.movesWarm.Load(), MovesCold: c.movesCold.Load(),
		MovesRefused: c.movesRefused.Load(), DuplicatesMarked: c.dups.Load(),
		Expiries: c.expiries.Load(), StoreErrors: c.storeErrors.Load(), MalformedSkipped: c.malformed.Load(),
		NotifySent: c.notifySent.Load(), NotifyFailed: c.notifyFailed.Load(), NotifyDropped: c.notifyDropped.Load(),
	}
}

// CountStoreError counts an error of the store seen outside the Service
// (e.g. by a watch).
func (s *Service) CountStoreError() { s.c.storeErrors.Add(1) }

// storeErr counts and wraps a store error that is not a conflict.
func (s *Service) storeErr(err error) error {
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, context.Canceled) {
		s.c.storeErrors.Add(1)
	}
	return err
}

// malformed records (once per key and revision) a stored value that could
// not be decoded; readers skip it.
func (s *Service) malformed(kv KV, err error) {
	s.mu.Lock()
	seen := s.malSeen[kv.Key] == kv.Revision
	s.malSeen[kv.Key] = kv.Revision
	s.mu.Unlock()
	if !seen {
		s.c.malformed.Add(1)
		s.log.Warn("skipping malformed stored value", "key", kv.Key, "revision", kv.Revision, "err", err)
	}
}

// ---- domains and NVEs ----

// AddDomain stores a domain. Re-adding an identical domain is a no-op;
// changing an existing one is refused with ErrConflict (its prefix and
// checksum mode are baked into every node's datapath).
func (s *Service) AddDomain(ctx context.Context, d ila.Domain) error {
	if err := CheckName("domain", d.Name); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	kvs, err := s.store.Get(ctx, DomainKey(d.Name))
	if err != nil {
		return s.storeErr(fmt.Errorf("get domain %s: %w", d.Name, err))
	}
	if kvs[0].Revision != 0 {
		old, err := DecodeDomain(kvs[0].Key, kvs[0].Value)
		if err == nil && old == d {
			return nil
		}
		if err == nil {
			return fmt.Errorf("domain %s exists with prefix %s, csum %s: %w", d.Name, old.SIR, old.Csum, ErrConflict)
		}
		s.malformed(kvs[0], err) // overwrite a malformed value
	}
	doms, err := s.Domains(ctx)
	if err != nil {
		return err
	}
	for _, o := range doms {
		if o.SIR == d.SIR && o.Name != d.Name {
			return fmt.Errorf("domain %s: SIR prefix %s already belongs to domain %s: %w", d.Name, d.SIR, o.Name, ErrConflict)
		}
	}
	v, err := encode(d)
	if err != nil {
		return err
	}
	_, err = s.store.Txn(ctx, []Cond{{Key: kvs[0].Key, Revision: kvs[0].Revision}}, []Op{{Key: kvs[0].Key, Value: v}})
	if err != nil {
		return s.storeErr(fmt.Errorf("put domain %s: %w", d.Name, err))
	}
	s.cache.invalidate()
	return nil
}

// Domains lists the domains, skipping malformed values.
func (s *Service) Domains(ctx context.Context) ([]ila.Domain, error) {
	kvs, _, err := s.store.List(ctx, DomainPrefix)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("list domains: %w", err))
	}
	var out []ila.Domain
	for _, kv := range kvs {
		d, err := DecodeDomain(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// AddNVE stores an NVE or replaces its record (locators, underlay,
// registration address). A locator of another NVE, or a locator pinned to
// two domains with different SIR prefixes, is refused with ErrConflict
// (wrapping ila.ErrLocatorConflict for the latter).
func (s *Service) AddNVE(ctx context.Context, n NVERecord) error {
	if err := CheckName("nve", n.Name); err != nil {
		return err
	}
	if len(n.Locators) == 0 {
		return fmt.Errorf("nve %s: at least one locator is required: %w", n.Name, ErrInvalid)
	}
	if !n.Underlay.IsValid() {
		return fmt.Errorf("nve %s: underlay address is required: %w", n.Name, ErrInvalid)
	}
	n.Underlay = n.Underlay.Unmap()
	seen := map[ila.Locator]bool{}
	for _, l := range n.Locators {
		if l == 0 {
			return fmt.Errorf("nve %s: locator 0:0:0:0 is not usable: %w", n.Name, ErrInvalid)
		}
		if seen[l] {
			return fmt.Errorf("nve %s: locator %s listed twice: %w", n.Name, l, ErrInvalid)
		}
		seen[l] = true
	}
	doms, err := s.Domains(ctx)
	if err != nil {
		return err
	}
	byName := map[string]ila.Domain{}
	for _, d := range doms {
		byName[d.Name] = d
	}
	for ls, dn := range n.LocatorDomains {
		l, err := ila.ParseLocator(ls)
		if err != nil || !seen[l] {
			return fmt.Errorf("nve %s: locator %q pinned to domain %s is not one of its locators: %w", n.Name, ls, dn, ErrInvalid)
		}
		if _, ok := byName[dn]; !ok {
			return fmt.Errorf("nve %s: locator %s: domain %s: %w", n.Name, l, dn, ErrNotFound)
		}
	}
	nves, err := s.NVEs(ctx)
	if err != nil {
		return err
	}
	var lt ila.LocatorTable
	var cur KV
	for _, o := range nves {
		if o.Name == n.Name {
			continue
		}
		for _, l := range o.Locators {
			if seen[l] {
				return fmt.Errorf("nve %s: locator %s belongs to nve %s: %w", n.Name, l, o.Name, ErrConflict)
			}
			if dn, ok := o.LocatorDomains[l.String()]; ok {
				_ = lt.Claim(l, byName[dn].SIR)
			}
		}
	}
	for ls, dn := range n.LocatorDomains {
		l, _ := ila.ParseLocator(ls)
		if err := lt.Claim(l, byName[dn].SIR); err != nil {
			return fmt.Errorf("nve %s: %w: %w", n.Name, ErrConflict, err)
		}
	}
	kvs, err := s.store.Get(ctx, NVEKey(n.Name))
	if err != nil {
		return s.storeErr(fmt.Errorf("get nve %s: %w", n.Name, err))
	}
	cur = kvs[0]
	if cur.Revision != 0 {
		if old, err := DecodeNVE(cur.Key, cur.Value); err == nil {
			if n.Status == "" {
				n.Status = old.Status
			}
			// Keep the pins of locators the new record still has and does
			// not pin itself: tasks of that domain may use them.
			for ls, dn := range old.LocatorDomains {
				l, err := ila.ParseLocator(ls)
				if err != nil || !seen[l] {
					continue
				}
				if _, ok := n.LocatorDomains[ls]; ok {
					continue
				}
				if n.LocatorDomains == nil {
					n.LocatorDomains = map[string]string{}
				}
				n.LocatorDomains[ls] = dn
			}
		}
	}
	n.Updated = s.cfg.Now().UTC()
	v, err := encode(n)
	if err != nil {
		return err
	}
	if _, err := s.store.Txn(ctx, []Cond{{Key: cur.Key, Revision: cur.Revision}}, []Op{{Key: cur.Key, Value: v}}); err != nil {
		return s.storeErr(fmt.Errorf("put nve %s: %w", n.Name, err))
	}
	s.cache.invalidate()
	return nil
}

// NVEs lists the NVEs, skipping malformed values.
func (s *Service) NVEs(ctx context.Context) ([]NVERecord, error) {
	kvs, _, err := s.store.List(ctx, NVEPrefix)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("list nves: %w", err))
	}
	var out []NVERecord
	for _, kv := range kvs {
		n, err := DecodeNVE(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// NVE returns one NVE.
func (s *Service) NVE(ctx context.Context, name string) (NVERecord, error) {
	n, _, err := s.getNVE(ctx, name)
	return n, err
}

func (s *Service) getNVE(ctx context.Context, name string) (NVERecord, KV, error) {
	if err := CheckName("nve", name); err != nil {
		return NVERecord{}, KV{}, err
	}
	kvs, err := s.store.Get(ctx, NVEKey(name))
	if err != nil {
		return NVERecord{}, KV{}, s.storeErr(fmt.Errorf("get nve %s: %w", name, err))
	}
	if kvs[0].Revision == 0 {
		return NVERecord{}, kvs[0], fmt.Errorf("nve %s: %w: %w", name, ErrNotFound, errNoNVE)
	}
	n, err := DecodeNVE(kvs[0].Key, kvs[0].Value)
	if err != nil {
		s.malformed(kvs[0], err)
		return NVERecord{}, kvs[0], fmt.Errorf("nve %s: %w: %w", name, ErrNotFound, errNoNVE)
	}
	return n, kvs[0], nil
}

func (s *Service) getDomain(ctx context.Context, name string) (ila.Domain, KV, error) {
	if err := CheckName("domain", name); err != nil {
		return ila.Domain{}, KV{}, err
	}
	kvs, err := s.store.Get(ctx, DomainKey(name))
	if err != nil {
		return ila.Domain{}, KV{}, s.storeErr(fmt.Errorf("get domain %s: %w", name, err))
	}
	if kvs[0].Revision == 0 {
		return ila.Domain{}, kvs[0], fmt.Errorf("domain %s: %w: %w", name, ErrNotFound, errNoDomain)
	}
	d, err := DecodeDomain(kvs[0].Key, kvs[0].Value)
	if err != nil {
		s.malformed(kvs[0], err)
		return ila.Domain{}, kvs[0], fmt.Errorf("domain %s: %w: %w", name, ErrNotFound, errNoDomain)
	}
	return d, kvs[0], nil
}

// ---- tasks ----

// Registration is a claim of a task by an NVE, from the registration
// protocol or the management API.
type Registration struct {
	NVE string
	// Locator is the NVE's locator the task is reachable at; 0 picks the
	// NVE's locator for the domain.
	Locator ila.Locator
	// Domain; empty: the domain whose SIR prefix holds SIR (or the only
	// domain, for IPv4 tenants).
	Domain string
	Tenant string // default "default" when Name is set
	Name   string // optional: indexed by tenant/name when set
	// SIR is the task's SIR address. IPv4 tenants give IPv4 and VNI
	// instead: the identifier is then ila.NewVNIPv4(VNI, IPv4).
	SIR  netip.Addr
	IPv4 netip.Addr
	VNI  uint32
	MAC  ila.MAC
	// Lifetime requested; 0 = does not expire. Granted lifetimes are
	// capped by Config.MaxLifetime.
	Lifetime time.Duration
	// Mode of the move when the claim moves the task from another NVE:
	// hot (default), warm or cold.
	Mode string
}

// identify resolves the domain, identifier and SIR address of r.
func (s *Service) identify(ctx context.Context, r *Registration) (ila.Domain, KV, ila.Identifier, error) {
	var d ila.Domain
	var dkv KV
	var err error
	switch {
	case r.Domain != "":
		if d, dkv, err = s.cachedDomain(ctx, r.Domain); err != nil {
			return d, dkv, 0, err
		}
	default:
		doms, err := s.cachedDomains(ctx)
		if err != nil {
			return d, dkv, 0, err
		}
		found := false
		switch {
		case r.SIR.IsValid():
			d, found = domainOf(doms, ila.SIRPrefixOf(r.SIR))
		case len(doms) == 1:
			d, found = doms[0], true
		}
		if !found {
			if r.SIR.IsValid() {
				return d, dkv, 0, fmt.Errorf("sir %s: no domain has this prefix: %w: %w", r.SIR, ErrNotFound, errNoDomain)
			}
			return d, dkv, 0, fmt.Errorf("task %s: domain is required (%d domains): %w", r.Name, len(doms), ErrInvalid)
		}
		if d, dkv, err = s.cachedDomain(ctx, d.Name); err != nil {
			return d, dkv, 0, err
		}
	}
	r.Domain = d.Name
	var id ila.Identifier
	if r.IPv4.IsValid() {
		r.IPv4 = r.IPv4.Unmap()
		if id, err = ila.NewVNIPv4(r.VNI, r.IPv4); err != nil {
			return d, dkv, 0, fmt.Errorf("task %s: %w: %w", r.Name, ErrInvalid, err)
		}
		sir := d.SIR.Addr(id)
		if r.SIR.IsValid() && r.SIR != sir {
			return d, dkv, 0, fmt.Errorf("task %s: sir %s does not match the vn-ipv4 identifier of %s in vni %d (%s): %w", r.Name, r.SIR, r.IPv4, r.VNI, sir, ErrInvalid)
		}
		r.SIR = sir
	} else {
		if !r.SIR.IsValid() {
			return d, dkv, 0, fmt.Errorf("task %s: a SIR address or an IPv4 address with a VNI is required: %w", r.Name, ErrInvalid)
		}
		r.SIR = r.SIR.WithZone("")
		if !d.SIR.Contains(r.SIR) {
			return d, dkv, 0, fmt.Errorf("task %s: sir %s is not in domain %s (%s): %w", r.Name, r.SIR, d.Name, d.SIR, ErrInvalid)
		}
		id = ila.IdentifierOf(r.SIR)
	}
	if err := d.CheckIdentifier(id); err != nil {
		return d, dkv, 0, fmt.Errorf("task %s: identifier %s in domain %s: %w: %w", r.Name, id, d.Name, ErrInvalid, err)
	}
	return d, dkv, id, nil
}

// pickLocator returns the NVE's locator for the task and, if that locator
// was not yet pinned to the domain, the NVE record to write with the pin.
func pickLocator(n NVERecord, want ila.Locator, domain string) (ila.Locator, *NVERecord, error) {
	loc := want
	if loc == 0 {
		var ok bool
		if loc, ok = n.LocatorFor(domain); !ok {
			return 0, nil, fmt.Errorf("nve %s has no locator for domain %s: %w", n.Name, domain, ErrForbidden)
		}
	} else if !n.Owns(loc, domain) {
		if other, pinned := n.pin(loc); pinned && slices.Contains(n.Locators, loc) {
			return 0, nil, fmt.Errorf("locator %s of nve %s serves domain %s, not %s: %w: %w", loc, n.Name, other, domain, ErrForbidden, ila.ErrLocatorConflict)
		}
		return 0, nil, fmt.Errorf("locator %s is not a locator of nve %s: %w", loc, n.Name, ErrForbidden)
	}
	if _, pinned := n.pin(loc); pinned {
		return loc, nil, nil
	}
	pin := n
	pin.LocatorDomains = make(map[string]string, len(n.LocatorDomains)+1)
	for k, v := range n.LocatorDomains {
		pin.LocatorDomains[k] = v
	}
	pin.LocatorDomains[loc.String()] = domain
	return loc, &pin, nil
}

// txnBuilder collects the conditions and writes of one transaction.
type txnBuilder struct {
	conds []Cond
	ops   []Op
	vals  []any // per op: the value put, for kvCache
	err   error
}

func (b *txnBuilder) cond(kv KV) { b.conds = append(b.conds, Cond{Key: kv.Key, Revision: kv.Revision}) }

func (b *txnBuilder) put(key string, v any) {
	val, err := encode(v)
	if err != nil && b.err == nil {
		b.err = err
	}
	b.ops = append(b.ops, Op{Key: key, Value: val})
	b.vals = append(b.vals, v)
}

func (b *txnBuilder) del(key string) {
	b.ops = append(b.ops, Op{Key: key, Delete: true})
	b.vals = append(b.vals, nil)
}

func (s *Service) commit(ctx context.Context, b *txnBuilder, what string) error {
	if b.err != nil {
		return b.err
	}
	rev, err := s.store.Txn(ctx, b.conds, b.ops)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			s.kvs.conflicted(b.conds)
		}
		return s.storeErr(fmt.Errorf("%s: %w", what, err))
	}
	s.kvs.committed(rev, b.ops, b.vals)
	for _, op := range b.ops {
		if strings.HasPrefix(op.Key, NVEPrefix) || strings.HasPrefix(op.Key, DomainPrefix) {
			s.cache.invalidate()
			break
		}
	}
	return nil
}

// indexes reads the task key and the name and MAC index keys for r, and
// decides whether those indexes are free for (domain, id).
type taskRead struct {
	task, name, mac KV
	nameX, macX     indexRead // name and mac decoded
	rec             TaskRecord
	exists          bool
}

// indexRead is an index entry decoded once per registration.
type indexRead struct {
	x   Index
	err error // decoding error (a malformed value)
}

func readIndex(kv KV, cached any) indexRead {
	if kv.Revision == 0 {
		return indexRead{}
	}
	if x, ok := cached.(Index); ok {
		return indexRead{x: x}
	}
	x, err := DecodeIndex(kv.Key, kv.Value)
	return indexRead{x: x, err: err}
}

func (s *Service) readTask(ctx context.Context, domain string, id ila.Identifier, tenant, name string, mac ila.MAC, optimistic bool) (taskRead, error) {
	keys := []string{TaskKey(domain, id), "", ""}
	if name != "" {
		keys[1] = NameKey(tenant, name)
	}
	if !mac.IsZero() {
		keys[2] = MACKey(mac)
	}
	get := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "" })
	var kvs []KV
	var vals []any // decoded values of kvs, when known
	if optimistic {
		kvs, vals = s.kvs.get(get...)
	} else {
		var err error
		if kvs, err = s.store.Get(ctx, get...); err != nil {
			return taskRead{}, s.storeErr(fmt.Errorf("get task %s/%s: %w", domain, id, err))
		}
	}
	val := func(i int) any {
		if vals == nil {
			return nil
		}
		return vals[i]
	}
	var tr taskRead
	i := 0
	tr.task = kvs[i]
	i++
	if keys[1] != "" {
		tr.name = kvs[i]
		tr.nameX = readIndex(tr.name, val(i))
		i++
	}
	if keys[2] != "" {
		tr.mac = kvs[i]
		tr.macX = readIndex(tr.mac, val(i))
	}
	if rec, ok := val(0).(TaskRecord); ok && tr.task.Revision != 0 {
		// Written by this Service at this revision: no need to decode.
		tr.rec, tr.exists = cloneTask(rec), true
	} else if tr.task.Revision != 0 {
		rec, err := DecodeTask(tr.task.Key, tr.task.Value)
		if err != nil {
			s.malformed(tr.task, err) // treated as absent; a write replaces it
		} else {
			tr.rec, tr.exists = rec, true
		}
	}
	return tr, nil
}

// indexFree reports whether index entry kv is absent, stale or already
// points at (domain, id). A stale entry points at a task that no longer
// exists or no longer carries that name/MAC.
func (s *Service) indexFree(ctx context.Context, kv KV, ir indexRead, domain string, id ila.Identifier) (bool, error) {
	if kv.Revision == 0 {
		return true, nil
	}
	x := ir.x
	if ir.err != nil {
		s.malformed(kv, ir.err)
		return true, nil
	}
	if x.Domain == domain && x.Identifier == id {
		return true, nil
	}
	kvs, err := s.store.Get(ctx, TaskKey(x.Domain, x.Identifier))
	if err != nil {
		return false, s.storeErr(fmt.Errorf("get task %s/%s: %w", x.Domain, x.Identifier, err))
	}
	if kvs[0].Revision == 0 {
		return true, nil
	}
	other, err := DecodeTask(kvs[0].Key, kvs[0].Value)
	if err != nil {
		return true, nil
	}
	switch {
	case strings.HasPrefix(kv.Key, NamePrefix):
		return NameKey(other.Tenant, other.Name) != kv.Key, nil
	case strings.HasPrefix(kv.Key, MACPrefix):
		return other.MAC.IsZero() || MACKey(other.MAC) != kv.Key, nil
	}
	return false, nil
}

// Register records a claim of a task by an NVE: a new task, a
// re-registration (extends the lifetime, updates name/MAC), the completion
// of a warm or cold move at its destination, or a move from another NVE.
// Concurrent writers are resolved by retrying on conflicts; a claim that
// is a move follows the move rules (flap damping, duplicate state).
func (s *Service) Register(ctx context.Context, r Registration) (TaskRecord, error) {
	var rec TaskRecord
	var err error
	for attempt := 0; attempt < 6; attempt++ {
		// The first attempt trusts what this Service wrote (kvCache); the
		// others read the store.
		rec, err = s.register(ctx, r, attempt == 0)
		var final finalError
		if err == nil || errors.Is(err, errTaken) || errors.As(err, &final) || ctx.Err() != nil {
			break
		}
		conflict := errors.Is(err, ErrConflict)
		if conflict && attempt == 0 {
			continue // the optimistic guess was wrong; read and retry
		}
		// A conflict, or a refusal that stale cached domain or NVE
		// records may have caused: drop the cache and try again (only
		// conflicts more than once).
		s.cache.invalidate()
		if !conflict && attempt > 1 {
			break
		}
	}
	switch {
	case err == nil:
		s.c.regAccepted.Add(1)
	case errors.Is(err, ErrConflict) || errors.Is(err, ErrDuplicate):
		s.c.regConflict.Add(1)
	case errors.Is(err, ErrInvalid) || errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound):
		s.c.regRejected.Add(1)
	default:
		s.c.regError.Add(1)
	}
	return rec, err
}

// errTaken marks a conflict that a retry cannot resolve (name or MAC used
// by another task).
var errTaken = errors.New("taken by another task")

// finalError marks a refusal that a retry against fresher state cannot
// change; its text is the wrapped error's.
type finalError struct{ error }

func (e finalError) Unwrap() error { return e.error }

func (s *Service) register(ctx context.Context, r Registration, optimistic bool) (TaskRecord, error) {
	if r.Name != "" {
		if r.Tenant == "" {
			r.Tenant = "default"
		}
		if err := CheckName("tenant", r.Tenant); err != nil {
			return TaskRecord{}, err
		}
		if err := CheckName("task", r.Name); err != nil {
			return TaskRecord{}, err
		}
	}
	if r.Lifetime < 0 {
		return TaskRecord{}, fmt.Errorf("task %s: negative lifetime: %w", r.Name, ErrInvalid)
	}
	mode, err := checkMode(r.Mode)
	if err != nil {
		return TaskRecord{}, err
	}
	nve, nkv, err := s.cachedNVE(ctx, r.NVE)
	if err != nil {
		return TaskRecord{}, err
	}
	dom, dkv, id, err := s.identify(ctx, &r)
	if err != nil {
		return TaskRecord{}, err
	}
	loc, pin, err := pickLocator(nve, r.Locator, dom.Name)
	if err != nil {
		return TaskRecord{}, err
	}
	tr, err := s.readTask(ctx, dom.Name, id, r.Tenant, r.Name, r.MAC, optimistic)
	if err != nil {
		return TaskRecord{}, err
	}
	if r.Name == "" && tr.exists {
		// A registration without a name (e.g. from ND) keeps the stored one.
		r.Name, r.Tenant = tr.rec.Name, tr.rec.Tenant
		if r.Name != "" {
			if tr, err = s.readTask(ctx, dom.Name, id, r.Tenant, r.Name, r.MAC, optimistic); err != nil {
				return TaskRecord{}, err
			}
		}
	}
	if r.MAC.IsZero() && tr.exists && !tr.rec.MAC.IsZero() {
		r.MAC = tr.rec.MAC
		if tr, err = s.readTask(ctx, dom.Name, id, r.Tenant, r.Name, r.MAC, optimistic); err != nil {
			return TaskRecord{}, err
		}
	}
	if r.Name != "" {
		free, err := s.indexFree(ctx, tr.name, tr.nameX, dom.Name, id)
		if err != nil {
			return TaskRecord{}, err
		}
		if !free {
			return TaskRecord{}, fmt.Errorf("task %s/%s: name used by another task: %w: %w", r.Tenant, r.Name, ErrConflict, errTaken)
		}
	}
	if !r.MAC.IsZero() {
		free, err := s.indexFree(ctx, tr.mac, tr.macX, dom.Name, id)
		if err != nil {
			return TaskRecord{}, err
		}
		if !free {
			return TaskRecord{}, fmt.Errorf("task %s/%s: mac %s used by another task: %w: %w", r.Tenant, r.Name, r.MAC, ErrConflict, errTaken)
		}
	}

	now := s.cfg.Now().UTC()
	var b txnBuilder
	b.cond(tr.task)
	b.cond(nkv)
	b.cond(dkv)
	if pin != nil {
		pin.Updated = now
		b.put(nkv.Key, pin)
	}
	rec := tr.rec
	var notify []Notification
	var outcome string
	switch {
	case !tr.exists:
		rec = TaskRecord{Task: ila.Task{Version: 1, State: ila.StateActive}}
	case tr.rec.NVE == nve.Name:
		// Re-registration at the serving NVE (also while a warm or cold
		// move away from it is pending: the task stays suspended).
		if rec.State == ila.StateSuspended && rec.PendingNVE == "" {
			rec.State = ila.StateActive
			rec.Version++
		}
		if rec.Locator != loc {
			rec.Locator = loc
			rec.Version++
		}
	case tr.rec.PendingNVE == nve.Name:
		// Completion of a warm or cold move at its destination.
		if rec.State == ila.StateDuplicate {
			return TaskRecord{}, fmt.Errorf("task %s/%s (%s): %w", rec.Tenant, rec.Name, id, ErrDuplicate)
		}
		notify = s.switchLocator(&rec, nve.Name, loc, now, rec.PendingMode != ModeCold)
		rec.Version++
		rec.State = ila.StateActive
		rec.PendingNVE, rec.PendingMode = "", ""
	case r.Mode == "" && inFlightFrom(rec.Previous, nve.Name, now):
		// The NVE the task just left, within the in-flight time, without
		// a move mode: a periodic re-registration that crossed the move on
		// the wire, not a claim. Taking it as one would move the task back
		// to where it no longer is. A real claim (a task attached there
		// again) carries a move mode.
		return TaskRecord{}, finalError{fmt.Errorf("task %s/%s (%s): moved from %s to %s; a registration from the previous NVE without a move mode does not move it back: %w",
			rec.Tenant, rec.Name, id, nve.Name, rec.NVE, ErrConflict)}
	default:
		// A claim of a task active elsewhere: a move.
		var done bool
		if notify, done, outcome, err = s.moveRecord(&rec, nve.Name, loc, mode, now); err != nil {
			if done {
				b.put(tr.task.Key, rec)
				if cerr := s.commit(ctx, &b, "mark task duplicate"); cerr != nil {
					return TaskRecord{}, cerr
				}
				s.countMove(outcome)
			}
			return TaskRecord{}, err
		}
		if rec.PendingNVE == nve.Name {
			// A warm or cold claim: the claimant is the destination and
			// the task has registered there, so the move is complete now
			// (the task is where it registers; leaving it suspended would
			// wait for the next re-registration).
			notify = s.switchLocator(&rec, nve.Name, loc, now, rec.PendingMode != ModeCold)
			rec.State = ila.StateActive
			rec.PendingNVE, rec.PendingMode = "", ""
		}
	}
	// Index updates: drop old entries that no longer apply.
	if tr.exists && tr.rec.Name != "" && NameKey(tr.rec.Tenant, tr.rec.Name) != NameKey(r.Tenant, r.Name) {
		b.del(NameKey(tr.rec.Tenant, tr.rec.Name))
	}
	if tr.exists && !tr.rec.MAC.IsZero() && tr.rec.MAC != r.MAC {
		b.del(MACKey(tr.rec.MAC))
	}
	rec.Domain, rec.Identifier, rec.SIR = dom.Name, id, r.SIR
	rec.Name, rec.Tenant = r.Name, r.Tenant
	rec.VNI, rec.IPv4, rec.MAC = r.VNI, r.IPv4, r.MAC
	if !r.IPv4.IsValid() {
		rec.VNI = 0
	}
	if !tr.exists {
		rec.NVE, rec.Locator = nve.Name, loc
	}
	lt := r.Lifetime
	if lt > s.cfg.MaxLifetime {
		lt = s.cfg.MaxLifetime
	}
	rec.Lifetime = ila.Duration(lt)
	rec.Expiry = time.Time{}
	if lt > 0 {
		rec.Expiry = now.Add(lt)
	}
	rec.Previous = prunePrevious(rec.Previous, now)
	rec.Updated = now
	b.put(tr.task.Key, rec)
	// Index entries are written when they do not already point here
	// (a refresh then writes the task record alone).
	if r.Name != "" {
		b.cond(tr.name)
		if !pointsAt(tr.name, tr.nameX, dom.Name, id) {
			b.put(NameKey(r.Tenant, r.Name), Index{Domain: dom.Name, Identifier: id})
		}
	}
	if !r.MAC.IsZero() {
		b.cond(tr.mac)
		if !pointsAt(tr.mac, tr.macX, dom.Name, id) {
			b.put(MACKey(r.MAC), Index{Domain: dom.Name, Identifier: id})
		}
	}
	if err := s.commit(ctx, &b, "register task "+tr.task.Key); err != nil {
		return TaskRecord{}, err
	}
	s.countMove(outcome)
	s.enqueue(ctx, notify, rec.Task)
	return rec, nil
}

// pointsAt reports whether index entry kv exists and names (domain, id).
func pointsAt(kv KV, ir indexRead, domain string, id ila.Identifier) bool {
	return kv.Revision != 0 && ir.err == nil && ir.x.Domain == domain && ir.x.Identifier == id
}

func checkMode(m string) (string, error) {
	switch m {
	case "":
		return ModeHot, nil
	case ModeHot, ModeWarm, ModeCold:
		return m, nil
	}
	return "", fmt.Errorf("move mode %q: want hot, warm or cold: %w", m, ErrInvalid)
}

// inFlightFrom reports whether nve is a previous NVE of the task whose
// in-flight time is not over.
func inFlightFrom(p []ila.Previous, nve string, now time.Time) bool {
	for _, e := range p {
		if e.NVE == nve && e.Until.After(now) {
			return true
		}
	}
	return false
}

// prunePrevious drops previous locators whose in-flight time is over.
func prunePrevious(p []ila.Previous, now time.Time) []ila.Previous {
	out := p[:0:0]
	for _, e := range p {
		if e.Until.After(now) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// switchLocator points rec at (nve, loc), keeps the old locator as an
// in-flight previous entry when inFlight is set, and returns the
// notifications for the previous NVEs.
func (s *Service) switchLocator(rec *TaskRecord, nve string, loc ila.Locator, now time.Time, inFlight bool) []Notification {
	prev := prunePrevious(rec.Previous, now)
	var notify []Notification
	seen := map[string]bool{nve: true}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			notify = append(notify, Notification{NVE: name})
		}
	}
	add(rec.NVE)
	for _, p := range prev {
		add(p.NVE)
	}
	if inFlight && rec.NVE != nve {
		prev = slices.DeleteFunc(prev, func(p ila.Previous) bool { return p.Locator == rec.Locator || p.Locator == loc })
		prev = append(prev, ila.Previous{Locator: rec.Locator, NVE: rec.NVE, Until: now.Add(s.cfg.InFlight)})
	}
	prev = slices.DeleteFunc(prev, func(p ila.Previous) bool { return p.Locator == loc })
	if len(prev) == 0 {
		prev = nil
	}
	rec.Previous = prev
	rec.NVE, rec.Locator = nve, loc
	return notify
}

// moveRecord applies a move to rec. On a refusal by flap damping it marks
// rec duplicate and returns done=true with ErrDuplicate: the caller must
// still write rec.
func (s *Service) moveRecord(rec *TaskRecord, to string, loc ila.Locator, mode string, now time.Time) (notify []Notification, done bool, outcome string, err error) {
	if rec.State == ila.StateDuplicate {
		s.c.movesRefused.Add(1)
		return nil, false, "", fmt.Errorf("move task %s/%s (%s) to %s: %w", rec.Tenant, rec.Name, rec.Identifier, to, ErrDuplicate)
	}
	if rec.NVE == to && rec.PendingNVE == "" {
		return nil, false, "", fmt.Errorf("move task %s/%s (%s): already on nve %s: %w", rec.Tenant, rec.Name, rec.Identifier, to, ErrInvalid)
	}
	cut := now.Add(-s.cfg.FlapWindow)
	rec.Moves = slices.DeleteFunc(rec.Moves, func(t time.Time) bool { return !t.After(cut) })
	rec.Moves = append(rec.Moves, now)
	rec.Version++
	rec.Updated = now
	if len(rec.Moves) > s.cfg.FlapMoves {
		rec.State = ila.StateDuplicate
		rec.PendingNVE, rec.PendingMode = "", ""
		return nil, true, "duplicate", fmt.Errorf("move task %s/%s (%s) to %s: %d moves within %s: %w", rec.Tenant, rec.Name, rec.Identifier, to, len(rec.Moves), s.cfg.FlapWindow, ErrDuplicate)
	}
	switch mode {
	case ModeHot:
		notify = s.switchLocator(rec, to, loc, now, true)
		rec.State = ila.StateActive
		rec.PendingNVE, rec.PendingMode = "", ""
	default:
		rec.State = ila.StateSuspended
		rec.PendingNVE, rec.PendingMode = to, mode
		if rec.NVE == to {
			// Back to where it was before the suspension.
			rec.State = ila.StateActive
			rec.PendingNVE, rec.PendingMode = "", ""
		}
	}
	return notify, false, mode, nil
}

// countMove counts a committed move outcome of moveRecord.
func (s *Service) countMove(outcome string) {
	switch outcome {
	case ModeHot:
		s.c.movesHot.Add(1)
	case ModeWarm:
		s.c.movesWarm.Add(1)
	case ModeCold:
		s.c.movesCold.Add(1)
	case "duplicate":
		s.c.dups.Add(1)
		s.c.movesRefused.Add(1)
	}
}

// MoveRequest asks to move a task, named by tenant/name or by domain and
// identifier, to another NVE.
type MoveRequest struct {
	Tenant, Name string
	Domain       string
	Identifier   ila.Identifier
	To           string
	Locator      ila.Locator // 0: the destination's locator for the domain
	Mode         string      // hot (default), warm, cold
}

// Move moves a task. Hot: make before break; the mapping switches to the
// destination atomically (version+1) and the previous locator stays as an
// in-flight entry for Config.InFlight; previous NVEs are notified. Warm
// and cold: the task is suspended until it registers at the destination.
// A concurrent change of the task makes Move fail with ErrConflict (exactly
// one of two concurrent moves wins). More than FlapMoves moves within
// FlapWindow mark the task duplicate (ErrDuplicate).
func (s *Service) Move(ctx context.Context, m MoveRequest) (TaskRecord, error) {
	mode, err := checkMode(m.Mode)
	if err != nil {
		return TaskRecord{}, err
	}
	rec, tkv, err := s.resolve(ctx, m.Tenant, m.Name, m.Domain, m.Identifier)
	if err != nil {
		return TaskRecord{}, err
	}
	nve, nkv, err := s.getNVE(ctx, m.To)
	if err != nil {
		return TaskRecord{}, err
	}
	_, dkv, err := s.getDomain(ctx, rec.Domain)
	if err != nil {
		return TaskRecord{}, err
	}
	loc, pin, err := pickLocator(nve, m.Locator, rec.Domain)
	if err != nil {
		return TaskRecord{}, err
	}
	now := s.cfg.Now().UTC()
	var b txnBuilder
	b.cond(tkv)
	b.cond(nkv)
	b.cond(dkv)
	if pin != nil {
		pin.Updated = now
		b.put(nkv.Key, pin)
	}
	notify, done, outcome, err := s.moveRecord(&rec, nve.Name, loc, mode, now)
	if err != nil && !done {
		return TaskRecord{}, err
	}
	rec.Previous = prunePrevious(rec.Previous, now)
	b.put(tkv.Key, rec)
	if cerr := s.commit(ctx, &b, "move task "+tkv.Key); cerr != nil {
		return TaskRecord{}, cerr
	}
	s.countMove(outcome)
	if err != nil {
		return rec, err
	}
	s.enqueue(ctx, notify, rec.Task)
	return rec, nil
}

// resolve finds a task by tenant/name, or by domain and identifier.
func (s *Service) resolve(ctx context.Context, tenant, name, domain string, id ila.Identifier) (TaskRecord, KV, error) {
	if name != "" {
		if tenant == "" {
			tenant = "default"
		}
		if err := CheckName("tenant", tenant); err != nil {
			return TaskRecord{}, KV{}, err
		}
		if err := CheckName("task", name); err != nil {
			return TaskRecord{}, KV{}, err
		}
		kvs, err := s.store.Get(ctx, NameKey(tenant, name))
		if err != nil {
			return TaskRecord{}, KV{}, s.storeErr(fmt.Errorf("get task %s/%s: %w", tenant, name, err))
		}
		if kvs[0].Revision == 0 {
			return TaskRecord{}, KV{}, fmt.Errorf("task %s/%s: %w", tenant, name, ErrNotFound)
		}
		x, err := DecodeIndex(kvs[0].Key, kvs[0].Value)
		if err != nil {
			s.malformed(kvs[0], err)
			return TaskRecord{}, KV{}, fmt.Errorf("task %s/%s: %w", tenant, name, ErrNotFound)
		}
		rec, kv, err := s.resolve(ctx, "", "", x.Domain, x.Identifier)
		if err == nil && (rec.Tenant != tenant || rec.Name != name) {
			return TaskRecord{}, KV{}, fmt.Errorf("task %s/%s: stale name index: %w", tenant, name, ErrNotFound)
		}
		return rec, kv, err
	}
	if domain == "" {
		return TaskRecord{}, KV{}, fmt.Errorf("task: a name or a domain and identifier are required: %w", ErrInvalid)
	}
	if err := CheckName("domain", domain); err != nil {
		return TaskRecord{}, KV{}, err
	}
	key := TaskKey(domain, id)
	kvs, err := s.store.Get(ctx, key)
	if err != nil {
		return TaskRecord{}, KV{}, s.storeErr(fmt.Errorf("get task %s: %w", key, err))
	}
	if kvs[0].Revision == 0 {
		return TaskRecord{}, kvs[0], fmt.Errorf("task %s/%s: %w", domain, id, ErrNotFound)
	}
	rec, err := DecodeTask(kvs[0].Key, kvs[0].Value)
	if err != nil {
		s.malformed(kvs[0], err)
		return TaskRecord{}, kvs[0], fmt.Errorf("task %s/%s: %w", domain, id, ErrNotFound)
	}
	return rec, kvs[0], nil
}

// Task returns a task by tenant/name.
func (s *Service) Task(ctx context.Context, tenant, name string) (TaskRecord, error) {
	rec, _, err := s.resolve(ctx, tenant, name, "", 0)
	return rec, err
}

// TaskByID returns a task by domain and identifier.
func (s *Service) TaskByID(ctx context.Context, domain string, id ila.Identifier) (TaskRecord, error) {
	rec, _, err := s.resolve(ctx, "", "", domain, id)
	return rec, err
}

// Tasks lists every task, skipping malformed values.
func (s *Service) Tasks(ctx context.Context) ([]TaskRecord, error) {
	recs, _, err := s.tasks(ctx)
	return recs, err
}

func (s *Service) tasks(ctx context.Context) ([]TaskRecord, []KV, error) {
	kvs, _, err := s.store.List(ctx, MapPrefix)
	if err != nil {
		return nil, nil, s.storeErr(fmt.Errorf("list tasks: %w", err))
	}
	var out []TaskRecord
	var okv []KV
	for _, kv := range kvs {
		rec, err := DecodeTask(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		out = append(out, rec)
		okv = append(okv, kv)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Name < out[j].Name
	})
	return out, okv, nil
}

// DeregisterRequest names a task to remove. NVE, when set, must be the
// serving (or pending) NVE: an NVE cannot deregister another's task.
type DeregisterRequest struct {
	Tenant, Name string
	Domain       string
	Identifier   ila.Identifier
	NVE          string
}

// Deregister removes a task and its index entries.
func (s *Service) Deregister(ctx context.Context, d DeregisterRequest) error {
	for attempt := 0; ; attempt++ {
		err := s.deregister(ctx, d)
		if errors.Is(err, ErrConflict) && attempt < 4 {
			continue
		}
		if err == nil {
			s.c.deregs.Add(1)
		}
		return err
	}
}

func (s *Service) deregister(ctx context.Context, d DeregisterRequest) error {
	rec, tkv, err := s.resolve(ctx, d.Tenant, d.Name, d.Domain, d.Identifier)
	if err != nil {
		return err
	}
	if d.NVE != "" && d.NVE != rec.NVE && d.NVE != rec.PendingNVE {
		return fmt.Errorf("deregister task %s/%s (%s): served by nve %s, not %s: %w", rec.Tenant, rec.Name, rec.Identifier, rec.NVE, d.NVE, ErrForbidden)
	}
	b, err := s.deleteTask(ctx, rec, tkv)
	if err != nil {
		return err
	}
	return s.commit(ctx, b, "deregister task "+tkv.Key)
}

// deleteTask builds the transaction removing a task and the index entries
// that point at it.
func (s *Service) deleteTask(ctx context.Context, rec TaskRecord, tkv KV) (*txnBuilder, error) {
	var b txnBuilder
	b.cond(tkv)
	b.del(tkv.Key)
	var keys []string
	if rec.Name != "" {
		keys = append(keys, NameKey(rec.Tenant, rec.Name))
	}
	if !rec.MAC.IsZero() {
		keys = append(keys, MACKey(rec.MAC))
	}
	if len(keys) == 0 {
		return &b, nil
	}
	kvs, err := s.store.Get(ctx, keys...)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("get indexes of %s: %w", tkv.Key, err))
	}
	for _, kv := range kvs {
		if kv.Revision == 0 {
			continue
		}
		x, err := DecodeIndex(kv.Key, kv.Value)
		if err == nil && (x.Domain != rec.Domain || x.Identifier != rec.Identifier) {
			continue // points at another task now
		}
		b.cond(kv)
		b.del(kv.Key)
	}
	return &b, nil
}

// ClearDuplicate returns a task marked duplicate by flap damping to the
// active state and forgets its move history.
func (s *Service) ClearDuplicate(ctx context.Context, tenant, name, domain string, id ila.Identifier) (TaskRecord, error) {
	rec, tkv, err := s.resolve(ctx, tenant, name, domain, id)
	if err != nil {
		return TaskRecord{}, err
	}
	if rec.State != ila.StateDuplicate {
		return rec, fmt.Errorf("task %s/%s (%s) is %s, not duplicate: %w", rec.Tenant, rec.Name, rec.Identifier, rec.State, ErrInvalid)
	}
	rec.State = ila.StateActive
	rec.Moves = nil
	rec.Version++
	rec.Updated = s.cfg.Now().UTC()
	var b txnBuilder
	b.cond(tkv)
	b.put(tkv.Key, rec)
	if err := s.commit(ctx, &b, "clear duplicate "+tkv.Key); err != nil {
		return TaskRecord{}, err
	}
	return rec, nil
}

// ---- sweeper and notifications ----

// Sweep runs one pass of the lifetime sweeper: it deletes tasks whose
// lifetime is over (with their index entries) and prunes previous locators
// whose in-flight time is over. It returns the number of expired tasks.
// A task changed concurrently is left for the next pass.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	recs, kvs, err := s.tasks(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now().UTC()
	expired := 0
	for i, rec := range recs {
		exp, err := s.sweepOne(ctx, rec, kvs[i], now)
		if err != nil {
			return expired, err
		}
		if exp {
			expired++
		}
	}
	return expired, nil
}

// sweepOne expires rec or prunes its previous locators if due. A task
// changed concurrently is left alone.
func (s *Service) sweepOne(ctx context.Context, rec TaskRecord, kv KV, now time.Time) (bool, error) {
	switch {
	case !rec.Expiry.IsZero() && !rec.Expiry.After(now):
		b, err := s.deleteTask(ctx, rec, kv)
		if err != nil {
			return false, err
		}
		if err := s.commit(ctx, b, "expire task "+kv.Key); err != nil {
			if errors.Is(err, ErrConflict) {
				return false, nil
			}
			return false, err
		}
		s.c.expiries.Add(1)
		s.log.Info("task expired", "domain", rec.Domain, "identifier", rec.Identifier, "tenant", rec.Tenant, "name", rec.Name, "nve", rec.NVE)
		return true, nil
	case len(rec.Previous) > 0 && len(prunePrevious(rec.Previous, now)) != len(rec.Previous):
		rec.Previous = prunePrevious(rec.Previous, now)
		var b txnBuilder
		b.cond(kv)
		b.put(kv.Key, rec)
		if err := s.commit(ctx, &b, "prune previous of "+kv.Key); err != nil && !errors.Is(err, ErrConflict) {
			return false, err
		}
	}
	return false, nil
}

// nextDue returns when the sweeper has something to do for t: its expiry
// or the earliest in-flight deadline.
func nextDue(t ila.Task) (time.Time, bool) {
	var due time.Time
	if !t.Expiry.IsZero() {
		due = t.Expiry
	}
	for _, p := range t.Previous {
		if due.IsZero() || p.Until.Before(due) {
			due = p.Until
		}
	}
	return due, !due.IsZero()
}

// dueSet tracks, from the store's events, when each task is next due.
type dueSet struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (d *dueSet) event(ev ila.Event) {
	if ev.Task == nil {
		return
	}
	key := TaskKey(ev.Task.Domain, ev.Task.Identifier)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]time.Time)
	}
	due, ok := nextDue(*ev.Task)
	if ev.Type == ila.EventTaskDelete || !ok {
		delete(d.m, key)
		return
	}
	d.m[key] = due
}

func (d *dueSet) due(now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys []string
	for k, t := range d.m {
		if !t.After(now) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// sweepDue sweeps the tasks the event feed says are due.
func (s *Service) sweepDue(ctx context.Context, d *dueSet) error {
	now := s.cfg.Now().UTC()
	keys := d.due(now)
	for i := 0; i < len(keys); i += 64 {
		batch := keys[i:min(i+64, len(keys))]
		kvs, err := s.store.Get(ctx, batch...)
		if err != nil {
			return s.storeErr(fmt.Errorf("get due tasks: %w", err))
		}
		for _, kv := range kvs {
			if kv.Revision == 0 {
				continue
			}
			rec, err := DecodeTask(kv.Key, kv.Value)
			if err != nil {
				s.malformed(kv, err)
				continue
			}
			if _, err := s.sweepOne(ctx, rec, kv, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// enqueue queues notifications of previous NVEs, dropping them (counted)
// when the queue is full.
func (s *Service) enqueue(ctx context.Context, ns []Notification, t ila.Task) {
	if s.cfg.Notifier == nil || len(ns) == 0 {
		return
	}
	for _, n := range ns {
		rec, _, err := s.getNVE(ctx, n.NVE)
		if err != nil || !rec.RegAddr.IsValid() {
			continue
		}
		n.To, n.Task = rec.RegAddr, t
		select {
		case s.notify <- n:
		default:
			s.c.notifyDropped.Add(1)
		}
	}
}

// Run runs the lifetime sweeper and the notification sender until ctx is
// cancelled. It returns nil on cancellation.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case n := <-s.notify:
				nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := s.cfg.Notifier.Notify(nctx, n)
				cancel()
				if err != nil {
					s.c.notifyFailed.Add(1)
					s.log.Warn("notify previous nve", "nve", n.NVE, "addr", n.To, "identifier", n.Task.Identifier, "locator", n.Task.Locator, "err", err)
				} else {
					s.c.notifySent.Add(1)
				}
			}
		}
	}()
	var due *dueSet
	var feedDown atomic.Bool
	if s.cfg.Events != nil {
		due = &dueSet{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.cfg.Events(ctx, due.event)
			if ctx.Err() == nil {
				feedDown.Store(true)
				s.log.Warn("sweeper event feed ended; sweeping by full lists", "err", err)
			}
		}()
	}
	defer wg.Wait()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	lastFull := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			var err error
			if due != nil && !feedDown.Load() && time.Since(lastFull) < s.cfg.FullSweepInterval {
				err = s.sweepDue(ctx, due)
			} else {
				_, err = s.Sweep(ctx)
				lastFull = time.Now()
			}
			if err != nil && ctx.Err() == nil {
				s.log.Warn("lifetime sweep", "err", err)
			}
		}
	}
}
