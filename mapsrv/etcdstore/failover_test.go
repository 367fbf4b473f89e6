package etcdstore_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	"github.com/ilamesh/ilamesh/mapsrv/regproto"
)

// TestFailoverOverUDP: NVEs a and b heartbeat mapsrv over the registration
// protocol every 50 ms; b registers as the standby of a task of a (and c,
// with a wrong key, is refused); a stops; mapsrv declares it dead and the
// watch sees the task on b. It logs detection and commit times (figures
// for docs/FAILOVER.md, not asserted).
func TestFailoverOverUDP(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	keys := regproto.KeyFile{
		1: {NVE: "mapsrv", Secret: []byte("mapsrv-secret-0123456789abcdef")},
		2: {NVE: "a", Secret: []byte("nve-a-secret-0123456789abcdef")},
		3: {NVE: "b", Secret: []byte("nve-b-secret-0123456789abcdef")},
		4: {NVE: "c", Secret: []byte("nve-c-secret-0123456789abcdef")},
	}
	const iv = 50 * time.Millisecond
	svc := newService(t, cli, func(c *mapsrv.Config) {
		c.Liveness = mapsrv.LivenessConfig{Interval: iv, SuspectAfter: 2, DeadAfter: 3, Replica: "m1"}
	})
	setup(t, svc, nil)
	srvConn := listenUDP(t)
	srv := &regproto.Server{Conn: srvConn, Keys: keys, KeyID: 1, Secret: keys[1].Secret, Handler: svc}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{srv.Run, svc.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	client := func(keyID uint32, secret []byte) *regproto.Client {
		c := &regproto.Client{Server: addrOf(srvConn), KeyID: keyID, Secret: secret, Keys: keys, ServerKeyID: 1, Timeout: time.Second, Retries: -1}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb, cc := client(2, keys[2].Secret), client(3, keys[3].Secret), client(4, []byte("not-the-secret-of-c-0123456789"))
	do := func(c *regproto.Client, m *regproto.Message) *regproto.Message {
		t.Helper()
		rep, err := c.Do(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	sir := netip.MustParseAddr("2001:db8::1:0:0:5")
	if rep := do(ca, &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{sir}, Lifetime: 15, Mode: regproto.MoveHot}); rep.Err() != nil {
		t.Fatal(rep.Err())
	}
	standby := &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{sir}, Lifetime: 15, Role: regproto.RoleStandby}
	// A wrong key is not even answered (no reply to unauthenticated
	// datagrams), and nothing changes.
	if rep, err := cc.Do(t.Context(), standby); !errors.Is(err, regproto.ErrTimeout) {
		t.Errorf("standby with a wrong key: %+v, %v; want no answer", rep, err)
	}
	if rec, err := svc.Task(t.Context(), "t1", "vm1"); err != nil || rec.Standby != nil {
		t.Errorf("task after a standby with a wrong key: standby %+v, %v", rec.Standby, err)
	}
	if rep := do(cb, standby); rep.Err() != nil || rep.Role != regproto.RoleStandby {
		t.Fatalf("standby: %+v", rep)
	}

	// Heartbeats; a stops after a while.
	var mu sync.Mutex
	var lastA time.Time
	hb := func(c *regproto.Client, stop <-chan struct{}, isA bool) {
		defer wg.Done()
		var epoch uint32
		tk := time.NewTicker(iv)
		defer tk.Stop()
		for {
			rep, err := c.Do(ctx, &regproto.Message{Heartbeat: true, Epoch: epoch})
			if err == nil && rep.Err() == nil {
				epoch = rep.Epoch
				if isA {
					mu.Lock()
					lastA = time.Now()
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}
	stopA, stopB := make(chan struct{}), make(chan struct{})
	wg.Add(2)
	go hb(ca, stopA, true)
	go hb(cb, stopB, false)
	defer close(stopB)

	e := watch(t, etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}), nil)
	e.waitFor(t, "synced", func(evs []ila.Event) bool { return count(evs, ila.EventSynced) == 1 })
	time.Sleep(10 * iv)
	if n, _ := svc.NVE(t.Context(), "a"); n.Liveness == nil || n.Liveness.State != mapsrv.NVEAlive {
		t.Fatalf("a before it stops: %+v", n.Liveness)
	}
	close(stopA)
	e.waitFor(t, "task on b", func(evs []ila.Event) bool {
		for _, ev := range evs {
			if ev.Type == ila.EventTaskUpsert && ev.Task.NVE == "b" {
				return true
			}
		}
		return false
	})
	seen := time.Now()
	mu.Lock()
	last := lastA
	mu.Unlock()
	rec, err := svc.Task(t.Context(), "t1", "vm1")
	if err != nil || rec.NVE != "b" || rec.Locator != locB || rec.State != ila.StateActive {
		t.Fatalf("task after a stopped: %+v, %v", rec, err)
	}
	if n, _ := svc.NVE(t.Context(), "a"); n.Liveness == nil || n.Liveness.State != mapsrv.NVEDead || n.Liveness.Epoch != 2 {
		t.Errorf("a after it stopped: %+v", n.Liveness)
	}
	st := svc.LivenessStats()
	t.Logf("heartbeat %v, dead after %d: last answered heartbeat of a to the watch event on b: %v (detection %v, commit %v)", iv, 3, seen.Sub(last), st.LastDetection, st.LastCommit)
	// a comes back under its old epoch: fenced, and a claim of the task
	// under that epoch is refused.
	if rep := do(ca, &regproto.Message{Heartbeat: true, Epoch: 1}); rep.Reason != regproto.ReasonFenced || rep.Epoch != 2 {
		t.Errorf("heartbeat of a under epoch 1: %+v", rep)
	}
	if rep := do(ca, &regproto.Message{VMID: "vm1", Tenant: "t1", Addrs: []netip.Addr{sir}, Lifetime: 15, Mode: regproto.MoveHot, Epoch: 1}); rep.Reason != regproto.ReasonFenced {
		t.Errorf("claim of a under epoch 1: %+v", rep)
	}
	if rec, _ := svc.Task(t.Context(), "t1", "vm1"); rec.NVE != "b" {
		t.Errorf("task back on %s", rec.NVE)
	}
}
