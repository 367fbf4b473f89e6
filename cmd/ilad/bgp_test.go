package main

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator/bgp"
)

func TestBGPConfig(t *testing.T) {
	base := []string{"-node", "nve1", "-locator", "2001:db8:0:1", "-etcd", "unix:///x"}
	dir := t.TempDir()
	file := filepath.Join(dir, "ilad.json")
	os.WriteFile(file, []byte(`{"node": "nve1", "locators": ["2001:db8:0:1"], "etcd": ["unix:///x"], "underlay": "fd00::2",
  "bgp": {"asn": 65000, "router_id": "10.0.0.2", "hold_time": "6s", "peers": [{"address": "fd00::1", "asn": 65000, "port": 1179}]}}`), 0o600)
	cfg, err := parseConfig([]string{"-config", file, "-bgp-hold-time", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := &bgpSettings{Mode: bgpSpeaker, Config: bgp.Config{
		ASN: 65000, RouterID: netip.MustParseAddr("10.0.0.2"), NextHop: netip.MustParseAddr("fd00::2"),
		HoldTime: ila.Duration(3 * time.Second), RestartTime: ila.Duration(120 * time.Second),
		Peers: []bgp.Peer{{Address: netip.MustParseAddr("fd00::1"), ASN: 65000, Port: 1179}},
	}}
	if diff := cmp.Diff(want, cfg.BGP, cmpopts.EquateComparable(netip.Addr{}), cmpopts.IgnoreFields(bgp.Config{}, "Logger")); diff != "" {
		t.Errorf("bgp section from the file and a flag (-want +got):\n%s", diff)
	}

	cfg, err = parseConfig(append(base, "-bgp-mode", "kernel"), io.Discard)
	if err != nil || cfg.BGP.Protocol != defaultRouteProtocol {
		t.Fatalf("kernel mode: %v, %+v", err, cfg)
	}
	if cfg, err := parseConfig(base, io.Discard); err != nil || cfg.BGP != nil {
		t.Errorf("no bgp flags: %v, bgp %+v; want off", err, cfg.BGP)
	}

	speaker := append(base[:len(base):len(base)], "-bgp-asn", "65000", "-bgp-router-id", "10.0.0.2", "-bgp-peer", "65000@fd00::1")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no next hop", speaker, "no next hop"},
		{"garbage peer", append(speaker, "-underlay", "fd00::2", "-bgp-peer", "fd00::1"), "want ASN@ADDR"},
		{"peer bad asn", append(speaker, "-underlay", "fd00::2", "-bgp-peer", "x@fd00::1"), "AS number"},
		{"peer bad address", append(speaker, "-underlay", "fd00::2", "-bgp-peer", "65000@nohost"), "address"},
		{"asn zero", append(speaker, "-underlay", "fd00::2", "-bgp-asn", "0"), "local asn 0"},
		{"asn too big", append(speaker, "-underlay", "fd00::2", "-bgp-asn", "4294967296"), "32 bits"},
		{"router id v6", append(speaker, "-underlay", "fd00::2", "-bgp-router-id", "fd00::9"), "router id"},
		{"bad mode", append(speaker, "-underlay", "fd00::2", "-bgp-mode", "ospf"), "want speaker or kernel"},
		{"prefix on an nve", append(speaker, "-underlay", "fd00::2", "-bgp-prefix", "2001:db8:1::/64"), "router role"},
		{"protocol in speaker mode", append(speaker, "-underlay", "fd00::2", "-bgp-protocol", "99"), "mode kernel"},
		{"kernel protocol reserved", append(base, "-bgp-mode", "kernel", "-bgp-protocol", "2"), "want 5 to 254"},
		{"hold time short", append(speaker, "-underlay", "fd00::2", "-bgp-hold-time", "1s"), "hold time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseConfig(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseConfig(%q) = %v; want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// sink records what the announcer hands over.
type sink struct {
	mu       sync.Mutex
	prefixes []netip.Prefix
	ready    bool
}

func (s *sink) SetPrefixes(p []netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prefixes = p
	return nil
}

func (s *sink) SetReady(r bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = r
}

func TestAnnouncerOwnership(t *testing.T) {
	l1, l2 := ila.Locator(0x20010db800000001), ila.Locator(0x20010db800000002)
	s := &sink{}
	var warned []string
	a := newAnnouncer("nve1", false, []ila.Locator{l1, l2}, nil, s, func(msg string, args ...any) {
		warned = append(warned, msg)
	})
	nve := func(name string, ls ...ila.Locator) {
		a.event(ila.Event{Type: ila.EventNVEUpsert, NVE: &ila.NVE{Name: name, Locators: ls}})
	}
	// l2 is configured on nve1 but the store does not give it to nve1.
	nve("nve1", l1)
	if s.ready || s.prefixes != nil {
		t.Fatalf("before the store is listed: ready %v, prefixes %v; want nothing", s.ready, s.prefixes)
	}
	a.event(ila.Event{Type: ila.EventSynced})
	eq := cmpopts.EquateComparable(netip.Prefix{})
	if !s.ready || !cmp.Equal(s.prefixes, []netip.Prefix{l1.Prefix()}, eq) {
		t.Fatalf("synced: ready %v, prefixes %v; want ready with %v only", s.ready, s.prefixes, l1.Prefix())
	}
	if a.refusedCount() != 1 || len(warned) != 1 {
		t.Errorf("refused %d, warnings %q; want the refused locator counted and logged once", a.refusedCount(), warned)
	}
	// The store gives l2 to nve2: a second NVE configured with it must
	// not announce it.
	nve("nve2", l2)
	if !cmp.Equal(s.prefixes, []netip.Prefix{l1.Prefix()}, eq) || a.refusedCount() != 1 {
		t.Errorf("l2 in nve2's record: announcing %v, refused %d; want %v only", s.prefixes, a.refusedCount(), l1.Prefix())
	}
	// A hand-written record gives l1 to nve3 too: ambiguous, withdrawn.
	nve("nve3", l1)
	if len(s.prefixes) != 0 {
		t.Errorf("l1 claimed by two records: announcing %v; want nothing", s.prefixes)
	}
	a.event(ila.Event{Type: ila.EventNVEDelete, NVE: &ila.NVE{Name: "nve3"}})
	a.event(ila.Event{Type: ila.EventNVEDelete, NVE: &ila.NVE{Name: "nve2"}})
	nve("nve1", l1, l2)
	if !cmp.Equal(s.prefixes, []netip.Prefix{l1.Prefix(), l2.Prefix()}, eq) || a.refusedCount() != 0 {
		t.Errorf("store gives both to nve1: %v, refused %d", s.prefixes, a.refusedCount())
	}
}

func TestAnnouncerRouter(t *testing.T) {
	s := &sink{}
	a := newAnnouncer("r1", true, nil, nil, s, func(string, ...any) {})
	a.event(ila.Event{Type: ila.EventDomainUpsert, Domain: &ila.Domain{Name: "prod", SIR: ila.SIRPrefix(0x20010db800ff0000)}})
	a.event(ila.Event{Type: ila.EventSynced})
	a.event(ila.Event{Type: ila.EventDomainUpsert, Domain: &ila.Domain{Name: "dev", SIR: ila.SIRPrefix(0x20010db800fe0000)}})
	want := []netip.Prefix{netip.MustParsePrefix("2001:db8:fe::/64"), netip.MustParsePrefix("2001:db8:ff::/64")}
	if !s.ready || !cmp.Equal(s.prefixes, want, cmpopts.EquateComparable(netip.Prefix{})) {
		t.Errorf("router: ready %v, %v; want %v", s.ready, s.prefixes, want)
	}
	fixed := []netip.Prefix{netip.MustParsePrefix("2001:db8:aa::/64")}
	s2 := &sink{}
	b := newAnnouncer("r1", true, nil, fixed, s2, func(string, ...any) {})
	b.event(ila.Event{Type: ila.EventDomainUpsert, Domain: &ila.Domain{Name: "prod", SIR: ila.SIRPrefix(0x20010db800ff0000)}})
	b.event(ila.Event{Type: ila.EventSynced})
	if !cmp.Equal(s2.prefixes, fixed, cmpopts.EquateComparable(netip.Prefix{})) {
		t.Errorf("router with configured prefixes: %v; want %v", s2.prefixes, fixed)
	}
}
