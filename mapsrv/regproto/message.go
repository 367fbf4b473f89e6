package regproto

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/ilamesh/ilamesh/ila"
)

// Message is a Registration Request or Reply. The zero value of each
// optional field means "absent": such options are not sent.
type Message struct {
	Type      MsgType
	Seq       uint64    // sequence number, echoed in the reply
	Timestamp time.Time // sender clock; checked against the replay window
	KeyID     uint32    // key that signed it; identifies the sender
	NVE       string    // sender NVE name (option)
	// Locator the task is claimed on (request), or the new locator of the
	// task in a mapsrv -> NVE move notification (Notify set).
	Locator  ila.Locator
	MAC      ila.MAC // VM MAC address option
	VMID     string  // VM identifier / task name
	Tenant   string
	Domain   string // ILA domain name; empty is the default domain
	VNI      uint32
	Addrs    []netip.Addr // VM addresses: IPv6 SIR and IPv4, in order
	Lifetime uint16       // 4-second units; 0 deregisters
	Status   Status       // reply only
	Reason   Reason       // reply only
	Mode     MoveMode
	// Notify marks a request from mapsrv to a previous NVE of the task: the
	// task moved to Locator.
	Notify bool
	// Heartbeat, Role and Epoch: NVE liveness and hot standby (failover.go).
	Heartbeat bool
	Role      Role
	Epoch     uint32
	// Applied is, in a heartbeat, the store revision the NVE's datapath
	// has applied (0: not reported); API the URL of its local API for
	// operators (empty: none).
	Applied int64
	API     string
}

// LifetimeUnit is the unit of the Lifetime field.
const LifetimeUnit = 4 * time.Second

// LifetimeDuration returns the lifetime as a duration.
func (m *Message) LifetimeDuration() time.Duration {
	return time.Duration(m.Lifetime) * LifetimeUnit
}

// LifetimeUnits converts d to 4-second units, rounding down and capping at
// 0xffff (about 72.8 hours). Durations below 4 s give 0, which deregisters.
func LifetimeUnits(d time.Duration) uint16 {
	if d <= 0 {
		return 0
	}
	u := d / LifetimeUnit
	if u > math.MaxUint16 {
		return math.MaxUint16
	}
	return uint16(u)
}

// Reply returns a reply to m with the given status and reason: same
// sequence number, VM-ID, tenant and domain. The Server fills in KeyID and
// Timestamp when it signs the reply.
func (m *Message) Reply(st Status, r Reason) *Message {
	return &Message{Type: TypeReply, Seq: m.Seq, VMID: m.VMID, Tenant: m.Tenant, Domain: m.Domain, Status: st, Reason: r}
}

// Err returns nil for anything but a rejected reply, and for a rejected
// reply an error matching ErrRejected that names the reason.
func (m *Message) Err() error {
	if m.Type != TypeReply || m.Status.Accepted() {
		return nil
	}
	return &RejectedError{Status: m.Status, Reason: m.Reason}
}

// LogValue implements slog.LogValuer with the fields worth logging.
func (m *Message) LogValue() slog.Value {
	a := []slog.Attr{
		slog.String("type", m.Type.String()), slog.Uint64("seq", m.Seq), slog.Uint64("key", uint64(m.KeyID)),
	}
	if m.NVE != "" {
		a = append(a, slog.String("nve", m.NVE))
	}
	if m.VMID != "" {
		a = append(a, slog.String("vmid", m.VMID))
	}
	if m.Tenant != "" {
		a = append(a, slog.String("tenant", m.Tenant))
	}
	if m.Locator != 0 {
		a = append(a, slog.String("locator", m.Locator.String()))
	}
	a = append(a, slog.Int("lifetime", int(m.Lifetime)))
	if m.Type == TypeReply {
		a = append(a, slog.String("status", m.Status.String()), slog.String("reason", m.Reason.String()))
	}
	if m.Notify {
		a = append(a, slog.Bool("notify", true))
	}
	return slog.GroupValue(a...)
}

// checkString enforces the rules on string option values.
func checkString(s string) error {
	if len(s) == 0 || len(s) > MaxStringLen {
		return fmt.Errorf("length %d, want 1 to %d bytes", len(s), MaxStringLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}
