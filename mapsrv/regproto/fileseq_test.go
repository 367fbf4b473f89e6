package regproto

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFileSeqStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq.json")
	s := &FileSeqStore{Path: path}
	ctx := t.Context()
	if m, err := s.LoadSeqCeilings(ctx); err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v, %v", m, err)
	}
	for _, c := range []struct {
		k uint32
		v uint64
	}{{7, 100}, {7, 50}, {9, 1<<64 - 1}} {
		if err := s.SaveSeqCeiling(ctx, c.k, c.v); err != nil {
			t.Fatal(err)
		}
	}
	m, err := (&FileSeqStore{Path: path}).LoadSeqCeilings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[uint32]uint64{7: 100, 9: 1<<64 - 1}, m); diff != "" {
		t.Errorf("ceilings (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`[]`, `{"0":"1"}`, `{"7":"-1"}`, `{"x":"1"}`} {
		os.WriteFile(path, []byte(bad), 0o600)
		if _, err := s.LoadSeqCeilings(ctx); err == nil {
			t.Errorf("file %s loaded", bad)
		}
	}
	if err := s.SaveSeqCeiling(ctx, 7, 5); err != nil {
		t.Errorf("save over a broken file: %v", err)
	}
	if m, err := s.LoadSeqCeilings(ctx); err != nil || m[7] != 5 {
		t.Errorf("after the save: %v, %v", m, err)
	}
}

// TestServerFileSeqStoreRestart: an NVE's notification receiver with a
// FileSeqStore refuses, after a restart, a notification its previous run
// accepted; mapsrv's client resynchronises and goes on.
func TestServerFileSeqStoreRestart(t *testing.T) {
	store := &FileSeqStore{Path: filepath.Join(t.TempDir(), "seq.json")}
	run := func() (*Server, func()) {
		s := &Server{Handler: HandlerFunc(grant), SeqStore: store, Keys: testKeys, KeyID: 99, Secret: srvSecret, Conn: listen(t)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return s, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	s1, stop := run()
	p := &rawPeer{t: t, conn: listen(t), to: addrOf(s1.Conn)}
	captured, err := (&Message{Type: TypeRequest, Seq: uint64(time.Now().UnixNano()), Timestamp: time.Now(), KeyID: 7, VMID: "n", Lifetime: 10}).Marshal(nveSecret)
	if err != nil {
		t.Fatal(err)
	}
	p.send(captured)
	if rep := p.reply(2 * time.Second); rep == nil || rep.Status != StatusAccepted {
		t.Fatalf("first time: %+v", rep)
	}
	stop()
	s2, stop2 := run()
	defer stop2()
	p.to = addrOf(s2.Conn)
	p.send(captured)
	if rep := p.reply(2 * time.Second); rep == nil || rep.Reason != ReasonReplay {
		t.Errorf("replayed after the restart: %+v, want rejected/replay", rep)
	}
	c := newClient(t, p.to)
	if rep, err := c.Do(t.Context(), &Message{VMID: "n2", Lifetime: 10}); err != nil || rep.Status != StatusAccepted {
		t.Errorf("sender after the restart: %+v, %v", rep, err)
	}
}
