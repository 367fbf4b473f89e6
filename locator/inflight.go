package locator

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// moveAway turns a local task that now lives elsewhere into an in-flight
// redirect to m.Locator until the deadline (make before break). A deadline
// not after now (a cold move, or a notification saying "drop now") installs
// no redirect: packets still arriving take the datapath's lookup of the
// identifier (redirected by the mapping table, or reported as a miss).
func (a *Agent) moveAway(lt *localTask, m ila.Mapping, until time.Time) {
	k := lt.key
	a.st.MovesAway++
	if until.After(a.cfg.Now()) {
		a.log.Info("task moved away: redirecting packets in flight", "task", lt.spec.Name, "sir", lt.spec.SIR, "locator", m.Locator, "until", until)
		a.setInFlight(k, m, until)
	} else {
		a.log.Info("task moved away: no in-flight time, stale senders are looked up", "task", lt.spec.Name, "sir", lt.spec.SIR, "locator", m.Locator)
	}
	a.remember(k)
	a.away[k] = struct{}{}
	a.dpErr("delete local", a.cfg.Datapath.DeleteLocal(k.sir, k.id), "sir", lt.spec.SIR)
	a.recordMoved(lt, m.Locator)
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
	a.handoverExpired(k)
	a.syncKey(k)
}

// Notify handles the mapping service's authenticated notice that the task
// with SIR address sir now lives at locator loc on NVE nve: if it was local
// here, its entry becomes an in-flight redirect at once, without waiting
// for the watch, for inFlight (the notification's lifetime: the mapping
// service owns the in-flight time; 0 means drop now, i.e. no redirect). It
// reports whether the task was local. A task this NVE neither holds, nor
// redirects, nor left recently is an error matching ErrNotFound (the
// registration protocol's "unknown task").
func (a *Agent) Notify(sir netip.Addr, loc ila.Locator, nve string, inFlight time.Duration) (bool, error) {
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
		f := a.inflight[k]
		if f == nil && !a.leftRecently(k) {
			return false, fmt.Errorf("move notification for %s: not attached here, not in flight: %w", sir, ErrNotFound)
		}
		if f != nil && f.m.Locator != loc {
			f.m = m
			a.dpErr("update in-flight", a.cfg.Datapath.UpsertInFlight(m, f.until), "sir", sir, "locator", loc)
		}
		return false, nil
	}
	// Point our own senders at the new place too, ahead of the watch: the
	// cached record follows the notice until the watch overwrites it.
	tk := tkey{dn, k.id}
	t := ila.Task{Domain: dn, Identifier: k.id, SIR: sir, State: ila.StateActive}
	gen := a.gen
	if st, ok := a.tasks[tk]; ok {
		t, gen = *st.t, st.gen // a copy: the stored one is shared
	}
	t.Locator, t.NVE = loc, nve
	a.tasks[tk] = storeTask{&t, gen}
	a.moveAway(lt, m, a.cfg.Now().Add(max(inFlight, 0)))
	return true, nil
}

// leftWindow is how long a task that moved away stays known for
// notifications that arrive after the watch told the move.
const leftWindow = time.Minute

// remember records that the task at k moved away now. a.mu is held.
func (a *Agent) remember(k key) {
	now := a.cfg.Now()
	if len(a.left) >= 4096 {
		for lk, at := range a.left {
			if now.Sub(at) >= leftWindow {
				delete(a.left, lk)
			}
		}
	}
	a.left[k] = now
}

// leftRecently reports whether the task at k moved away from here within
// leftWindow. a.mu is held.
func (a *Agent) leftRecently(k key) bool {
	at, ok := a.left[k]
	return ok && a.cfg.Now().Sub(at) < leftWindow
}
