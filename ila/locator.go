package ila

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Locator is the high 64 bits of an ILA address: a /64 that the underlay
// routes to one NVE. Its text form is four 16-bit hex groups ("2001:0:87:0").
type Locator uint64

// String returns the four-group form.
func (l Locator) String() string { return groups(uint64(l)) }

// Prefix returns the locator as an IPv6 /64.
func (l Locator) Prefix() netip.Prefix { return netip.PrefixFrom(join(uint64(l), 0), 64) }

// Addr returns the ILA address of identifier id under this locator, with no
// checksum adjustment.
func (l Locator) Addr(id Identifier) netip.Addr { return join(uint64(l), uint64(id)) }

// MarshalText implements encoding.TextMarshaler.
func (l Locator) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *Locator) UnmarshalText(b []byte) error {
	v, err := ParseLocator(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLocator parses a locator: four 16-bit hex groups ("2001:0:87:0"),
// 16 hex digits, or an IPv6 /64 prefix ("2001:0:87::/64").
func ParseLocator(s string) (Locator, error) {
	if strings.Contains(s, "/") {
		p, err := parse64Prefix("locator", s)
		return Locator(p), err
	}
	v, err := parse64("locator", s)
	return Locator(v), err
}

// LocatorOf returns the high 64 bits of an address.
func LocatorOf(a netip.Addr) Locator { return Locator(high(a)) }

// SIRPrefix is the /64 that defines an ILA domain: the high 64 bits of every
// SIR address in it. Its text form is an IPv6 prefix ("3333:0:0:1::/64").
type SIRPrefix uint64

// Prefix returns the SIR prefix as a netip.Prefix.
func (p SIRPrefix) Prefix() netip.Prefix { return netip.PrefixFrom(join(uint64(p), 0), 64) }

// Addr returns the SIR address of identifier id.
func (p SIRPrefix) Addr(id Identifier) netip.Addr { return join(uint64(p), uint64(id)) }

// Contains reports whether a is an IPv6 address in the prefix.
func (p SIRPrefix) Contains(a netip.Addr) bool { return a.Is6() && !a.Is4In6() && high(a) == uint64(p) }

// String returns the prefix text ("3333:0:0:1::/64").
func (p SIRPrefix) String() string { return p.Prefix().String() }

// MarshalText implements encoding.TextMarshaler.
func (p SIRPrefix) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *SIRPrefix) UnmarshalText(b []byte) error {
	v, err := ParseSIRPrefix(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParseSIRPrefix parses an IPv6 /64 ("3333:0:0:1::/64"). Host bits must be
// zero, so that a typo is not silently masked away.
func ParseSIRPrefix(s string) (SIRPrefix, error) {
	v, err := parse64Prefix("SIR prefix", s)
	return SIRPrefix(v), err
}

// SIRPrefixFrom converts a netip.Prefix, which must be an IPv6 /64.
func SIRPrefixFrom(p netip.Prefix) (SIRPrefix, error) {
	if !p.IsValid() || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() != 64 {
		return 0, &ParseError{What: "SIR prefix", Input: p.String(), Msg: "want an IPv6 /64"}
	}
	return SIRPrefix(high(p.Addr())), nil
}

// SIRPrefixOf returns the high 64 bits of an address as a SIR prefix.
func SIRPrefixOf(a netip.Addr) SIRPrefix { return SIRPrefix(high(a)) }

func parse64Prefix(what, s string) (uint64, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return 0, &ParseError{What: what, Input: s, Msg: "want an IPv6 /64 like 3333:0:0:1::/64"}
	}
	if !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return 0, &ParseError{What: what, Input: s, Msg: "not an IPv6 prefix"}
	}
	if p.Bits() != 64 {
		return 0, &ParseError{What: what, Input: s, Msg: fmt.Sprintf("prefix length /%d, want /64", p.Bits())}
	}
	if p.Masked() != p {
		return 0, &ParseError{What: what, Input: s, Msg: "host bits set (want the low 64 bits zero)"}
	}
	return high(p.Addr()), nil
}

func high(a netip.Addr) uint64 {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8])
}

func join(hi, lo uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}
