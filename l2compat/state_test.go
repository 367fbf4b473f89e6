package l2compat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ilamesh/ilamesh/ila"
)

var (
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vtep1 = netip.MustParseAddr("fd00:1::1")
	vtep2 = netip.MustParseAddr("fd00:2::1")
	macA  = ila.MAC{2, 0, 0, 0, 1, 1}
	macB  = ila.MAC{2, 0, 0, 0, 1, 2}
)

func mustVN(t *testing.T, vni uint32, ip string) ila.Identifier {
	t.Helper()
	id, err := ila.NewVNIPv4(vni, netip.MustParseAddr(ip))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTaskEntry(t *testing.T) {
	id := mustVN(t, 100, "10.0.0.1")
	luid, _ := ila.NewLUID(7)
	big := mustVN(t, MaxVNI+1, "10.0.0.1")
	tests := []struct {
		name string
		task *ila.Task
		want entry
		ok   bool
	}{
		{"vn-ipv4 identifier", &ila.Task{Identifier: id, NVE: "n1", MAC: macA}, entry{ID: id, VNI: 100, IP: netip.MustParseAddr("10.0.0.1"), MAC: macA, NVE: "n1"}, true},
		{"vni and ipv4 fields", &ila.Task{Identifier: luid, NVE: "n1", VNI: 100, IPv4: netip.MustParseAddr("10.0.0.1")}, entry{ID: id, VNI: 100, IP: netip.MustParseAddr("10.0.0.1"), NVE: "n1"}, true},
		{"ipv6 task", &ila.Task{Identifier: luid, NVE: "n1"}, entry{}, false},
		{"vnid beyond vxlan", &ila.Task{Identifier: big}, entry{}, false},
		{"nil", nil, entry{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := taskEntry(tc.task)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("entry (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideFDB(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.2")
	remote := entry{VNI: 100, IP: ip, MAC: macB, NVE: "n2"}
	moved := entry{VNI: 100, IP: ip, MAC: macB, NVE: "n2", Previous: []ila.Previous{{NVE: "n1", Until: t0.Add(time.Second)}}}
	tests := []struct {
		name    string
		e       entry
		vtep    netip.Addr
		active  bool
		port    string
		claimed bool
		now     time.Time
		want    fdbEntry
		ok      bool
	}{
		{"remote task, tenant here", remote, vtep2, true, "", false, t0, fdbEntry{Remote: vtep2}, true},
		{"remote task, tenant not here", remote, vtep2, false, "", false, t0, fdbEntry{}, false},
		{"remote task, unknown VTEP", remote, netip.Addr{}, true, "", false, t0, fdbEntry{}, false},
		{"local task, port seen", entry{VNI: 100, MAC: macA, NVE: "n1"}, vtep1, true, "ta1", false, t0, fdbEntry{Port: "ta1"}, true},
		{"local task, port not seen: learn", entry{VNI: 100, MAC: macA, NVE: "n1"}, vtep1, true, "", false, t0, fdbEntry{}, false},
		{"no MAC", entry{VNI: 100, NVE: "n2"}, vtep2, true, "", false, t0, fdbEntry{}, false},
		{"moved away, in flight, no ports left", moved, vtep2, false, "", false, t0, fdbEntry{Remote: vtep2, InFlight: true}, true},
		{"moved away, in flight, ports left", moved, vtep2, true, "", false, t0, fdbEntry{Remote: vtep2, InFlight: true}, true},
		{"moved away, timer over, no ports", moved, vtep2, false, "", false, t0.Add(time.Second), fdbEntry{}, false},
		{"moved away, timer over, ports left", moved, vtep2, true, "", false, t0.Add(2 * time.Second), fdbEntry{Remote: vtep2}, true},
		{"claimed here before the commit", remote, vtep2, true, "ta2", true, t0, fdbEntry{Port: "ta2"}, true},
		{"claim without a port", remote, vtep2, true, "", true, t0, fdbEntry{Remote: vtep2}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := decideFDB("n1", tc.e, tc.vtep, tc.active, tc.port, tc.claimed, tc.now)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("fdb entry (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDesiredFromEvents feeds task and NVE records through the directory
// and checks the whole desired state of NVE n1.
func TestDesiredFromEvents(t *testing.T) {
	addr := netip.MustParseAddr
	a1 := &ila.Task{Identifier: mustVN(t, 100, "10.0.0.1"), NVE: "n1", MAC: macA}
	a2 := &ila.Task{Identifier: mustVN(t, 100, "10.0.0.2"), NVE: "n2", MAC: macB}
	b2 := &ila.Task{Identifier: mustVN(t, 200, "10.0.0.2"), NVE: "n2", MAC: ila.MAC{2, 0, 0, 0, 2, 2}}
	c3 := &ila.Task{Identifier: mustVN(t, 300, "10.0.0.3"), NVE: "n2", MAC: ila.MAC{2, 0, 0, 0, 3, 3},
		Previous: []ila.Previous{{NVE: "n1", Until: t0.Add(time.Second)}}}
	d := newDirectory()
	d.nves["n1"], d.nves["n2"] = vtep1, vtep2
	for _, tk := range []*ila.Task{a1, a2, b2, c3} {
		e, ok := taskEntry(tk)
		if !ok {
			t.Fatalf("task %v not an IPv4 task", tk.Identifier)
		}
		d.upsert(e)
	}
	// n1 has ports in tenant 100 only; a1 was seen on ta1.
	got := d.want("n1", map[uint32]bool{100: true}, map[fdbKey]string{{100, macA}: "ta1"}, nil, t0)
	want := desired{
		FDB: map[fdbKey]fdbEntry{
			{100, macA}:                      {Port: "ta1"},
			{100, macB}:                      {Remote: vtep2},
			{300, ila.MAC{2, 0, 0, 0, 3, 3}}: {Remote: vtep2, InFlight: true},
		},
		Neigh: map[neighKey]ila.MAC{{100, addr("10.0.0.2")}: macB},
		Next:  t0.Add(time.Second),
	}
	opts := cmp.Options{cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("desired (-want +got):\n%s", diff)
	}
	// The task moves to n1: its entry becomes local once seen, the in-flight
	// entry of tenant 300 ends with its timer, b2 leaves.
	a2moved := *a2
	a2moved.NVE = "n1"
	e, _ := taskEntry(&a2moved)
	d.upsert(e)
	eb, _ := taskEntry(b2)
	d.remove(eb.ID)
	got = d.want("n1", map[uint32]bool{100: true}, map[fdbKey]string{{100, macA}: "ta1", {100, macB}: "ta2"}, nil, t0.Add(time.Second))
	want = desired{
		FDB:   map[fdbKey]fdbEntry{{100, macA}: {Port: "ta1"}, {100, macB}: {Port: "ta2"}},
		Neigh: map[neighKey]ila.MAC{},
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("desired after move (-want +got):\n%s", diff)
	}
	if _, ok := d.lookupIP(200, addr("10.0.0.2")); ok {
		t.Error("removed task still found by address")
	}
	if got, ok := d.lookupIP(100, addr("10.0.0.2")); !ok || got.MAC != macB {
		t.Errorf("lookup 10.0.0.2 in 100 = %v, %v", got, ok)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{NVE: "n1", Underlay: vtep1}, true},
		{"no name", Config{Underlay: vtep1}, false},
		{"no underlay", Config{NVE: "n1"}, false},
		{"multicast underlay", Config{NVE: "n1", Underlay: netip.MustParseAddr("ff02::1")}, false},
		{"bad mtu", Config{NVE: "n1", Underlay: vtep1, MTU: 100}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.validate(); (err == nil) != tc.ok {
				t.Errorf("validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestDirectorySharedMAC: a VM with two addresses of one tenant behind one
// MAC keeps its FDB entry and RARP answer while one address goes.
func TestDirectorySharedMAC(t *testing.T) {
	d := newDirectory()
	d.nves["n2"] = vtep2
	for _, ip := range []string{"10.0.0.7", "10.0.0.5"} {
		e, _ := taskEntry(&ila.Task{Identifier: mustVN(t, 100, ip), NVE: "n2", MAC: macB})
		d.upsert(e)
	}
	active := map[uint32]bool{100: true}
	got := d.want("n1", active, nil, nil, t0)
	if diff := cmp.Diff(map[fdbKey]fdbEntry{{100, macB}: {Remote: vtep2}}, got.FDB, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("fdb (-want +got):\n%s", diff)
	}
	if e, ok := d.lookupMAC(100, macB); !ok || e.IP != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("rarp lookup = %v, %v; want the lowest address 10.0.0.5", e.IP, ok)
	}
	d.remove(mustVN(t, 100, "10.0.0.5"))
	got = d.want("n1", active, nil, nil, t0)
	if _, ok := got.FDB[fdbKey{100, macB}]; !ok {
		t.Error("fdb entry gone although 10.0.0.7 still uses the MAC")
	}
	if e, ok := d.lookupMAC(100, macB); !ok || e.IP != netip.MustParseAddr("10.0.0.7") {
		t.Errorf("rarp lookup after removal = %v, %v; want 10.0.0.7", e.IP, ok)
	}
	d.remove(mustVN(t, 100, "10.0.0.7"))
	if _, ok := d.lookupMAC(100, macB); ok || len(d.byMAC) != 0 {
		t.Errorf("index not empty after removing every task: %v", d.byMAC)
	}
}
