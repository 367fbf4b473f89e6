package ila

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"
)

// This file holds the vocabulary the mapping authority shares with its
// consumers (node agents, the DNS bridge, the IPv4 layer): what a task, an
// NVE and a change to them are. Consumers depend on these types, never on
// each other.

// MAC is an Ethernet address, comparable so that it can key an index.
type MAC [6]byte

// ParseMAC parses "02:00:00:00:00:01" (colons or dashes).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	// s without its separators (any ':' or '-'); no strings.Replacer:
	// building one per call cost 2.5 us of every task record a node agent
	// decodes at start.
	var h [12]byte
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ':' && c != '-' {
			if n < len(h) {
				h[n] = c
			}
			n++
		}
	}
	if n != len(h) || len(s) != 17 {
		return m, &ParseError{What: "MAC address", Input: s, Msg: "want six colon-separated hex bytes like 02:00:00:00:00:01"}
	}
	if _, err := hex.Decode(m[:], h[:]); err != nil {
		return m, &ParseError{What: "MAC address", Input: s, Msg: "not hexadecimal"}
	}
	return m, nil
}

// IsZero reports whether m is the zero (unset) address.
func (m MAC) IsZero() bool { return m == MAC{} }

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// MarshalText implements encoding.TextMarshaler; the zero MAC is "".
func (m MAC) MarshalText() ([]byte, error) {
	if m.IsZero() {
		return []byte{}, nil
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = MAC{}
		return nil
	}
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// State is the lifecycle state of a task's mapping.
type State string

// Task states.
const (
	// StateActive: the mapping is in force; packets go to Locator.
	StateActive State = "active"
	// StateSuspended: a cold (or warm) move is under way; the address is
	// used nowhere (no mapping installed, the old NVE answers ICMPv6
	// address unreachable, no locator in DNS) until the task registers at
	// the new NVE or the suspension times out (docs/etcd-layout.md).
	StateSuspended State = "suspended"
	// StateDuplicate: an older mapsrv's flap damping marked the identifier
	// duplicate; moves are refused until an operator clears it. Flap
	// damping now refuses the move itself and changes nothing.
	StateDuplicate State = "duplicate"
)

// Previous is a locator the task was reachable at before its last move.
// Until the deadline the previous NVE forwards packets in flight.
type Previous struct {
	Locator Locator   `json:"locator"`
	NVE     string    `json:"nve"`
	Until   time.Time `json:"until"`
}

// Task is the mapping authority's full record of one task (VM, container).
type Task struct {
	Domain     string     `json:"domain"`
	Name       string     `json:"name"`
	Tenant     string     `json:"tenant"`
	Identifier Identifier `json:"identifier"`
	SIR        netip.Addr `json:"sir"`
	Locator    Locator    `json:"locator"`
	NVE        string     `json:"nve"`
	VNI        uint32     `json:"vni,omitempty"`
	MAC        MAC        `json:"mac,omitzero"`
	IPv4       netip.Addr `json:"ipv4,omitzero"`
	// Lifetime granted at the last registration and its absolute expiry.
	// A zero Expiry means the task does not expire.
	Lifetime Duration  `json:"lifetime"`
	Expiry   time.Time `json:"expiry,omitzero"`
	// Version counts the changes of this record (1 on first registration).
	Version  int64      `json:"version"`
	State    State      `json:"state"`
	Previous []Previous `json:"previous,omitempty"`
	Updated  time.Time  `json:"updated,omitzero"`
	// MovedBy says what justified the task's last move to another NVE
	// (mapsrv: operator, standby, failover, orphan); empty when it never
	// moved, or when a mapping service that does not check claims moved
	// it (the previous NVE then re-asserts a task whose port it still
	// holds, docs/registration.md section 7.4).
	MovedBy string `json:"moved_by,omitempty"`
}

// Mapping returns the data-plane entry of the task in domain d.
func (t Task) Mapping(d Domain) Mapping {
	return Mapping{SIR: d.SIR, Identifier: t.Identifier, Locator: t.Locator, Csum: d.Csum, Tenant: TenantOf(t.Tenant)}
}

// NVE is a host (network virtualization edge) that tasks attach to.
type NVE struct {
	Name string `json:"name"`
	// Locators routed to this NVE, one per domain it serves.
	Locators []Locator `json:"locators"`
	// Underlay is the NVE's own address on the fabric; it is also its VTEP
	// for the IPv4 compatibility layer.
	Underlay netip.Addr `json:"underlay"`
	Status   string     `json:"status,omitempty"`
	Updated  time.Time  `json:"updated,omitzero"`
}

// EventType says what changed.
type EventType uint8

// Event types delivered by a mapping watch.
const (
	EventTaskUpsert EventType = iota + 1
	EventTaskDelete
	EventNVEUpsert
	EventNVEDelete
	EventDomainUpsert
	EventDomainDelete
	// EventSynced marks the end of a (re)list: the consumer has now seen
	// the whole store as of Revision, deletions included.
	EventSynced
	// EventPolicyUpsert and EventPolicyDelete carry a tenant policy.
	EventPolicyUpsert
	EventPolicyDelete
)

var eventNames = map[EventType]string{
	EventTaskUpsert: "task-upsert", EventTaskDelete: "task-delete",
	EventNVEUpsert: "nve-upsert", EventNVEDelete: "nve-delete",
	EventDomainUpsert: "domain-upsert", EventDomainDelete: "domain-delete",
	EventSynced: "synced", EventPolicyUpsert: "policy-upsert", EventPolicyDelete: "policy-delete",
}

func (t EventType) String() string {
	if s, ok := eventNames[t]; ok {
		return s
	}
	return fmt.Sprintf("event-%d", uint8(t))
}

// MarshalText implements encoding.TextMarshaler.
func (t EventType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: it takes the names
// MarshalText writes ("task-upsert", "synced", ...).
func (t *EventType) UnmarshalText(b []byte) error {
	for v, name := range eventNames {
		if name == string(b) {
			*t = v
			return nil
		}
	}
	return &ParseError{What: "event type", Input: string(b), Msg: "want task-upsert, task-delete, nve-upsert, nve-delete, domain-upsert, domain-delete, policy-upsert, policy-delete or synced"}
}

// Event is one change seen by a mapping watch. Exactly one of Task, NVE,
// Domain and Policy is set, except for EventSynced. For deletes the record is the last
// known value.
type Event struct {
	Type     EventType `json:"type"`
	Revision int64     `json:"revision"`
	Task     *Task     `json:"task,omitempty"`
	NVE      *NVE      `json:"nve,omitempty"`
	Domain   *Domain   `json:"domain,omitempty"`
	Policy   *Policy   `json:"policy,omitempty"`
}

// Duration is a time.Duration whose text form is Go's ("2m0s"), for JSON a
// person can read.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return &ParseError{What: "duration", Input: string(b), Msg: "want a duration like 120s or 2m"}
	}
	*d = Duration(v)
	return nil
}
