package etcdstore_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
)

func TestSeqStore(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	s := etcdstore.SeqStore{KV: cli}
	ctx := t.Context()
	for _, c := range []struct {
		key uint32
		v   uint64
	}{{2, 100}, {2, 50}, {3, 1<<64 - 1}, {2, 300}} {
		if err := s.SaveSeqCeiling(ctx, c.key, c.v); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LoadSeqCeilings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[uint32]uint64{2: 300, 3: 1<<64 - 1}, got); diff != "" {
		t.Errorf("ceilings (-want +got):\n%s", diff)
	}
	// Readable JSON with etcdctl.
	r, err := cli.Get(ctx, "/ila/v1/replay/3")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("get: %v %v", r, err)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Kvs[0].Value, &m); err != nil || m["key_id"] != 3.0 || m["ceiling"] != "18446744073709551615" {
		t.Errorf("stored %s: %v", r.Kvs[0].Value, err)
	}
	// A value written by hand that does not decode stops the load (it
	// guards against replays), and a save replaces it.
	if _, err := cli.Put(ctx, "/ila/v1/replay/4", `{"key_id":5,"ceiling":"1"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadSeqCeilings(ctx); !errors.Is(err, mapsrv.ErrMalformed) {
		t.Errorf("load with a malformed value: %v", err)
	}
	if err := s.SaveSeqCeiling(ctx, 4, 7); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadSeqCeilings(ctx); err != nil || got[4] != 7 {
		t.Errorf("after the save: %v, %v", got, err)
	}
}
