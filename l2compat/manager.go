package l2compat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// DefaultPort is the IANA VXLAN UDP port.
const DefaultPort = 4789

// DefaultClaimTimeout is how long local delivery installed for a claim (a
// gratuitous ARP of a task registered on another NVE) waits for the mapping
// to commit the move before it is reverted.
const DefaultClaimTimeout = 5 * time.Second

// Config configures a Manager.
type Config struct {
	// NVE is this NVE's name as it appears in ila.Task.NVE and ila.NVE.Name.
	// Required.
	NVE string
	// Underlay is this NVE's underlay (VTEP) address, the local address of
	// the VXLAN devices. Required, IPv6 in this data center (IPv4 works too).
	Underlay netip.Addr
	// NetNS is the path of the NVE's network namespace (such as
	// /var/run/netns/nve1); "" means the caller's current namespace.
	NetNS string
	// Port is the VXLAN UDP port; 0 means DefaultPort (4789).
	Port uint16
	// MTU of the VXLAN devices and bridges; 0 means 1500. The underlay must
	// carry MTU+70 bytes (IPv6 + UDP + VXLAN + inner Ethernet).
	MTU int
	// Logger receives the Run loop's messages; nil discards them.
	Logger *slog.Logger
	// Attach is called (from Run, one claim at a time) for a gratuitous ARP
	// that may move or add an address: the agent registers the claim with
	// mapsrv, which checks it. nil ignores claims.
	// An error reverts the local delivery installed for the claim at once;
	// nil leaves it until the mapping commits the move or ClaimTimeout
	// passes, whichever comes first.
	Attach func(ctx context.Context, c Claim) error
	// ClaimTimeout bounds how long a claim the mapping has not committed
	// keeps local delivery (a refused or lost claim must not leave the MAC
	// on the claimant's port); 0 means DefaultClaimTimeout.
	ClaimTimeout time.Duration
	// Spoofed is called for a gratuitous ARP for an address registered to
	// another MAC in the same tenant; the address is not moved. It must not
	// block. nil only counts them.
	Spoofed func(c Claim, reason string)
}

func (c *Config) validate() error {
	if c.NVE == "" {
		return errors.New("l2compat config: nve name is empty")
	}
	if !c.Underlay.IsValid() || c.Underlay.IsUnspecified() || c.Underlay.IsMulticast() {
		return fmt.Errorf("l2compat config: underlay address %v: want a unicast address", c.Underlay)
	}
	if c.ClaimTimeout < 0 {
		return fmt.Errorf("l2compat config: claim timeout %v is negative", c.ClaimTimeout)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535-70) {
		return fmt.Errorf("l2compat config: mtu %d out of range", c.MTU)
	}
	return nil
}

// Stats are the Manager's counters (totals since New) and gauges.
type Stats struct {
	ARPRequests     uint64 // ARP requests received on task-facing ports
	ARPAnswered     uint64 // answered from the mapping
	ARPIgnored      uint64 // unknown / other tenant / own address: no answer, no flood
	Gratuitous      uint64 // gratuitous ARPs received
	Claims          uint64 // claims passed to Attach
	ClaimErrors     uint64 // Attach returned an error
	ClaimsDropped   uint64 // claim queue full
	Spoofed         uint64 // gratuitous ARPs refused (address owned by another MAC)
	RARPRequests    uint64
	RARPAnswered    uint64
	RARPIgnored     uint64
	Malformed       uint64 // unparsable or inconsistent ARP/RARP frames
	FDBUpdates      uint64 // FDB entries written
	FDBDeletes      uint64 // FDB entries removed
	NeighUpdates    uint64 // ARP proxy neighbour entries written
	NeighDeletes    uint64
	NetlinkErrors   uint64 // netlink operations that failed (retried on the next change)
	IgnoredTasks    uint64 // task events that are not IPv4 tenant tasks
	Probes          uint64 // unicast ARP probes sent to find a local task's port
	Tasks           int    // IPv4 tenant tasks known
	FDBEntries      int    // FDB entries programmed
	InFlightEntries int    // of which kept for packets in flight
	VNIs            int    // tenants with devices on this NVE
	Ports           int    // task-facing ports
}
