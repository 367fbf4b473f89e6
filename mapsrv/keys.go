package mapsrv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/ilamesh/ilamesh/ila"
)

// Key layout (documented in docs/etcd-layout.md). Every value is JSON.
const (
	// Prefix is the root of everything the mapping service stores.
	Prefix = "/ila/v1/"
	// DomainPrefix holds ila.Domain records: /ila/v1/domains/<domain>.
	DomainPrefix = Prefix + "domains/"
	// NVEPrefix holds NVERecord: /ila/v1/nves/<nve>.
	NVEPrefix = Prefix + "nves/"
	// MapPrefix holds TaskRecord: /ila/v1/map/<domain>/<identifier 16 hex>.
	MapPrefix = Prefix + "map/"
	// NamePrefix holds Index: /ila/v1/names/<tenant>/<name>.
	NamePrefix = Prefix + "names/"
	// MACPrefix holds Index: /ila/v1/macs/<mac aa:bb:cc:dd:ee:ff>.
	MACPrefix = Prefix + "macs/"
)

// DomainKey returns the key of domain name.
func DomainKey(name string) string { return DomainPrefix + name }

// NVEKey returns the key of NVE name.
func NVEKey(name string) string { return NVEPrefix + name }

// TaskKey returns the key of the mapping of id in domain.
func TaskKey(domain string, id ila.Identifier) string {
	// Same text as id.Hex(), without fmt (this is on the registration path).
	const digits = "0123456789abcdef"
	var h [16]byte
	for i := range h {
		h[15-i] = digits[uint64(id)>>(4*i)&0xf]
	}
	return MapPrefix + domain + "/" + string(h[:])
}

// NameKey returns the name index key of a task.
func NameKey(tenant, name string) string { return NamePrefix + tenant + "/" + name }

// MACKey returns the MAC index key.
func MACKey(mac ila.MAC) string { return MACPrefix + mac.String() }

// CheckName reports a name unusable as a key segment (domain, NVE, tenant
// or task name): empty, longer than 253 bytes, or holding '/', spaces or
// control characters.
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s: empty name: %w", what, ErrInvalid)
	}
	if len(s) > 253 {
		return fmt.Errorf("%s %.20q...: longer than 253 bytes: %w", what, s, ErrInvalid)
	}
	for _, r := range s {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%s %q: may not contain '/', spaces or control characters: %w", what, s, ErrInvalid)
		}
	}
	return nil
}

// NVERecord is the stored form of an NVE: ila.NVE plus what only the
// mapping service needs.
type NVERecord struct {
	ila.NVE
	// LocatorDomains pins a locator to the domain it serves
	// (locator text -> domain). A locator without an entry serves any
	// domain whose prefix it does not conflict with.
	LocatorDomains map[string]string `json:"locator_domains,omitempty"`
	// RegAddr is the NVE's registration listener (ilad), where move
	// notifications are sent. Invalid: no notifications.
	RegAddr netip.AddrPort `json:"reg_addr,omitzero"`
	// Liveness is written by heartbeats and the liveness decider
	// (liveness.go); nil for an NVE that never sent a heartbeat.
	Liveness *NVELiveness `json:"liveness,omitempty"`
}

// LocatorFor returns the NVE's locator for domain d: the one pinned to d,
// else the first unpinned one.
func (n NVERecord) LocatorFor(d string) (ila.Locator, bool) {
	var free ila.Locator
	haveFree := false
	for _, l := range n.Locators {
		pd, pinned := n.pin(l)
		if pinned && pd == d {
			return l, true
		}
		if !pinned && !haveFree {
			free, haveFree = l, true
		}
	}
	return free, haveFree
}

// pin returns the domain locator l is pinned to. It looks the text form
// of l up without allocating (this is on the registration path).
func (n NVERecord) pin(l ila.Locator) (string, bool) {
	if len(n.LocatorDomains) == 0 {
		return "", false
	}
	var buf [19]byte
	d, ok := n.LocatorDomains[string(appendLocator(buf[:0], l))]
	return d, ok
}

// appendLocator appends l in the text form of ila.Locator.String: four
// colon-separated 16-bit groups in lower-case hex without leading zeros.
func appendLocator(dst []byte, l ila.Locator) []byte {
	const digits = "0123456789abcdef"
	for i := 3; i >= 0; i-- {
		g := uint16(uint64(l) >> (16 * i))
		started := false
		for shift := 12; shift >= 0; shift -= 4 {
			d := g >> shift & 0xf
			if d != 0 || started || shift == 0 {
				dst = append(dst, digits[d])
				started = true
			}
		}
		if i > 0 {
			dst = append(dst, ':')
		}
	}
	return dst
}

// Owns reports whether loc is one of the NVE's locators usable in domain d.
func (n NVERecord) Owns(loc ila.Locator, d string) bool {
	for _, l := range n.Locators {
		if l == loc {
			pd, pinned := n.pin(l)
			return !pinned || pd == d
		}
	}
	return false
}

// TaskRecord is the stored form of a task: ila.Task plus the mapping
// service's bookkeeping.
type TaskRecord struct {
	ila.Task
	// Moves are the times of recent moves, for flap damping.
	Moves []time.Time `json:"moves,omitempty"`
	// PendingNVE is the destination of a warm or cold move in progress
	// (State suspended): the task becomes active again when it registers
	// there.
	PendingNVE string `json:"pending_nve,omitempty"`
	// PendingMode is the mode of that move.
	PendingMode ila.MoveMode `json:"pending_mode,omitempty"`
	// PendingUntil is when that move times out and is rolled back
	// (Config.SuspendTimeout after it started).
	PendingUntil time.Time `json:"pending_until,omitzero"`
	// Standby is the NVE that takes the task over if its NVE dies
	// (failover.go).
	Standby *Standby `json:"standby,omitempty"`
	// Expect is the orchestrator's announcement of a move of the task
	// (expect.go): while it lasts, a claim from the NVE it names, the
	// task's standby, is justified.
	Expect *Expectation `json:"expect,omitempty"`
}

// Index is the value of a name or MAC index entry.
type Index struct {
	Domain     string         `json:"domain"`
	Identifier ila.Identifier `json:"identifier"`
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// DecodeDomain decodes the value of a domain key and checks it against
// the key.
func DecodeDomain(key string, b []byte) (ila.Domain, error) {
	var d ila.Domain
	if err := decodeStrict(b, &d); err != nil {
		return d, fmt.Errorf("domain %s: %w: %w", key, ErrMalformed, err)
	}
	if want := strings.TrimPrefix(key, DomainPrefix); d.Name != want {
		return d, fmt.Errorf("domain %s: name %q does not match the key: %w", key, d.Name, ErrMalformed)
	}
	if err := d.Validate(); err != nil {
		return d, fmt.Errorf("domain %s: %w: %w", key, ErrMalformed, err)
	}
	return d, nil
}

// DecodeNVE decodes the value of an NVE key and checks it against the key.
func DecodeNVE(key string, b []byte) (NVERecord, error) {
	var n NVERecord
	if err := decodeStrict(b, &n); err != nil {
		return n, fmt.Errorf("nve %s: %w: %w", key, ErrMalformed, err)
	}
	if want := strings.TrimPrefix(key, NVEPrefix); n.Name != want {
		return n, fmt.Errorf("nve %s: name %q does not match the key: %w", key, n.Name, ErrMalformed)
	}
	if len(n.Locators) == 0 {
		return n, fmt.Errorf("nve %s: no locators: %w", key, ErrMalformed)
	}
	if err := checkLiveness(n.Liveness); err != nil {
		return n, fmt.Errorf("nve %s: %w: %w", key, ErrMalformed, err)
	}
	return n, nil
}

// DecodeTask decodes the value of a mapping key and checks it against the
// key (domain and identifier).
func DecodeTask(key string, b []byte) (TaskRecord, error) {
	var t TaskRecord
	if err := decodeStrict(b, &t); err != nil {
		return t, fmt.Errorf("task %s: %w: %w", key, ErrMalformed, err)
	}
	return t, checkTask(key, t)
}

// DecodeTaskFast is DecodeTask for the watchers that decode every record
// of the store (node agents, dnsbridge): records in the form the mapping
// service writes take a fast reader (taskfast.go), the rest
// encoding/json, with the same results, capacities and errors. The
// mapping service's own reads (a few records per request) keep
// DecodeTask.
func DecodeTaskFast(key string, b []byte) (TaskRecord, error) {
	var t TaskRecord
	if !decodeTaskFast(b, &t) {
		return DecodeTask(key, b)
	}
	return t, checkTask(key, t)
}

// checkTask checks a decoded task record against its key.
func checkTask(key string, t TaskRecord) error {
	if want := TaskKey(t.Domain, t.Identifier); key != want {
		return fmt.Errorf("task %s: domain %q and identifier %s do not match the key: %w", key, t.Domain, t.Identifier, ErrMalformed)
	}
	if t.Locator == 0 || t.NVE == "" {
		return fmt.Errorf("task %s: no locator or NVE: %w", key, ErrMalformed)
	}
	switch t.State {
	case ila.StateActive, ila.StateSuspended, ila.StateDuplicate:
	default:
		return fmt.Errorf("task %s: state %q: %w", key, t.State, ErrMalformed)
	}
	return nil
}

// DecodeIndex decodes a name or MAC index value.
func DecodeIndex(key string, b []byte) (Index, error) {
	var x Index
	if err := decodeStrict(b, &x); err != nil {
		return x, fmt.Errorf("index %s: %w: %w", key, ErrMalformed, err)
	}
	if x.Domain == "" {
		return x, fmt.Errorf("index %s: no domain: %w", key, ErrMalformed)
	}
	return x, nil
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w: %w", v, ErrInvalid, err)
	}
	return b, nil
}
