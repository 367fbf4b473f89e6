package mapsrv

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
)

// taskRecords are records as the mapping service writes them: each must
// take the fast path.
func taskRecords() []TaskRecord {
	at := time.Date(2026, 12, 6, 10, 29, 22, 403423428, time.UTC)
	base := TaskRecord{Task: ila.Task{
		Domain: "prod", Name: "t0", Tenant: "bench", Identifier: 0x2000000000010001,
		SIR: netip.MustParseAddr("2001:db8:1::2000:0:1:1"), Locator: 0x20010db810000000, NVE: "nve0",
		MAC: ila.MAC{2, 0, 0, 0, 0, 1}, Lifetime: ila.Duration(2 * time.Minute), Expiry: at.Add(time.Minute),
		Version: 1, State: ila.StateActive, Updated: at,
	}}
	moved := base
	moved.Version, moved.MovedBy, moved.NVE, moved.Locator = 301, "operator", "nve1", 0x20010db810000100
	moved.Previous = []ila.Previous{{Locator: 0x20010db810000000, NVE: "nve0", Until: at.Add(10 * time.Second)}, {Locator: 7, NVE: "nve9", Until: at}}
	moved.Moves = []time.Time{at, at.Add(time.Second), at.Add(2 * time.Second)}
	pending := base
	pending.State, pending.PendingNVE, pending.PendingMode, pending.PendingUntil = ila.StateSuspended, "nve3", ila.MoveWarm, at.Add(30*time.Second)
	standby := base
	standby.Standby = &Standby{NVE: "nve5", Locator: 0x20010db810000500, Since: at}
	standby.VNI, standby.IPv4 = 4096, netip.MustParseAddr("10.1.2.3")
	standby.Expect = &Expectation{NVE: "nve6", Since: at, Until: at.Add(time.Minute)}
	local := base
	local.Expiry, local.Updated = at.In(time.FixedZone("x", 3600)), at.Local()
	minimal := TaskRecord{Task: ila.Task{Domain: "d", Identifier: 1, Locator: 1, NVE: "a", State: ila.StateDuplicate}}
	return []TaskRecord{base, moved, pending, standby, local, minimal}
}

// decodeBoth decodes v with both decoders: fast reports whether the fast
// path took it.
func decodeBoth(v []byte) (f, s TaskRecord, fast bool, err error) {
	fast = decodeTaskFast(v, &f)
	err = decodeStrict(v, &s)
	return f, s, fast, err
}

func TestDecodeTaskFastTakesStoredRecords(t *testing.T) {
	for _, r := range taskRecords() {
		v, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range [][]byte{v, append(append([]byte(" \n"), v...), "\t\r\n"...)} {
			f, s, fast, err := decodeBoth(in)
			if err != nil {
				t.Fatalf("encoding/json refuses %s: %v", in, err)
			}
			if !fast {
				t.Errorf("the fast path refused a stored record: %s", in)
				continue
			}
			if !reflect.DeepEqual(f, s) {
				t.Errorf("%s: fast and encoding/json differ (-fast +json):\n%s", in, cmp.Diff(f, s))
			}
			// The same capacities too: code appending to a copy of a
			// record must see the same aliasing either way.
			if cap(f.Moves) != cap(s.Moves) || cap(f.Previous) != cap(s.Previous) {
				t.Errorf("%s: capacities moves %d, previous %d; encoding/json %d, %d", in, cap(f.Moves), cap(f.Previous), cap(s.Moves), cap(s.Previous))
			}
		}
	}
}

// TestDecodeTaskFastLeavesTheRest: what the fast path does not handle is
// left to encoding/json (which accepts some of it and refuses the rest,
// as before).
func TestDecodeTaskFastLeavesTheRest(t *testing.T) {
	const head = `{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","state":"active"`
	for _, v := range []string{
		head + `,"nve":"a\u0062"}`,     // an escape
		head + `,"nve":"é"}`,           // non-ASCII
		head + `,"NVE":"a"}`,           // a key matched without case
		head + `,"nve":"a","nve":"b"}`, // a repeated key
		head + `,"nve":"a","extra":1}`, // an unknown key
		head + `,"nve":null}`,
		head + `,"nve":"a","standby":null}`,
		head + `,"nve":"a","version":1.0}`,
		head + `,"nve":"a","version":1e3}`,
		head + `,"nve":"a","version":01}`,
		head + `,"nve":"a","version":99999999999999999999}`,
		head + `,"nve":"a","vni":-1}`,
		head + `,"nve":"a","locator":"zz"}`,
		head + `,"nve":"a","lifetime":"forever"}`,
		head + `,"nve":"a"}{}`,
		head + `,"nve":"a",}`,
		head + `,"nve":"a"`,
		`[]`, `null`, ``, `{`,
	} {
		f, _, fast, _ := decodeBoth([]byte(v))
		if fast {
			t.Errorf("the fast path took %s: %+v", v, f)
		}
	}
}

// FuzzDecodeTaskFast: whatever the fast path accepts, encoding/json
// accepts and decodes to the same record.
func FuzzDecodeTaskFast(f *testing.F) {
	for _, r := range taskRecords() {
		v, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add([]byte(`{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","nve":"a","state":"x","previous":[],"moves":[],"vni":0,"version":-0}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		f, s, fast, err := decodeBoth(v)
		if !fast {
			return
		}
		if err != nil {
			t.Fatalf("the fast path took %q, encoding/json refuses it: %v", v, err)
		}
		if !reflect.DeepEqual(f, s) {
			t.Fatalf("%q: fast and encoding/json differ (-fast +json):\n%s", v, cmp.Diff(f, s))
		}
	})
}

func BenchmarkDecodeTaskPaths(b *testing.B) {
	v, err := json.Marshal(taskRecords()[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var t TaskRecord
			if !decodeTaskFast(v, &t) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var t TaskRecord
			if err := decodeStrict(v, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDecodeTaskFastCoversEveryField: the records above set every field
// of TaskRecord, so that a field added to the record without a case in
// the fast path fails TestDecodeTaskFastTakesStoredRecords (instead of
// sending every record that has it to encoding/json unnoticed).
func TestDecodeTaskFastCoversEveryField(t *testing.T) {
	want := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "-" && f.IsExported() {
				want[name] = true
			}
		}
	}
	walk(reflect.TypeFor[TaskRecord]())
	got := map[string]bool{}
	for _, r := range taskRecords() {
		v, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil {
			t.Fatal(err)
		}
		for k := range m {
			got[k] = true
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields of TaskRecord set by the test records (-all +set):\n%s", diff)
	}
}
