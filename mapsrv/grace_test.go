package mapsrv_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// downStore fails every operation while down is set (etcd unreachable).
type downStore struct {
	mapsrv.Store
	down atomic.Bool
}

var errDown = errors.New("store unreachable")

func (s *downStore) Get(ctx context.Context, keys ...string) ([]mapsrv.KV, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.Get(ctx, keys...)
}

func (s *downStore) List(ctx context.Context, prefix string) ([]mapsrv.KV, int64, error) {
	if s.down.Load() {
		return nil, 0, errDown
	}
	return s.Store.List(ctx, prefix)
}

func (s *downStore) Txn(ctx context.Context, c []mapsrv.Cond, o []mapsrv.Op) (int64, error) {
	if s.down.Load() {
		return 0, errDown
	}
	return s.Store.Txn(ctx, c, o)
}

// TestStoreOutageRestartsGrace: the store is unreachable for twice the
// lifetime (registrations fail meanwhile); when it is back, tasks get one
// more lifetime before the sweeper expires them.
func TestStoreOutageRestartsGrace(t *testing.T) {
	ds := &downStore{}
	f := newFixture(t, func(c *mapsrv.Config) { ds.Store = c.Store; c.Store = ds })
	ctx := t.Context()
	f.register(t, "a", "web1", "2001:db8::1")
	f.register(t, "a", "web2", "2001:db8::2")
	ds.down.Store(true)
	f.clk.Advance(2 * time.Minute)
	if _, err := f.svc.Sweep(ctx); !errors.Is(err, errDown) {
		t.Fatalf("sweep with the store down: %v, want %v", err, errDown)
	}
	ds.down.Store(false)
	if n, err := f.svc.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("first sweep after the outage: %d expired, %v; want 0", n, err)
	}
	f.clk.Advance(30 * time.Second)
	f.register(t, "a", "web1", "2001:db8::1") // its NVE registers again
	f.clk.Advance(30 * time.Second)
	if n, err := f.svc.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep one lifetime after the outage: %d expired, %v; want 1 (web2)", n, err)
	}
	if _, err := f.svc.Task(ctx, "t1", "web1"); err != nil {
		t.Errorf("web1, registered again: %v", err)
	}
}
