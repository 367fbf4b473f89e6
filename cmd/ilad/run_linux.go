//go:build linux

package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/ila/datapath"
	"github.com/ilamesh/ilamesh/internal/etcdtls"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/l2compat"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/ndemu"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// run is ilad: parse, build bottom-up, run everything in one errgroup.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}

	var ns *netns.NS
	if cfg.NetNS != "" {
		if ns, err = netns.Open(cfg.NetNS); err != nil {
			return err
		}
		defer ns.Close()
	}
	inNS := func(fn func() error) error {
		if ns == nil {
			return fn()
		}
		return ns.Do(fn)
	}
	if cfg.Role == roleRouter {
		return runRouter(ctx, cfg, log, ns, inNS)
	}

	// Datapath: adopt pinned maps (never flushed at start).
	if err := ensureBPFFS(cfg.BPFFS); err != nil {
		return err
	}
	bs, err := newBGPSide(cfg, log, ns, pinsExist(cfg.BPFFS))
	if err != nil {
		return err
	}
	dpCfg := datapath.Config{PinPath: cfg.BPFFS, MaxMappings: cfg.MaxMappings}
	if cfg.MissPolicy == "drop" {
		dpCfg.MissPolicy = datapath.MissDrop
	}
	dp, err := datapath.Open(dpCfg)
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
	if cfg.Uplink != "" {
		if err := dp.Attach(datapath.Attachment{Ifname: cfg.Uplink, NetNS: cfg.NetNS, Role: datapath.RoleUplink}); err != nil {
			return fmt.Errorf("uplink %s: %w", cfg.Uplink, err)
		}
	}
	dpa := &dpAdapter{Datapath: dp, netns: cfg.NetNS}

	// etcd, read-only.
	cli, err := etcdClient(cfg, ns)
	if err != nil {
		return err
	}
	defer cli.Close()
	store := etcdstore.New(cli)
	watcher := etcdstore.NewWatcher(cli, cli, watchOptions(cfg.EtcdPrefix, log.With("component", "watch")))

	// Registration keys, client and notification server.
	var (
		keys     regproto.KeyFile
		keyID    uint32
		secret   []byte
		regCli   *regproto.Client
		notifSrv *regproto.Server
	)
	if cfg.KeyFile != "" {
		if keys, err = regproto.LoadKeys(cfg.KeyFile); err != nil {
			return err
		}
		keyID = cfg.KeyID
		if keyID == 0 {
			id, _, ok := keys.Lookup(cfg.Node)
			if !ok {
				return fmt.Errorf("keys file %s: no key for node %s", cfg.KeyFile, cfg.Node)
			}
			keyID = id
		}
		owner, sec, ok := keys.Secret(keyID)
		if !ok {
			return fmt.Errorf("keys file %s: no key id %d", cfg.KeyFile, keyID)
		}
		if owner != cfg.Node {
			return fmt.Errorf("keys file %s: key id %d belongs to %s, not %s", cfg.KeyFile, keyID, owner, cfg.Node)
		}
		secret = sec
	}
	var reg locator.Registrar
	var agentRef atomic.Pointer[locator.Agent] // heartbeats report its applied revision
	if len(cfg.Mapsrv) > 0 {
		var conn *net.UDPConn
		if err := inNS(func() error {
			network := "udp6"
			if cfg.Mapsrv[0].Addr().Unmap().Is4() {
				network = "udp4"
			}
			var err error
			conn, err = net.ListenUDP(network, nil)
			return err
		}); err != nil {
			return fmt.Errorf("registration socket: %w", err)
		}
		defer conn.Close()
		// Replies are accepted only when signed by a mapsrv key, not by
		// another NVE's key that happens to be in the file.
		// With several addresses (mapsrv's replicas) the client speaks to
		// one at a time and moves on when it leaves two tries in a row
		// unanswered (heartbeats count: a dead replica is left within
		// about two heartbeat intervals).
		// A restart starts at the replica the last run switched to
		// (mapsrvorder.go).
		curFile := mapsrvCurrentFile(cfg.StateFile)
		servers, note := mapsrvOrder(cfg.Mapsrv, curFile)
		if note != "" {
			log.Warn("remembered mapsrv replica not used; starting with the first of -mapsrv", "why", note)
		} else if servers[0] != cfg.Mapsrv[0] {
			log.Info("starting with the mapsrv replica the last run switched to", "mapsrv", servers[0], "file", curFile)
		}
		regCli = &regproto.Client{Conn: conn, Server: servers[0], Fallbacks: servers[1:], KeyID: keyID, Secret: secret, Keys: ownedBy{keys, cfg.MapsrvName},
			OnSwitch: func(from, to netip.AddrPort, unanswered int) {
				log.Warn("mapsrv replica not answering; switching to the next", "from", from, "to", to, "unanswered_tries", unanswered)
				if err := saveMapsrvCurrent(curFile, to); err != nil {
					log.Warn("remember the mapsrv replica in use", "file", curFile, "err", err)
				}
			}}
		reg = registrar{c: regCli, agent: &agentRef, api: cfg.APIAdvertise}
	} else {
		log.Warn("no -mapsrv: tasks are attached locally but not registered")
	}

	// Port hooks: ND emulator, IPv4 layer.
	ports, err := locator.NewNetlinkPorts(ns, ila.GatewayMAC())
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer ports.Close()
	dir := &directory{}
	var hooks []locator.PortHook
	var emu *ndemu.Emulator
	if *cfg.ND {
		emu, err = ndemu.New(ndemu.Config{
			NetNS:     cfg.NetNS,
			Directory: dir,
			Events:    dir,
			Logger:    log.With("component", "ndemu"),
		})
		if err != nil {
			return err
		}
		hooks = append(hooks, ndHook{emu})
	}
	var l2 *l2compat.Manager
	if cfg.Underlay.IsValid() {
		l2, err = l2compat.New(l2compat.Config{
			NVE: cfg.Node, Underlay: cfg.Underlay, NetNS: cfg.NetNS, Logger: log.With("component", "l2compat"),
			Attach: func(ctx context.Context, c l2compat.Claim) error {
				if !dir.agent.Claim(c.Ifindex, c.IPv4) {
					// Not the address of the task on that port: l2compat
					// reverts the local delivery it installed.
					return fmt.Errorf("claim %v: address not declared on the port", c)
				}
				return nil
			},
			Spoofed: func(c l2compat.Claim, reason string) {
				log.Warn("spoofed gratuitous ARP refused", "iface", c.Port, "ipv4", c.IPv4, "mac", c.MAC, "reason", reason)
			},
		})
		if err != nil {
			return err
		}
		defer l2.Close()
		hooks = append(hooks, l2Hook{l2})
	}

	lc := cfg.Config
	lc.Datapath, lc.Source, lc.Lookup, lc.Misses = dpa, watcher, store, missReader{dp}
	lc.Registrar, lc.Ports, lc.Hooks = reg, ports, hooks
	lc.Hypervisor = qmpHypervisor{}
	if r, ok := reg.(registrar); ok {
		lc.Heartbeater = r
	}
	lc.Logger = log.With("component", "agent")
	record, closeEvents, err := eventsFile(cfg.Events, cfg.Node, log)
	if err != nil {
		return err
	}
	defer closeEvents()
	policies := newTenantPolicies(dp, log.With("component", "policy"))
	lc.OnEvent = func(ev ila.Event) {
		record(ev)
		policies.apply(ev)
		if l2 != nil {
			if err := l2.Apply(ev); err != nil {
				log.Warn("ipv4 layer apply", "err", err)
			}
		}
		if emu != nil && (ev.Type == ila.EventDomainUpsert || ev.Type == ila.EventDomainDelete || ev.Type == ila.EventSynced) {
			if err := emu.SetPrefixes(dir.agent.Prefixes()); err != nil {
				log.Warn("ndemu prefixes", "err", err)
			}
		}
	}
	lc.OnEvent = bs.wrap(lc.OnEvent)
	agent, err := locator.New(lc)
	if err != nil {
		return err
	}
	dir.agent, dir.log = agent, log.With("component", "ndemu")
	agentRef.Store(agent)

	if cfg.NotifyListen.IsValid() {
		var conn *net.UDPConn
		if err := inNS(func() error {
			var err error
			conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.NotifyListen))
			return err
		}); err != nil {
			return fmt.Errorf("notification listener %s: %w", cfg.NotifyListen, err)
		}
		defer conn.Close()
		notifSrv = &regproto.Server{Conn: conn, Keys: ownedBy{keys, cfg.MapsrvName}, KeyID: keyID, Secret: secret, Logger: log.With("component", "notify"),
			Handler: notifyHandler(agent, cfg.MapsrvName, log)}
		if cfg.StateFile != "" {
			// Next to the state file: a notification captured before a
			// restart is refused after it (docs/registration.md 7.1).
			notifSrv.SeqStore = &regproto.FileSeqStore{Path: strings.TrimSuffix(cfg.StateFile, ".json") + ".notify-seq.json"}
			if err := os.MkdirAll(filepath.Dir(cfg.StateFile), 0o755); err != nil {
				return fmt.Errorf("state dir: %w", err)
			}
		}
	}

	apiLn, err := listen(cfg.API, inNS)
	if err != nil {
		return fmt.Errorf("local API %s: %w", cfg.API, err)
	}
	var apiHandler http.Handler = agent.Handler()
	if bs != nil {
		apiHandler = bs.handler(apiHandler)
	}
	apiHandler = locator.NewMonitor(newDPEvents(dp, inNS), cfg.Node).Handler(apiHandler) // GET /v1/monitor
	sln, sh, err := secureAPI(cfg, apiLn, apiHandler, log)
	if err != nil {
		apiLn.Close()
		return err
	}
	apiLn, apiHandler = sln, sh
	apiSrv := &http.Server{Handler: apiHandler, ReadHeaderTimeout: 5 * time.Second}
	var metricsLn net.Listener
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(&collector{agent: agent, dp: dp, emu: emu, reg: regCli, notif: notifSrv})
	if cfg.Metrics != "" {
		if metricsLn, err = listen(cfg.Metrics, inNS); err != nil {
			return fmt.Errorf("metrics %s: %w", cfg.Metrics, err)
		}
	}

	log.Info("ilad starting", "locators", fmt.Sprint(cfg.Locators), "uplink", cfg.Uplink, "netns", cfg.NetNS, "bpffs", cfg.BPFFS, "api", cfg.API, "mode", cfg.Mode)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return agent.Run(gctx) })
	bs.start(gctx, g, reg2)
	if emu != nil {
		g.Go(func() error { return emu.Run(gctx) })
	}
	if l2 != nil {
		g.Go(func() error { return l2.Run(gctx) })
	}
	if notifSrv != nil {
		g.Go(func() error { return notifSrv.Run(gctx) })
	}
	apiSrv.BaseContext = func(net.Listener) context.Context { return gctx } // monitor streams end with ilad
	g.Go(func() error { return serve(gctx, apiSrv, apiLn) })
	if metricsLn != nil {
		ms := &http.Server{Handler: promhttp.HandlerFor(reg2, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error { return serve(gctx, ms, metricsLn) })
	}
	g.Go(func() error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case now := <-t.C:
				if _, err := dp.ExpireInFlight(now); err != nil {
					log.Warn("expire in-flight entries", "err", err)
				}
			}
		}
	})
	err = g.Wait()
	log.Info("ilad stopped; datapath left pinned", "bpffs", cfg.BPFFS)
	return err
}

// etcdClient is the read-only etcd client of either role; TCP endpoints
// are dialled from inside the node's namespace.
func etcdClient(cfg *config, ns *netns.NS) (*clientv3.Client, error) {
	etls, err := cfg.Files.Config()
	if err != nil {
		return nil, err
	}
	user, password, err := cfg.Files.Credentials()
	if err != nil {
		return nil, err
	}
	ecfg := clientv3.Config{Endpoints: cfg.Etcd, TLS: etls, Username: user, Password: password, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if ns != nil && !anyUnix(cfg.Etcd) {
		ecfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, "tcp", addr)
				return err
			})
			return c, err
		})}
	}
	etcdtls.Resume(&ecfg)
	cli, err := clientv3.New(ecfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

func anyUnix(eps []string) bool {
	for _, e := range eps {
		if strings.HasPrefix(e, "unix:") || strings.HasPrefix(e, "unixs:") {
			return true
		}
	}
	return false
}

// ensureBPFFS makes sure dir is on a bpffs, mounting one at /sys/fs/bpf
// (or at dir's parent if dir is elsewhere) when needed.
func ensureBPFFS(dir string) error {
	isBPF := func(p string) bool {
		var st unix.Statfs_t
		return unix.Statfs(p, &st) == nil && st.Type == unix.BPF_FS_MAGIC
	}
	// Nearest existing ancestor.
	p := dir
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		q := filepath.Dir(p)
		if q == p {
			break
		}
		p = q
	}
	if isBPF(p) {
		return os.MkdirAll(dir, 0o700)
	}
	mnt := "/sys/fs/bpf"
	if !strings.HasPrefix(dir, mnt+"/") {
		mnt = p
	}
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return fmt.Errorf("bpffs mount point %s: %w", mnt, err)
	}
	if !isBPF(mnt) {
		if err := unix.Mount("bpffs", mnt, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs on %s: %w", mnt, err)
		}
	}
	if !isBPF(dir) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if !isBPF(dir) {
			return fmt.Errorf("pin path %s: not on a bpffs", dir)
		}
	}
	return nil
}

// listen opens a unix socket (path) or a TCP listener inside the NVE's
// namespace (HOST:PORT).
func listen(addr string, inNS func(func() error) error) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok || strings.HasPrefix(addr, "/") {
		if !ok {
			path = addr
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use by a running ilad", path)
		}
		_ = os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		_ = os.Chmod(path, 0o660)
		return ln, nil
	}
	var ln net.Listener
	err := inNS(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

func serve(ctx context.Context, s *http.Server, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
	}()
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// dpAdapter fits *datapath.Datapath to locator.Datapath.
type dpAdapter struct {
	*datapath.Datapath
	netns string
}

var (
	_ locator.Datapath       = (*dpAdapter)(nil)
	_ locator.MappingBatcher = (*dpAdapter)(nil) // the initial load and resync in batches
)

func (d *dpAdapter) UpsertLocal(l locator.Local) error {
	return d.Datapath.UpsertLocal(datapath.Local{SIR: l.SIR, Identifier: l.Identifier, Ifindex: l.Ifindex, MAC: l.MAC, Suspended: l.Suspended, Tenant: l.Tenant, IPv4: l.IPv4})
}

func (d *dpAdapter) AttachPort(ifname string, ifindex int) error {
	return d.Attach(datapath.Attachment{Ifname: ifname, Ifindex: ifindex, NetNS: d.netns, Role: datapath.RoleTask})
}

func (d *dpAdapter) DetachPort(ifname string, ifindex int) error {
	return d.Detach(datapath.Attachment{Ifname: ifname, Ifindex: ifindex, NetNS: d.netns, Role: datapath.RoleTask})
}

type missReader struct{ dp *datapath.Datapath }

// ReadMiss waits for the datapath's next miss. The ring buffer read is not
// always woken by the cancellation, so the wait is abandoned on ctx; the
// read ends when the datapath is closed.
func (m missReader) ReadMiss(ctx context.Context) (locator.Miss, error) {
	type result struct {
		x   datapath.Miss
		err error
	}
	ch := make(chan result, 1)
	go func() {
		x, err := m.dp.ReadMiss(ctx)
		ch <- result{x, err}
	}()
	select {
	case r := <-ch:
		return locator.Miss{SIR: r.x.SIR, Identifier: r.x.Identifier}, r.err
	case <-ctx.Done():
		return locator.Miss{}, ctx.Err()
	}
}

// registrar fits regproto.Client to locator.Registrar.
type registrar struct {
	c *regproto.Client
	// agent, once set, gives the applied revision heartbeats report; api
	// is the local API's URL they advertise (-api-advertise).
	agent *atomic.Pointer[locator.Agent]
	api   string
}

func (r registrar) Register(ctx context.Context, reg locator.Registration) (time.Duration, error) {
	m := &regproto.Message{
		NVE: reg.NVE, Locator: reg.Locator, MAC: reg.MAC, VMID: reg.Name, Tenant: reg.Tenant,
		Domain: reg.Domain, VNI: reg.VNI, Lifetime: regproto.LifetimeUnits(reg.Lifetime), Mode: reg.Mode,
	}
	if reg.Standby {
		m.Role = regproto.RoleStandby
	}
	m.Epoch = reg.Epoch
	if reg.SIR.IsValid() {
		m.Addrs = append(m.Addrs, reg.SIR)
	}
	if reg.IPv4.IsValid() {
		m.Addrs = append(m.Addrs, reg.IPv4)
	}
	rep, err := r.c.Do(ctx, m)
	if err != nil {
		return 0, err
	}
	if !rep.Status.Accepted() {
		return 0, &locator.RejectedError{Reason: rep.Reason.String()}
	}
	return rep.LifetimeDuration(), nil
}

// notifyHandler accepts mapsrv's signed move notifications.
func notifyHandler(a *locator.Agent, mapsrvName string, log *slog.Logger) regproto.Handler {
	return regproto.HandlerFunc(func(ctx context.Context, from netip.AddrPort, req *regproto.Message) *regproto.Message {
		if !req.Notify {
			return req.Reply(regproto.StatusRejected, regproto.ReasonInvalid)
		}
		if req.NVE != mapsrvName {
			log.Warn("move notification signed by a key that is not mapsrv's refused", "signer", req.NVE, "from", from)
			return req.Reply(regproto.StatusRejected, regproto.ReasonNotAuthorized)
		}
		// The lifetime is the in-flight time (mapsrv owns it; 0: drop
		// now); a cold move suspended the task first, so nothing is in
		// flight.
		inFlight := req.LifetimeDuration()
		if req.Mode == regproto.MoveCold {
			inFlight = 0
		}
		for _, addr := range req.Addrs {
			if !addr.Is6() || addr.Is4In6() {
				continue
			}
			local, err := a.Notify(addr, req.Locator, "", inFlight)
			if err != nil {
				log.Warn("move notification refused", "sir", addr, "locator", req.Locator, "err", err)
				if errors.Is(err, locator.ErrNotFound) {
					return req.Reply(regproto.StatusRejected, regproto.ReasonUnknownTask)
				}
				return req.Reply(regproto.StatusRejected, regproto.ReasonInvalid)
			}
			log.Debug("move notification", "sir", addr, "locator", req.Locator, "mode", req.Mode, "in_flight", inFlight, "was_local", local)
		}
		return req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
	})
}

// directory backs the ND emulator with the agent's tables.
type directory struct {
	agent *locator.Agent
	log   *slog.Logger
}

func (d *directory) Owner(addr netip.Addr) (ndemu.Owner, bool) {
	o, ok := d.agent.Owner(addr)
	return ndemu.Owner{Local: o.Local, Ifindex: o.Ifindex, NVE: o.NVE, MAC: o.MAC}, ok
}

func (d *directory) UnsolicitedNA(ctx context.Context, ifindex int, addr netip.Addr, mac net.HardwareAddr) {
	d.agent.Claim(ifindex, addr)
}

func (d *directory) Spoofed(ifindex int, addr netip.Addr, mac net.HardwareAddr, reason string) {
	d.log.Warn("spoofed neighbour advertisement refused", "ifindex", ifindex, "sir", addr, "mac", mac.String(), "reason", reason)
}

type ndHook struct{ e *ndemu.Emulator }

func (h ndHook) AddPort(ctx context.Context, p locator.Port, t locator.TaskSpec) error {
	return h.e.AddPort(ctx, p.Name)
}
func (h ndHook) RemovePort(p locator.Port, t locator.TaskSpec) error { return h.e.RemovePort(p.Name) }

type l2Hook struct{ m *l2compat.Manager }

func (h l2Hook) AddPort(ctx context.Context, p locator.Port, t locator.TaskSpec) error {
	if t.VNI == 0 {
		return nil
	}
	return h.m.AddPort(p.Name, t.VNI)
}

func (h l2Hook) RemovePort(p locator.Port, t locator.TaskSpec) error {
	if t.VNI == 0 {
		return nil
	}
	return h.m.RemovePort(p.Name)
}

// ownedBy is the subset of a key file owned by one name (mapsrv's): ilad
// verifies mapsrv's replies and move notifications with it, so that a key
// of another NVE cannot sign them.
type ownedBy struct {
	keys regproto.Keys
	name string
}

func (o ownedBy) Secret(id uint32) (string, []byte, bool) {
	nve, secret, ok := o.keys.Secret(id)
	if !ok || nve != o.name {
		return "", nil, false
	}
	return nve, secret, true
}

// PublicKey implements regproto.PublicKeys: mapsrv's Ed25519 public key,
// which verifies its signatures but cannot make one.
func (o ownedBy) PublicKey(id uint32) (string, ed25519.PublicKey, bool) {
	pk, ok := o.keys.(regproto.PublicKeys)
	if !ok {
		return "", nil, false
	}
	owner, pub, ok := pk.PublicKey(id)
	if !ok || owner != o.name {
		return "", nil, false
	}
	return owner, pub, true
}

// watchOptions are the mapping watch's options of either role: retries
// at most 500 ms apart while etcd is away, so that the watch resumes
// within about that once it is back (issue 18 weakness 6).
func watchOptions(prefix string, log *slog.Logger) etcdstore.WatchOptions {
	return etcdstore.WatchOptions{Prefix: prefix, Logger: log, MaxBackoff: 500 * time.Millisecond}
}
