//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/locator/bgp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// bgpSide is ilad's routing side: the announcer fed by the watch, and the
// speaker or the kernel routes it drives.
type bgpSide struct {
	cfg *bgpSettings
	// drainFile, when set, records a drain across restarts: it exists
	// while the NVE is drained.
	drainFile string
	ann       *announcer
	sp        *bgp.Speaker  // speaker mode
	kr        *kernelRoutes // kernel mode
}

// newBGPSide builds the routing side (nil without a bgp section).
// restarting: the datapath was adopted from pins (ilad restarted), so the
// speaker asks its peers to keep its routes until it has sent them again.
func newBGPSide(cfg *config, log *slog.Logger, ns *netns.NS, restarting bool) (*bgpSide, error) {
	if cfg.BGP == nil {
		return nil, nil
	}
	b := &bgpSide{cfg: cfg.BGP}
	if cfg.StateFile != "" {
		b.drainFile = cfg.StateFile + ".drained"
	}
	var sink prefixSink
	blog := log.With("component", "bgp")
	switch cfg.BGP.Mode {
	case bgpKernel:
		h, err := handle(ns)
		if err != nil {
			return nil, err
		}
		b.kr = &kernelRoutes{h: h, proto: netlink.RouteProtocol(cfg.BGP.Protocol), log: blog}
		sink = b.kr
	default:
		sc := cfg.BGP.Config
		sc.Restarting = restarting
		sc.Logger = blog
		sp, err := bgp.New(sc)
		if err != nil {
			return nil, err
		}
		b.sp = sp
		sink = sp
	}
	var own []ila.Locator
	for _, l := range cfg.Locators {
		own = append(own, l.Locator)
	}
	b.ann = newAnnouncer(cfg.Node, cfg.Role == roleRouter, own, cfg.BGP.Prefixes, sink, blog.Warn)
	if b.drainFile != "" {
		if _, err := os.Stat(b.drainFile); err == nil {
			blog.Warn("drained before this start: nothing announced until ilactl nve undrain", "drain_file", b.drainFile)
			b.apply(true)
		}
	}
	return b, nil
}

func handle(ns *netns.NS) (*netlink.Handle, error) {
	if ns != nil {
		return ns.Handle()
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}

// run runs the speaker (kernel mode has nothing to run).
func (b *bgpSide) run(ctx context.Context) error {
	if b.sp != nil {
		return b.sp.Run(ctx)
	}
	<-ctx.Done()
	return nil
}

// setDrained drains or undrains, and records it for the next start.
func (b *bgpSide) setDrained(d bool) error {
	if b.drainFile != "" {
		var err error
		if d {
			err = os.WriteFile(b.drainFile, []byte("drained by ilactl nve drain\n"), 0o644)
		} else if err = os.Remove(b.drainFile); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("drain file: %w", err)
		}
	}
	b.apply(d)
	return nil
}

func (b *bgpSide) apply(d bool) {
	if b.sp != nil {
		b.sp.SetDrained(d)
	} else {
		b.kr.SetDrained(d)
	}
}

// bgpStatus is GET /v1/bgp: what ilactl nve bgp shows.
type bgpStatus struct {
	Mode     string       `json:"mode"`
	Refused  int          `json:"refused_locators"`
	Speaker  *bgp.State   `json:"speaker,omitempty"`
	Kernel   *kernelState `json:"kernel,omitempty"`
	Protocol int          `json:"protocol,omitempty"`
}

func (b *bgpSide) status(ctx context.Context) bgpStatus {
	st := bgpStatus{Mode: b.cfg.Mode, Refused: b.ann.refusedCount()}
	if b.sp != nil {
		s := b.sp.State(ctx)
		st.Speaker = &s
	} else {
		k := b.kr.state()
		st.Kernel, st.Protocol = &k, b.cfg.Protocol
	}
	return st
}

// handler serves the bgp part of ilad's local API: GET /v1/bgp, POST
// /v1/bgp/drain and /v1/bgp/undrain (ilactl nve drain|undrain).
func (b *bgpSide) handler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	write := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/bgp", func(w http.ResponseWriter, r *http.Request) { write(w, b.status(r.Context())) })
	drain := func(d bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := b.setDrained(d); err != nil {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
				return
			}
			write(w, b.status(r.Context()))
		}
	}
	mux.HandleFunc("POST /v1/bgp/drain", drain(true))
	mux.HandleFunc("POST /v1/bgp/undrain", drain(false))
	return mux
}

var (
	mBGPPeer      = desc("ila_bgp_peer_established", "1 when the BGP session with the peer is established.", "peer")
	mBGPFailures  = desc("ila_bgp_peer_failures_total", "BGP sessions with the peer that failed (garbage, a refused OPEN, hold timer expiry).", "peer")
	mBGPReceived  = desc("ila_bgp_peer_received_prefixes", "IPv6 prefixes received from the peer.", "peer")
	mBGPAnnounced = desc("ila_bgp_announced_prefixes", "Prefixes announced now (speaker) or installed as kernel routes (kernel mode).")
	mBGPDrained   = desc("ila_bgp_drained", "1 when drained (nothing announced).")
	mBGPReady     = desc("ila_bgp_ready", "1 when the datapath is ready (announcements allowed).")
	mBGPRefused   = desc("ila_bgp_refused_locators", "Configured locators not announced because the store does not give them to this NVE alone.")
)

// bgpCollector exports the routing side's state.
type bgpCollector struct{ b *bgpSide }

func (c bgpCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c bgpCollector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	st := c.b.status(context.Background())
	g(mBGPRefused, float64(st.Refused))
	if s := st.Speaker; s != nil {
		g(mBGPAnnounced, float64(len(s.Announced)))
		g(mBGPDrained, b2f(s.Drained))
		g(mBGPReady, b2f(s.Ready))
		for _, p := range s.Peers {
			g(mBGPPeer, b2f(p.State == "established"), p.Address.String())
			ch <- prometheus.MustNewConstMetric(mBGPFailures, prometheus.CounterValue, float64(p.Failures), p.Address.String())
			g(mBGPReceived, float64(p.Received), p.Address.String())
		}
	}
	if k := st.Kernel; k != nil {
		g(mBGPAnnounced, float64(len(k.Installed)))
		g(mBGPDrained, b2f(k.Drained))
		g(mBGPReady, b2f(k.Ready))
	}
}

// kernelRoutes is kernel mode: each prefix is a blackhole route with
// ilad's protocol number in the host's namespace, for the host's routing
// daemon to redistribute (FRR: redistribute kernel, or a route-map
// matching the protocol; BIRD: protocol kernel { learn; }). The datapath
// handles the locator's packets before the kernel routes them; a packet
// it passes (an unknown identifier) is dropped rather than sent back to
// the fabric. Like the speaker's graceful restart, ilad's exit leaves the
// routes in place; not ready and drained remove them.
type kernelRoutes struct {
	h     *netlink.Handle
	proto netlink.RouteProtocol
	log   *slog.Logger

	mu      sync.Mutex
	want    []netip.Prefix
	ready   bool
	drained bool
}

type kernelState struct {
	Ready     bool           `json:"ready"`
	Drained   bool           `json:"drained"`
	Prefixes  []netip.Prefix `json:"prefixes"`
	Installed []netip.Prefix `json:"installed"`
}

func (k *kernelRoutes) SetPrefixes(ps []netip.Prefix) error {
	k.mu.Lock()
	k.want = slices.Clone(ps)
	k.mu.Unlock()
	return k.sync()
}

func (k *kernelRoutes) SetReady(r bool) {
	k.mu.Lock()
	k.ready = r
	k.mu.Unlock()
	if err := k.sync(); err != nil {
		k.log.Warn("kernel routes", "err", err)
	}
}

func (k *kernelRoutes) SetDrained(d bool) {
	k.mu.Lock()
	k.drained = d
	k.mu.Unlock()
	if err := k.sync(); err != nil {
		k.log.Warn("kernel routes", "err", err)
	}
}

// installed lists the routes with ilad's protocol.
func (k *kernelRoutes) installed() ([]netlink.Route, error) {
	rs, err := k.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Protocol: k.proto, Table: 254}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of protocol %d: %w", k.proto, err)
	}
	return rs, nil
}

// sync makes the kernel's routes of ilad's protocol equal to the wanted
// ones (none unless ready and not drained).
func (k *kernelRoutes) sync() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var want []netip.Prefix
	if k.ready && !k.drained {
		want = k.want
	}
	have, err := k.installed()
	if err != nil {
		return err
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		p := netip.PrefixFrom(ip, ones)
		if slices.Contains(want, p) {
			seen[p] = true
			continue
		}
		r := r
		if err := k.h.RouteDel(&r); err != nil {
			return fmt.Errorf("delete route %s: %w", p, err)
		}
		k.log.Info("kernel route removed", "prefix", p, "protocol", k.proto)
	}
	for _, p := range want {
		if seen[p] {
			continue
		}
		r := &netlink.Route{Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)},
			Type: unix.RTN_BLACKHOLE, Protocol: k.proto, Table: 254}
		if err := k.h.RouteReplace(r); err != nil {
			return fmt.Errorf("install route %s: %w", p, err)
		}
		k.log.Info("kernel route installed", "prefix", p, "protocol", k.proto)
	}
	return nil
}

func (k *kernelRoutes) state() kernelState {
	k.mu.Lock()
	st := kernelState{Ready: k.ready, Drained: k.drained, Prefixes: slices.Clone(k.want)}
	k.mu.Unlock()
	if have, err := k.installed(); err == nil {
		for _, r := range have {
			if r.Dst != nil {
				ip, _ := netip.AddrFromSlice(r.Dst.IP)
				ones, _ := r.Dst.Mask.Size()
				st.Installed = append(st.Installed, netip.PrefixFrom(ip, ones))
			}
		}
	}
	return st
}

// pinsExist reports whether the pin directory already holds pinned
// objects: ilad restarts over a running datapath.
func pinsExist(dir string) bool {
	es, err := os.ReadDir(dir)
	return err == nil && len(es) > 0
}

// wrap feeds the watch events to the announcer after fn (nil-safe on
// both sides).
func (b *bgpSide) wrap(fn func(ila.Event)) func(ila.Event) {
	if b == nil {
		return fn
	}
	return func(ev ila.Event) {
		if fn != nil {
			fn(ev)
		}
		b.ann.event(ev)
	}
}

// start adds the routing side to ilad's group and metrics.
func (b *bgpSide) start(ctx context.Context, g interface{ Go(func() error) }, reg *prometheus.Registry) {
	if b == nil {
		return
	}
	reg.MustRegister(bgpCollector{b})
	g.Go(func() error { return b.run(ctx) })
}
