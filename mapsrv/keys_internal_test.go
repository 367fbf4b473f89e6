package mapsrv

import (
	"testing"

	"github.com/ilamesh/ilamesh/ila"
)

func TestAppendLocator(t *testing.T) {
	for _, l := range []ila.Locator{0, 1, 0xfd00000000000001, 0xffffffffffffffff, 0x0001001000000100, 0x1234abcd0000f00f, 0x000a00b000c0d000} {
		if got, want := string(appendLocator(nil, l)), l.String(); got != want {
			t.Errorf("appendLocator(%#x) = %q, want %q", uint64(l), got, want)
		}
	}
}

func TestNVEPin(t *testing.T) {
	n := NVERecord{LocatorDomains: map[string]string{"fd00:0:0:1": "prod"}}
	tests := []struct {
		l      ila.Locator
		want   string
		pinned bool
	}{
		{0xfd00000000000001, "prod", true},
		{0xfd00000000000002, "", false},
	}
	for _, tt := range tests {
		if got, ok := n.pin(tt.l); got != tt.want || ok != tt.pinned {
			t.Errorf("pin(%s) = %q, %v; want %q, %v", tt.l, got, ok, tt.want, tt.pinned)
		}
	}
}
