package mapsrv

import (
	"context"
	"errors"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// A warm or cold move suspends the task (State suspended, PendingNVE the
// destination) until it registers at the destination. The suspension has
// a deadline, PendingUntil (Config.SuspendTimeout after the move): a task
// that never arrives is rolled back by the sweeper, active again at the
// NVE it was leaving (which still holds its port and resumes delivery).
// Re-registrations from that NVE refresh the lifetime but not the
// deadline, so they cannot keep the task suspended indefinitely.

// clearPending drops the move deadline of a record no longer suspended by
// a pending move.
func clearPending(rec *TaskRecord) {
	if rec.State != ila.StateSuspended || rec.PendingNVE == "" {
		rec.PendingUntil = time.Time{}
	}
}

// pendingDeadline is when rec's suspension times out; ok is false when it
// is not suspended by a pending move. A record written without a deadline
// (by an older mapsrv) times out SuspendTimeout after its last update.
func (s *Service) pendingDeadline(rec TaskRecord) (time.Time, bool) {
	if rec.State != ila.StateSuspended || rec.PendingNVE == "" {
		return time.Time{}, false
	}
	if rec.PendingUntil.IsZero() {
		return rec.Updated.Add(s.cfg.SuspendTimeout), true
	}
	return rec.PendingUntil, true
}

// rollBack ends rec's timed-out suspension: active again where it was.
func (s *Service) rollBack(ctx context.Context, rec TaskRecord, kv KV, now time.Time) error {
	to := rec.PendingNVE
	rec.State = ila.StateActive
	rec.PendingNVE, rec.PendingMode, rec.PendingUntil = "", ila.MoveNone, time.Time{}
	rec.Previous = prunePrevious(rec.Previous, now)
	rec.Version++
	rec.Updated = now
	s.fold(&rec)
	var b txnBuilder
	b.cond(kv)
	b.put(kv.Key, rec)
	if err := s.commit(ctx, &b, "roll back suspension of "+kv.Key); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil // changed meanwhile: the next pass decides again
		}
		return err
	}
	s.c.suspendTimeouts.Add(1)
	s.log.Info("move timed out: task rolled back", "domain", rec.Domain, "identifier", rec.Identifier, "tenant", rec.Tenant, "name", rec.Name, "nve", rec.NVE, "destination", to)
	return nil
}

// suspendDue reports whether rec's suspension has timed out at now.
func (s *Service) suspendDue(rec TaskRecord, now time.Time) bool {
	d, ok := s.pendingDeadline(rec)
	return ok && !d.After(now)
}
