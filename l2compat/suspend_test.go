package l2compat

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"

	"github.com/ilamesh/ilamesh/ila"
)

// TestSuspendedTask: a task suspended by a cold move has no FDB entry and
// no ARP proxy entry on any NVE (the old one included), and ARP requests
// for it get no answer; its arrival (a claim on a port) still installs
// local delivery at the destination.
func TestSuspendedTask(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.2")
	tk := &ila.Task{Identifier: mustVN(t, 100, "10.0.0.2"), NVE: "n2", MAC: macB, State: ila.StateSuspended}
	e, ok := taskEntry(tk)
	if !ok || !e.Suspended {
		t.Fatalf("taskEntry = %+v, %v; want a suspended entry", e, ok)
	}
	for _, tc := range []struct {
		name, self, port string
		claimed          bool
		want             fdbEntry
		ok               bool
	}{
		{"remote NVE", "n1", "", false, fdbEntry{}, false},
		{"its own (old) NVE, port seen", "n2", "tb2", false, fdbEntry{}, false},
		{"destination, claimed on a port", "n3", "tb3", true, fdbEntry{Port: "tb3"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := decideFDB(tc.self, e, vtep2, true, tc.port, tc.claimed, t0)
			if ok != tc.ok || got != tc.want {
				t.Errorf("decideFDB = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if mac, ok := decideNeigh("n1", e, true); ok {
		t.Errorf("decideNeigh = %v, true; want no proxy entry for a suspended task", mac)
	}
	d := newDirectory()
	d.upsert(e)
	d.nves["n2"] = vtep2
	w := d.want("n1", map[uint32]bool{100: true}, nil, nil, t0)
	if len(w.FDB) != 0 || len(w.Neigh) != 0 {
		t.Errorf("desired state of n1: %+v, want nothing for the suspended task", w)
	}
	port := portInfo{Name: "ta1", Index: 7, VNI: 100, MAC: ila.MAC{0xaa, 0, 0, 0, 0, 1}}
	req := arpFrame(arp.OperationRequest, etherTypeARP, macA, netip.MustParseAddr("10.0.0.1"), ila.MAC{}, ip, broadcast)
	if diff := cmp.Diff(verdict{Act: actARPIgnore, Sender: macA}, handleFrame(d, "n1", port, req), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("ARP request for the suspended address (-want +got):\n%s", diff)
	}
	// Active again: everything comes back.
	tk.State = ila.StateActive
	e, _ = taskEntry(tk)
	d.upsert(e)
	if w := d.want("n1", map[uint32]bool{100: true}, nil, nil, t0); len(w.FDB) != 1 || len(w.Neigh) != 1 {
		t.Errorf("desired state of n1 once active: %+v, want the FDB and proxy entries", w)
	}
}
