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
	v := s.newExpiryView()
	expired := 0
	for i, rec := range recs {
		exp, _, err := s.sweepOne(ctx, rec, kvs[i], now, v)
		if err != nil {
			return expired, err
		}
		if exp {
			expired++
		}
	}
	s.forgetBefore(now) // refreshes held that can no longer change a decision
	return expired, nil
}

// sweepOne expires rec or prunes its previous locators if due. A task
// changed concurrently is left alone. next is when rec is next due
// (zero: never) if it is still there.
func (s *Service) sweepOne(ctx context.Context, rec TaskRecord, kv KV, now time.Time, v *expiryView) (expired bool, next time.Time, err error) {
	exp, ok := s.localExpiry(rec)
	var nkv KV
	if ok && !exp.After(now) {
		// Due by what this replica knows: the NVE's decider may hold
		// refreshes in memory (renew.go).
		if exp, ok, nkv, err = s.effectiveExpiry(ctx, rec, v); err != nil {
			return false, time.Time{}, err
		}
	}
	switch {
	case ok && !exp.After(now):
		b, err := s.deleteTask(ctx, rec, kv)
		if err != nil {
			return false, time.Time{}, err
		}
		if nkv.Key != "" {
			b.cond(nkv) // the decision holds only while the NVE's decider does
		}
		if err := s.commit(ctx, b, "expire task "+kv.Key); err != nil {
			if errors.Is(err, ErrConflict) {
				return false, now, nil
			}
			return false, time.Time{}, err
		}
		s.forget(kv.Key)
		s.c.expiries.Add(1)
		s.log.Info("task expired", "domain", rec.Domain, "identifier", rec.Identifier, "tenant", rec.Tenant, "name", rec.Name, "nve", rec.NVE)
		return true, time.Time{}, nil
	case s.suspendDue(rec, now):
		return false, now, s.rollBack(ctx, rec, kv, now)
	case len(rec.Previous) > 0 && len(prunePrevious(rec.Previous, now)) != len(rec.Previous),
		rec.Expect != nil && !rec.Expect.Until.After(now):
		// In-flight entries and an expectation (expect.go) whose time is
		// over.
		rec.Previous = prunePrevious(rec.Previous, now)
		dropExpect(&rec, rec.NVE, now)
		s.fold(&rec)
		var b txnBuilder
		b.cond(kv)
		b.put(kv.Key, rec)
		if err := s.commit(ctx, &b, "prune previous of "+kv.Key); err != nil && !errors.Is(err, ErrConflict) {
			return false, time.Time{}, err
		}
		return false, now, nil
	}
	next = time.Time{}
	if ok {
		next = exp
	}
	rec.Expiry = next
	if d, has := nextDue(rec.Task); has {
		next = d
	}
	if d, has := s.pendingDeadline(rec); has && (next.IsZero() || d.Before(next)) {
		next = d
	}
	if e := rec.Expect; e != nil && (next.IsZero() || e.Until.Before(next)) {
		next = e.Until
	}
	return false, next, nil
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

// dueKey is a key due and the time it was due at.
type dueKey struct {
	key string
	at  time.Time
}

func (d *dueSet) due(now time.Time) []dueKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys []dueKey
	for k, t := range d.m {
		if !t.After(now) {
			keys = append(keys, dueKey{k, t})
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].key < keys[j].key })
	return keys
}

// later moves k to next (zero: drops it), unless an event changed it
// since it was found due.
func (d *dueSet) later(k dueKey, next time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.m[k.key]; !ok || !t.Equal(k.at) {
		return
	}
	if next.IsZero() {
		delete(d.m, k.key)
		return
	}
	d.m[k.key] = next
}

// sweepDue sweeps the tasks the event feed says are due.
func (s *Service) sweepDue(ctx context.Context, d *dueSet) error {
	now := s.cfg.Now().UTC()
	keys := d.due(now)
	v := s.newExpiryView()
	for i := 0; i < len(keys); i += 64 {
		batch := keys[i:min(i+64, len(keys))]
		get := make([]string, len(batch))
		for j, k := range batch {
			get[j] = k.key
		}
		kvs, err := s.store.Get(ctx, get...)
		if err != nil {
			return s.storeErr(fmt.Errorf("get due tasks: %w", err))
		}
		for j, kv := range kvs {
			if kv.Revision == 0 {
				d.later(batch[j], time.Time{}) // gone
				continue
			}
			rec, err := DecodeTask(kv.Key, kv.Value)
			if err != nil {
				s.malformed(kv, err)
				continue
			}
			expired, next, err := s.sweepOne(ctx, rec, kv, now, v)
			if err != nil {
				return err
			}
			if !expired && next.After(now) {
				// Not due after all (a refresh held in memory, a
				// decider elsewhere): not read again before next.
				d.later(batch[j], next)
			}
		}
	}
	return nil
}
