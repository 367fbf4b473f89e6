//go:build linux

package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/owner"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// Lab is a running lab.
type Lab struct {
	cfg   Config
	dir   string
	topo  *Topology
	procs map[string]*proc
	bins  map[string]string
	nodes map[string]*node // by netns name
	// apiC is mapsrv's API client, made once: a client (and HTTP
	// transport) per call left its keep-alive connections open until
	// mapsrv's per-host limit (64) refused new ones, after a few hundred
	// moves.
	apiC  *apiclient.Client
	apiHC *http.Client
}

func (l *Lab) progress(format string, args ...any) {
	l.cfg.Progress(fmt.Sprintf(format, args...))
}

// Topology returns the lab's topology (do not modify).
func (l *Lab) Topology() *Topology { return l.topo }

// StateDir returns the lab's state directory.
func (l *Lab) StateDir() string { return l.dir }

func (l *Lab) nsName(s string) string { return l.cfg.Name + "-" + s }

// node returns the open node of a namespace, opening it if needed.
func (l *Lab) node(name string) (*node, error) {
	if n, ok := l.nodes[name]; ok {
		return n, nil
	}
	n, err := openNode(name)
	if err != nil {
		return nil, err
	}
	l.nodes[name] = n
	return n, nil
}

// Close releases handles; the lab keeps running.
func (l *Lab) Close() {
	if l.apiHC != nil {
		l.apiHC.CloseIdleConnections()
	}
	l.apiC, l.apiHC = nil, nil
	for _, n := range l.nodes {
		n.close()
	}
	l.nodes = map[string]*node{}
}

// Up builds a lab. On error it leaves what it built for Down to remove
// (call Down with the same Config).
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Lab{cfg: cfg, dir: cfg.StateDir, procs: map[string]*proc{}, bins: map[string]string{}, nodes: map[string]*node{}}
	if _, err := os.Stat(filepath.Join(l.dir, "state.json")); err == nil {
		return nil, fmt.Errorf("lab in %s: already up (run `ilalab down --state-dir %s` first)", l.dir, l.dir)
	}
	if left := l.leftovers(); len(left) > 0 {
		return nil, fmt.Errorf("lab %s: namespaces %s left from an earlier run (run `ilalab down` first)", cfg.Name, strings.Join(left, ", "))
	}
	// Check the components before building anything.
	var missing []error
	if !cfg.UnderlayOnly {
		for _, b := range []string{BinMapsrv, BinIlad, BinDNSBridge, BinIlactl} {
			p, err := findBin(cfg.BinDir, b)
			if err != nil {
				missing = append(missing, err)
				continue
			}
			l.bins[b] = p
		}
		if err := errors.Join(missing...); err != nil {
			// `go run ./cmd/ilalab` from the source tree: build the
			// components next to the state.
			root, ok := moduleRoot()
			if cfg.BinDir != "" || !ok {
				return nil, fmt.Errorf("%w:\n%v", ErrMissing, err)
			}
			dir := filepath.Join(cfg.StateDir, "bin")
			l.progress("building mapsrv, ilad, dnsbridge, ilactl, ilalab from %s into %s", root, dir)
			if berr := buildComponents(root, dir); berr != nil {
				_ = os.RemoveAll(dir)
				return nil, fmt.Errorf("%w:\n%v\nbuilding them from source failed too: %v", ErrMissing, err, berr)
			}
			l.cfg.BinDir = dir
			for _, b := range []string{BinMapsrv, BinIlad, BinDNSBridge, BinIlactl} {
				p, err := findBin(dir, b)
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrMissing, err)
				}
				l.bins[b] = p
			}
		}
	}
	// Recorded before anything is built, so that DownAll finds all of it.
	if err := (owner.Registry{Dir: cfg.OwnerDir}).Claim(owner.Lab, cfg.Name, cfg.StateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	l.topo = l.plan()
	l.planFabric()
	if err := l.planRouters(); err != nil {
		return l, err
	}
	if err := l.save(); err != nil {
		return l, err
	}
	if err := l.buildUnderlay(); err != nil {
		return l, err
	}
	if err := l.save(); err != nil {
		return l, err
	}
	if cfg.UnderlayOnly {
		if err := l.plainRoutes(); err != nil {
			return l, err
		}
		l.topo.Components = []string{"underlay", "plain-routes"}
		return l, l.save()
	}
	if l.frr() {
		if err := l.startFRR(ctx); err != nil {
			return l, err
		}
	}
	if err := l.startControl(ctx); err != nil {
		return l, err
	}
	if err := l.startDCRouters(ctx); err != nil {
		return l, err
	}
	if err := l.startNVEs(ctx); err != nil {
		return l, err
	}
	if err := l.waitFabricRoutes(ctx); err != nil {
		return l, err
	}
	if err := l.attachTasks(ctx); err != nil {
		return l, err
	}
	if err := l.writeCNI(); err != nil {
		return l, err
	}
	if err := l.startVMs(ctx); err != nil {
		return l, err
	}
	return l, l.save()
}

// moduleRoot finds the ilamesh source tree above the working directory.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			return dir, strings.Contains(string(b), "module github.com/ilamesh/ilamesh\n")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// buildComponents builds the lab's binaries from the source tree root.
func buildComponents(root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/mapsrv", "./cmd/ilad", "./cmd/dnsbridge", "./cmd/ilactl", "./cmd/ilalab", "./cmd/ila-cni")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// plan computes the topology from the config.
func (l *Lab) plan() *Topology {
	c := l.cfg
	t := &Topology{
		Name:        c.Name,
		StateDir:    l.dir,
		FabricNetns: l.nsName("fabric"),
		Domain:      DomainT{Name: Domain, SIR: SIRPrefix, Csum: "neutral-map"},
		Mapsrv: Mapsrv{
			Netns:             l.nsName("ctl"),
			API:               "https://" + netip.AddrPortFrom(ControlAddr, APIPort).String(),
			CAFile:            filepath.Join(l.dir, "api-tls", "ca.crt"),
			TokenFile:         filepath.Join(l.dir, "api.token"),
			ReadOnlyTokenFile: filepath.Join(l.dir, "api-read-only.token"),
			Registration:      netip.AddrPortFrom(ControlAddr, RegPort).String(),
		},
		Etcd: Etcd{Endpoints: []string{"unix://" + filepath.Join(l.dir, "etcd", "etcd.sock")},
			ReadOnlyUser: etcdOperator, ReadOnlyPasswordFile: filepath.Join(l.dir, "etcd-auth", etcdOperator+".password")},
		DNS:    DNS{Netns: l.nsName("ctl"), Addr: netip.AddrPortFrom(ControlAddr, DNSPort).String(), Zone: Zone},
		Router: Router{Netns: l.nsName("fabric"), Mode: "none"},
		Timers: Timers{Heartbeat: Duration(c.Heartbeat), Lifetime: Duration(c.Lifetime), FlapMoves: c.FlapMoves},
	}
	task := 0
	for n := 1; n <= c.NVEs; n++ {
		nve := NVE{Name: fmt.Sprintf("nve%d", n), Netns: l.nsName(fmt.Sprintf("nve%d", n)), Locator: LocatorOf(n), Underlay: UnderlayOf(n), Index: n}
		t.NVEs = append(t.NVEs, nve)
		for range c.TasksPerNVE {
			task++
			name := fmt.Sprintf("t%d", task)
			t.Tasks = append(t.Tasks, Task{
				Name: name, Tenant: TenantName(task, c.Tenants), Netns: l.nsName(name), NVE: nve.Name,
				SIR: SIROf(task), Identifier: IdentifierOf(task), Ifname: name, MAC: taskMAC(task).String(), Index: task,
			})
		}
	}
	if c.IPv4Tenant {
		for n := 1; n <= c.NVEs; n++ {
			task++
			name := fmt.Sprintf("t%d", task)
			t.Tasks = append(t.Tasks, Task{
				Name: name, Tenant: IPv4Tenant, Netns: l.nsName(name), NVE: fmt.Sprintf("nve%d", n),
				SIR: SIRv4Of(task), IPv4: IPv4Of(task), Identifier: ila.IdentifierOf(SIRv4Of(task)), Ifname: name, MAC: taskMAC(task).String(), Index: task,
			})
		}
	}
	planVMs(t, c.VMTasks)
	if c.EtcdMembers > 1 {
		l.planEtcdCluster(t, c.EtcdMembers)
	}
	l.planReplicas(t, c.MapsrvReplicas)
	return t
}

// buildUnderlay creates the namespaces, links, addresses and routes.
func (l *Lab) buildUnderlay() error {
	t := l.topo
	l.progress("creating %d namespaces", 2+len(t.NVEs)+len(t.Tasks))
	mk := func(name string) (*node, error) {
		n, err := newNode(name)
		if err != nil {
			return nil, err
		}
		l.nodes[name] = n
		return n, nil
	}
	fab, err := mk(t.FabricNetns)
	if err != nil {
		return err
	}
	ctl, err := mk(t.Mapsrv.Netns)
	if err != nil {
		return err
	}
	for _, n := range []*node{fab, ctl} {
		for _, kv := range append([][2]string{
			{"net.ipv6.conf.all.forwarding", "1"},
			{"net.ipv6.conf.all.accept_dad", "0"},
			{"net.ipv6.conf.default.accept_dad", "0"},
		}, keepAddrSysctls...) {
			if err := n.sysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	// fabric <-> control
	if err := fab.veth("ctl", nil, ctl, "fab0", nil); err != nil {
		return err
	}
	if err := fab.addr("ctl", netip.PrefixFrom(fabricCtl, 64)); err != nil {
		return err
	}
	if err := ctl.addr("fab0", netip.PrefixFrom(ControlAddr, 64)); err != nil {
		return err
	}
	if err := ctl.route(netip.MustParsePrefix("::/0"), fabricCtl, "fab0"); err != nil {
		return err
	}
	if l.cfg.HostLink {
		if err := l.hostLink(ctl); err != nil {
			return err
		}
	}
	for _, nve := range t.NVEs {
		l.progress("building %s", nve.Name)
		nn, err := mk(nve.Netns)
		if err != nil {
			return err
		}
		for _, kv := range append([][2]string{
			{"net.ipv6.conf.all.forwarding", "1"},
			{"net.ipv4.ip_forward", "1"},
			{"net.ipv6.conf.all.accept_dad", "0"},
			{"net.ipv6.conf.default.accept_dad", "0"},
		}, keepAddrSysctls...) {
			if err := nn.sysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		fabIf := nve.Name
		fab, err := l.fabricOf(nve, fab, mk) // the NVE's DC's fabric
		if err != nil {
			return err
		}
		if err := fab.veth(fabIf, nil, nn, "up0", nil); err != nil {
			return err
		}
		if err := fab.addr(fabIf, netip.PrefixFrom(fabricSide(nve.Index), 64)); err != nil {
			return err
		}
		if err := nn.addr("up0", netip.PrefixFrom(nve.Underlay, 64)); err != nil {
			return err
		}
		if !l.frr() { // with FRR the NVE announces it
			if err := fab.route(nve.Locator.Prefix(), nve.Underlay, fabIf); err != nil {
				return err
			}
		}
		if err := nn.route(netip.MustParsePrefix("::/0"), fabricSide(nve.Index), "up0"); err != nil {
			return err
		}
	}
	for _, task := range t.Tasks {
		if task.VM != nil {
			continue // QEMU makes its tap (startVMs)
		}
		l.progress("building task %s on %s", task.Name, task.NVE)
		tn, err := mk(task.Netns)
		if err != nil {
			return err
		}
		for _, kv := range taskSysctls {
			if err := tn.sysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		nve, _ := t.NVEByName(task.NVE)
		nn := l.nodes[nve.Netns]
		if err := nn.veth(task.Ifname, gatewayMAC(), tn, "eth0", mustMAC(task.MAC)); err != nil {
			return err
		}
		bits := 64 // the SIR prefix is on-link: the ND emulator answers for it
		if l.cfg.UnderlayOnly {
			bits = 128 // no ND emulator: route everything via the NVE
		}
		if task.IPv4.IsValid() {
			// IPv4 tenant: only its IPv4 address; the SIR address (VN-IPv4
			// identifier) is its name in the mapping.
			if err := tn.addr("eth0", netip.PrefixFrom(task.IPv4, IPv4Net.Bits())); err != nil {
				return err
			}
			continue
		}
		if err := tn.addr("eth0", netip.PrefixFrom(task.SIR, bits)); err != nil {
			return err
		}
	}
	return nil
}

// keepAddrSysctls keep the static addresses of an underlay port that
// goes down (a flapping link, `ilalab chaos link-flap-1s`): without them
// the kernel flushes the port's IPv6 addresses, nothing puts them back,
// and with them go the fabric's route to the NVE's locator and the NVE's
// path to mapsrv. Routes through the port are still flushed; the fabric's
// routing (FRR) learns them again when the port comes back.
var keepAddrSysctls = [][2]string{
	{"net.ipv6.conf.all.keep_addr_on_down", "1"},
	{"net.ipv6.conf.default.keep_addr_on_down", "1"},
}

// taskSysctls are the sysctls of a task namespace.
var taskSysctls = [][2]string{
	{"net.ipv6.conf.all.accept_dad", "0"},
	{"net.ipv6.conf.default.accept_dad", "0"},
	// Keep the task's identity address only: no SLAAC address
	// from the NVE's router advertisements, but take the route.
	{"net.ipv6.conf.default.autoconf", "0"},
	{"net.ipv6.conf.default.accept_ra", "1"},
	{"net.ipv6.conf.default.router_solicitation_interval", "1"},
}

// localRoutes makes the NVE deliver task's addresses out of its veth end.
func (l *Lab) localRoutes(nn *node, task *Task) error {
	if err := nn.route(netip.PrefixFrom(task.SIR, 128), netip.Addr{}, task.Ifname); err != nil {
		return err
	}
	if task.IPv4.IsValid() {
		return nn.route(netip.PrefixFrom(task.IPv4, 32), netip.Addr{}, task.Ifname)
	}
	return nil
}

// leftovers lists namespaces named like this lab's.
func (l *Lab) leftovers() []string {
	names, _ := netns.List()
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, l.cfg.Name+"-") {
			out = append(out, n)
		}
	}
	return out
}

// state is what state.json holds.
type state struct {
	Config   stateConfig      `json:"config"`
	Topology *Topology        `json:"topology"`
	Procs    map[string]*proc `json:"procs"`
}

type stateConfig struct {
	Name         string `json:"name"`
	BinDir       string `json:"bin_dir,omitempty"`
	UnderlayOnly bool   `json:"underlay_only,omitempty"`
	IPv4Tenant   bool   `json:"ipv4_tenant,omitempty"`
	HostLink     bool   `json:"host_link,omitempty"`
}

// save writes state.json and topology.json.
func (l *Lab) save() error {
	s := state{
		Config:   stateConfig{Name: l.cfg.Name, BinDir: l.cfg.BinDir, UnderlayOnly: l.cfg.UnderlayOnly, IPv4Tenant: l.cfg.IPv4Tenant, HostLink: l.cfg.HostLink},
		Topology: l.topo,
		Procs:    l.procs,
	}
	if err := writeJSON(filepath.Join(l.dir, "state.json"), s); err != nil {
		return err
	}
	return writeJSON(filepath.Join(l.dir, "topology.json"), l.topo)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Load opens the lab recorded in stateDir.
func Load(stateDir string, progress func(string)) (*Lab, error) {
	if stateDir == "" {
		stateDir = DefaultDir
	}
	b, err := os.ReadFile(filepath.Join(stateDir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab in %s (run `ilalab up`)", stateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", filepath.Join(stateDir, "state.json"), err)
	}
	if s.Topology == nil {
		return nil, fmt.Errorf("lab state %s: no topology", stateDir)
	}
	cfg := Config{Name: s.Config.Name, StateDir: stateDir, BinDir: s.Config.BinDir, UnderlayOnly: s.Config.UnderlayOnly, IPv4Tenant: s.Config.IPv4Tenant, HostLink: s.Config.HostLink, NVEs: len(s.Topology.NVEs), TasksPerNVE: 1, Progress: progress}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Lab{cfg: cfg, dir: cfg.StateDir, topo: s.Topology, procs: map[string]*proc{}, bins: map[string]string{}, nodes: map[string]*node{}}
	for k, p := range s.Procs {
		p.Name = k
		l.procs[k] = p
	}
	if !cfg.UnderlayOnly {
		for _, b := range []string{BinMapsrv, BinIlad, BinDNSBridge, BinIlactl} {
			if p, err := findBin(cfg.BinDir, b); err == nil {
				l.bins[b] = p
			}
		}
	}
	return l, nil
}

// Down removes everything a lab made: processes (by the pid files of the
// state dir, checking the pid still runs the recorded binary), namespaces
// named <name>-*, bpf pins under /sys/fs/bpf/<name>, and the state dir. It
// is idempotent and works after a crash or a half-finished Up.
func Down(stateDir, name string, progress func(string)) error {
	if progress == nil {
		progress = func(string) {}
	}
	if stateDir == "" {
		stateDir = DefaultDir
	}
	if b, err := os.ReadFile(filepath.Join(stateDir, "state.json")); err == nil && name == "" {
		var s state
		if json.Unmarshal(b, &s) == nil {
			name = s.Config.Name
		}
	}
	if name == "" {
		name = DefaultName
	}
	var errs []error
	procs := readPIDs(stateDir)
	// ilad first (it unpins/detaches), then the rest.
	keys := make([]string, 0, len(procs))
	for k := range procs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		pa, pb := strings.HasPrefix(a, "ilad"), strings.HasPrefix(b, "ilad")
		switch {
		case pa && !pb:
			return -1
		case pb && !pa:
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		p := procs[k]
		progress("stopping " + k)
		if err := stopPID(p.PID, p.Exe, 5*time.Second); err != nil {
			errs = append(errs, err)
			continue
		}
		_ = os.Remove(filepath.Join(stateDir, "pids", k+".pid"))
	}
	names, err := netns.List()
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, name+"-") {
			continue
		}
		progress("removing namespace " + n)
		if err := netns.Remove(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeHostLink(name); err != nil {
		errs = append(errs, err)
	}
	if err := removeFRRDirs(name); err != nil {
		errs = append(errs, err)
	}
	pin := filepath.Join("/sys/fs/bpf", name)
	if _, err := os.Stat(pin); err == nil {
		progress("removing pins " + pin)
		if err := os.RemoveAll(pin); err != nil {
			errs = append(errs, fmt.Errorf("remove pins %s: %w", pin, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // keep the state dir so a second down can finish
	}
	if _, err := os.Stat(stateDir); err == nil {
		progress("removing " + stateDir)
		if err := os.RemoveAll(stateDir); err != nil {
			return fmt.Errorf("remove state dir: %w", err)
		}
	}
	return releaseOwner(owner.Registry{}, name, stateDir)
}

// Down stops the lab's own processes (reaping them) and removes everything.
func (l *Lab) Down() error {
	for name := range l.procs {
		if strings.HasPrefix(name, "ilad") {
			_ = l.stop(name, 5*time.Second)
		}
	}
	for name := range l.procs {
		_ = l.stop(name, 5*time.Second)
	}
	l.Close()
	if err := Down(l.dir, l.cfg.Name, l.cfg.Progress); err != nil {
		return err
	}
	return releaseOwner(owner.Registry{Dir: l.cfg.OwnerDir}, l.cfg.Name, l.dir)
}

// moveLink carries the NVE end of task's veth from one NVE to another and
// brings it up there with its routes.
func (l *Lab) moveLink(task *Task, from, to *NVE) error {
	src, err := l.node(from.Netns)
	if err != nil {
		return err
	}
	dst, err := l.node(to.Netns)
	if err != nil {
		return err
	}
	link, err := src.link(task.Ifname)
	if err != nil {
		return err
	}
	if err := src.h.LinkSetNsFd(link, dst.ns.Fd()); err != nil {
		return fmt.Errorf("move %s from %s to %s: %w", task.Ifname, from.Name, to.Name, err)
	}
	if err := dst.up(task.Ifname); err != nil {
		return err
	}
	if !l.cfg.UnderlayOnly {
		return nil // ilad delivers through the datapath
	}
	return l.localRoutes(dst, task)
}

var _ = netlink.SCOPE_LINK

// Status is what `ilalab status` shows.
type Status struct {
	Topology *Topology         `json:"topology"`
	Procs    map[string]string `json:"processes"`
}

// Status reports the topology and whether each recorded process runs.
func (l *Lab) Status() *Status {
	s := &Status{Topology: l.topo, Procs: map[string]string{}}
	for name, p := range readPIDs(l.dir) {
		st := "exited"
		if alive(p.PID, p.Exe) {
			st = "running"
		}
		s.Procs[name] = fmt.Sprintf("%s (pid %d)", st, p.PID)
	}
	return s
}
