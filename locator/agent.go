package locator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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

// storeTask is a task of the store. t is shared with the event that
// delivered it and never written through (a change stores a new one): a
// copy of every record of a million-task store cost a second of the
// start and a quarter of the garbage collector's work.
type storeTask struct {
	t   *ila.Task
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
	// suspended: the local entry is marked suspended (see suspend.go).
	suspended bool
	cancel    context.CancelFunc
	done      chan struct{}
	first     chan error // first registration outcome, buffered
	kick      chan struct{}
	granted   time.Duration
	lastErr   string
	regAt     time.Time
	mig       *migration // prepare/commit bookkeeping
	// wasStandby: attached in standby or prepared, so its commit claims
	// a task another NVE may host; standbyOK: a standby registration of
	// it was accepted, which is what justifies that claim at mapsrv
	// (docs/registration.md section 7.4).
	wasStandby, standbyOK bool
	// standbySent: a standby registration of it was sent (its answer may
	// have been lost): an abort withdraws the standby role then too.
	standbySent bool
	// reassert: the store shows the task on another NVE after a move no
	// mapping service justified, while its port is alive here: the
	// registration loop claims it back (reassert.go).
	reassert bool
	// claimed: a registration of the task as active here (not standby)
	// was accepted since it was attached or committed here. A commit not
	// claimed yet may still be aborted (Abort).
	claimed bool
	// handover: the source side of a migration (Handover).
	handover *handover
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

	mu      sync.Mutex
	runCtx  context.Context // the Run context, for registration loops
	gen     uint64
	synced  bool
	rev     int64
	applied int64 // the revision the datapath has applied (where.go)
	// adopted: installed holds the table as Run read it (and the writes
	// since): the first reconcileAll need not read it again.
	adopted   bool
	domains   map[string]storeDomain
	bySIR     map[ila.SIRPrefix]string
	clashing  map[string]storeDomain // domains refused: their SIR prefix is another's (domainclash.go)
	tasks     map[tkey]storeTask
	installed map[key]ila.Mapping
	left      map[key]time.Time // tasks that moved away, when (see remember)
	// away: tasks that moved away from here, while the store maps them
	// elsewhere: pull mode keeps their mappings (stale senders are
	// redirected by them, with no time limit; see desired).
	away       map[key]struct{}
	wanted     map[key]time.Time // pull mode working set: when each entry was pulled
	locals     map[string]*localTask
	localByKey map[key]*localTask
	moved      map[string]moved // tasks that moved away, by name
	inflight   map[key]*inflight
	locAdded   map[string]ila.Locator
	missLast   map[key]time.Time
	tokens     float64
	tokensAt   time.Time
	st         Stats
	hb         heartbeatState // heartbeat.go
	conv       convergence    // convergence.go

	wg sync.WaitGroup // registration loops and port cleanups
}

// Stats are the agent's counters.
type Stats struct {
	Mappings, Locals, InFlight, StoreTasks int
	Synced                                 bool
	Revision                               int64
	// Applied is the store revision the datapath has applied: Revision
	// while the watch is synced, the last synced one during a relist.
	Applied                    int64
	Events, Syncs, WatchErrors uint64
	// LastLag is the time from the last task record's commit (its Updated
	// field) to its application to the datapath.
	LastLag                                      time.Duration
	Misses, MissLookups, MissDropped, MissErrors uint64
	RegAccepted, RegRejected, RegErrors          uint64
	Deregistrations                              uint64
	MovesAway, Notifications, InFlightExpired    uint64
	// EarlyRedirects counts handovers that redirected a stopped guest's
	// packets before the move committed (Handover).
	EarlyRedirects uint64
	// Suspended counts local tasks whose delivery stopped for a cold or
	// warm move.
	Suspended      uint64
	DatapathErrors uint64
	// Pulled is the pull mode working set (entries installed on a miss);
	// PullEvicted counts those removed after PullTTL or beyond PullMax.
	Pulled      int
	PullEvicted uint64
	// DomainClashes counts domain records refused because their SIR
	// prefix belongs to another domain.
	DomainClashes uint64
	// Reasserts counts local tasks claimed back after the store showed
	// them elsewhere without a justified move (reassert.go).
	Reasserts uint64
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
		left:       map[key]time.Time{},
		away:       map[key]struct{}{},
		wanted:     map[key]time.Time{},
		locals:     map[string]*localTask{},
		localByKey: map[key]*localTask{},
		moved:      map[string]moved{},
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
	} else {
		a.adopted = true
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
	if a.cfg.Heartbeater != nil && a.cfg.Heartbeat > 0 {
		g.Go(func() error { return a.heartbeatLoop(gctx) })
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

func (a *Agent) dpErr(op string, err error, attrs ...any) {
	if err == nil {
		return
	}
	a.st.DatapathErrors++
	a.log.Error("datapath "+op, append(attrs, "err", err)...)
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	s.Mappings, s.Locals, s.InFlight, s.StoreTasks = len(a.installed), len(a.locals), len(a.inflight), len(a.tasks)
	s.Synced, s.Revision, s.Applied = a.synced, a.rev, a.applied
	s.Pulled = len(a.wanted)
	return s
}
