package mapsrv_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

func TestDecodeTask(t *testing.T) {
	key := mapsrv.TaskKey("prod", 0x0001000000000001)
	good := `{"domain":"prod","name":"vm1","tenant":"t1","identifier":"1:0:0:1","sir":"2001:db8::1:0:0:1","locator":"fd00:0:0:1","nve":"a","lifetime":"1m0s","version":1,"state":"active"}`
	tests := []struct {
		name, key, value string
		wantErr          bool
	}{
		{"good", key, good, false},
		{"not json", key, `{`, true},
		{"trailing data", key, good + `{}`, true},
		{"wrong key", mapsrv.TaskKey("prod", 2), good, true},
		{"bad locator", key, `{"domain":"prod","identifier":"1:0:0:1","locator":"zz","nve":"a","state":"active"}`, true},
		{"no nve", key, `{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","state":"active"}`, true},
		{"bad state", key, `{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","nve":"a","state":"asleep"}`, true},
		{"warm move pending", key, `{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","nve":"a","state":"suspended","pending_nve":"b","pending_mode":"warm"}`, false},
		{"bad pending mode", key, `{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","nve":"a","state":"suspended","pending_nve":"b","pending_mode":"tepid"}`, true},
		{"bad lifetime", key, `{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","nve":"a","state":"active","lifetime":"forever"}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for name, decode := range map[string]func(string, []byte) (mapsrv.TaskRecord, error){"DecodeTask": mapsrv.DecodeTask, "DecodeTaskFast": mapsrv.DecodeTaskFast} {
				_, err := decode(tc.key, []byte(tc.value))
				if (err != nil) != tc.wantErr {
					t.Fatalf("%s = %v, want error %v", name, err, tc.wantErr)
				}
				if err != nil && !errors.Is(err, mapsrv.ErrMalformed) {
					t.Errorf("%s: error %v does not match ErrMalformed", name, err)
				}
			}
		})
	}
}

// FuzzDecode feeds arbitrary values to every decoder: none may panic, and
// every value a decoder accepts must re-encode and decode to the same record.
func FuzzDecode(f *testing.F) {
	f.Add(`{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","nve":"a","state":"active","previous":[{"locator":"1:2:3:4","nve":"b","until":"2026-01-01T00:00:00Z"}],"moves":["2026-01-01T00:00:00Z"]}`)
	f.Add(`{"name":"a","locators":["fd00:0:0:1"],"underlay":"fd99::1","reg_addr":"[::1]:7000","locator_domains":{"fd00:0:0:1":"prod"}}`)
	f.Add(`{"name":"prod","sir_prefix":"2001:db8::/64","csum":"neutral-map","format":"typed"}`)
	f.Add(`{"domain":"prod","identifier":"1:0:0:1"}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, v string) {
		if rec, err := mapsrv.DecodeTask(mapsrv.TaskKey("prod", 0x0001000000000001), []byte(v)); err == nil {
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatalf("re-encode task: %v", err)
			}
			if _, err := mapsrv.DecodeTask(mapsrv.TaskKey("prod", 0x0001000000000001), b); err != nil {
				t.Fatalf("decode re-encoded task %s: %v", b, err)
			}
		}
		if n, err := mapsrv.DecodeNVE(mapsrv.NVEKey("a"), []byte(v)); err == nil {
			b, err := json.Marshal(n)
			if err != nil {
				t.Fatalf("re-encode nve: %v", err)
			}
			if _, err := mapsrv.DecodeNVE(mapsrv.NVEKey("a"), b); err != nil {
				t.Fatalf("decode re-encoded nve %s: %v", b, err)
			}
		}
		if d, err := mapsrv.DecodeDomain(mapsrv.DomainKey("prod"), []byte(v)); err == nil {
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatalf("re-encode domain: %v", err)
			}
			d2, err := mapsrv.DecodeDomain(mapsrv.DomainKey("prod"), b)
			if err != nil || d2 != d {
				t.Fatalf("decode re-encoded domain %s: %v, %+v", b, err, d2)
			}
		}
		_, _ = mapsrv.DecodeIndex(mapsrv.NameKey("t", "n"), []byte(v))
		_ = ila.Identifier(0)
	})
}

// TestPendingModeJSON: the move mode of a pending move is stored as the
// strings it always was.
func TestPendingModeJSON(t *testing.T) {
	key := mapsrv.TaskKey("prod", 0x0001000000000001)
	for _, m := range []ila.MoveMode{ila.MoveHot, ila.MoveWarm, ila.MoveCold} {
		v := `{"domain":"prod","identifier":"1:0:0:1","locator":"fd00:0:0:1","nve":"a","state":"suspended","pending_nve":"b","pending_mode":"` + m.String() + `"}`
		rec, err := mapsrv.DecodeTask(key, []byte(v))
		if err != nil || rec.PendingMode != m {
			t.Fatalf("DecodeTask(%s) = %v, %v; want pending mode %v", v, rec.PendingMode, err, m)
		}
		b, err := json.Marshal(rec)
		if err != nil || !strings.Contains(string(b), `"pending_mode":"`+m.String()+`"`) {
			t.Errorf("Marshal = %s, %v; want pending_mode %q", b, err, m)
		}
	}
	b, err := json.Marshal(mapsrv.TaskRecord{})
	if err != nil || strings.Contains(string(b), "pending_mode") {
		t.Errorf("Marshal without a pending move = %s, %v", b, err)
	}
}

func TestTaskKeyHex(t *testing.T) {
	for _, id := range []ila.Identifier{0, 1, 0x0001000000000005, 0xffffffffffffffff, 0x8000000000000000} {
		if got, want := mapsrv.TaskKey("d", id), mapsrv.MapPrefix+"d/"+id.Hex(); got != want {
			t.Errorf("TaskKey(%s) = %q, want %q", id, got, want)
		}
	}
}

// BenchmarkDecodeTask decodes a task record the size a moved task has in
// the store (every node agent decodes each change once).
func BenchmarkDecodeTask(b *testing.B) {
	v := []byte(`{"domain":"prod","name":"mover","tenant":"t","identifier":"0:0:0:1001","sir":"fd00:ace::1001","locator":"2001:db8:0:b00","nve":"nve1","lifetime":"0s","version":301,"state":"active","previous":[{"locator":"2001:db8:0:a00","nve":"nve0","until":"2026-12-04T22:48:10.123456789Z"}],"updated":"2026-12-04T22:48:00.123456789Z","moves":["2026-12-04T22:47:59.923456789Z","2026-12-04T22:47:59.973456789Z","2026-12-04T22:48:00.023456789Z","2026-12-04T22:48:00.073456789Z","2026-12-04T22:48:00.123456789Z"]}`)
	key := mapsrv.TaskKey("prod", 0x1001)
	if _, err := mapsrv.DecodeTask(key, v); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mapsrv.DecodeTask(key, v); err != nil {
			b.Fatal(err)
		}
	}
}
