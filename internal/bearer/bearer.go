// Package bearer checks the bearer tokens of an HTTP API: admin tokens,
// which may do anything, and read-only tokens, which may only look. The
// management API of mapsrv and the local API of ilad share it.
package bearer

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Role is what a token may do.
type Role int

const (
	// None: no token, or one not accepted.
	None Role = iota
	// Admin may read and change.
	Admin
	// ReadOnly may only GET and HEAD.
	ReadOnly
)

// Tokens is a set of accepted tokens with their roles.
type Tokens struct {
	want []token
}

type token struct {
	b    []byte
	role Role
}

// New returns the set of admin and read-only tokens.
func New(admin, readOnly []string) *Tokens {
	t := &Tokens{}
	for _, s := range admin {
		t.want = append(t.want, token{[]byte(s), Admin})
	}
	for _, s := range readOnly {
		t.want = append(t.want, token{[]byte(s), ReadOnly})
	}
	return t
}

// Check returns the token request r carries ("Authorization: Bearer T";
// present reports whether it has one at all) and its role (None if it is
// not accepted). Every token is compared, each in constant time, so the
// time taken does not tell which one matched or how much of one.
func (t *Tokens) Check(r *http.Request) (got string, present bool, role Role) {
	got, present = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	match := 0
	for _, w := range t.want {
		m := subtle.ConstantTimeCompare([]byte(got), w.b)
		match |= m
		if m == 1 {
			role = w.role
		}
	}
	if !present || match != 1 {
		return got, present, None
	}
	return got, present, role
}

// Allowed reports whether a token of this role may make a request with
// this method: an admin token anything, a read-only one GET and HEAD.
func Allowed(role Role, method string) bool {
	if role == Admin {
		return true
	}
	return role == ReadOnly && (method == http.MethodGet || method == http.MethodHead)
}
