package mapsrv

import (
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// claimKind is what a registration does to the task it names.
type claimKind int

const (
	// claimNew: no task is stored; the registration creates it on the
	// claimant.
	claimNew claimKind = iota + 1
	// claimRefresh: the serving NVE re-registers (also while a warm or
	// cold move away from it is pending: the task stays suspended).
	claimRefresh
	// claimComplete: the destination of a pending warm or cold move
	// registers the task; the move completes.
	claimComplete
	// claimMove: a claim of a task active on another NVE, a move in
	// claimDecision.Mode. It follows the move rules (moveRecord: a
	// duplicate task is refused, flap damping may mark it duplicate).
	claimMove
	// claimRefuse: the registration is refused with claimDecision.Err.
	claimRefuse
)

func (k claimKind) String() string {
	switch k {
	case claimNew:
		return "new"
	case claimRefresh:
		return "refresh"
	case claimComplete:
		return "complete"
	case claimMove:
		return "move"
	case claimRefuse:
		return "refuse"
	}
	return fmt.Sprintf("claimKind(%d)", int(k))
}

// claimState is what a registration finds in the store.
type claimState struct {
	// Task is the stored task; nil when there is none.
	Task *TaskRecord
	// NameFree and MACFree: the name and MAC index entries of the
	// registration are absent, stale or already point at this task.
	NameFree, MACFree bool
}

// claimDecision is decideClaim's answer.
type claimDecision struct {
	Kind claimKind
	Mode ila.MoveMode // claimMove: hot, warm or cold
	Err  error        // claimRefuse: why
}

// decideClaim decides what registration r, by NVE nve, of the task with
// identifier id does, given what the store holds (st) at now. r carries
// the name and MAC it claims (those of the stored task when it gave none)
// and a valid move mode (MoveNone = none given). Refusals wrap ErrConflict with
// errTaken (name or MAC used by another task), ErrDuplicate (completion of
// a move of a duplicate task), or are a finalError wrapping ErrConflict (a
// re-registration from the NVE the task just left, which a retry cannot
// change).
func decideClaim(r Registration, nve string, id ila.Identifier, st claimState, now time.Time) claimDecision {
	if !st.NameFree {
		return claimDecision{Kind: claimRefuse, Err: fmt.Errorf("task %s/%s: name used by another task: %w: %w", r.Tenant, r.Name, ErrConflict, errTaken)}
	}
	if !st.MACFree {
		return claimDecision{Kind: claimRefuse, Err: fmt.Errorf("task %s/%s: mac %s used by another task: %w: %w", r.Tenant, r.Name, r.MAC, ErrConflict, errTaken)}
	}
	rec := st.Task
	switch {
	case rec == nil:
		return claimDecision{Kind: claimNew}
	case rec.NVE == nve:
		return claimDecision{Kind: claimRefresh}
	case rec.PendingNVE == nve:
		if rec.State == ila.StateDuplicate {
			return claimDecision{Kind: claimRefuse, Err: fmt.Errorf("task %s/%s (%s): %w", rec.Tenant, rec.Name, id, ErrDuplicate)}
		}
		return claimDecision{Kind: claimComplete}
	case r.Mode == ila.MoveNone && inFlightFrom(rec.Previous, nve, now):
		// The NVE the task just left, within the in-flight time, without
		// a move mode: a periodic re-registration that crossed the move on
		// the wire, not a claim. Taking it as one would move the task back
		// to where it no longer is. A real claim (a task attached there
		// again) carries a move mode.
		return claimDecision{Kind: claimRefuse, Err: finalError{fmt.Errorf("task %s/%s (%s): moved from %s to %s; a registration from the previous NVE without a move mode does not move it back: %w",
			rec.Tenant, rec.Name, id, nve, rec.NVE, ErrConflict)}}
	}
	mode := r.Mode
	if mode == ila.MoveNone {
		mode = ila.MoveHot
	}
	return claimDecision{Kind: claimMove, Mode: mode}
}
