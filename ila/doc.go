// Package ila is the address model of Identifier-Locator Addressing (ILA):
// identifiers, locators, SIR prefixes, ILA domains, mappings, the four
// checksum modes and the transport checksum arithmetic they rely on.
//
// It implements, with the standard library only:
//
//   - draft-herbert-intarea-ila-01 section 4 (address formats: SIR and ILA
//     addresses, the typed identifier with its 3-bit type and C bit, the
//     virtual-network identifier types of section 4.5);
//   - draft-herbert-intarea-ila-01 section 5 (checksum handling: no action,
//     adjust transport checksum, checksum-neutral mapping) and the kernel's
//     neutral-map-auto variant (Documentation/networking/ila.rst);
//   - RFC 1071 and RFC 1624 (one's-complement sums and incremental update)
//     for TCP, UDP and ICMPv6 over IPv6.
//
// A SIR address is a SIR prefix (64 bits) followed by an identifier (64
// bits); an ILA address is a locator (64 bits) followed by the identifier,
// possibly adjusted by a checksum-neutral mapping. Tasks only ever see SIR
// addresses; ILA addresses exist only on the data-center wire.
//
// Nothing in this package panics on any input: parsers and transforms
// return typed errors (see [AddrError]) that wrap the sentinel errors below.
package ila
