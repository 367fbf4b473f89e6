package locator

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Datapath is the forwarding table the agent programs. Map operations are
// instant (no context); the implementation is safe for concurrent use.
type Datapath interface {
	// AddDomain makes the domain's SIR prefix and checksum mode known.
	AddDomain(dom ila.Domain) error
	// AddLocator declares one of this NVE's locators and the domain it
	// serves (ILA->SIR on packets arriving for it).
	AddLocator(loc ila.Locator, dom ila.Domain) error
	// UpsertMapping installs or replaces identifier -> locator.
	UpsertMapping(m ila.Mapping) error
	// DeleteMapping removes a mapping; a missing entry is not an error.
	DeleteMapping(sir ila.SIRPrefix, id ila.Identifier) error
	// Mappings calls fn for every installed mapping until fn returns false.
	Mappings(fn func(ila.Mapping) bool) error
	// UpsertLocal installs local delivery of a task attached to this NVE.
	UpsertLocal(l Local) error
	// DeleteLocal removes local delivery; a missing entry is not an error.
	DeleteLocal(sir ila.SIRPrefix, id ila.Identifier) error
	// UpsertInFlight re-translates packets still arriving here for a task
	// that moved away to m.Locator until the deadline.
	UpsertInFlight(m ila.Mapping, until time.Time) error
	// DeleteInFlight removes an in-flight entry.
	DeleteInFlight(sir ila.SIRPrefix, id ila.Identifier) error
	// AttachPort attaches the task-facing programs to a port.
	AttachPort(ifname string, ifindex int) error
	// DetachPort detaches them; a port that is gone is not an error.
	DetachPort(ifname string, ifindex int) error
}

// MappingBatcher is a Datapath that writes many mappings at once. The
// agent uses it, when the datapath has it, for the initial load and the
// resync after a re-list (a million mappings one by one take a minute).
type MappingBatcher interface {
	// UpsertMappings writes ms as UpsertMapping would one after the other
	// and returns how many of them (a prefix of ms) took effect.
	UpsertMappings(ms []ila.Mapping) (int, error)
}

// Local is the local delivery entry of a task attached to this NVE.
type Local struct {
	SIR        ila.SIRPrefix
	Identifier ila.Identifier
	Ifindex    int
	// MAC is the task's own address, the destination of frames redirected
	// to it; zero when unknown.
	MAC ila.MAC
	// Suspended stops delivery to the port while a cold or warm move of
	// the task is under way (the datapath answers unreachable).
	Suspended bool
	// Tenant is the task's tenant (ila.TenantOf): what its port may reach.
	Tenant ila.TenantID
	// IPv4 is the task's IPv4 address (IPv4 tenants): the only IPv4 source
	// its port may send from. The zero Addr leaves IPv4 unchecked.
	IPv4 netip.Addr
}

// MappingSource delivers the store's content: a full list as upserts, then
// [ila.EventSynced], then changes; after a reconnect it lists again (and
// reports deletions of what vanished) and sends EventSynced again. Watch
// blocks until ctx is done or the watch fails.
type MappingSource interface {
	Watch(ctx context.Context, fn func(ila.Event)) error
}

// TaskLookup reads one task from the store (cache misses).
type TaskLookup interface {
	GetTask(ctx context.Context, domain string, id ila.Identifier) (ila.Task, error)
}

// Miss is a cache miss reported by the datapath.
type Miss struct {
	SIR        ila.SIRPrefix
	Identifier ila.Identifier
}

// MissReader reports the datapath's cache misses; ReadMiss blocks until one
// arrives or ctx is done.
type MissReader interface {
	ReadMiss(ctx context.Context) (Miss, error)
}

// Registration is what the agent asks the mapping service to record for a
// local task. Lifetime 0 deregisters.
type Registration struct {
	NVE      string
	Locator  ila.Locator
	Domain   string
	Name     string
	Tenant   string
	SIR      netip.Addr
	MAC      ila.MAC
	IPv4     netip.Addr
	VNI      uint32
	Lifetime time.Duration
	// Mode is the move mode of the first registration after a task
	// attached here (ila.MoveHot: a claim), so that mapsrv takes it as a
	// claim even from an NVE the task left moments ago. Refreshes leave it
	// ila.MoveNone, so that one crossing a move on the wire does not move
	// the task back.
	Mode ila.MoveMode
	// Standby registers (Lifetime 0: withdraws) this NVE as the task's
	// standby; Epoch is the NVE's epoch (heartbeat.go; 0: unknown).
	Standby bool
	Epoch   uint32
}

// Registrar sends registrations to the mapping service and returns the
// granted lifetime. A refusal is a *RejectedError.
type Registrar interface {
	Register(ctx context.Context, r Registration) (granted time.Duration, err error)
}

// RejectedError is a registration the mapping service refused.
type RejectedError struct {
	Reason string
}

func (e *RejectedError) Error() string { return rejectedPrefix + e.Reason }

// Port is a task-facing interface of the NVE.
type Port struct {
	Name    string
	Ifindex int
	// PeerMAC is the task's MAC seen behind the port, if known.
	PeerMAC ila.MAC
}

// Ports prepares task-facing interfaces: gateway MAC, fe80::1, sysctls,
// link up. Prepare is idempotent.
type Ports interface {
	Prepare(ifname string) (Port, error)
	Release(ifname string) error
}

// PortHook is told about task ports coming and going (the ND emulator, the
// IPv4 compatibility layer).
type PortHook interface {
	AddPort(ctx context.Context, p Port, t TaskSpec) error
	RemovePort(p Port, t TaskSpec) error
}

// Sentinel errors.
var (
	// ErrNotFound: no such task.
	ErrNotFound = errors.New("not found")
	// ErrExists: a task of that name or address is already attached.
	ErrExists = errors.New("already attached")
	// ErrRouter: an ILA router's agent (Config.Router) attaches no tasks.
	ErrRouter = errors.New("an ILA router attaches no tasks")
)
