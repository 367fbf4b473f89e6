package etcdstore_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/etcdembed/etcdtest"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/etcdstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// refreshRig is mapsrv replicas over one real etcd, on one fake clock.
type refreshRig struct {
	t   *testing.T
	cli *clientv3.Client
	clk *clock
}

func newRefreshRig(t *testing.T) *refreshRig {
	cli, _ := etcdtest.Start(t)
	return &refreshRig{t: t, cli: cli, clk: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
}

// replica is a Service named name with liveness on (nothing runs its
// loops: the test drives heartbeats, status writes and sweeps).
func (r *refreshRig) replica(name string) *mapsrv.Service {
	return newService(r.t, r.cli, func(c *mapsrv.Config) {
		c.Now = r.clk.Now
		c.Liveness = mapsrv.LivenessConfig{Interval: time.Second, Replica: name}
	})
}

// alive heartbeats nve to svc and writes svc's status key: svc decides
// for nve and may hold its refreshes.
func (r *refreshRig) alive(svc *mapsrv.Service, nve string) {
	r.t.Helper()
	if _, err := svc.Heartbeat(r.t.Context(), nve, 0); err != nil {
		r.t.Fatalf("heartbeat %s: %v", nve, err)
	}
	if err := svc.WriteReplicaStatus(r.t.Context()); err != nil {
		r.t.Fatal(err)
	}
}

func (r *refreshRig) register(svc *mapsrv.Service, nve string) (mapsrv.TaskRecord, error) {
	return svc.Register(r.t.Context(), mapsrv.Registration{NVE: nve, Tenant: "t1", Name: "web1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: 8 * time.Second})
}

// modRev returns the mod revision of web1's task key (0: absent).
func (r *refreshRig) modRev() int64 {
	r.t.Helper()
	resp, err := r.cli.Get(r.t.Context(), mapsrv.TaskKey("prod", 1))
	if err != nil {
		r.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}

// heldPastRecord registers web1 on NVE a at svc (which hears a), lets svc
// hold a refresh 4 s later (expiry +12s) and moves the clock to +9s, past
// the record's expiry (+8s).
func (r *refreshRig) heldPastRecord(svc *mapsrv.Service) {
	r.t.Helper()
	setup(r.t, svc, nil)
	r.alive(svc, "a")
	if _, err := r.register(svc, "a"); err != nil {
		r.t.Fatal(err)
	}
	r.clk.Advance(4 * time.Second)
	r.alive(svc, "a")
	if _, err := r.register(svc, "a"); err != nil {
		r.t.Fatal(err)
	}
	r.clk.Advance(5 * time.Second)
}

func (r *refreshRig) sweep(svc *mapsrv.Service, want int) {
	r.t.Helper()
	if n, err := svc.Sweep(r.t.Context()); err != nil || n != want {
		r.t.Fatalf("sweep at +%v: %d expired, %v; want %d", r.clk.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), n, err, want)
	}
}

// TestRefreshNotWritten: a refresh that changes nothing but the expiry
// leaves the task record (and every watcher of /ila/v1/) alone; the task
// still lives a lifetime from its last refresh, the API shows that
// expiry, and a task whose refreshes stop (a deregistration lost while
// its NVE lives) expires a lifetime after the last one.
func TestRefreshNotWritten(t *testing.T) {
	r := newRefreshRig(t)
	svc := r.replica("r1")
	setup(t, svc, nil)
	r.alive(svc, "a")
	if _, err := r.register(svc, "a"); err != nil {
		t.Fatal(err)
	}
	written := r.modRev()
	t0 := r.clk.Now()

	r.clk.Advance(4 * time.Second)
	r.alive(svc, "a")
	rec, err := r.register(svc, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.modRev(); got != written {
		t.Errorf("refresh rewrote the task record: mod revision %d -> %d", written, got)
	}
	if st := svc.Stats(); st.RefreshesHeld != 1 {
		t.Errorf("refreshes held = %d, want 1", st.RefreshesHeld)
	}
	want := t0.Add(12 * time.Second)
	if !rec.Expiry.Equal(want) {
		t.Errorf("refresh answered expiry %v, want %v", rec.Expiry, want)
	}
	if got, err := svc.Task(t.Context(), "t1", "web1"); err != nil || !got.Expiry.Equal(want) {
		t.Errorf("Task: expiry %v (%v), want %v (the refresh's, not the record's)", got.Expiry, err, want)
	}

	// The record's expiry (t0+8s) passes; the refresh held keeps it.
	r.clk.Advance(4 * time.Second)
	r.alive(svc, "a")
	r.sweep(svc, 0)
	// Its NVE lives but refreshes it no more: gone a lifetime after
	// the last refresh.
	r.clk.Advance(4*time.Second - time.Millisecond)
	r.alive(svc, "a")
	r.sweep(svc, 0)
	r.clk.Advance(time.Millisecond)
	r.alive(svc, "a")
	r.sweep(svc, 1)
	if got := r.modRev(); got != 0 {
		t.Errorf("task still stored after its lifetime (mod revision %d)", got)
	}
}

// TestRefreshWrittenWithoutDecider: an NVE that no replica hears (no
// heartbeats), or a replica whose status key is old, still has its
// refreshes written: other replicas could not know them.
func TestRefreshWrittenWithoutDecider(t *testing.T) {
	r := newRefreshRig(t)
	svc := r.replica("r1")
	setup(t, svc, nil)
	if _, err := r.register(svc, "a"); err != nil {
		t.Fatal(err)
	}
	before := r.modRev()
	r.clk.Advance(time.Second)
	if _, err := r.register(svc, "a"); err != nil {
		t.Fatal(err)
	}
	if got := r.modRev(); got == before {
		t.Errorf("refresh from an nve without heartbeats not written")
	}
	r.alive(svc, "a")
	r.clk.Advance(20 * time.Second) // the status key is older than its hold
	if _, err := svc.Heartbeat(t.Context(), "a", 0); err != nil {
		t.Fatal(err)
	}
	before = r.modRev()
	if _, err := r.register(svc, "a"); err != nil {
		t.Fatal(err)
	}
	if got := r.modRev(); got == before {
		t.Errorf("refresh held by a replica whose status key is 20 s old")
	}
}

// TestRefreshHeldElsewhere: two replicas. r1 hears NVE a and holds its
// refresh; r2 does not expire the task while r1's status is fresh (the
// record's expiry passed), refuses another NVE's claim of it as an
// orphan, and expires it only when r1 has been silent for its hold plus
// the task's lifetime (r1 died with the NVE).
func TestRefreshHeldElsewhere(t *testing.T) {
	r := newRefreshRig(t)
	r1, r2 := r.replica("r1"), r.replica("r2")
	r.heldPastRecord(r1)
	r.alive(r1, "a")
	r.sweep(r2, 0)
	r.sweep(r1, 0)
	_, err := r2.Register(t.Context(), mapsrv.Registration{NVE: "b", Tenant: "t1", Name: "web1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: 8 * time.Second})
	if !errors.Is(err, mapsrv.ErrUnjustified) {
		t.Errorf("claim by nve b of a task whose refresh r1 holds: %v, want %v", err, mapsrv.ErrUnjustified)
	}
	// r1 and NVE a stop. r1's last status was at +9s: r2 waits for it
	// + 15 s hold + 8 s lifetime = +32s.
	r.clk.Advance(23*time.Second - time.Millisecond)
	r.sweep(r2, 0)
	r.clk.Advance(time.Millisecond)
	r.sweep(r2, 1)
}

// TestRefreshDeciderMoves: NVE a's heartbeats move from r1 (which held
// its refresh) to r2: r2 gives its tasks one lifetime (+ hold) from then,
// and expires them after it if they are not refreshed.
func TestRefreshDeciderMoves(t *testing.T) {
	r := newRefreshRig(t)
	r1, r2 := r.replica("r1"), r.replica("r2")
	r.heldPastRecord(r1)
	r.alive(r2, "a") // r2 decides from +9s
	r.sweep(r2, 0)
	r.sweep(r1, 0)
	// +9s + 8s lifetime + 15s hold = +32s.
	r.clk.Advance(23*time.Second - time.Millisecond)
	r.alive(r2, "a")
	r.sweep(r2, 0)
	r.clk.Advance(time.Millisecond)
	r.alive(r2, "a")
	r.sweep(r2, 1)
}

// TestRefreshHeldRestart: the replica that held a refresh restarts (its
// memory is gone): its tasks get one lifetime from the restart, as after
// any restart, and expire after it if nobody refreshes them.
func TestRefreshHeldRestart(t *testing.T) {
	r := newRefreshRig(t)
	r.heldPastRecord(r.replica("r1"))
	r.clk.Advance(11 * time.Second) // +20s: r1 is down; the refresh held ran out at +12s
	again := newService(t, r.cli, func(c *mapsrv.Config) {
		c.Now = r.clk.Now
		c.Liveness = mapsrv.LivenessConfig{Interval: time.Hour, Replica: "r1"}
		c.SweepInterval = time.Hour // the test sweeps
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- again.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for again.UpSince().IsZero() {
		time.Sleep(time.Millisecond)
	}
	r.sweep(again, 0)
	r.clk.Advance(8*time.Second - time.Millisecond) // +28s: one lifetime after the restart
	r.sweep(again, 0)
	r.clk.Advance(time.Millisecond)
	r.sweep(again, 1)
}

// TestRefreshHeldEventSweeper: the sweeper fed by the watch (which saw
// only the record's expiry) keeps a task whose refresh is held past that
// expiry, and expires it a lifetime after the last refresh.
func TestRefreshHeldEventSweeper(t *testing.T) {
	r := newRefreshRig(t)
	svc := newService(t, r.cli, func(c *mapsrv.Config) {
		c.Now = r.clk.Now
		c.Liveness = mapsrv.LivenessConfig{Interval: time.Hour, Replica: "r1"} // no death within the test
		c.SweepInterval = 10 * time.Millisecond
		c.Events = etcdstore.NewWatcher(r.cli, r.cli, etcdstore.WatchOptions{}).Watch
		c.FullSweepInterval = time.Hour
	})
	setup(t, svc, nil)
	r.alive(svc, "a")
	if _, err := r.register(svc, "a"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for svc.UpSince().IsZero() {
		time.Sleep(time.Millisecond)
	}
	r.clk.Advance(4 * time.Second)
	r.alive(svc, "a")
	if _, err := r.register(svc, "a"); err != nil { // held: expires at +12s
		t.Fatal(err)
	}
	r.clk.Advance(5 * time.Second) // past the record's expiry
	time.Sleep(300 * time.Millisecond)
	if r.modRev() == 0 {
		t.Fatal("task expired at its record's expiry; its refresh held runs 3 s more")
	}
	r.clk.Advance(3 * time.Second)
	for deadline := time.Now().Add(10 * time.Second); r.modRev() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("task not expired a lifetime after its last refresh")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
