package mapsrv

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

var _ regproto.Handler = (*Service)(nil)

// Handle answers an authenticated Registration Request (regproto.Handler):
// a lifetime > 0 registers (or re-registers, or moves) the task described
// by the request, 0 deregisters it. req.NVE is the NVE that owns the key
// the request was signed with: it may only claim on its own locators.
func (s *Service) Handle(ctx context.Context, from netip.AddrPort, req *regproto.Message) *regproto.Message {
	if req.Notify {
		return req.Reply(regproto.StatusRejected, regproto.ReasonInvalid)
	}
	if req.Heartbeat {
		return s.handleHeartbeat(ctx, req)
	}
	r := Registration{
		Standby: req.Role == regproto.RoleStandby,
		Epoch:   req.Epoch,
		NVE:     req.NVE,
		Locator: req.Locator,
		Domain:  req.Domain,
		Tenant:  req.Tenant,
		Name:    req.VMID,
		MAC:     req.MAC,
		VNI:     req.VNI,
	}
	// A task has one SIR address and (IPv4 tenants) one IPv4 address;
	// a request naming more is refused as a whole rather than cut short
	// (pmip-04 section 5 lets it repeat the options; see
	// docs/registration.md section 7.4).
	var n6, n4 int
	for _, a := range req.Addrs {
		switch {
		case a.Is4() || a.Is4In6():
			n4++
			r.IPv4 = a.Unmap()
		case a.Is6():
			n6++
			r.SIR = a
		}
	}
	if n6 > 1 || n4 > 1 {
		s.c.regRejected.Add(1)
		return req.Reply(regproto.StatusRejected, regproto.ReasonInvalid)
	}
	if r.IPv4.IsValid() && req.VNI == 0 && r.SIR.IsValid() {
		r.IPv4 = netip.Addr{} // an IPv6 task that also reports an IPv4 address outside any VNI
	}
	r.Mode = req.Mode
	if req.Lifetime == 0 {
		var err error
		if r.Standby {
			err = s.withdrawStandby(ctx, r)
		} else {
			err = s.deregisterClaim(ctx, r)
		}
		if err != nil {
			return req.Reply(regproto.StatusRejected, reason(err))
		}
		return req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
	}
	r.Lifetime = req.LifetimeDuration()
	rec, err := s.Register(ctx, r)
	if err != nil {
		return req.Reply(regproto.StatusRejected, reason(err))
	}
	rep := req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
	rep.Lifetime = regproto.LifetimeUnits(time.Duration(rec.Lifetime))
	rep.Locator = rec.Locator
	rep.Domain = rec.Domain
	rep.Addrs = []netip.Addr{rec.SIR}
	if rec.IPv4.IsValid() {
		rep.Addrs = append(rep.Addrs, rec.IPv4)
		rep.VNI = rec.VNI
	}
	rep.VMID, rep.Tenant = rec.Name, rec.Tenant
	rep.Role = req.Role
	return rep
}

// handleHeartbeat answers a heartbeat (liveness.go) with the NVE's epoch,
// also when it is fenced.
func (s *Service) handleHeartbeat(ctx context.Context, req *regproto.Message) *regproto.Message {
	epoch, err := s.HeartbeatHold(ctx, req.NVE, req.Epoch, req.LifetimeDuration())
	rep := req.Reply(regproto.StatusAccepted, regproto.ReasonNone)
	if err != nil {
		rep = req.Reply(regproto.StatusRejected, reason(err))
	} else {
		s.noteApplied(req.NVE, req.Applied, req.API, s.cfg.Now().UTC()) // applied.go
	}
	rep.Epoch = epoch
	return rep
}

// deregisterClaim removes the task a deregistration request names (by its
// addresses, or by name when it carries none).
func (s *Service) deregisterClaim(ctx context.Context, r Registration) error {
	d := DeregisterRequest{NVE: r.NVE}
	if !r.SIR.IsValid() && !r.IPv4.IsValid() {
		if r.Name == "" {
			return fmt.Errorf("deregistration without an address or a name: %w", ErrInvalid)
		}
		d.Tenant, d.Name = r.Tenant, r.Name
	} else {
		dom, _, id, err := s.identify(ctx, &r)
		if err != nil {
			return err
		}
		d.Domain, d.Identifier = dom.Name, id
	}
	return s.Deregister(ctx, d)
}

// reason maps a Service error to a registration reject reason.
func reason(err error) regproto.Reason {
	switch {
	case errors.Is(err, ErrFenced):
		return regproto.ReasonFenced
	case errors.Is(err, ErrUnjustified):
		return regproto.ReasonUnjustified
	case errors.Is(err, errNoDomain):
		return regproto.ReasonUnknownDomain
	case errors.Is(err, errNoNVE):
		return regproto.ReasonUnknownNVE
	case errors.Is(err, ErrNotFound):
		return regproto.ReasonUnknownTask
	case errors.Is(err, ErrDuplicate):
		return regproto.ReasonDuplicate
	case errors.Is(err, ErrForbidden):
		return regproto.ReasonNotAuthorized
	case errors.Is(err, ErrConflict):
		return regproto.ReasonConflict
	case errors.Is(err, ErrInvalid):
		return regproto.ReasonInvalid
	}
	return regproto.ReasonInternal
}

// RegNotifier sends move notifications as signed Registration Requests
// with the Notify flag (regproto), one client socket per previous NVE.
type RegNotifier struct {
	KeyID  uint32        // key that signs the notifications
	Secret []byte        // its secret
	Keys   regproto.Keys // verifies the NVEs' replies
	// PrivateKey, if set, signs the notifications with Ed25519 instead of
	// Secret (regproto section 5.1).
	PrivateKey ed25519.PrivateKey
	// Timeout per try and Retries, as in regproto.Client (0: its defaults).
	Timeout time.Duration
	Retries int

	mu      sync.Mutex
	clients map[netip.AddrPort]*regproto.Client
}

var _ Notifier = (*RegNotifier)(nil)

// Notify implements Notifier: it tells n.NVE that the task now lives at
// n.Task.Locator and waits for the accepting reply.
func (rn *RegNotifier) Notify(ctx context.Context, n Notification) error {
	rn.mu.Lock()
	if rn.clients == nil {
		rn.clients = make(map[netip.AddrPort]*regproto.Client)
	}
	c, ok := rn.clients[n.To]
	if !ok {
		c = &regproto.Client{Server: n.To, KeyID: rn.KeyID, Secret: rn.Secret, PrivateKey: rn.PrivateKey, Keys: rn.Keys, Timeout: rn.Timeout, Retries: rn.Retries}
		rn.clients[n.To] = c
	}
	rn.mu.Unlock()
	t := n.Task
	req := &regproto.Message{
		Type:    regproto.TypeRequest,
		Notify:  true,
		Locator: t.Locator,
		MAC:     t.MAC,
		VMID:    t.Name,
		Tenant:  t.Tenant,
		Domain:  t.Domain,
		Addrs:   []netip.Addr{t.SIR},
		Mode:    regproto.MoveHot,
	}
	if t.IPv4.IsValid() {
		req.Addrs = append(req.Addrs, t.IPv4)
		req.VNI = t.VNI
	}
	switch {
	case n.Mode == ila.MoveCold || t.State == ila.StateSuspended:
		req.Mode = regproto.MoveCold
	case n.Mode == ila.MoveWarm:
		req.Mode = regproto.MoveWarm
	}
	// Lifetime: the in-flight time left for that NVE, in whole units
	// (rounded down: the store's deadline is the authority, the NVE
	// follows it when its watch catches up); 0, drop now, when it has
	// none (cold moves).
	if req.Mode != regproto.MoveCold {
		for _, p := range t.Previous {
			if p.NVE == n.NVE {
				req.Lifetime = regproto.LifetimeUnits(time.Until(p.Until))
			}
		}
	}
	rep, err := c.Do(ctx, req)
	if err != nil {
		return fmt.Errorf("notify nve %s at %s: %w", n.NVE, n.To, err)
	}
	if err := rep.Err(); err != nil {
		return fmt.Errorf("notify nve %s at %s: %w", n.NVE, n.To, err)
	}
	return nil
}

// Close closes the client sockets.
func (rn *RegNotifier) Close() error {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	for a, c := range rn.clients {
		c.Close()
		delete(rn.clients, a)
	}
	return nil
}
