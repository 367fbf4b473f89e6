package ila_test

import (
	"testing"

	"github.com/ilamesh/ilamesh/ila"
)

func TestTenantOf(t *testing.T) {
	if ila.TenantOf("") != ila.TenantOf(ila.DefaultTenant) {
		t.Error("the empty tenant is not the default tenant")
	}
	seen := map[ila.TenantID]string{}
	for _, n := range []string{"default", "red", "blue", "t1", "t2", "t3", "v4"} {
		id := ila.TenantOf(n)
		if id == 0 {
			t.Errorf("TenantOf(%q) = 0 (untagged)", n)
		}
		if o, dup := seen[id]; dup {
			t.Errorf("TenantOf(%q) = TenantOf(%q)", n, o)
		}
		seen[id] = n
		if ila.TenantOf(n) != id {
			t.Errorf("TenantOf(%q) not stable", n)
		}
	}
}

func TestNewPolicy(t *testing.T) {
	p, err := ila.NewPolicy("red", "blue")
	if err != nil || p.Tenants != [2]string{"blue", "red"} {
		t.Fatalf("NewPolicy(red, blue) = %v, %v", p, err)
	}
	a, b := p.IDs()
	if a > b || (a != ila.TenantOf("red") && a != ila.TenantOf("blue")) {
		t.Errorf("IDs = %d, %d", a, b)
	}
	for _, bad := range [][2]string{{"red", "red"}, {"", "red"}, {"a/b", "red"}, {"a b", "red"}} {
		if _, err := ila.NewPolicy(bad[0], bad[1]); err == nil {
			t.Errorf("NewPolicy(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
