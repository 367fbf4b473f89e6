package locator_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// TestDomainClash: a domain record that reuses prod's SIR prefix (written
// into the store by hand; mapsrv refuses it) neither strands prod's tasks
// nor breaks them when it is deleted; it is installed once prod is gone.
func TestDomainClash(t *testing.T) {
	evil := ila.Domain{Name: "evil", SIR: sirP, Csum: ila.CsumNoAction}
	evilTask := func(id ila.Identifier) ila.Task {
		tk := task(id, "nve-c", locC)
		tk.Domain = "evil"
		return tk
	}
	dp := locatortest.NewDatapath()
	a := newAgent(t, locator.ModePush, dp, locatortest.NewSource())
	step := func(what string, want map[locatortest.Key]ila.Mapping, evs ...ila.Event) {
		t.Helper()
		for _, e := range evs {
			a.Apply(e)
		}
		if diff := cmp.Diff(want, dp.Table()); diff != "" {
			t.Errorf("%s: datapath (-want +got):\n%s", what, diff)
		}
	}
	step("prod and its tasks", table(mapping(0x1001, locB)),
		ila.Event{Type: ila.EventDomainUpsert, Domain: &dom}, ev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB)), ila.Event{Type: ila.EventSynced})
	step("the clashing domain and a task of it", table(mapping(0x1001, locB)),
		ila.Event{Type: ila.EventDomainUpsert, Domain: &evil}, ev(ila.EventTaskUpsert, evilTask(0x1002)))
	step("prod goes on", table(mapping(0x1001, locB), mapping(0x1003, locB)),
		ev(ila.EventTaskUpsert, task(0x1003, "nve-b", locB)))
	step("a relist keeps the same owner", table(mapping(0x1001, locB), mapping(0x1003, locB)),
		ila.Event{Type: ila.EventDomainUpsert, Domain: &evil}, ila.Event{Type: ila.EventDomainUpsert, Domain: &dom},
		ev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB)), ev(ila.EventTaskUpsert, task(0x1003, "nve-b", locB)), ev(ila.EventTaskUpsert, evilTask(0x1002)),
		ila.Event{Type: ila.EventSynced})
	step("the clash removed", table(mapping(0x1001, locB), mapping(0x1003, locB), mapping(0x1004, locB)),
		ila.Event{Type: ila.EventTaskDelete, Task: ptr(evilTask(0x1002))}, ila.Event{Type: ila.EventDomainDelete, Domain: &evil},
		ev(ila.EventTaskUpsert, task(0x1004, "nve-b", locB)))
	if st := a.Stats(); st.DomainClashes != 2 {
		t.Errorf("DomainClashes = %d, want 2", st.DomainClashes)
	}

	// The other way: the clashing domain is installed when prod goes.
	step("clash again", table(mapping(0x1001, locB), mapping(0x1003, locB), mapping(0x1004, locB)),
		ila.Event{Type: ila.EventDomainUpsert, Domain: &evil}, ev(ila.EventTaskUpsert, evilTask(0x1002)))
	evilMapping := ila.Mapping{SIR: sirP, Identifier: 0x1002, Locator: locC, Csum: ila.CsumNoAction}
	step("prod deleted: evil takes the prefix", table(evilMapping),
		ila.Event{Type: ila.EventDomainDelete, Domain: &dom})

	// A domain that changes its prefix to a taken one keeps its last good
	// version.
	other := ila.Domain{Name: "other", SIR: mustSIR("3333:0:0:2::/64"), Csum: ila.CsumNeutralMap}
	otherTask := task(0x2001, "nve-b", locB)
	otherTask.Domain, otherTask.SIR = "other", other.SIR.Addr(0x2001)
	otherMapping := ila.Mapping{SIR: other.SIR, Identifier: 0x2001, Locator: locB, Csum: ila.CsumNeutralMap}
	moved := other
	moved.SIR = sirP
	step("other keeps its prefix", table(evilMapping, otherMapping),
		ila.Event{Type: ila.EventDomainUpsert, Domain: &other}, ev(ila.EventTaskUpsert, otherTask),
		ila.Event{Type: ila.EventDomainUpsert, Domain: &moved})
}

func ptr[T any](v T) *T { return &v }
