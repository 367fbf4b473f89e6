package regproto

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWindowBoundsSeqAhead: a sequence number far above the clock is
// refused, so one message cannot lock its sender out.
func TestWindowBoundsSeqAhead(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	w := &ReplayWindow{Now: func() time.Time { return now }}
	base := uint64(now.UnixNano())
	for i, tc := range []struct {
		seq  uint64
		want bool // accepted
	}{
		{1 << 63, false},
		{base + uint64(DefaultMaxAhead) + 1, false},
		{base + uint64(DefaultMaxAhead), true},
		{base, true},
	} {
		err := w.Check(uint32(10+i), tc.seq, now)
		if (err == nil) != tc.want {
			t.Errorf("seq %d: %v, want accepted %v", tc.seq, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrReplay) {
			t.Errorf("seq %d: %v does not wrap ErrReplay", tc.seq, err)
		}
	}
	w.MaxAhead = time.Second
	if err := w.Check(2, base+uint64(2*time.Second), now); err == nil {
		t.Error("MaxAhead 1s: seq 2s ahead accepted")
	}
}

func TestWindowRestore(t *testing.T) {
	w := &ReplayWindow{}
	base := uint64(time.Now().UnixNano())
	if err := w.Check(1, base+500, time.Now()); err != nil {
		t.Fatal(err)
	}
	w.Restore(map[uint32]uint64{1: base + 100, 2: base})
	for _, tc := range []struct {
		key  uint32
		seq  uint64
		want bool
	}{
		{1, base + 500, false}, // kept: higher than the floor
		{1, base + 499, true},
		{2, base, false},
		{2, base - 5, false},
		{2, base + 1, true},
	} {
		if err := w.Check(tc.key, tc.seq, time.Now()); (err == nil) != tc.want {
			t.Errorf("key %d seq base%+d: %v, want accepted %v", tc.key, int64(tc.seq-base), err, tc.want)
		}
	}
}

// TestServerRefusesHugeSeq: a correctly signed request with a huge
// sequence number is refused, and the key's sender is not locked out.
func TestServerRefusesHugeSeq(t *testing.T) {
	p := &rawPeer{t: t, conn: listen(t), to: startServer(t, &Server{Handler: HandlerFunc(grant)})}
	b, err := (&Message{Type: TypeRequest, Seq: 1 << 62, Timestamp: time.Now(), KeyID: 7, VMID: "x", Lifetime: 10}).Marshal(nveSecret)
	if err != nil {
		t.Fatal(err)
	}
	p.send(b)
	rep := p.reply(2 * time.Second)
	if rep == nil || rep.Status != StatusRejected || rep.Reason != ReasonReplay {
		t.Fatalf("reply to seq 2^62: %+v, want rejected/replay", rep)
	}
	c := newClient(t, p.to)
	if rep, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 10}); err != nil || rep.Status != StatusAccepted {
		t.Errorf("request after it: %+v, %v", rep, err)
	}
}

// TestClientResyncsAfterReplay: the server has seen a sequence number
// ahead of a new sender's clock-seeded counter (a restarted sender whose
// clock went back, or a server that restored a ceiling); the client jumps
// its counter past it and is accepted.
func TestClientResyncsAfterReplay(t *testing.T) {
	p := &rawPeer{t: t, conn: listen(t), to: startServer(t, &Server{Handler: HandlerFunc(grant)})}
	ahead := uint64(time.Now().Add(ResyncAhead - 2*time.Second).UnixNano())
	b, err := (&Message{Type: TypeRequest, Seq: ahead, Timestamp: time.Now(), KeyID: 7, VMID: "x", Lifetime: 10}).Marshal(nveSecret)
	if err != nil {
		t.Fatal(err)
	}
	p.send(b)
	if rep := p.reply(2 * time.Second); rep == nil || rep.Status != StatusAccepted {
		t.Fatalf("reply to a seq %v ahead: %+v", ResyncAhead-2*time.Second, rep)
	}
	c := newClient(t, p.to)
	rep, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 10})
	if err != nil || rep.Status != StatusAccepted {
		t.Fatalf("client after it: %+v, %v", rep, err)
	}
	if st := c.Stats(); st.Resyncs != 1 {
		t.Errorf("client stats %+v, want 1 resync", st)
	}
	// Further requests go through without a refusal.
	if rep, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 10}); err != nil || rep.Status != StatusAccepted || c.Stats().Resyncs != 1 {
		t.Errorf("second request: %+v, %v, stats %+v", rep, err, c.Stats())
	}
}

// memSeqStore is a SeqStore in memory (the etcd one is tested with mapsrv).
type memSeqStore struct {
	mu    sync.Mutex
	m     map[uint32]uint64
	saves int
	fail  error
}

func (s *memSeqStore) LoadSeqCeilings(context.Context) (map[uint32]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[uint32]uint64{}
	for k, v := range s.m {
		out[k] = v
	}
	return out, s.fail
}

func (s *memSeqStore) SaveSeqCeiling(_ context.Context, k uint32, v uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.m == nil {
		s.m = map[uint32]uint64{}
	}
	s.m[k] = max(s.m[k], v)
	s.saves++
	return nil
}

// TestServerSeqStoreRestart: a request captured while one server run
// accepted it is refused by the next run; the sender itself goes on.
func TestServerSeqStoreRestart(t *testing.T) {
	store := &memSeqStore{}
	var handled sync.Map // VM-ID -> *atomic.Int32
	h := HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		n, _ := handled.LoadOrStore(req.VMID, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		return grant(ctx, f, req)
	})
	run := func() (netip.AddrPort, func()) {
		s := &Server{Handler: h, SeqStore: store, Keys: testKeys, KeyID: 99, Secret: srvSecret, Conn: listen(t)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return addrOf(s.Conn), func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	addr, stop := run()
	p := &rawPeer{t: t, conn: listen(t), to: addr}
	c := newClient(t, addr)
	if rep, err := c.Do(t.Context(), &Message{VMID: "first", Lifetime: 10}); err != nil || rep.Status != StatusAccepted {
		t.Fatalf("first request: %+v, %v", rep, err)
	}
	// The capture: a request signed with the next sequence number.
	captured, err := (&Message{Type: TypeRequest, Seq: c.nextSeq(), Timestamp: time.Now(), KeyID: 7, VMID: "captured", Lifetime: 10}).Marshal(nveSecret)
	if err != nil {
		t.Fatal(err)
	}
	p.send(captured)
	if rep := p.reply(2 * time.Second); rep == nil || rep.Status != StatusAccepted {
		t.Fatalf("captured request, first time: %+v", rep)
	}
	store.mu.Lock()
	saves := store.saves
	store.mu.Unlock()
	if saves != 1 {
		t.Errorf("%d ceiling writes for one sender's run, want 1", saves)
	}
	stop()

	// The restart: same socket address is not needed; same store.
	addr2, stop2 := run()
	defer stop2()
	p.to = addr2
	p.send(captured)
	if rep := p.reply(2 * time.Second); rep == nil || rep.Status != StatusRejected || rep.Reason != ReasonReplay {
		t.Errorf("captured request replayed after the restart: %+v, want rejected/replay", rep)
	}
	if n, _ := handled.Load("captured"); n.(*atomic.Int32).Load() != 1 {
		t.Errorf("captured request handled %d times, want 1", n.(*atomic.Int32).Load())
	}
	// The sender keeps its counter and goes on (one resync).
	c2 := &Client{Server: addr2, KeyID: 7, Secret: nveSecret, Keys: testKeys, ServerKeyID: 99, Timeout: 200 * time.Millisecond}
	defer c2.Close()
	c2.seq.Store(c.seq.Load())
	if rep, err := c2.Do(t.Context(), &Message{VMID: "after", Lifetime: 10}); err != nil || rep.Status != StatusAccepted {
		t.Errorf("sender after the restart: %+v, %v", rep, err)
	}

	// A store that fails: the request is refused, not handled.
	store.mu.Lock()
	store.fail = errors.New("etcd down")
	store.mu.Unlock()
	c3 := newClient(t, addr2)
	c3.seq.Store(uint64(time.Now().Add(ResyncAhead + SeqReserve + 5*time.Second).UnixNano())) // past the stored ceiling
	if rep, err := c3.Do(t.Context(), &Message{VMID: "unsaved", Lifetime: 10}); err != nil || rep.Reason != ReasonInternal {
		t.Errorf("request with the store down: %+v, %v; want rejected/internal", rep, err)
	}
	if _, ok := handled.Load("unsaved"); ok {
		t.Error("request handled though its sequence number was not saved")
	}
}

// TestClientResyncsAfterSecondRestart: a client whose counter is already
// ahead of its clock (it resynchronised after an earlier restart) gets
// past the ceiling the server stored for it after the server's next
// restart. The resync used to move the counter to the clock plus
// ResyncAhead only, which was below that ceiling: the request was refused
// as a replay twice and came back refused (TestMoveRefusals' standby
// withdrawal after mapsrv restarted).
func TestClientResyncsAfterSecondRestart(t *testing.T) {
	store := &memSeqStore{}
	run := func() (netip.AddrPort, func()) {
		s := &Server{Handler: HandlerFunc(grant), SeqStore: store, Keys: testKeys, KeyID: 99, Secret: srvSecret, Conn: listen(t)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		return addrOf(s.Conn), func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	addr, stop := run()
	c := newClient(t, addr)
	c.seq.Store(uint64(time.Now().Add(ResyncAhead).UnixNano())) // as after a resync
	if rep, err := c.Do(t.Context(), &Message{VMID: "before", Lifetime: 10}); err != nil || rep.Status != StatusAccepted {
		t.Fatalf("request before the restart: %+v, %v", rep, err)
	}
	stop()

	addr2, stop2 := run()
	defer stop2()
	c2 := &Client{Server: addr2, KeyID: 7, Secret: nveSecret, Keys: testKeys, ServerKeyID: 99, Timeout: 200 * time.Millisecond}
	defer c2.Close()
	c2.seq.Store(c.seq.Load())
	rep, err := c2.Do(t.Context(), &Message{VMID: "after", Lifetime: 10})
	if err != nil || rep.Status != StatusAccepted {
		t.Fatalf("request after the restart: %+v, %v; want accepted after one resync", rep, err)
	}
	if st := c2.Stats(); st.Resyncs != 1 {
		t.Errorf("client stats %+v, want 1 resync", st)
	}
}
