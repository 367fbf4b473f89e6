package locator_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/locatortest"
)

// TestAppliedRevision: the applied revision follows the events while the
// watch is synced and stays at the last synced one during a relist.
func TestAppliedRevision(t *testing.T) {
	a := newAgent(t, locator.ModePush, locatortest.NewDatapath(), locatortest.NewSource())
	rev := func(typ ila.EventType, tk ila.Task, r int64) ila.Event {
		e := ev(typ, tk)
		e.Revision = r
		return e
	}
	steps := []struct {
		ev   ila.Event
		want int64
	}{
		{ila.Event{Type: ila.EventDomainUpsert, Domain: &dom, Revision: 3}, 0},
		{rev(ila.EventTaskUpsert, task(0x1001, "nve-b", locB), 9), 0},
		{ila.Event{Type: ila.EventSynced, Revision: 12}, 12},
		{rev(ila.EventTaskUpsert, task(0x1001, "nve-c", locC), 13), 13},
	}
	for i, s := range steps {
		a.Apply(s.ev)
		if got := a.AppliedRevision(); got != s.want {
			t.Fatalf("step %d (%v): applied %d, want %d", i, s.ev.Type, got, s.want)
		}
	}
	if st := a.Stats(); st.Applied != 13 || st.Revision != 13 {
		t.Errorf("stats: applied %d revision %d, want 13 13", st.Applied, st.Revision)
	}
}

// TestDatapathView: the view reads the datapath's table back (not the
// agent's idea of it), for all tasks or one, over the local API too.
func TestDatapathView(t *testing.T) {
	dp := locatortest.NewDatapath()
	a := newAgent(t, locator.ModePush, dp, locatortest.NewSource())
	a.Apply(ila.Event{Type: ila.EventDomainUpsert, Domain: &dom, Revision: 2})
	a.Apply(ila.Event{Type: ila.EventTaskUpsert, Task: ptr(task(0x1001, "nve-b", locB)), Revision: 4})
	a.Apply(ila.Event{Type: ila.EventTaskUpsert, Task: ptr(task(0x1002, "nve-c", locC)), Revision: 5})
	a.Apply(ila.Event{Type: ila.EventSynced, Revision: 6})
	// Someone rewrote the kernel's table behind the agent's back.
	if err := dp.UpsertMapping(mapping(0x1002, locA)); err != nil {
		t.Fatal(err)
	}
	v, err := a.DatapathView(netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	want := locator.DatapathView{Node: "nve-a", Role: "nve", Mode: "push", Synced: true, Applied: 6, Revision: 6, Entries: []locator.DatapathEntry{
		{Domain: "prod", SIR: sirP.Addr(0x1001), Identifier: 0x1001, Locator: locB},
		{Domain: "prod", SIR: sirP.Addr(0x1002), Identifier: 0x1002, Locator: locA},
	}}
	if diff := cmp.Diff(want, v, addrEq); diff != "" {
		t.Errorf("view (-want +got):\n%s", diff)
	}

	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	c, err := locator.NewClient(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	one, err := c.Datapath(t.Context(), sirP.Addr(0x1001))
	if err != nil {
		t.Fatal(err)
	}
	want.Entries = want.Entries[:1]
	if diff := cmp.Diff(want, one, addrEq); diff != "" {
		t.Errorf("one task over the API (-want +got):\n%s", diff)
	}
	none, err := c.Datapath(t.Context(), sirP.Addr(0x9999))
	if err != nil || len(none.Entries) != 0 {
		t.Errorf("unknown task: %+v, %v", none.Entries, err)
	}
	if err := c.Call(t.Context(), "GET", "/v1/datapath?sir=10.0.0.1", nil, nil); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("IPv4 sir: %v, want a 400", err)
	}
}

var addrEq = cmp.Comparer(func(x, y netip.Addr) bool { return x == y })

// TestMoveConvergence: a move applied while synced is observed from its
// commit stamp to the datapath write; creations, refreshes and what a
// relist brings are not moves.
func TestMoveConvergence(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	now := t0
	a := newAgent(t, locator.ModePush, locatortest.NewDatapath(), locatortest.NewSource(), func(c *locator.Config) { c.Now = func() time.Time { return now } })
	up := func(loc ila.Locator, updated time.Time) {
		tk := task(0x1001, "nve-b", loc)
		tk.Updated = updated
		a.Apply(ila.Event{Type: ila.EventTaskUpsert, Task: &tk})
	}
	a.Apply(ila.Event{Type: ila.EventDomainUpsert, Domain: &dom})
	up(locB, t0)
	up(locC, t0) // during the list: not counted
	a.Apply(ila.Event{Type: ila.EventSynced, Revision: 3})
	now = t0.Add(time.Second)
	up(locC, t0.Add(500*time.Millisecond)) // a refresh
	up(locB, now.Add(-3*time.Millisecond)) // a move, 3 ms after its commit
	now = now.Add(time.Second)
	up(locA, now.Add(-2*time.Second)) // another, 2 s
	h := a.MoveConvergence()
	if h.Count != 2 || h.Sum < 2.002 || h.Sum > 2.004 {
		t.Fatalf("histogram %+v", h)
	}
	at := func(bound float64) uint64 {
		for i, b := range locator.ConvergenceBuckets {
			if b == bound {
				return h.Counts[i]
			}
		}
		t.Fatalf("no bucket %v", bound)
		return 0
	}
	if at(0.0025) != 0 || at(0.005) != 1 || at(1) != 1 || at(2.5) != 2 {
		t.Errorf("buckets %v", h.Counts)
	}
}
