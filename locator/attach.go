package locator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// TaskStatus is a local task as the agent sees it.
type TaskStatus struct {
	TaskSpec
	Ifindex int `json:"ifindex"`
	// Domain and Locator are known once the domain is in the store.
	Locator ila.Locator `json:"locator,omitzero"`
	// Registered: the last registration was accepted; Granted is its
	// lifetime and RegisteredAt its time.
	Registered   bool         `json:"registered"`
	Granted      ila.Duration `json:"granted,omitempty"`
	RegisteredAt time.Time    `json:"registered_at,omitzero"`
	Confirmed    bool         `json:"confirmed"`
	Error        string       `json:"error,omitempty"`
	// State: prepared, active or moved (away, with MovedAt).
	State TaskState `json:"state"`
	// Prepare/commit times of a prepared task (Agent.Prepare): the
	// arrival of the frame that committed it, and what committed it.
	PreparedAt  time.Time `json:"prepared_at,omitzero"`
	FirstFrame  time.Time `json:"first_frame,omitzero"`
	CommittedAt time.Time `json:"committed_at,omitzero"`
	CommittedBy string    `json:"committed_by,omitempty"`
	MovedAt     time.Time `json:"moved_at,omitzero"`
	// HandoverTo is where the task is migrating (Handover), RedirectedAt
	// when its guest stopped here and its packets began to be redirected
	// there.
	HandoverTo   ila.Locator `json:"handover_to,omitzero"`
	RedirectedAt time.Time   `json:"redirected_at,omitzero"`
}

// Attach attaches a task to this NVE: prepares its port, attaches the
// datapath, installs local delivery (before anything points at it) and
// registers it with the mapping service, then keeps it registered. It
// returns once the first registration is answered; an unreachable mapping
// service is not an error (the agent keeps trying), a refusal is, and
// undoes the attach. Attaching the same spec again is a no-op.
func (a *Agent) Attach(ctx context.Context, t TaskSpec) error {
	return a.attach(ctx, t, false, false, true)
}

// attach attaches t: static tasks come from the configuration, restored
// ones from the state file of a previous run.
func (a *Agent) attach(ctx context.Context, t TaskSpec, static, restored, wait bool) error {
	if a.cfg.Router {
		return fmt.Errorf("task %s: %w", t.Name, ErrRouter)
	}
	if err := t.Validate(); err != nil {
		return err
	}
again:
	a.mu.Lock()
	if a.runCtx == nil {
		a.mu.Unlock()
		return errors.New("locator agent: not running")
	}
	for _, lt := range a.locals {
		if sameTask(lt.spec, t) {
			if lt.spec.Standby && !t.Standby {
				// Commit of a task prepared in standby: register now.
				a.commitLocked(lt, CommitByAPI, time.Time{})
				a.mu.Unlock()
				return a.waitFirst(ctx, lt, wait)
			}
			if t.Standby && !lt.spec.Standby {
				if lt.restored && !lt.confirmed {
					// Restored from the state file and not yet shown
					// here by the store: the first list decides whether
					// it stays or is detached (it moved while the agent
					// was down, stillHere). A standby attach waits for
					// that instead of meeting a copy about to go.
					a.mu.Unlock()
					if err := a.waitRestored(ctx, lt); err != nil {
						return fmt.Errorf("task %s (standby): %w", t.Name, err)
					}
					goto again
				}
				a.mu.Unlock()
				return fmt.Errorf("task %s on %s: active on this NVE, not a standby (detach it first): %w", t.Name, t.Iface, ErrExists)
			}
			a.mu.Unlock()
			return nil
		}
		if lt.spec.Name == t.Name || lt.spec.Iface == t.Iface || lt.spec.SIR == t.SIR {
			a.mu.Unlock()
			return fmt.Errorf("task %s on %s: conflicts with task %s on %s (%s): %w", t.Name, t.Iface, lt.spec.Name, lt.spec.Iface, lt.spec.SIR, ErrExists)
		}
	}
	a.mu.Unlock()

	port := Port{Name: t.Iface}
	if a.cfg.Ports != nil {
		p, err := a.cfg.Ports.Prepare(t.Iface)
		if err != nil {
			return fmt.Errorf("task %s: prepare port %s: %w", t.Name, t.Iface, err)
		}
		port = p
	}
	if t.MAC.IsZero() {
		t.MAC = port.PeerMAC
	}
	// The port hooks (ND emulator, IPv4 layer) run beside the datapath
	// attach: each waits on the kernel (a TCX attach waits for an RCU grace
	// period per direction), and neither needs the other.
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		for _, h := range a.cfg.Hooks {
			if err := h.AddPort(ctx, port, t); err != nil {
				a.log.Error("port hook", "task", t.Name, "iface", t.Iface, "err", err)
			}
		}
	}()
	err := a.cfg.Datapath.AttachPort(port.Name, port.Ifindex)
	<-hooksDone
	if err != nil {
		for _, h := range a.cfg.Hooks {
			_ = h.RemovePort(port, t)
		}
		return fmt.Errorf("task %s: attach datapath to %s: %w", t.Name, t.Iface, err)
	}

	a.mu.Lock()
	k := keyOf(t.SIR)
	lt := &localTask{spec: t, key: k, port: port, static: static, restored: restored, done: make(chan struct{}), first: make(chan error, 1), kick: make(chan struct{}, 1), wasStandby: t.Standby}
	if err := a.cfg.Datapath.UpsertLocal(Local{SIR: k.sir, Identifier: k.id, Ifindex: port.Ifindex, MAC: t.MAC, Tenant: ila.TenantOf(t.Tenant), IPv4: t.IPv4}); err != nil {
		a.mu.Unlock()
		a.releasePort(lt)
		return fmt.Errorf("task %s: install local entry: %w", t.Name, err)
	}
	// Local delivery is in place: an in-flight redirect left from when the
	// task lived elsewhere... it is back, stop redirecting.
	if f := a.inflight[k]; f != nil {
		f.timer.Stop()
		delete(a.inflight, k)
		a.dpErr("delete in-flight", a.cfg.Datapath.DeleteInFlight(k.sir, k.id), "sir", t.SIR)
	}
	a.locals[t.Name] = lt
	a.localByKey[k] = lt
	delete(a.away, k) // back here
	if dn, ok := a.bySIR[k.sir]; ok {
		if st, ok := a.tasks[tkey{dn, k.id}]; ok && st.t.NVE == a.cfg.Node {
			lt.confirmed = true
		}
	}
	a.syncKey(k)
	a.saveState()
	a.forgetMoved(t.Name) // back here
	if t.Standby {
		a.startWatchers(lt) // a prepared task's commit triggers
	}
	if t.Standby && t.AutoCommit {
		close(lt.done) // prepared (a migration's destination): no registration until committed
	} else {
		a.startRegistration(lt) // a plain standby registers as standby (heartbeat.go) until committed
	}
	a.mu.Unlock()
	a.log.Info("task attached", "task", t.Name, "iface", t.Iface, "sir", t.SIR, "identifier", k.id, "standby", t.Standby)
	if t.Standby {
		return nil
	}
	return a.waitFirst(ctx, lt, wait)
}

// sameTask reports whether b asks for the task a describes (a zero MAC
// matches the one the agent learnt; Standby is a state, not identity).
func sameTask(a, b TaskSpec) bool {
	if b.MAC.IsZero() {
		b.MAC = a.MAC
	}
	a.Standby, b.Standby = false, false
	a.AutoCommit, b.AutoCommit, a.QMP, b.QMP = false, false, "", ""
	return a == b
}

// startRegistration starts lt's registration loop; a.mu is held.
func (a *Agent) startRegistration(lt *localTask) {
	rctx, cancel := context.WithCancel(a.runCtx)
	lt.cancel = cancel
	lt.done = make(chan struct{})
	done := lt.done
	firstCh, standby := lt.first, lt.spec.Standby // a commit or promotion replaces them
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(done)
		a.registerLoop(rctx, lt, firstCh, standby)
	}()
}

// waitFirst waits for lt's first registration outcome; a refusal undoes
// the attach.
func (a *Agent) waitFirst(ctx context.Context, lt *localTask, wait bool) error {
	if !wait || a.cfg.Registrar == nil {
		return nil
	}
	select {
	case err := <-lt.first:
		var rej *RejectedError
		if errors.As(err, &rej) {
			a.detach(lt.spec.Name, false)
			return fmt.Errorf("task %s: %w", lt.spec.Name, err)
		}
		return nil
	case <-ctx.Done():
		return nil // attached; registration goes on in the background
	}
}

// Detach deregisters a task and removes its local entry and port setup.
func (a *Agent) Detach(ctx context.Context, name string) error {
	_ = ctx
	if !a.detach(name, true) {
		a.mu.Lock()
		gone := a.forgetMoved(name)
		a.mu.Unlock()
		if gone {
			return nil // moved away already: the mapping is the new NVE's
		}
		return fmt.Errorf("task %s: %w", name, ErrNotFound)
	}
	return nil
}

func (a *Agent) detach(name string, deregister bool) bool {
	a.mu.Lock()
	lt := a.locals[name]
	if lt == nil {
		a.mu.Unlock()
		return false
	}
	a.forgetLocal(lt)
	a.dpErr("delete local", a.cfg.Datapath.DeleteLocal(lt.key.sir, lt.key.id), "sir", lt.spec.SIR)
	a.syncKey(lt.key)
	a.saveState()
	reg, ok := a.registration(lt, 0) // a standby withdraws its standby role
	done := lt.done
	a.mu.Unlock()
	<-done
	if deregister && ok && a.cfg.Registrar != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := a.cfg.Registrar.Register(ctx, reg)
		cancel()
		a.mu.Lock()
		a.st.Deregistrations++
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("deregister task (its lifetime will expire instead)", "task", name, "err", err)
		}
	}
	a.releasePort(lt)
	a.log.Info("task detached", "task", name, "iface", lt.spec.Iface, "sir", lt.spec.SIR)
	return true
}

// forgetLocal drops lt from the tables and stops its registration; a.mu
// is held.
func (a *Agent) forgetLocal(lt *localTask) {
	delete(a.locals, lt.spec.Name)
	if a.localByKey[lt.key] == lt {
		delete(a.localByKey, lt.key)
	}
	if lt.cancel != nil {
		lt.cancel()
	}
	lt.stopWatchers()
	a.endHandover(lt)
}

// releasePort undoes the port setup; the port may be gone (moved away).
func (a *Agent) releasePort(lt *localTask) {
	for _, h := range a.cfg.Hooks {
		if err := h.RemovePort(lt.port, lt.spec); err != nil {
			a.log.Debug("port hook remove", "iface", lt.port.Name, "err", err)
		}
	}
	if err := a.cfg.Datapath.DetachPort(lt.port.Name, lt.port.Ifindex); err != nil {
		a.log.Debug("detach datapath from port", "iface", lt.port.Name, "err", err)
	}
	if a.cfg.Ports != nil {
		if err := a.cfg.Ports.Release(lt.port.Name); err != nil {
			a.log.Debug("release port", "iface", lt.port.Name, "err", err)
		}
	}
}

// registration builds the registration of lt; a.mu is held. It is not
// ready until the task's domain is known.
func (a *Agent) registration(lt *localTask, lifetime time.Duration) (Registration, bool) {
	dn := lt.spec.Domain
	if dn == "" {
		dn = a.bySIR[lt.key.sir]
	}
	if dn == "" {
		return Registration{}, false
	}
	loc, ok := a.locatorFor(dn)
	if !ok {
		return Registration{}, false
	}
	return Registration{
		NVE: a.cfg.Node, Locator: loc, Domain: dn, Name: lt.spec.Name, Tenant: lt.spec.Tenant,
		SIR: lt.spec.SIR, MAC: lt.spec.MAC, IPv4: lt.spec.IPv4, VNI: lt.spec.VNI, Lifetime: lifetime,
		Standby: lt.spec.Standby, Epoch: a.hb.epoch.Load(),
	}, true
}

// registerLoop keeps lt registered until ctx is done: again at half the
// granted lifetime, sooner with backoff after an error.
func (a *Agent) registerLoop(ctx context.Context, lt *localTask, firstCh chan error, standby bool) {
	if a.cfg.Registrar == nil {
		return
	}
	first := true
	report := func(err error) {
		if first {
			firstCh <- err
			first = false
		}
	}
	if lt.restored && !standby && !a.stillHere(ctx, lt) {
		return
	}
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		a.mu.Lock()
		reg, ok := a.registration(lt, time.Duration(a.cfg.Lifetime))
		reassert := ok && lt.reassert && !standby
		if reassert {
			lt.reassert = false
		}
		justify := lt.wasStandby && !lt.standbyOK
		a.mu.Unlock()
		wait := 200 * time.Millisecond // domain not known yet
		if ok {
			reg.Standby = standby // as when this loop started
			if (first && !lt.restored && !standby) || reassert {
				reg.Mode = ila.MoveHot
				if justify && !reassert {
					// The commit of a task prepared or attached in standby
					// here: the claim is justified by this NVE's standby
					// registration, sent now if it was not accepted yet.
					a.registerStandby(ctx, lt, reg)
				}
			}
			if reg.Standby {
				a.mu.Lock()
				lt.standbySent = true
				a.mu.Unlock()
			}
			granted, err := a.cfg.Registrar.Register(ctx, reg)
			if ctx.Err() != nil {
				return
			}
			a.mu.Lock()
			var rej *RejectedError
			switch {
			case err == nil:
				a.st.RegAccepted++
				if !standby {
					lt.claimed = true
				}
				lt.granted, lt.lastErr, lt.regAt = granted, "", a.cfg.Now()
				lt.standbyOK = lt.standbyOK || standby
				backoff = 250 * time.Millisecond
				wait = max(granted/2, time.Second)
			case errors.As(err, &rej):
				a.st.RegRejected++
				lt.lastErr = err.Error()
				wait = 10 * time.Second
				if reassert {
					a.yieldLocked(lt, err) // the mapping service stands by the move
				}
			default:
				a.st.RegErrors++
				lt.lastErr = err.Error()
				wait = backoff
				backoff = min(2*backoff, 5*time.Second)
				lt.reassert = lt.reassert || reassert // try the claim again
			}
			a.mu.Unlock()
			if err != nil {
				a.log.Warn("register task", "task", reg.Name, "sir", reg.SIR, "locator", reg.Locator, "err", err, "retry", wait)
			} else {
				a.log.Debug("task registered", "task", reg.Name, "sir", reg.SIR, "locator", reg.Locator, "granted", granted)
			}
			report(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-lt.kick:
		}
	}
}

// Tasks lists the local tasks by name.
func (a *Agent) Tasks() []TaskStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]TaskStatus, 0, len(a.locals)+len(a.moved))
	for _, lt := range a.locals {
		out = append(out, a.statusOf(lt))
	}
	for n, m := range a.moved {
		if a.locals[n] == nil {
			out = append(out, m.status)
		}
	}
	slices.SortFunc(out, func(x, y TaskStatus) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// missLoop answers the datapath's cache misses.
func (a *Agent) missLoop(ctx context.Context) error {
	for {
		m, err := a.cfg.Misses.ReadMiss(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.log.Warn("read cache miss", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		a.onMiss(ctx, m)
	}
}

// onMiss installs the mapping a miss asks for, from the watch cache or the
// store, within the rate limit.
func (a *Agent) onMiss(ctx context.Context, ms Miss) {
	k := key{ms.SIR, ms.Identifier}
	now := a.cfg.Now()
	a.mu.Lock()
	a.st.Misses++
	if t, ok := a.missLast[k]; ok && now.Sub(t) < time.Second {
		a.st.MissDropped++
		a.mu.Unlock()
		return
	}
	// Token bucket of MissRate per second, burst MissRate.
	a.tokens = min(a.cfg.MissRate, a.tokens+now.Sub(a.tokensAt).Seconds()*a.cfg.MissRate)
	a.tokensAt = now
	if a.tokens < 1 {
		a.st.MissDropped++
		a.mu.Unlock()
		return
	}
	a.tokens--
	if len(a.missLast) > 4096 {
		for mk, t := range a.missLast {
			if now.Sub(t) > time.Second {
				delete(a.missLast, mk)
			}
		}
	}
	a.missLast[k] = now
	dn, ok := a.bySIR[k.sir]
	if !ok {
		a.st.MissErrors++
		a.mu.Unlock()
		return
	}
	tk := tkey{dn, k.id}
	if _, ok := a.tasks[tk]; ok || a.cfg.Lookup == nil {
		a.pull(k, now)
		a.syncKey(k)
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()

	a.mu.Lock()
	a.st.MissLookups++
	a.mu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	t, err := a.cfg.Lookup.GetTask(lctx, dn, k.id)
	cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.st.MissErrors++
		a.log.Debug("look up missed identifier", "sir", k.sir.Addr(k.id), "err", err)
		return
	}
	if t.Domain != dn || t.Identifier != k.id {
		a.st.MissErrors++
		return
	}
	if _, ok := a.tasks[tk]; !ok { // the watch has not delivered it yet
		a.tasks[tk] = storeTask{&t, a.gen}
	}
	a.pull(k, a.cfg.Now())
	a.syncKey(k)
}

// restoredWait bounds how long an attach waits for a restored task's fate.
const restoredWait = 30 * time.Second

// waitRestored waits until lt, a task restored from the state file, is
// either detached (gone from the local tasks) or confirmed here by the
// store, at most restoredWait.
func (a *Agent) waitRestored(ctx context.Context, lt *localTask) error {
	deadline := time.NewTimer(restoredWait)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		settled := a.locals[lt.spec.Name] != lt || lt.confirmed
		a.mu.Unlock()
		if settled {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restored from the state file, waiting for the store's first list: %w", ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("restored from the state file and not settled by the store's first list within %v (is the store reachable?): %w", restoredWait, context.DeadlineExceeded)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stillHere waits for the first complete list of the store and reports
// whether a task restored from the state file may be registered again: not
// if the store has it on another NVE (it moved while the agent was down),
// in which case it is detached here, without deregistration.
func (a *Agent) stillHere(ctx context.Context, lt *localTask) bool {
	for {
		a.mu.Lock()
		synced := a.synced
		var nve string
		if dn, ok := a.bySIR[lt.key.sir]; ok {
			if st, ok := a.tasks[tkey{dn, lt.key.id}]; ok {
				nve = st.t.NVE
			}
		}
		a.mu.Unlock()
		if synced {
			if nve == "" || nve == a.cfg.Node {
				return true
			}
			a.log.Info("task moved to another NVE while the agent was down: detaching it here", "task", lt.spec.Name, "sir", lt.spec.SIR, "nve", nve)
			a.wg.Add(1)
			go func() { defer a.wg.Done(); a.detach(lt.spec.Name, false) }()
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}
