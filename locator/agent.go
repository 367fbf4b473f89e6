package locator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"golang.org/x/sync/errgroup"
)

// key is a datapath table key.
type key struct {
	sir ila.SIRPrefix
	id  ila.Identifier
}

func keyOf(a netip.Addr) key { return key{ila.SIRPrefixOf(a), ila.IdentifierOf(a)} }

// tkey is a store key.
type tkey struct {
	domain string
	id     ila.Identifier
}

type storeTask struct {
	t   ila.Task
	gen uint64
}

type storeDomain struct {
	d   ila.Domain
	gen uint64
}

type localTask struct {
	spec     TaskSpec
	key      key
	port     Port
	static   bool // from the config file (not persisted in the state file)
	restored bool // from the state file of a previous run

	// confirmed: the store has shown the task at this NVE since it was
	// attached, so a later record elsewhere is a move away.
	confirmed bool
	cancel    context.CancelFunc
	done      chan struct{}
	first     chan error // first registration outcome, buffered
	kick      chan struct{}
	granted   time.Duration
	lastErr   string
	regAt     time.Time
}

type inflight struct {
	m     ila.Mapping
	until time.Time
	timer *time.Timer
}

// Agent is the node agent of one NVE. Create it with New and run it with
// Run; Attach, Detach, Notify and Tasks may be called while it runs.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	runCtx     context.Context // the Run context, for registration loops
	gen        uint64
	synced     bool
	rev        int64
	domains    map[string]storeDomain
	bySIR      map[ila.SIRPrefix]string
	tasks      map[tkey]storeTask
	installed  map[key]ila.Mapping
	wanted     map[key]time.Time // pull mode working set: when each entry was pulled
	locals     map[string]*localTask
	localByKey map[key]*localTask
	inflight   map[key]*inflight
	locAdded   map[string]ila.Locator
	missLast   map[key]time.Time
	tokens     float64
	tokensAt   time.Time
	st         Stats

	wg sync.WaitGroup // registration loops and port cleanups
}

// Stats are the agent's counters.
type Stats struct {
	Mappings, Locals, InFlight, StoreTasks int
	Synced                                 bool
	Revision                               int64
	Events, Syncs, WatchErrors             uint64
	// LastLag is the time from the last task record's commit (its Updated
	// field) to its application to the datapath.
	LastLag                                      time.Duration
	Misses, MissLookups, MissDropped, MissErrors uint64
	RegAccepted, RegRejected, RegErrors          uint64
	Deregistrations                              uint64
	MovesAway, Notifications, InFlightExpired    uint64
	DatapathErrors                               uint64
	// Pulled is the pull mode working set (entries installed on a miss);
	// PullEvicted counts those removed after PullTTL or beyond PullMax.
	Pulled      int
	PullEvicted uint64
}

// New checks the configuration and returns an agent.
func New(cfg Config) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("locator config: %w", err)
	}
	return &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		domains:    map[string]storeDomain{},
		bySIR:      map[ila.SIRPrefix]string{},
		tasks:      map[tkey]storeTask{},
		installed:  map[key]ila.Mapping{},
		wanted:     map[key]time.Time{},
		locals:     map[string]*localTask{},
		localByKey: map[key]*localTask{},
		inflight:   map[key]*inflight{},
		locAdded:   map[string]ila.Locator{},
		missLast:   map[key]time.Time{},
	}, nil
}

// Run attaches the configured tasks, adopts what the datapath already
// holds (nothing is flushed), follows the mapping source and answers cache
// misses until ctx is done. It returns nil on cancellation. Datapath state
// is left in place on return so that the next run adopts it.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.runCtx != nil {
		a.mu.Unlock()
		return errors.New("locator agent: already running")
	}
	a.runCtx = ctx
	// Adopt the datapath's mappings: later upserts of the same value are
	// skipped and the first sync removes what the store no longer has.
	if err := a.cfg.Datapath.Mappings(func(m ila.Mapping) bool {
		k := key{m.SIR, m.Identifier}
		a.installed[k] = m
		if a.cfg.Mode == ModePull {
			a.wanted[k] = a.cfg.Now()
		}
		return true
	}); err != nil {
		a.log.Warn("list datapath mappings", "err", err)
	}
	a.adoptInFlight()
	a.mu.Unlock()

	saved := a.loadState() // before attaching rewrites the file
	specs := slices.Clone(a.cfg.Tasks)
	for i := range specs {
		if err := a.attach(ctx, specs[i], true, false, false); err != nil && !errors.Is(err, ErrExists) {
			a.log.Error("attach configured task", "task", specs[i].Name, "iface", specs[i].Iface, "err", err)
		}
	}
	for _, s := range saved {
		if err := a.attach(ctx, s, false, true, false); err != nil && !errors.Is(err, ErrExists) {
			a.log.Error("attach task from state file", "task", s.Name, "iface", s.Iface, "err", err)
		}
	}
	a.pruneLocals()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.watchLoop(gctx) })
	if a.cfg.Misses != nil {
		g.Go(func() error { return a.missLoop(gctx) })
	}
	if a.cfg.Mode == ModePull {
		g.Go(func() error { return a.pullLoop(gctx) })
	}
	err := g.Wait()
	a.mu.Lock()
	for _, f := range a.inflight {
		if f.timer != nil {
			f.timer.Stop()
		}
	}
	a.mu.Unlock()
	a.wg.Wait()
	return err
}

func (a *Agent) watchLoop(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		a.mu.Lock()
		a.gen++
		a.synced = false
		a.mu.Unlock()
		start := time.Now()
		err := a.cfg.Source.Watch(ctx, a.Apply)
		if ctx.Err() != nil {
			return nil
		}
		a.mu.Lock()
		a.st.WatchErrors++
		a.mu.Unlock()
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		a.log.Warn("mapping watch ended, forwarding continues with the last state; retrying", "err", err, "retry", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Apply applies one event of the mapping source. It is exported for
// sources that push events themselves; Run calls it for its own source.
func (a *Agent) Apply(ev ila.Event) {
	a.apply(ev)
	if a.cfg.OnEvent != nil {
		a.cfg.OnEvent(ev)
	}
}

func (a *Agent) apply(ev ila.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Events++
	if ev.Revision > a.rev {
		a.rev = ev.Revision
	}
	switch ev.Type {
	case ila.EventDomainUpsert:
		if ev.Domain != nil {
			a.domainUpsert(*ev.Domain)
		}
	case ila.EventDomainDelete:
		if ev.Domain != nil {
			a.domainDelete(ev.Domain.Name)
		}
	case ila.EventTaskUpsert:
		if ev.Task != nil {
			a.taskUpsert(*ev.Task)
		}
	case ila.EventTaskDelete:
		if ev.Task != nil {
			a.taskDelete(*ev.Task)
		}
	case ila.EventNVEUpsert:
		if ev.NVE != nil && ev.NVE.Name == a.cfg.Node {
			a.checkNVE(*ev.NVE)
		}
	case ila.EventSynced:
		a.sync()
	}
}

func (a *Agent) checkNVE(n ila.NVE) {
	for _, l := range a.cfg.Locators {
		if !slices.Contains(n.Locators, l.Locator) {
			a.log.Warn("configured locator not in this NVE's store record", "locator", l.Locator, "nve", n.Name)
		}
	}
}

func (a *Agent) dpErr(op string, err error, attrs ...any) {
	if err == nil {
		return
	}
	a.st.DatapathErrors++
	a.log.Error("datapath "+op, append(attrs, "err", err)...)
}

// locatorFor returns this NVE's locator in a domain.
func (a *Agent) locatorFor(domain string) (ila.Locator, bool) {
	var def ila.Locator
	for _, l := range a.cfg.Locators {
		if l.Domain == domain {
			return l.Locator, true
		}
		if l.Domain == "" {
			def = l.Locator
		}
	}
	return def, def != 0
}

func (a *Agent) domainUpsert(d ila.Domain) {
	if err := d.Validate(); err != nil {
		a.log.Error("ignoring invalid domain from the store", "domain", d.Name, "err", err)
		return
	}
	old, had := a.domains[d.Name]
	a.domains[d.Name] = storeDomain{d, a.gen}
	if had && old.d == d {
		return
	}
	if had && old.d.SIR != d.SIR {
		delete(a.bySIR, old.d.SIR)
	}
	a.bySIR[d.SIR] = d.Name
	a.dpErr("add domain", a.cfg.Datapath.AddDomain(d), "domain", d.Name)
	if loc, ok := a.locatorFor(d.Name); ok {
		a.dpErr("add locator", a.cfg.Datapath.AddLocator(loc, d), "locator", loc, "domain", d.Name)
		a.locAdded[d.Name] = loc
	}
	if had {
		a.reconcileAll()
		return
	}
	for tk := range a.tasks {
		if tk.domain == d.Name {
			a.syncKey(key{d.SIR, tk.id})
		}
	}
}

func (a *Agent) domainDelete(name string) {
	d, ok := a.domains[name]
	if !ok {
		return
	}
	delete(a.domains, name)
	delete(a.bySIR, d.d.SIR)
	for tk := range a.tasks {
		if tk.domain == name {
			a.syncKey(key{d.d.SIR, tk.id})
		}
	}
}

func (a *Agent) taskUpsert(t ila.Task) {
	a.tasks[tkey{t.Domain, t.Identifier}] = storeTask{t, a.gen}
	if !t.Updated.IsZero() {
		a.st.LastLag = a.cfg.Now().Sub(t.Updated)
	}
	d, ok := a.domains[t.Domain]
	if !ok {
		return // installed when the domain arrives
	}
	k := key{d.d.SIR, t.Identifier}
	a.syncKey(k)
	if lt := a.localByKey[k]; lt != nil {
		switch {
		case t.NVE == a.cfg.Node:
			lt.confirmed = true
		case lt.confirmed && t.State != ila.StateSuspended && t.Locator != 0:
			a.moveAway(lt, t.Mapping(d.d), a.inFlightUntil(t))
		}
	} else if f := a.inflight[k]; f != nil && t.NVE != a.cfg.Node && t.Locator != 0 && t.Locator != f.m.Locator {
		// Moved again while in flight: follow it.
		f.m = t.Mapping(d.d)
		a.dpErr("update in-flight", a.cfg.Datapath.UpsertInFlight(f.m, f.until), "sir", f.m.SIRAddr(), "locator", f.m.Locator)
	}
}

func (a *Agent) taskDelete(t ila.Task) {
	tk := tkey{t.Domain, t.Identifier}
	if _, ok := a.tasks[tk]; !ok {
		return
	}
	delete(a.tasks, tk)
	if d, ok := a.domains[t.Domain]; ok {
		a.syncKey(key{d.d.SIR, t.Identifier})
	}
}

// inFlightUntil is when the previous NVE (this one) stops redirecting.
func (a *Agent) inFlightUntil(t ila.Task) time.Time {
	now := a.cfg.Now()
	for _, p := range t.Previous {
		if p.NVE == a.cfg.Node && p.Until.After(now) {
			return p.Until
		}
	}
	return now.Add(time.Duration(a.cfg.InFlight))
}

// desired is the mapping the datapath should hold at k.
func (a *Agent) desired(k key) (ila.Mapping, bool) {
	dn, ok := a.bySIR[k.sir]
	if !ok {
		return ila.Mapping{}, false
	}
	st, ok := a.tasks[tkey{dn, k.id}]
	if !ok || st.t.Locator == 0 || st.t.State == ila.StateSuspended {
		return ila.Mapping{}, false
	}
	if _, pulled := a.wanted[k]; a.cfg.Mode == ModePull && !pulled && a.localByKey[k] == nil && a.inflight[k] == nil {
		return ila.Mapping{}, false
	}
	m := st.t.Mapping(a.domains[dn].d)
	if err := m.Validate(); err != nil {
		a.log.Error("ignoring mapping that cannot translate", "sir", m.SIRAddr(), "err", err)
		return ila.Mapping{}, false
	}
	return m, true
}

// syncKey makes the datapath's mapping at k the desired one.
func (a *Agent) syncKey(k key) {
	m, want := a.desired(k)
	cur, have := a.installed[k]
	switch {
	case want && (!have || cur != m):
		if err := a.cfg.Datapath.UpsertMapping(m); err != nil {
			a.dpErr("upsert mapping", err, "sir", m.SIRAddr(), "locator", m.Locator)
			return
		}
		a.installed[k] = m
	case !want && have:
		if err := a.cfg.Datapath.DeleteMapping(k.sir, k.id); err != nil {
			a.dpErr("delete mapping", err, "sir", k.sir.Addr(k.id))
			return
		}
		delete(a.installed, k)
	}
}

// sync ends a (re)list: what was not listed in this generation is gone,
// and the datapath converges to exactly the store's state.
func (a *Agent) sync() {
	for tk, st := range a.tasks {
		if st.gen < a.gen {
			delete(a.tasks, tk)
		}
	}
	for n, d := range a.domains {
		if d.gen < a.gen {
			a.domainDelete(n)
		}
	}
	a.reconcileAll()
	a.synced = true
	a.st.Syncs++
}

// reconcileAll re-reads the datapath's table and fixes every difference.
func (a *Agent) reconcileAll() {
	actual := map[key]ila.Mapping{}
	if err := a.cfg.Datapath.Mappings(func(m ila.Mapping) bool {
		actual[key{m.SIR, m.Identifier}] = m
		return true
	}); err != nil {
		a.dpErr("list mappings", err)
		actual = a.installed // best effort: trust our own record
	}
	a.installed = actual
	keys := map[key]bool{}
	for k := range actual {
		keys[k] = true
	}
	for tk := range a.tasks {
		if d, ok := a.domains[tk.domain]; ok {
			keys[key{d.d.SIR, tk.id}] = true
		}
	}
	for k := range keys {
		a.syncKey(k)
	}
	for k := range a.wanted {
		if _, ok := a.desired(k); !ok && a.bySIR[k.sir] != "" {
			if _, ok := a.tasks[tkey{a.bySIR[k.sir], k.id}]; !ok {
				delete(a.wanted, k) // gone from the store
			}
		}
	}
}

// moveAway turns a local task that now lives elsewhere into an in-flight
// redirect to m.Locator until the deadline (make before break).
func (a *Agent) moveAway(lt *localTask, m ila.Mapping, until time.Time) {
	k := lt.key
	a.st.MovesAway++
	a.log.Info("task moved away: redirecting packets in flight", "task", lt.spec.Name, "sir", lt.spec.SIR, "locator", m.Locator, "until", until)
	a.setInFlight(k, m, until)
	a.dpErr("delete local", a.cfg.Datapath.DeleteLocal(k.sir, k.id), "sir", lt.spec.SIR)
	done := lt.done
	a.forgetLocal(lt)
	a.syncKey(k)
	a.saveState()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		<-done
		a.releasePort(lt)
	}()
}

func (a *Agent) setInFlight(k key, m ila.Mapping, until time.Time) {
	if err := a.cfg.Datapath.UpsertInFlight(m, until); err != nil {
		a.dpErr("upsert in-flight", err, "sir", m.SIRAddr(), "locator", m.Locator)
	}
	if old := a.inflight[k]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	f := &inflight{m: m, until: until}
	f.timer = time.AfterFunc(until.Sub(a.cfg.Now()), func() { a.expire(k, f) })
	a.inflight[k] = f
}

func (a *Agent) expire(k key, f *inflight) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inflight[k] != f {
		return
	}
	delete(a.inflight, k)
	a.st.InFlightExpired++
	a.dpErr("delete in-flight", a.cfg.Datapath.DeleteInFlight(k.sir, k.id), "sir", k.sir.Addr(k.id))
	a.syncKey(k)
}

// InFlightLister is implemented by datapaths that can list their in-flight
// entries, so that a restarted agent expires those it inherits.
type InFlightLister interface {
	InFlights(fn func(m ila.Mapping, until time.Time) bool) error
}

// LocalLister is implemented by datapaths that can list local entries, so
// that a restarted agent removes those of tasks no longer attached.
type LocalLister interface {
	Locals(fn func(Local) bool) error
}

func (a *Agent) adoptInFlight() {
	il, ok := a.cfg.Datapath.(InFlightLister)
	if !ok {
		return
	}
	type e struct {
		m     ila.Mapping
		until time.Time
	}
	var all []e
	if err := il.InFlights(func(m ila.Mapping, until time.Time) bool {
		all = append(all, e{m, until})
		return true
	}); err != nil {
		a.log.Warn("list in-flight entries", "err", err)
	}
	for _, x := range all {
		k := key{x.m.SIR, x.m.Identifier}
		f := &inflight{m: x.m, until: x.until}
		f.timer = time.AfterFunc(x.until.Sub(a.cfg.Now()), func() { a.expire(k, f) })
		a.inflight[k] = f
	}
}

// pruneLocals removes local entries inherited from a previous run whose
// task is no longer attached.
func (a *Agent) pruneLocals() {
	ll, ok := a.cfg.Datapath.(LocalLister)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var stale []key
	if err := ll.Locals(func(l Local) bool {
		k := key{l.SIR, l.Identifier}
		if a.localByKey[k] == nil {
			stale = append(stale, k)
		}
		return true
	}); err != nil {
		a.log.Warn("list local entries", "err", err)
		return
	}
	for _, k := range stale {
		a.log.Info("removing local entry of a task no longer attached", "sir", k.sir.Addr(k.id))
		a.dpErr("delete local", a.cfg.Datapath.DeleteLocal(k.sir, k.id), "sir", k.sir.Addr(k.id))
	}
}

// Notify handles the mapping service's authenticated notice that the task
// with SIR address sir now lives at locator loc on NVE nve: if it was local
// here, its entry becomes an in-flight redirect at once, without waiting
// for the watch. It reports whether the task was local.
func (a *Agent) Notify(sir netip.Addr, loc ila.Locator, nve string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Notifications++
	k := keyOf(sir)
	dn, ok := a.bySIR[k.sir]
	if !ok {
		return false, fmt.Errorf("move notification for %s: no known domain holds it", sir)
	}
	if nve == a.cfg.Node {
		return false, nil
	}
	m := ila.Mapping{SIR: k.sir, Identifier: k.id, Locator: loc, Csum: a.domains[dn].d.Csum}
	if err := m.Validate(); err != nil {
		return false, fmt.Errorf("move notification for %s: %w", sir, err)
	}
	lt := a.localByKey[k]
	if lt == nil {
		if f := a.inflight[k]; f != nil && f.m.Locator != loc {
			f.m = m
			a.dpErr("update in-flight", a.cfg.Datapath.UpsertInFlight(m, f.until), "sir", sir, "locator", loc)
		}
		return false, nil
	}
	// Point our own senders at the new place too, ahead of the watch: the
	// cached record follows the notice until the watch overwrites it.
	tk := tkey{dn, k.id}
	st, ok := a.tasks[tk]
	if !ok {
		st = storeTask{t: ila.Task{Domain: dn, Identifier: k.id, SIR: sir, State: ila.StateActive}, gen: a.gen}
	}
	st.t.Locator, st.t.NVE = loc, nve
	a.tasks[tk] = st
	a.moveAway(lt, m, a.cfg.Now().Add(time.Duration(a.cfg.InFlight)))
	return true, nil
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	s.Mappings, s.Locals, s.InFlight, s.StoreTasks = len(a.installed), len(a.locals), len(a.inflight), len(a.tasks)
	s.Synced, s.Revision = a.synced, a.rev
	s.Pulled = len(a.wanted)
	return s
}

// loadState reads the tasks attached through the API by a previous run.
func (a *Agent) loadState() []TaskSpec {
	if a.cfg.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(a.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		a.log.Error("read state file", "path", a.cfg.StateFile, "err", err)
		return nil
	}
	var specs []TaskSpec
	if err := json.Unmarshal(b, &specs); err != nil {
		a.log.Error("parse state file", "path", a.cfg.StateFile, "err", err)
		return nil
	}
	return specs
}

// saveState records the API-attached tasks; a.mu is held.
func (a *Agent) saveState() {
	if a.cfg.StateFile == "" {
		return
	}
	specs := []TaskSpec{}
	for _, lt := range a.locals {
		if !lt.static {
			specs = append(specs, lt.spec)
		}
	}
	slices.SortFunc(specs, func(x, y TaskSpec) int {
		if x.Name < y.Name {
			return -1
		}
		if x.Name > y.Name {
			return 1
		}
		return 0
	})
	b, _ := json.MarshalIndent(specs, "", "  ")
	tmp := a.cfg.StateFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(a.cfg.StateFile), 0o755); err == nil {
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, a.cfg.StateFile)
		}
		if err != nil {
			a.log.Error("write state file", "path", a.cfg.StateFile, "err", err)
		}
	}
}
