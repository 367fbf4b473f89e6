package lab

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// ErrMissing says a component the lab needs is not available.
var ErrMissing = errors.New("component not available")

// Config describes a lab. Zero values have defaults (in brackets).
type Config struct {
	// Name prefixes every namespace the lab creates [ilalab]. At most 15
	// characters, letters, digits and '-'.
	Name string
	// StateDir holds topology.json, pids, logs and etcd data [/run/ilalab].
	StateDir string
	// NVEs is the number of NVE namespaces [3].
	NVEs int
	// TasksPerNVE is the number of IPv6 tasks per NVE [1].
	TasksPerNVE int
	// Tenants spreads the IPv6 tasks over this many tenants, round robin
	// (TenantName); tenants are isolated unless a policy lets them talk
	// (docs/TENANTS.md) [1: every IPv6 task in IPv6Tenant].
	Tenants int
	// IPv4Tenant adds one IPv4 tenant task per NVE (VXLAN/ARP path).
	IPv4Tenant bool
	// VMTasks adds that many VM tasks (QEMU guests on a tap in their
	// NVE's namespace, vm_linux.go), from the last NVE backwards.
	VMTasks int
	// BinDir is where the component binaries are [beside the executable,
	// then $PATH].
	BinDir string
	// HostLink joins the host to the control namespace with a veth named
	// after the lab (fd00:ff:c1::1 on the host, a host route for
	// fd00:ff:c0::/64), so that ilactl, dig and curl reach mapsrv and
	// dnsbridge from the host. Off for labs that run side by side (tests):
	// they would share the host route.
	HostLink bool
	// UnderlayOnly builds only the namespaces, links, addresses and routes
	// (no daemons): for tests of single components.
	UnderlayOnly bool
	// Fabric is how the fabric routes the locators: frr (FRR learns them
	// from the NVEs' BGP speakers) or static (routes the lab writes)
	// [frr where FRR is installed, else static; static with UnderlayOnly].
	Fabric string
	// DCs is the number of data centres [1]: each a fabric namespace with
	// FRR, its share of the NVEs and its ILA router, the fabrics joined
	// by an interconnect link with eBGP. More than one needs Fabric frr.
	DCs int
	// BGPRestart is the graceful restart time the NVEs' BGP speakers
	// (ilad) offer the FRR fabric [120s]: a crashed or restarting ilad
	// keeps its locator routed this long (a dead link withdraws at once).
	BGPRestart time.Duration
	// Routers puts that many ILA routers in namespaces of their own
	// (<name>-rtr<i>), each joined to the fabric by a link and announcing
	// the SIR prefix to the fabric's FRR over BGP: anycast, ECMP in the
	// fabric [0: one router inside the fabric namespace]. Needs Fabric
	// frr and one DC.
	Routers int
	// OwnerDir is where the lab records the process that built it, for
	// DownAll [owner.DefaultDir].
	OwnerDir string
	// Lifetime is the registration lifetime the NVEs ask for [ilad's
	// default, 120s]; at least 4s.
	Lifetime time.Duration
	// Heartbeat is the NVEs' heartbeat interval, mapsrv's expectation
	// [1s, the daemons' default; `ilalab up` uses 100ms] (docs/FAILOVER.md).
	// Short intervals on a loaded machine declare NVEs dead that are only
	// slow: tests that are not about failover keep the default.
	Heartbeat time.Duration
	// EtcdMembers runs an etcd cluster of this many members (the etcd
	// binary, in the control namespace) for mapsrv instead of its
	// embedded etcd [1: embedded]; 3 or 5.
	EtcdMembers int
	// MapsrvReplicas runs that many mapsrv replicas in the control
	// namespace, each with its own replica name, API and registration
	// port and signing key, over one etcd cluster; every NVE gets every
	// registration address [1]. More than one needs the lab's etcd
	// cluster: 0 EtcdMembers becomes 3 (1, mapsrv's embedded etcd, is
	// refused: it dies with its mapsrv).
	MapsrvReplicas int
	// FlapMoves is how many moves of one task mapsrv allows within its
	// flap damping window (3 min) [mapsrv's default, 5]; the chaos
	// suite's random moves need many.
	FlapMoves int
	// Progress, if set, is told what the lab is doing.
	Progress func(string)
	// Logger [discard].
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if len(c.Name) > 15 {
		return fmt.Errorf("lab name %q: longer than 15 characters", c.Name)
	}
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("lab name %q: only a-z, 0-9 and '-' allowed", c.Name)
		}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultDir
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return fmt.Errorf("state dir %q: %w", c.StateDir, err)
	}
	c.StateDir = abs
	if c.NVEs == 0 {
		c.NVEs = 3
	}
	if c.NVEs < 1 || c.NVEs > 200 {
		return fmt.Errorf("nves %d: want 1..200", c.NVEs)
	}
	if c.TasksPerNVE == 0 {
		c.TasksPerNVE = 1
	}
	if c.Tenants == 0 {
		c.Tenants = 1
	}
	if c.Tenants < 0 || c.Tenants > 250 {
		return fmt.Errorf("tenants %d: want 1..250", c.Tenants)
	}
	if c.TasksPerNVE < 0 || c.NVEs*c.TasksPerNVE > 250 {
		return fmt.Errorf("tasks per nve %d: want 1..%d for %d NVEs", c.TasksPerNVE, 250/c.NVEs, c.NVEs)
	}
	switch c.Fabric {
	case "", "frr", "static":
	default:
		return fmt.Errorf("fabric %q: want frr or static", c.Fabric)
	}
	if c.BGPRestart < 0 || c.BGPRestart%time.Second != 0 || c.BGPRestart > 4095*time.Second {
		return fmt.Errorf("bgp restart time %v: want whole seconds, 1s-4095s (BGP's graceful restart field)", c.BGPRestart)
	}
	if c.DCs == 0 {
		c.DCs = 1
	}
	if c.DCs < 1 || c.DCs > 4 || c.DCs > c.NVEs {
		return fmt.Errorf("dcs %d: want 1..4 and at most one per NVE", c.DCs)
	}
	if c.DCs > 1 && (c.Fabric == "static" || c.UnderlayOnly) {
		return fmt.Errorf("dcs %d: the data centres route each other's locators with BGP: needs --fabric frr", c.DCs)
	}
	if c.Routers < 0 || c.Routers > 8 {
		return fmt.Errorf("routers %d: want 0..8", c.Routers)
	}
	if c.Routers > 0 && (c.Fabric == "static" || c.UnderlayOnly || c.DCs > 1) {
		return fmt.Errorf("routers %d: routers in their own namespaces announce the SIR prefix over BGP: need --fabric frr and one DC", c.Routers)
	}
	if c.VMTasks < 0 || c.VMTasks > 0 && c.UnderlayOnly || c.NVEs*c.TasksPerNVE+c.VMTasks > 250 {
		return fmt.Errorf("vm tasks %d: want 0..%d, not with underlay-only", c.VMTasks, 250-c.NVEs*c.TasksPerNVE)
	}
	if c.Lifetime != 0 && c.Lifetime < 4*time.Second {
		return fmt.Errorf("lifetime %v: want at least 4s (the protocol counts 4s units)", c.Lifetime)
	}
	switch c.EtcdMembers {
	case 0, 1, 3, 5:
	default:
		return fmt.Errorf("etcd members %d: want 1 (mapsrv's embedded etcd), 3 or 5", c.EtcdMembers)
	}
	if c.EtcdMembers > 1 && c.UnderlayOnly {
		return fmt.Errorf("etcd members %d: not with underlay-only", c.EtcdMembers)
	}
	if c.MapsrvReplicas == 0 {
		c.MapsrvReplicas = 1
	}
	if c.MapsrvReplicas < 1 || c.MapsrvReplicas > 3 {
		return fmt.Errorf("mapsrv replicas %d: want 1..3", c.MapsrvReplicas)
	}
	if c.MapsrvReplicas > 1 {
		switch {
		case c.UnderlayOnly:
			return fmt.Errorf("mapsrv replicas %d: not with underlay-only", c.MapsrvReplicas)
		case c.EtcdMembers == 0:
			c.EtcdMembers = 3
		case c.EtcdMembers == 1:
			return fmt.Errorf("mapsrv replicas %d: the replicas share one etcd, and mapsrv's embedded etcd dies with its mapsrv: use --etcd-members 3 (the default with replicas)", c.MapsrvReplicas)
		}
	}
	if c.FlapMoves < 0 {
		return fmt.Errorf("flap moves %d: want 0 (mapsrv's default) or more", c.FlapMoves)
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = time.Second
	}
	if c.Heartbeat < 10*time.Millisecond {
		return fmt.Errorf("heartbeat %v: want at least 10ms", c.Heartbeat)
	}
	if c.Progress == nil {
		c.Progress = func(string) {}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
