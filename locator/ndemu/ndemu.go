package ndemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/mdlayher/ndp"
)

// GatewayMAC is the anycast gateway MAC address every NVE uses on every
// task-facing port (locally administered, unicast). The datapath and the
// agent use the same value.
var GatewayMAC = net.HardwareAddr{0x02, 0x1a, 0x00, 0x00, 0x00, 0x01}

// GatewayMACValue is GatewayMAC as a comparable ila.MAC.
var GatewayMACValue = ila.MAC{0x02, 0x1a, 0x00, 0x00, 0x00, 0x01}

// DefaultGatewayLL is the gateway's link-local address on every port: the
// tasks' default router.
var DefaultGatewayLL = netip.MustParseAddr("fe80::1")

// Defaults applied to zero Config fields.
const (
	DefaultRAInterval     = 10 * time.Second
	DefaultRouterLifetime = 30 * time.Minute
	DefaultClaimInterval  = time.Second
	// maxRouterLifetime is the largest value RFC 4861 allows (9000 s).
	maxRouterLifetime = 9000 * time.Second
	// withdrawRounds is how many RAs keep announcing a removed prefix
	// with lifetime 0.
	withdrawRounds = 3
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

// Config configures an Emulator. Zero values take the documented defaults.
type Config struct {
	// Prefixes are the SIR prefixes advertised on-link in Router
	// Advertisements. Unsolicited NAs for unknown addresses are reported
	// as attach signals only inside them. SetPrefixes replaces them.
	Prefixes []netip.Prefix
	// GatewayMAC is the anycast gateway MAC; default GatewayMAC.
	GatewayMAC net.HardwareAddr
	// GatewayLL is the gateway's link-local address; default
	// DefaultGatewayLL (fe80::1).
	GatewayLL netip.Addr
	// RAInterval is the period of unsolicited Router Advertisements;
	// default DefaultRAInterval. Each period is jittered by up to -25%.
	RAInterval time.Duration
	// RouterLifetime is the default-router lifetime advertised; default
	// DefaultRouterLifetime, at most 9000 s. It outlives an agent restart
	// on purpose: the emulator never sends a zero-lifetime RA.
	RouterLifetime time.Duration
	// PrefixLifetime is the valid (and preferred) lifetime of the
	// advertised prefixes; default ndp.Infinity.
	PrefixLifetime time.Duration
	// SLAAC sets the autonomous flag on /64 prefixes so tasks build their
	// own addresses. Off by default: tasks get their SIR address from the
	// orchestrator.
	SLAAC bool
	// MTU, if not zero, is advertised in an MTU option.
	MTU uint32
	// DNSServers, if any, are advertised in an RDNSS option (RFC 8106).
	DNSServers []netip.Addr
	// AllowMoveByNA reports an unsolicited NA for an address owned by a
	// task on another NVE as an attach (move) signal instead of refusing
	// it; mapsrv then decides. A claim carrying a MAC different from the
	// owner's known MAC is refused either way, and so is a claim on an
	// address owned by another port of this NVE.
	AllowMoveByNA bool
	// ClaimInterval damps Events calls: at most one per port, address,
	// MAC and kind per interval; default DefaultClaimInterval.
	ClaimInterval time.Duration
	// NetNS is the path of the network namespace the ports live in (e.g.
	// /var/run/netns/nve1 or /proc/PID/ns/net). AddPort switches a
	// throwaway locked OS thread into it to look the interface up and
	// open the socket; the socket then works from any goroutine. Empty:
	// the process's own network namespace.
	NetNS string
	// Directory answers who owns an address. Required.
	Directory Directory
	// Events receives claims; nil drops them (they are still counted).
	Events Events
	// Logger logs refused claims and port errors; nil discards.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Directory == nil {
		return errors.New("ndemu config: directory is required")
	}
	if c.GatewayMAC == nil {
		c.GatewayMAC = GatewayMAC
	}
	if len(c.GatewayMAC) != 6 || c.GatewayMAC[0]&1 != 0 {
		return fmt.Errorf("ndemu config: gateway MAC %s: want a 6-byte unicast address", c.GatewayMAC)
	}
	c.GatewayMAC = slices.Clone(c.GatewayMAC)
	if !c.GatewayLL.IsValid() {
		c.GatewayLL = DefaultGatewayLL
	}
	if !c.GatewayLL.Is6() || c.GatewayLL.Is4In6() || !c.GatewayLL.IsLinkLocalUnicast() || c.GatewayLL.Zone() != "" {
		return fmt.Errorf("ndemu config: gateway address %s: want an IPv6 link-local unicast address without zone", c.GatewayLL)
	}
	switch {
	case c.RAInterval == 0:
		c.RAInterval = DefaultRAInterval
	case c.RAInterval < 100*time.Millisecond:
		return fmt.Errorf("ndemu config: RA interval %s: want at least 100ms", c.RAInterval)
	}
	switch {
	case c.RouterLifetime == 0:
		c.RouterLifetime = DefaultRouterLifetime
	case c.RouterLifetime < time.Second || c.RouterLifetime > maxRouterLifetime:
		return fmt.Errorf("ndemu config: router lifetime %s: want 1s to 9000s", c.RouterLifetime)
	}
	switch {
	case c.PrefixLifetime == 0:
		c.PrefixLifetime = ndp.Infinity
	case c.PrefixLifetime < time.Second || c.PrefixLifetime > ndp.Infinity:
		return fmt.Errorf("ndemu config: prefix lifetime %s: want 1s to infinity (%s)", c.PrefixLifetime, ndp.Infinity)
	}
	if c.ClaimInterval == 0 {
		c.ClaimInterval = DefaultClaimInterval
	} else if c.ClaimInterval < 0 {
		return fmt.Errorf("ndemu config: claim interval %s: negative", c.ClaimInterval)
	}
	ps, err := cleanPrefixes(c.Prefixes)
	if err != nil {
		return fmt.Errorf("ndemu config: %w", err)
	}
	c.Prefixes = ps
	for _, a := range c.DNSServers {
		if !a.Is6() || a.Is4In6() || a.IsMulticast() || a.IsUnspecified() {
			return fmt.Errorf("ndemu config: DNS server %s: want an IPv6 unicast address", a)
		}
	}
	c.DNSServers = slices.Clone(c.DNSServers)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// cleanPrefixes masks, deduplicates and checks SIR prefixes.
func cleanPrefixes(in []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() {
			return nil, fmt.Errorf("prefix %s: want an IPv6 prefix", p)
		}
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("prefix %s: has a zone", p)
		}
		if p.Bits() == 0 || p.Addr().IsMulticast() || p.Addr().IsLinkLocalUnicast() {
			return nil, fmt.Errorf("prefix %s: not a unicast SIR prefix", p)
		}
		p = p.Masked()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
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

// AddPort starts serving the task-facing interface ifname. It looks the
// interface up and opens its socket in Config.NetNS (see there), on a
// throwaway thread: the caller's thread never changes namespace. If Run is
// running the port is served at once (starting with a Router
// Advertisement), otherwise from when Run starts. Adding a port twice is an
// error; so is adding one after Run returned.
func (e *Emulator) AddPort(ctx context.Context, ifname string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add port %s: %w", ifname, err)
	}
	if ifname == "" || len(ifname) > 15 {
		return fmt.Errorf("add port %q: invalid interface name", ifname)
	}
	e.mu.Lock()
	_, dup := e.ports[ifname]
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return fmt.Errorf("add port %s: %w", ifname, ErrClosed)
	}
	if dup {
		return fmt.Errorf("add port %s: already served", ifname)
	}
	c, ifindex, err := openPort(e.cfg.NetNS, ifname)
	if err != nil {
		return fmt.Errorf("add port %s: %w", ifname, err)
	}
	p := &port{name: ifname, ifindex: ifindex, conn: c, kick: make(chan struct{}, 1)}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.ports[ifname] != nil {
		c.close()
		if e.closed {
			return fmt.Errorf("add port %s: %w", ifname, ErrClosed)
		}
		return fmt.Errorf("add port %s: already served", ifname)
	}
	e.ports[ifname] = p
	if e.runCtx != nil {
		e.startPort(e.runCtx, p)
	}
	return nil
}

// RemovePort stops serving ifname and closes its socket. No goodbye
// advertisement is sent: tasks keep their routes (the port is usually
// being torn down, or the agent is restarting).
func (e *Emulator) RemovePort(ifname string) error {
	e.mu.Lock()
	p, ok := e.ports[ifname]
	delete(e.ports, ifname)
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("remove port %s: not served", ifname)
	}
	p.stop()
	return nil
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

// livePorts returns the running ports; e.mu is held.
func (e *Emulator) livePorts() []*port {
	out := make([]*port, 0, len(e.ports))
	for _, p := range e.ports {
		out = append(out, p)
	}
	return out
}

// startPort starts p's goroutines; e.mu is held.
func (e *Emulator) startPort(ctx context.Context, p *port) {
	pctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.wg.Add(2)
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		defer p.wg.Done()
		e.readLoop(pctx, p)
	}()
	go func() {
		defer e.wg.Done()
		defer p.wg.Done()
		e.raLoop(pctx, p)
	}()
	p.kickRA()
}

// port is one served interface.
type port struct {
	name    string
	ifindex int
	conn    *packetConn

	kick   chan struct{} // asks raLoop for an RA now
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func (p *port) kickRA() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// stop cancels the port's goroutines, closes its socket and waits.
func (p *port) stop() {
	p.once.Do(func() {
		if p.cancel != nil {
			p.cancel()
		}
		p.conn.close()
		p.wg.Wait()
	})
}

func (e *Emulator) readLoop(ctx context.Context, p *port) {
	buf := make([]byte, 1<<16)
	for {
		n, err := p.conn.read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if isTransient(err) {
				// Port went down (or the queue overflowed): the socket
				// rebinds itself when the port comes back up.
				e.log.Debug("ndemu: read", "iface", p.name, "err", err)
				continue
			}
			e.log.Warn("ndemu: read, stop serving port", "iface", p.name, "err", err)
			return
		}
		e.handle(ctx, p, buf[:n])
	}
}

func (e *Emulator) raLoop(ctx context.Context, p *port) {
	t := time.NewTimer(jitter(e.cfg.RAInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-t.C:
		}
		e.sendRA(p, allNodes)
		t.Reset(jitter(e.cfg.RAInterval))
	}
}

// jitter returns d reduced by up to 25%, so NVEs do not advertise in step.
func jitter(d time.Duration) time.Duration {
	q := d / 4
	if q <= 0 {
		return d
	}
	return d - rand.N(q)
}

// routerAdvertisement builds the RA from the current configuration;
// consumeWithdrawn counts a withdrawal round (periodic RAs only).
func (e *Emulator) routerAdvertisement(consumeWithdrawn bool) *ndp.RouterAdvertisement {
	e.mu.Lock()
	pol := e.pol.Load() // consistent with withdrawn, both change under e.mu
	withdrawn := make([]netip.Prefix, 0, len(e.withdrawn))
	for p, n := range e.withdrawn {
		withdrawn = append(withdrawn, p)
		if consumeWithdrawn {
			if n <= 1 {
				delete(e.withdrawn, p)
			} else {
				e.withdrawn[p] = n - 1
			}
		}
	}
	e.mu.Unlock()
	slices.SortFunc(withdrawn, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })

	opts := []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: e.cfg.GatewayMAC}}
	if e.cfg.MTU != 0 {
		opts = append(opts, ndp.NewMTU(e.cfg.MTU))
	}
	for _, p := range pol.prefixes {
		opts = append(opts, &ndp.PrefixInformation{
			PrefixLength:                   uint8(p.Bits()),
			OnLink:                         true,
			AutonomousAddressConfiguration: e.cfg.SLAAC && p.Bits() == 64,
			ValidLifetime:                  e.cfg.PrefixLifetime,
			PreferredLifetime:              e.cfg.PrefixLifetime,
			Prefix:                         p.Addr(),
		})
	}
	for _, p := range withdrawn {
		opts = append(opts, &ndp.PrefixInformation{PrefixLength: uint8(p.Bits()), OnLink: true, Prefix: p.Addr()})
	}
	if len(e.cfg.DNSServers) > 0 {
		opts = append(opts, &ndp.RecursiveDNSServer{Lifetime: max(3*e.cfg.RAInterval, time.Second).Round(time.Second), Servers: e.cfg.DNSServers})
	}
	return &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  e.cfg.RouterLifetime.Truncate(time.Second),
		Options:         opts,
	}
}

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = multicastMAC(allNodes)
)

// sendRA sends a Router Advertisement on p to dst (all-nodes or a
// soliciting task's link-local address at dstMAC).
func (e *Emulator) sendRA(p *port, dst netip.Addr, dstMAC ...net.HardwareAddr) {
	ra := e.routerAdvertisement(dst == allNodes)
	mac := allNodesMAC
	if len(dstMAC) > 0 && dstMAC[0] != nil {
		mac = dstMAC[0]
	}
	if e.send(p, out{msg: ra, dst: dst, dstMAC: mac}) {
		e.st.raSent.Add(1)
	}
}

// send marshals o into a frame from the gateway and writes it on p.
func (e *Emulator) send(p *port, o out) bool {
	frame, err := buildFrame(e.cfg.GatewayMAC, e.cfg.GatewayLL, o)
	if err != nil {
		e.st.sendErr.Add(1)
		e.log.Warn("ndemu: build frame", "iface", p.name, "err", err)
		return false
	}
	if err := p.conn.write(frame); err != nil {
		e.st.sendErr.Add(1)
		if !errors.Is(err, net.ErrClosed) {
			e.log.Debug("ndemu: send", "iface", p.name, "err", err)
		}
		return false
	}
	return true
}

// handle processes one received frame.
func (e *Emulator) handle(ctx context.Context, p *port, frame []byte) {
	in, err := parseFrame(frame)
	if err != nil {
		e.st.invalid.Add(1)
		return
	}
	in.ifindex = p.ifindex
	switch in.msg.(type) {
	case *ndp.RouterSolicitation:
		e.st.rsReceived.Add(1)
	case *ndp.NeighborSolicitation:
		e.st.nsReceived.Add(1)
	case *ndp.NeighborAdvertisement:
		e.st.naReceived.Add(1)
	}
	a := e.pol.Load().decide(in)
	switch a.verdict {
	case verdictInvalid:
		e.st.invalid.Add(1)
	case verdictUnknown:
		e.st.unknown.Add(1)
		if mr, ok := e.cfg.Events.(MissReporter); ok && e.pol.Load().inPrefixes(a.target) &&
			e.damp.allow(p.ifindex, a.target, nil, verdictUnknown) {
			mr.UnknownTarget(ctx, p.ifindex, a.target)
		}
	case verdictAnswer, verdictDefend:
		if a.verdict == verdictDefend {
			e.st.defended.Add(1)
		}
		if e.send(p, a.reply) {
			e.st.naSent.Add(1)
		}
	case verdictAdvertise:
		e.sendRA(p, a.reply.dst, a.reply.dstMAC)
	case verdictClaim:
		e.st.claims.Add(1)
		if e.damp.allow(p.ifindex, a.target, a.mac, verdictClaim) && e.cfg.Events != nil {
			e.cfg.Events.UnsolicitedNA(ctx, p.ifindex, a.target, slices.Clone(a.mac))
		}
	case verdictSpoofed:
		e.st.spoofed.Add(1)
		if e.damp.allow(p.ifindex, a.target, a.mac, verdictSpoofed) {
			e.log.Warn("ndemu: refused neighbor advertisement", "iface", p.name, "sir", a.target, "mac", a.mac, "reason", a.reason)
			if e.cfg.Events != nil {
				e.cfg.Events.Spoofed(p.ifindex, a.target, slices.Clone(a.mac), a.reason)
			}
		}
	}
}

// damper lets one event per (port, address, MAC, kind) through per
// interval: repeats are dropped, a new MAC is news.
type damper struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[dampKey]time.Time
}

type dampKey struct {
	ifindex int
	addr    netip.Addr
	mac     [6]byte
	kind    verdict
}

const maxDampEntries = 1 << 14

func (d *damper) allow(ifindex int, addr netip.Addr, mac net.HardwareAddr, kind verdict) bool {
	if d.interval <= 0 {
		return true
	}
	now := time.Now()
	k := dampKey{ifindex: ifindex, addr: addr, kind: kind}
	copy(k.mac[:], mac)
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.last[k]; ok && now.Sub(t) < d.interval {
		return false
	}
	if len(d.last) >= maxDampEntries {
		for k, t := range d.last {
			if now.Sub(t) >= d.interval {
				delete(d.last, k)
			}
		}
		if len(d.last) >= maxDampEntries {
			return false // flooded with distinct claims: shed
		}
	}
	d.last[k] = now
	return true
}
