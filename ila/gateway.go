package ila

import "net/netip"

// The anycast gateway every NVE presents to its tasks: the same MAC and
// link-local address on every task-facing port of every NVE, so that a task
// that moves keeps a valid default router and valid neighbour entries.
// Functions, not variables: every caller gets its own copy.

// GatewayMAC is the anycast gateway MAC address (locally administered,
// unicast) of the NVE end of every task-facing port.
func GatewayMAC() MAC { return MAC{0x02, 0x1a, 0x00, 0x00, 0x00, 0x01} }

// GatewayLinkLocal is the gateway's link-local address, fe80::1, on every
// task-facing port: the tasks' default router.
func GatewayLinkLocal() netip.Addr { return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 15: 1}) }
