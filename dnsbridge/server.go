package dnsbridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/miekg/dns"
)

// Source delivers the mapping state: the whole store as upserts followed by
// ila.EventSynced, then changes as they are committed; after a re-list it
// emits deletes for vanished records itself and EventSynced again.
// Event.Revision is the store revision. Watch blocks until ctx is done or
// the watch fails.
type Source interface {
	Watch(ctx context.Context, fn func(ila.Event)) error
}

// Stats are the Server's counters since New.
type Stats struct {
	Queries     uint64 // requests handed to the handler
	NoError     uint64 // answers with records or NODATA
	NXDomain    uint64
	Refused     uint64 // outside the served zones, or transfers refused
	ServFail    uint64 // before the first sync
	FormErr     uint64
	NotImp      uint64
	Truncated   uint64 // UDP answers cut to the client's size (TC set)
	RateLimited uint64 // queries dropped by the per-client limit
	Transfers   uint64 // AXFR and IXFR served
	Notifies    uint64 // NOTIFY messages acknowledged by secondaries
	NotifyFail  uint64 // NOTIFY messages that got no acknowledgement
	Events      uint64 // watch events applied
	BadNames    uint64 // tasks or NVEs whose name is not a DNS label (only their id records are served)
	Serial      uint32
	Synced      bool
	Zones       int
	Names       int
}

// Server answers DNS queries for the mapping zone. It is a dns.Handler, so
// it can also be mounted on a caller's own dns.Server next to Watch.
type Server struct {
	cfg     Config
	z       *zone
	rl      *limiter
	changed chan struct{}
	synced  chan struct{}
	once    sync.Once

	queries, noerror, nxdomain, refused, servfail, formerr, notimp atomic.Uint64
	truncated, ratelimited, transfers, notifies, notifyFail        atomic.Uint64
}

var _ dns.Handler = (*Server)(nil)

// New returns a Server for cfg; nothing runs until Run, Serve or Watch.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("dnsbridge config: %w", err)
	}
	s := &Server{cfg: cfg, z: newZone(cfg), changed: make(chan struct{}, 1), synced: make(chan struct{})}
	if cfg.RateLimit > 0 {
		s.rl = newLimiter(cfg.RateLimit, cfg.RateBurst)
	}
	return s, nil
}

// Zone returns the apex of the forward zone (canonical form).
func (s *Server) Zone() string { return s.cfg.Zone }

// Synced is closed once the first full list of the store has been loaded.
func (s *Server) Synced() <-chan struct{} { return s.synced }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.z.mu.RLock()
	st := Stats{
		Events: uint64(s.z.events), BadNames: uint64(s.z.badNames),
		Serial: s.z.serial, Synced: s.z.synced, Zones: len(s.z.zones), Names: s.z.nodes.len(),
	}
	s.z.mu.RUnlock()
	st.Queries, st.NoError, st.NXDomain = s.queries.Load(), s.noerror.Load(), s.nxdomain.Load()
	st.Refused, st.ServFail, st.FormErr, st.NotImp = s.refused.Load(), s.servfail.Load(), s.formerr.Load(), s.notimp.Load()
	st.Truncated, st.RateLimited, st.Transfers = s.truncated.Load(), s.ratelimited.Load(), s.transfers.Load()
	st.Notifies, st.NotifyFail = s.notifies.Load(), s.notifyFail.Load()
	return st
}

// Run binds Config.Listen over UDP and TCP and serves until ctx is done;
// it returns nil on cancel.
func (s *Server) Run(ctx context.Context, src Source) error {
	pc, ln, err := listen(ctx, s.cfg.Listen)
	if err != nil {
		return err
	}
	s.cfg.Logger.Info("dns listening", "udp", pc.LocalAddr().String(), "tcp", ln.Addr().String(), "zone", s.cfg.Zone)
	return s.Serve(ctx, src, pc, ln)
}

// listen binds UDP then TCP on the same address; with port 0 the TCP
// socket takes the port the UDP socket got.
func listen(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	var lc net.ListenConfig
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		taddr := addr
		if port == "0" {
			taddr = net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		}
		ln, err := lc.Listen(ctx, "tcp", taddr)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || try >= 10 {
			return nil, nil, fmt.Errorf("listen tcp %s: %w", taddr, err)
		}
	}
}

// Serve serves DNS on pc (UDP) and ln (TCP), either of which may be nil,
// keeps the zone fed from src and sends NOTIFYs, until ctx is done. It
// closes pc and ln and returns nil on cancel.
func (s *Server) Serve(ctx context.Context, src Source, pc net.PacketConn, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			cancel()
		}
	}
	goRun := func(f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); fail(f()) }()
	}
	if pc != nil {
		srv := &dns.Server{PacketConn: pc, Handler: s, TsigSecret: s.cfg.TSIG, UDPSize: s.cfg.UDPSize}
		goRun(func() error { return s.serveOne(ctx, srv, "udp "+pc.LocalAddr().String()) })
	}
	if ln != nil {
		srv := &dns.Server{Listener: ln, Handler: s, TsigSecret: s.cfg.TSIG}
		goRun(func() error { return s.serveOne(ctx, srv, "tcp "+ln.Addr().String()) })
	}
	goRun(func() error { return s.Watch(ctx, src) })
	goRun(func() error { return s.notifyLoop(ctx) })
	wg.Wait()
	return errors.Join(errs...)
}

// serveOne runs srv until ctx is done.
func (s *Server) serveOne(ctx context.Context, srv *dns.Server, what string) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case err := <-done:
		return fmt.Errorf("serve dns %s: %w", what, err)
	case <-started:
	}
	select {
	case err := <-done:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("serve dns %s: %w", what, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.ShutdownContext(sctx); err != nil {
		return fmt.Errorf("shut down dns %s: %w", what, err)
	}
	<-done
	return nil
}

// Watch feeds the zone from src until ctx is done, watching again (with
// backoff) when the watch fails; the last zone keeps being served
// meanwhile. It returns nil on cancel. Serve calls it; call it directly
// only when mounting the Server on your own dns.Server.
func (s *Server) Watch(ctx context.Context, src Source) error {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for {
		s.z.beginList()
		var synced atomic.Bool
		err := src.Watch(ctx, func(ev ila.Event) {
			if ev.Type == ila.EventSynced {
				synced.Store(true)
			}
			s.apply(ev)
		})
		if ctx.Err() != nil {
			return nil
		}
		if synced.Load() {
			backoff = minBackoff
		}
		s.cfg.Logger.Warn("mapping watch ended; serving the last zone", "err", err, "retry", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// apply folds one event into the zone.
func (s *Server) apply(ev ila.Event) {
	if !s.z.apply(ev) {
		return
	}
	if ok, _ := s.z.state(); !ok {
		return
	}
	s.once.Do(func() { close(s.synced) })
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// notifyLoop sends NOTIFY to the configured secondaries after changes,
// debounced by Config.NotifyDelay.
func (s *Server) notifyLoop(ctx context.Context) error {
	if len(s.cfg.Notify) == 0 {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
		first := time.Now()
		t := time.NewTimer(s.cfg.NotifyDelay)
	debounce:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-s.changed:
				if time.Since(first) < 10*s.cfg.NotifyDelay {
					t.Reset(s.cfg.NotifyDelay)
				}
			case <-t.C:
				break debounce
			}
		}
		s.sendNotifies(ctx, s.z.takeDirty())
	}
}

// sendNotifies sends one NOTIFY per changed zone to every secondary, three
// tries each.
func (s *Server) sendNotifies(ctx context.Context, zones []string) {
	var wg sync.WaitGroup
	for _, target := range s.cfg.Notify {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: "udp", Timeout: time.Second}
			for _, zn := range zones {
				m := new(dns.Msg).SetNotify(zn)
				_, serial := s.z.state()
				m.Answer = []dns.RR{s.z.soa(zn, serial)}
				var err error
				for try := 0; try < 3; try++ {
					var r *dns.Msg
					r, _, err = c.ExchangeContext(ctx, m, target.String())
					if err == nil && r.Rcode != dns.RcodeSuccess {
						err = fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
					}
					if err == nil || ctx.Err() != nil {
						break
					}
				}
				if err != nil {
					s.notifyFail.Add(1)
					s.cfg.Logger.Warn("notify secondary", "secondary", target.String(), "zone", zn, "err", err)
					continue
				}
				s.notifies.Add(1)
			}
		}()
	}
	wg.Wait()
}

// clientAddr returns the address of the client of w.
func clientAddr(w dns.ResponseWriter) (addr netip.Addr, udp bool) {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), false
	}
	return netip.Addr{}, false
}
