package apiclient_test

import (
	"errors"
	"testing"

	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
)

// TestAllocate goes through the HTTP API to a real etcd: allocate, the
// same name again, read, release, and the errors as sentinels.
func TestAllocate(t *testing.T) {
	srv := start(t, mapsrv.Config{}, mapsrv.APIOptions{})
	c := newClient(t, apiclient.Config{URL: srv.url})
	ctx := t.Context()
	setup(t, c)
	a, err := c.Allocate(ctx, mapsrv.AllocRequest{Tenant: "t", Name: "pod/x"})
	if !errors.Is(err, mapsrv.ErrInvalid) {
		t.Fatalf("allocate a name with a slash: %v, want ErrInvalid", err)
	}
	a, err = c.Allocate(ctx, mapsrv.AllocRequest{Tenant: "t", Name: "pod1"})
	if err != nil || !a.New || !sirPrefix.Contains(a.SIR) {
		t.Fatalf("allocate: %+v, %v", a, err)
	}
	b, err := c.Allocate(ctx, mapsrv.AllocRequest{Domain: "prod", Tenant: "t", Name: "pod1"})
	if err != nil || b.New || b.SIR != a.SIR {
		t.Fatalf("allocate again: %+v, %v; want %v, not new", b, err, a.SIR)
	}
	got, err := c.Allocation(ctx, "t", "pod1")
	if err != nil || got != a.Allocation {
		t.Fatalf("allocation: %+v, %v; want %+v", got, err, a.Allocation)
	}
	if _, err := c.Allocate(ctx, mapsrv.AllocRequest{Domain: "nope", Name: "pod1"}); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("allocate in an unknown domain: %v, want ErrNotFound", err)
	}
	if err := c.Release(ctx, "t", "pod1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, "t", "pod1"); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("second release: %v, want ErrNotFound", err)
	}
	if _, err := c.Allocation(ctx, "t", "pod1"); !errors.Is(err, mapsrv.ErrNotFound) {
		t.Errorf("allocation after release: %v, want ErrNotFound", err)
	}
}
