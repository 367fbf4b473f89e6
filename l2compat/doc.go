// Package l2compat keeps IPv4 tenants working in the IPv6-only ILA data
// center (ARCHITECTURE.md flow 6; draft-ietf-nvo3-vmm-15 sections 4 and 5).
//
// IPv4 tasks are named by virtual-network IPv4 identifiers
// (draft-herbert-intarea-ila-01 section 4.3, ila.NewVNIPv4), so they live in
// the same mapping store as IPv6 tasks. On each NVE a Manager turns the
// mapping watch into layer-2 state, with no flood and learn over the overlay:
//
//   - one VXLAN device per tenant VNI over the IPv6 underlay (local = the
//     NVE's underlay address, UDP 4789, learning off, no remote or group,
//     ARP proxy on) enslaved to one bridge per VNI, named l2vx<vni> and
//     l2br<vni>; the task-facing ports of that tenant join the same bridge;
//   - every bridge port has unicast, multicast and broadcast flooding off, so
//     unknown unicast and ARP broadcasts never leave the NVE; the VXLAN port
//     also has learning off;
//   - static, sticky FDB entries from the mapping: for a remote task its MAC
//     points at the VXLAN port (bridge, master) and at the remote NVE's VTEP
//     (VXLAN, self); for a local task its MAC points at the port it was seen
//     on (any ARP from it, or the reply to a unicast ARP probe the Manager
//     sends to the task's MAC); neighbour entries IPv4 -> MAC of remote tasks
//     fill the VXLAN ARP proxy table;
//   - a userspace ARP responder on every task-facing port answers requests
//     for addresses of the same tenant from the mapping (directory, not
//     broadcast, section 4.1), ignores everything else, turns a task's
//     gratuitous ARP into a registration claim (Config.Attach) and refuses
//     a gratuitous ARP for an address owned by another MAC (Config.Spoofed);
//     a gratuitous ARP of a task registered elsewhere with the same MAC (it
//     moved here) installs local delivery at once, before the mapping
//     commits the move (make before break), and is undone if Attach fails
//     or the mapping has not committed it within Config.ClaimTimeout; an ARP
//     with the MAC of a task that lives behind another attached port of
//     this NVE is refused (Config.Spoofed) and moves nothing;
//   - a RARP server on the same ports answers a reverse request with the
//     IPv4 address registered for the MAC in that tenant (section 4.1);
//   - packets in flight (section 5): when a task moves away, the old NVE
//     points its MAC at the new NVE's VTEP until ila.Previous.Until (and
//     turns hairpin on for the VXLAN port so frames still arriving over the
//     overlay are re-tunneled), then removes the state it no longer needs,
//     down to the tenant's devices when it has no ports left in it.
//
// Use: New, then AddPort for each task-facing port of an IPv4 tenant, feed
// every mapping watch event to Apply, and run Run (claims, in-flight timers,
// probes, retries). Devices are named l2br<vni> and l2vx<vni>; they survive
// Close and are adopted by the next Manager (an agent restart keeps
// forwarding), which removes stale entries at the first EventSynced.
package l2compat
