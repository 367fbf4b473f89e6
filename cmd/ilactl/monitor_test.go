package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
)

func TestMonitorLine(t *testing.T) {
	at := time.Date(2026, 12, 6, 8, 1, 2, 345678000, time.UTC)
	for _, tc := range []struct {
		ev   locator.MonitorEvent
		want string
	}{
		{locator.MonitorEvent{Time: at, Node: "nve1", Type: "drop", Reason: "drop_spoofed_source", Iface: "vweb", Src: netip.MustParseAddr("3333::7777"), Dst: netip.MustParseAddr("3333::2"), Len: 118},
			"08:01:02.345678 nve1 drop     drop_spoofed_source on vweb 3333::7777 -> 3333::2 len 118"},
		{locator.MonitorEvent{Time: at, Node: "nve1", Type: "redirect", Reason: "inflight_forwarded", Ifindex: 4, Src: netip.MustParseAddr("3333::1"), Dst: netip.MustParseAddr("3333::2"), Locator: ila.Locator(0x2001_0db8_0000_0002), Len: 90},
			"08:01:02.345678 nve1 redirect inflight_forwarded on ifindex 4 3333::1 -> 3333::2 to locator 2001:db8:0:2 len 90"},
		{locator.MonitorEvent{Time: at, Node: "nve1", Type: "drop", Reason: "drop_malformed", Len: 20},
			"08:01:02.345678 nve1 drop     drop_malformed ? -> ? len 20"},
		{locator.MonitorEvent{Time: at, Node: "r", Type: "lost", Lost: 12}, "08:01:02.345678 r lost     12 events not reported"},
	} {
		if got := monitorLine(tc.ev); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestMonitorBadType(t *testing.T) {
	_, err := ilactl(t, "monitor", "--ilad", "/nonexistent.sock", "--type", "drop,hit")
	if err == nil || !strings.Contains(err.Error(), `--type "hit"`) {
		t.Errorf("err %v", err)
	}
}
