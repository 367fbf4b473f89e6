package ndemu

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
)

// verdict is what the emulator does with one received ND message.
type verdict uint8

const (
	verdictIgnore    verdict = iota // valid but nothing to do (reason says why)
	verdictInvalid                  // malformed or not allowed by RFC 4861
	verdictUnknown                  // solicitation for an address nobody owns: stay silent
	verdictAnswer                   // send the solicited NA in reply
	verdictDefend                   // DAD probe for someone else's address: send reply
	verdictAdvertise                // Router Solicitation: send an RA to reply.dst
	verdictClaim                    // unsolicited NA taken as an attach signal
	verdictSpoofed                  // unsolicited NA refused
)

var verdictNames = [...]string{"ignore", "invalid", "unknown", "answer", "defend", "advertise", "claim", "spoofed"}

func (v verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// input is one ND message received on a port, after frame validation.
type input struct {
	ifindex  int
	srcMAC   net.HardwareAddr // Ethernet source
	src, dst netip.Addr       // IPv6 header
	hopLimit uint8
	msg      ndp.Message
}

// out is a message to send: reply is built by decide, the frame by
// buildFrame.
type out struct {
	msg    ndp.Message
	dst    netip.Addr
	dstMAC net.HardwareAddr
}

// action is decide's result.
type action struct {
	verdict verdict
	reason  string
	// target and mac: the address and link-layer address claimed by an
	// unsolicited NA (verdictClaim, verdictSpoofed).
	target netip.Addr
	mac    net.HardwareAddr
	// reply for verdictAnswer, verdictDefend; for verdictAdvertise only
	// dst and dstMAC are set.
	reply out
}

// policy is the immutable input of decide besides the message.
type policy struct {
	gatewayMAC    net.HardwareAddr
	gatewayLL     netip.Addr
	prefixes      []netip.Prefix
	allowMoveByNA bool
	dir           Directory
}

func (p *policy) inPrefixes(a netip.Addr) bool {
	for _, pf := range p.prefixes {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// decide is the whole ND policy as a pure function of the message, the
// configuration and the directory.
func (p *policy) decide(in input) action {
	if in.hopLimit != ndp.HopLimit {
		return action{verdict: verdictInvalid, reason: "hop limit not 255"}
	}
	if !in.src.Is6() || in.src.Is4In6() || in.src.IsMulticast() || !in.dst.Is6() || in.dst.Is4In6() {
		return action{verdict: verdictInvalid, reason: "bad source or destination"}
	}
	switch m := in.msg.(type) {
	case *ndp.NeighborSolicitation:
		return p.solicitation(in, m)
	case *ndp.NeighborAdvertisement:
		return p.advertisement(in, m)
	case *ndp.RouterSolicitation:
		return p.routerSolicitation(in, m)
	case *ndp.RouterAdvertisement:
		return action{verdict: verdictIgnore, reason: "router advertisement from a task"}
	default:
		return action{verdict: verdictIgnore, reason: "not handled"}
	}
}

// sourceLLA returns the first link-layer address option of direction d.
func sourceLLA(opts []ndp.Option, d ndp.Direction) net.HardwareAddr {
	for _, o := range opts {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == d {
			return l.Addr
		}
	}
	return nil
}

func validTarget(t netip.Addr) bool {
	return t.Is6() && !t.Is4In6() && !t.IsMulticast() && !t.IsUnspecified() && !t.IsLoopback()
}

func (p *policy) solicitation(in input, m *ndp.NeighborSolicitation) action {
	t := m.TargetAddress.WithZone("")
	if !validTarget(t) {
		return action{verdict: verdictInvalid, reason: "bad target"}
	}
	dad := in.src.IsUnspecified()
	if in.dst.IsMulticast() {
		snm, err := ndp.SolicitedNodeMulticast(t)
		if err != nil || in.dst != snm {
			return action{verdict: verdictInvalid, reason: "destination is not the target's solicited-node group"}
		}
	} else if dad || in.dst != t {
		return action{verdict: verdictInvalid, reason: "unicast solicitation not sent to its target"}
	}
	slla := sourceLLA(m.Options, ndp.Source)
	if dad && slla != nil {
		return action{verdict: verdictInvalid, reason: "DAD probe with a source link-layer address"}
	}

	gateway := t == p.gatewayLL
	if !gateway {
		o, ok := p.dir.Owner(t)
		switch {
		case !ok:
			return action{verdict: verdictUnknown, reason: "unknown target", target: t}
		case o.Local && o.Ifindex == in.ifindex:
			// The task's own address: its DAD must succeed, and a task
			// never needs our answer for itself.
			return action{verdict: verdictIgnore, reason: "own address"}
		case dad && o.Local && o.Ifindex == 0:
			// Local but the port is unknown: it may be the prober's own.
			return action{verdict: verdictIgnore, reason: "local address, port unknown"}
		}
	}
	na := &ndp.NeighborAdvertisement{
		Router:        gateway,
		Override:      true,
		TargetAddress: t,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: p.gatewayMAC}},
	}
	if dad {
		return action{verdict: verdictDefend, reason: "address owned elsewhere", target: t,
			reply: out{msg: na, dst: allNodes, dstMAC: allNodesMAC}}
	}
	na.Solicited = true
	dstMAC := slla
	if dstMAC == nil {
		dstMAC = in.srcMAC
	}
	if len(dstMAC) != 6 || dstMAC[0]&1 != 0 {
		return action{verdict: verdictInvalid, reason: "no unicast link-layer address to answer"}
	}
	return action{verdict: verdictAnswer, target: t, reply: out{msg: na, dst: in.src, dstMAC: dstMAC}}
}

func (p *policy) advertisement(in input, m *ndp.NeighborAdvertisement) action {
	t := m.TargetAddress.WithZone("")
	if !validTarget(t) {
		return action{verdict: verdictInvalid, reason: "bad target"}
	}
	if in.src.IsUnspecified() {
		return action{verdict: verdictInvalid, reason: "advertisement from the unspecified address"}
	}
	if m.Solicited {
		if in.dst.IsMulticast() {
			return action{verdict: verdictInvalid, reason: "solicited advertisement to a multicast group"}
		}
		// An answer to the NVE kernel's own solicitation: not a claim.
		return action{verdict: verdictIgnore, reason: "solicited advertisement"}
	}
	mac := sourceLLA(m.Options, ndp.Target)
	if mac == nil {
		mac = in.srcMAC
	}
	a := action{target: t, mac: mac}
	if t == p.gatewayLL {
		a.verdict, a.reason = verdictSpoofed, "gateway address"
		return a
	}
	if bytes.Equal(mac, p.gatewayMAC) {
		a.verdict, a.reason = verdictSpoofed, "gateway MAC"
		return a
	}
	o, ok := p.dir.Owner(t)
	switch {
	case !ok && p.inPrefixes(t):
		a.verdict, a.reason = verdictClaim, "new address"
	case !ok:
		a.verdict, a.reason = verdictIgnore, "outside the SIR prefixes"
	case o.Local && o.Ifindex == in.ifindex:
		a.verdict, a.reason = verdictClaim, "own address"
	case o.Local && o.Ifindex == 0:
		a.verdict, a.reason = verdictClaim, "local address, port unknown"
	case o.Local:
		a.verdict, a.reason = verdictSpoofed, "owned by another port of this NVE"
	case !o.MAC.IsZero() && !bytes.Equal(o.MAC[:], mac):
		a.verdict, a.reason = verdictSpoofed, "owned by NVE "+o.NVE+" with another MAC"
	case p.allowMoveByNA:
		a.verdict, a.reason = verdictClaim, "move from NVE "+o.NVE
	default:
		a.verdict, a.reason = verdictSpoofed, "owned by NVE "+o.NVE
	}
	return a
}

func (p *policy) routerSolicitation(in input, m *ndp.RouterSolicitation) action {
	slla := sourceLLA(m.Options, ndp.Source)
	if in.src.IsUnspecified() {
		if slla != nil {
			return action{verdict: verdictInvalid, reason: "solicitation from :: with a source link-layer address"}
		}
		return action{verdict: verdictAdvertise, reply: out{dst: allNodes, dstMAC: allNodesMAC}}
	}
	mac := slla
	if mac == nil {
		mac = in.srcMAC
	}
	if !in.src.IsLinkLocalUnicast() || len(mac) != 6 || mac[0]&1 != 0 {
		// Answer to the group: always valid for the sender.
		return action{verdict: verdictAdvertise, reply: out{dst: allNodes, dstMAC: allNodesMAC}}
	}
	return action{verdict: verdictAdvertise, reply: out{dst: in.src, dstMAC: mac}}
}
