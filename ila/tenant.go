package ila

import (
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// DefaultTenant is the tenant of a task registered without one.
const DefaultTenant = "default"

// TenantID is the number a tenant's packets are checked against in the
// datapath: every mapping and every task-facing port carries the TenantID
// of its task. 0 means untagged (not checked).
type TenantID uint32

// TenantOf returns the TenantID of the tenant named name ("" is
// DefaultTenant): the 32-bit FNV-1a hash of the name, never 0. Every NVE
// computes the same id from the name alone.
func TenantOf(name string) TenantID {
	if name == "" {
		name = DefaultTenant
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	if id := TenantID(h.Sum32()); id != 0 {
		return id
	}
	return 1
}

// Policy lets two tenants reach each other (both directions). Tasks of one
// tenant always reach each other; tasks of different tenants only when a
// policy names the pair. Tenants holds the two names in ascending order.
type Policy struct {
	Tenants [2]string `json:"tenants"`
	Created time.Time `json:"created,omitzero"`
}

// NewPolicy returns the policy between tenants a and b (in either order).
func NewPolicy(a, b string) (Policy, error) {
	for _, n := range []string{a, b} {
		if n == "" || len(n) > 253 || strings.ContainsAny(n, "/ \t\r\n") {
			return Policy{}, &ParseError{What: "tenant", Input: n, Msg: "want 1 to 253 bytes without / or spaces"}
		}
	}
	if a == b {
		return Policy{}, &ParseError{What: "policy", Input: a + " " + b, Msg: "a tenant always reaches itself: name two different tenants"}
	}
	if b < a {
		a, b = b, a
	}
	return Policy{Tenants: [2]string{a, b}}, nil
}

// IDs returns the TenantIDs of the policy's tenants, lower first.
func (p Policy) IDs() (TenantID, TenantID) {
	a, b := TenantOf(p.Tenants[0]), TenantOf(p.Tenants[1])
	if b < a {
		a, b = b, a
	}
	return a, b
}

func (p Policy) String() string { return fmt.Sprintf("%s<->%s", p.Tenants[0], p.Tenants[1]) }
