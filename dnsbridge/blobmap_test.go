package dnsbridge

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBlobMap checks the map against a Go map through random sets,
// deletes and counters, with a real hash and with one that collides all
// the time (long probe sequences, deletes shifting entries back), across
// compactions and growths of the index.
func TestBlobMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(string) uint64
	}{
		{"maphash", nil},
		{"colliding", func(s string) uint64 { return uint64(len(s) % 3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newBlobMap()
			if tc.hash != nil {
				m.hash = tc.hash
			}
			want := map[string]string{}
			counts := map[string]int{}
			rnd := rand.New(rand.NewPCG(1, 2))
			appended := 0
			kept := map[string][]byte{} // values read earlier must not change
			for i := range 60_000 {
				k := fmt.Sprintf("k%d", rnd.IntN(300))
				switch rnd.IntN(5) {
				case 0, 1:
					v := fmt.Sprintf("v%d-%s", i, make([]byte, rnd.IntN(200)))
					appended += entHdr + len(k) + len(v)
					m.set(k, []byte(v))
					want[k] = v
				case 2:
					_, had := want[k]
					if got := m.del(k); got != had {
						t.Fatalf("del(%s) = %v, want %v", k, got, had)
					}
					delete(want, k)
				case 3:
					c := "c" + k
					by := rnd.IntN(3) - 1
					m.addCount(c, by)
					if counts[c] += by; counts[c] <= 0 {
						delete(counts, c)
					}
				default:
					v, ok := m.get(k)
					w, wok := want[k]
					if ok != wok || string(v) != w {
						t.Fatalf("get(%s) = %q, %v; want %q, %v", k, v, ok, w, wok)
					}
					if ok {
						kept[string(v)] = v
					}
				}
			}
			got := map[string]string{}
			gotCounts := map[string]int{}
			m.each(func(k, v []byte) {
				if k[0] == 'c' {
					gotCounts[string(k)] = m.count(string(k))
					return
				}
				got[string(k)] = string(v)
			})
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(counts, gotCounts); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if m.len() != len(want)+len(counts) {
				t.Errorf("len = %d, want %d", m.len(), len(want)+len(counts))
			}
			for s, v := range kept {
				if string(v) != s {
					t.Fatalf("a value read earlier changed: %q -> %q", s, v)
				}
			}
			if len(m.data) >= appended || len(m.data) > 2*m.live+compactMin {
				t.Errorf("%d bytes of data for %d live, %d appended: no compaction", len(m.data), m.live, appended)
			}
		})
	}
}
