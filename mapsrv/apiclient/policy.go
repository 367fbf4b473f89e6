package apiclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// Policies lists the tenant policies (GET /v1/policies).
func (c *Client) Policies(ctx context.Context) ([]ila.Policy, error) {
	var ps []ila.Policy
	if err := c.do(ctx, http.MethodGet, "/v1/policies", nil, &ps); err != nil {
		return nil, err
	}
	return ps, nil
}

// AllowTenants lets the tasks of tenants a and b reach each other (POST
// /v1/policies).
func (c *Client) AllowTenants(ctx context.Context, a, b string) (ila.Policy, error) {
	var p ila.Policy
	err := c.do(ctx, http.MethodPost, "/v1/policies", mapsrv.PolicyBody{Tenants: [2]string{a, b}}, &p)
	return p, err
}

// DisallowTenants removes the policy between a and b (DELETE
// /v1/policies/{a}/{b}).
func (c *Client) DisallowTenants(ctx context.Context, a, b string) error {
	if err := mapsrv.CheckName("tenant", a); err != nil {
		return err
	}
	if err := mapsrv.CheckName("tenant", b); err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/policies/"+url.PathEscape(a)+"/"+url.PathEscape(b), nil, nil)
}
