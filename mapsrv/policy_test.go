package mapsrv_test

import (
	"errors"
	"testing"

	"github.com/ilamesh/ilamesh/mapsrv"
)

func TestDecodePolicy(t *testing.T) {
	tests := []struct {
		name, key, value string
		ok               bool
	}{
		{"good", "/ila/v1/policies/blue/red", `{"tenants":["blue","red"],"created":"2026-12-01T00:00:00Z"}`, true},
		{"unordered", "/ila/v1/policies/red/blue", `{"tenants":["red","blue"]}`, false},
		{"key mismatch", "/ila/v1/policies/blue/green", `{"tenants":["blue","red"]}`, false},
		{"same tenant", "/ila/v1/policies/red/red", `{"tenants":["red","red"]}`, false},
		{"empty tenant", "/ila/v1/policies//red", `{"tenants":["","red"]}`, false},
		{"unknown field", "/ila/v1/policies/blue/red", `{"tenants":["blue","red"],"x":1}`, true}, // decodeStrict allows unknown fields like the other records
		{"not json", "/ila/v1/policies/blue/red", `blue red`, false},
		{"trailing", "/ila/v1/policies/blue/red", `{"tenants":["blue","red"]} {}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := mapsrv.DecodePolicy(tc.key, []byte(tc.value))
			if (err == nil) != tc.ok {
				t.Fatalf("DecodePolicy = %v, %v; want ok %v", p, err, tc.ok)
			}
			if err != nil && !errors.Is(err, mapsrv.ErrMalformed) {
				t.Errorf("error %v does not match ErrMalformed", err)
			}
		})
	}
	if got, want := mapsrv.PolicyKey("red", "blue"), "/ila/v1/policies/blue/red"; got != want {
		t.Errorf("PolicyKey = %q, want %q", got, want)
	}
}
