package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator/bgp"
)

// BGP modes: how the host's prefixes reach the fabric.
const (
	// bgpSpeaker: ilad's embedded BGP speaker announces them to the peers.
	bgpSpeaker = "speaker"
	// bgpKernel: ilad installs them as kernel routes (blackhole, protocol
	// bgp.protocol) for the host's own routing daemon (FRR, BIRD) to
	// redistribute.
	bgpKernel = "kernel"
)

// defaultRouteProtocol is the kernel route protocol number of the routes
// ilad installs in kernel mode (not used by iproute2, FRR or BIRD).
const defaultRouteProtocol = 250

// bgpSettings is the "bgp" section of ilad's configuration.
type bgpSettings struct {
	bgp.Config
	// Mode is speaker (default) or kernel.
	Mode string `json:"mode,omitempty"`
	// Protocol is the kernel route protocol number in kernel mode
	// (default 250).
	Protocol int `json:"protocol,omitempty"`
	// Prefixes (router role) are the SIR prefixes to announce; default:
	// the SIR prefix of every domain in the store.
	Prefixes []netip.Prefix `json:"prefixes,omitempty"`
}

// bgpFlags are the command-line flags of the bgp section.
type bgpFlags struct {
	mode, routerID, nextHop string
	localAddr               string
	asn, protocol           uint
	hold, restart           time.Duration
	peers, prefixes         stringList
}

func addBGPFlags(fs *flag.FlagSet) *bgpFlags {
	f := &bgpFlags{}
	fs.StringVar(&f.mode, "bgp-mode", "", "`mode` of the locator's route: speaker (embedded BGP speaker, the default with -bgp-asn) or kernel (a kernel route for the host's routing daemon)")
	fs.UintVar(&f.asn, "bgp-asn", 0, "local `AS` number of the embedded BGP speaker (turns BGP on)")
	fs.StringVar(&f.routerID, "bgp-router-id", "", "BGP router `id` (an IPv4 address unique in the AS)")
	fs.Var(&f.peers, "bgp-peer", "BGP neighbour `ASN@ADDR` (e.g. 65000@fd00:0:ff::1); repeatable")
	fs.DurationVar(&f.hold, "bgp-hold-time", 0, "BGP hold `time` (default 9s): a dead host's routes go after this long")
	fs.DurationVar(&f.restart, "bgp-restart-time", 0, "graceful restart `time` (default 120s): how long peers keep the routes of a restarting (or hung) ilad")
	fs.StringVar(&f.nextHop, "bgp-next-hop", "", "next hop `address` of the announced prefixes (default -underlay)")
	fs.StringVar(&f.localAddr, "bgp-local-address", "", "source `address` of the BGP sessions (default: the kernel's choice)")
	fs.UintVar(&f.protocol, "bgp-protocol", 0, "kernel mode: route protocol `number` (default 250)")
	fs.Var(&f.prefixes, "bgp-prefix", "router role: SIR `prefix` to announce (default: every domain's); repeatable")
	return f
}

// apply merges the flags given into the file's section.
func (f *bgpFlags) apply(cfg *config, set map[string]bool) error {
	given := false
	for n := range set {
		given = given || strings.HasPrefix(n, "bgp-")
	}
	if !given {
		return nil
	}
	if cfg.BGP == nil {
		cfg.BGP = &bgpSettings{}
	}
	b := cfg.BGP
	if set["bgp-mode"] {
		b.Mode = f.mode
	}
	if set["bgp-asn"] {
		if f.asn > 1<<32-1 {
			return fmt.Errorf("flag -bgp-asn %d: more than 32 bits", f.asn)
		}
		b.ASN = uint32(f.asn)
	}
	var err error
	if set["bgp-router-id"] {
		if b.RouterID, err = netip.ParseAddr(f.routerID); err != nil {
			return fmt.Errorf("flag -bgp-router-id: %w", err)
		}
	}
	if set["bgp-next-hop"] {
		if b.NextHop, err = netip.ParseAddr(f.nextHop); err != nil {
			return fmt.Errorf("flag -bgp-next-hop: %w", err)
		}
	}
	if set["bgp-local-address"] {
		if b.LocalAddress, err = netip.ParseAddr(f.localAddr); err != nil {
			return fmt.Errorf("flag -bgp-local-address: %w", err)
		}
	}
	if set["bgp-hold-time"] {
		b.HoldTime = ila.Duration(f.hold)
	}
	if set["bgp-restart-time"] {
		b.RestartTime = ila.Duration(f.restart)
	}
	if set["bgp-protocol"] {
		b.Protocol = int(f.protocol)
	}
	if set["bgp-peer"] {
		b.Peers = nil
		for _, s := range f.peers {
			p, err := parsePeer(s)
			if err != nil {
				return fmt.Errorf("flag -bgp-peer: %w", err)
			}
			b.Peers = append(b.Peers, p)
		}
	}
	if set["bgp-prefix"] {
		b.Prefixes = nil
		for _, s := range f.prefixes {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("flag -bgp-prefix: %w", err)
			}
			b.Prefixes = append(b.Prefixes, p)
		}
	}
	return nil
}

// parsePeer parses ASN@ADDR.
func parsePeer(s string) (bgp.Peer, error) {
	as, addr, ok := strings.Cut(s, "@")
	if !ok {
		return bgp.Peer{}, fmt.Errorf("%q: want ASN@ADDR, e.g. 65000@fd00:0:ff::1", s)
	}
	n, err := strconv.ParseUint(as, 10, 32)
	if err != nil {
		return bgp.Peer{}, fmt.Errorf("%q: AS number %q: want 1 to 4294967294", s, as)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return bgp.Peer{}, fmt.Errorf("%q: address: %w", s, err)
	}
	return bgp.Peer{Address: a, ASN: uint32(n)}, nil
}

// checkBGP validates the section and fills its defaults.
func (c *config) checkBGP() error {
	b := c.BGP
	if b == nil {
		return nil
	}
	switch b.Mode {
	case "":
		b.Mode = bgpSpeaker
	case bgpSpeaker, bgpKernel:
	default:
		return fmt.Errorf("bgp mode %q: want speaker or kernel", b.Mode)
	}
	if len(b.Prefixes) > 0 && c.Role != roleRouter {
		return errors.New("bgp prefixes are the router role's SIR prefixes (an NVE announces its locators)")
	}
	for _, p := range b.Prefixes {
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			return fmt.Errorf("bgp prefix %s: want an IPv6 prefix", p)
		}
	}
	if b.Mode == bgpKernel {
		if b.Protocol == 0 {
			b.Protocol = defaultRouteProtocol
		}
		// Protocols up to 4 are the kernel's own (redirect, kernel, boot,
		// static); 255 is unusable.
		if b.Protocol < 5 || b.Protocol > 254 {
			return fmt.Errorf("bgp protocol %d: want 5 to 254", b.Protocol)
		}
		return nil
	}
	if b.Protocol != 0 {
		return errors.New("bgp protocol is for mode kernel")
	}
	if !b.NextHop.IsValid() {
		b.NextHop = c.Underlay
	}
	if !b.NextHop.IsValid() {
		return errors.New("bgp: no next hop (set bgp next_hop, -bgp-next-hop or -underlay)")
	}
	return b.Check()
}

// prefixSink receives what to announce: the speaker, or kernel routes.
type prefixSink interface {
	SetPrefixes([]netip.Prefix) error
	SetReady(bool)
}

// announcer decides what the host announces from the store: an NVE its
// configured locators that the store's record of this NVE lists and no
// other NVE's record does (a second NVE configured with a locator mapsrv
// gave to another cannot hijack it), a router its SIR prefixes (the
// configured ones, or every domain's). It turns ready at the first
// complete listing of the store (the datapath then holds the table).
type announcer struct {
	node     string
	router   bool
	own      []ila.Locator  // NVE: configured locators
	prefixes []netip.Prefix // router: configured prefixes (empty: all domains)
	sink     prefixSink
	warn     func(msg string, args ...any)

	mu      sync.Mutex
	nves    map[string][]ila.Locator
	domains map[string]netip.Prefix
	synced  bool
	refused map[ila.Locator]string // locator -> why it is not announced
	last    []netip.Prefix
}

func newAnnouncer(node string, router bool, own []ila.Locator, prefixes []netip.Prefix, sink prefixSink, warn func(string, ...any)) *announcer {
	return &announcer{node: node, router: router, own: own, prefixes: prefixes, sink: sink, warn: warn,
		nves: map[string][]ila.Locator{}, domains: map[string]netip.Prefix{}, refused: map[ila.Locator]string{}}
}

// event applies one watch event.
func (a *announcer) event(ev ila.Event) {
	a.mu.Lock()
	switch {
	case ev.Type == ila.EventNVEUpsert && ev.NVE != nil:
		a.nves[ev.NVE.Name] = slices.Clone(ev.NVE.Locators)
	case ev.Type == ila.EventNVEDelete && ev.NVE != nil:
		delete(a.nves, ev.NVE.Name)
	case ev.Type == ila.EventDomainUpsert && ev.Domain != nil:
		a.domains[ev.Domain.Name] = ev.Domain.SIR.Prefix()
	case ev.Type == ila.EventDomainDelete && ev.Domain != nil:
		delete(a.domains, ev.Domain.Name)
	case ev.Type == ila.EventSynced:
		first := !a.synced
		a.synced = true
		if first {
			a.mu.Unlock()
			a.update()
			a.sink.SetReady(true)
			return
		}
	default:
		a.mu.Unlock()
		return
	}
	synced := a.synced
	a.mu.Unlock()
	if synced {
		a.update()
	}
}

// update computes the prefixes and hands them to the sink when they
// changed.
func (a *announcer) update() {
	a.mu.Lock()
	want := a.compute()
	changed := !slices.Equal(want, a.last)
	a.last = want
	a.mu.Unlock()
	if changed {
		if err := a.sink.SetPrefixes(want); err != nil {
			a.warn("bgp prefixes", "err", err)
		}
	}
}

// compute is the announcement (a.mu held).
func (a *announcer) compute() []netip.Prefix {
	var out []netip.Prefix
	if a.router {
		out = slices.Clone(a.prefixes)
		if len(out) == 0 {
			for _, p := range a.domains {
				out = append(out, p)
			}
		}
	} else {
		for _, l := range a.own {
			why := ""
			if !slices.Contains(a.nves[a.node], l) {
				why = "not in this NVE's record in the store"
			}
			for name, ls := range a.nves {
				if name != a.node && slices.Contains(ls, l) {
					why = "also in the store record of NVE " + name
				}
			}
			if why == "" {
				delete(a.refused, l)
				out = append(out, l.Prefix())
				continue
			}
			if a.refused[l] != why {
				a.warn("locator not announced", "locator", l, "reason", why)
			}
			a.refused[l] = why
		}
	}
	slices.SortFunc(out, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return slices.Compact(out)
}

// refusedCount is the number of configured locators not announced.
func (a *announcer) refusedCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.refused)
}
