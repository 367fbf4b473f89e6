package mapsrv_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// TestAppliedRevisionReported: the revision an NVE reports in its
// heartbeats is kept in memory, written to its status key (only when it
// changed) outside the watched prefix, and read back.
func TestAppliedRevisionReported(t *testing.T) {
	f := liveFixture(t, nil)
	ctx := t.Context()
	f.register(t, "a", "web1", "2001:db8::1")
	from := netip.MustParseAddrPort("[::1]:9")
	api := ""
	hb := func(nve string, applied int64) {
		t.Helper()
		rep := f.svc.Handle(ctx, from, &regproto.Message{Type: regproto.TypeRequest, NVE: nve, Heartbeat: true, Applied: applied, API: api})
		if rep.Status != regproto.StatusAccepted {
			t.Fatalf("heartbeat %s: %+v", nve, rep)
		}
	}
	hb("a", 41)
	hb("b", 0) // an older ilad: reports nothing
	if got := f.svc.AppliedRevisions(); len(got) != 1 || got["a"].Applied != 41 || got["a"].Replica != "r1" {
		t.Fatalf("in memory: %+v", got)
	}
	if diff := cmp.Diff([]string{"b"}, f.svc.NotApplied(41)); diff != "" {
		t.Errorf("not applied 41 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b"}, f.svc.NotApplied(42)); diff != "" {
		t.Errorf("not applied 42 (-want +got):\n%s", diff)
	}
	if err := f.svc.WriteNVEStatus(ctx); err != nil {
		t.Fatal(err)
	}
	kvs, rev, err := f.store.List(ctx, mapsrv.NVEStatusPrefix)
	if err != nil || len(kvs) != 1 || kvs[0].Key != mapsrv.NVEStatusKey("a") {
		t.Fatalf("status keys: %+v, %v", kvs, err)
	}
	if strings.HasPrefix(mapsrv.NVEStatusKey("a"), mapsrv.Prefix) {
		t.Errorf("status key %s is under the watched prefix %s", mapsrv.NVEStatusKey("a"), mapsrv.Prefix)
	}
	// Unchanged: not written again.
	hb("a", 41)
	if err := f.svc.WriteNVEStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if _, rev2, _ := f.store.List(ctx, mapsrv.NVEStatusPrefix); rev2 != rev {
		t.Errorf("store revision %d -> %d: an unchanged revision was written again", rev, rev2)
	}
	hb("a", 57)
	if err := f.svc.WriteNVEStatus(ctx); err != nil {
		t.Fatal(err)
	}
	// The same revision with an API address: written again.
	api = "https://[fd99::1]:7483"
	hb("a", 57)
	if err := f.svc.WriteNVEStatus(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := f.svc.NVEStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []mapsrv.NVEStatus{{NVE: "a", Applied: 57, Reported: f.clk.Now().UTC(), Replica: "r1", API: api}}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
}

func TestDecodeNVEStatus(t *testing.T) {
	for name, tc := range map[string]struct {
		key, val string
		ok       bool
	}{
		"good":          {mapsrv.NVEStatusKey("a"), `{"nve":"a","applied_revision":3,"reported":"2026-12-06T08:00:00Z","replica":"r1"}`, true},
		"other nve":     {mapsrv.NVEStatusKey("b"), `{"nve":"a","applied_revision":3,"reported":"2026-12-06T08:00:00Z","replica":"r1"}`, false},
		"negative":      {mapsrv.NVEStatusKey("a"), `{"nve":"a","applied_revision":-3}`, false},
		"unknown field": {mapsrv.NVEStatusKey("a"), `{"nve":"a","applied_revision":3,"x":1}`, false},
		"two objects":   {mapsrv.NVEStatusKey("a"), `{"nve":"a"}{"nve":"a"}`, false},
		"not json":      {mapsrv.NVEStatusKey("a"), `applied 3`, false},
	} {
		_, err := mapsrv.DecodeNVEStatus(tc.key, []byte(tc.val))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok %v", name, err, tc.ok)
		}
	}
}
