package regproto

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseKeys: any keys file parses to an error or to keys that format
// and parse back to the same keys.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte("1 mapsrv 000102030405060708090a0b0c0d0e0f\n2 nve-a 101112131415161718191a1b1c1d1e1f # comment\n"))
	f.Add([]byte("# only a comment\n\n"))
	f.Add([]byte("0 x 00"))
	f.Add([]byte("4294967295 \x7f zz\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseKeys(bytes.NewReader(b))
		if err != nil {
			return
		}
		k2, err := ParseKeys(bytes.NewReader(k.Format()))
		if err != nil {
			t.Fatalf("formatted keys do not parse: %v\n%s", err, k.Format())
		}
		if diff := cmp.Diff(k, k2); diff != "" {
			t.Errorf("keys after format and parse (-first +second):\n%s", diff)
		}
	})
}
