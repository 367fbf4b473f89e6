package mapsrv_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestDecodeReplicaStatus: a replica status key decodes strictly; what
// does not is ErrMalformed.
func TestDecodeReplicaStatus(t *testing.T) {
	key := mapsrv.ReplicaStatusKey("r1")
	for _, tc := range []struct {
		name, val string
		want      *mapsrv.ReplicaStatus
	}{
		{"valid", `{"replica":"r1","alive":"2026-12-06T11:02:03.5Z","hold":"15s"}`,
			&mapsrv.ReplicaStatus{Replica: "r1", Alive: time.Date(2026, 12, 6, 11, 2, 3, 500_000_000, time.UTC), Hold: ila.Duration(15 * time.Second)}},
		{"other replica's name", `{"replica":"r2","alive":"2026-12-06T11:02:03Z","hold":"15s"}`, nil},
		{"no time", `{"replica":"r1","hold":"15s"}`, nil},
		{"negative hold", `{"replica":"r1","alive":"2026-12-06T11:02:03Z","hold":"-1s"}`, nil},
		{"unknown field", `{"replica":"r1","alive":"2026-12-06T11:02:03Z","hold":"15s","x":1}`, nil},
		{"trailing data", `{"replica":"r1","alive":"2026-12-06T11:02:03Z","hold":"15s"} {}`, nil},
		{"not json", `r1`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mapsrv.DecodeReplicaStatus(key, []byte(tc.val))
			if tc.want == nil {
				if !errors.Is(err, mapsrv.ErrMalformed) {
					t.Errorf("err = %v, want %v", err, mapsrv.ErrMalformed)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*tc.want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}
