package locator

import (
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// inFlightUntil is when the previous NVE (this one) stops redirecting: the
// deadline the mapping service recorded for it. No entry (a cold move, or
// the time is over) means no redirect.
func (a *Agent) inFlightUntil(t ila.Task) time.Time {
	now := a.cfg.Now()
	for _, p := range t.Previous {
		if p.NVE == a.cfg.Node && p.Until.After(now) {
			return p.Until
		}
	}
	return now
}

// desired is the mapping the datapath should hold at k.
func (a *Agent) desired(k key) (ila.Mapping, bool) {
	dn, ok := a.bySIR[k.sir]
	if !ok {
		return ila.Mapping{}, false
	}
	st, ok := a.tasks[tkey{dn, k.id}]
	if !ok {
		delete(a.away, k) // gone from the store: nobody sends to it any more
	}
	if !ok || st.t.Locator == 0 || st.t.State == ila.StateSuspended {
		return ila.Mapping{}, false
	}
	// Pull mode installs what misses asked for, local tasks, in-flight
	// redirects and the tasks that moved away from here: an NVE that has
	// not applied the move yet (its ilad down or lagging) still sends to
	// this locator, and this NVE redirects it by the mapping (the
	// datapath's stale redirect) for as long as the store maps the task
	// elsewhere, without a miss (that the miss policy may drop) at the end
	// of the in-flight time.
	_, pulled := a.wanted[k]
	_, away := a.away[k]
	if a.cfg.Mode == ModePull && !pulled && !away && a.localByKey[k] == nil && a.inflight[k] == nil {
		return ila.Mapping{}, false
	}
	m := st.t.Mapping(a.domains[dn].d)
	if err := m.Validate(); err != nil {
		a.log.Error("ignoring mapping that cannot translate", "sir", m.SIRAddr(), "err", err)
		return ila.Mapping{}, false
	}
	return m, true
}

// syncKey makes the datapath's mapping at k the desired one.
func (a *Agent) syncKey(k key) {
	m, want := a.desired(k)
	cur, have := a.installed[k]
	switch {
	case want && (!have || cur != m):
		if err := a.cfg.Datapath.UpsertMapping(m); err != nil {
			a.dpErr("upsert mapping", err, "sir", m.SIRAddr(), "locator", m.Locator)
			return
		}
		a.installed[k] = m
	case !want && have:
		if err := a.cfg.Datapath.DeleteMapping(k.sir, k.id); err != nil {
			a.dpErr("delete mapping", err, "sir", k.sir.Addr(k.id))
			return
		}
		delete(a.installed, k)
	}
}

// listedKey syncs k after a store change. While a (re)list is under way
// (not synced) it leaves the mappings of tasks that are not local or in
// flight here to the end of the list (sync), which writes them all in one
// batch: meanwhile the datapath keeps forwarding with what it holds.
func (a *Agent) listedKey(k key) {
	if !a.synced && a.localByKey[k] == nil && a.inflight[k] == nil {
		return
	}
	a.syncKey(k)
}

// sync ends a (re)list: what was not listed in this generation is gone,
// and the datapath converges to exactly the store's state.
func (a *Agent) sync() {
	for tk, st := range a.tasks {
		if st.gen < a.gen {
			delete(a.tasks, tk)
		}
	}
	for n, d := range a.clashing {
		if d.gen < a.gen {
			delete(a.clashing, n)
		}
	}
	for n, d := range a.domains {
		if d.gen < a.gen {
			a.domainDelete(n)
		}
	}
	a.reconcileAll()
	a.synced = true
	a.st.Syncs++
}

// reconcileAll re-reads the datapath's table and fixes every difference.
// The first after Run trusts the table Run adopted (plus the writes
// recorded since) instead of reading it again: at a million mappings a
// read is a second or more of a restart.
func (a *Agent) reconcileAll() {
	if a.adopted {
		a.adopted = false
	} else {
		actual := make(map[key]ila.Mapping, len(a.installed))
		if err := a.cfg.Datapath.Mappings(func(m ila.Mapping) bool {
			actual[key{m.SIR, m.Identifier}] = m
			return true
		}); err != nil {
			a.dpErr("list mappings", err)
			actual = a.installed // best effort: trust our own record
		}
		a.installed = actual
	}
	// Entries are replaced in place, never deleted and written again:
	// forwarding carries on through a resync.
	var ups []ila.Mapping
	check := func(k key) {
		if m, want := a.desired(k); want {
			if cur, have := a.installed[k]; !have || cur != m {
				ups = append(ups, m)
			}
			return
		}
		a.syncKey(k) // a delete
	}
	// Every installed entry, then every store task not installed (no set
	// of both: it cost a second of a million-task start).
	for k := range a.installed {
		check(k) // (a delete removes k from the map: allowed in a range)
	}
	for tk := range a.tasks {
		d, ok := a.domains[tk.domain]
		if !ok {
			continue
		}
		k := key{d.d.SIR, tk.id}
		if _, done := a.installed[k]; !done {
			check(k)
		}
	}
	a.upsertAll(ups)
	for k := range a.wanted {
		if _, ok := a.desired(k); !ok && a.bySIR[k.sir] != "" {
			if _, ok := a.tasks[tkey{a.bySIR[k.sir], k.id}]; !ok {
				delete(a.wanted, k) // gone from the store
			}
		}
	}
}

// upsertAll writes ms (in one batch when the datapath can) and records
// what took effect. After a failed batch the rest is written one by one,
// so that each bad entry is reported and skipped.
func (a *Agent) upsertAll(ms []ila.Mapping) {
	if b, ok := a.cfg.Datapath.(MappingBatcher); ok && len(ms) > 1 {
		n, err := b.UpsertMappings(ms)
		for _, m := range ms[:n] {
			a.installed[key{m.SIR, m.Identifier}] = m
		}
		if err == nil {
			return
		}
		a.log.Warn("datapath batch write stopped; writing the rest one by one", "written", n, "of", len(ms), "err", err)
		ms = ms[n:]
	}
	for _, m := range ms {
		a.syncKey(key{m.SIR, m.Identifier})
	}
}
