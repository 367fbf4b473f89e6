package ila

import (
	"net/netip"
)

func check6(op string, a netip.Addr) (netip.Addr, error) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, &AddrError{Op: op, Addr: a.String(), Err: ErrInvalidAddr}
	}
	return a.WithZone(""), nil
}

// CheckIdentifier reports whether id can be used under mode: neutral-map
// needs the C bit clear (it is the flag the mapping sets), and the neutral
// modes refuse identifiers whose low 16 bits are 0x0000 (ErrZeroAdjust).
func CheckIdentifier(id Identifier, mode CsumMode) error {
	if !mode.Valid() {
		return ErrBadMode
	}
	if mode == CsumNeutralMap && id.C() {
		return ErrCBitSet
	}
	if mode.Neutral() && id.Low16() == 0 {
		return ErrZeroAdjust
	}
	return nil
}

// SIRToILA translates a SIR address to the ILA address under locator loc.
// Only the neutral modes change the identifier; the transport checksum
// adjustment of adjust-transport is done on the packet ([AdjustTransport]).
//
// neutral-map:      o' = o +' S +' ~L +' 0xefff, then set C.
// neutral-map-auto: o' = o +' S +' ~L.
func SIRToILA(sir netip.Addr, loc Locator, mode CsumMode) (netip.Addr, error) {
	sir, err := check6("sir2ila", sir)
	if err != nil {
		return netip.Addr{}, err
	}
	id := IdentifierOf(sir)
	if err := CheckIdentifier(id, mode); err != nil {
		return netip.Addr{}, &AddrError{Op: "sir2ila", Addr: sir.String(), Err: err}
	}
	if mode.Neutral() {
		o := Add1(id.Low16(), NeutralAdjust(SIRPrefixOf(sir), loc, mode))
		id = id&^0xffff | Identifier(o)
		if mode == CsumNeutralMap {
			id |= CBit
		}
	}
	return loc.Addr(id), nil
}

// ILAToSIR translates an ILA address back to the SIR address in prefix p,
// undoing a checksum-neutral adjustment.
//
// neutral-map: if C is set, o = o' +' L +' ~S +' 0x1000 and C is cleared;
// an ILA address without C was not adjusted and only its prefix changes
// (as the kernel does). neutral-map-auto: o = o' +' L +' ~S.
func ILAToSIR(a netip.Addr, p SIRPrefix, mode CsumMode) (netip.Addr, error) {
	a, err := check6("ila2sir", a)
	if err != nil {
		return netip.Addr{}, err
	}
	if !mode.Valid() {
		return netip.Addr{}, &AddrError{Op: "ila2sir", Addr: a.String(), Err: ErrBadMode}
	}
	id := IdentifierOf(a)
	loc := LocatorOf(a)
	if mode == CsumNeutralMapAuto || (mode == CsumNeutralMap && id.C()) {
		// The inverse of NeutralAdjust: add ~d. ~(S +' ~L +' 0xefff) is
		// L +' ~S +' 0x1000.
		o := Add1(id.Low16(), ^NeutralAdjust(p, loc, mode))
		id = id&^0xffff | Identifier(o)
		if mode == CsumNeutralMap {
			id &^= CBit
		}
	}
	return p.Addr(id), nil
}
