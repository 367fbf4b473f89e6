package locator

import "context"

// Call sends a request to another part of ilad's local API (the routing
// side's /v1/bgp, served next to the agent's) and decodes the JSON answer
// into out (nil: ignored).
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out)
}
