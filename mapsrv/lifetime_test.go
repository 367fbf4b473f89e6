package mapsrv_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// TestLifetimeCapped: the protocol's longest lifetime (65535 units, 72 h)
// is granted only up to Config.MaxLifetime, by default one hour.
func TestLifetimeCapped(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  time.Duration
		ask  time.Duration
		want time.Duration
	}{
		{"default cap", 0, mapsrv.MaxLifetime, time.Hour},
		{"below the cap", 0, 2 * time.Minute, 2 * time.Minute},
		{"configured cap", 10 * time.Minute, mapsrv.MaxLifetime, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *mapsrv.Config) { c.MaxLifetime = tc.max })
			rec, err := f.svc.Register(t.Context(), mapsrv.Registration{NVE: "a", Tenant: "t1", Name: "vm1", SIR: netip.MustParseAddr("2001:db8::1"), Lifetime: tc.ask})
			if err != nil {
				t.Fatal(err)
			}
			if rec.Lifetime != ila.Duration(tc.want) || !rec.Expiry.Equal(f.clk.Now().Add(tc.want)) {
				t.Errorf("granted %v until %v, want %v", time.Duration(rec.Lifetime), rec.Expiry, tc.want)
			}
		})
	}
}
