package main

import (
	"context"
	"github.com/prometheus/client_golang/prometheus"
	"time"

	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// Heartbeat implements locator.Heartbeater over the registration protocol
// (flag H; docs/registration.md): one try, bounded by ctx.
func (r registrar) Heartbeat(ctx context.Context, epoch uint32, hold time.Duration) (uint32, error) {
	// The hold travels in the Lifetime field, rounded up to 4 s units.
	units := regproto.LifetimeUnits(hold + regproto.LifetimeUnit - 1)
	var applied int64
	if r.agent != nil {
		if a := r.agent.Load(); a != nil {
			applied = a.AppliedRevision()
		}
	}
	rep, err := r.c.Do(ctx, &regproto.Message{Heartbeat: true, Epoch: epoch, Lifetime: units, Applied: applied, API: r.api})
	if err != nil {
		return 0, err
	}
	if rep.Status.Accepted() {
		return rep.Epoch, nil
	}
	if rep.Reason == regproto.ReasonFenced {
		return rep.Epoch, &locator.FencedError{Epoch: rep.Epoch}
	}
	return rep.Epoch, &locator.RejectedError{Reason: rep.Reason.String()}
}

var (
	mEpoch     = prometheus.NewDesc("ila_ilad_epoch", "This NVE's epoch at mapsrv (bumped each time it is declared dead).", nil, nil)
	mHeartbeat = prometheus.NewDesc("ila_ilad_heartbeats_total", "Heartbeats by outcome (answered, failed: no answer, fenced: declared dead since), rejoins after a fencing, standby tasks promoted by a failover here.", []string{"outcome"}, nil)
)

func collectHeartbeat(h locator.HeartbeatStats, g func(*prometheus.Desc, float64, ...string), n func(*prometheus.Desc, uint64, ...string)) {
	g(mEpoch, float64(h.Epoch))
	n(mHeartbeat, h.Sent-h.Fenced, "answered")
	n(mHeartbeat, h.Failed, "failed")
	n(mHeartbeat, h.Fenced, "fenced")
	n(mHeartbeat, h.Rejoined, "rejoined")
	n(mHeartbeat, h.Promoted, "promoted")
}
