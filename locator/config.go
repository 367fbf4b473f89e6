package locator

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Mode is how much of the mapping table the NVE installs.
type Mode string

// Table modes.
const (
	// ModePush installs every mapping of the store (the default).
	ModePush Mode = "push"
	// ModePull installs only what local tasks and cache misses need.
	ModePull Mode = "pull"
)

// LocatorSpec is one locator of this NVE and the domain it serves. An empty
// Domain serves whichever domain has no locator of its own. Text form:
// "[DOMAIN=]LOCATOR", e.g. "prod=2001:db8:0:1" or "2001:db8:0:1::/64".
type LocatorSpec struct {
	Domain  string
	Locator ila.Locator
}

// ParseLocatorSpec parses "[DOMAIN=]LOCATOR".
func ParseLocatorSpec(s string) (LocatorSpec, error) {
	var ls LocatorSpec
	loc := s
	if d, l, ok := strings.Cut(s, "="); ok {
		if d == "" {
			return ls, fmt.Errorf("locator %q: empty domain before '='", s)
		}
		ls.Domain, loc = d, l
	}
	l, err := ila.ParseLocator(loc)
	if err != nil {
		return ls, err
	}
	if l == 0 {
		return ls, fmt.Errorf("locator %q: zero locator", s)
	}
	ls.Locator = l
	return ls, nil
}

func (ls LocatorSpec) String() string {
	if ls.Domain == "" {
		return ls.Locator.String()
	}
	return ls.Domain + "=" + ls.Locator.String()
}

// MarshalText implements encoding.TextMarshaler.
func (ls LocatorSpec) MarshalText() ([]byte, error) { return []byte(ls.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (ls *LocatorSpec) UnmarshalText(b []byte) error {
	v, err := ParseLocatorSpec(string(b))
	if err != nil {
		return err
	}
	*ls = v
	return nil
}

// TaskSpec declares a task attached to this NVE.
type TaskSpec struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant,omitempty"`
	// Domain is optional: by default the domain whose SIR prefix holds SIR.
	Domain string `json:"domain,omitempty"`
	// Iface is the NVE end of the task's link (veth or tap).
	Iface string     `json:"iface"`
	SIR   netip.Addr `json:"sir"`
	// MAC is the task's own MAC; if zero the agent looks it up.
	MAC  ila.MAC    `json:"mac,omitzero"`
	IPv4 netip.Addr `json:"ipv4,omitzero"`
	VNI  uint32     `json:"vni,omitempty"`
	// Standby prepares the port and installs local delivery without
	// registering: the destination of a hot move gets ready before the
	// switch (make before break). Attaching the same task again without
	// Standby commits it (registers, which moves the mapping).
	Standby bool `json:"standby,omitempty"`
	// AutoCommit (with Standby) commits the task on its first announce
	// frame on the port or when the hypervisor reports it running, besides
	// the API (see Agent.Prepare).
	AutoCommit bool `json:"auto_commit,omitempty"`
	// QMP is the QEMU monitor socket of the task's VM on this host: a
	// prepared task commits when the guest resumes, and QEMU is asked to
	// announce the guest after a commit by API or QMP.
	QMP string `json:"qmp,omitempty"`
}

// Validate reports a task that cannot be attached.
func (t TaskSpec) Validate() error {
	if t.Name == "" {
		return fmt.Errorf("task: empty name")
	}
	if strings.ContainsAny(t.Name, "/ \t\n") {
		return fmt.Errorf("task %q: name contains '/' or white space", t.Name)
	}
	if t.Iface == "" || len(t.Iface) > 15 || strings.ContainsAny(t.Iface, "/ ") {
		return fmt.Errorf("task %s: interface name %q: want 1 to 15 characters without '/' or space", t.Name, t.Iface)
	}
	if !t.SIR.Is6() || t.SIR.Is4In6() || t.SIR.Zone() != "" {
		return fmt.Errorf("task %s: SIR address %v: want an IPv6 address without zone", t.Name, t.SIR)
	}
	if ila.IdentifierOf(t.SIR).C() {
		return fmt.Errorf("task %s: SIR address %v: %w", t.Name, t.SIR, ila.ErrCBitSet)
	}
	if t.IPv4.IsValid() && !t.IPv4.Is4() {
		return fmt.Errorf("task %s: IPv4 address %v is not IPv4", t.Name, t.IPv4)
	}
	if t.VNI > 1<<24-1 {
		return fmt.Errorf("task %s: VNI %d out of range (24 bits)", t.Name, t.VNI)
	}
	if t.IPv4.IsValid() != (t.VNI != 0) {
		return fmt.Errorf("task %s: IPv4 address and VNI go together", t.Name)
	}
	return nil
}

// Config configures an Agent. Plain fields carry JSON tags so that a
// daemon can read them from a file; the collaborators are set in code.
type Config struct {
	// Node is this NVE's name in the store (required).
	Node string `json:"node"`
	// Locators of this NVE (at least one).
	Locators []LocatorSpec `json:"locators"`
	// Mode: push (default) or pull.
	Mode Mode `json:"mode,omitempty"`
	// InFlight is ignored and kept for old configuration files: the
	// in-flight time has one owner, the mapping service (mapsrv
	// --in-flight), which records it in the store (the task's previous
	// entry for this NVE) and sends it in its move notification.
	//
	// Deprecated: set mapsrv's --in-flight instead.
	InFlight ila.Duration `json:"in_flight,omitempty"`
	// Lifetime requested at registration (default 120s); re-registration
	// happens at half the granted lifetime.
	Lifetime ila.Duration `json:"lifetime,omitempty"`
	// MissRate caps the store lookups caused by cache misses per second
	// (default 200); a given identifier is looked up at most once a second.
	MissRate float64 `json:"miss_rate,omitempty"`
	// PullTTL (pull mode) is how long an entry installed on a miss stays
	// (default 5m): the datapath does not say which entries are used, so
	// entries age out, and one still in use misses again (its packets
	// take the ILA router meanwhile) and is pulled again.
	PullTTL ila.Duration `json:"pull_ttl,omitempty"`
	// PullMax (pull mode) caps the entries installed on misses (default
	// 0: no cap but the datapath's size); beyond it the oldest tenth go.
	PullMax int `json:"pull_max,omitempty"`
	// Tasks attached at start.
	Tasks []TaskSpec `json:"tasks,omitempty"`
	// StateFile, if set, records tasks attached through the API so that a
	// restart attaches them again.
	StateFile string `json:"state_file,omitempty"`
	// Heartbeat is the heartbeat interval (default 1s; negative: none);
	// it must match mapsrv's --heartbeat-interval.
	Heartbeat ila.Duration `json:"heartbeat,omitempty"`
	// RestartHold is how long mapsrv keeps this NVE alive without
	// heartbeats after the agent stops (a restart; default 8s, negative:
	// none): the datapath forwards meanwhile, so a restart is no failover.
	RestartHold ila.Duration `json:"restart_hold,omitempty"`
	// Router makes the agent an ILA router's (ILA-R) instead of an NVE's:
	// it keeps the whole table of the store in the datapath (push) and has
	// no locator, no tasks, no registrations and no state file of its own.
	// A daemon sets it from its role; the settings an NVE needs are refused
	// with it.
	Router bool `json:"-"`

	Datapath  Datapath      `json:"-"` // required
	Source    MappingSource `json:"-"` // required
	Lookup    TaskLookup    `json:"-"` // optional: misses use the watch cache only
	Misses    MissReader    `json:"-"` // optional
	Registrar Registrar     `json:"-"` // optional: tasks are not registered
	// Heartbeater, if set, receives a heartbeat every Heartbeat
	// (heartbeat.go).
	Heartbeater Heartbeater  `json:"-"`
	Ports       Ports        `json:"-"` // optional: ports used as they are
	Hooks       []PortHook   `json:"-"`
	Logger      *slog.Logger `json:"-"`
	// OnEvent, if set, is called with every event after the agent applied
	// it (outside the agent's lock; from the watch goroutine): the IPv4
	// layer, the ND emulator's prefixes, benchmarks.
	OnEvent func(ila.Event) `json:"-"`
	// Now is the clock (default time.Now).
	Now func() time.Time `json:"-"`
	// Hypervisor is optional: prepared tasks with a QMP socket commit
	// when their guest runs.
	Hypervisor Hypervisor `json:"-"`
}

// CheckSettings validates the plain (file or flag) fields and fills their
// defaults, without looking at the collaborators: a daemon calls it before
// building anything.
func (c *Config) CheckSettings() error {
	if c.Node == "" {
		return fmt.Errorf("node name: empty")
	}
	if c.Router {
		if err := c.checkRouter(); err != nil {
			return err
		}
	} else if len(c.Locators) == 0 {
		return fmt.Errorf("node %s: no locator", c.Node)
	}
	seen := map[string]bool{}
	for _, l := range c.Locators {
		if l.Locator == 0 {
			return fmt.Errorf("locator for domain %q: zero", l.Domain)
		}
		if seen[l.Domain] {
			return fmt.Errorf("locator for domain %q: given twice", l.Domain)
		}
		seen[l.Domain] = true
	}
	switch c.Mode {
	case "":
		c.Mode = ModePush
	case ModePush, ModePull:
	default:
		return fmt.Errorf("mode %q: want push or pull", c.Mode)
	}
	if c.InFlight < 0 || c.Lifetime < 0 || c.MissRate < 0 {
		return fmt.Errorf("in-flight timer, lifetime and miss rate must not be negative")
	}
	if c.InFlight == 0 {
		c.InFlight = ila.Duration(10 * time.Second)
	}
	if c.Lifetime == 0 {
		c.Lifetime = ila.Duration(120 * time.Second)
	}
	if time.Duration(c.Lifetime) < 4*time.Second {
		return fmt.Errorf("lifetime %v: want at least 4s", time.Duration(c.Lifetime))
	}
	if c.MissRate == 0 {
		c.MissRate = 200
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = ila.Duration(time.Second)
	}
	if c.RestartHold == 0 {
		c.RestartHold = ila.Duration(8 * time.Second)
	}
	if c.Heartbeat > 0 && time.Duration(c.Heartbeat) < 10*time.Millisecond {
		return fmt.Errorf("heartbeat interval %v: want at least 10ms (or negative: none)", time.Duration(c.Heartbeat))
	}
	if c.PullTTL < 0 || c.PullMax < 0 {
		return fmt.Errorf("pull ttl and pull max must not be negative")
	}
	if c.PullTTL == 0 {
		c.PullTTL = ila.Duration(5 * time.Minute)
	}
	if time.Duration(c.PullTTL) < time.Second {
		return fmt.Errorf("pull ttl %v: want at least 1s", time.Duration(c.PullTTL))
	}
	names, ifaces, sirs := map[string]bool{}, map[string]bool{}, map[netip.Addr]bool{}
	for _, t := range c.Tasks {
		if err := t.Validate(); err != nil {
			return err
		}
		if names[t.Name] || ifaces[t.Iface] || sirs[t.SIR] {
			return fmt.Errorf("task %s: name, interface or SIR address declared twice", t.Name)
		}
		names[t.Name], ifaces[t.Iface], sirs[t.SIR] = true, true, true
	}
	return nil
}

// checkRouter refuses what an ILA router does not have.
func (c *Config) checkRouter() error {
	switch {
	case len(c.Locators) > 0:
		return fmt.Errorf("router %s: a router has no locator of its own (locators are an NVE's)", c.Node)
	case len(c.Tasks) > 0:
		return fmt.Errorf("router %s: a router attaches no tasks", c.Node)
	case c.StateFile != "":
		return fmt.Errorf("router %s: a router attaches no tasks, so it keeps no state file", c.Node)
	case c.Mode == ModePull:
		return fmt.Errorf("router %s: mode pull: a router holds the whole table (push)", c.Node)
	}
	return nil
}

func (c *Config) validate() error {
	if err := c.CheckSettings(); err != nil {
		return err
	}
	if c.Datapath == nil {
		return fmt.Errorf("node %s: no datapath", c.Node)
	}
	if c.Source == nil {
		return fmt.Errorf("node %s: no mapping source", c.Node)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
