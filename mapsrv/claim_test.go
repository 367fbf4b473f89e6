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
	free := claimState{NameFree: true, MACFree: true}
	with := func(rec *TaskRecord) claimState { st := free; st.Task = rec; return st }

	type want struct {
		Kind claimKind
		Mode ila.MoveMode
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
		{name: "destination completes a pending move", nve: "n2", st: with(suspendedAway), want: want{Kind: claimComplete}},
		{name: "destination completes, mode given", nve: "n2", mode: ila.MoveHot, st: with(suspendedAway), want: want{Kind: claimComplete}},
		{name: "destination of a duplicate task", nve: "n2", st: with(duplicatePending), want: want{Kind: claimRefuse}, errIs: []error{ErrDuplicate}},
		{name: "third nve claims a task pending elsewhere", nve: "n3", st: with(suspendedAway), want: want{Kind: claimMove, Mode: ila.MoveHot}},
		{name: "other nve claims: hot by default", nve: "n2", st: with(active), want: want{Kind: claimMove, Mode: ila.MoveHot}},
		{name: "other nve claims warm", nve: "n2", mode: ila.MoveWarm, st: with(active), want: want{Kind: claimMove, Mode: ila.MoveWarm}},
		{name: "other nve claims cold", nve: "n2", mode: ila.MoveCold, st: with(active), want: want{Kind: claimMove, Mode: ila.MoveCold}},
		{name: "other nve claims a suspended task", nve: "n2", st: with(suspendedHere), want: want{Kind: claimMove, Mode: ila.MoveHot}},
		{name: "other nve claims a duplicate task: the move rules refuse it", nve: "n2", st: with(duplicate), want: want{Kind: claimMove, Mode: ila.MoveHot}},
		{name: "previous nve in flight without a mode: crossed re-registration", nve: "n2", st: with(movedHere), want: want{Kind: claimRefuse}, errIs: []error{ErrConflict}, final: true, msg: "does not move it back"},
		{name: "previous nve in flight with a mode: a claim", nve: "n2", mode: ila.MoveHot, st: with(movedHere), want: want{Kind: claimMove, Mode: ila.MoveHot}},
		{name: "previous nve in flight, cold claim", nve: "n2", mode: ila.MoveCold, st: with(movedHere), want: want{Kind: claimMove, Mode: ila.MoveCold}},
		{name: "previous nve after the in-flight time", nve: "n2", st: with(movedLongAgo), want: want{Kind: claimMove, Mode: ila.MoveHot}},
		{name: "another nve while one is in flight", nve: "n3", st: with(movedHere), want: want{Kind: claimMove, Mode: ila.MoveHot}},
		{name: "previous nve in flight, name taken", nve: "n2", st: claimState{Task: movedHere, MACFree: true}, want: want{Kind: claimRefuse}, errIs: []error{ErrConflict, errTaken}, msg: "name used"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Registration{NVE: tc.nve, Tenant: "default", Name: "vm1", MAC: ila.MAC{2, 0, 0, 0, 0, 1}, Mode: tc.mode}
			got := decideClaim(r, tc.nve, id, tc.st, t0)
			if diff := cmp.Diff(tc.want, want{Kind: got.Kind, Mode: got.Mode}); diff != "" {
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
