//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/ila/datapath"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// runRouter is ilad in the router role (ILA-R): the datapath in router
// mode on cfg.RouterPorts translates traffic sent to SIR addresses by hosts
// without the mapping (and from outside), and answers an unknown or
// suspended identifier with ICMPv6 destination unreachable. Its table is
// the whole store, kept by the same agent and watch as an NVE's (pinned
// entries adopted at start, a relist after a broken watch, convergence by
// revision); it has no tasks and registers nothing. Its local API (-api)
// serves the reads: /v1/stats, /v1/datapath (ilactl where) and /v1/monitor.
// On return the datapath stays pinned, so forwarding goes on.
func runRouter(ctx context.Context, cfg *config, log *slog.Logger, ns *netns.NS, inNS func(func() error) error) error {
	if err := ensureBPFFS(cfg.BPFFS); err != nil {
		return err
	}
	bs, err := newBGPSide(cfg, log, ns, pinsExist(cfg.BPFFS))
	if err != nil {
		return err
	}
	dp, err := datapath.Open(datapath.Config{Router: true, PinPath: cfg.BPFFS, MaxMappings: cfg.MaxMappings})
	if err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	defer dp.Close() // keeps the pins: the programs keep forwarding
	if dp.StatsReset {
		log.Warn("pinned datapath counters had an older layout: new counters start from zero (tables adopted)", "bpffs", cfg.BPFFS)
	}
	if err := inNS(func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644)
	}); err != nil {
		return fmt.Errorf("enable IPv6 forwarding: %w", err)
	}
	for _, p := range cfg.RouterPorts {
		a := datapath.Attachment{Ifname: p, NetNS: cfg.NetNS, Role: datapath.RoleRouter}
		if err := dp.Attach(a); err != nil {
			return fmt.Errorf("router port %s: %w", p, err)
		}
		log.Info("router attached", "iface", p)
	}

	cli, err := etcdClient(cfg, ns)
	if err != nil {
		return err
	}
	defer cli.Close()
	record, closeEvents, err := eventsFile(cfg.Events, cfg.Node, log)
	if err != nil {
		return err
	}
	defer closeEvents()
	lc := cfg.Config
	lc.Datapath = &dpAdapter{Datapath: dp, netns: cfg.NetNS}
	lc.Source = etcdstore.NewWatcher(cli, cli, watchOptions(cfg.EtcdPrefix, log.With("component", "watch")))
	lc.Logger = log.With("component", "agent")
	policies := newTenantPolicies(dp, log.With("component", "policy"))
	lc.OnEvent = bs.wrap(func(ev ila.Event) {
		record(ev)
		policies.apply(ev)
	})
	agent, err := locator.New(lc)
	if err != nil {
		return err
	}

	var metricsLn net.Listener
	if cfg.Metrics != "" {
		if metricsLn, err = listen(cfg.Metrics, inNS); err != nil {
			return fmt.Errorf("metrics %s: %w", cfg.Metrics, err)
		}
	}
	var apiLn net.Listener
	if cfg.API != "" {
		if apiLn, err = listen(cfg.API, inNS); err != nil {
			return fmt.Errorf("local API %s: %w", cfg.API, err)
		}
	}
	log.Info("ilad starting", "role", cfg.Role, "api", cfg.API, "ports", strings.Join(cfg.RouterPorts, ","), "netns", cfg.NetNS, "bpffs", cfg.BPFFS, "metrics", cfg.Metrics)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return agent.Run(gctx) })
	if apiLn != nil {
		// Attach and prepare are refused (ErrRouter): a router has no tasks.
		h := locator.NewMonitor(newDPEvents(dp, inNS), cfg.Node).Handler(agent.Handler()) // GET /v1/monitor
		sln, sh, err := secureAPI(cfg, apiLn, h, log)
		if err != nil {
			apiLn.Close()
			return err
		}
		apiLn, h = sln, sh
		apiSrv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
			BaseContext: func(net.Listener) context.Context { return gctx }} // monitor streams end with ilad
		g.Go(func() error { return serve(gctx, apiSrv, apiLn) })
	}
	reg := prometheus.NewRegistry()
	bs.start(gctx, g, reg)
	if metricsLn != nil {
		reg.MustRegister(&collector{agent: agent, dp: dp})
		ms := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error { return serve(gctx, ms, metricsLn) })
	}
	err = g.Wait()
	log.Info("ilad stopped; datapath left pinned", "role", cfg.Role, "bpffs", cfg.BPFFS)
	return err
}
