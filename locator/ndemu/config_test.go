package ndemu

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ilamesh/ilamesh/ila"
	"github.com/mdlayher/ndp"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no directory", Config{}, "directory is required"},
		{"defaults", Config{Directory: testDir}, ""},
		{"multicast gateway MAC", Config{Directory: testDir, GatewayMAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}, "gateway MAC"},
		{"short gateway MAC", Config{Directory: testDir, GatewayMAC: net.HardwareAddr{2, 0, 0}}, "gateway MAC"},
		{"global gateway address", Config{Directory: testDir, GatewayLL: addrA}, "link-local"},
		{"gateway address with zone", Config{Directory: testDir, GatewayLL: ila.GatewayLinkLocal().WithZone("p1")}, "link-local"},
		{"RA interval too short", Config{Directory: testDir, RAInterval: time.Millisecond}, "RA interval"},
		{"router lifetime too long", Config{Directory: testDir, RouterLifetime: 3 * time.Hour}, "router lifetime"},
		{"negative prefix lifetime", Config{Directory: testDir, PrefixLifetime: -time.Second}, "prefix lifetime"},
		{"negative claim interval", Config{Directory: testDir, ClaimInterval: -time.Second}, "claim interval"},
		{"IPv4 prefix", Config{Directory: testDir, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "IPv6 prefix"},
		{"invalid prefix", Config{Directory: testDir, Prefixes: []netip.Prefix{{}}}, "IPv6 prefix"},
		{"link-local prefix", Config{Directory: testDir, Prefixes: []netip.Prefix{netip.MustParsePrefix("fe80::/64")}}, "not a unicast SIR prefix"},
		{"DNS server multicast", Config{Directory: testDir, DNSServers: []netip.Addr{allNodes}}, "DNS server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("New error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	e, err := New(Config{Directory: testDir, Prefixes: []netip.Prefix{netip.MustParsePrefix("3333:0:0:1::5/64"), sir}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Prefix{sir}, e.Prefixes(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("prefixes masked and deduplicated (-want +got):\n%s", diff)
	}
	c := e.cfg
	if c.GatewayMAC.String() != "02:1a:00:00:00:01" || c.GatewayLL != ila.GatewayLinkLocal() || c.RAInterval != DefaultRAInterval ||
		c.RouterLifetime != DefaultRouterLifetime || c.PrefixLifetime != ndp.Infinity || c.ClaimInterval != DefaultClaimInterval || c.Logger == nil {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestRouterAdvertisement(t *testing.T) {
	t.Parallel()
	other := netip.MustParsePrefix("3333:0:0:2::/64")
	dns := netip.MustParseAddr("3333::53")
	e, err := New(Config{
		Directory: testDir, Prefixes: []netip.Prefix{sir, other}, MTU: 1400,
		DNSServers: []netip.Addr{dns}, RAInterval: 5 * time.Second, PrefixLifetime: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	pi := func(p netip.Prefix, life time.Duration) *ndp.PrefixInformation {
		return &ndp.PrefixInformation{PrefixLength: uint8(p.Bits()), OnLink: true, ValidLifetime: life, PreferredLifetime: life, Prefix: p.Addr()}
	}
	want := &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  DefaultRouterLifetime,
		Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: gatewayHW()},
			ndp.NewMTU(1400),
			pi(sir, time.Hour),
			pi(other, time.Hour),
			&ndp.RecursiveDNSServer{Lifetime: 15 * time.Second, Servers: []netip.Addr{dns}},
		},
	}
	opts := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if diff := cmp.Diff(want, e.routerAdvertisement(true), opts); diff != "" {
		t.Errorf("RA (-want +got):\n%s", diff)
	}

	// Withdrawing a prefix announces it with lifetime 0 for three
	// periodic RAs; answers to solicitations do not use up the rounds.
	if err := e.SetPrefixes([]netip.Prefix{sir}); err != nil {
		t.Fatal(err)
	}
	withdrawn := *want
	withdrawn.Options = []ndp.Option{want.Options[0], want.Options[1], pi(sir, time.Hour), pi(other, 0), want.Options[4]}
	if diff := cmp.Diff(&withdrawn, e.routerAdvertisement(false), opts); diff != "" {
		t.Errorf("RA answering an RS after withdrawal (-want +got):\n%s", diff)
	}
	for i := range withdrawRounds {
		if diff := cmp.Diff(&withdrawn, e.routerAdvertisement(true), opts); diff != "" {
			t.Errorf("periodic RA %d after withdrawal (-want +got):\n%s", i, diff)
		}
	}
	final := *want
	final.Options = []ndp.Option{want.Options[0], want.Options[1], pi(sir, time.Hour), want.Options[4]}
	if diff := cmp.Diff(&final, e.routerAdvertisement(true), opts); diff != "" {
		t.Errorf("RA after the withdrawal rounds (-want +got):\n%s", diff)
	}
	// Everything marshals.
	for _, ra := range []*ndp.RouterAdvertisement{want, &withdrawn} {
		if _, err := buildFrame(gatewayHW(), ila.GatewayLinkLocal(), out{msg: ra, dst: allNodes, dstMAC: allNodesMAC}); err != nil {
			t.Errorf("build RA frame: %v", err)
		}
	}
	// Re-adding a withdrawn prefix stops the withdrawal at once.
	if err := e.SetPrefixes([]netip.Prefix{sir}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetPrefixes([]netip.Prefix{sir, other}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, e.routerAdvertisement(true), opts); diff != "" {
		t.Errorf("RA after re-adding (-want +got):\n%s", diff)
	}
	if err := e.SetPrefixes([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); err == nil {
		t.Error("SetPrefixes with an IPv4 prefix: no error")
	}
}

func TestSLAACFlag(t *testing.T) {
	t.Parallel()
	e, err := New(Config{Directory: testDir, SLAAC: true, Prefixes: []netip.Prefix{sir, netip.MustParsePrefix("3333:0:1::/48")}})
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, o := range e.routerAdvertisement(true).Options {
		if p, ok := o.(*ndp.PrefixInformation); ok {
			got = append(got, p.AutonomousAddressConfiguration)
		}
	}
	if diff := cmp.Diff([]bool{true, false}, got); diff != "" {
		t.Errorf("autonomous flags, /64 then /48 (-want +got):\n%s", diff)
	}
}

func TestDamper(t *testing.T) {
	t.Parallel()
	d := damper{interval: time.Hour, last: map[dampKey]time.Time{}}
	macB := net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
	steps := []struct {
		ifindex int
		addr    netip.Addr
		mac     net.HardwareAddr
		kind    verdict
		want    bool
	}{
		{2, addrA, macA, verdictClaim, true},
		{2, addrA, macA, verdictClaim, false},
		{2, addrA, macA, verdictSpoofed, true},
		{3, addrA, macA, verdictClaim, true},
		{2, addrB, macA, verdictClaim, true},
		{2, addrB, macA, verdictClaim, false},
		{2, addrB, macB, verdictClaim, true},
		{2, addrB, macB, verdictClaim, false},
	}
	for i, s := range steps {
		if got := d.allow(s.ifindex, s.addr, s.mac, s.kind); got != s.want {
			t.Errorf("step %d allow(%d, %s, %s, %v) = %v, want %v", i, s.ifindex, s.addr, s.mac, s.kind, got, s.want)
		}
	}
	off := damper{}
	for i := range 2 {
		if !off.allow(1, addrA, macA, verdictClaim) {
			t.Errorf("damper with zero interval blocked event %d", i)
		}
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e, err := New(Config{Directory: testDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.AddPort(t.Context(), ""); err == nil {
		t.Error("AddPort with empty name: no error")
	}
	if err := e.AddPort(t.Context(), "a-very-long-interface-name"); err == nil {
		t.Error("AddPort with a 26-byte name: no error")
	}
	if err := e.RemovePort("p1"); err == nil {
		t.Error("RemovePort of an unserved port: no error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	if err := e.Run(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Run: %v, want ErrClosed", err)
	}
	if err := e.AddPort(t.Context(), "p1"); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPort after Run: %v, want ErrClosed", err)
	}
	if st := e.Stats(); st != (Stats{}) {
		t.Errorf("stats of an idle emulator: %+v", st)
	}
}
