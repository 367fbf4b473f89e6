package apiclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ilamesh/ilamesh/ila"
)

// maxEvent is the longest event line accepted.
const maxEvent = 4 << 20

// Watch streams the mapping (GET /v1/watch): every domain, NVE and task as
// an upsert, then ila.EventSynced, then every change as mapsrv's store
// commits it. It calls fn for each event in order, on Watch's goroutine,
// and returns nil when ctx ends. Config.Timeout does not apply.
//
// A stream that breaks (mapsrv restarting, its store failing) ends Watch
// with an error; mapsrv closing the stream matches ErrUnavailable. A new
// Watch lists everything again but cannot say what was deleted in
// between: a consumer takes what arrives before EventSynced as the whole
// mapping.
func (c *Client) Watch(ctx context.Context, fn func(ila.Event)) error {
	const path = "/v1/watch"
	req, err := c.request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("mapsrv api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readError(resp, http.MethodGet, path)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEvent)
	for sc.Scan() {
		var ev ila.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("mapsrv api: watch: decode event %.100q: %w", sc.Bytes(), err)
		}
		fn(ev)
	}
	switch {
	case ctx.Err() != nil:
		return nil
	case sc.Err() != nil:
		return fmt.Errorf("mapsrv api: watch: %w", sc.Err())
	}
	return fmt.Errorf("mapsrv api: watch: stream closed by mapsrv: %w", ErrUnavailable)
}
