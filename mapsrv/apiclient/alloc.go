package apiclient

import (
	"context"
	"net/http"

	"github.com/ilamesh/ilamesh/mapsrv"
)

// Allocate returns the SIR address of the named task (POST
// /v1/allocations), allocating a unique one in the domain if the name has
// none yet; New in the answer says this call made the allocation.
func (c *Client) Allocate(ctx context.Context, r mapsrv.AllocRequest) (mapsrv.AllocBody, error) {
	var out mapsrv.AllocBody
	err := c.do(ctx, http.MethodPost, "/v1/allocations", r, &out)
	return out, err
}

// Allocation returns the allocation of task tenant/name (GET
// /v1/allocations/{tenant}/{name}).
func (c *Client) Allocation(ctx context.Context, tenant, name string) (mapsrv.Allocation, error) {
	var a mapsrv.Allocation
	p, err := allocPath(tenant, name)
	if err != nil {
		return a, err
	}
	err = c.do(ctx, http.MethodGet, p, nil, &a)
	return a, err
}

// Release removes the allocation of task tenant/name (DELETE
// /v1/allocations/{tenant}/{name}).
func (c *Client) Release(ctx context.Context, tenant, name string) error {
	p, err := allocPath(tenant, name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

func allocPath(tenant, name string) (string, error) {
	p, err := taskPath(tenant, name)
	if err != nil {
		return "", err
	}
	return "/v1/allocations/" + p[len("/v1/tasks/"):], nil
}
