package ila

import (
	"fmt"
	"net/netip"
)

// CsumMode is how a domain keeps transport checksums valid when the
// destination prefix is rewritten. The numbering follows the Linux kernel's
// ILA_CSUM_* values.
type CsumMode uint8

// Checksum modes (draft-herbert-intarea-ila-01 section 5).
const (
	// CsumAdjustTransport rewrites the locator and patches the TCP, UDP or
	// ICMPv6 checksum for the pseudo-header change.
	CsumAdjustTransport CsumMode = 0
	// CsumNeutralMap folds the address change into the low 16 bits of the
	// identifier and sets the C bit, so the one's-complement sum of the
	// address, and with it every transport checksum, is unchanged.
	CsumNeutralMap CsumMode = 1
	// CsumNoAction rewrites the locator only: the transport checksum is wrong
	// on the wire and right again after ILA->SIR translation.
	CsumNoAction CsumMode = 2
	// CsumNeutralMapAuto is CsumNeutralMap without the C bit: every node of
	// the domain must agree that it is always applied.
	CsumNeutralMapAuto CsumMode = 3
)

// DefaultCsumMode is the recommended mode.
const DefaultCsumMode = CsumNeutralMap

var csumNames = map[CsumMode]string{
	CsumNoAction:        "no-action",
	CsumAdjustTransport: "adjust-transport",
	CsumNeutralMap:      "neutral-map",
	CsumNeutralMapAuto:  "neutral-map-auto",
}

// CsumModes lists every mode, for help texts and tests.
var CsumModes = []CsumMode{CsumNoAction, CsumAdjustTransport, CsumNeutralMap, CsumNeutralMapAuto}

func (m CsumMode) String() string {
	if s, ok := csumNames[m]; ok {
		return s
	}
	return fmt.Sprintf("csum-mode-%d", uint8(m))
}

// Valid reports whether m is one of the four modes.
func (m CsumMode) Valid() bool { _, ok := csumNames[m]; return ok }

// Neutral reports whether m is a checksum-neutral mode.
func (m CsumMode) Neutral() bool { return m == CsumNeutralMap || m == CsumNeutralMapAuto }

// MarshalText implements encoding.TextMarshaler.
func (m CsumMode) MarshalText() ([]byte, error) {
	if !m.Valid() {
		return nil, fmt.Errorf("checksum mode %d: %w", uint8(m), ErrBadMode)
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *CsumMode) UnmarshalText(b []byte) error {
	v, err := ParseCsumMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseCsumMode parses one of "no-action", "adjust-transport",
// "neutral-map", "neutral-map-auto".
func ParseCsumMode(s string) (CsumMode, error) {
	for m, n := range csumNames {
		if n == s {
			return m, nil
		}
	}
	return 0, &ParseError{What: "checksum mode", Input: s, Msg: "want one of no-action, adjust-transport, neutral-map, neutral-map-auto", Err: ErrBadMode}
}

// Add1 is 16-bit one's-complement addition with end-around carry (+').
func Add1(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// Sum64 is the one's-complement sum of the four 16-bit words of v.
func Sum64(v uint64) uint16 {
	s := Add1(uint16(v>>48), uint16(v>>32))
	s = Add1(s, uint16(v>>16))
	return Add1(s, uint16(v))
}

// AddrSum is the one's-complement sum of the eight 16-bit words of a.
func AddrSum(a netip.Addr) uint16 {
	b := a.As16()
	var s uint16
	for i := 0; i < 16; i += 2 {
		s = Add1(s, uint16(b[i])<<8|uint16(b[i+1]))
	}
	return s
}

// NeutralAdjust returns the value added (+') to the low 16 bits of the
// identifier by a SIR->ILA checksum-neutral mapping from prefix sir to
// locator loc: S +' ~L, plus 0xefff under neutral-map to compensate for the
// C bit (0x1000 in the same one's-complement sum).
func NeutralAdjust(sir SIRPrefix, loc Locator, mode CsumMode) uint16 {
	d := Add1(Sum64(uint64(sir)), ^Sum64(uint64(loc)))
	if mode == CsumNeutralMap {
		d = Add1(d, 0xefff)
	}
	return d
}
