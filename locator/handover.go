package locator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// The source side of a live migration. Between the guest's stop at the
// source and the move's commit (the destination's registration, then the
// mapping service's notice or the watch), packets keep arriving at the
// source NVE, whose local entry delivers them to a stopped guest: lost.
// A handover tells the source where the task is going; from the guest's
// stop on, the source redirects those packets to the destination, whose
// prepared port holds them (the destination QEMU reads its tap once the
// guest runs) instead of dropping them.

// RunStateWatcher is implemented by Hypervisors that report a guest's run
// state changes: QEMU's STOP (at a migration's last copy) and RESUME (the
// guest runs again: at the source, the migration failed).
type RunStateWatcher interface {
	// WatchRunState connects to the guest's monitor and returns once it
	// watches (an error if it cannot). From then on it calls fn with
	// running false when the guest stops and true when it runs again (at
	// the hypervisor's time) until ctx ends or the monitor goes away (the
	// hypervisor exited); then it closes done.
	WatchRunState(ctx context.Context, socket string, fn func(running bool, at time.Time)) (done <-chan struct{}, err error)
}

// ErrNotActive: the task is prepared here, not active: it has nothing to
// hand over.
var ErrNotActive = errors.New("not active here")

// HandoverSpec says where a task is going and when to start redirecting.
type HandoverSpec struct {
	// Locator is the destination NVE's locator for the task's domain.
	Locator ila.Locator `json:"locator"`
	// QMP is the monitor socket of the task's VM on this (the source) host
	// [the task's own, TaskSpec.QMP]: the redirect starts when the guest
	// stops, and ends if it runs here again (a failed migration).
	QMP string `json:"qmp,omitempty"`
	// Now redirects at once (an orchestrator that saw the guest stop).
	Now bool `json:"now,omitempty"`
}

// handover is the source side's bookkeeping of a task in migration.
type handover struct {
	to           ila.Locator
	cancel       context.CancelFunc
	redirectedAt time.Time // zero: not redirecting
}

// handoverHold bounds an early redirect that neither the move's commit
// nor the guest's resume ends: then local delivery comes back.
const handoverHold = 30 * time.Second

// Handover arms the early redirect of an active local task that is
// migrating to locator h.Locator: when its guest stops here (h.QMP's STOP
// event) or at once (h.Now), the task's packets arriving here are
// redirected to the destination until the move commits (then the move's
// own in-flight redirect takes over), the guest runs here again (local
// delivery comes back) or handoverHold ends. Arming it again replaces the
// previous one. The mapping is not touched. With a QMP socket it returns
// once it watches the guest's run state (an error if it cannot connect).
// Errors: ErrNotFound (no such local task), ErrNotActive (a prepared task
// has nothing to hand over).
func (a *Agent) Handover(ctx context.Context, name string, h HandoverSpec) error {
	a.mu.Lock()
	lt := a.locals[name]
	bad := func(err error) error {
		a.mu.Unlock()
		return fmt.Errorf("handover of task %s: %w", name, err)
	}
	if lt == nil {
		return bad(ErrNotFound)
	}
	if a.runCtx == nil {
		return bad(errors.New("locator agent: not running"))
	}
	if lt.spec.Standby {
		return bad(ErrNotActive)
	}
	dn, ok := a.bySIR[lt.key.sir]
	if !ok {
		return bad(errors.New("its domain is not known yet"))
	}
	if own, ok := a.locatorFor(dn); ok && own == h.Locator || h.Locator == 0 {
		return bad(fmt.Errorf("locator %v: want the destination's (not zero, not ours)", h.Locator))
	}
	sock := h.QMP
	if sock == "" {
		sock = lt.spec.QMP
	}
	sw, watch := a.cfg.Hypervisor.(RunStateWatcher)
	if !h.Now && (sock == "" || !watch) {
		return bad(errors.New("nothing tells when its guest stops (no QMP socket, or no hypervisor monitor): give qmp or now"))
	}
	if lt.handover != nil {
		// Replaced: its redirect (if any) ends with it.
		a.restoreLocal(lt, "handover replaced")
		a.endHandover(lt)
	}
	hctx, cancel := context.WithCancel(a.runCtx)
	ho := &handover{to: h.Locator, cancel: cancel}
	lt.handover = ho
	if h.Now {
		a.log.Info("handover armed", "task", name, "locator", h.Locator, "now", true)
		a.redirectEarly(lt, a.cfg.Now())
		a.mu.Unlock()
		return nil
	}
	a.wg.Add(1) // the watch's, taken while the agent surely runs
	a.mu.Unlock()
	// Watching before returning: the caller migrates next, and the
	// guest's stop must not come before we listen.
	stop := context.AfterFunc(ctx, cancel) // the caller gave up while we connect
	done, err := sw.WatchRunState(hctx, sock, func(running bool, at time.Time) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.locals[name] != lt || lt.handover != ho {
			return
		}
		if running {
			a.restoreLocal(lt, "the guest runs here again")
		} else {
			a.redirectEarly(lt, at)
		}
	})
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		a.wg.Done()
		a.mu.Lock()
		if lt.handover == ho {
			lt.handover = nil
		}
		a.mu.Unlock()
		return fmt.Errorf("handover of task %s: hypervisor monitor %s: %w", name, sock, err)
	}
	a.log.Info("handover armed", "task", name, "locator", h.Locator, "qmp", sock)
	go func() {
		defer a.wg.Done()
		select {
		case <-done:
		case <-hctx.Done():
		}
	}()
	return nil
}

// redirectEarly points lt's packets at its handover's destination; a.mu
// is held.
func (a *Agent) redirectEarly(lt *localTask, at time.Time) {
	h := lt.handover
	if h == nil || !h.redirectedAt.IsZero() {
		return
	}
	dn := a.bySIR[lt.key.sir]
	m := ila.Mapping{SIR: lt.key.sir, Identifier: lt.key.id, Locator: h.to, Csum: a.domains[dn].d.Csum}
	h.redirectedAt = a.cfg.Now() // ours: the hypervisor's stop (at) came before
	// In-flight first, then local delivery goes: the datapath prefers a
	// local entry, so no packet falls between the two.
	a.setInFlight(lt.key, m, a.cfg.Now().Add(handoverHold))
	a.dpErr("delete local", a.cfg.Datapath.DeleteLocal(lt.key.sir, lt.key.id), "sir", lt.spec.SIR)
	a.st.EarlyRedirects++
	a.log.Info("guest stopped: redirecting its packets to the destination", "task", lt.spec.Name, "sir", lt.spec.SIR, "locator", h.to, "after_stop", durationSince(at, h.redirectedAt))
}

// restoreLocal ends lt's early redirect: local delivery comes back; a.mu
// is held.
func (a *Agent) restoreLocal(lt *localTask, why string) {
	h := lt.handover
	if h == nil || h.redirectedAt.IsZero() {
		return
	}
	h.redirectedAt = time.Time{}
	k := lt.key
	if err := a.cfg.Datapath.UpsertLocal(Local{SIR: k.sir, Identifier: k.id, Ifindex: lt.port.Ifindex, MAC: lt.spec.MAC, Tenant: ila.TenantOf(lt.spec.Tenant), IPv4: lt.spec.IPv4}); err != nil {
		a.dpErr("upsert local", err, "sir", lt.spec.SIR)
		return
	}
	if f := a.inflight[k]; f != nil {
		f.timer.Stop()
		delete(a.inflight, k)
		a.dpErr("delete in-flight", a.cfg.Datapath.DeleteInFlight(k.sir, k.id), "sir", lt.spec.SIR)
	}
	a.log.Info("handover: local delivery back", "task", lt.spec.Name, "sir", lt.spec.SIR, "why", why)
}

// endHandover stops lt's handover watcher (the task moved away, was
// detached, or a new handover replaces it); a.mu is held. An early
// redirect in place stays (a move away keeps redirecting).
func (a *Agent) endHandover(lt *localTask) {
	if h := lt.handover; h != nil {
		h.cancel()
	}
}

// handoverExpired: lt's early redirect ran out (the move never
// committed): local delivery comes back; a.mu is held.
func (a *Agent) handoverExpired(k key) {
	if lt := a.localByKey[k]; lt != nil && lt.handover != nil {
		a.restoreLocal(lt, "the move did not commit in time")
	}
}
