package mapsrv

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ilamesh/ilamesh/ila"
)

func TestDecideClaim(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := ila.Identifier(0x1000000000000001)
	task := func(mod func(*TaskRecord)) *TaskRecord {
		rec := &TaskRecord{Task: ila.Task{Tenant: "default", Name: "vm1", Identifier: id, NVE: "n1", Locator: 0xfd00000000000001, State: ila.StateActive, Version: 3}}
		if mod != nil {
			mod(rec)
		}
		return rec
	}
	active := task(nil)
	suspendedAway := task(func(r *TaskRecord) { r.State, r.PendingNVE, r.PendingMode = ila.StateSuspended, "n2", ila.MoveWarm })
	suspendedHere := task(func(r *TaskRecord) { r.State = ila.StateSuspended })
	duplicate := task(func(r *TaskRecord) { r.State = ila.StateDuplicate })
	duplicatePending := task(func(r *TaskRecord) { r.State, r.PendingNVE, r.PendingMode = ila.StateDuplicate, "n2", ila.MoveCold })
	// Moved from n2 to n1 a second ago; n2 forwards in flight for 9 more.
	movedHere := task(func(r *TaskRecord) {
		r.Previous = []ila.Previous{{Locator: 0xfd00000000000002, NVE: "n2", Until: t0.Add(9 * time.Second)}}
	})
	movedLongAgo := task(func(r *TaskRecord) {
		r.Previous = []ila.Previous{{Locator: 0xfd00000000000002, NVE: "n2", Until: t0.Add(-time.Second)}}
	})
	// The task's standby (a prepared port) is n2; n3 is a stranger.
	standbyN2 := func(rec *TaskRecord) *TaskRecord {
		c := *rec
		c.Standby = &Standby{NVE: "n2", Locator: 0xfd00000000000002, Since: t0.Add(-time.Second)}
		return &c
	}
	failedSuspended := task(func(r *TaskRecord) { r.State = ila.StateSuspended }) // failover found no standby
	expired := task(func(r *TaskRecord) { r.Expiry = t0.Add(-time.Second) })
	notExpired := task(func(r *TaskRecord) { r.Expiry = t0.Add(time.Minute) })
	// An orchestrator expects the task on nve until until.
	expect := func(rec *TaskRecord, nve string, until time.Time) *TaskRecord {
		c := *rec
		c.Expect = &Expectation{NVE: nve, Since: t0.Add(-time.Second), Until: until}
		return &c
	}
	free := claimState{NameFree: true, MACFree: true}
	with := func(rec *TaskRecord) claimState { st := free; st.Task = rec; return st }
	ownerGone := func(rec *TaskRecord) claimState { st := with(rec); st.OwnerGone = true; return st }
	mode := func(st claimState, m StandbyClaims) claimState { st.StandbyClaims = m; return st }
	trust := func(st claimState) claimState { return mode(st, StandbyClaimsTrust) }

	type want struct {
		Kind claimKind
		Mode ila.MoveMode
		By   string // claimMove, claimComplete: the justification stamped on the record
	}
	tests := []struct {
		name  string
		nve   string
		mode  ila.MoveMode // requested move mode
		st    claimState
		want  want
		errIs []error // claimRefuse: the error wraps each of these
		final bool    // claimRefuse: a finalError
		msg   string  // claimRefuse: part of the error text
	}{
		{name: "no task", nve: "n2", st: free, want: want{Kind: claimNew}},
		{name: "no task, mode given", nve: "n2", mode: ila.MoveCold, st: free, want: want{Kind: claimNew}},
		{name: "no task, name taken", nve: "n2", st: claimState{MACFree: true}, want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, errTaken}, msg: "name used"},
		{name: "no task, mac taken", nve: "n2", st: claimState{NameFree: true}, want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, errTaken}, msg: "mac"},
		{name: "name and mac taken: the name is named", nve: "n2", st: claimState{}, want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, errTaken}, msg: "name used"},
		{name: "serving nve refreshes", nve: "n1", st: with(active), want: want{Kind: claimRefresh}},
		{name: "serving nve refreshes, mode given", nve: "n1", mode: ila.MoveWarm, st: with(active), want: want{Kind: claimRefresh}},
		{name: "serving nve refreshes while a move away is pending", nve: "n1", st: with(suspendedAway), want: want{Kind: claimRefresh}},
		{name: "serving nve refreshes a suspended task", nve: "n1", st: with(suspendedHere), want: want{Kind: claimRefresh}},
		{name: "serving nve, mac taken", nve: "n1", st: claimState{Task: active, NameFree: true}, want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, errTaken}, msg: "mac"},
		{name: "destination completes a pending move", nve: "n2", st: with(suspendedAway), want: want{Kind: claimComplete, By: MovedByOperator}},
		{name: "destination completes, mode given", nve: "n2", mode: ila.MoveHot, st: with(suspendedAway), want: want{Kind: claimComplete, By: MovedByOperator}},
		{name: "destination of a duplicate task", nve: "n2", st: with(duplicatePending), want: want{Kind: claimRefuse}, errIs: []error{ErrDuplicate}},
		// Finding 3 of issue 17: a claim from an NVE that does not host the
		// task moves it only when justified.
		{name: "stranger claims an active task: refused", nve: "n2", st: with(active), want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, ErrUnjustified}, final: true, msg: "not justified"},
		{name: "stranger claims warm: refused", nve: "n2", mode: ila.MoveWarm, st: with(active), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true, msg: "not justified"},
		{name: "stranger claims cold: refused", nve: "n2", mode: ila.MoveCold, st: with(active), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "third nve claims a task pending elsewhere: refused", nve: "n3", st: with(suspendedAway), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "stranger claims a task another nve is standby for: refused", nve: "n3", st: with(standbyN2(active)), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "stranger claims a duplicate task: refused", nve: "n3", st: with(duplicate), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "previous nve in flight with a mode: refused unless justified", nve: "n2", mode: ila.MoveHot, st: with(movedHere), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "previous nve after the in-flight time: refused unless justified", nve: "n2", st: with(movedLongAgo), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "stranger claims a task whose lifetime has not expired: refused", nve: "n2", st: with(notExpired), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		// The claimant is the task's standby (a prepared port): by default
		// that justifies its claim only while an orchestrator's
		// expectation names it (a compromised NVE registers as the
		// standby of any task it wants, then claims it).
		{name: "standby claims without an expectation: refused", nve: "n2", st: with(standbyN2(active)), want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, ErrUnjustified}, final: true, msg: "no unexpired expectation names it"},
		{name: "standby claims cold without an expectation: refused", nve: "n2", mode: ila.MoveCold, st: with(standbyN2(active)), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "standby claims, expectation expired: refused", nve: "n2", st: with(expect(standbyN2(active), "n2", t0)), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true, msg: "no unexpired expectation"},
		{name: "standby claims, expectation names another nve: refused", nve: "n2", st: with(expect(standbyN2(active), "n3", t0.Add(time.Minute))), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "expected nve that is not the standby: refused", nve: "n3", st: with(expect(standbyN2(active), "n3", t0.Add(time.Minute))), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true, msg: "not the task's standby"},
		{name: "expected nve without any standby: refused", nve: "n2", st: with(expect(active, "n2", t0.Add(time.Minute))), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "expected standby claims: hot by default", nve: "n2", st: with(expect(standbyN2(active), "n2", t0.Add(time.Minute))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByExpected}},
		{name: "expected standby claims warm", nve: "n2", mode: ila.MoveWarm, st: with(expect(standbyN2(active), "n2", t0.Add(time.Second))), want: want{Kind: claimMove, Mode: ila.MoveWarm, By: MovedByExpected}},
		{name: "expected standby claims a task pending elsewhere", nve: "n2", st: with(expect(standbyN2(task(func(r *TaskRecord) { r.State, r.PendingNVE, r.PendingMode = ila.StateSuspended, "n3", ila.MoveCold })), "n2", t0.Add(time.Minute))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByExpected}},
		{name: "expected standby, standby claims off: refused", nve: "n2", st: mode(with(expect(standbyN2(active), "n2", t0.Add(time.Minute))), StandbyClaimsOff), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true, msg: "standby claims are off"},
		{name: "standby claims an orphan, standby claims off", nve: "n2", st: mode(ownerGone(standbyN2(active)), StandbyClaimsOff), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByOrphan}},
		{name: "standby claims an orphan without an expectation", nve: "n2", st: ownerGone(standbyN2(active)), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByOrphan}},
		// --standby-claims=trust: the standby registration alone justifies
		// the claim (operators who trust their NVEs).
		{name: "trust: standby claims: hot by default", nve: "n2", st: trust(with(standbyN2(active))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByStandby}},
		{name: "trust: expected standby claims", nve: "n2", st: trust(with(expect(standbyN2(active), "n2", t0.Add(time.Minute)))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByExpected}},
		{name: "trust: stranger claims a task another nve is standby for: refused", nve: "n3", st: trust(with(standbyN2(active))), want: want{Kind: claimRefuse}, errIs: []error{ErrUnjustified}, final: true},
		{name: "trust: standby claims warm", nve: "n2", mode: ila.MoveWarm, st: trust(with(standbyN2(active))), want: want{Kind: claimMove, Mode: ila.MoveWarm, By: MovedByStandby}},
		{name: "trust: standby claims cold", nve: "n2", mode: ila.MoveCold, st: trust(with(standbyN2(active))), want: want{Kind: claimMove, Mode: ila.MoveCold, By: MovedByStandby}},
		{name: "trust: standby claims a suspended task", nve: "n2", st: trust(with(standbyN2(suspendedHere))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByStandby}},
		{name: "trust: standby claims a task pending elsewhere", nve: "n2", st: trust(with(standbyN2(task(func(r *TaskRecord) { r.State, r.PendingNVE, r.PendingMode = ila.StateSuspended, "n3", ila.MoveCold })))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByStandby}},
		{name: "trust: standby claims a duplicate task: the move rules refuse it", nve: "n2", st: trust(with(standbyN2(duplicate))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByStandby}},
		{name: "previous nve in flight with a mode, as expected standby", nve: "n2", mode: ila.MoveHot, st: with(expect(standbyN2(movedHere), "n2", t0.Add(time.Minute))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByExpected}},
		{name: "trust: previous nve in flight, cold claim, as standby", nve: "n2", mode: ila.MoveCold, st: trust(with(standbyN2(movedHere))), want: want{Kind: claimMove, Mode: ila.MoveCold, By: MovedByStandby}},
		{name: "trust: previous nve after the in-flight time, as standby", nve: "n2", st: trust(with(standbyN2(movedLongAgo))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByStandby}},
		{name: "another nve while one is in flight, as expected standby", nve: "n2", st: with(expect(standbyN2(task(func(r *TaskRecord) {
			r.Previous = []ila.Previous{{Locator: 0xfd00000000000003, NVE: "n3", Until: t0.Add(9 * time.Second)}}
		})), "n2", t0.Add(time.Minute))), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByExpected}},
		// Justified: nothing hosts the task any more.
		{name: "the task's nve is dead or gone", nve: "n3", st: ownerGone(active), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByOrphan}},
		{name: "the task's lifetime expired", nve: "n3", st: with(expired), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByOrphan}},
		{name: "failover suspended the task (no standby)", nve: "n3", st: with(failedSuspended), want: want{Kind: claimMove, Mode: ila.MoveHot, By: MovedByOrphan}},
		{name: "a failover-suspended task's own nve refreshes", nve: "n1", st: with(failedSuspended), want: want{Kind: claimRefresh}},
		{name: "previous nve in flight without a mode: crossed re-registration", nve: "n2", st: with(movedHere), want: want{Kind: claimRefuse}, errIs: []error{ErrConflict}, final: true, msg: "does not move it back"},
		{name: "crossed re-registration of the standby", nve: "n2", st: trust(with(standbyN2(movedHere))), want: want{Kind: claimRefuse}, errIs: []error{ErrConflict}, final: true, msg: "does not move it back"},
		{name: "previous nve in flight, name taken", nve: "n2", st: claimState{Task: movedHere, MACFree: true}, want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, errTaken}, msg: "name used"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Registration{NVE: tc.nve, Tenant: "default", Name: "vm1", MAC: ila.MAC{2, 0, 0, 0, 0, 1}, Mode: tc.mode}
			got := decideClaim(r, tc.nve, id, tc.st, t0)
			if diff := cmp.Diff(tc.want, want{Kind: got.Kind, Mode: got.Mode, By: got.By}); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if tc.want.Kind != claimRefuse {
				if got.Err != nil {
					t.Errorf("err = %v, want none", got.Err)
				}
				return
			}
			if got.Err == nil {
				t.Fatal("refusal without an error")
			}
			for _, e := range tc.errIs {
				if !errors.Is(got.Err, e) {
					t.Errorf("err = %v, want it to wrap %v", got.Err, e)
				}
			}
			var fe finalError
			if errors.As(got.Err, &fe) != tc.final {
				t.Errorf("err = %v: final = %v, want %v", got.Err, !tc.final, tc.final)
			}
			if !strings.Contains(got.Err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to contain %q", got.Err, tc.msg)
			}
		})
	}
}
