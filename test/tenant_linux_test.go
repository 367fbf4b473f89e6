//go:build linux

package test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// TestTenantIsolation is finding 6 of issue 17: tasks of one tenant reach
// each other; a task of another tenant does not, on the same NVE or another,
// until a policy in the store lets the two tenants talk, and no longer once
// it is removed.
func TestTenantIsolation(t *testing.T) {
	l := upLab(t, lab.Config{NVEs: 2, TasksPerNVE: 2, Tenants: 2})
	// t1, t2 on nve1; t3, t4 on nve2; odd tasks in tenant1, even in tenant2.
	t1, t2, t3, t4 := task(t, l, "t1"), task(t, l, "t2"), task(t, l, "t3"), task(t, l, "t4")
	if t1.Tenant != "tenant1" || t2.Tenant != "tenant2" || t3.Tenant != "tenant1" || t4.Tenant != "tenant2" || t1.NVE != t2.NVE || t1.NVE == t3.NVE {
		t.Fatalf("lab plan: t1 %s/%s t2 %s/%s t3 %s/%s t4 %s/%s", t1.Tenant, t1.NVE, t2.Tenant, t2.NVE, t3.Tenant, t3.NVE, t4.Tenant, t4.NVE)
	}
	reach(t, l, "t1", t3.SIR)
	reach(t, l, "t2", t4.SIR)
	none := func(src string, dst netip.Addr) {
		t.Helper()
		st, err := l.Ping(t.Context(), src, dst, 10*time.Millisecond, 20, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if st.Received != 0 {
			t.Errorf("ping %s -> %s (other tenant): %d of %d answered, want none", src, dst, st.Received, st.Sent)
		}
	}
	none("t1", t2.SIR) // same NVE
	none("t1", t4.SIR) // across NVEs
	none("t4", t1.SIR)

	if err := l.AllowTenants(t.Context(), "tenant2", "tenant1"); err != nil {
		t.Fatal(err)
	}
	reach(t, l, "t1", t2.SIR)
	reach(t, l, "t1", t4.SIR)
	pingAll(t, l, "t4", t1.SIR, 20)
	pingAll(t, l, "t1", t3.SIR, 20)

	if err := l.DisallowTenants(t.Context(), "tenant1", "tenant2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := l.Ping(t.Context(), "t1", t4.SIR, 10*time.Millisecond, 5, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if st.Received == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("t1 -> t4 still answered 5s after the policy was removed")
		}
	}
	none("t1", t2.SIR)
	pingAll(t, l, "t1", t3.SIR, 20)
}

// TestIPv4SourceValidation is the IPv4 half of finding 6: an IPv4 tenant
// task's packets with a source that is not its address are not delivered;
// with its own source they are.
func TestIPv4SourceValidation(t *testing.T) {
	l := upLab(t, lab.Config{NVEs: 2, IPv4Tenant: true})
	src, dst := task(t, l, "t3"), task(t, l, "t4")
	if !src.IPv4.IsValid() || !dst.IPv4.IsValid() {
		t.Fatalf("t3 %+v, t4 %+v: want IPv4 tenant tasks", src, dst)
	}
	reach(t, l, "t3", dst.IPv4)
	marker := []byte("issue-17-finding-6")
	count := func(from netip.Addr) int {
		t.Helper()
		c, err := l.StartCapture("t4", func(f []byte) bool { return bytes.Contains(f, marker) })
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := l.SendIPv4UDP("t3", "t4", from, 9999, marker); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		n, _ := c.Stop()
		return n
	}
	if n := count(src.IPv4); n != 5 {
		t.Errorf("from its own address: %d of 5 delivered", n)
	}
	if n := count(dst.IPv4); n != 0 {
		t.Errorf("from t4's address (spoofed): %d of 5 delivered, want none", n)
	}
	if n := count(netip.MustParseAddr("10.99.0.1")); n != 0 {
		t.Errorf("from an unknown address (spoofed): %d of 5 delivered, want none", n)
	}
}
