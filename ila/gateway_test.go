package ila

import (
	"net/netip"
	"testing"
)

func TestGateway(t *testing.T) {
	if got := GatewayMAC().String(); got != "02:1a:00:00:00:01" {
		t.Errorf("GatewayMAC = %s", got)
	}
	if got := GatewayLinkLocal(); got != netip.MustParseAddr("fe80::1") {
		t.Errorf("GatewayLinkLocal = %s", got)
	}
}
