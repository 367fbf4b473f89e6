//go:build linux

package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"

	"github.com/ilamesh/ilamesh/internal/netns"
	"github.com/ilamesh/ilamesh/internal/testutil"
)

// TestKernelRoutes: kernel mode installs the wanted prefixes as blackhole
// routes with ilad's protocol only while ready and not drained, leaves
// other protocols' routes alone and removes what it no longer wants.
func TestKernelRoutes(t *testing.T) {
	testutil.Privileged(t)
	ns, err := netns.New(netns.Unique("kr"))
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("kernel refused a network namespace: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	// Someone else's route (static, protocol 4) in the way of nothing.
	other := netip.MustParsePrefix("2001:db8:99::/64")
	if err := h.RouteAdd(&netlink.Route{Dst: ipnet(other), Type: 6 /* blackhole */, Protocol: 4}); err != nil {
		t.Fatal(err)
	}
	k := &kernelRoutes{h: h, proto: defaultRouteProtocol, log: slog.New(slog.DiscardHandler)}
	l1, l2 := netip.MustParsePrefix("2001:db8:0:1::/64"), netip.MustParsePrefix("2001:db8:0:2::/64")
	eq := cmpopts.EquateComparable(netip.Prefix{})
	check := func(what string, want []netip.Prefix) {
		t.Helper()
		if got := k.state().Installed; !cmp.Equal(got, want, eq, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b netip.Prefix) bool { return a.Addr().Less(b.Addr()) })) {
			t.Errorf("%s: installed %v, want %v", what, got, want)
		}
	}
	if err := k.SetPrefixes([]netip.Prefix{l1, l2}); err != nil {
		t.Fatal(err)
	}
	check("not ready", nil)
	k.SetReady(true)
	check("ready", []netip.Prefix{l1, l2})
	rs, _ := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Protocol: defaultRouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	for _, r := range rs {
		if r.Type != 6 {
			t.Errorf("route %v: type %d, want blackhole", r.Dst, r.Type)
		}
	}
	if err := k.SetPrefixes([]netip.Prefix{l2}); err != nil {
		t.Fatal(err)
	}
	check("l1 no longer wanted", []netip.Prefix{l2})
	k.SetDrained(true)
	check("drained", nil)
	k.SetDrained(false)
	check("undrained", []netip.Prefix{l2})
	all, _ := h.RouteList(nil, netlink.FAMILY_V6)
	found := false
	for _, r := range all {
		if r.Dst != nil && r.Dst.String() == other.String() {
			found = true
		}
	}
	if !found {
		t.Errorf("the static route %s of another protocol was removed", other)
	}
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}
}

// TestDrainSurvivesRestart: a drain is recorded next to the state file,
// so the restarted ilad announces nothing until undrained.
func TestDrainSurvivesRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "nve1.tasks.json")
	cfg, err := parseConfig([]string{"-node", "nve1", "-locator", "2001:db8:0:1", "-etcd", "unix:///x", "-state-file", state,
		"-underlay", "fd00::2", "-bgp-asn", "65000", "-bgp-router-id", "10.0.0.2", "-bgp-peer", "65000@fd00::1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	drained := func() bool {
		t.Helper()
		b, err := newBGPSide(cfg, log, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		return b.status(t.Context()).Speaker.Drained
	}
	b, err := newBGPSide(cfg, log, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if drained() {
		t.Fatal("drained before any drain")
	}
	if err := b.setDrained(true); err != nil {
		t.Fatal(err)
	}
	if !drained() {
		t.Error("a restart after a drain announces again: want it still drained")
	}
	if err := b.setDrained(false); err != nil {
		t.Fatal(err)
	}
	if drained() {
		t.Error("still drained after undrain and a restart")
	}
}
