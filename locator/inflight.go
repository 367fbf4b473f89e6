package locator

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// moveAway turns a local task that now lives elsewhere into an in-flight
// redirect to m.Locator until the deadline (make before break).
func (a *Agent) moveAway(lt *localTask, m ila.Mapping, until time.Time) {
	k := lt.key
	a.st.MovesAway++
	a.log.Info("task moved away: redirecting packets in flight", "task", lt.spec.Name, "sir", lt.spec.SIR, "locator", m.Locator, "until", until)
	a.setInFlight(k, m, until)
	a.dpErr("delete local", a.cfg.Datapath.DeleteLocal(k.sir, k.id), "sir", lt.spec.SIR)
	done := lt.done
	a.forgetLocal(lt)
	a.syncKey(k)
	a.saveState()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		<-done
		a.releasePort(lt)
	}()
}

func (a *Agent) setInFlight(k key, m ila.Mapping, until time.Time) {
	if err := a.cfg.Datapath.UpsertInFlight(m, until); err != nil {
		a.dpErr("upsert in-flight", err, "sir", m.SIRAddr(), "locator", m.Locator)
	}
	if old := a.inflight[k]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	f := &inflight{m: m, until: until}
	f.timer = time.AfterFunc(until.Sub(a.cfg.Now()), func() { a.expire(k, f) })
	a.inflight[k] = f
}

func (a *Agent) expire(k key, f *inflight) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inflight[k] != f {
		return
	}
	delete(a.inflight, k)
	a.st.InFlightExpired++
	a.dpErr("delete in-flight", a.cfg.Datapath.DeleteInFlight(k.sir, k.id), "sir", k.sir.Addr(k.id))
	a.syncKey(k)
}

// Notify handles the mapping service's authenticated notice that the task
// with SIR address sir now lives at locator loc on NVE nve: if it was local
// here, its entry becomes an in-flight redirect at once, without waiting
// for the watch. It reports whether the task was local.
func (a *Agent) Notify(sir netip.Addr, loc ila.Locator, nve string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Notifications++
	k := keyOf(sir)
	dn, ok := a.bySIR[k.sir]
	if !ok {
		return false, fmt.Errorf("move notification for %s: no known domain holds it", sir)
	}
	if nve == a.cfg.Node {
		return false, nil
	}
	m := ila.Mapping{SIR: k.sir, Identifier: k.id, Locator: loc, Csum: a.domains[dn].d.Csum}
	if err := m.Validate(); err != nil {
		return false, fmt.Errorf("move notification for %s: %w", sir, err)
	}
	lt := a.localByKey[k]
	if lt == nil {
		if f := a.inflight[k]; f != nil && f.m.Locator != loc {
			f.m = m
			a.dpErr("update in-flight", a.cfg.Datapath.UpsertInFlight(m, f.until), "sir", sir, "locator", loc)
		}
		return false, nil
	}
	// Point our own senders at the new place too, ahead of the watch: the
	// cached record follows the notice until the watch overwrites it.
	tk := tkey{dn, k.id}
	st, ok := a.tasks[tk]
	if !ok {
		st = storeTask{t: ila.Task{Domain: dn, Identifier: k.id, SIR: sir, State: ila.StateActive}, gen: a.gen}
	}
	st.t.Locator, st.t.NVE = loc, nve
	a.tasks[tk] = st
	a.moveAway(lt, m, a.cfg.Now().Add(time.Duration(a.cfg.InFlight)))
	return true, nil
}
