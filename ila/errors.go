package ila

import (
	"errors"
	"fmt"
)

// Sentinel errors. Test with errors.Is.
var (
	// ErrSyntax is wrapped by every text-parsing error.
	ErrSyntax = errors.New("invalid syntax")
	// ErrCBitSet: the checksum-neutral (C) bit is set in a SIR address. The
	// ILA draft requires it to be 0 there; neutral-map would be ambiguous.
	ErrCBitSet = errors.New("C bit set in a SIR address")
	// ErrZeroAdjust: the identifier's low 16 bits are 0x0000. Under the
	// checksum-neutral modes one's-complement addition never yields 0x0000
	// from non-zero inputs, so such an identifier collides with the one
	// ending in 0xffff and does not translate back.
	ErrZeroAdjust = errors.New("identifier low 16 bits are 0x0000 and cannot round-trip under a checksum-neutral mode (collides with 0xffff)")
	// ErrLocatorConflict: a locator is claimed by two SIR prefixes, so a
	// receiver could not restore the prefix.
	ErrLocatorConflict = errors.New("locator claimed by two SIR prefixes")
	// ErrNotInPrefix: an address is not in the SIR prefix it was expected in.
	ErrNotInPrefix = errors.New("address not in SIR prefix")
	// ErrInvalidAddr: the address is not a valid IPv6 address (zero value,
	// IPv4, or IPv4-mapped).
	ErrInvalidAddr = errors.New("not an IPv6 address")
	// ErrBadMode: unknown checksum mode or identifier format.
	ErrBadMode = errors.New("unknown mode")
	// ErrBadIdentifier: an identifier field is out of range for its type.
	ErrBadIdentifier = errors.New("identifier field out of range")
	// ErrTruncated: a transport header is too short to carry its checksum.
	ErrTruncated = errors.New("transport header truncated")
)

// ParseError reports text that could not be parsed. It wraps ErrSyntax and,
// where there is one, a more precise cause.
type ParseError struct {
	What  string // "identifier", "locator", "SIR prefix", ...
	Input string
	Msg   string
	Err   error
}

func (e *ParseError) Error() string {
	s := fmt.Sprintf("parse %s %q: %s", e.What, e.Input, e.Msg)
	return s
}

func (e *ParseError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrSyntax, e.Err}
	}
	return []error{ErrSyntax}
}

// AddrError reports an address that cannot be translated.
type AddrError struct {
	Op   string // "sir2ila", "ila2sir", "mapping"
	Addr string
	Err  error
}

func (e *AddrError) Error() string { return fmt.Sprintf("%s %s: %v", e.Op, e.Addr, e.Err) }
func (e *AddrError) Unwrap() error { return e.Err }
