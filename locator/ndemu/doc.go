// Package ndemu emulates IPv6 Neighbor Discovery (RFC 4861) on the
// task-facing ports of an NVE, so that an L3 data center needs no broadcast
// or multicast flooding (draft-ietf-nvo3-vmm-15 sections 4.2 and 4.3:
// "multicast of neighbor solicitations in IPv6 [...] would need to be
// emulated").
//
// On every port the NVE answers with one anycast gateway MAC, the same on
// every NVE ([ila.GatewayMAC]), so a task that moves keeps valid neighbour
// entries. The emulator:
//
//   - answers a Neighbor Solicitation for an address the [Directory] knows
//     (a task on any NVE, or the gateway's link-local address) with a
//     solicited Neighbor Advertisement carrying the gateway MAC, and stays
//     silent for unknown targets (nothing is flooded anywhere);
//   - defends duplicate address detection: a DAD probe (NS from ::) for an
//     address owned by another task, or for the gateway address, is answered
//     with a Neighbor Advertisement to all-nodes, so the prober marks the
//     address dadfailed; a probe for the prober's own address is ignored;
//   - reports unsolicited Neighbor Advertisements (sent by a task after a
//     move, draft-ietf-nvo3-vmm-15 section 4.2) through [Events]: a claim
//     for the task's own address, or for an unknown address inside a SIR
//     prefix, is an attach signal; a claim for an address held by another
//     port or another NVE is refused and reported as spoofed;
//   - sends Router Advertisements (periodically and in answer to Router
//     Solicitations) that make tasks configure the SIR prefixes as on-link
//     and the NVE (fe80::1 by default) as their default router.
//
// # How it listens
//
// A port is served through an AF_PACKET socket bound to the interface
// (ETH_P_ALL, so it taps frames before tc ingress: a datapath program on the
// port cannot hide ND from it; XDP, which runs earlier, must pass ICMPv6
// types 133-136) with a classic BPF filter for ICMPv6 types 133, 135 and
// 136, in all-multicast mode, ignoring outgoing frames. A raw ICMPv6 socket (ndp.Listen) would only see solicitations sent to
// solicited-node groups the NVE has joined, and the targets are other hosts'
// addresses, so it would miss them. Frames are parsed (Ethernet, IPv6,
// ICMPv6 checksum, hop limit 255, code 0) and the message is decoded with
// ndp.ParseMessage; replies are marshalled with ndp.MarshalMessageChecksum and
// sent as whole Ethernet frames from the gateway MAC, so the NVE's own
// neighbour table is never involved.
//
// # Port setup expected from the agent (before AddPort)
//
//   - the port's MAC address is [ila.GatewayMAC] (frames addressed to the
//     gateway MAC must be PACKET_HOST on the NVE, or the kernel drops them);
//   - the gateway link-local address ([ila.GatewayLinkLocal], fe80::1/64) is on
//     the port (add it with nodad); net.ipv6.conf.PORT.addr_gen_mode=1 keeps
//     the kernel from adding an EUI-64 link-local address too (optional);
//   - net.ipv6.conf.PORT.forwarding=1 (the NVE routes task traffic) and
//     net.ipv6.conf.PORT.accept_ra=0 (tasks' rogue RAs are ignored); Linux
//     never sends Router Advertisements by itself, so no other RA source
//     exists on the port;
//   - the port is up (frames cannot be sent on a down port; the socket
//     survives down/up cycles);
//   - recommended: net.ipv6.conf.PORT.accept_untracked_na=1 (Linux >= 5.19,
//     RFC 9131), so the NVE kernel creates a neighbour entry for a task
//     from its unsolicited NA after a move instead of soliciting it on the
//     first packet toward it.
//
// The NVE kernel never answers solicitations for task addresses (they are not
// its own); it does answer for fe80::1 with the port MAC, which is the same
// answer the emulator gives.
//
// The Directory must report a task Local with its port's ifindex before the
// task's interface comes up (and, after a move, on the new NVE before the
// task repeats DAD), otherwise its own DAD probe is defended. Ports are
// closed by RemovePort or when Run returns.
//
// A task's unicast NUD probe (NS to a SIR address, sent to the gateway MAC)
// is answered by the emulator; the NVE stack, forwarding, would also route
// it on towards the fabric, so the datapath drops unicast ND to SIR
// addresses at tc ingress of task ports (counter drop_nd_sir) after the
// emulator's tap has seen it.
//
// Tasks need nothing but defaults: accept_ra=1 (the default with
// forwarding=0) and their SIR address. Linux ignores unsolicited NAs for
// neighbours it does not track unless accept_untracked_na is set; with one
// gateway MAC everywhere a moved task's entries stay valid anyway.
package ndemu
