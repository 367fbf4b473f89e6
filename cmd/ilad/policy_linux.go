package main

import (
	"log/slog"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/ila/datapath"
)

// tenantPolicies keeps the datapath's tenant policy table equal to the
// store's /ila/v1/policies/ (docs/TENANTS.md): every policy event is
// written at once; at each EventSynced pairs the store no longer holds (a
// restart adopting pinned tables) are removed.
type tenantPolicies struct {
	dp   *datapath.Datapath
	log  *slog.Logger
	want map[[2]ila.TenantID]int // pair -> how many store policies name it
}

func newTenantPolicies(dp *datapath.Datapath, log *slog.Logger) *tenantPolicies {
	return &tenantPolicies{dp: dp, log: log, want: make(map[[2]ila.TenantID]int)}
}

// apply feeds one watch event (called from the watch goroutine only).
func (p *tenantPolicies) apply(ev ila.Event) {
	switch ev.Type {
	case ila.EventPolicyUpsert, ila.EventPolicyDelete:
		if ev.Policy == nil {
			return
		}
		a, b := ev.Policy.IDs()
		k := [2]ila.TenantID{a, b}
		if ev.Type == ila.EventPolicyUpsert {
			p.want[k]++
			if err := p.dp.AllowTenants(a, b); err != nil {
				p.log.Warn("tenant policy", "policy", ev.Policy.String(), "err", err)
			}
			return
		}
		if p.want[k]--; p.want[k] > 0 {
			return // another stored policy names the same pair
		}
		delete(p.want, k)
		if err := p.dp.DisallowTenants(a, b); err != nil {
			p.log.Warn("delete tenant policy", "policy", ev.Policy.String(), "err", err)
		}
	case ila.EventSynced:
		have, err := p.dp.TenantPolicies()
		if err != nil {
			p.log.Warn("tenant policies", "err", err)
			return
		}
		for _, k := range have {
			if p.want[k] == 0 {
				if err := p.dp.DisallowTenants(k[0], k[1]); err != nil {
					p.log.Warn("delete stale tenant policy", "tenants", k, "err", err)
				}
			}
		}
	}
}
