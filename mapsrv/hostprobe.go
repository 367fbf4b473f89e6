package mapsrv

import (
	"context"
	"net/netip"
	"time"
)

// An NVE whose heartbeats stop is not always a dead host: ilad may have
// crashed or be restarting while the host, and the eBPF programs pinned
// in its kernel, still forward every packet of its tasks. Failing those
// tasks over (or suspending those without a standby) would turn a
// restart that loses nothing into an outage. So from its first missed
// heartbeat on, this replica asks its host directly (LivenessConfig.HostProbe: in
// cmd/mapsrv a TCP connection attempt to the underlay address, which the
// host's kernel answers, accepted or refused, as long as it runs and is
// reachable). An NVE whose host answered after its last heartbeat is not
// declared dead: it stays suspect ("agent silent, host answers") for as
// long as the host answers; once the host stops answering too, it is
// dead DeadAfter intervals after the later of its last heartbeat and its
// host's last answer. A dead host never answers, so its detection time
// is unchanged.

// probeDue reports whether nve (tracked as t, missed: how long it has
// not been heard) wants a probe of its host now; it marks the probe in
// flight. Probes start at the first missed heartbeat, not when the NVE
// becomes suspect: a suspect NVE is one interval from dead at the lab's
// SuspectAfter 2 / DeadAfter 3, and on a loaded host one probe's answer
// could come too late to hold a death (chaos reg-loss: 51-54 pings lost
// to a false death in 2 of 13 runs). Caller holds l.mu.
func (l *liveness) probeDue(t *tracked, now time.Time, missed, interval time.Duration) bool {
	if t.probing || t.state == NVEDead || missed < interval || now.Sub(t.probed) < interval/2 {
		return false
	}
	t.probing, t.probed = true, now
	return true
}

// hostAnswers reports whether t's host answered after its last heartbeat
// and recently enough (within dead) to hold off the death. Caller holds
// l.mu.
func hostAnswers(t *tracked, now time.Time, dead time.Duration) bool {
	return t.hostSeen.After(t.heard) && now.Sub(t.hostSeen) < dead
}

// probeHost probes nve's host once (its underlay address from the store)
// and records an answer. It runs on its own goroutine, tracked by
// s.probes, and ends with ctx or after one interval.
func (s *Service) probeHost(ctx context.Context, nve string) {
	defer s.probes.Done()
	lc := s.cfg.Liveness
	ctx, cancel := context.WithTimeout(ctx, lc.Interval)
	defer cancel()
	var underlay netip.Addr
	if n, _, err := s.cachedNVE(ctx, nve); err == nil {
		underlay = n.Underlay
	}
	ok := underlay.IsValid() && lc.HostProbe(ctx, underlay)
	now := s.cfg.Now().UTC()
	l := &s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.nves[nve]
	if t == nil {
		return
	}
	t.probing = false
	if ok {
		t.hostSeen = now
		l.hostAnswers.Add(1)
	}
}
