package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Hot standby and failover (docs/FAILOVER.md, draft-ietf-nvo3-vmm-15
// section 8). A task may have one standby: another NVE with a prepared
// port for it, which registered with the standby role. When the task's NVE
// is declared dead (liveness.go) mapsrv moves the mapping to the standby's
// locator in one transaction (version+1, the dead NVE's locator kept as a
// previous entry), not counted by flap damping. A task without a usable
// standby (none, or its NVE dead too) is suspended in place: NVEs drop its
// mapping, the ILA router answers unreachable for it, and it becomes active
// again when it registers anywhere.

// Standby is the standby of a task, stored in its record. It lasts until
// it is used by a failover, the task moves to that NVE, the standby NVE
// withdraws it (a standby deregistration) or dies.
type Standby struct {
	NVE     string      `json:"nve"`
	Locator ila.Locator `json:"locator"`
	Since   time.Time   `json:"since"`
}

// registerStandby records r.NVE as the standby of the task r names.
func (s *Service) registerStandby(ctx context.Context, r Registration) (TaskRecord, error) {
	for attempt := 0; ; attempt++ {
		rec, err := s.registerStandbyOnce(ctx, r)
		if errors.Is(err, ErrConflict) && !errors.Is(err, errTaken) && attempt < 4 {
			continue
		}
		if err == nil {
			s.live.standbys.Add(1)
		}
		return rec, err
	}
}

func (s *Service) registerStandbyOnce(ctx context.Context, r Registration) (TaskRecord, error) {
	nve, nkv, err := s.getNVE(ctx, r.NVE)
	if err != nil {
		return TaskRecord{}, err
	}
	if err := checkFence(nve, r.Epoch); err != nil {
		return TaskRecord{}, err
	}
	dom, dkv, id, err := s.identify(ctx, &r)
	if err != nil {
		return TaskRecord{}, err
	}
	loc, pin, err := pickLocator(nve, r.Locator, dom.Name)
	if err != nil {
		return TaskRecord{}, err
	}
	rec, tkv, err := s.resolve(ctx, "", "", dom.Name, id)
	if err != nil {
		return TaskRecord{}, fmt.Errorf("standby on nve %s: %w", r.NVE, err)
	}
	what := fmt.Sprintf("standby for task %s/%s (%s) on nve %s", rec.Tenant, rec.Name, id, r.NVE)
	if r.Name != "" && (rec.Name != r.Name || (r.Tenant != "" && rec.Tenant != r.Tenant)) {
		return TaskRecord{}, fmt.Errorf("%s: the registration names task %s/%s: %w", what, r.Tenant, r.Name, ErrInvalid)
	}
	if rec.NVE == nve.Name && rec.PendingNVE == "" {
		return TaskRecord{}, fmt.Errorf("%s: that nve hosts the task: %w", what, ErrInvalid)
	}
	if sb := rec.Standby; sb != nil && sb.NVE != nve.Name {
		return TaskRecord{}, fmt.Errorf("%s: the task already has a standby on nve %s: %w: %w", what, sb.NVE, ErrConflict, errTaken)
	}
	if sb := rec.Standby; sb != nil && sb.Locator == loc {
		return rec, nil // a refresh
	}
	now := s.cfg.Now().UTC()
	rec.Standby = &Standby{NVE: nve.Name, Locator: loc, Since: now}
	var b txnBuilder
	b.cond(tkv)
	b.cond(nkv)
	b.cond(dkv)
	if pin != nil {
		pin.Updated = now
		b.put(nkv.Key, pin)
	}
	b.put(tkv.Key, rec)
	if err := s.commit(ctx, &b, "register "+what); err != nil {
		return TaskRecord{}, err
	}
	return rec, nil
}

// withdrawStandby removes r.NVE as the standby of the task r names.
func (s *Service) withdrawStandby(ctx context.Context, r Registration) error {
	for attempt := 0; ; attempt++ {
		err := s.withdrawStandbyOnce(ctx, r)
		if errors.Is(err, ErrConflict) && attempt < 4 {
			continue
		}
		return err
	}
}

func (s *Service) withdrawStandbyOnce(ctx context.Context, r Registration) error {
	var rec TaskRecord
	var tkv KV
	var err error
	if !r.SIR.IsValid() && !r.IPv4.IsValid() {
		rec, tkv, err = s.resolve(ctx, r.Tenant, r.Name, "", 0)
	} else {
		dom, _, id, ierr := s.identify(ctx, &r)
		if ierr != nil {
			return ierr
		}
		rec, tkv, err = s.resolve(ctx, "", "", dom.Name, id)
	}
	if err != nil {
		return err
	}
	if rec.Standby == nil || rec.Standby.NVE != r.NVE {
		return fmt.Errorf("withdraw standby of task %s/%s (%s): nve %s is not its standby: %w", rec.Tenant, rec.Name, rec.Identifier, r.NVE, ErrNotFound)
	}
	rec.Standby = nil
	var b txnBuilder
	b.cond(tkv)
	b.put(tkv.Key, rec)
	return s.commit(ctx, &b, "withdraw standby of "+tkv.Key)
}

// failoverNVE moves every active task of the dead NVE to its standby, or
// suspends it, and drops the standbys the dead NVE held. Each task is one
// transaction; a task changed concurrently is read again.
func (s *Service) failoverNVE(ctx context.Context, dead string) (moved, suspended int, err error) {
	recs, kvs, err := s.tasks(ctx)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for i := range recs {
		rec, kv := recs[i], kvs[i]
		if !involves(rec, dead) {
			continue
		}
		for attempt := 0; ; attempt++ {
			outcome, err := s.failoverTask(ctx, rec, kv, dead)
			if errors.Is(err, ErrConflict) && attempt < 4 {
				var rerr error
				if rec, kv, rerr = s.resolve(ctx, "", "", rec.Domain, rec.Identifier); rerr != nil {
					break // gone meanwhile
				}
				if !involves(rec, dead) {
					break
				}
				continue
			}
			if err != nil {
				errs = append(errs, err)
			}
			switch outcome {
			case "standby":
				moved++
			case "suspended":
				suspended++
			}
			break
		}
	}
	return moved, suspended, errors.Join(errs...)
}

// involves reports whether a failover of dead has something to do to rec.
func involves(rec TaskRecord, dead string) bool {
	onDead := rec.NVE == dead && rec.State == ila.StateActive
	return onDead || (rec.Standby != nil && rec.Standby.NVE == dead)
}

// failoverTask applies the death of NVE dead to one task.
func (s *Service) failoverTask(ctx context.Context, rec TaskRecord, kv KV, dead string) (string, error) {
	now := s.cfg.Now().UTC()
	s.fold(&rec)
	var b txnBuilder
	b.cond(kv)
	outcome := ""
	sb := rec.Standby
	if sb != nil && sb.NVE == dead {
		rec.Standby, sb = nil, nil
		outcome = "standby dropped"
	}
	if rec.NVE == dead && rec.State == ila.StateActive {
		outcome = "suspended"
		if sb != nil {
			n, nkv, err := s.getNVE(ctx, sb.NVE)
			usable := err == nil && n.Owns(sb.Locator, rec.Domain) && (n.Liveness == nil || n.Liveness.State != NVEDead)
			if usable {
				b.cond(nkv)
				s.switchLocator(&rec, sb.NVE, sb.Locator, now, true)
				rec.MovedBy = MovedByFailover
				outcome = "standby"
			}
			rec.Standby = nil
		}
		rec.Version++
		rec.PendingNVE, rec.PendingMode, rec.PendingUntil = "", ila.MoveNone, time.Time{}
		rec.Updated = now
		if outcome == "standby" {
			rec.State = ila.StateActive
		} else {
			rec.State = ila.StateSuspended
		}
	}
	if outcome == "standby" {
		dropExpect(&rec, dead, now)
	}
	rec.Previous = prunePrevious(rec.Previous, now)
	b.put(kv.Key, rec)
	if err := s.commit(ctx, &b, "failover of "+kv.Key); err != nil {
		return "", err
	}
	switch outcome {
	case "standby":
		s.live.failovers.Add(1)
		s.log.Info("task failed over to its standby", "tenant", rec.Tenant, "name", rec.Name, "identifier", rec.Identifier, "from", dead, "to", rec.NVE, "locator", rec.Locator, "version", rec.Version)
	case "suspended":
		s.live.suspensions.Add(1)
		s.log.Info("task suspended: its nve is dead and it has no usable standby", "tenant", rec.Tenant, "name", rec.Name, "identifier", rec.Identifier, "nve", dead)
	}
	return outcome, nil
}

// dropStandbyAt forgets the standby of a task that now lives on it.
func dropStandbyAt(rec *TaskRecord) {
	if rec.Standby != nil && rec.Standby.NVE == rec.NVE && rec.PendingNVE == "" {
		rec.Standby = nil
	}
}
