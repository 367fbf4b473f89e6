package ndemu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/mdlayher/ndp"
)

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

// Config configures an Emulator. Zero values take the documented defaults.
type Config struct {
	// Prefixes are the SIR prefixes advertised on-link in Router
	// Advertisements. Unsolicited NAs for unknown addresses are reported
	// as attach signals only inside them. SetPrefixes replaces them.
	Prefixes []netip.Prefix
	// GatewayMAC is the anycast gateway MAC; default ila.GatewayMAC.
	GatewayMAC net.HardwareAddr
	// GatewayLL is the gateway's link-local address; default
	// ila.GatewayLinkLocal (fe80::1).
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
		gw := ila.GatewayMAC()
		c.GatewayMAC = gw[:]
	}
	if len(c.GatewayMAC) != 6 || c.GatewayMAC[0]&1 != 0 {
		return fmt.Errorf("ndemu config: gateway MAC %s: want a 6-byte unicast address", c.GatewayMAC)
	}
	c.GatewayMAC = slices.Clone(c.GatewayMAC)
	if !c.GatewayLL.IsValid() {
		c.GatewayLL = ila.GatewayLinkLocal()
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
