package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// MaxLifetime is the longest lifetime the registration protocol can carry
// (a 16-bit count of 4-second units).
const MaxLifetime = 65535 * 4 * time.Second

// DefaultMaxLifetime is the default cap on granted lifetimes: a request
// for the protocol's longest lifetime (about 72 hours) would otherwise
// keep a task mapped for days after its NVE went away.
const DefaultMaxLifetime = time.Hour

// Config configures a Service. Store is required; every other field has a
// documented zero-value default.
type Config struct {
	Store Store
	// InFlight is how long a previous NVE keeps forwarding packets in
	// flight after a hot move. Default 10s.
	InFlight time.Duration
	// SuspendTimeout bounds a warm or cold move: a task suspended that
	// long without registering at its destination is rolled back (active
	// again at the NVE it was leaving; if that NVE no longer refreshes it,
	// its lifetime expires as usual). Re-registrations from the old NVE do
	// not extend it. Default 2m.
	SuspendTimeout time.Duration
	// FlapMoves and FlapWindow: a move (or claim) of a task moved
	// FlapMoves times within FlapWindow already is refused (ErrDuplicate)
	// and changes nothing. Defaults 5 and 180s.
	FlapMoves  int
	FlapWindow time.Duration
	// StandbyClaims says when a claim from a task's standby (an NVE that
	// registered a prepared port for it) of a task another live NVE hosts
	// is justified (claim.go, docs/registration.md section 7.4). A standby
	// registration is the claimant's own word; the default,
	// StandbyClaimsExpected, also wants the orchestrator's word: an
	// unexpired expectation naming that NVE (Expect, POST
	// /v1/tasks/{tenant}/{name}/expect). Default StandbyClaimsExpected
	// (mapsrv --standby-claims=expected).
	StandbyClaims StandbyClaims
	// MaxExpectTTL bounds the lifetime of an expectation (Expect).
	// Default DefaultMaxExpectTTL.
	MaxExpectTTL time.Duration
	// MaxLifetime caps granted lifetimes: a registration is granted the
	// smaller of what it asks and MaxLifetime. Default DefaultMaxLifetime;
	// upper bound MaxLifetime.
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
	// Liveness: NVE heartbeats and failover (liveness.go).
	Liveness LivenessConfig
}

func (c *Config) validate() error {
	if c.Store == nil {
		return fmt.Errorf("mapsrv config: store is required")
	}
	if c.InFlight < 0 || c.SuspendTimeout < 0 || c.FlapMoves < 0 || c.FlapWindow < 0 || c.MaxLifetime < 0 || c.SweepInterval < 0 {
		return fmt.Errorf("mapsrv config: negative duration or count")
	}
	if c.InFlight == 0 {
		c.InFlight = 10 * time.Second
	}
	if c.SuspendTimeout == 0 {
		c.SuspendTimeout = 2 * time.Minute
	}
	if c.FlapMoves == 0 {
		c.FlapMoves = 5
	}
	if c.FlapWindow == 0 {
		c.FlapWindow = 180 * time.Second
	}
	if c.StandbyClaims < StandbyClaimsExpected || c.StandbyClaims > StandbyClaimsOff {
		return fmt.Errorf("mapsrv config: %v: want expected, trust or off", c.StandbyClaims)
	}
	if c.MaxExpectTTL < 0 {
		return fmt.Errorf("mapsrv config: negative max expect ttl")
	}
	if c.MaxExpectTTL == 0 {
		c.MaxExpectTTL = DefaultMaxExpectTTL
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.MaxLifetime > MaxLifetime {
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
	return c.Liveness.validate()
}

// Notification asks a previous NVE to redirect a task's traffic to its new
// locator (the draft's Registration Request from the management node).
type Notification struct {
	NVE  string         // previous NVE
	To   netip.AddrPort // its registration listener
	Task ila.Task       // the task as now stored (Locator = new locator)
	// Mode is the move's mode: hot or warm (the previous NVE forwards
	// packets in flight until its entry in Task.Previous ends) or cold
	// (nothing in flight: the task was suspended).
	Mode ila.MoveMode
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
	// ClaimsUnjustified: claims refused because the claimant does not
	// host the task and nothing justifies the move (ErrUnjustified).
	ClaimsUnjustified                       uint64
	DuplicatesMarked                        uint64 // moves and claims refused by flap damping (the name is historical)
	Expiries                                uint64
	SuspendTimeouts                         uint64 // suspensions rolled back
	StoreErrors                             uint64
	MalformedSkipped                        uint64
	NotifySent, NotifyFailed, NotifyDropped uint64
	// RefreshesHeld: refreshes that changed nothing but the expiry, held
	// in memory by this replica instead of written (renew.go).
	RefreshesHeld uint64
	// MoveRetries: moves decided again because the destination NVE's or
	// the domain's record changed between the read and the commit.
	MoveRetries uint64
}

type counters struct {
	regAccepted, regRejected, regConflict, regError atomic.Uint64
	deregs                                          atomic.Uint64
	movesHot, movesWarm, movesCold, movesRefused    atomic.Uint64
	dups, expiries, storeErrors, malformed          atomic.Uint64
	notifySent, notifyFailed, notifyDropped         atomic.Uint64
	suspendTimeouts                                 atomic.Uint64
	claimsUnjustified                               atomic.Uint64
	refreshesHeld                                   atomic.Uint64
	moveRetries                                     atomic.Uint64
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
	up    upState     // start of the expiry grace (grace.go)
	live  liveness    // NVE heartbeats (liveness.go)
	renew renewals    // refreshes held in memory (renew.go)
	// probes: host probes in flight (hostprobe.go).
	probes sync.WaitGroup
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
		MovesRefused: c.movesRefused.Load(), ClaimsUnjustified: c.claimsUnjustified.Load(), DuplicatesMarked: c.dups.Load(),
		Expiries: c.expiries.Load(), SuspendTimeouts: c.suspendTimeouts.Load(), StoreErrors: c.storeErrors.Load(), MalformedSkipped: c.malformed.Load(),
		NotifySent: c.notifySent.Load(), NotifyFailed: c.notifyFailed.Load(), NotifyDropped: c.notifyDropped.Load(),
		RefreshesHeld: c.refreshesHeld.Load(), MoveRetries: c.moveRetries.Load(),
	}
}

// CountStoreError counts an error of the store seen outside the Service
// (e.g. by a watch).
func (s *Service) CountStoreError() { s.c.storeErrors.Add(1) }

// storeErr counts and wraps a store error that is not a conflict.
func (s *Service) storeErr(err error) error {
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, context.Canceled) {
		s.c.storeErrors.Add(1)
		s.up.reset(s.cfg.Now()) // registrations fail too: restart the grace
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
