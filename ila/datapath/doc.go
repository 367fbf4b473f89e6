// Package datapath is the ILA data plane of a node: eBPF programs at
// tc/tcx that rewrite IPv6 destinations between SIR and ILA addresses in
// the kernel, and the Go side that loads them, fills their maps and
// attaches them to interfaces.
//
// It implements the ILA-N (host/NVE) and ILA-R (router) translation of
// draft-herbert-intarea-ila (sections 3-5: address formats, translation,
// the four checksum modes of section 5.3 and in-flight forwarding after a
// move) without the kernel's ILA module.
//
// # Programs
//
//   - RoleTask, ingress of a task-facing port: a destination in a SIR
//     prefix is looked up by identifier and rewritten to its ILA address
//     with the mapping's checksum mode, then forwarded by FIB lookup and
//     redirect; a destination attached to this node is delivered straight
//     to its port. The source must be a SIR address bound to the port by
//     a Local entry (anti-spoofing); locator-space destinations are
//     dropped; Neighbour Discovery (ICMPv6 133-137), link-local and
//     multicast traffic go to the stack untouched. A miss is reported
//     through a ring buffer (at most once per identifier per second) and
//     the packet passes untranslated towards an ILA router (MissPass) or
//     is dropped (MissDrop).
//   - RoleTask, egress of the same port: ICMPv6 errors the node's stack
//     builds about a translated packet quote its ILA destination; it is
//     mapped back to the SIR address before the task sees it.
//   - RoleUplink, ingress of the fabric-facing port: a destination
//     locator of this node is translated back to the SIR address and the
//     packet is delivered to the task's port; an identifier that moved
//     away (in-flight entry, until its deadline) is re-translated to the
//     new locator and sent back out; an identifier neither here nor in
//     flight (a sender with a stale mapping) is looked up in the mapping
//     table and re-translated to the locator it holds (stale_redirected);
//     failing that the miss is reported and the packet dropped or left to
//     the stack (UnknownPolicy). A task whose local entry is Suspended
//     (cold move under way) gets no packets: the sender gets an ICMPv6
//     address unreachable (once per second per task). Locator-space
//     sources from the fabric are dropped. Quoted ILA destinations in
//     ICMPv6 errors are mapped back.
//   - RoleRouter, ingress of an ILA-R port: full-table SIR->ILA; a miss
//     in a known SIR prefix is dropped, counted, reported through the ring
//     buffer and answered with an ICMPv6 destination unreachable, code 3
//     (address unreachable), at most once per identifier per second, sent
//     to the sender's ILA address when the table knows it.
//
// Every outcome increments a per-CPU counter read by Stats.
//
// # Using it from a node agent
//
// The NVE is a network namespace with IPv6 forwarding on, one uplink to the
// fabric and one veth per task. The agent (or whoever builds the namespace)
// configures:
//
//   - the NVE end of every task veth with MAC ila.GatewayMAC (tasks resolve every
//     SIR address to it; the ND emulator answers them);
//   - a default route (or locator-space routes) towards the fabric, and a
//     route for the SIR prefixes towards the ILA router for MissPass;
//   - no NVE address inside its own locator /64s (they would be treated as
//     identifiers), and with UnknownPass an unreachable route for each own
//     locator /64 so the stack answers instead of forwarding back out.
//
// Then, in this order, so that the first packets find their tables:
//
//  1. Open(Config{PinPath: "/sys/fs/bpf/ila/<node>"}) (mount bpffs there if
//     needed).
//  2. AddLocator for each locator of the node (with its domain), AddDomain
//     for every other domain the node's tasks talk to.
//  3. UpsertLocal for each task attached here (ifindex of the NVE end of its
//     veth, the task's MAC if known: a known MAC saves a neighbour lookup per
//     delivered packet) and UpsertMapping for every identifier the node
//     knows (remote and local). Mapping.Csum must be the domain's mode.
//  4. Attach the uplink (RoleUplink), then every task port (RoleTask).
//  5. Loop on ReadMiss and answer each miss with UpsertMapping from the
//     mapping service; call ExpireInFlight now and then; export Stats.
//
// A task moving away: DeleteLocal, UpsertMapping to the new locator and
// UpsertInFlight(new mapping, deadline) so packets already on their way are
// re-translated instead of dropped. A task arriving: UpsertLocal and
// UpsertMapping to the own locator. A new task port: UpsertLocal, then
// Attach; a removed one: Detach, DeleteLocal.
//
// An ILA router opens with Config{Router: true}, fills mappings (full
// table) and domains, and attaches RoleRouter on its NVE-facing ports.
//
// # Restart without loss
//
// With Config.PinPath set (a bpffs directory), maps and tcx links are
// pinned there. Close keeps them, so the programs keep forwarding while
// the daemon is down; Open with the same PinPath adopts the maps, and
// Attach of an already pinned attachment swaps the new program in
// atomically. Unpin removes everything.
package datapath
