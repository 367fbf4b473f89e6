// Command dnsbridge publishes the mapping state of an ILA data center in
// DNS: it watches the mapping store in etcd and serves the zone from
// memory (see package dnsbridge).
//
//	dnsbridge --etcd-endpoints URL,... --listen HOST:PORT --zone ZONE [--ttl DUR]
//	          [--allow-transfer CIDR,...] [--notify ADDR:PORT,...] [--tsig-file FILE]
package main

import (
	"bufio"
	"context"
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
	"strings"
	"syscall"
	"time"

	"github.com/ilamesh/ilamesh/cmd/internal/dnsmetrics"
	"github.com/ilamesh/ilamesh/dnsbridge"
	"github.com/ilamesh/ilamesh/internal/etcdtls"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// The watcher is the bridge's Source.
var _ dnsbridge.Source = (*etcdstore.Watcher)(nil)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills
	}()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbridge:", err)
		os.Exit(1)
	}
}

// run parses args, builds the etcd watcher and the DNS server, and serves
// until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dnsbridge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		endpoints = fs.String("etcd-endpoints", "", "etcd client URLs, comma-separated (required)")
		prefix    = fs.String("etcd-prefix", mapsrv.Prefix, "root of the mapping layout in etcd")
		etcdCert  = fs.String("etcd-cert", "", "client certificate for etcd (PEM; with --etcd-key)")
		etcdKey   = fs.String("etcd-key", "", "private key of --etcd-cert")
		etcdCA    = fs.String("etcd-ca", "", "CA bundle for etcd's server certificates")
		etcdUser  = fs.String("etcd-user", "", "etcd user (an etcd with authentication on: a reader, see mapsrv rbac-init)")
		etcdPWF   = fs.String("etcd-password-file", "", "file holding the password of --etcd-user")
		listen    = fs.String("listen", dnsbridge.DefaultListen, "UDP and TCP address to serve DNS on")
		zone      = fs.String("zone", dnsbridge.DefaultZone, "zone apex")
		ttl       = fs.Duration("ttl", dnsbridge.DefaultTTL, "TTL of the records")
		negTTL    = fs.Duration("negative-ttl", 0, "SOA MINIMUM for negative caching (default: --ttl)")
		ns        = fs.String("ns", "", "NS names published at the apex, comma-separated (default ns.ZONE)")
		nsAddrs   = fs.String("ns-addr", "", "glue addresses of in-zone NS names, comma-separated")
		allow     = fs.String("allow-transfer", "", "client prefixes allowed AXFR/IXFR without TSIG, comma-separated CIDRs")
		notify    = fs.String("notify", "", "secondaries sent NOTIFY on change, comma-separated ADDR:PORT")
		tsigFile  = fs.String("tsig-file", "", "file of TSIG keys, one \"NAME BASE64-SECRET\" per line (hmac-sha256 etc.)")
		rate      = fs.Float64("rate-limit", 0, "UDP queries per second allowed per client (0: no limit)")
		burst     = fs.Int("rate-burst", 0, "rate limit bucket size (default: the rate)")
		rev4      = fs.String("reverse-v4", "", "in-addr.arpa zones served, comma-separated /8, /16 or /24 prefixes (default: the /24 of each tenant address)")
		rev6      = fs.String("reverse-v6", "", "extra ip6.arpa zones, comma-separated nibble-aligned prefixes (the domains' SIR /64s are always served)")
		metrics   = fs.String("metrics", "", "HOST:PORT to serve Prometheus /metrics on (default: none)")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	eps := splitList(*endpoints)
	if len(eps) == 0 {
		return errors.New("--etcd-endpoints is required")
	}
	cfg := dnsbridge.Config{
		Zone: *zone, TTL: *ttl, NegativeTTL: *negTTL, Listen: *listen,
		NS: splitList(*ns), RateLimit: *rate, RateBurst: *burst, Logger: log,
	}
	var err error
	if cfg.NSAddrs, err = parseList("--ns-addr", *nsAddrs, netip.ParseAddr); err != nil {
		return err
	}
	if cfg.AllowTransfer, err = parseList("--allow-transfer", *allow, netip.ParsePrefix); err != nil {
		return err
	}
	if cfg.Notify, err = parseList("--notify", *notify, netip.ParseAddrPort); err != nil {
		return err
	}
	if cfg.ReverseV4, err = parseList("--reverse-v4", *rev4, netip.ParsePrefix); err != nil {
		return err
	}
	if cfg.ReverseV6, err = parseList("--reverse-v6", *rev6, netip.ParsePrefix); err != nil {
		return err
	}
	if *tsigFile != "" {
		if cfg.TSIG, err = readTSIG(*tsigFile); err != nil {
			return err
		}
	}
	srv, err := dnsbridge.New(cfg)
	if err != nil {
		return err
	}

	ef := etcdtls.Files{Cert: *etcdCert, Key: *etcdKey, CA: *etcdCA, User: *etcdUser, PasswordFile: *etcdPWF}
	etls, err := ef.Config()
	if err != nil {
		return err
	}
	user, password, err := ef.Credentials()
	if err != nil {
		return err
	}
	ecfg := clientv3.Config{
		Endpoints:   eps,
		TLS:         etls,
		Username:    user,
		Password:    password,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	etcdtls.Resume(&ecfg) // reconnect within 500 ms of etcd's return
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return fmt.Errorf("etcd client %v: %w", eps, err)
	}
	defer cli.Close()
	w := etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{Prefix: *prefix, Logger: log, MaxBackoff: 500 * time.Millisecond})

	g, ctx := errgroup.WithContext(ctx)
	if *metrics != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(dnsmetrics.New(srv))
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", *metrics)
		if err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		log.Info("metrics listening", "addr", ln.Addr().String())
		g.Go(func() error {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}
	g.Go(func() error { return srv.Run(ctx, w) })
	return g.Wait()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseList[T any](flagName, s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range splitList(s) {
		v, err := parse(f)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flagName, f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// readTSIG reads "NAME SECRET" lines; blank lines and # comments are
// skipped.
func readTSIG(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tsig file: %w", err)
	}
	defer f.Close()
	keys := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("tsig file %s line %d: want NAME SECRET", path, n)
		}
		keys[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tsig file %s: %w", path, err)
	}
	return keys, nil
}
