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
)

// TestNoMassExpiryAfterOutage stops the mapping service (every replica:
// there is one) for twice the lifetime of its tasks and starts it again
// over the same etcd: nobody could refresh anything meanwhile, so nothing
// may expire at once. The NVEs get one lifetime from the restart to
// register again; what they do not refresh expires after that.
func TestNoMassExpiryAfterOutage(t *testing.T) {
	cli, _ := etcdtest.Start(t)
	ctx := t.Context()
	clk := &clock{now: time.Now()}
	mod := func(c *mapsrv.Config) {
		c.Now = clk.Now
		c.SweepInterval = 10 * time.Millisecond
		c.Events = etcdstore.NewWatcher(cli, cli, etcdstore.WatchOptions{}).Watch
		c.FullSweepInterval = time.Hour
	}
	const lifetime = 8 * time.Second
	reg := func(svc *mapsrv.Service, name, sir string, lt time.Duration) {
		t.Helper()
		if _, err := svc.Register(ctx, mapsrv.Registration{NVE: "a", Tenant: "t1", Name: name, SIR: netip.MustParseAddr(sir), Lifetime: lt}); err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
	}
	run := func(svc *mapsrv.Service) (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- svc.Run(rctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	exists := func(svc *mapsrv.Service, name string) bool {
		t.Helper()
		_, err := svc.Task(ctx, "t1", name)
		if err != nil && !errors.Is(err, mapsrv.ErrNotFound) {
			t.Fatalf("task %s: %v", name, err)
		}
		return err == nil
	}
	// waitGone waits (in real time) for the sweeper to expire a task.
	waitGone := func(svc *mapsrv.Service, name string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); exists(svc, name); {
			if time.Now().After(deadline) {
				t.Fatalf("task %s not expired", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	svc1 := newService(t, cli, mod)
	setup(t, svc1, nil)
	reg(svc1, "web1", "2001:db8::1", lifetime)
	reg(svc1, "web2", "2001:db8::2", lifetime)
	stop := run(svc1)
	clk.Advance(lifetime / 2)
	reg(svc1, "web1", "2001:db8::1", lifetime) // a refresh while all is well
	stop()

	// mapsrv is down for twice the lifetime.
	clk.Advance(2 * lifetime)
	svc2 := newService(t, cli, mod)
	stop = run(svc2)
	defer stop()
	// Two probes registered after the restart with a tiny lifetime expire
	// one after the other: the sweeper has then completed a pass over
	// everything that was due.
	for _, p := range []string{"probe1", "probe2"} {
		reg(svc2, p, "2001:db8::f1", time.Millisecond)
		clk.Advance(time.Second)
		waitGone(svc2, p)
	}
	for _, name := range []string{"web1", "web2"} {
		if !exists(svc2, name) {
			t.Errorf("task %s expired at mapsrv's restart after an outage of twice its lifetime", name)
		}
	}
	// The sweeper counts once its transaction's answer is back, which may
	// be after the store shows the delete.
	for deadline := time.Now().Add(5 * time.Second); svc2.Stats().Expiries < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := svc2.Stats().Expiries; n != 2 {
		t.Errorf("expiries after restart = %d, want 2 (the probes)", n)
	}
	// The NVE of web1 registers it again; web2's NVE never does: web2
	// expires one lifetime after the restart, web1 stays.
	reg(svc2, "web1", "2001:db8::1", lifetime)
	clk.Advance(lifetime - 2*time.Second + time.Millisecond)
	waitGone(svc2, "web2")
	if !exists(svc2, "web1") {
		t.Errorf("task web1, registered again after the restart, expired")
	}
}
