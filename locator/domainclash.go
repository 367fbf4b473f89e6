package locator

import (
	"slices"

	"github.com/ilamesh/ilamesh/ila"
)

// refuseClash keeps a domain whose SIR prefix another domain already
// holds out of the agent's state (mapsrv refuses such a record; one
// written into the store by hand would otherwise take the prefix over
// and strand every task of the first domain). The refused record is
// remembered and installed when the prefix becomes free; a domain that
// changes its prefix to a taken one keeps its last good version. It
// reports whether d was refused. Callers hold a.mu.
func (a *Agent) refuseClash(d ila.Domain) bool {
	holder, ok := a.bySIR[d.SIR]
	if !ok || holder == d.Name {
		delete(a.clashing, d.Name)
		return false
	}
	if a.clashing == nil {
		a.clashing = map[string]storeDomain{}
	}
	a.clashing[d.Name] = storeDomain{d, a.gen}
	if old, had := a.domains[d.Name]; had {
		old.gen = a.gen // still in the store, in its last good version
		a.domains[d.Name] = old
	}
	a.log.Error("ignoring domain from the store: its SIR prefix belongs to another domain", "domain", d.Name, "sir", d.SIR, "owner", holder)
	a.st.DomainClashes++
	return true
}

// promoteClashing installs a refused domain that wanted sir, now free
// (the one with the smallest name, for a deterministic choice). Callers
// hold a.mu.
func (a *Agent) promoteClashing(sir ila.SIRPrefix) {
	if _, taken := a.bySIR[sir]; taken {
		return
	}
	var names []string
	for n, c := range a.clashing {
		if c.d.SIR == sir {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	slices.Sort(names)
	c := a.clashing[names[0]]
	delete(a.clashing, names[0])
	a.log.Info("installing domain: its SIR prefix is free again", "domain", c.d.Name, "sir", sir)
	gen := a.gen
	a.gen = c.gen // keep the generation it was seen in
	a.domainUpsert(c.d)
	a.gen = gen
}
