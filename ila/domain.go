package ila

import (
	"fmt"
	"net/netip"
)

// Format is how a domain reads identifiers.
type Format uint8

// Identifier formats.
const (
	// FormatTyped: 3-bit type, C bit, 60 bits (the ILA draft's format). The
	// C bit must be 0 in every SIR address.
	FormatTyped Format = 0
	// FormatIID: 64 opaque bits. The C bit is not reserved, so neutral-map
	// (which sets it) is not allowed; use neutral-map-auto.
	FormatIID Format = 1
)

func (f Format) String() string {
	switch f {
	case FormatTyped:
		return "typed"
	case FormatIID:
		return "iid"
	}
	return fmt.Sprintf("format-%d", uint8(f))
}

// MarshalText implements encoding.TextMarshaler.
func (f Format) MarshalText() ([]byte, error) {
	if f != FormatTyped && f != FormatIID {
		return nil, fmt.Errorf("identifier format %d: %w", uint8(f), ErrBadMode)
	}
	return []byte(f.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *Format) UnmarshalText(b []byte) error {
	switch string(b) {
	case "typed", "":
		*f = FormatTyped
	case "iid":
		*f = FormatIID
	default:
		return &ParseError{What: "identifier format", Input: string(b), Msg: "want typed or iid", Err: ErrBadMode}
	}
	return nil
}

// Domain is an ILA domain: the SIR prefix that defines it, the checksum
// mode every node of the domain applies and the identifier format.
type Domain struct {
	Name   string    `json:"name"`
	SIR    SIRPrefix `json:"sir_prefix"`
	Csum   CsumMode  `json:"csum"`
	Format Format    `json:"format"`
}

// Validate reports a domain that cannot work.
func (d Domain) Validate() error {
	if d.Name == "" {
		return fmt.Errorf("domain: empty name")
	}
	if d.SIR == 0 {
		return fmt.Errorf("domain %s: SIR prefix ::/64 is not usable", d.Name)
	}
	if !d.Csum.Valid() {
		return fmt.Errorf("domain %s: checksum mode %d: %w", d.Name, uint8(d.Csum), ErrBadMode)
	}
	switch d.Format {
	case FormatTyped:
	case FormatIID:
		if d.Csum == CsumNeutralMap {
			return fmt.Errorf("domain %s: neutral-map needs the typed identifier format (it sets the C bit); use neutral-map-auto with iid: %w", d.Name, ErrBadMode)
		}
	default:
		return fmt.Errorf("domain %s: identifier format %d: %w", d.Name, uint8(d.Format), ErrBadMode)
	}
	return nil
}

// CheckIdentifier reports whether id may be mapped in the domain.
func (d Domain) CheckIdentifier(id Identifier) error {
	if d.Format == FormatTyped && id.C() {
		return ErrCBitSet
	}
	return CheckIdentifier(id, d.Csum)
}

// ToILA translates a SIR address of the domain to its ILA address under loc.
func (d Domain) ToILA(sir netip.Addr, loc Locator) (netip.Addr, error) {
	sir, err := check6("sir2ila", sir)
	if err != nil {
		return netip.Addr{}, err
	}
	if !d.SIR.Contains(sir) {
		return netip.Addr{}, &AddrError{Op: "sir2ila", Addr: sir.String(), Err: fmt.Errorf("%w %s", ErrNotInPrefix, d.SIR)}
	}
	if err := d.CheckIdentifier(IdentifierOf(sir)); err != nil {
		return netip.Addr{}, &AddrError{Op: "sir2ila", Addr: sir.String(), Err: err}
	}
	return SIRToILA(sir, loc, d.Csum)
}

// ToSIR translates an ILA address back to the domain's SIR address.
func (d Domain) ToSIR(a netip.Addr) (netip.Addr, error) { return ILAToSIR(a, d.SIR, d.Csum) }

// Mapping is one entry of the ILA table: identifier -> locator in a domain.
type Mapping struct {
	SIR        SIRPrefix  `json:"sir_prefix"`
	Identifier Identifier `json:"identifier"`
	Locator    Locator    `json:"locator"`
	Csum       CsumMode   `json:"csum"`
	// Tenant is the task's tenant (TenantOf); 0 is untagged.
	Tenant TenantID `json:"tenant,omitzero"`
}

// SIRAddr returns the SIR address of the mapping.
func (m Mapping) SIRAddr() netip.Addr { return m.SIR.Addr(m.Identifier) }

// ILAAddr returns the ILA address packets to the task carry on the wire.
func (m Mapping) ILAAddr() (netip.Addr, error) { return SIRToILA(m.SIRAddr(), m.Locator, m.Csum) }

// Validate refuses a mapping that would not round-trip: an identifier with
// the C bit set under neutral-map, or low 16 bits of 0x0000 under a
// neutral mode (see ErrZeroAdjust).
func (m Mapping) Validate() error {
	if err := CheckIdentifier(m.Identifier, m.Csum); err != nil {
		return &AddrError{Op: "mapping", Addr: m.SIRAddr().String(), Err: err}
	}
	return nil
}

// LocatorTable records which SIR prefix each locator serves. A locator maps
// to exactly one SIR prefix, so that a receiver can restore the prefix.
// The zero value is ready to use; it is not safe for concurrent use.
type LocatorTable struct {
	m map[Locator]SIRPrefix
}

// Claim records that loc serves prefix p. A second prefix for the same
// locator is refused with ErrLocatorConflict.
func (t *LocatorTable) Claim(loc Locator, p SIRPrefix) error {
	if old, ok := t.m[loc]; ok && old != p {
		return fmt.Errorf("locator %s for %s: already serves %s: %w", loc, p, old, ErrLocatorConflict)
	}
	if t.m == nil {
		t.m = make(map[Locator]SIRPrefix)
	}
	t.m[loc] = p
	return nil
}

// Lookup returns the prefix loc serves.
func (t *LocatorTable) Lookup(loc Locator) (SIRPrefix, bool) {
	p, ok := t.m[loc]
	return p, ok
}

// Release forgets loc.
func (t *LocatorTable) Release(loc Locator) { delete(t.m, loc) }
