package where_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/locator/where"
)

// fakeStore replays a listing (unit tests of the comparison only; the
// real store and agents are in cmd/ilactl's where test).
type fakeStore []ila.Event

func (f fakeStore) Watch(ctx context.Context, fn func(ila.Event)) error {
	for _, ev := range f {
		fn(ev)
	}
	<-ctx.Done()
	return nil
}

type fakeAgent struct {
	v   locator.DatapathView
	err error
}

func (f fakeAgent) Datapath(_ context.Context, sir netip.Addr) (locator.DatapathView, error) {
	return f.v, f.err
}

var (
	pfx  = ila.SIRPrefix(0x3333_0000_0000_0001)
	locA = ila.Locator(0x2001_0000_0000_000a)
	locB = ila.Locator(0x2001_0000_0000_000b)
)

func TestCheckStatuses(t *testing.T) {
	task := func(id ila.Identifier, name string, loc ila.Locator, state ila.State) *ila.Task {
		return &ila.Task{Domain: "prod", Tenant: "t1", Name: name, Identifier: id, SIR: pfx.Addr(id), Locator: loc, NVE: "a", State: state}
	}
	store := fakeStore{
		{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: "a"}, Revision: 2},
		{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: "b"}, Revision: 3},
		{Type: ila.EventTaskUpsert, Task: task(1, "moved", locB, ila.StateActive), Revision: 10},
		{Type: ila.EventTaskUpsert, Task: task(2, "susp", locA, ila.StateSuspended), Revision: 5},
		{Type: ila.EventSynced, Revision: 12},
	}
	entry := func(id ila.Identifier, loc ila.Locator) locator.DatapathEntry {
		return locator.DatapathEntry{Domain: "prod", SIR: pfx.Addr(id), Identifier: id, Locator: loc}
	}
	tests := []struct {
		name       string
		agents     map[string]fakeAgent
		q          where.Query
		want       map[string][]where.Status // task name -> per node (a, b)
		consistent bool
	}{
		{
			name: "equal",
			agents: map[string]fakeAgent{
				"a": {v: locator.DatapathView{Synced: true, Applied: 12, Entries: []locator.DatapathEntry{entry(1, locB)}}},
				"b": {v: locator.DatapathView{Synced: true, Applied: 12, Entries: []locator.DatapathEntry{entry(1, locB)}}},
			},
			want:       map[string][]where.Status{"moved": {"ok", "ok"}, "susp": {"ok", "ok"}},
			consistent: true,
		},
		{
			name: "behind, wrong, suspended still mapped, left over",
			agents: map[string]fakeAgent{
				"a": {v: locator.DatapathView{Synced: true, Applied: 9, Entries: []locator.DatapathEntry{entry(1, locA), entry(2, locA)}}},
				"b": {v: locator.DatapathView{Synced: true, Applied: 12, Entries: []locator.DatapathEntry{entry(1, locA), entry(7, locA)}}},
			},
			want:       map[string][]where.Status{"moved": {"behind", "wrong"}, "susp": {"wrong", "ok"}, "": {"ok", "wrong"}},
			consistent: false,
		},
		{
			name: "pull mode holds nothing; not synced; unreachable",
			agents: map[string]fakeAgent{
				"a": {v: locator.DatapathView{Mode: "pull", Synced: true, Applied: 12}},
				"b": {err: errors.New("connection refused")},
			},
			q:          where.Query{Name: "moved"},
			want:       map[string][]where.Status{"moved": {"ok", "unreachable"}},
			consistent: false,
		},
		{
			name: "relisting",
			agents: map[string]fakeAgent{
				"a": {v: locator.DatapathView{Synced: false, Applied: 12, Entries: []locator.DatapathEntry{entry(1, locA)}}},
				"b": {v: locator.DatapathView{Synced: true, Applied: 12, Entries: []locator.DatapathEntry{entry(1, locB)}}},
			},
			q:          where.Query{SIR: pfx.Addr(1)},
			want:       map[string][]where.Status{"moved": {"not-synced", "ok"}},
			consistent: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := where.NVEs(func(n ila.NVE) (where.Agent, error) { return tc.agents[n.Name], nil })
			r, err := where.Check(t.Context(), store, nodes, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]where.Status{}
			for _, tr := range r.Tasks {
				for _, h := range tr.Nodes {
					got[tr.Name] = append(got[tr.Name], h.Status)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if tc.name == "behind, wrong, suspended still mapped, left over" {
				// The newest record is at 10 (the synced revision 12 is not a record's).
				if r.Nodes[0].Lag != 1 || r.Nodes[1].Lag != 0 {
					t.Errorf("lags %d %d, want 1 0", r.Nodes[0].Lag, r.Nodes[1].Lag)
				}
			}
			if r.Consistent != tc.consistent || r.Revision != 12 {
				t.Errorf("consistent %v revision %d, want %v 12; problems %q", r.Consistent, r.Revision, tc.consistent, r.Problems())
			}
		})
	}
}

func TestConvergeGivesUpWithTheLastReport(t *testing.T) {
	store := fakeStore{{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: "a"}}, {Type: ila.EventSynced, Revision: 4}}
	nodes := where.NVEs(func(ila.NVE) (where.Agent, error) { return nil, errors.New("no socket") })
	ctx, cancel := context.WithTimeout(t.Context(), 100_000_000)
	defer cancel()
	r, err := where.Converge(ctx, store, nodes, where.Query{}, 10_000_000)
	if err == nil || r == nil || r.Consistent || len(r.Problems()) != 1 {
		t.Fatalf("converge: %+v, %v", r, err)
	}
}
