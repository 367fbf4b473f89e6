package ila

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Identifier is the low 64 bits of a SIR or ILA address.
//
// With the typed format (draft-herbert-intarea-ila-01 section 4.3) its first
// three bits are a [Type], the fourth is the checksum-neutral C bit, and the
// remaining 60 bits depend on the type. With the IID format all 64 bits are
// opaque. The value is the identifier in network order read as a big-endian
// integer, so the C bit is 0x1000_0000_0000_0000.
type Identifier uint64

// Type is the 3-bit identifier type of the typed format.
type Type uint8

// Identifier types (draft-herbert-intarea-ila-01 section 4.3).
const (
	TypeIID           Type = 0 // interface identifier, no ILA meaning
	TypeLUID          Type = 1 // locally unique identifier
	TypeVNIPv4        Type = 2 // virtual network, IPv4 address
	TypeVNIPv6Unicast Type = 3 // virtual network, IPv6 unicast
	TypeVNIPv6Mcast   Type = 4 // virtual network, IPv6 multicast
	TypeNonLocal      Type = 5 // non-local address identifier
	TypeReserved6     Type = 6
	TypeReserved7     Type = 7
)

var typeNames = [...]string{"iid", "luid", "vn-ipv4", "vn-ipv6-unicast", "vn-ipv6-multicast", "non-local", "reserved-6", "reserved-7"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type-" + strconv.Itoa(int(t))
}

const (
	// CBit is the checksum-neutral flag in an Identifier (0x10 in address
	// byte 8).
	CBit Identifier = 1 << 60
	// MaxVNID is the largest virtual network identifier (28 bits).
	MaxVNID = 1<<28 - 1
	// MaxID is the largest value of the 60-bit id field.
	MaxID = 1<<60 - 1
)

// Type returns the identifier type of the typed format.
func (id Identifier) Type() Type { return Type(id >> 61) }

// C reports whether the checksum-neutral bit is set.
func (id Identifier) C() bool { return id&CBit != 0 }

// WithC returns id with the C bit set to c.
func (id Identifier) WithC(c bool) Identifier {
	if c {
		return id | CBit
	}
	return id &^ CBit
}

// ID returns the 60 bits after the type and C bit.
func (id Identifier) ID() uint64 { return uint64(id) & MaxID }

// VNID returns the 28-bit virtual network identifier of the virtual-network
// types (TypeVNIPv4, TypeVNIPv6Unicast, TypeVNIPv6Mcast) and false for the
// other types.
func (id Identifier) VNID() (uint32, bool) {
	switch id.Type() {
	case TypeVNIPv4, TypeVNIPv6Unicast, TypeVNIPv6Mcast:
		return uint32(id>>32) & MaxVNID, true
	}
	return 0, false
}

// IPv4 returns the tenant IPv4 address of a TypeVNIPv4 identifier, and the
// zero Addr otherwise.
func (id Identifier) IPv4() netip.Addr {
	if id.Type() != TypeVNIPv4 {
		return netip.Addr{}
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(id))
	return netip.AddrFrom4(b)
}

// Low32 returns the low 32 bits (the tenant address bits of the virtual
// network IPv6 types).
func (id Identifier) Low32() uint32 { return uint32(id) }

// Low16 returns the low 16 bits, the word a checksum-neutral mapping adjusts.
func (id Identifier) Low16() uint16 { return uint16(id) }

// NewLUID returns a typed locally unique identifier.
func NewLUID(v uint64) (Identifier, error) {
	if v > MaxID {
		return 0, fmt.Errorf("luid %#x: %w (max 60 bits)", v, ErrBadIdentifier)
	}
	return Identifier(uint64(TypeLUID)<<61 | v), nil
}

// NewVNIPv4 returns the virtual-network IPv4 identifier of tenant address a
// in virtual network vnid. IPv4 tenants are addressed through this type.
func NewVNIPv4(vnid uint32, a netip.Addr) (Identifier, error) {
	if vnid > MaxVNID {
		return 0, fmt.Errorf("vnid %d: %w (max %d)", vnid, ErrBadIdentifier, MaxVNID)
	}
	a = a.Unmap()
	if !a.Is4() {
		return 0, fmt.Errorf("vn-ipv4 address %v: %w", a, ErrBadIdentifier)
	}
	b := a.As4()
	return Identifier(uint64(TypeVNIPv4)<<61 | uint64(vnid)<<32 | uint64(binary.BigEndian.Uint32(b[:]))), nil
}

// NewVNIPv6Unicast returns the virtual-network IPv6 unicast identifier that
// carries the low 32 bits of a tenant IPv6 address.
func NewVNIPv6Unicast(vnid, low32 uint32) (Identifier, error) {
	if vnid > MaxVNID {
		return 0, fmt.Errorf("vnid %d: %w (max %d)", vnid, ErrBadIdentifier, MaxVNID)
	}
	return Identifier(uint64(TypeVNIPv6Unicast)<<61 | uint64(vnid)<<32 | uint64(low32)), nil
}

// NewVNIPv6Multicast returns the virtual-network IPv6 multicast identifier
// carrying the low 32 bits of a tenant multicast group.
func NewVNIPv6Multicast(vnid, low32 uint32) (Identifier, error) {
	if vnid > MaxVNID {
		return 0, fmt.Errorf("vnid %d: %w (max %d)", vnid, ErrBadIdentifier, MaxVNID)
	}
	return Identifier(uint64(TypeVNIPv6Mcast)<<61 | uint64(vnid)<<32 | uint64(low32)), nil
}

// IdentifierOf returns the low 64 bits of an IPv6 address.
func IdentifierOf(a netip.Addr) Identifier {
	b := a.As16()
	return Identifier(binary.BigEndian.Uint64(b[8:]))
}

// String returns the identifier as four colon-separated 16-bit hex groups
// ("2000:0:0:1"), as the kernel's `ip ila` prints it.
func (id Identifier) String() string { return groups(uint64(id)) }

// Hex returns the identifier as 16 lower-case hex digits, the fixed-width
// form used in etcd keys and DNS names (bytewise order = numeric order).
func (id Identifier) Hex() string { return fmt.Sprintf("%016x", uint64(id)) }

// MarshalText implements encoding.TextMarshaler.
func (id Identifier) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *Identifier) UnmarshalText(b []byte) error {
	v, err := ParseIdentifier(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseIdentifier parses the four-group form ("2000:0:0:1") or, for
// convenience, 16 hex digits ("2000000000000001").
func ParseIdentifier(s string) (Identifier, error) {
	v, err := parse64("identifier", s)
	return Identifier(v), err
}

// groups formats v as four colon-separated 16-bit hex groups.
func groups(v uint64) string {
	var b strings.Builder
	for i := 3; i >= 0; i-- {
		b.WriteString(strconv.FormatUint((v>>(16*i))&0xffff, 16))
		if i > 0 {
			b.WriteByte(':')
		}
	}
	return b.String()
}

// parse64 parses four colon-separated 16-bit hex groups, or exactly 16 hex
// digits without colons.
func parse64(what, s string) (uint64, error) {
	perr := func(msg string) error { return &ParseError{What: what, Input: s, Msg: msg} }
	if s == "" {
		return 0, perr("empty")
	}
	if !strings.Contains(s, ":") {
		if len(s) != 16 {
			return 0, perr("want four colon-separated hex groups like 2000:0:0:1, or 16 hex digits")
		}
		v, err := strconv.ParseUint(s, 16, 64)
		if err != nil {
			return 0, perr("not hexadecimal")
		}
		return v, nil
	}
	// No strings.Split: this parses every task record's identifier and
	// locator a node agent decodes.
	if n := strings.Count(s, ":") + 1; n != 4 {
		return 0, perr(fmt.Sprintf("want 4 colon-separated 16-bit hex groups, got %d", n))
	}
	var v uint64
	rest := s
	for i := range 4 {
		var p string
		p, rest, _ = strings.Cut(rest, ":")
		if len(p) == 0 || len(p) > 4 {
			return 0, perr(fmt.Sprintf("group %d %q: want 1 to 4 hex digits", i+1, p))
		}
		g, err := strconv.ParseUint(p, 16, 16)
		if err != nil {
			return 0, perr(fmt.Sprintf("group %d %q: not hexadecimal", i+1, p))
		}
		v = v<<16 | g
	}
	return v, nil
}
