package locator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// TaskState is where a task is in its life at this NVE. Hooks (a libvirt
// hook, an orchestrator) read it to retry idempotently.
type TaskState string

// Task states.
const (
	// StatePrepared: port, datapath, local delivery, ND emulator and IPv4
	// hooks are ready but the task is not registered; it waits for its
	// commit (the destination of a live migration before switchover).
	StatePrepared TaskState = "prepared"
	// StateActive: registered here (or registering).
	StateActive TaskState = "active"
	// StateMoved: the task moved to another NVE; this one redirects its
	// packets in flight for a while. Kept for a while after the move.
	StateMoved TaskState = "moved"
)

// Commit triggers, as TaskStatus.CommittedBy reports them.
const (
	CommitByFrame = "frame" // the task's first announce frame on its port
	CommitByAPI   = "api"   // Commit, or attaching the spec again without Standby
	CommitByQMP   = "qmp"   // the hypervisor reported the guest running
	CommitByClaim = "claim" // Claim: the ND emulator or the IPv4 layer saw the task's unsolicited NA or gratuitous ARP
)

// ErrNoPort: the task's interface does not exist (yet): a hypervisor may
// create its tap later.
var ErrNoPort = errors.New("no such interface")

// ErrNotPrepared: the task is attached but not prepared (active), so it
// cannot be aborted.
var ErrNotPrepared = errors.New("not prepared")

// FrameWatcher is implemented by Ports that can watch what a task sends on
// its port. WatchFrames starts watching before it returns (no frame sent
// afterwards is missed) and delivers the arrival time (the kernel's) of the
// first frame match accepts on the channel, then stops; it stops without
// delivering when ctx ends.
type FrameWatcher interface {
	WatchFrames(ctx context.Context, p Port, match func(frame []byte) bool) (<-chan time.Time, error)
}

// Hypervisor tells when a guest runs and asks it to announce itself; cmd/
// plugs in a QMP client. socket is TaskSpec.QMP.
type Hypervisor interface {
	// WaitRunning returns once the guest runs (at once if it does) with
	// the time it resumed, or when ctx ends.
	WaitRunning(ctx context.Context, socket string) (time.Time, error)
	// Announce asks the hypervisor to send the guest's announce frames.
	Announce(ctx context.Context, socket string) error
}

// migration is the prepare/commit bookkeeping of a local task.
type migration struct {
	cancel      context.CancelFunc // stops the frame and QMP watchers
	preparedAt  time.Time
	firstFrame  time.Time
	committedAt time.Time
	committedBy string
}

// moved is a task that moved away from this NVE.
type moved struct {
	status TaskStatus
	at     time.Time
}

// movedKeep is how long a moved-away task stays listed.
const movedKeep = 10 * time.Minute

// Prepare prepares a task on this NVE ahead of its arrival (the
// destination of a live migration): port, datapath, local delivery and
// port hooks, no registration. The task is committed (registered, which
// moves its mapping here) by whichever comes first: its first announce
// frame on the port (QEMU's RARP, a gratuitous ARP, an unsolicited NA or a
// packet from its address), Commit, or the hypervisor reporting the guest
// running (when t.QMP names its monitor socket). Preparing again is a no-op.
func (a *Agent) Prepare(ctx context.Context, t TaskSpec) error {
	t.Standby, t.AutoCommit = true, true
	return a.attach(ctx, t, false, false, false)
}

// startWatchers starts the commit triggers of a prepared task; a.mu is
// held.
func (a *Agent) startWatchers(lt *localTask) {
	wctx, cancel := context.WithCancel(a.runCtx)
	lt.mig = &migration{cancel: cancel, preparedAt: a.cfg.Now()}
	if !lt.spec.AutoCommit {
		return
	}
	name := lt.spec.Name
	if fw, ok := a.cfg.Ports.(FrameWatcher); ok {
		spec := lt.spec
		ch, err := fw.WatchFrames(wctx, lt.port, func(f []byte) bool { return isAnnounce(f, spec) })
		if err != nil {
			a.log.Warn("watch task port for its first frame (commit waits for the API or the hypervisor)", "task", name, "iface", lt.port.Name, "err", err)
		} else {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				select {
				case at, ok := <-ch:
					if ok {
						a.commitBy(name, CommitByFrame, at)
					}
				case <-wctx.Done():
				}
			}()
		}
	}
	if lt.spec.QMP != "" && a.cfg.Hypervisor != nil {
		sock := lt.spec.QMP
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if _, err := a.cfg.Hypervisor.WaitRunning(wctx, sock); err != nil {
				if wctx.Err() == nil {
					a.log.Warn("hypervisor monitor (commit waits for the task's first frame or the API)", "task", name, "qmp", sock, "err", err)
				}
				return
			}
			a.commitBy(name, CommitByQMP, time.Time{})
		}()
	}
}

// stopWatchers stops lt's commit triggers; a.mu is held.
func (lt *localTask) stopWatchers() {
	if lt.mig != nil && lt.mig.cancel != nil {
		lt.mig.cancel()
	}
}

// Commit commits a prepared task: it registers it here, which moves its
// mapping. Committing an active task is a no-op; a task that is not here
// (never prepared, aborted, moved away) is ErrNotFound.
func (a *Agent) Commit(ctx context.Context, name string) error {
	a.mu.Lock()
	lt := a.locals[name]
	if lt == nil {
		a.mu.Unlock()
		return fmt.Errorf("commit task %s: %w (prepare it first)", name, ErrNotFound)
	}
	if !lt.spec.Standby {
		a.mu.Unlock()
		return nil
	}
	a.commitLocked(lt, CommitByAPI, time.Time{})
	a.mu.Unlock()
	return a.waitFirst(ctx, lt, true)
}

// commitBy commits the named task if it is still prepared, for a trigger
// seen at time at (zero: now).
func (a *Agent) commitBy(name, by string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if lt := a.locals[name]; lt != nil && lt.spec.Standby {
		a.commitLocked(lt, by, at)
	}
}

// commitLocked turns prepared lt active: a.mu is held.
func (a *Agent) commitLocked(lt *localTask, by string, at time.Time) {
	now := a.cfg.Now()
	lt.spec.Standby = false
	lt.claimed = false
	if lt.cancel != nil {
		lt.cancel() // a plain standby's registration as standby
	}
	lt.first = make(chan error, 1)
	a.startRegistration(lt)
	if lt.mig == nil {
		lt.mig = &migration{}
	}
	lt.stopWatchers()
	lt.mig.committedAt, lt.mig.committedBy = now, by
	if by == CommitByFrame {
		lt.mig.firstFrame = at
	}
	a.saveState()
	a.log.Info("prepared task committed", "task", lt.spec.Name, "iface", lt.spec.Iface, "sir", lt.spec.SIR, "by", by, "after_frame", durationSince(at, now))
	if by != CommitByFrame && lt.spec.QMP != "" && a.cfg.Hypervisor != nil {
		sock, name := lt.spec.QMP, lt.spec.Name
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			ctx, cancel := context.WithTimeout(a.runCtx, 3*time.Second)
			defer cancel()
			if err := a.cfg.Hypervisor.Announce(ctx, sock); err != nil {
				a.log.Warn("ask the hypervisor to announce the guest", "task", name, "qmp", sock, "err", err)
			}
		}()
	}
}

func durationSince(at, now time.Time) time.Duration {
	if at.IsZero() {
		return 0
	}
	return now.Sub(at)
}

// Abort drops a prepared task (a failed migration or move): port,
// datapath and local delivery go, the mapping is not touched (it was never
// registered here). A committed task whose claim mapsrv has not accepted
// yet (the commit's registration failed, e.g. mapsrv was unreachable) is
// aborted too: its registration stops, so the move does not happen later
// behind the back of whoever gave up on it. (A claim whose answer was
// lost on the wire may have been taken: the caller checks the mapping
// once mapsrv answers.) An active task is ErrNotPrepared; an unknown one
// ErrNotFound.
func (a *Agent) Abort(ctx context.Context, name string) error {
	a.mu.Lock()
	lt := a.locals[name]
	switch {
	case lt == nil:
		a.mu.Unlock()
		return fmt.Errorf("abort task %s: %w", name, ErrNotFound)
	case !lt.spec.Standby && !a.claimPending(lt):
		a.mu.Unlock()
		return fmt.Errorf("abort task %s: active here: %w", name, ErrNotPrepared)
	}
	if !lt.spec.Standby {
		// A claim sent and not answered may have been accepted with its
		// answer lost (a lossy path to mapsrv: chaos reg-loss, where the
		// move was reported failed, undone here, and the store kept the
		// task on this NVE without its port). The store decides: a claim
		// it holds is a move that happened, not one to undo.
		dn, id := a.bySIR[lt.key.sir], lt.key.id
		a.mu.Unlock()
		// (Suspended there too: this NVE was declared dead meanwhile; it
		// registers the task again when it rejoins.)
		if t, ok := a.storeTask(ctx, dn, id); dn != "" && ok && t.NVE == a.cfg.Node {
			a.log.Info("abort refused: the store holds this nve's claim (its answer was lost): the move happened", "task", name, "sir", lt.spec.SIR, "locator", t.Locator)
			return fmt.Errorf("abort task %s: the store maps it to this nve (its claim was accepted): %w", name, ErrNotPrepared)
		}
		a.mu.Lock()
		switch {
		case a.locals[name] != lt:
			a.mu.Unlock()
			return fmt.Errorf("abort task %s: %w", name, ErrNotFound)
		case !a.claimPending(lt):
			a.mu.Unlock()
			return fmt.Errorf("abort task %s: active here: %w", name, ErrNotPrepared)
		}
	}
	if !lt.spec.Standby {
		a.log.Info("committed task aborted before mapsrv accepted its claim: registration stopped", "task", name, "sir", lt.spec.SIR)
	}
	// A standby role this NVE registered (a plain standby's, or the one a
	// commit sends before its claim) is withdrawn: the store must not
	// name an NVE without the task's port as its standby (a failover
	// would move it there). The withdrawal is sent whenever a standby
	// registration may have reached mapsrv, not only when its answer
	// did: one accepted just before mapsrv died (its answer lost) stayed
	// in the store (TestMoveRefusals, once in a loaded full run). A
	// withdrawal from an NVE that is not the standby is refused and
	// changes nothing; a prepared task never committed registered nothing.
	wd, ok := a.registration(lt, 0)
	runCtx := a.runCtx
	mayHaveRegistered := lt.standbySent || lt.standbyOK || !lt.spec.AutoCommit || (lt.mig != nil && !lt.mig.committedAt.IsZero())
	ok = ok && runCtx != nil && a.cfg.Registrar != nil && mayHaveRegistered
	a.mu.Unlock()
	if !a.detach(name, false) {
		return fmt.Errorf("abort task %s: %w", name, ErrNotFound)
	}
	if ok {
		wd.Standby, wd.Mode = true, ila.MoveNone
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.withdrawStandby(runCtx, lt.key, wd)
		}()
	}
	return nil
}

// withdrawStandby sends the standby withdrawal wd of an aborted task until
// mapsrv answers it (accepted, or refused: not its standby), the task is
// attached here again, or the agent stops.
func (a *Agent) withdrawStandby(runCtx context.Context, k key, wd Registration) {
	backoff := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(runCtx, 3*time.Second)
		_, err := a.cfg.Registrar.Register(ctx, wd)
		cancel()
		var rej *RejectedError
		switch {
		case runCtx.Err() != nil:
			return
		case err == nil:
			a.log.Info("aborted task: standby withdrawn", "task", wd.Name, "sir", wd.SIR)
			return
		case errors.As(err, &rej) && !transientRefusal(rej.Reason):
			a.log.Debug("aborted task: standby withdrawal refused (not the standby)", "task", wd.Name, "err", err)
			return
		}
		a.log.Warn("aborted task: withdraw standby", "task", wd.Name, "err", err, "retry", backoff)
		select {
		case <-runCtx.Done():
			return
		case <-time.After(backoff):
		}
		// At most 1 s apart: until it lands the store names a standby
		// without a port, which a failover would move the task to.
		backoff = min(2*backoff, time.Second)
		a.mu.Lock()
		back := a.localByKey[k] != nil
		a.mu.Unlock()
		if back {
			return // attached here again: its own registration decides
		}
	}
}

// transientRefusal reports whether a refusal with reason (regproto's
// reason text) says nothing about the request itself, so that sending it
// again may succeed: a replay refusal (the mapping service restarted and
// the client had not resynchronised yet), the service's store failing,
// overload, a concurrent move. The texts are regproto's Reason names:
// locator does not import regproto (internal/depcheck: peers never import
// peers), so cmd/ilad hands the reason over as text.
func transientRefusal(reason string) bool {
	switch reason {
	case "replay", "internal error", "busy", "conflict (concurrent move)":
		return true
	}
	return false
}

// claimPending reports whether lt was committed here and mapsrv has not
// accepted its claim yet; a.mu is held.
func (a *Agent) claimPending(lt *localTask) bool {
	return a.cfg.Registrar != nil && !lt.spec.Standby && !lt.claimed && lt.mig != nil && !lt.mig.committedAt.IsZero()
}

// recordMoved remembers lt as moved away to loc; a.mu is held.
func (a *Agent) recordMoved(lt *localTask, loc ila.Locator) {
	now := a.cfg.Now()
	for n, m := range a.moved {
		if now.Sub(m.at) > movedKeep {
			delete(a.moved, n)
		}
	}
	s := a.statusOf(lt)
	s.State, s.Locator, s.Registered, s.Granted, s.RegisteredAt, s.MovedAt = StateMoved, loc, false, 0, time.Time{}, now
	a.moved[lt.spec.Name] = moved{status: s, at: now}
}

// forgetMoved drops the record of a moved-away task, reporting whether
// there was one; a.mu is held.
func (a *Agent) forgetMoved(name string) bool {
	_, ok := a.moved[name]
	delete(a.moved, name)
	return ok
}

// statusOf is lt's status; a.mu is held.
func (a *Agent) statusOf(lt *localTask) TaskStatus {
	s := TaskStatus{TaskSpec: lt.spec, Ifindex: lt.port.Ifindex, Confirmed: lt.confirmed, Error: lt.lastErr, State: StateActive}
	if lt.spec.Standby {
		s.State = StatePrepared
	}
	if lt.spec.Domain == "" {
		s.Domain = a.bySIR[lt.key.sir]
	}
	s.Locator, _ = a.locatorFor(s.Domain)
	if !lt.regAt.IsZero() && lt.lastErr == "" {
		s.Registered, s.Granted, s.RegisteredAt = true, ila.Duration(lt.granted), lt.regAt
	}
	if m := lt.mig; m != nil {
		s.PreparedAt, s.FirstFrame, s.CommittedAt, s.CommittedBy = m.preparedAt, m.firstFrame, m.committedAt, m.committedBy
	}
	if h := lt.handover; h != nil {
		s.HandoverTo, s.RedirectedAt = h.to, h.redirectedAt
	}
	return s
}
