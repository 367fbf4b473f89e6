package locator

import (
	"context"
	"errors"

	"github.com/ilamesh/ilamesh/ila"
)

// The victim's side of issue 17 finding 3. A mapping service that checks
// claims (docs/registration.md section 7.4) records why it moved a task
// (ila.Task.MovedBy: operator, standby, failover, orphan). When the watch
// shows a task attached here on another NVE with no such reason (a mapping
// service that does not check claims accepted any NVE's claim, or a record
// written by hand) while the task's port is still attached and alive here,
// the agent does not forget the task: it claims it back (a registration
// with a move mode). If the mapping service refuses that claim, the move
// stands and the task moves away as usual. A move notification is the
// mapping service's own signed word and is followed at once, as is a
// record that names a reason.

// PortLiveness is implemented by Ports that can tell whether a prepared
// port still exists and is up.
type PortLiveness interface {
	Alive(p Port) bool
}

// portAlive reports whether lt's port is still there and up (true when
// the Ports cannot tell: the task is attached).
func (a *Agent) portAlive(lt *localTask) bool {
	if pl, ok := a.cfg.Ports.(PortLiveness); ok {
		return pl.Alive(lt.port)
	}
	return true
}

// reassertLocked makes lt's registration loop claim the task back; a.mu
// is held.
func (a *Agent) reassertLocked(lt *localTask, t ila.Task) {
	a.st.Reasserts++
	lt.reassert = true
	a.log.Warn("task shown on another nve without a justified move while its port is alive here: claiming it back",
		"task", lt.spec.Name, "sir", lt.spec.SIR, "nve", t.NVE, "locator", t.Locator, "version", t.Version)
	select {
	case lt.kick <- struct{}{}:
	default:
	}
}

// yieldLocked moves lt away after the mapping service refused to take it
// back (err), if the store still shows it elsewhere; a.mu is held.
func (a *Agent) yieldLocked(lt *localTask, err error) {
	if a.locals[lt.spec.Name] != lt {
		return
	}
	dn, ok := a.bySIR[lt.key.sir]
	if !ok {
		return
	}
	st, ok := a.tasks[tkey{dn, lt.key.id}]
	if !ok || st.t.NVE == a.cfg.Node || st.t.State == ila.StateSuspended || st.t.Locator == 0 {
		return
	}
	a.log.Info("claim back refused: the task stays on the other nve", "task", lt.spec.Name, "nve", st.t.NVE, "err", err)
	a.moveAway(lt, st.t.Mapping(a.domains[dn].d), a.inFlightUntil(*st.t))
}

// registerStandby sends reg as a standby registration of lt ahead of its
// claim, so that the claim is justified (the commit of a task prepared
// here). A refusal is only logged: an unknown task needs no justification
// (the claim creates it), and otherwise the claim's own refusal says why.
func (a *Agent) registerStandby(ctx context.Context, lt *localTask, reg Registration) {
	sb := reg
	sb.Standby, sb.Mode = true, ila.MoveNone
	a.mu.Lock()
	lt.standbySent = true
	a.mu.Unlock()
	_, err := a.cfg.Registrar.Register(ctx, sb)
	var rej *RejectedError
	switch {
	case err == nil:
		a.mu.Lock()
		lt.standbyOK = true
		a.mu.Unlock()
	case errors.As(err, &rej):
		a.log.Debug("standby registration before the commit refused", "task", reg.Name, "err", err)
	default:
		a.log.Debug("standby registration before the commit", "task", reg.Name, "err", err)
	}
}
