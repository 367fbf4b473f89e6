package mapsrv

import (
	"errors"
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
	// claimMove: a justified claim of a task hosted by another NVE
	// (justify), a move in claimDecision.Mode. It follows the move rules
	// (moveRecord: a duplicate task is refused, and so is a move beyond
	// flap damping's limit, changing nothing).
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
	// OwnerGone: the NVE that hosts Task is declared dead or no longer
	// exists (read only when the claimant is another NVE).
	OwnerGone bool
	// StandbyClaims: Config.StandbyClaims (when the task's standby is a
	// justification).
	StandbyClaims StandbyClaims
}

// claimDecision is decideClaim's answer.
type claimDecision struct {
	Kind claimKind
	Mode ila.MoveMode // claimMove: hot, warm or cold
	// By: claimMove and claimComplete: what justified the move
	// (ila.Task.MovedBy).
	By  string
	Err error // claimRefuse: why
}

// What justified the last move of a task (ila.Task.MovedBy,
// docs/registration.md section 7.4).
const (
	// MovedByOperator: a move through the management API (Move), or the
	// registration at the destination that completes one.
	MovedByOperator = "operator"
	// MovedByExpected: a claim from the task's standby (the NVE that
	// registered a prepared port for it, failover.go) that an
	// orchestrator's expectation named (expect.go).
	MovedByExpected = "expected"
	// MovedByStandby: a claim from the task's standby without an
	// expectation (Config.StandbyClaims StandbyClaimsTrust).
	MovedByStandby = "standby"
	// MovedByFailover: mapsrv moved the task to its standby when its NVE
	// was declared dead.
	MovedByFailover = "failover"
	// MovedByOrphan: a claim of a task that nothing hosts any more: its
	// NVE is dead or removed, its lifetime is over, or a failover
	// suspended it for want of a standby.
	MovedByOrphan = "orphan"
)

// ErrUnjustified marks a claim refused because the claimant does not host
// the task and nothing justifies the move (registration reason 15,
// HTTP 409 with ErrConflict).
var ErrUnjustified = errors.New("claim not justified")

// justify returns what justifies a move of the task (st.Task, hosted by
// another NVE) to nve at now, or "" when nothing does.
func justify(nve string, st claimState, now time.Time) string {
	rec := st.Task
	if by := standbyJustifies(nve, st, now); by != "" {
		return by
	}
	if st.OwnerGone || !rec.Expiry.IsZero() && !rec.Expiry.After(now) || rec.State == ila.StateSuspended && rec.PendingNVE == "" {
		return MovedByOrphan
	}
	return ""
}

// standbyJustifies returns what justifies a claim of st.Task by nve as
// the task's standby, or "" when that does not: a standby registration is
// the claimant's own word, and by default (StandbyClaimsExpected) it
// counts only while an orchestrator's expectation names nve.
func standbyJustifies(nve string, st claimState, now time.Time) string {
	rec := st.Task
	if rec.Standby == nil || rec.Standby.NVE != nve {
		return ""
	}
	switch st.StandbyClaims {
	case StandbyClaimsExpected:
		if expects(rec, nve, now) {
			return MovedByExpected
		}
	case StandbyClaimsTrust:
		if expects(rec, nve, now) {
			return MovedByExpected
		}
		return MovedByStandby
	}
	return ""
}

// decideClaim decides what registration r, by NVE nve, of the task with
// identifier id does, given what the store holds (st) at now. r carries
// the name and MAC it claims (those of the stored task when it gave none)
// and a valid move mode (MoveNone = none given). Refusals wrap ErrConflict with
// errTaken (name or MAC used by another task), ErrDuplicate (completion of
// a move of a duplicate task), or are a finalError wrapping ErrConflict (a
// re-registration from the NVE the task just left, which a retry cannot
// change; or, with ErrUnjustified, a claim from an NVE that does not host
// the task and that nothing justifies, see justify).
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
		return claimDecision{Kind: claimComplete, By: MovedByOperator}
	case r.Mode == ila.MoveNone && inFlightFrom(rec.Previous, nve, now):
		// The NVE the task just left, within the in-flight time, without
		// a move mode: a periodic re-registration that crossed the move on
		// the wire, not a claim. Taking it as one would move the task back
		// to where it no longer is. A real claim (a task attached there
		// again) carries a move mode.
		return claimDecision{Kind: claimRefuse, Err: finalError{fmt.Errorf("task %s/%s (%s): moved from %s to %s; a registration from the previous NVE without a move mode does not move it back: %w",
			rec.Tenant, rec.Name, id, nve, rec.NVE, ErrConflict)}}
	}
	by := justify(nve, st, now)
	if by == "" {
		// Finding 3 of issue 17: one NVE's key claimed any task onto its
		// own locator. A claim from an NVE that does not host the task
		// needs a prepared port there that the orchestrator announced (a
		// standby registration and an expectation), an operator's move
		// (which completes above) or a task nothing hosts any more.
		why := "it is not the task's standby"
		if rec.Standby != nil && rec.Standby.NVE == nve {
			switch st.StandbyClaims {
			case StandbyClaimsOff:
				why = "it is the task's standby, but standby claims are off"
			default:
				why = "it is the task's standby, but no unexpired expectation names it (POST /v1/tasks/{tenant}/{name}/expect, ilactl expect)"
			}
		}
		return claimDecision{Kind: claimRefuse, Err: finalError{fmt.Errorf("task %s/%s (%s) is on nve %s: a claim from nve %s is not justified (%s, no move to it is pending, nve %s is alive and the task's lifetime runs): %w: %w",
			rec.Tenant, rec.Name, id, rec.NVE, nve, why, rec.NVE, ErrConflict, ErrUnjustified)}}
	}
	mode := r.Mode
	if mode == ila.MoveNone {
		mode = ila.MoveHot
	}
	return claimDecision{Kind: claimMove, Mode: mode, By: by}
}
