package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

var v6Family = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}

// PeerState is one neighbour as the speaker sees it.
type PeerState struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is the session state: idle, connect, active, opensent,
	// openconfirm or established.
	State string `json:"state"`
	// Since is when the session came up (established) or went down.
	Since time.Time `json:"since,omitzero"`
	// Flaps counts the established session's drops (GoBGP's count);
	// Failures every session that was opening or up and failed (garbage,
	// a refused OPEN, a hold timer expiry) since the speaker started.
	Flaps    uint32 `json:"flaps"`
	Failures uint64 `json:"failures"`
	// Received is the number of IPv6 prefixes the peer sent us;
	// Advertised the number we sent it.
	Received   uint64 `json:"received"`
	Advertised uint64 `json:"advertised"`
	// GracefulRestart: the peer negotiated graceful restart, so it keeps
	// our routes while we restart.
	GracefulRestart bool `json:"graceful_restart"`
}

// State is the speaker's state for ilactl and metrics.
type State struct {
	ASN      uint32     `json:"asn"`
	RouterID netip.Addr `json:"router_id"`
	NextHop  netip.Addr `json:"next_hop"`
	// Running: the BGP server is up.
	Running bool `json:"running"`
	// Ready is the datapath's readiness as last reported; Drained is set
	// by a drain. Prefixes are announced only when ready and not drained.
	Ready   bool `json:"ready"`
	Drained bool `json:"drained"`
	// Prefixes are the prefixes this speaker is to announce when ready;
	// Announced the ones in its RIB now.
	Prefixes  []netip.Prefix `json:"prefixes"`
	Announced []netip.Prefix `json:"announced"`
	Peers     []PeerState    `json:"peers"`
}

// Speaker is an embedded BGP speaker (GoBGP) that announces a set of IPv6
// prefixes with one next hop to its peers while the host is ready.
type Speaker struct {
	cfg   Config
	log   *slog.Logger
	kick  chan struct{}
	mu    sync.Mutex
	want  []netip.Prefix
	ready bool
	drain bool
	srv   *server.BgpServer
	paths map[netip.Prefix][]byte // announced prefix -> GoBGP path uuid
	run   bool
	hard  bool                  // stop with a hard reset (withdraw) instead of a graceful one
	last  map[netip.Addr]string // peer -> last session state seen
	drops map[netip.Addr]uint64 // peer -> sessions that failed
}

// New checks cfg and returns a speaker that is not running yet.
func New(cfg Config) (*Speaker, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	return &Speaker{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), paths: map[netip.Prefix][]byte{},
		last: map[netip.Addr]string{}, drops: map[netip.Addr]uint64{}}, nil
}

// SetPrefixes sets the prefixes to announce (when ready and not drained).
// Only IPv6 prefixes are accepted.
func (s *Speaker) SetPrefixes(ps []netip.Prefix) error {
	var want []netip.Prefix
	for _, p := range ps {
		if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			return fmt.Errorf("bgp: prefix %q: want an IPv6 prefix", p)
		}
		want = append(want, p.Masked())
	}
	slices.SortFunc(want, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr())*256 + a.Bits() - b.Bits() })
	want = slices.Compact(want)
	s.mu.Lock()
	s.want = want
	s.mu.Unlock()
	s.poke()
	return nil
}

// SetReady reports the datapath's readiness: not ready withdraws.
func (s *Speaker) SetReady(ready bool) {
	s.mu.Lock()
	s.ready = ready
	s.mu.Unlock()
	s.poke()
}

// SetDrained drains (withdraws everything) or undrains the speaker.
func (s *Speaker) SetDrained(drained bool) {
	s.mu.Lock()
	s.drain = drained
	s.mu.Unlock()
	s.poke()
}

// StopHard makes the end of Run withdraw the routes at once (a hard
// reset) instead of the default graceful stop that lets peers keep them
// for the restart time. A daemon that shuts down for good calls it.
func (s *Speaker) StopHard() {
	s.mu.Lock()
	s.hard = true
	s.mu.Unlock()
}

func (s *Speaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run starts the BGP server, connects to the peers, keeps the RIB equal to
// the wanted announcements and stops when ctx ends: gracefully (peers
// keep the routes as stale for the restart time; the next Run with
// Restarting set refreshes them) unless StopHard was called.
func (s *Speaker) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.run {
		s.mu.Unlock()
		return errors.New("bgp: speaker already running")
	}
	s.run = true
	s.mu.Unlock()

	srv := server.NewBgpServer(server.LoggerOption(&logAdapter{l: s.log}))
	go srv.Serve()
	port := int32(-1)
	if s.cfg.ListenPort != 0 {
		port = int32(s.cfg.ListenPort)
	}
	g := &api.Global{Asn: s.cfg.ASN, RouterId: s.cfg.RouterID.String(), ListenPort: port}
	if s.cfg.ListenAddress.IsValid() {
		g.ListenAddresses = []string{s.cfg.ListenAddress.String()}
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		srv.Stop()
		return fmt.Errorf("bgp: start: %w", err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.srv, s.paths = nil, map[netip.Prefix][]byte{}
		s.mu.Unlock()
	}()
	for _, p := range s.cfg.Peers {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			srv.Stop()
			return fmt.Errorf("bgp: peer %s: %w", p.Address, err)
		}
	}
	err := srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		if p := r.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE && p.Peer.GetState() != nil {
			s.peerEvent(p.Peer.State)
		}
	})
	if err != nil {
		srv.Stop()
		return fmt.Errorf("bgp: watch: %w", err)
	}
	for {
		if err := s.reconcile(ctx, srv); err != nil && ctx.Err() == nil {
			s.log.Warn("bgp: announce", "err", err)
		}
		select {
		case <-ctx.Done():
			s.stop(srv)
			return nil
		case <-s.kick:
		}
	}
}

// peerEvent logs a session's state change and counts the failures: a
// session that was opening or up and fell back (garbage from the peer, a
// refused OPEN such as a wrong AS, a hold timer expiry, a reset).
func (s *Speaker) peerEvent(st *api.PeerState) {
	a, err := netip.ParseAddr(st.NeighborAddress)
	if err != nil {
		return
	}
	a = a.Unmap()
	now := sessionState(st.SessionState)
	s.mu.Lock()
	was := s.last[a]
	s.last[a] = now
	failed := (now == "idle" || now == "active" || now == "connect") && (was == "opensent" || was == "openconfirm" || was == "established")
	if failed {
		s.drops[a]++
	}
	s.mu.Unlock()
	switch {
	case failed:
		s.log.Warn("bgp: session failed", "peer", a, "asn", st.PeerAsn, "was", was, "now", now)
	case now == "established":
		s.log.Info("bgp: session established", "peer", a, "asn", st.PeerAsn)
	default:
		s.log.Debug("bgp: session state", "peer", a, "state", now)
	}
}

// stop ends the sessions. Gracefully: an administrative reset, which a
// peer that negotiated RFC 8538 (the N bit) takes as a restart, keeping
// the routes as stale; then the server stops once no session is
// established any more (or after a second). Hard: a plain stop, which
// GoBGP sends as a Hard Reset, so peers withdraw at once.
func (s *Speaker) stop(srv *server.BgpServer) {
	s.mu.Lock()
	hard := s.hard
	s.mu.Unlock()
	ctx := context.Background()
	if !hard {
		if err := srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: "", Communication: "ilad restart"}); err == nil {
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				up := false
				_ = srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
					up = up || p.GetState().GetSessionState() == api.PeerState_ESTABLISHED
				})
				if !up {
					break
				}
			}
		}
	}
	srv.Stop()
}

func (s *Speaker) apiPeer(p Peer) *api.Peer {
	keep := uint64(time.Duration(s.cfg.HoldTime) / time.Second / 3)
	t := &api.Transport{PassiveMode: p.Passive, RemotePort: uint32(p.Port)}
	if p.Port == 0 {
		t.RemotePort = 179
	}
	if s.cfg.LocalAddress.IsValid() {
		t.LocalAddress = s.cfg.LocalAddress.String()
	}
	return &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: p.Address.Unmap().String(), PeerAsn: p.ASN},
		Transport: t,
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               uint64(time.Duration(s.cfg.HoldTime) / time.Second),
			KeepaliveInterval:      max(keep, 1),
			ConnectRetry:           2,
			IdleHoldTimeAfterReset: 1,
		}},
		GracefulRestart: &api.GracefulRestart{
			Enabled:             true,
			RestartTime:         uint32(time.Duration(s.cfg.RestartTime) / time.Second),
			NotificationEnabled: true,
			LocalRestarting:     s.cfg.Restarting,
		},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: v6Family, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}},
		}},
	}
}

// reconcile adds the wanted paths missing from the RIB and deletes the
// ones no longer wanted.
func (s *Speaker) reconcile(ctx context.Context, srv *server.BgpServer) error {
	s.mu.Lock()
	var want []netip.Prefix
	if s.ready && !s.drain {
		want = slices.Clone(s.want)
	}
	have := make(map[netip.Prefix][]byte, len(s.paths))
	for p, id := range s.paths {
		have[p] = id
	}
	s.mu.Unlock()
	var errs []error
	for p, id := range have {
		if slices.Contains(want, p) {
			continue
		}
		if err := srv.DeletePath(ctx, &api.DeletePathRequest{Family: v6Family, Uuid: id}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		s.log.Info("bgp: withdrawn", "prefix", p)
		s.mu.Lock()
		delete(s.paths, p)
		s.mu.Unlock()
	}
	for _, p := range want {
		if _, ok := have[p]; ok {
			continue
		}
		path, err := s.path(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r, err := srv.AddPath(ctx, &api.AddPathRequest{Path: path})
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", p, err))
			continue
		}
		s.log.Info("bgp: announced", "prefix", p, "next_hop", s.cfg.NextHop)
		s.mu.Lock()
		s.paths[p] = r.Uuid
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (s *Speaker) path(p netip.Prefix) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", p, err)
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0})
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	reach, err := anypb.New(&api.MpReachNLRIAttribute{Family: v6Family, NextHops: []string{s.cfg.NextHop.String()}, Nlris: []*anypb.Any{nlri}})
	if err != nil {
		return nil, fmt.Errorf("next hop: %w", err)
	}
	return &api.Path{Family: v6Family, Nlri: nlri, Pattrs: []*anypb.Any{origin, reach}}, nil
}

// State returns the speaker's state and its peers'.
func (s *Speaker) State(ctx context.Context) State {
	s.mu.Lock()
	st := State{ASN: s.cfg.ASN, RouterID: s.cfg.RouterID, NextHop: s.cfg.NextHop, Running: s.srv != nil,
		Ready: s.ready, Drained: s.drain, Prefixes: slices.Clone(s.want)}
	for p := range s.paths {
		st.Announced = append(st.Announced, p)
	}
	srv := s.srv
	for _, p := range s.cfg.Peers {
		st.Peers = append(st.Peers, PeerState{Address: p.Address.Unmap(), ASN: p.ASN, State: "idle", Failures: s.drops[p.Address.Unmap()]})
	}
	s.mu.Unlock()
	slices.SortFunc(st.Announced, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	byAddr := map[netip.Addr]*PeerState{}
	for i := range st.Peers {
		byAddr[st.Peers[i].Address] = &st.Peers[i]
	}
	if srv == nil {
		return st
	}
	_ = srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		ps := byAddr[a.Unmap()]
		if ps == nil {
			return
		}
		ps.State = sessionState(p.GetState().GetSessionState())
		ps.Flaps = p.GetState().GetFlops()
		ps.GracefulRestart = p.GetGracefulRestart().GetEnabled() && p.GetGracefulRestart().GetPeerRestartTime() > 0
		if ts := p.GetTimers().GetState(); ts != nil {
			t := ts.GetDowntime()
			if ps.State == "established" {
				t = ts.GetUptime()
			}
			if t != nil && t.GetSeconds() > 0 {
				ps.Since = t.AsTime()
			}
		}
		for _, af := range p.GetAfiSafis() {
			if af.GetState().GetFamily().GetAfi() == api.Family_AFI_IP6 {
				ps.Received = af.GetState().GetReceived()
				ps.Advertised = af.GetState().GetAdvertised()
			}
		}
	})
	return st
}

// Received lists the IPv6 prefixes learnt from a peer (including stale
// ones kept across its restart) with their next hops: for tests and
// ilactl.
func (s *Speaker) Received(ctx context.Context, peer netip.Addr) (map[netip.Prefix]netip.Addr, error) {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil, errors.New("bgp: speaker not running")
	}
	out := map[netip.Prefix]netip.Addr{}
	// The global table, not the Adj-RIB-In: a restarting peer's stale
	// routes stay there while its session is down.
	err := srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: v6Family}, func(d *api.Destination) {
		p, err := netip.ParsePrefix(d.GetPrefix())
		if err != nil {
			return
		}
		for _, path := range d.GetPaths() {
			from, err := netip.ParseAddr(path.GetNeighborIp())
			if path.GetIsWithdraw() || err != nil || from.Unmap() != peer.Unmap() {
				continue
			}
			out[p] = nextHop(path)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: routes from %s: %w", peer, err)
	}
	return out, nil
}

func nextHop(p *api.Path) netip.Addr {
	for _, a := range p.GetPattrs() {
		var reach api.MpReachNLRIAttribute
		if a.UnmarshalTo(&reach) == nil && len(reach.NextHops) > 0 {
			if nh, err := netip.ParseAddr(reach.NextHops[0]); err == nil {
				return nh
			}
		}
	}
	return netip.Addr{}
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// logAdapter hands GoBGP's log lines to slog: errors and warnings (a
// malformed message, a bad peer AS, a hold timer expiry) as they are,
// its information (state changes, updates received) at debug; its own
// debug lines (every message sent, a keepalive a second) are dropped.
type logAdapter struct {
	l *slog.Logger
}

func (a *logAdapter) attrs(msg string, f gobgplog.Fields) (string, []any) {
	args := make([]any, 0, 2*len(f))
	for k, v := range f {
		args = append(args, k, v)
	}
	return "gobgp: " + msg, args
}

func (a *logAdapter) Panic(msg string, f gobgplog.Fields) {
	m, args := a.attrs(msg, f)
	a.l.Error(m, args...)
}
func (a *logAdapter) Fatal(msg string, f gobgplog.Fields) {
	m, args := a.attrs(msg, f)
	a.l.Error(m, args...)
}
func (a *logAdapter) Error(msg string, f gobgplog.Fields) {
	m, args := a.attrs(msg, f)
	a.l.Error(m, args...)
}
func (a *logAdapter) Warn(msg string, f gobgplog.Fields) {
	m, args := a.attrs(msg, f)
	a.l.Warn(m, args...)
}
func (a *logAdapter) Info(msg string, f gobgplog.Fields) {
	m, args := a.attrs(msg, f)
	a.l.Debug(m, args...)
}
func (a *logAdapter) Debug(string, gobgplog.Fields) {}
func (a *logAdapter) SetLevel(gobgplog.LogLevel)    {}
func (a *logAdapter) GetLevel() gobgplog.LogLevel   { return gobgplog.InfoLevel }
