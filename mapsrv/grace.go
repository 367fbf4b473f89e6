package mapsrv

import (
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// The expiry rule (docs/FAILOVER.md, "No mass expiry"): a task expires when
// its lifetime is over AND its NVE has had one full lifetime of a working
// mapping service to refresh it. A replica that starts, that sees its store
// fail, or whose sweeper was stalled, restarts that lifetime ("up since"):
// a lifetime that ran while nobody could register does not count.
//
//	expires at = max(Expiry, upSince + Lifetime)
//
// (and the refreshes held in memory: renew.go, Service.effectiveExpiry).
//
// upSince is per replica. When every replica was down (or the store was),
// every replica grants the grace; when one replica stays up, it keeps
// expiring normally (its NVEs could register with it).

// upState is when this replica last became able to take registrations.
type upState struct {
	mu    sync.Mutex
	since time.Time // zero: no grace (a Service whose Run never started)
}

// reset starts a new grace period at now (a start, a store error, a stall).
func (u *upState) reset(now time.Time) {
	u.mu.Lock()
	if now.After(u.since) {
		u.since = now
	}
	u.mu.Unlock()
}

func (u *upState) get() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.since
}

// expiresAt returns when t expires under the rule above, and false for a
// task that does not expire.
func expiresAt(t ila.Task, upSince time.Time) (time.Time, bool) {
	if t.Expiry.IsZero() {
		return time.Time{}, false
	}
	exp := t.Expiry
	if !upSince.IsZero() {
		if g := upSince.Add(time.Duration(t.Lifetime)); g.After(exp) {
			exp = g
		}
	}
	return exp, true
}

// UpSince returns when this replica last started, regained its store or
// recovered from a stall: the start of the grace period of the expiry rule.
func (s *Service) UpSince() time.Time { return s.up.get() }

// stallGuard detects a sweeper loop that did not run for a while (process
// stopped, starved, or the machine suspended): the replica could not take
// registrations either, so the grace restarts.
type stallGuard struct {
	last  time.Time // monotonic wall clock of the last tick
	limit time.Duration
}

func newStallGuard(interval time.Duration) stallGuard {
	return stallGuard{last: time.Now(), limit: max(4*interval, time.Second)}
}

// tick reports whether the loop stalled since the last tick.
func (g *stallGuard) tick() bool {
	now := time.Now()
	stalled := now.Sub(g.last) > g.limit
	g.last = now
	return stalled
}
