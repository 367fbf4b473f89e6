// Package bgp is the NVE's and the ILA router's embedded BGP speaker
// (GoBGP, the library Cilium and kube-router embed): it announces the
// host's locator prefixes (or a router's SIR prefixes) as IPv6 unicast
// routes with the host's underlay address as next hop to the configured
// peers (the ToR, RFC 7938 style), so the fabric carries one prefix per
// host and task moves cause no routing churn.
//
// The routes are announced only while the owner reports the datapath
// ready and not drained; not ready or drained withdraws them. Graceful
// restart (RFC 4724, with RFC 8538 notifications) is always offered: a
// Run that ends without StopHard resets the sessions administratively,
// which a peer takes as a restart and keeps the routes (stale) for the
// restart time; the next speaker, started with Restarting (the R bit)
// because the datapath stayed pinned, sends them again. A host that dies
// loses its sessions at the hold time and its routes with them.
//
// This is the only package that imports GoBGP.
package bgp
