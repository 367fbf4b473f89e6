package locator

import (
	"net/netip"
	"slices"

	"github.com/ilamesh/ilamesh/ila"
)

// Owner says who holds a SIR address (for the ND emulator).
type Owner struct {
	Local   bool
	Ifindex int
	NVE     string
	MAC     ila.MAC
}

// Owner looks up the holder of a SIR address: a task attached here, or a
// task of the store. It is cheap enough for the packet path of the ND
// emulator.
func (a *Agent) Owner(addr netip.Addr) (Owner, bool) {
	addr = addr.WithZone("")
	if !addr.Is6() || addr.Is4In6() {
		return Owner{}, false
	}
	k := keyOf(addr)
	a.mu.Lock()
	defer a.mu.Unlock()
	if lt := a.localByKey[k]; lt != nil {
		return Owner{Local: true, Ifindex: lt.port.Ifindex, NVE: a.cfg.Node, MAC: lt.spec.MAC}, true
	}
	dn, ok := a.bySIR[k.sir]
	if !ok {
		return Owner{}, false
	}
	st, ok := a.tasks[tkey{dn, k.id}]
	if !ok || st.t.State == ila.StateSuspended {
		return Owner{}, false
	}
	return Owner{NVE: st.t.NVE, MAC: st.t.MAC}, true
}

// Prefixes returns the SIR prefixes of the domains in the store, sorted.
func (a *Agent) Prefixes() []netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]netip.Prefix, 0, len(a.bySIR))
	for p := range a.bySIR {
		out = append(out, p.Prefix())
	}
	slices.SortFunc(out, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return out
}

// Claim handles a task's claim of addr on port ifindex (an unsolicited NA
// or gratuitous ARP, the drafts' attach signal after a move): if it is the
// address of the task attached on that port, the task is registered again
// at once; if that task is prepared (Prepare: a migration's destination),
// the claim is its switchover and commits it. A task attached in plain
// standby (Standby without Prepare) takes the claim for its port (local
// delivery) but waits for its explicit commit to claim the mapping. It
// reports whether the claim was taken.
func (a *Agent) Claim(ifindex int, addr netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, lt := range a.locals {
		if lt.port.Ifindex == ifindex && (lt.spec.SIR == addr || (lt.spec.IPv4.IsValid() && lt.spec.IPv4 == addr)) {
			if lt.spec.Standby {
				if !lt.spec.AutoCommit {
					// The port is ready for the task (its frames may be
					// delivered here), but the mapping waits for the
					// standby's explicit commit.
					return true
				}
				a.commitLocked(lt, CommitByClaim, a.cfg.Now())
				return true
			}
			select {
			case lt.kick <- struct{}{}:
			default:
			}
			return true
		}
	}
	a.log.Info("claim for an address not declared on the port ignored", "ifindex", ifindex, "sir", addr)
	return false
}
