package bgp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Peer is one BGP neighbour (the ToR, or the fabric's route server).
type Peer struct {
	// Address is the neighbour's address; the session runs over IPv4 or
	// IPv6 transport, the routes are IPv6 unicast either way.
	Address netip.Addr `json:"address"`
	// ASN is the neighbour's AS number (equal to the local one: iBGP).
	ASN uint32 `json:"asn"`
	// Port is the neighbour's TCP port (default 179).
	Port uint16 `json:"port,omitempty"`
	// Passive: wait for the neighbour to connect, never dial.
	Passive bool `json:"passive,omitempty"`
}

// Config is the speaker's configuration. The plain fields come from
// ilad's file and flags (the "bgp" section).
type Config struct {
	// ASN is the local AS number (required).
	ASN uint32 `json:"asn"`
	// RouterID is the BGP identifier, an IPv4 address unique in the AS
	// (required).
	RouterID netip.Addr `json:"router_id"`
	// Peers are the neighbours; at least one.
	Peers []Peer `json:"peers"`
	// HoldTime is the hold time offered (default 9s; the keepalive is a
	// third of it). A dead host's routes go after this long.
	HoldTime ila.Duration `json:"hold_time,omitempty"`
	// RestartTime is the graceful-restart time offered: how long a peer
	// keeps this speaker's routes (marked stale) while it restarts
	// (default 120s).
	RestartTime ila.Duration `json:"restart_time,omitempty"`
	// ListenPort is the TCP port to accept sessions on; 0: do not listen
	// (the speaker dials its peers).
	ListenPort uint16 `json:"listen_port,omitempty"`
	// ListenAddress restricts the listener to one address (default all).
	ListenAddress netip.Addr `json:"listen_address,omitzero"`
	// LocalAddress is the source address of the sessions (default: the
	// kernel's choice).
	LocalAddress netip.Addr `json:"local_address,omitzero"`
	// NextHop is the IPv6 next hop of the announced prefixes: the host's
	// underlay address (required).
	NextHop netip.Addr `json:"next_hop,omitzero"`

	// Restarting sets the graceful-restart R bit: the process restarted
	// with its forwarding state kept (the datapath stayed pinned), so
	// peers keep its routes until it has sent them again.
	Restarting bool `json:"-"`
	// Logger receives the speaker's and GoBGP's warnings (default:
	// discarded).
	Logger *slog.Logger `json:"-"`
}

// reservedASN: AS numbers a speaker must not use (RFC 7607 zero, RFC 6793
// AS_TRANS, RFC 7300 last ones).
func reservedASN(a uint32) bool {
	return a == 0 || a == 23456 || a == 65535 || a == 4294967295
}

// Check validates the configuration and fills its defaults.
func (c *Config) Check() error {
	if reservedASN(c.ASN) {
		return fmt.Errorf("bgp: local asn %d: reserved (0, 23456, 65535 and 4294967295 are not usable)", c.ASN)
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		return fmt.Errorf("bgp: router id %q: want a non-zero IPv4 address", c.RouterID)
	}
	if !c.NextHop.Is6() || c.NextHop.Is4In6() || c.NextHop.IsUnspecified() || c.NextHop.IsLinkLocalUnicast() {
		return fmt.Errorf("bgp: next hop %q: want a global IPv6 address (the host's underlay address)", c.NextHop)
	}
	if len(c.Peers) == 0 {
		return fmt.Errorf("bgp: no peers")
	}
	seen := map[netip.Addr]bool{}
	for i, p := range c.Peers {
		if !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsMulticast() {
			return fmt.Errorf("bgp: peer %d: address %q: want a unicast address", i, p.Address)
		}
		if p.Address.Zone() != "" {
			return fmt.Errorf("bgp: peer %s: zoned addresses are not supported", p.Address)
		}
		if reservedASN(p.ASN) {
			return fmt.Errorf("bgp: peer %s: asn %d: reserved", p.Address, p.ASN)
		}
		if seen[p.Address.Unmap()] {
			return fmt.Errorf("bgp: peer %s: given twice", p.Address)
		}
		seen[p.Address.Unmap()] = true
	}
	if c.HoldTime == 0 {
		c.HoldTime = ila.Duration(9 * time.Second)
	}
	if h := time.Duration(c.HoldTime); h < 3*time.Second || h > 65535*time.Second || h%time.Second != 0 {
		return fmt.Errorf("bgp: hold time %v: want whole seconds, 3s to 65535s (RFC 4271)", h)
	}
	if c.RestartTime == 0 {
		c.RestartTime = ila.Duration(120 * time.Second)
	}
	if r := time.Duration(c.RestartTime); r < time.Second || r > 4095*time.Second {
		return fmt.Errorf("bgp: restart time %v: want 1s to 4095s (RFC 4724)", r)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
