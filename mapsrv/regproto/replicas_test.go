package regproto

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// replicaKeys: two replicas of one mapping service, each signing with a
// key id of its own (docs/registration.md section 6), both owned by
// "mapsrv".
var replicaKeys = KeyFile{
	7:  {NVE: "nve-a", Secret: nveSecret},
	99: {NVE: "mapsrv", Secret: srvSecret},
	98: {NVE: "mapsrv", Secret: []byte("0123456789abcdef-replica-2-key!!")},
}

// replica is a Server whose answers can be switched off (a killed
// replica: its socket stays bound, so nothing reports an error).
type replica struct {
	addr  netip.AddrPort
	mute  atomic.Bool
	calls atomic.Int32
	mu    sync.Mutex
	seqs  []uint64
}

func startReplica(t *testing.T, keyID uint32) *replica {
	t.Helper()
	r := &replica{}
	s := &Server{Keys: replicaKeys, KeyID: keyID, Secret: replicaKeys[keyID].Secret,
		Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
			if r.mute.Load() {
				return nil
			}
			r.calls.Add(1)
			r.mu.Lock()
			r.seqs = append(r.seqs, req.Seq)
			r.mu.Unlock()
			return grant(ctx, f, req)
		})}
	r.addr = startServer(t, s)
	return r
}

// TestClientFallbacks: a client given two replicas whose first does not
// answer registers with the second, stays with it while it answers, and
// goes back to the first only when the second stops answering.
func TestClientFallbacks(t *testing.T) {
	a, b := startReplica(t, 99), startReplica(t, 98)
	a.mute.Store(true)
	type sw struct {
		From, To   netip.AddrPort
		Unanswered int
	}
	var mu sync.Mutex
	var switches []sw
	c := &Client{Server: a.addr, Fallbacks: []netip.AddrPort{b.addr}, KeyID: 7, Secret: nveSecret, Keys: replicaKeys,
		Timeout: 100 * time.Millisecond, Retries: 3,
		OnSwitch: func(from, to netip.AddrPort, n int) {
			mu.Lock()
			switches = append(switches, sw{from, to, n})
			mu.Unlock()
		}}
	t.Cleanup(func() { c.Close() })

	rep, err := c.Do(t.Context(), &Message{VMID: "r1", Lifetime: 2})
	if err != nil {
		t.Fatalf("first replica silent: %v (want the second's answer)", err)
	}
	if rep.KeyID != 98 {
		t.Errorf("reply signed by key %d, want the second replica's 98", rep.KeyID)
	}
	if c.Current() != b.addr {
		t.Errorf("current %v, want %v", c.Current(), b.addr)
	}
	// Sticks with the working one, although the first answers again.
	a.mute.Store(false)
	for i := range 3 {
		if _, err := c.Do(t.Context(), &Message{VMID: "r2", Lifetime: 2}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if a.calls.Load() != 0 || b.calls.Load() != 4 {
		t.Errorf("handled by the first %d, the second %d; want 0 and 4", a.calls.Load(), b.calls.Load())
	}
	// A heartbeat's try bounded by its context counts as unanswered too.
	b.mute.Store(true)
	for range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		if _, err := c.Do(ctx, &Message{Heartbeat: true, Lifetime: 0}); err == nil {
			t.Error("heartbeat to a silent replica answered")
		}
		cancel()
	}
	if c.Current() != a.addr {
		t.Fatalf("after two unanswered heartbeats: current %v, want back to %v", c.Current(), a.addr)
	}
	if _, err := c.Do(t.Context(), &Message{VMID: "r3", Lifetime: 2}); err != nil {
		t.Fatal(err)
	}
	if a.calls.Load() != 1 {
		t.Errorf("first replica handled %d requests, want 1", a.calls.Load())
	}
	mu.Lock()
	want := []sw{{a.addr, b.addr, 2}, {b.addr, a.addr, 2}}
	if diff := cmp.Diff(want, switches, cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
		t.Errorf("switches (-want +got):\n%s", diff)
	}
	mu.Unlock()
	if st := c.Stats(); st.Switches != 2 {
		t.Errorf("stats %+v: want 2 switches", st)
	}
	// One sequence counter for both: every server saw it grow.
	for _, r := range []*replica{a, b} {
		r.mu.Lock()
		for i := 1; i < len(r.seqs); i++ {
			if r.seqs[i] <= r.seqs[i-1] {
				t.Errorf("replica %v: sequence numbers %v do not grow", r.addr, r.seqs)
			}
		}
		r.mu.Unlock()
	}
}

// TestClientFallbacksOneLossNoSwitch: a single unanswered try is a lost
// datagram, not a dead replica.
func TestClientFallbacksOneLossNoSwitch(t *testing.T) {
	var n atomic.Int32
	s := &Server{Keys: replicaKeys, KeyID: 99, Secret: srvSecret, Handler: HandlerFunc(func(ctx context.Context, f netip.AddrPort, req *Message) *Message {
		if n.Add(1) == 1 {
			return nil
		}
		return grant(ctx, f, req)
	})}
	a := startServer(t, s)
	b := startReplica(t, 98)
	c := &Client{Server: a, Fallbacks: []netip.AddrPort{b.addr}, KeyID: 7, Secret: nveSecret, Keys: replicaKeys, Timeout: 100 * time.Millisecond}
	t.Cleanup(func() { c.Close() })
	for range 3 {
		if _, err := c.Do(t.Context(), &Message{VMID: "x", Lifetime: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if c.Current() != a || b.calls.Load() != 0 || c.Stats().Switches != 0 {
		t.Errorf("current %v, second replica handled %d, %d switches: want the first, 0, 0", c.Current(), b.calls.Load(), c.Stats().Switches)
	}
}

func TestClientFallbackErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		fb   []netip.AddrPort
	}{
		{"invalid", []netip.AddrPort{{}}},
		{"ipv4 and ipv6", []netip.AddrPort{netip.MustParseAddrPort("[::1]:4790")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{Server: netip.MustParseAddrPort("127.0.0.1:4790"), Fallbacks: tc.fb, KeyID: 7, Secret: nveSecret, Keys: replicaKeys}
			if _, err := c.Do(t.Context(), &Message{Lifetime: 1}); err == nil {
				t.Error("no error")
			}
		})
	}
}
