package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// Sweep runs one pass of the lifetime sweeper: it deletes tasks whose
// lifetime is over (with their index entries), rolls back suspensions
// whose move timed out, and prunes previous locators whose in-flight time
// and expectations whose time is over. It returns the number of expired tasks.
// A task changed concurrently is left for the next pass.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	recs, kvs, err := s.tasks(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now().UTC()
	expired := 0
	for i, rec := range recs {
		exp, err := s.sweepOne(ctx, rec, kvs[i], now)
		if err != nil {
			return expired, err
		}
		if exp {
			expired++
		}
	}
	return expired, nil
}

// sweepOne expires rec or prunes its previous locators if due. A task
// changed concurrently is left alone.
func (s *Service) sweepOne(ctx context.Context, rec TaskRecord, kv KV, now time.Time) (bool, error) {
	switch {
	case s.expired(rec.Task, now):
		b, err := s.deleteTask(ctx, rec, kv)
		if err != nil {
			return false, err
		}
		if err := s.commit(ctx, b, "expire task "+kv.Key); err != nil {
			if errors.Is(err, ErrConflict) {
				return false, nil
			}
			return false, err
		}
		s.c.expiries.Add(1)
		s.log.Info("task expired", "domain", rec.Domain, "identifier", rec.Identifier, "tenant", rec.Tenant, "name", rec.Name, "nve", rec.NVE)
		return true, nil
	case s.suspendDue(rec, now):
		return false, s.rollBack(ctx, rec, kv, now)
	case len(rec.Previous) > 0 && len(prunePrevious(rec.Previous, now)) != len(rec.Previous),
		rec.Expect != nil && !rec.Expect.Until.After(now):
		// In-flight entries and an expectation (expect.go) whose time is
		// over.
		rec.Previous = prunePrevious(rec.Previous, now)
		dropExpect(&rec, rec.NVE, now)
		var b txnBuilder
		b.cond(kv)
		b.put(kv.Key, rec)
		if err := s.commit(ctx, &b, "prune previous of "+kv.Key); err != nil && !errors.Is(err, ErrConflict) {
			return false, err
		}
	}
	return false, nil
}

// nextDue returns when the sweeper has something to do for t: its expiry
// or the earliest in-flight deadline.
func nextDue(t ila.Task) (time.Time, bool) {
	var due time.Time
	if !t.Expiry.IsZero() {
		due = t.Expiry
	}
	for _, p := range t.Previous {
		if due.IsZero() || p.Until.Before(due) {
			due = p.Until
		}
	}
	return due, !due.IsZero()
}

// dueSet tracks, from the store's events, when each task is next due.
// Events carry ila.Task, without the move deadline (PendingUntil): a
// suspension is taken as due suspend after the first event that showed
// it (an approximation on the late side after a restart; the full sweep
// catches it, and sweepOne decides on the stored record).
type dueSet struct {
	mu        sync.Mutex
	m         map[string]time.Time
	suspend   time.Duration
	suspSince map[string]time.Time
}

func (d *dueSet) event(ev ila.Event) {
	if ev.Task == nil {
		return
	}
	key := TaskKey(ev.Task.Domain, ev.Task.Identifier)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]time.Time)
		d.suspSince = make(map[string]time.Time)
	}
	due, ok := nextDue(*ev.Task)
	if ev.Type != ila.EventTaskDelete && ev.Task.State == ila.StateSuspended && d.suspend > 0 {
		since, seen := d.suspSince[key]
		if !seen {
			since = ev.Task.Updated
			d.suspSince[key] = since
		}
		if sd := since.Add(d.suspend); !ok || sd.Before(due) {
			due, ok = sd, true
		}
	} else {
		delete(d.suspSince, key)
	}
	if ev.Type == ila.EventTaskDelete || !ok {
		delete(d.m, key)
		return
	}
	d.m[key] = due
}

func (d *dueSet) due(now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys []string
	for k, t := range d.m {
		if !t.After(now) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// sweepDue sweeps the tasks the event feed says are due.
func (s *Service) sweepDue(ctx context.Context, d *dueSet) error {
	now := s.cfg.Now().UTC()
	keys := d.due(now)
	for i := 0; i < len(keys); i += 64 {
		batch := keys[i:min(i+64, len(keys))]
		kvs, err := s.store.Get(ctx, batch...)
		if err != nil {
			return s.storeErr(fmt.Errorf("get due tasks: %w", err))
		}
		for _, kv := range kvs {
			if kv.Revision == 0 {
				continue
			}
			rec, err := DecodeTask(kv.Key, kv.Value)
			if err != nil {
				s.malformed(kv, err)
				continue
			}
			if _, err := s.sweepOne(ctx, rec, kv, now); err != nil {
				return err
			}
		}
	}
	return nil
}
