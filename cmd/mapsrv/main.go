// Command mapsrv is the ILA mapping service: the etcd-backed authority for
// identifier -> locator state, with the registration protocol (UDP), the
// management API (HTTP/JSON) and Prometheus metrics.
//
// By default it runs an embedded etcd in --data-dir whose client URL is
// --etcd-client-url (so that `etcdctl --endpoints URL get --prefix /ila/`
// works); --etcd-endpoints uses an external etcd cluster instead.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ilamesh/ilamesh/cmd/internal/dnsmetrics"
	"github.com/ilamesh/ilamesh/dnsbridge"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed"
	"github.com/ilamesh/ilamesh/internal/etcdtls"
	"github.com/ilamesh/ilamesh/internal/zapslog"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills
	}()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mapsrv:", err)
		os.Exit(1)
	}
}

type config struct {
	dataDir       string
	etcdClientURL string
	etcdPeerURL   string
	apiAddr       string
	apiTokenFile  string
	apiCert       string
	apiKey        string
	dnsListen     string
	dnsZone       string
	dnsTTL        time.Duration
	apiInsecure   bool
	apiMaxConns   int
	apiPerHost    int
	apiIdle       time.Duration
	regAddr       string
	endpoints     string
	etcdCert      string
	etcdKey       string
	etcdCA        string
	etcdUser      string
	etcdPassword  string
	rbacUsers     string
	rbacRootFile  string
	keys          string
	keyName       string
	inFlight      time.Duration
	suspendTO     time.Duration
	standbyClaims standbyClaimsFlag
	maxExpectTTL  time.Duration
	flapMoves     int
	flapWindow    time.Duration
	maxLifetime   time.Duration
	sweep         time.Duration
	logLevel      string
	live          mapsrv.LivenessConfig
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("mapsrv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dataDir, "data-dir", "mapsrv-data", "data directory of the embedded etcd")
	fs.StringVar(&c.etcdClientURL, "etcd-client-url", "", "client URL of the embedded etcd (default unix://<data-dir>/etcd.sock)")
	fs.StringVar(&c.etcdPeerURL, "etcd-peer-url", "", "peer URL of the embedded etcd (default a unix socket in the data dir)")
	fs.StringVar(&c.apiAddr, "api-addr", "127.0.0.1:7480", "management API listen address")
	fs.StringVar(&c.apiTokenFile, "api-token-file", "", "bearer tokens the management API requires (one per line, at least 16 characters, \"read-only TOKEN\" for one that can only read; needed unless --api-addr is a loopback address)")
	fs.StringVar(&c.apiCert, "api-cert", "", "serve the management API over TLS with this PEM certificate (clients verify it: ilactl --ca-file)")
	fs.StringVar(&c.apiKey, "api-key", "", "private key (PEM) of --api-cert")
	fs.BoolVar(&c.apiInsecure, "api-insecure", false, "serve the management API on a non-loopback address without --api-token-file (anyone who reaches it can move tasks)")
	fs.IntVar(&c.apiMaxConns, "api-max-conns", 1024, "most management API connections held at once (capped at half the open file limit); more are closed at once")
	fs.IntVar(&c.apiPerHost, "api-max-conns-per-host", 64, "most management API connections held at once from one remote address (capped at a quarter of --api-max-conns)")
	fs.DurationVar(&c.apiIdle, "api-idle-timeout", time.Minute, "how long an idle keep-alive management API connection is kept")
	fs.StringVar(&c.dnsListen, "dns-listen", "", "also publish the mapping in DNS on this UDP and TCP HOST:PORT (the DNS bridge in process, for a single machine; empty: off)")
	fs.StringVar(&c.dnsZone, "dns-zone", dnsbridge.DefaultZone, "zone apex of --dns-listen")
	fs.DurationVar(&c.dnsTTL, "dns-ttl", dnsbridge.DefaultTTL, "TTL of the records of --dns-listen")
	fs.StringVar(&c.regAddr, "reg-addr", "[::]:7481", "registration protocol UDP listen address (needs --keys)")
	fs.StringVar(&c.endpoints, "etcd-endpoints", "", "comma-separated endpoints of an external etcd cluster (instead of the embedded one)")
	fs.StringVar(&c.etcdCert, "etcd-cert", "", "client certificate for the external etcd")
	fs.StringVar(&c.etcdKey, "etcd-key", "", "client key for the external etcd")
	fs.StringVar(&c.etcdCA, "etcd-ca", "", "CA bundle for the external etcd")
	fs.StringVar(&c.etcdUser, "etcd-user", "", "user name for the external etcd")
	fs.StringVar(&c.etcdPassword, "etcd-password", "", "password for the external etcd (default $ETCD_PASSWORD)")
	fs.StringVar(&c.rbacUsers, "etcd-rbac-users", "", "embedded etcd: turn on authentication with the least-privilege roles and these users (the users file of 'mapsrv rbac-init'); mapsrv connects as --etcd-user (default mapsrv) with its password from the file")
	fs.StringVar(&c.rbacRootFile, "etcd-root-password-file", "", "with --etcd-rbac-users: file holding the password of etcd's root user")
	fs.StringVar(&c.keys, "keys", "", "registration keys file (<keyid> <nve> <hex-secret> per line)")
	fs.StringVar(&c.keyName, "key-name", "mapsrv", "owner name of mapsrv's own key in --keys (signs replies and notifications)")
	fs.DurationVar(&c.inFlight, "in-flight", 10*time.Second, "how long a previous NVE forwards in-flight packets after a hot move")
	fs.DurationVar(&c.suspendTO, "suspend-timeout", 2*time.Minute, "how long a warm or cold move may keep a task suspended before it is rolled back to the NVE it was leaving")
	fs.Var(&c.standbyClaims, "standby-claims", "when a claim from a task's standby (an NVE that registered a prepared port for it) moves a task another live NVE hosts: expected (only while an orchestrator's expectation names that NVE: POST /v1/tasks/{tenant}/{name}/expect, ilactl expect), trust (always: any NVE's key can take any task), off (never: only an operator's move, a failover or a task nothing hosts justify such a claim); docs/registration.md 7.4")
	fs.DurationVar(&c.maxExpectTTL, "max-expect-ttl", mapsrv.DefaultMaxExpectTTL, "longest time an expectation of a move (POST .../expect) may last; an orchestrator renews it for a longer migration")
	fs.IntVar(&c.flapMoves, "flap-moves", 5, "moves of a task allowed within --flap-window; more are refused (nothing changes)")
	fs.DurationVar(&c.flapWindow, "flap-window", 180*time.Second, "flap damping window")
	fs.DurationVar(&c.maxLifetime, "max-lifetime", mapsrv.DefaultMaxLifetime, "longest lifetime granted: a registration gets the smaller of what it asks and this (at most 72h49m)")
	fs.DurationVar(&c.sweep, "sweep-interval", time.Second, "lifetime sweeper period")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	livenessFlags(fs, &c.live)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.etcdPassword == "" {
		c.etcdPassword = os.Getenv("ETCD_PASSWORD")
	}
	switch {
	case c.inFlight <= 0:
		return nil, fmt.Errorf("--in-flight %s: must be positive", c.inFlight)
	case c.suspendTO <= 0:
		return nil, fmt.Errorf("--suspend-timeout %s: must be positive", c.suspendTO)
	case c.flapMoves <= 0:
		return nil, fmt.Errorf("--flap-moves %d: must be positive", c.flapMoves)
	case c.flapWindow <= 0:
		return nil, fmt.Errorf("--flap-window %s: must be positive", c.flapWindow)
	case c.maxLifetime <= 0 || c.maxLifetime > mapsrv.MaxLifetime:
		return nil, fmt.Errorf("--max-lifetime %s: must be positive and at most %s", c.maxLifetime, mapsrv.MaxLifetime)
	case c.sweep <= 0:
		return nil, fmt.Errorf("--sweep-interval %s: must be positive", c.sweep)
	case c.maxExpectTTL <= 0:
		return nil, fmt.Errorf("--max-expect-ttl %s: must be positive", c.maxExpectTTL)
	case c.apiMaxConns <= 0:
		return nil, fmt.Errorf("--api-max-conns %d: must be positive", c.apiMaxConns)
	case c.apiPerHost <= 0:
		return nil, fmt.Errorf("--api-max-conns-per-host %d: must be positive", c.apiPerHost)
	case c.apiIdle <= 0:
		return nil, fmt.Errorf("--api-idle-timeout %s: must be positive", c.apiIdle)
	}
	if c.rbacUsers != "" && (c.endpoints != "" || c.rbacRootFile == "") {
		return nil, errors.New("--etcd-rbac-users is for the embedded etcd and needs --etcd-root-password-file (an external cluster: mapsrv rbac-init)")
	}
	if (c.apiCert == "") != (c.apiKey == "") {
		return nil, errors.New("--api-cert and --api-key go together")
	}
	host, _, err := net.SplitHostPort(c.apiAddr)
	if err != nil {
		return nil, fmt.Errorf("--api-addr %q: want HOST:PORT: %w", c.apiAddr, err)
	}
	if c.apiTokenFile == "" && !c.apiInsecure && !isLoopback(host) {
		return nil, fmt.Errorf("--api-addr %s is not a loopback address: give --api-token-file (or --api-insecure to let anyone who reaches it move tasks)", c.apiAddr)
	}
	return c, nil
}

// isLoopback reports whether a listen host only accepts local connections.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "rbac-init" {
		return runRBACInit(ctx, args[1:], stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log, err := newLogger(cfg.logLevel, stderr)
	if err != nil {
		return err
	}

	var bridge *dnsbridge.Server
	if cfg.dnsListen != "" {
		if bridge, err = dnsbridge.New(dnsbridge.Config{Zone: cfg.dnsZone, TTL: cfg.dnsTTL, Listen: cfg.dnsListen, Logger: log.With("component", "dns")}); err != nil {
			return fmt.Errorf("--dns-listen: %w", err)
		}
	}
	var tokens mapsrv.TokenRoles
	if cfg.apiTokenFile != "" {
		if tokens, err = mapsrv.ReadTokenRoles(cfg.apiTokenFile); err != nil {
			return err
		}
	}

	// Registration keys and notifier.
	var keys regproto.KeyFile
	var myKeyID uint32
	var myKey regproto.KeyEntry
	var notifier *mapsrv.RegNotifier
	if cfg.keys != "" {
		if keys, err = regproto.LoadKeys(cfg.keys); err != nil {
			return err
		}
		var ok bool
		if myKeyID, myKey, ok = keys.Lookup(cfg.keyName); !ok {
			return fmt.Errorf("keys file %s: no key owned by %q (--key-name) to sign replies", cfg.keys, cfg.keyName)
		}
	}

	// Store: embedded etcd, or an external cluster.
	var endpoints []string
	var ccfg clientv3.Config
	if cfg.endpoints != "" {
		endpoints = strings.Split(cfg.endpoints, ",")
		tc, err := etcdtls.Files{Cert: cfg.etcdCert, Key: cfg.etcdKey, CA: cfg.etcdCA}.Config()
		if err != nil {
			return err
		}
		ccfg.TLS = tc
		ccfg.Username, ccfg.Password = cfg.etcdUser, cfg.etcdPassword
	} else {
		if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		lock, err := lockDataDir(cfg.dataDir)
		if err != nil {
			return err
		}
		defer lock.Close()
		abs, err := filepath.Abs(cfg.dataDir)
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		ecfg := etcdembed.Config{Dir: filepath.Join(abs, "etcd"), Name: "mapsrv", Logger: zapslog.New(log, "etcd")}
		if cfg.etcdClientURL != "" {
			ecfg.ClientURLs = []string{cfg.etcdClientURL}
		} else {
			ecfg.ClientURLs = []string{"unix://" + filepath.Join(abs, "etcd.sock")}
		}
		if cfg.etcdPeerURL != "" {
			ecfg.PeerURLs = []string{cfg.etcdPeerURL}
		}
		srv, err := etcdembed.Start(ctx, ecfg)
		if err != nil {
			return err
		}
		defer srv.Close()
		endpoints = srv.Endpoints()
		log.Info("embedded etcd ready", "endpoints", endpoints, "data_dir", ecfg.Dir)
	}
	if err := embeddedRBAC(ctx, cfg, endpoints, &ccfg, log); err != nil {
		return err
	}
	ccfg.Endpoints = endpoints
	ccfg.DialTimeout = 5 * time.Second
	ccfg.Logger = zapslog.New(log, "etcd-client")
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return fmt.Errorf("etcd client of %v: %w", endpoints, err)
	}
	defer cli.Close()

	if cfg.keys != "" {
		notifier = &mapsrv.RegNotifier{KeyID: myKeyID, Secret: myKey.Secret, PrivateKey: myKey.Private, Keys: keys}
		defer notifier.Close()
	}
	store := etcdstore.New(cli)
	scfg := mapsrv.Config{
		Store:          store,
		InFlight:       cfg.inFlight,
		SuspendTimeout: cfg.suspendTO,
		FlapMoves:      cfg.flapMoves,
		FlapWindow:     cfg.flapWindow,
		MaxLifetime:    cfg.maxLifetime,
		SweepInterval:  cfg.sweep,
		StandbyClaims:  mapsrv.StandbyClaims(cfg.standbyClaims),
		MaxExpectTTL:   cfg.maxExpectTTL,
		Logger:         log.With("component", "service"),
		Liveness:       cfg.live,
	}
	if notifier != nil {
		scfg.Notifier = notifier
	}
	sweepWatcher := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{Logger: log.With("component", "sweep-watch")})
	scfg.Events = sweepWatcher.Watch
	svc, err := mapsrv.New(scfg)
	if err != nil {
		return err
	}

	m := newMetrics(svc)
	watcher := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{Logger: log.With("component", "watch"), OnError: func(error) { m.watchErrors.Inc() }})
	apiWatcher := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{Logger: log.With("component", "api-watch")})

	// The DNS bridge in process: its own watch of the same store.
	var bridgeWatcher *etcdstore.Watcher
	if bridge != nil {
		bridgeWatcher = etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{Logger: log.With("component", "dns-watch")})
		m.reg.MustRegister(dnsmetrics.New(bridge))
	}

	mux := http.NewServeMux()
	mux.Handle("/v1/", mapsrv.NewAPI(svc, mapsrv.APIOptions{
		Tokens: tokens.Admin, ReadOnlyTokens: tokens.ReadOnly,
		Audit: func(r mapsrv.AuditRecord) {
			log.Info("api audit", "remote", r.Remote, "method", r.Method, "path", r.Path, "status", r.Status,
				"role", r.Role, "token", r.Token, "took", r.Took)
		},
		Watch:   apiWatcher.Watch,
		Version: version(),
		Health: func(ctx context.Context) error {
			_, err := cli.Get(ctx, "health-check-key")
			return err
		},
	}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	apiLn, err := net.Listen("tcp", cfg.apiAddr)
	if err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	maxConns := fdBoundConns(cfg.apiMaxConns)
	apiLim := newConnLimiter(apiLn, maxConns, min(cfg.apiPerHost, max(maxConns/4, 1)))
	m.apiLimiter = apiLim
	apiServe, err := apiTLS(apiLim, cfg, log)
	if err != nil {
		return err
	}
	log.Info("management api listening", "addr", apiLn.Addr().String(), "tokens", len(tokens.Admin), "read_only_tokens", len(tokens.ReadOnly), "max_conns", maxConns, "max_conns_per_host", apiLim.perHost)
	if len(tokens.Admin)+len(tokens.ReadOnly) == 0 && cfg.apiInsecure {
		log.Warn("management api serves without a token (--api-insecure): anyone who reaches it can move tasks")
	}

	var regSrv *regproto.Server
	if cfg.keys != "" {
		ua, err := net.ResolveUDPAddr("udp", cfg.regAddr)
		if err != nil {
			apiLn.Close()
			return fmt.Errorf("--reg-addr %q: %w", cfg.regAddr, err)
		}
		conn, err := net.ListenUDP("udp", ua)
		if err != nil {
			apiLn.Close()
			return fmt.Errorf("registration listener: %w", err)
		}
		defer conn.Close()
		// The sequence ceilings in etcd make a restarted mapsrv refuse the
		// replay of a request its previous run accepted.
		regSrv = &regproto.Server{Conn: conn, Keys: keys, KeyID: myKeyID, Secret: myKey.Secret, PrivateKey: myKey.Private, Handler: svc, Logger: log.With("component", "registration"),
			SeqStore: etcdstore.SeqStore{KV: cli}}
		m.regServer = regSrv
		log.Info("registration protocol listening", "addr", conn.LocalAddr().String())
	} else {
		log.Warn("no --keys: registration protocol disabled (management API only)")
	}

	g, gctx := errgroup.WithContext(ctx)
	// Request contexts derive from gctx, so that streaming watches end on
	// shutdown instead of holding it up.
	// Read and write deadlines bound every request but the watch stream,
	// which clears them (streamDeadlines); idle keep-alive connections
	// close after --api-idle-timeout.
	hs := &http.Server{
		Handler:           streamDeadlines(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       cfg.apiIdle,
		BaseContext:       func(net.Listener) context.Context { return gctx },
		ErrorLog:          slog.NewLogLogger(log.With("component", "api").Handler(), slog.LevelDebug),
	}
	g.Go(func() error {
		if err := hs.Serve(apiServe); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("management api: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	if regSrv != nil {
		g.Go(func() error { return regSrv.Run(gctx) })
	}
	g.Go(func() error { return svc.Run(gctx) })
	if bridge != nil {
		g.Go(func() error { return bridge.Run(gctx, bridgeWatcher) })
	}
	g.Go(func() error {
		synced := false
		return watcher.Watch(gctx, func(ev ila.Event) {
			switch {
			case ev.Type == ila.EventSynced:
				synced = true
			case synced && ev.Type == ila.EventTaskUpsert && !ev.Task.Updated.IsZero():
				m.watchLag.Observe(time.Since(ev.Task.Updated).Seconds())
			}
		})
	})
	err = g.Wait()
	log.Info("mapsrv stopped", "err", err)
	return err
}

// metrics exposes the Service's and the registration server's counters on
// a private registry.
type metrics struct {
	reg         *prometheus.Registry
	apiLimiter  *connLimiter
	svc         *mapsrv.Service
	regServer   *regproto.Server
	watchLag    prometheus.Histogram
	watchErrors prometheus.Counter

	registrations, moves, authFailures, replays, malformed, expiries, suspendTimeouts, etcdErrors,
	notifications, duplicates, badValues, apiRefused, refreshesHeld, moveRetries *prometheus.Desc
}

func newMetrics(svc *mapsrv.Service) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		svc: svc,
		watchLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ila_mapsrv_watch_lag_seconds", Help: "Time from a task record's update to its watch event at mapsrv.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		watchErrors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "ila_mapsrv_watch_errors_total", Help: "Watch interruptions (compaction, lost leader, unreachable etcd)."}),
		registrations:   prometheus.NewDesc("ila_mapsrv_registrations_total", "Registrations by result.", []string{"result"}, nil),
		moves:           prometheus.NewDesc("ila_mapsrv_moves_total", "Moves by mode (refused: flap damped or duplicate; unjustified: a claim from an NVE that does not host the task, refused).", []string{"mode"}, nil),
		authFailures:    prometheus.NewDesc("ila_mapsrv_auth_failures_total", "Registration datagrams with an unknown key or a bad HMAC.", nil, nil),
		replays:         prometheus.NewDesc("ila_mapsrv_replays_total", "Registration datagrams refused by the replay window.", nil, nil),
		malformed:       prometheus.NewDesc("ila_mapsrv_malformed_datagrams_total", "Registration datagrams that did not parse.", nil, nil),
		expiries:        prometheus.NewDesc("ila_mapsrv_expiries_total", "Tasks removed by the lifetime sweeper.", nil, nil),
		suspendTimeouts: prometheus.NewDesc("ila_mapsrv_suspend_timeouts_total", "Warm or cold moves rolled back because the task never registered at its destination.", nil, nil),
		etcdErrors:      prometheus.NewDesc("ila_mapsrv_etcd_errors_total", "etcd errors other than conflicts.", nil, nil),
		notifications:   prometheus.NewDesc("ila_mapsrv_notifications_total", "Move notifications to previous NVEs by result.", []string{"result"}, nil),
		duplicates:      prometheus.NewDesc("ila_mapsrv_duplicates_total", "Moves and claims refused by flap damping (the task stays where it is).", nil, nil),
		badValues:       prometheus.NewDesc("ila_mapsrv_malformed_values_total", "Malformed stored values skipped.", nil, nil),
		apiRefused:      prometheus.NewDesc("ila_mapsrv_api_connections_refused_total", "Management API connections closed at once by --api-max-conns or --api-max-conns-per-host.", nil, nil),
		moveRetries:     prometheus.NewDesc("ila_mapsrv_move_retries_total", "Moves decided again on fresh reads because the destination NVE's or the domain's record changed between the read and the commit (a liveness transition, a locator pin).", nil, nil),
		refreshesHeld:   prometheus.NewDesc("ila_mapsrv_refreshes_held_total", "Refreshes that changed nothing but the expiry, held in memory by the replica that decides for the NVE instead of written to the watched task record.", nil, nil),
	}
	m.reg.MustRegister(m, m.watchLag, m.watchErrors, newLivenessMetrics(svc))
	return m
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.registrations, m.moves, m.authFailures, m.replays, m.malformed, m.expiries, m.suspendTimeouts, m.etcdErrors, m.notifications, m.duplicates, m.badValues, m.apiRefused, m.refreshesHeld, m.moveRetries} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.svc.Stats()
	c := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	c(m.registrations, st.RegAccepted, "accepted")
	c(m.registrations, st.RegRejected, "rejected")
	c(m.registrations, st.RegConflict, "conflict")
	c(m.registrations, st.RegError, "error")
	c(m.moves, st.MovesHot, "hot")
	c(m.moves, st.MovesWarm, "warm")
	c(m.moves, st.MovesCold, "cold")
	c(m.moves, st.MovesRefused, "refused")
	c(m.moves, st.ClaimsUnjustified, "unjustified")
	c(m.expiries, st.Expiries)
	c(m.suspendTimeouts, st.SuspendTimeouts)
	c(m.etcdErrors, st.StoreErrors)
	c(m.notifications, st.NotifySent, "sent")
	c(m.notifications, st.NotifyFailed, "failed")
	c(m.notifications, st.NotifyDropped, "dropped")
	c(m.duplicates, st.DuplicatesMarked)
	c(m.badValues, st.MalformedSkipped)
	c(m.refreshesHeld, st.RefreshesHeld)
	c(m.moveRetries, st.MoveRetries)
	if m.apiLimiter != nil {
		c(m.apiRefused, m.apiLimiter.refused.Load())
	}
	var rs regproto.ServerStats
	if m.regServer != nil {
		rs = m.regServer.Stats()
	}
	c(m.authFailures, rs.AuthFailures)
	c(m.replays, rs.Replays)
	c(m.malformed, rs.Malformed)
}

// apiTLS wraps the management API listener in TLS when --api-cert is
// given; without it, bearer tokens cross the network in clear, which is
// worth a warning off loopback.
func apiTLS(ln net.Listener, cfg *config, log *slog.Logger) (net.Listener, error) {
	if cfg.apiCert == "" {
		if host, _, _ := net.SplitHostPort(cfg.apiAddr); !isLoopback(host) {
			log.Warn("management api serves plain HTTP off loopback: tokens cross the network in clear (give --api-cert and --api-key)")
		}
		return ln, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.apiCert, cfg.apiKey)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("--api-cert/--api-key: %w", err)
	}
	log.Info("management api serves TLS", "cert", cfg.apiCert)
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}

// standbyClaimsFlag is --standby-claims: expected (the default), trust
// (or true) or off (or false).
type standbyClaimsFlag mapsrv.StandbyClaims

func (f *standbyClaimsFlag) String() string { return mapsrv.StandbyClaims(*f).String() }

func (f *standbyClaimsFlag) Set(s string) error {
	m, err := mapsrv.ParseStandbyClaims(s)
	if err != nil {
		return fmt.Errorf("want expected, trust or off")
	}
	*f = standbyClaimsFlag(m)
	return nil
}
