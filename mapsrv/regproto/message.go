package regproto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ilamesh/ilamesh/ila"
)

// Protocol constants. docs/registration.md is the normative description.
const (
	// Version is the protocol version carried in the first header byte.
	Version = 1
	// HeaderLen is the length of the fixed header.
	HeaderLen = 28
	// AuthLen is the length of the HMAC-SHA256 value in the Authentication
	// option.
	AuthLen = sha256.Size
	// AuthOptionLen is the length of the whole Authentication option
	// (type, length, value).
	AuthOptionLen = 2 + AuthLen
	// MinMessageLen is the smallest valid message: a header followed by the
	// Authentication option (a real message also needs a Lifetime option).
	MinMessageLen = HeaderLen + AuthOptionLen
	// MaxMessageLen is the largest message either side sends or accepts.
	MaxMessageLen = 1400
	// MaxStringLen is the longest string option value (NVE name, VM-ID,
	// tenant, domain), in bytes of UTF-8.
	MaxStringLen = 255
	// MaxAddrs is the most VM address options one message may carry.
	MaxAddrs = 32
)

// Header flag bits (byte 2 of the header).
const (
	// FlagNotify marks a request sent by the mapping service to a previous
	// NVE of a task: the task moved to the locator in the Locator option.
	FlagNotify = 0x80
)

// OptionType is the type byte of a TLV option.
type OptionType uint8

// Option type codes. Types with the high bit (OptSkippable) set may be
// skipped by a receiver that does not know them; unknown types without it
// make the message malformed.
const (
	OptMAC      OptionType = 1   // 6 bytes: VM MAC address
	OptVMID     OptionType = 2   // 1-255 bytes UTF-8: VM identifier / task name
	OptIPv6     OptionType = 3   // 16 bytes: VM IPv6 address (SIR), repeatable
	OptIPv4     OptionType = 4   // 4 bytes: VM IPv4 address, repeatable
	OptLifetime OptionType = 5   // 2 bytes: lifetime in 4 s units
	OptStatus   OptionType = 6   // 2 bytes: status, reason
	OptTenant   OptionType = 7   // 1-255 bytes UTF-8
	OptDomain   OptionType = 8   // 1-255 bytes UTF-8: ILA domain name
	OptVNI      OptionType = 9   // 4 bytes
	OptLocator  OptionType = 10  // 8 bytes: ILA locator
	OptNVE      OptionType = 11  // 1-255 bytes UTF-8: sender NVE name
	OptMoveMode OptionType = 12  // 1 byte: move mode
	OptAuth     OptionType = 127 // 32 bytes: HMAC-SHA256, always last

	// OptSkippable is the "may skip" bit of an option type.
	OptSkippable OptionType = 0x80
)

var optionNames = map[OptionType]string{
	OptMAC: "mac", OptVMID: "vm-id", OptIPv6: "ipv6-address", OptIPv4: "ipv4-address",
	OptLifetime: "lifetime", OptStatus: "status", OptTenant: "tenant", OptDomain: "domain",
	OptVNI: "vni", OptLocator: "locator", OptNVE: "nve", OptMoveMode: "move-mode", OptAuth: "auth",
}

func (t OptionType) String() string {
	if s, ok := optionNames[t]; ok {
		return s
	}
	return fmt.Sprintf("option-%d", uint8(t))
}

// MsgType is the message type (header byte 1).
type MsgType uint8

// Message types.
const (
	TypeRequest MsgType = 1 // Registration Request (NVE -> mapsrv, or mapsrv -> NVE with FlagNotify)
	TypeReply   MsgType = 2 // Registration Reply
)

func (t MsgType) String() string {
	switch t {
	case TypeRequest:
		return "request"
	case TypeReply:
		return "reply"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Status is the status code of a reply. As in the draft, values below 128
// accept the registration and values from 128 reject it.
type Status uint8

// Status codes.
const (
	StatusAccepted Status = 0
	StatusRejected Status = 128
)

// Accepted reports whether s accepts the registration (s < 128).
func (s Status) Accepted() bool { return s < 128 }

func (s Status) String() string {
	switch s {
	case StatusAccepted:
		return "accepted"
	case StatusRejected:
		return "rejected"
	}
	if s.Accepted() {
		return fmt.Sprintf("accepted-%d", uint8(s))
	}
	return fmt.Sprintf("rejected-%d", uint8(s))
}

// Reason says why a reply has its status. Accepted replies carry
// ReasonNone.
type Reason uint8

// Reason codes.
const (
	ReasonNone          Reason = 0
	ReasonMalformed     Reason = 1  // the request could not be parsed
	ReasonAuth          Reason = 2  // unknown key id or bad HMAC
	ReasonReplay        Reason = 3  // sequence number seen or too old, or timestamp outside the window
	ReasonNotAuthorized Reason = 4  // the NVE may not claim this task or locator
	ReasonUnknownTask   Reason = 5  // no such task (move, deregistration)
	ReasonDuplicate     Reason = 6  // flap damping: the identifier is marked duplicate
	ReasonConflict      Reason = 7  // lost a concurrent move of the same task
	ReasonSuspended     Reason = 8  // the task is suspended (cold move under way)
	ReasonInternal      Reason = 9  // the mapping service failed (store unavailable, ...)
	ReasonInvalid       Reason = 10 // well-formed but semantically invalid (address not in the domain, ...)
	ReasonUnknownDomain Reason = 11 // no such ILA domain
	ReasonUnknownNVE    Reason = 12 // the sending NVE is not registered
	ReasonBusy          Reason = 13 // overloaded; retry later
)

var reasonNames = map[Reason]string{
	ReasonNone: "none", ReasonMalformed: "malformed", ReasonAuth: "authentication failed",
	ReasonReplay: "replay", ReasonNotAuthorized: "not authorized", ReasonUnknownTask: "unknown task",
	ReasonDuplicate: "duplicate (flap damped)", ReasonConflict: "conflict (concurrent move)",
	ReasonSuspended: "suspended", ReasonInternal: "internal error", ReasonInvalid: "invalid request",
	ReasonUnknownDomain: "unknown domain", ReasonUnknownNVE: "unknown NVE", ReasonBusy: "busy",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// MoveMode is how a task moves (draft section 7).
type MoveMode uint8

// Move modes.
const (
	MoveNone MoveMode = 0
	MoveHot  MoveMode = 1 // make before break; the previous NVE forwards in-flight packets
	MoveWarm MoveMode = 2 // like cold, state mirrored beforehand
	MoveCold MoveMode = 3 // suspended until the task registers at the new NVE
)

var moveNames = [...]string{"none", "hot", "warm", "cold"}

func (m MoveMode) String() string {
	if int(m) < len(moveNames) {
		return moveNames[m]
	}
	return fmt.Sprintf("mode-%d", uint8(m))
}

// Valid reports whether m is one of the defined modes.
func (m MoveMode) Valid() bool { return int(m) < len(moveNames) }

// ParseMoveMode parses "hot", "warm", "cold" or "none" ("" is none).
func ParseMoveMode(s string) (MoveMode, error) {
	if s == "" {
		return MoveNone, nil
	}
	for i, n := range moveNames {
		if n == s {
			return MoveMode(i), nil
		}
	}
	return 0, fmt.Errorf("move mode %q: want hot, warm or cold", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m MoveMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MoveMode) UnmarshalText(b []byte) error {
	v, err := ParseMoveMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

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

// Errors. Test with errors.Is.
var (
	// ErrMalformed: the datagram is not a valid message.
	ErrMalformed = errors.New("malformed registration message")
	// ErrTruncated: the datagram is shorter than its header or its Length
	// field. It also matches ErrMalformed.
	ErrTruncated error = &sentinel{"truncated registration message", ErrMalformed}
	// ErrAuth: the HMAC does not verify. ErrUnknownKey also matches it.
	ErrAuth = errors.New("registration message authentication failed")
	// ErrUnknownKey: the key id is not in the key set. It also matches
	// ErrAuth.
	ErrUnknownKey error = &sentinel{"unknown registration key id", ErrAuth}
	// ErrReplay: the replay window refused the message.
	ErrReplay = errors.New("replayed or stale registration message")
	// ErrRejected is matched by the error of a rejected reply (Message.Err).
	ErrRejected = errors.New("registration rejected")
	// ErrTimeout: no valid reply after all tries.
	ErrTimeout = errors.New("no registration reply")
)

// sentinel is an error value that also matches a more general one.
type sentinel struct {
	msg    string
	parent error
}

func (e *sentinel) Error() string        { return e.msg }
func (e *sentinel) Is(target error) bool { return target == e.parent }

// RejectedError is the error of a rejected reply.
type RejectedError struct {
	Status Status
	Reason Reason
}

func (e *RejectedError) Error() string { return "registration rejected: " + e.Reason.String() }

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Marshal encodes m and appends the Authentication option: HMAC-SHA256
// with secret over every byte before the HMAC value. KeyID must be set.
func (m *Message) Marshal(secret []byte) ([]byte, error) {
	return m.AppendMarshal(make([]byte, 0, 256), secret)
}

// AppendMarshal is Marshal appending to dst.
func (m *Message) AppendMarshal(dst, secret []byte) ([]byte, error) {
	return m.appendMarshal(dst, secret, nil)
}

// signer signs with one secret, reusing HMAC states (keying an HMAC
// costs two SHA-256 blocks and a few allocations). Safe for concurrent use.
type signer struct {
	secret []byte
	pool   sync.Pool // of hash.Hash keyed with secret
}

func (s *signer) get() hash.Hash {
	if h, ok := s.pool.Get().(hash.Hash); ok {
		h.Reset()
		return h
	}
	return hmac.New(sha256.New, s.secret)
}

// marshal is Marshal with the signer's secret.
func (s *signer) marshal(m *Message) ([]byte, error) {
	h := s.get()
	b, err := m.appendMarshal(make([]byte, 0, 256), s.secret, h)
	s.pool.Put(h)
	return b, err
}

// appendMarshal is AppendMarshal with mac, an HMAC keyed with secret and
// reset (nil: a new one).
func (m *Message) appendMarshal(dst, secret []byte, mac hash.Hash) ([]byte, error) {
	if m.Type != TypeRequest && m.Type != TypeReply {
		return nil, fmt.Errorf("marshal registration message: type %d: %w", m.Type, ErrMalformed)
	}
	if m.KeyID == 0 {
		return nil, errors.New("marshal registration message: key id not set")
	}
	if len(secret) == 0 {
		return nil, errors.New("marshal registration message: empty secret")
	}
	var ts uint64
	if !m.Timestamp.IsZero() {
		n := m.Timestamp.UnixNano()
		if n <= 0 || m.Timestamp.Year() > 2260 {
			return nil, fmt.Errorf("marshal registration message: timestamp %v out of range", m.Timestamp)
		}
		ts = uint64(n)
	}
	if !m.Mode.Valid() {
		return nil, fmt.Errorf("marshal registration message: move mode %d: %w", m.Mode, ErrMalformed)
	}
	if len(m.Addrs) > MaxAddrs {
		return nil, fmt.Errorf("marshal registration message: %d addresses, at most %d", len(m.Addrs), MaxAddrs)
	}
	start := len(dst)
	var flags byte
	if m.Notify {
		flags |= FlagNotify
	}
	dst = append(dst, Version, byte(m.Type), flags, 0, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = binary.BigEndian.AppendUint64(dst, ts)
	dst = binary.BigEndian.AppendUint32(dst, m.KeyID)

	var err error
	for _, s := range []struct {
		t OptionType
		v string
	}{{OptNVE, m.NVE}, {OptVMID, m.VMID}, {OptTenant, m.Tenant}, {OptDomain, m.Domain}} {
		if s.v == "" {
			continue
		}
		if err = checkString(s.v); err != nil {
			return nil, fmt.Errorf("marshal registration message: %s option: %w", s.t, err)
		}
		dst = append(dst, byte(s.t), byte(len(s.v)))
		dst = append(dst, s.v...)
	}
	if m.VNI != 0 {
		dst = append(dst, byte(OptVNI), 4)
		dst = binary.BigEndian.AppendUint32(dst, m.VNI)
	}
	if !m.MAC.IsZero() {
		dst = append(dst, byte(OptMAC), 6)
		dst = append(dst, m.MAC[:]...)
	}
	for _, a := range m.Addrs {
		switch {
		case !a.IsValid() || a.Zone() != "" || a.Is4In6():
			return nil, fmt.Errorf("marshal registration message: VM address %v: want an IPv4 or IPv6 address without zone, not IPv4-mapped", a)
		case a.Is4():
			b := a.As4()
			dst = append(dst, byte(OptIPv4), 4)
			dst = append(dst, b[:]...)
		default:
			b := a.As16()
			dst = append(dst, byte(OptIPv6), 16)
			dst = append(dst, b[:]...)
		}
	}
	if m.Locator != 0 {
		dst = append(dst, byte(OptLocator), 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(m.Locator))
	}
	dst = append(dst, byte(OptLifetime), 2)
	dst = binary.BigEndian.AppendUint16(dst, m.Lifetime)
	if m.Type == TypeReply {
		dst = append(dst, byte(OptStatus), 2, byte(m.Status), byte(m.Reason))
	}
	if m.Mode != MoveNone {
		dst = append(dst, byte(OptMoveMode), 1, byte(m.Mode))
	}
	dst = append(dst, byte(OptAuth), AuthLen)
	n := len(dst) - start + AuthLen
	if n > MaxMessageLen {
		return nil, fmt.Errorf("marshal registration message: %d bytes, at most %d", n, MaxMessageLen)
	}
	binary.BigEndian.PutUint16(dst[start+4:], uint16(n))
	if mac == nil {
		mac = hmac.New(sha256.New, secret)
	}
	mac.Write(dst[start:])
	return mac.Sum(dst), nil
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

// Keys looks up the secret of a key id and the name of the NVE (or
// mapping service) that owns it.
type Keys interface {
	Secret(keyID uint32) (nve string, secret []byte, ok bool)
}

// Parse decodes and authenticates a message: it checks the header and the
// length, looks the key id up in keys, verifies the HMAC, then decodes the
// options. It does not check the replay window (see ReplayWindow). The
// message does not alias b.
func Parse(b []byte, keys Keys) (*Message, error) {
	m, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	var (
		secret []byte
		ok     bool
	)
	if keys != nil {
		_, secret, ok = keys.Secret(m.KeyID)
	}
	if !ok || len(secret) == 0 {
		return nil, fmt.Errorf("key id %d: %w", m.KeyID, ErrUnknownKey)
	}
	if !Verify(b, secret) {
		return nil, fmt.Errorf("key id %d: %w", m.KeyID, ErrAuth)
	}
	if err := m.parseOptions(b[HeaderLen : len(b)-AuthOptionLen]); err != nil {
		return nil, err
	}
	return m, nil
}

// Verify reports whether the HMAC at the end of the message b, whose
// structure has been checked, verifies with secret.
func Verify(b []byte, secret []byte) bool {
	if len(b) < MinMessageLen {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(b[:len(b)-AuthLen])
	var sum [AuthLen]byte
	return hmac.Equal(mac.Sum(sum[:0]), b[len(b)-AuthLen:])
}

// ParseUnauthenticated decodes the header and options of b without
// checking the HMAC. Its result must not be trusted; it serves to address
// a rejected reply. On error the returned message is nevertheless non-nil
// when the fixed header could be read (Type, Seq, Timestamp and KeyID are
// then set), so that a rejection can echo the sequence number.
func ParseUnauthenticated(b []byte) (*Message, error) {
	m, err := parseHeader(b)
	if err != nil {
		return m, err
	}
	if err := m.parseOptions(b[HeaderLen : len(b)-AuthOptionLen]); err != nil {
		return &Message{Type: m.Type, Seq: m.Seq, Timestamp: m.Timestamp, KeyID: m.KeyID, Notify: m.Notify}, err
	}
	return m, nil
}

// parseHeader checks the fixed header, the Length field and the position
// of the Authentication option. When the header itself could be read the
// message is returned even with an error.
func parseHeader(b []byte) (*Message, error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("%d bytes, header needs %d: %w", len(b), HeaderLen, ErrTruncated)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("version %d, want %d: %w", b[0], Version, ErrMalformed)
	}
	t := MsgType(b[1])
	if t != TypeRequest && t != TypeReply {
		return nil, fmt.Errorf("message type %d: %w", b[1], ErrMalformed)
	}
	ts := binary.BigEndian.Uint64(b[16:])
	if ts > math.MaxInt64 {
		return nil, fmt.Errorf("timestamp %d out of range: %w", ts, ErrMalformed)
	}
	m := &Message{
		Type:   t,
		Notify: b[2]&FlagNotify != 0,
		Seq:    binary.BigEndian.Uint64(b[8:]),
		KeyID:  binary.BigEndian.Uint32(b[24:]),
	}
	if ts != 0 {
		m.Timestamp = time.Unix(0, int64(ts)).UTC()
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	switch {
	case n < MinMessageLen:
		return m, fmt.Errorf("length field %d, at least %d: %w", n, MinMessageLen, ErrMalformed)
	case n > MaxMessageLen:
		return m, fmt.Errorf("length field %d, at most %d: %w", n, MaxMessageLen, ErrMalformed)
	case len(b) > MaxMessageLen:
		return m, fmt.Errorf("datagram of %d bytes, at most %d: %w", len(b), MaxMessageLen, ErrMalformed)
	case len(b) < n:
		return m, fmt.Errorf("%d bytes, length field says %d: %w", len(b), n, ErrTruncated)
	case len(b) > n:
		return m, fmt.Errorf("%d bytes after the length of %d: %w", len(b)-n, n, ErrMalformed)
	}
	if m.KeyID == 0 {
		return m, fmt.Errorf("key id 0: %w", ErrMalformed)
	}
	if OptionType(b[n-AuthOptionLen]) != OptAuth || b[n-AuthOptionLen+1] != AuthLen {
		return m, fmt.Errorf("message does not end with a %d-byte authentication option: %w", AuthLen, ErrMalformed)
	}
	return m, nil
}

// option bits for duplicate detection.
func optBit(t OptionType) uint32 { return 1 << t }

// parseOptions decodes the options area (between the header and the
// Authentication option) into m.
func (m *Message) parseOptions(b []byte) error {
	var seen uint32
	nAddrs := 0
	for off := 0; off < len(b); {
		at := HeaderLen + off
		if len(b)-off < 2 {
			return fmt.Errorf("option header at offset %d: %w", at, ErrMalformed)
		}
		t, l := OptionType(b[off]), int(b[off+1])
		if off+2+l > len(b) {
			return fmt.Errorf("%s option at offset %d: length %d overruns the options: %w", t, at, l, ErrMalformed)
		}
		v := b[off+2 : off+2+l]
		off += 2 + l
		if t < 32 && t != OptIPv4 && t != OptIPv6 {
			if seen&optBit(t) != 0 {
				return fmt.Errorf("%s option at offset %d: repeated: %w", t, at, ErrMalformed)
			}
			seen |= optBit(t)
		}
		want := -1 // fixed value length, -1 for strings
		switch t {
		case OptMAC:
			want = 6
		case OptIPv6:
			want = 16
		case OptIPv4:
			want = 4
		case OptLifetime, OptStatus:
			want = 2
		case OptVNI:
			want = 4
		case OptLocator:
			want = 8
		case OptMoveMode:
			want = 1
		case OptVMID, OptTenant, OptDomain, OptNVE:
		case OptAuth:
			return fmt.Errorf("authentication option at offset %d is not last: %w", at, ErrMalformed)
		default:
			if t&OptSkippable != 0 {
				continue
			}
			return fmt.Errorf("unknown option type %d at offset %d without the skip bit: %w", uint8(t), at, ErrMalformed)
		}
		if want >= 0 && l != want {
			return fmt.Errorf("%s option at offset %d: length %d, want %d: %w", t, at, l, want, ErrMalformed)
		}
		switch t {
		case OptMAC:
			m.MAC = ila.MAC(v)
		case OptIPv6, OptIPv4:
			if nAddrs++; nAddrs > MaxAddrs {
				return fmt.Errorf("%s option at offset %d: more than %d addresses: %w", t, at, MaxAddrs, ErrMalformed)
			}
			a, _ := netip.AddrFromSlice(v)
			if a.Is4In6() {
				return fmt.Errorf("%s option at offset %d: IPv4-mapped address %v: %w", t, at, a, ErrMalformed)
			}
			m.Addrs = append(m.Addrs, a)
		case OptLifetime:
			m.Lifetime = binary.BigEndian.Uint16(v)
		case OptStatus:
			if m.Type != TypeReply {
				return fmt.Errorf("status option at offset %d in a request: %w", at, ErrMalformed)
			}
			m.Status, m.Reason = Status(v[0]), Reason(v[1])
		case OptVNI:
			m.VNI = binary.BigEndian.Uint32(v)
		case OptLocator:
			m.Locator = ila.Locator(binary.BigEndian.Uint64(v))
		case OptMoveMode:
			m.Mode = MoveMode(v[0])
			if !m.Mode.Valid() {
				return fmt.Errorf("move mode option at offset %d: unknown mode %d: %w", at, v[0], ErrMalformed)
			}
		case OptVMID, OptTenant, OptDomain, OptNVE:
			s := string(v)
			if err := checkString(s); err != nil {
				return fmt.Errorf("%s option at offset %d: %v: %w", t, at, err, ErrMalformed)
			}
			switch t {
			case OptVMID:
				m.VMID = s
			case OptTenant:
				m.Tenant = s
			case OptDomain:
				m.Domain = s
			case OptNVE:
				m.NVE = s
			}
		}
	}
	if seen&optBit(OptLifetime) == 0 {
		return fmt.Errorf("no lifetime option: %w", ErrMalformed)
	}
	if m.Type == TypeReply && seen&optBit(OptStatus) == 0 {
		return fmt.Errorf("reply without status option: %w", ErrMalformed)
	}
	return nil
}
