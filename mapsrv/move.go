package mapsrv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// checkMode returns the mode a move with mode m makes (none: hot).
func checkMode(m ila.MoveMode) (ila.MoveMode, error) {
	switch m {
	case ila.MoveNone:
		return ila.MoveHot, nil
	case ila.MoveHot, ila.MoveWarm, ila.MoveCold:
		return m, nil
	}
	return 0, fmt.Errorf("move mode %q: want hot, warm or cold: %w", m, ErrInvalid)
}

// moveOutcome is what a move did, for the counters: the zero value counts
// nothing.
type moveOutcome struct {
	Mode ila.MoveMode // the mode of a committed move
}

// inFlightFrom reports whether nve is a previous NVE of the task whose
// in-flight time is not over.
func inFlightFrom(p []ila.Previous, nve string, now time.Time) bool {
	for _, e := range p {
		if e.NVE == nve && e.Until.After(now) {
			return true
		}
	}
	return false
}

// prunePrevious drops previous locators whose in-flight time is over.
func prunePrevious(p []ila.Previous, now time.Time) []ila.Previous {
	out := p[:0:0]
	for _, e := range p {
		if e.Until.After(now) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// switchLocator points rec at (nve, loc), keeps the old locator as an
// in-flight previous entry when inFlight is set, and returns the
// notifications for the previous NVEs.
func (s *Service) switchLocator(rec *TaskRecord, nve string, loc ila.Locator, now time.Time, inFlight bool) []Notification {
	prev := prunePrevious(rec.Previous, now)
	var notify []Notification
	seen := map[string]bool{nve: true}
	mode := ila.MoveHot
	switch {
	case !inFlight:
		mode = ila.MoveCold
	case rec.PendingMode == ila.MoveWarm:
		mode = ila.MoveWarm
	}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			notify = append(notify, Notification{NVE: name, Mode: mode})
		}
	}
	add(rec.NVE)
	for _, p := range prev {
		add(p.NVE)
	}
	if inFlight && rec.NVE != nve {
		prev = slices.DeleteFunc(prev, func(p ila.Previous) bool { return p.Locator == rec.Locator || p.Locator == loc })
		prev = append(prev, ila.Previous{Locator: rec.Locator, NVE: rec.NVE, Until: now.Add(s.cfg.InFlight)})
	}
	prev = slices.DeleteFunc(prev, func(p ila.Previous) bool { return p.Locator == loc })
	if len(prev) == 0 {
		prev = nil
	}
	rec.Previous = prev
	if rec.NVE != nve && !rec.Expiry.IsZero() {
		// Its new NVE gets one lifetime from the change to register it:
		// the record's expiry may predate refreshes held in memory by
		// the old NVE's replica (renew.go).
		if e := now.Add(time.Duration(rec.Lifetime)); e.After(rec.Expiry) {
			rec.Expiry = e
		}
	}
	rec.NVE, rec.Locator = nve, loc
	return notify
}

// moveRecord applies a move to rec. A refusal (the task is marked
// duplicate, already there, or flap damping: more than FlapMoves moves
// within FlapWindow) changes nothing: rec must not be written, and every
// datapath keeps the task where the store has it.
func (s *Service) moveRecord(rec *TaskRecord, to string, loc ila.Locator, mode ila.MoveMode, now time.Time) (notify []Notification, outcome moveOutcome, err error) {
	if rec.State == ila.StateDuplicate {
		s.c.movesRefused.Add(1)
		return nil, moveOutcome{}, finalError{fmt.Errorf("move task %s/%s (%s) to %s: marked duplicate (clear-duplicate): %w", rec.Tenant, rec.Name, rec.Identifier, to, ErrDuplicate)}
	}
	if rec.NVE == to && rec.PendingNVE == "" {
		return nil, moveOutcome{}, fmt.Errorf("move task %s/%s (%s): already on nve %s: %w", rec.Tenant, rec.Name, rec.Identifier, to, ErrInvalid)
	}
	if n := s.recentMoves(rec, now); n >= s.cfg.FlapMoves {
		s.c.movesRefused.Add(1)
		s.c.dups.Add(1)
		return nil, moveOutcome{}, finalError{fmt.Errorf("move task %s/%s (%s) to %s: %d moves within %s already, it stays on %s: %w", rec.Tenant, rec.Name, rec.Identifier, to, n, s.cfg.FlapWindow, rec.NVE, ErrDuplicate)}
	}
	cut := now.Add(-s.cfg.FlapWindow)
	rec.Moves = slices.DeleteFunc(rec.Moves, func(t time.Time) bool { return !t.After(cut) })
	rec.Moves = append(rec.Moves, now)
	rec.Version++
	rec.Updated = now
	switch mode {
	case ila.MoveHot:
		notify = s.switchLocator(rec, to, loc, now, true)
		rec.State = ila.StateActive
		rec.PendingNVE, rec.PendingMode = "", ila.MoveNone
	default:
		rec.State = ila.StateSuspended
		rec.PendingNVE, rec.PendingMode = to, mode
		rec.PendingUntil = now.Add(s.cfg.SuspendTimeout)
		if rec.NVE == to {
			// Back to where it was before the suspension.
			rec.State = ila.StateActive
			rec.PendingNVE, rec.PendingMode = "", ila.MoveNone
		}
	}
	clearPending(rec)
	return notify, moveOutcome{Mode: mode}, nil
}

// recentMoves counts rec's moves within the flap window before now.
func (s *Service) recentMoves(rec *TaskRecord, now time.Time) int {
	cut := now.Add(-s.cfg.FlapWindow)
	n := 0
	for _, t := range rec.Moves {
		if t.After(cut) {
			n++
		}
	}
	return n
}

// countMove counts a committed move outcome of moveRecord.
func (s *Service) countMove(outcome moveOutcome) {
	switch outcome.Mode {
	case ila.MoveHot:
		s.c.movesHot.Add(1)
	case ila.MoveWarm:
		s.c.movesWarm.Add(1)
	case ila.MoveCold:
		s.c.movesCold.Add(1)
	}
}

// MoveRequest asks to move a task, named by tenant/name or by domain and
// identifier, to another NVE.
type MoveRequest struct {
	Tenant, Name string
	Domain       string
	Identifier   ila.Identifier
	To           string
	Locator      ila.Locator  // 0: the destination's locator for the domain
	Mode         ila.MoveMode // hot (none: hot), warm, cold
	// Check asks whether the move would be accepted now (the task, the
	// destination, its locator, flap damping) without making it: the
	// answer is the record as the move would write it, or the refusal.
	// A move that changes links first (the lab's, an orchestrator's)
	// checks before it touches anything.
	Check bool
}

// Move moves a task. Hot: make before break; the mapping switches to the
// destination atomically (version+1) and the previous locator stays as an
// in-flight entry for Config.InFlight; previous NVEs are notified. Warm
// and cold: the task is suspended until it registers at the destination.
// A concurrent change of the task makes Move fail with ErrConflict (exactly
// one of two concurrent moves wins). A move beyond FlapMoves moves within
// FlapWindow is refused by flap damping (ErrDuplicate) and changes
// nothing.
//
// The transaction is conditional on the task, the destination NVE and
// the domain. A conflict on the task is the answer (someone else moved or
// re-registered it); a conflict on the NVE or domain record alone (a
// liveness transition, a locator pin, an operator's edit, written between
// the read and the commit) has nothing to do with this move, so the move
// is decided again on fresh reads, up to moveAttempts times.
func (s *Service) Move(ctx context.Context, m MoveRequest) (TaskRecord, error) {
	mode, err := checkMode(m.Mode)
	if err != nil {
		return TaskRecord{}, err
	}
	for attempt := 1; ; attempt++ {
		rec, tkv, committing, err := s.moveOnce(ctx, m, mode)
		if err == nil || !committing || !errors.Is(err, ErrConflict) || attempt == moveAttempts {
			return rec, err
		}
		cur, gerr := s.store.Get(ctx, tkv.Key)
		if gerr != nil || len(cur) != 1 || cur[0].Revision != tkv.Revision {
			return rec, err // the task changed: another move or registration won
		}
		s.c.moveRetries.Add(1)
	}
}

// moveAttempts bounds Move's retries after a conflict on the NVE or
// domain record only.
const moveAttempts = 4

// moveOnce reads, decides and (unless m.Check) commits one move; it
// returns the task's key and revision as read, and whether the error, if
// any, came from the commit.
func (s *Service) moveOnce(ctx context.Context, m MoveRequest, mode ila.MoveMode) (TaskRecord, KV, bool, error) {
	rec, tkv, err := s.resolve(ctx, m.Tenant, m.Name, m.Domain, m.Identifier)
	if err != nil {
		return TaskRecord{}, KV{}, false, err
	}
	nve, nkv, err := s.getNVE(ctx, m.To)
	if err != nil {
		return TaskRecord{}, tkv, false, err
	}
	_, dkv, err := s.getDomain(ctx, rec.Domain)
	if err != nil {
		return TaskRecord{}, tkv, false, err
	}
	loc, pin, err := pickLocator(nve, m.Locator, rec.Domain)
	if err != nil {
		return TaskRecord{}, tkv, false, err
	}
	now := s.cfg.Now().UTC()
	var b txnBuilder
	b.cond(tkv)
	b.cond(nkv)
	b.cond(dkv)
	if pin != nil {
		pin.Updated = now
		b.put(nkv.Key, pin)
	}
	from := rec.NVE
	s.fold(&rec)
	notify, outcome, err := s.moveRecord(&rec, nve.Name, loc, mode, now)
	if err != nil {
		return TaskRecord{}, tkv, false, err
	}
	rec.MovedBy = MovedByOperator
	dropStandbyAt(&rec)
	dropExpect(&rec, from, now)
	rec.Previous = prunePrevious(rec.Previous, now)
	if m.Check {
		return rec, tkv, false, nil
	}
	b.put(tkv.Key, rec)
	if err := s.commit(ctx, &b, "move task "+tkv.Key); err != nil {
		return TaskRecord{}, tkv, true, err
	}
	s.countMove(outcome)
	s.enqueue(ctx, notify, rec.Task)
	return rec, tkv, false, nil
}

// ClearDuplicate returns a task marked duplicate by flap damping to the
// active state and forgets its move history.
func (s *Service) ClearDuplicate(ctx context.Context, tenant, name, domain string, id ila.Identifier) (TaskRecord, error) {
	rec, tkv, err := s.resolve(ctx, tenant, name, domain, id)
	if err != nil {
		return TaskRecord{}, err
	}
	if rec.State != ila.StateDuplicate {
		return rec, fmt.Errorf("task %s/%s (%s) is %s, not duplicate: %w", rec.Tenant, rec.Name, rec.Identifier, rec.State, ErrInvalid)
	}
	rec.State = ila.StateActive
	rec.Moves = nil
	rec.Version++
	s.fold(&rec)
	rec.Updated = s.cfg.Now().UTC()
	var b txnBuilder
	b.cond(tkv)
	b.put(tkv.Key, rec)
	if err := s.commit(ctx, &b, "clear duplicate "+tkv.Key); err != nil {
		return TaskRecord{}, err
	}
	return rec, nil
}
