package ndemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// ErrClosed is returned by AddPort and Run once Run has returned.
var ErrClosed = errors.New("ndemu: emulator closed")

// Owner says who holds a SIR address.
type Owner struct {
	// Local is true when the task is attached to this NVE.
	Local bool
	// Ifindex is the task's port on this NVE (in the NVE's network
	// namespace); 0 when the task is remote or the port is unknown. For a
	// local task with port unknown, DAD probes are not defended and
	// unsolicited NAs are reported as claims (the agent decides).
	Ifindex int
	// NVE is the name of the NVE the task is attached to.
	NVE string
	// MAC is the task's own MAC address if known (zero otherwise). An
	// unsolicited NA for a remote task carrying another MAC is refused.
	MAC ila.MAC
}

// Directory is the emulator's view of the mapping: the agent backs it with
// its local attach table and the mapping watch. Owner is called for every
// solicitation on the packet path and must be fast (a map lookup) and safe
// for concurrent use. A task being attached on this NVE must be reported
// Local with its port's ifindex before its interface comes up, or its own
// duplicate address detection is defended against it.
type Directory interface {
	Owner(addr netip.Addr) (Owner, bool)
}

// Events receives what tasks claim. Methods are called from the port's read
// loop: they must not block (queue the work). Repeats are damped to one per
// port, address and MAC per Config.ClaimInterval.
type Events interface {
	// UnsolicitedNA reports an attach (or move) signal: the task on port
	// ifindex announced addr with link-layer address mac. The agent
	// registers it; mapsrv makes the final check.
	UnsolicitedNA(ctx context.Context, ifindex int, addr netip.Addr, mac net.HardwareAddr)
	// Spoofed reports a refused claim: the task on port ifindex announced
	// addr, which belongs to someone else.
	Spoofed(ifindex int, addr netip.Addr, mac net.HardwareAddr, reason string)
}

// MissReporter may be implemented by the Config.Events value: it then hears
// of solicitations for addresses inside the SIR prefixes that the Directory
// does not know, so an agent running with a partial table (pull mode) can
// fetch the mapping; the task's next retransmission (1 s later by default)
// is then answered. Nothing is answered or flooded meanwhile. Damped like
// the other events; must not block.
type MissReporter interface {
	UnknownTarget(ctx context.Context, ifindex int, addr netip.Addr)
}

// Stats are the emulator's counters since New.
type Stats struct {
	Ports          int    // ports served now
	RSReceived     uint64 // Router Solicitations received
	NSReceived     uint64 // Neighbor Solicitations received (DAD included)
	NAReceived     uint64 // Neighbor Advertisements received
	NASent         uint64 // Neighbor Advertisements sent (answers and DAD defences)
	RASent         uint64 // Router Advertisements sent
	UnknownIgnored uint64 // solicitations for addresses nobody owns, left unanswered
	DADDefended    uint64 // DAD probes answered because the address is someone else's
	SpoofedRefused uint64 // unsolicited NAs refused (address owned elsewhere)
	Claims         uint64 // unsolicited NAs reported as attach signals
	Invalid        uint64 // frames dropped as malformed or invalid
	SendErrors     uint64 // frames that could not be sent
}

type counters struct {
	rsReceived, nsReceived, naReceived, naSent, raSent   atomic.Uint64
	unknown, defended, spoofed, claims, invalid, sendErr atomic.Uint64
}

// Emulator serves ND on a set of ports. Create with New, add ports with
// AddPort (before or while Run runs), and Run it.
type Emulator struct {
	cfg Config
	log *slog.Logger
	pol atomic.Pointer[policy]
	st  counters

	mu        sync.Mutex
	ports     map[string]*port // by interface name
	runCtx    context.Context  // set while Run runs
	closed    bool
	withdrawn map[netip.Prefix]int // removed prefixes still announced with lifetime 0
	wg        sync.WaitGroup

	damp damper
}

// New validates cfg and returns an Emulator with no ports.
func New(cfg Config) (*Emulator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Emulator{
		cfg:       cfg,
		log:       cfg.Logger,
		ports:     make(map[string]*port),
		withdrawn: make(map[netip.Prefix]int),
		damp:      damper{interval: cfg.ClaimInterval, last: make(map[dampKey]time.Time)},
	}
	e.pol.Store(e.newPolicy(cfg.Prefixes))
	return e, nil
}

func (e *Emulator) newPolicy(prefixes []netip.Prefix) *policy {
	return &policy{
		gatewayMAC:    e.cfg.GatewayMAC,
		gatewayLL:     e.cfg.GatewayLL,
		prefixes:      prefixes,
		allowMoveByNA: e.cfg.AllowMoveByNA,
		dir:           e.cfg.Directory,
	}
}

// SetPrefixes replaces the advertised SIR prefixes and sends a Router
// Advertisement on every port at once. Removed prefixes are announced with
// lifetime 0 for the next few advertisements, so tasks drop their on-link
// routes.
func (e *Emulator) SetPrefixes(prefixes []netip.Prefix) error {
	ps, err := cleanPrefixes(prefixes)
	if err != nil {
		return fmt.Errorf("set prefixes: %w", err)
	}
	e.mu.Lock()
	for _, old := range e.pol.Load().prefixes {
		if !slices.Contains(ps, old) {
			e.withdrawn[old] = withdrawRounds
		}
	}
	for _, p := range ps {
		delete(e.withdrawn, p)
	}
	e.pol.Store(e.newPolicy(ps))
	ports := e.livePorts()
	e.mu.Unlock()
	for _, p := range ports {
		p.kickRA()
	}
	return nil
}

// Prefixes returns the SIR prefixes advertised now.
func (e *Emulator) Prefixes() []netip.Prefix { return slices.Clone(e.pol.Load().prefixes) }

// Stats returns the counters.
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	n := len(e.ports)
	e.mu.Unlock()
	return Stats{
		Ports:          n,
		RSReceived:     e.st.rsReceived.Load(),
		NSReceived:     e.st.nsReceived.Load(),
		NAReceived:     e.st.naReceived.Load(),
		NASent:         e.st.naSent.Load(),
		RASent:         e.st.raSent.Load(),
		UnknownIgnored: e.st.unknown.Load(),
		DADDefended:    e.st.defended.Load(),
		SpoofedRefused: e.st.spoofed.Load(),
		Claims:         e.st.claims.Load(),
		Invalid:        e.st.invalid.Load(),
		SendErrors:     e.st.sendErr.Load(),
	}
}

// Ports returns the names of the ports served, with their ifindexes.
func (e *Emulator) Ports() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]int, len(e.ports))
	for name, p := range e.ports {
		m[name] = p.ifindex
	}
	return m
}

// Run serves the ports until ctx is done, then closes them all and returns
// nil. It may be called once.
func (e *Emulator) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if e.runCtx != nil {
		e.mu.Unlock()
		return errors.New("ndemu: run: already running")
	}
	e.runCtx = ctx
	for _, p := range e.ports {
		e.startPort(ctx, p)
	}
	e.mu.Unlock()

	<-ctx.Done()

	e.mu.Lock()
	e.closed = true
	e.runCtx = nil
	ports := make([]*port, 0, len(e.ports))
	for _, p := range e.ports {
		ports = append(ports, p)
	}
	clear(e.ports)
	e.mu.Unlock()
	for _, p := range ports {
		p.stop()
	}
	e.wg.Wait()
	return nil
}
