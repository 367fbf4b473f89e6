package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxMappings = 1 << 20
	DefaultMaxLocal    = 65536
)

// ErrFull means a table is at capacity; the entry was not written. The
// Stats field FullErrors counts these.
var ErrFull = errors.New("datapath table full")

// MissPolicy says what an NVE does with a packet from a task whose
// destination is in a known SIR prefix but has no mapping.
type MissPolicy uint8

const (
	// MissPass forwards the packet untranslated: the NVE's routes take the
	// SIR prefix to an ILA router. The default.
	MissPass MissPolicy = iota
	// MissDrop drops it.
	MissDrop
)

// UnknownPolicy says what an NVE does with a packet for one of its
// locators whose identifier is neither attached here nor in flight.
type UnknownPolicy uint8

const (
	// UnknownDrop drops it (counted). The default.
	UnknownDrop UnknownPolicy = iota
	// UnknownPass leaves it to the stack, which answers with an ICMPv6
	// destination unreachable if the locator /64 has an unreachable route.
	UnknownPass
)

// Config configures Open. The zero value is usable.
type Config struct {
	// PinPath is a bpffs directory where maps and links are pinned; ""
	// pins nothing (everything goes away with Close). Opening again with
	// the same PinPath adopts the pinned maps.
	PinPath string
	// MaxMappings bounds the identifier->locator table (default 1<<20).
	// Changing it for an existing PinPath needs Unpin first.
	MaxMappings int
	// MaxLocal bounds the local and in-flight tables (default 65536).
	MaxLocal int
	// Router marks an ILA router instance (ILA-R): RoleRouter attachments
	// are allowed only with it.
	Router bool
	// MissPolicy applies to task traffic with no mapping (NVE).
	MissPolicy MissPolicy
	// UnknownPolicy applies to traffic for our locators with an unknown
	// identifier.
	UnknownPolicy UnknownPolicy
	// TaskTCX attaches task-facing ports (RoleTask) with tcx links. By
	// default they get clsact bpf filters instead: creating a tcx link
	// waits for an RCU grace period per direction while holding the RTNL
	// (about 23 ms for the two here, BenchmarkAttachTask), a filter does
	// not (about 0.6 ms), and attaching a task's port is on the path of a
	// live migration's prepare and of a moved link. Uplink and router
	// ports use tcx (attached once). A port attached with a tcx link by an
	// earlier process keeps it (the link is updated).
	TaskTCX bool
}

func (c *Config) validate() error {
	if c.MaxMappings == 0 {
		c.MaxMappings = DefaultMaxMappings
	}
	if c.MaxLocal == 0 {
		c.MaxLocal = DefaultMaxLocal
	}
	if c.MaxMappings < 0 || c.MaxMappings > 1<<28 {
		return fmt.Errorf("datapath config: max mappings %d out of range (1..%d)", c.MaxMappings, 1<<28)
	}
	if c.MaxLocal < 0 || c.MaxLocal > 1<<24 {
		return fmt.Errorf("datapath config: max local %d out of range (1..%d)", c.MaxLocal, 1<<24)
	}
	if c.MissPolicy > MissDrop {
		return fmt.Errorf("datapath config: miss policy %d unknown", c.MissPolicy)
	}
	if c.UnknownPolicy > UnknownPass {
		return fmt.Errorf("datapath config: unknown-identifier policy %d unknown", c.UnknownPolicy)
	}
	return nil
}

// Local is a task attached to this node.
type Local struct {
	SIR        ila.SIRPrefix
	Identifier ila.Identifier
	// Ifindex is the NVE end of the task's port (in the namespace where the
	// programs are attached).
	Ifindex int
	// MAC is the task's MAC if known; zero lets the kernel resolve it
	// (bpf_redirect_neigh) on delivery.
	MAC ila.MAC
	// Suspended stops delivery while a cold or warm move of the task is
	// under way: packets arriving on the uplink for it get an ICMPv6
	// destination unreachable (code 3, address unreachable; at most one per
	// second per task, counted suspended_icmp_sent) and are dropped
	// (drop_suspended); packets from other tasks on this NVE are treated
	// as misses (they take the ILA router, which answers unreachable). The
	// task may still send, and the port stays bound.
	Suspended bool
	// Tenant is the task's tenant: what it may reach (0: untagged, not
	// checked).
	Tenant ila.TenantID
	// IPv4 is the only IPv4 source the port may send from (an IPv4 tenant
	// task); the zero Addr leaves IPv4 unchecked.
	IPv4 netip.Addr
}

// Addr is the task's SIR address.
func (l Local) Addr() netip.Addr { return l.SIR.Addr(l.Identifier) }

func (l Local) validate() error {
	if l.SIR == 0 {
		return fmt.Errorf("local %s: SIR prefix ::/64 is not usable", l.Addr())
	}
	if l.Ifindex <= 0 {
		return fmt.Errorf("local %s: ifindex %d invalid", l.Addr(), l.Ifindex)
	}
	if l.IPv4.IsValid() && (!l.IPv4.Unmap().Is4() || l.IPv4.Unmap().IsUnspecified()) {
		return fmt.Errorf("local %s: ipv4 address %v invalid", l.Addr(), l.IPv4)
	}
	return nil
}

// Role says which program an attachment runs.
type Role uint8

const (
	// RoleTask is a task-facing port of an NVE (ingress and egress).
	RoleTask Role = iota + 1
	// RoleUplink is the fabric-facing port of an NVE (ingress).
	RoleUplink
	// RoleRouter is an ILA-R port facing NVEs (ingress).
	RoleRouter
)

func (r Role) String() string {
	switch r {
	case RoleTask:
		return "task"
	case RoleUplink:
		return "uplink"
	case RoleRouter:
		return "router"
	}
	return fmt.Sprintf("role-%d", uint8(r))
}

// Attachment names an interface and the role of the programs on it.
type Attachment struct {
	Ifname  string // used when Ifindex is 0
	Ifindex int
	// NetNS is the path of the interface's network namespace (like
	// /var/run/netns/x), "" for the caller's.
	NetNS string
	Role  Role
}

func (a Attachment) String() string {
	s := a.Ifname
	if s == "" {
		s = fmt.Sprintf("ifindex %d", a.Ifindex)
	}
	if a.NetNS != "" {
		s += " in " + a.NetNS
	}
	return s + " (" + a.Role.String() + ")"
}

func (a Attachment) validate() error {
	if a.Ifname == "" && a.Ifindex <= 0 {
		return fmt.Errorf("attachment: need an interface name or index")
	}
	if a.Role < RoleTask || a.Role > RoleRouter {
		return fmt.Errorf("attachment %s: unknown role", a)
	}
	return nil
}

// Miss is a SIR address a task sent to without a mapping.
type Miss struct {
	SIR        ila.SIRPrefix
	Identifier ila.Identifier
}

// Addr is the SIR address that missed.
func (m Miss) Addr() netip.Addr { return m.SIR.Addr(m.Identifier) }

// statNames name the kernel counters, indexed by the C enum ila_stat
// (kept in sync by TestStatEnumSync).
var statNames = [...]string{
	"rx_task", "rx_uplink", "rx_router",
	"translated", "local_delivered", "delivered", "inflight_forwarded",
	"miss", "miss_reported", "miss_ratelimited", "miss_ringbuf_full",
	"router_translated", "icmp_error_mapped", "fib_redirect", "fib_stack", "nh_cache_hit",
	"pass_non_ipv6", "pass_nd", "pass_multicast", "pass_link_local", "pass_not_sir",
	"pass_not_ours", "pass_miss", "pass_unknown",
	"drop_malformed", "drop_spoofed_source", "drop_locator_dst", "drop_locator_src",
	"drop_miss", "drop_unknown", "drop_router_miss", "router_icmp_sent", "drop_error",
	"drop_nd_sir", "drop_suspended", "suspended_icmp_sent", "stale_redirected", "drop_tenant", "drop_spoofed_ipv4",
}

// Stats are the datapath counters summed over CPUs since the maps were
// created (they survive a restart with pinned maps).
type Stats struct {
	Translated        uint64 // SIR->ILA on an NVE
	LocalDelivered    uint64 // task to task on the same NVE
	Delivered         uint64 // ILA->SIR, delivered to a local task
	InFlightForwarded uint64 // re-translated after a move
	Miss              uint64 // NVE lookups that missed
	RouterTranslated  uint64 // SIR->ILA on the ILA-R
	ICMPErrorsMapped  uint64 // quoted ILA destinations mapped back
	// Counters holds every kernel counter by name (translated, pass_nd,
	// drop_spoofed_source, ...).
	Counters map[string]uint64
	// Dropped holds the drop counters by reason (malformed,
	// spoofed_source, locator_dst, locator_src, miss, unknown,
	// router_miss, error).
	Dropped map[string]uint64
	// FullErrors counts table writes refused with ErrFull by this process.
	FullErrors uint64
}

func statsFrom(vals []uint64, full uint64) Stats {
	s := Stats{Counters: make(map[string]uint64, len(statNames)), Dropped: make(map[string]uint64), FullErrors: full}
	for i, n := range statNames {
		var v uint64
		if i < len(vals) {
			v = vals[i]
		}
		s.Counters[n] = v
		if len(n) > 5 && n[:5] == "drop_" {
			s.Dropped[n[5:]] = v
		}
	}
	c := s.Counters
	s.Translated, s.LocalDelivered, s.Delivered = c["translated"], c["local_delivered"], c["delivered"]
	s.InFlightForwarded, s.Miss, s.RouterTranslated = c["inflight_forwarded"], c["miss"], c["router_translated"]
	s.ICMPErrorsMapped = c["icmp_error_mapped"]
	return s
}
