package mapsrv

import (
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// TestDueSetSuspension: the event-fed sweeper schedules a suspended task
// at the suspension's start + timeout, and a refresh (a later Updated)
// does not push it back.
func TestDueSetSuspension(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &dueSet{suspend: 30 * time.Second}
	tk := ila.Task{Domain: "prod", Identifier: 1, State: ila.StateSuspended, Updated: t0}
	d.event(ila.Event{Type: ila.EventTaskUpsert, Task: &tk})
	refreshed := tk
	refreshed.Updated = t0.Add(20 * time.Second)
	d.event(ila.Event{Type: ila.EventTaskUpsert, Task: &refreshed})
	if got := d.due(t0.Add(30*time.Second - time.Nanosecond)); len(got) != 0 {
		t.Errorf("due before the timeout: %v", got)
	}
	if got := d.due(t0.Add(30 * time.Second)); len(got) != 1 || got[0].key != TaskKey("prod", 1) {
		t.Errorf("due at the timeout: %v, want the task", got)
	}
	active := tk
	active.State = ila.StateActive
	d.event(ila.Event{Type: ila.EventTaskUpsert, Task: &active})
	if got := d.due(t0.Add(time.Hour)); len(got) != 0 {
		t.Errorf("due once active again: %v, want nothing", got)
	}
}
