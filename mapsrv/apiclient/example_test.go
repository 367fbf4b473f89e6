package apiclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/ilamesh/ilamesh/mapsrv/apiclient"
	"github.com/ilamesh/ilamesh/mapsrv/mapsrvtest"
)

func Example() {
	// A mapping service with an in-memory store, behind its API.
	svc, err := mapsrv.New(mapsrv.Config{Store: &mapsrvtest.Store{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(mapsrv.NewAPI(svc, mapsrv.APIOptions{Tokens: []string{"ops-token-0123456789"}}))
	defer srv.Close()

	c, err := apiclient.New(apiclient.Config{URL: srv.URL, Token: "ops-token-0123456789"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	sir, _ := ila.ParseSIRPrefix("2001:db8::/64")
	if _, err := c.AddDomain(ctx, ila.Domain{Name: "prod", SIR: sir, Csum: ila.CsumNeutralMap}); err != nil {
		fmt.Println(err)
		return
	}
	for i, name := range []string{"nve1", "nve2"} {
		n := mapsrv.NVERecord{NVE: ila.NVE{Name: name, Locators: []ila.Locator{ila.Locator(0xfd00_0000_0000_0001 + uint64(i))}, Underlay: netip.MustParseAddr("fd99::1")}}
		if _, err := c.AddNVE(ctx, n); err != nil {
			fmt.Println(err)
			return
		}
	}

	rec, err := c.Register(ctx, mapsrv.RegisterBody{NVE: "nve1", Tenant: "blue", Name: "web", SIR: netip.MustParseAddr("2001:db8::1:0:0:7")})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.Identifier, rec.NVE, rec.Locator, rec.Version)

	rec, err = c.Move(ctx, "blue", "web", mapsrv.MoveBody{To: "nve2", Mode: ila.MoveHot})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rec.NVE, rec.Locator, rec.Version, rec.Previous[0].Locator)

	// Errors match mapsrv's sentinels.
	_, err = c.Move(ctx, "blue", "web", mapsrv.MoveBody{To: "nve3"})
	fmt.Println(errors.Is(err, mapsrv.ErrNotFound))
	_, err = c.Move(ctx, "blue", "web", mapsrv.MoveBody{To: "nve2"})
	fmt.Println(errors.Is(err, mapsrv.ErrInvalid), err)

	// Without the token.
	anon, _ := apiclient.New(apiclient.Config{URL: srv.URL})
	_, err = anon.Tasks(ctx)
	fmt.Println(errors.Is(err, apiclient.ErrUnauthorized))
	// Output:
	// 1:0:0:7 nve1 fd00:0:0:1 1
	// nve2 fd00:0:0:2 2 fd00:0:0:1
	// true
	// true move task blue/web (1:0:0:7): already on nve nve2: invalid request (invalid, HTTP 400)
	// true
}
