//go:build linux

package l2compat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sync/errgroup"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
)

// retryInterval is how soon Run retries netlink operations that failed.
const retryInterval = 2 * time.Second

// probeInterval is how often Run probes again for local tasks whose port is
// not known yet (their link may not have been up for the first probe).
const probeInterval = time.Second

// Manager programs the IPv4 tenants of one NVE and runs their ARP and RARP
// responders. Its methods are safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger
	ns  *netns.NS // nil: the current namespace
	h   *netlink.Handle

	// mu serialises changes of the state below and their netlink
	// programming.
	mu     sync.Mutex
	ports  map[string]*port
	vnis   map[uint32]*vniDev
	fdb    map[fdbKey]fdbEntry  // programmed
	neigh  map[neighKey]ila.MAC // programmed
	next   time.Time            // earliest in-flight deadline
	retry  bool                 // a netlink operation failed
	closed bool

	// dirMu guards dir and seen, read by the responders for every frame;
	// writers also hold mu.
	dirMu sync.RWMutex
	dir   *directory
	seen  map[fdbKey]string // local MAC -> task-facing port it was seen on

	// claimed holds moves announced here and not yet committed, with the
	// time each claim lapses if the mapping has not settled it (mu).
	claimed map[fdbKey]time.Time

	wake    chan struct{}
	claims  chan Claim
	readers sync.WaitGroup
	st      counters
}

type counters struct {
	arpRequests, arpAnswered, arpIgnored, gratuitous, claims, claimErrors,
	claimsDropped, spoofed, rarpRequests, rarpAnswered, rarpIgnored, malformed,
	fdbUpdates, fdbDeletes, neighUpdates, neighDeletes, netlinkErrors,
	ignoredTasks, probes atomic.Uint64
}

// New checks cfg, opens the NVE's namespace and returns a Manager. Devices
// are created on demand (AddPort, or an in-flight entry); devices left by an
// earlier run with the same names are adopted.
func New(cfg Config) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.ClaimTimeout == 0 {
		cfg.ClaimTimeout = DefaultClaimTimeout
	}
	cfg.Underlay = cfg.Underlay.Unmap()
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		ports:   make(map[string]*port),
		vnis:    make(map[uint32]*vniDev),
		fdb:     make(map[fdbKey]fdbEntry),
		neigh:   make(map[neighKey]ila.MAC),
		dir:     newDirectory(),
		seen:    make(map[fdbKey]string),
		claimed: make(map[fdbKey]time.Time),
		wake:    make(chan struct{}, 1),
		claims:  make(chan Claim, 256),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if cfg.NetNS != "" {
		if m.ns, err = netns.Open(cfg.NetNS); err != nil {
			return nil, fmt.Errorf("l2compat: %w", err)
		}
		if m.h, err = m.ns.Handle(); err != nil {
			m.ns.Close()
			return nil, fmt.Errorf("l2compat: %w", err)
		}
	} else if m.h, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("l2compat: netlink handle: %w", err)
	}
	return m, nil
}

// do runs fn inside the NVE's namespace.
func (m *Manager) do(fn func() error) error {
	if m.ns == nil {
		return fn()
	}
	return m.ns.Do(fn)
}

// Run serves claims (Config.Attach), expires in-flight entries and retries
// failed netlink operations until ctx is done; then it closes the Manager
// and returns nil. The responders run from AddPort on; Run stops them.
func (m *Manager) Run(ctx context.Context) error {
	defer m.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case c := <-m.claims:
				if m.cfg.Attach == nil {
					m.settleClaim(c)
					continue
				}
				m.st.claims.Add(1)
				if err := m.cfg.Attach(ctx, c); err != nil && ctx.Err() == nil {
					m.settleClaim(c)
					m.st.claimErrors.Add(1)
					m.log.Warn("l2compat: attach claim refused", "claim", c.String(), "err", err)
				}
			}
		}
	})
	g.Go(func() error {
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				m.mu.Lock()
				for _, e := range m.dir.tasks {
					m.probe(e, "")
				}
				m.mu.Unlock()
			}
		}
	})
	g.Go(func() error {
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		for {
			m.mu.Lock()
			d := time.Hour
			if !m.next.IsZero() {
				d = time.Until(m.next)
			}
			if m.retry && d > retryInterval {
				d = retryInterval
			}
			m.mu.Unlock()
			t.Reset(max(d, time.Millisecond))
			select {
			case <-ctx.Done():
				return nil
			case <-m.wake:
			case <-t.C:
				m.mu.Lock()
				if errs := m.syncAll(time.Now()); len(errs) > 0 {
					m.log.Warn("l2compat: sync", "err", errors.Join(errs...))
				}
				m.mu.Unlock()
			}
		}
	})
	return g.Wait()
}

// Close stops the responders and releases the namespace and netlink handle.
// The devices and entries stay (forwarding goes on with the last state); a
// new Manager adopts them. Close is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	ports := slices.Collect(maps.Values(m.ports))
	m.mu.Unlock()
	for _, p := range ports {
		p.close()
	}
	m.readers.Wait()
	m.h.Close()
	if m.ns != nil {
		return m.ns.Close()
	}
	return nil
}

// Stats returns the counters and gauges.
func (m *Manager) Stats() Stats {
	s := Stats{
		ARPRequests: m.st.arpRequests.Load(), ARPAnswered: m.st.arpAnswered.Load(), ARPIgnored: m.st.arpIgnored.Load(),
		Gratuitous: m.st.gratuitous.Load(), Claims: m.st.claims.Load(), ClaimErrors: m.st.claimErrors.Load(),
		ClaimsDropped: m.st.claimsDropped.Load(), Spoofed: m.st.spoofed.Load(),
		RARPRequests: m.st.rarpRequests.Load(), RARPAnswered: m.st.rarpAnswered.Load(), RARPIgnored: m.st.rarpIgnored.Load(),
		Malformed: m.st.malformed.Load(), FDBUpdates: m.st.fdbUpdates.Load(), FDBDeletes: m.st.fdbDeletes.Load(),
		NeighUpdates: m.st.neighUpdates.Load(), NeighDeletes: m.st.neighDeletes.Load(),
		NetlinkErrors: m.st.netlinkErrors.Load(), IgnoredTasks: m.st.ignoredTasks.Load(), Probes: m.st.probes.Load(),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s.FDBEntries, s.VNIs, s.Ports = len(m.fdb), len(m.vnis), len(m.ports)
	for _, f := range m.fdb {
		if f.InFlight {
			s.InFlightEntries++
		}
	}
	m.dirMu.RLock()
	s.Tasks = len(m.dir.tasks)
	m.dirMu.RUnlock()
	return s
}
