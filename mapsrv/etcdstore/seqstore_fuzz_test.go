package etcdstore

import (
	"errors"
	"testing"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// FuzzDecodeCeiling: a stored sequence ceiling decodes, or fails with
// mapsrv.ErrMalformed; a decoded one names the key id of its key.
func FuzzDecodeCeiling(f *testing.F) {
	f.Add("/ila/v1/replay/2", []byte(`{"key_id":2,"ceiling":"1796535013793048733","updated":"2026-12-06T05:30:15Z"}`))
	f.Add("/ila/v1/replay/2", []byte(`{"key_id":3,"ceiling":"1"}`))
	f.Add("/ila/v1/replay/x", []byte(`{"ceiling":"-1"}`))
	f.Add("/ila/v1/replay/1", []byte(`[]`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		k, _, err := decodeCeiling(key, value)
		if err != nil {
			if !errors.Is(err, mapsrv.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if ReplayKey(k) != key {
			t.Errorf("decoded key id %d from key %q", k, key)
		}
	})
}
