package locator

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Liveness and failover on the NVE side (docs/FAILOVER.md): the agent
// sends a heartbeat every Config.Heartbeat; the mapping service declares
// the NVE dead after a few missed ones, bumps its epoch and fails its
// tasks over. A returning agent (after a partition or a stall) is fenced:
// its heartbeat under the old epoch is refused with the new one. It then
// rejoins: it drops the tasks the store now maps to another NVE (they
// failed over to their standby), and only then heartbeats under the new
// epoch and registers again what is still its own. A standby task (a
// prepared port registered as standby) is promoted when the store maps
// its task here.

// Heartbeater sends the NVE's heartbeats to the mapping service.
type Heartbeater interface {
	// Heartbeat says the NVE is alive under epoch (0: unknown, e.g. just
	// started) and returns its current epoch; a *FencedError carrying the
	// current epoch when the NVE was declared dead since epoch. A hold > 0
	// announces a planned pause of the heartbeats (the agent stops for a
	// restart; the datapath keeps forwarding): the NVE is not missed for
	// that long.
	Heartbeat(ctx context.Context, epoch uint32, hold time.Duration) (uint32, error)
}

// FencedError is a heartbeat or registration refused because the NVE was
// declared dead after the epoch it sent.
type FencedError struct {
	Epoch uint32 // the current epoch (0: not known)
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("fenced: this nve was declared dead; its epoch is now %d", e.Epoch)
}

// heartbeatState is the agent's liveness state.
type heartbeatState struct {
	epoch                          atomic.Uint32
	sent, failed, fenced, rejoined atomic.Uint64
	promoted                       atomic.Uint64
	down                           atomic.Bool // heartbeats failing (logged once)
}

// HeartbeatStats are the agent's liveness counters.
type HeartbeatStats struct {
	Epoch                          uint32
	Sent, Failed, Fenced, Rejoined uint64
	// Promoted counts standby tasks promoted by a failover to this NVE.
	Promoted uint64
}

// HeartbeatStats returns the liveness counters.
func (a *Agent) HeartbeatStats() HeartbeatStats {
	h := &a.hb
	return HeartbeatStats{Epoch: h.epoch.Load(), Sent: h.sent.Load(), Failed: h.failed.Load(), Fenced: h.fenced.Load(), Rejoined: h.rejoined.Load(), Promoted: h.promoted.Load()}
}

// heartbeatLoop sends heartbeats until ctx is done.
func (a *Agent) heartbeatLoop(ctx context.Context) error {
	iv := time.Duration(a.cfg.Heartbeat)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		a.heartbeat(ctx, iv)
		select {
		case <-ctx.Done():
			a.holdHeartbeat(iv)
			return nil
		case <-t.C:
		}
	}
}

// holdHeartbeat tells mapsrv, as the agent stops, not to miss this NVE
// for Config.RestartHold: a restart is not a death.
func (a *Agent) holdHeartbeat(iv time.Duration) {
	hold := time.Duration(a.cfg.RestartHold)
	if hold <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(iv, 200*time.Millisecond))
	defer cancel()
	if _, err := a.cfg.Heartbeater.Heartbeat(ctx, a.hb.epoch.Load(), hold); err != nil {
		a.log.Warn("stopping: restart hold not acknowledged; mapsrv may declare this nve dead", "hold", hold, "err", err)
		return
	}
	a.log.Info("stopping: mapsrv holds this nve alive for a restart", "hold", hold)
}

// heartbeat sends one heartbeat and handles a fencing.
func (a *Agent) heartbeat(ctx context.Context, iv time.Duration) {
	h := &a.hb
	e := h.epoch.Load()
	hctx, cancel := context.WithTimeout(ctx, iv)
	cur, err := a.cfg.Heartbeater.Heartbeat(hctx, e, 0)
	cancel()
	if ctx.Err() != nil {
		return
	}
	var f *FencedError
	switch {
	case err == nil:
		h.sent.Add(1)
		if h.down.Swap(false) {
			// The path to mapsrv is back (a link came up): renew the
			// registrations now rather than at the end of their backoff.
			a.log.Info("heartbeats answered again; registering the tasks again", "epoch", cur)
			a.kickRegistrations()
		}
		if cur != e {
			h.epoch.Store(cur)
			a.log.Info("nve epoch", "epoch", cur, "was", e)
		}
	case errors.As(err, &f):
		h.sent.Add(1)
		h.fenced.Add(1)
		a.rejoin(ctx, f.Epoch, iv)
	default:
		h.failed.Add(1)
		if !h.down.Swap(true) {
			a.log.Warn("heartbeat not answered; retrying every interval", "err", err, "interval", iv)
		}
	}
}

// rejoin drops the local tasks the store maps elsewhere, then heartbeats
// under epoch and, if accepted, re-registers what is left at once.
func (a *Agent) rejoin(ctx context.Context, epoch uint32, iv time.Duration) {
	a.log.Warn("this nve was declared dead (fenced); dropping the tasks that failed over and rejoining", "epoch", epoch, "was", a.hb.epoch.Load())
	type local struct {
		lt     *localTask
		domain string
	}
	a.mu.Lock()
	var check []local
	for _, lt := range a.locals {
		if lt.spec.Standby {
			continue
		}
		if dn := a.bySIR[lt.key.sir]; dn != "" {
			check = append(check, local{lt, dn})
		}
	}
	a.mu.Unlock()
	for _, c := range check {
		t, ok := a.storeTask(ctx, c.domain, c.lt.key.id)
		if !ok || t.NVE == a.cfg.Node {
			continue // still ours (maybe suspended): registered again below
		}
		a.mu.Lock()
		if a.locals[c.lt.spec.Name] == c.lt {
			a.tasks[tkey{t.Domain, t.Identifier}] = storeTask{&t, a.gen}
			d := a.domains[c.domain].d
			a.log.Info("task failed over to another nve while this one was dead: detaching it here", "task", c.lt.spec.Name, "sir", c.lt.spec.SIR, "nve", t.NVE, "locator", t.Locator)
			a.moveAway(c.lt, t.Mapping(d), a.inFlightUntil(t))
		}
		a.mu.Unlock()
	}
	hctx, cancel := context.WithTimeout(ctx, iv)
	cur, err := a.cfg.Heartbeater.Heartbeat(hctx, epoch, 0)
	cancel()
	if err != nil {
		a.log.Warn("rejoin heartbeat", "epoch", epoch, "err", err)
		return
	}
	a.hb.epoch.Store(cur)
	a.hb.rejoined.Add(1)
	a.log.Info("nve rejoined", "epoch", cur)
	a.kickRegistrations()
}

// kickRegistrations makes every local task's registration loop register
// now.
func (a *Agent) kickRegistrations() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, lt := range a.locals {
		select {
		case lt.kick <- struct{}{}:
		default:
		}
	}
}

// storeTask reads a task from the store (the watch cache may lag behind a
// partition), falling back to the watch cache.
func (a *Agent) storeTask(ctx context.Context, domain string, id ila.Identifier) (ila.Task, bool) {
	if a.cfg.Lookup != nil {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		t, err := a.cfg.Lookup.GetTask(lctx, domain, id)
		cancel()
		if err == nil && t.Domain == domain && t.Identifier == id {
			return t, true
		}
		if err != nil {
			a.log.Debug("rejoin: look up task", "domain", domain, "identifier", id, "err", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st, ok := a.tasks[tkey{domain, id}]
	if !ok {
		return ila.Task{}, false
	}
	return *st.t, true
}

// promote turns a standby task into the task itself when the store maps
// it here (a failover to this NVE); a.mu is held.
func (a *Agent) promote(lt *localTask) {
	lt.spec.Standby = false
	if lt.cancel != nil {
		lt.cancel() // the standby registration loop
	}
	lt.first = make(chan error, 1)
	a.startRegistration(lt)
	a.saveState()
	a.hb.promoted.Add(1)
	a.log.Info("standby task promoted: its task failed over to this nve", "task", lt.spec.Name, "iface", lt.spec.Iface, "sir", lt.spec.SIR)
}
