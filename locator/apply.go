package locator

import (
	"slices"

	"github.com/ilamesh/ilamesh/ila"
)

// Apply applies one event of the mapping source. It is exported for
// sources that push events themselves; Run calls it for its own source.
func (a *Agent) Apply(ev ila.Event) {
	a.apply(ev)
	if a.cfg.OnEvent != nil {
		a.cfg.OnEvent(ev)
	}
}

func (a *Agent) apply(ev ila.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.Events++
	if ev.Revision > a.rev {
		a.rev = ev.Revision
	}
	switch ev.Type {
	case ila.EventDomainUpsert:
		if ev.Domain != nil {
			a.domainUpsert(*ev.Domain)
		}
	case ila.EventDomainDelete:
		if ev.Domain != nil {
			a.domainDelete(ev.Domain.Name)
		}
	case ila.EventTaskUpsert:
		if ev.Task != nil {
			a.taskUpsert(ev.Task)
		}
	case ila.EventTaskDelete:
		if ev.Task != nil {
			a.taskDelete(*ev.Task)
		}
	case ila.EventNVEUpsert:
		if ev.NVE != nil && ev.NVE.Name == a.cfg.Node {
			a.checkNVE(*ev.NVE)
		}
	case ila.EventSynced:
		a.sync()
	}
	if a.synced {
		a.applied = a.rev
	}
}

func (a *Agent) checkNVE(n ila.NVE) {
	for _, l := range a.cfg.Locators {
		if !slices.Contains(n.Locators, l.Locator) {
			a.log.Warn("configured locator not in this NVE's store record", "locator", l.Locator, "nve", n.Name)
		}
	}
}

// locatorFor returns this NVE's locator in a domain.
func (a *Agent) locatorFor(domain string) (ila.Locator, bool) {
	var def ila.Locator
	for _, l := range a.cfg.Locators {
		if l.Domain == domain {
			return l.Locator, true
		}
		if l.Domain == "" {
			def = l.Locator
		}
	}
	return def, def != 0
}

func (a *Agent) domainUpsert(d ila.Domain) {
	if err := d.Validate(); err != nil {
		a.log.Error("ignoring invalid domain from the store", "domain", d.Name, "err", err)
		return
	}
	if a.refuseClash(d) {
		return
	}
	old, had := a.domains[d.Name]
	a.domains[d.Name] = storeDomain{d, a.gen}
	if had && old.d == d {
		return
	}
	if had && old.d.SIR != d.SIR {
		delete(a.bySIR, old.d.SIR)
		defer a.promoteClashing(old.d.SIR)
	}
	a.bySIR[d.SIR] = d.Name
	a.dpErr("add domain", a.cfg.Datapath.AddDomain(d), "domain", d.Name)
	if loc, ok := a.locatorFor(d.Name); ok {
		a.dpErr("add locator", a.cfg.Datapath.AddLocator(loc, d), "locator", loc, "domain", d.Name)
		a.locAdded[d.Name] = loc
	}
	if had {
		a.reconcileAll()
		return
	}
	for tk := range a.tasks {
		if tk.domain == d.Name {
			a.listedKey(key{d.SIR, tk.id})
		}
	}
}

func (a *Agent) domainDelete(name string) {
	delete(a.clashing, name)
	d, ok := a.domains[name]
	if !ok {
		return
	}
	delete(a.domains, name)
	delete(a.bySIR, d.d.SIR)
	for tk := range a.tasks {
		if tk.domain == name {
			a.syncKey(key{d.d.SIR, tk.id})
		}
	}
	a.promoteClashing(d.d.SIR)
}

func (a *Agent) taskUpsert(t *ila.Task) {
	prev, had := a.tasks[tkey{t.Domain, t.Identifier}]
	a.tasks[tkey{t.Domain, t.Identifier}] = storeTask{t, a.gen}
	if !t.Updated.IsZero() {
		a.st.LastLag = a.cfg.Now().Sub(t.Updated)
	}
	d, ok := a.domains[t.Domain]
	if !ok {
		return // installed when the domain arrives
	}
	k := key{d.d.SIR, t.Identifier}
	a.listedKey(k)
	if had && a.synced && prev.t.Locator != t.Locator && t.Locator != 0 && !t.Updated.IsZero() {
		a.conv.observe(a.cfg.Now().Sub(t.Updated)) // a move, now in the datapath (convergence.go)
	}
	if lt := a.localByKey[k]; lt != nil {
		if t.NVE == a.cfg.Node {
			a.setSuspended(lt, t.State == ila.StateSuspended)
		}
		switch {
		case t.NVE == a.cfg.Node:
			lt.confirmed = true
			if lt.spec.Standby && t.State == ila.StateActive {
				a.promote(lt) // failed over here
			}
		case lt.confirmed && t.State != ila.StateSuspended && t.Locator != 0:
			if t.MovedBy == "" && a.portAlive(lt) {
				a.reassertLocked(lt, *t) // moved by nothing that justifies it
				break
			}
			a.moveAway(lt, t.Mapping(d.d), a.inFlightUntil(*t))
		}
	} else if f := a.inflight[k]; f != nil && t.NVE != a.cfg.Node && t.Locator != 0 {
		if until := a.inFlightUntil(*t); t.Locator != f.m.Locator || (until.After(a.cfg.Now()) && !until.Equal(f.until)) {
			// Moved again while in flight: follow it. The store's
			// deadline is the mapping service's own; a notification's
			// (whole 4-second units) only came first.
			if !until.After(a.cfg.Now()) {
				until = f.until
			}
			a.setInFlight(k, t.Mapping(d.d), until)
		}
	}
}

func (a *Agent) taskDelete(t ila.Task) {
	tk := tkey{t.Domain, t.Identifier}
	if _, ok := a.tasks[tk]; !ok {
		return
	}
	delete(a.tasks, tk)
	if d, ok := a.domains[t.Domain]; ok {
		a.syncKey(key{d.d.SIR, t.Identifier})
	}
}
