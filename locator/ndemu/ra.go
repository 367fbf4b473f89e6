package ndemu

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/ndp"
)

func (e *Emulator) raLoop(ctx context.Context, p *port) {
	t := time.NewTimer(jitter(e.cfg.RAInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-t.C:
		}
		e.sendRA(p, allNodes)
		t.Reset(jitter(e.cfg.RAInterval))
	}
}

// jitter returns d reduced by up to 25%, so NVEs do not advertise in step.
func jitter(d time.Duration) time.Duration {
	q := d / 4
	if q <= 0 {
		return d
	}
	return d - rand.N(q)
}

// routerAdvertisement builds the RA from the current configuration;
// consumeWithdrawn counts a withdrawal round (periodic RAs only).
func (e *Emulator) routerAdvertisement(consumeWithdrawn bool) *ndp.RouterAdvertisement {
	e.mu.Lock()
	pol := e.pol.Load() // consistent with withdrawn, both change under e.mu
	withdrawn := make([]netip.Prefix, 0, len(e.withdrawn))
	for p, n := range e.withdrawn {
		withdrawn = append(withdrawn, p)
		if consumeWithdrawn {
			if n <= 1 {
				delete(e.withdrawn, p)
			} else {
				e.withdrawn[p] = n - 1
			}
		}
	}
	e.mu.Unlock()
	slices.SortFunc(withdrawn, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })

	opts := []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: e.cfg.GatewayMAC}}
	if e.cfg.MTU != 0 {
		opts = append(opts, ndp.NewMTU(e.cfg.MTU))
	}
	for _, p := range pol.prefixes {
		opts = append(opts, &ndp.PrefixInformation{
			PrefixLength:                   uint8(p.Bits()),
			OnLink:                         true,
			AutonomousAddressConfiguration: e.cfg.SLAAC && p.Bits() == 64,
			ValidLifetime:                  e.cfg.PrefixLifetime,
			PreferredLifetime:              e.cfg.PrefixLifetime,
			Prefix:                         p.Addr(),
		})
	}
	for _, p := range withdrawn {
		opts = append(opts, &ndp.PrefixInformation{PrefixLength: uint8(p.Bits()), OnLink: true, Prefix: p.Addr()})
	}
	if len(e.cfg.DNSServers) > 0 {
		opts = append(opts, &ndp.RecursiveDNSServer{Lifetime: max(3*e.cfg.RAInterval, time.Second).Round(time.Second), Servers: e.cfg.DNSServers})
	}
	return &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  e.cfg.RouterLifetime.Truncate(time.Second),
		Options:         opts,
	}
}

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = multicastMAC(allNodes)
)

// sendRA sends a Router Advertisement on p to dst (all-nodes or a
// soliciting task's link-local address at dstMAC).
func (e *Emulator) sendRA(p *port, dst netip.Addr, dstMAC ...net.HardwareAddr) {
	ra := e.routerAdvertisement(dst == allNodes)
	mac := allNodesMAC
	if len(dstMAC) > 0 && dstMAC[0] != nil {
		mac = dstMAC[0]
	}
	if e.send(p, out{msg: ra, dst: dst, dstMAC: mac}) {
		e.st.raSent.Add(1)
	}
}
