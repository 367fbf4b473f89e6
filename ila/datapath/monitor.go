package datapath

import (
	"net/netip"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// EventType says what happened to a packet the monitor reports.
type EventType uint8

// Monitor event types (the C enum ila_mon_type).
const (
	// EventDrop: the packet was dropped; Reason names the drop counter.
	EventDrop EventType = 1
	// EventMiss: the lookup missed and the packet went on (pass policy).
	EventMiss EventType = 2
	// EventRedirect: re-translated to Locator (in flight after a move,
	// or a sender with a stale mapping).
	EventRedirect EventType = 3
)

func (t EventType) String() string {
	switch t {
	case EventDrop:
		return "drop"
	case EventMiss:
		return "miss"
	case EventRedirect:
		return "redirect"
	}
	return "event"
}

// Event is one packet the datapath reported to the monitor (SetMonitor):
// drops with their reason, misses and redirects, never a packet that hit.
type Event struct {
	Time time.Time
	Type EventType
	// Reason is the name of the counter that counted the packet, as in
	// Stats.Counters ("drop_spoofed_source", "inflight_forwarded", ...).
	Reason  string
	Ifindex int
	Len     int
	// Src is the packet's IPv6 source, Dst its destination as a SIR
	// address (invalid: not IPv6, or it did not parse); Locator the
	// locator of a redirect.
	Src, Dst netip.Addr
	Locator  ila.Locator
}

// statName names counter i (enum ila_stat).
func statName(i int) string {
	if i >= 0 && i < len(statNames) {
		return statNames[i]
	}
	return "unknown"
}
