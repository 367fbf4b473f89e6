package locator

import (
	"context"
	"slices"
	"time"
)

// The pull mode working set: entries installed because the datapath missed
// them. The datapath does not report which entries packets use, so they age
// out after PullTTL (a flow still using one misses again, takes the ILA
// router for the time of one lookup, and pulls it again) and the oldest go
// first when PullMax is reached. Local tasks and in-flight redirects are
// never in question: they are installed whatever the working set says.

// pull adds k to the working set (or renews it) at now, making room under
// PullMax first. a.mu is held.
func (a *Agent) pull(k key, now time.Time) {
	if _, ok := a.wanted[k]; !ok && a.cfg.PullMax > 0 && len(a.wanted) >= a.cfg.PullMax {
		a.evictOldest(len(a.wanted) - a.cfg.PullMax + 1 + a.cfg.PullMax/10)
	}
	a.wanted[k] = now
}

// pullLoop ages the working set out until ctx is done.
func (a *Agent) pullLoop(ctx context.Context) error {
	every := max(time.Duration(a.cfg.PullTTL)/4, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.mu.Lock()
			a.expirePulled(a.cfg.Now())
			a.mu.Unlock()
		}
	}
}

// expirePulled removes the entries pulled PullTTL or longer before now.
// a.mu is held.
func (a *Agent) expirePulled(now time.Time) {
	ttl := time.Duration(a.cfg.PullTTL)
	n := 0
	for k, at := range a.wanted {
		if now.Sub(at) >= ttl {
			a.unpull(k)
			n++
		}
	}
	if n > 0 {
		a.log.Debug("pulled entries aged out", "count", n, "ttl", ttl, "left", len(a.wanted))
	}
}

// evictOldest removes the n oldest entries of the working set. a.mu is held.
func (a *Agent) evictOldest(n int) {
	type aged struct {
		k  key
		at time.Time
	}
	all := make([]aged, 0, len(a.wanted))
	for k, at := range a.wanted {
		all = append(all, aged{k, at})
	}
	slices.SortFunc(all, func(x, y aged) int { return x.at.Compare(y.at) })
	for _, e := range all[:min(n, len(all))] {
		a.unpull(e.k)
	}
	a.log.Debug("pull working set full: oldest entries evicted", "count", min(n, len(all)), "max", a.cfg.PullMax)
}

// unpull drops k from the working set and the datapath (unless a local task
// or an in-flight redirect needs it). a.mu is held.
func (a *Agent) unpull(k key) {
	delete(a.wanted, k)
	a.st.PullEvicted++
	a.syncKey(k)
}
