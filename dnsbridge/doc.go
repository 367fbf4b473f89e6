// Package dnsbridge publishes the mapping state of an ILA data center in
// DNS. A Server keeps an in-memory zone fed by a mapping watch (a Source)
// and answers queries from it with miekg/dns; no query ever reaches the
// store.
//
// Names served under the zone apex (default "ila.internal."):
//
//	<name>.<tenant>.<zone>    AAAA the task's SIR address, A its IPv4 address
//	<identifier>.id.<zone>    AAAA the current ILA address (locator, identifier,
//	                          the domain's checksum mode applied); TXT locator,
//	                          NVE, version, state, domain; while the task
//	                          is suspended by a cold or warm move: no AAAA,
//	                          and the TXT has no locator or NVE
//	<nve>.nve.<zone>          AAAA (or A) the NVE's underlay address; TXT its
//	                          locators
//
// plus PTR records for SIR addresses (in the ip6.arpa zone of each domain's
// SIR /64) and tenant IPv4 addresses (in-addr.arpa zones configured, or the
// /24 of each address), SOA and NS at every zone apex.
//
// Task, tenant and NVE names are published only when they are valid DNS
// labels (letters, digits, '-', '_'; lower-cased; tenants "id" and "nve"
// are reserved); other tasks keep their identifier records and their PTR
// records point at <identifier>.id.<zone>.
//
// The SOA serial is the store revision of the last change that altered the
// zone (one etcd transaction is one serial), and stays put while the store
// is unreachable (the last zone keeps being served).
//
// Protocol: UDP and TCP, EDNS0 with truncation (TC) to the negotiated size,
// AXFR and IXFR (from a bounded in-memory history of deltas) to allowed
// prefixes or TSIG-signed requests, debounced NOTIFY to secondaries,
// REFUSED outside the served zones, FORMERR for malformed requests, and an
// optional per-client rate limit.
//
// Embedding: Run binds and serves everything; Serve takes sockets the
// caller made; a caller with its own dns.Server mounts the Server (a
// dns.Handler) and runs Watch.
//
// Hosts learning a moved task's mapping from DNS is draft-ietf-nvo3-vmm-03
// section 4.2.1 ("getting the new mapping from a central database such as
// Domain Name System"). The protocol behaviour follows RFC 1034,
// 1995 (IXFR), 1996 (NOTIFY), 2308 (negative caching), 5936 (AXFR), 6891
// (EDNS0) and 8945 (TSIG).
package dnsbridge
