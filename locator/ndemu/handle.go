package ndemu

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/ndp"
)

// send marshals o into a frame from the gateway and writes it on p.
func (e *Emulator) send(p *port, o out) bool {
	frame, err := buildFrame(e.cfg.GatewayMAC, e.cfg.GatewayLL, o)
	if err != nil {
		e.st.sendErr.Add(1)
		e.log.Warn("ndemu: build frame", "iface", p.name, "err", err)
		return false
	}
	if err := p.conn.write(frame); err != nil {
		e.st.sendErr.Add(1)
		if !errors.Is(err, net.ErrClosed) {
			e.log.Debug("ndemu: send", "iface", p.name, "err", err)
		}
		return false
	}
	return true
}

// handle processes one received frame.
func (e *Emulator) handle(ctx context.Context, p *port, frame []byte) {
	in, err := parseFrame(frame)
	if err != nil {
		e.st.invalid.Add(1)
		return
	}
	in.ifindex = p.ifindex
	switch in.msg.(type) {
	case *ndp.RouterSolicitation:
		e.st.rsReceived.Add(1)
	case *ndp.NeighborSolicitation:
		e.st.nsReceived.Add(1)
	case *ndp.NeighborAdvertisement:
		e.st.naReceived.Add(1)
	}
	a := e.pol.Load().decide(in)
	switch a.verdict {
	case verdictInvalid:
		e.st.invalid.Add(1)
	case verdictUnknown:
		e.st.unknown.Add(1)
		if mr, ok := e.cfg.Events.(MissReporter); ok && e.pol.Load().inPrefixes(a.target) &&
			e.damp.allow(p.ifindex, a.target, nil, verdictUnknown) {
			mr.UnknownTarget(ctx, p.ifindex, a.target)
		}
	case verdictAnswer, verdictDefend:
		if a.verdict == verdictDefend {
			e.st.defended.Add(1)
		}
		if e.send(p, a.reply) {
			e.st.naSent.Add(1)
		}
	case verdictAdvertise:
		e.sendRA(p, a.reply.dst, a.reply.dstMAC)
	case verdictClaim:
		e.st.claims.Add(1)
		if e.damp.allow(p.ifindex, a.target, a.mac, verdictClaim) && e.cfg.Events != nil {
			e.cfg.Events.UnsolicitedNA(ctx, p.ifindex, a.target, slices.Clone(a.mac))
		}
	case verdictSpoofed:
		e.st.spoofed.Add(1)
		if e.damp.allow(p.ifindex, a.target, a.mac, verdictSpoofed) {
			e.log.Warn("ndemu: refused neighbor advertisement", "iface", p.name, "sir", a.target, "mac", a.mac.String(), "reason", a.reason)
			if e.cfg.Events != nil {
				e.cfg.Events.Spoofed(p.ifindex, a.target, slices.Clone(a.mac), a.reason)
			}
		}
	}
}

// damper lets one event per (port, address, MAC, kind) through per
// interval: repeats are dropped, a new MAC is news.
type damper struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[dampKey]time.Time
}

type dampKey struct {
	ifindex int
	addr    netip.Addr
	mac     [6]byte
	kind    verdict
}

const maxDampEntries = 1 << 14

func (d *damper) allow(ifindex int, addr netip.Addr, mac net.HardwareAddr, kind verdict) bool {
	if d.interval <= 0 {
		return true
	}
	now := time.Now()
	k := dampKey{ifindex: ifindex, addr: addr, kind: kind}
	copy(k.mac[:], mac)
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.last[k]; ok && now.Sub(t) < d.interval {
		return false
	}
	if len(d.last) >= maxDampEntries {
		for k, t := range d.last {
			if now.Sub(t) >= d.interval {
				delete(d.last, k)
			}
		}
		if len(d.last) >= maxDampEntries {
			return false // flooded with distinct claims: shed
		}
	}
	d.last[k] = now
	return true
}
