package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/spf13/cobra"
)

// watchEvent is an ila.Event as the API streams it (type as text).
type watchEvent struct {
	Type     string      `json:"type"`
	Revision int64       `json:"revision"`
	Task     *ila.Task   `json:"task,omitempty"`
	NVE      *ila.NVE    `json:"nve,omitempty"`
	Domain   *ila.Domain `json:"domain,omitempty"`
}

func newWatchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch",
		Short: "Stream mapping events (everything first, then changes) until interrupted",
		Long: `watch prints every domain, NVE and task as an upsert, a "synced" line,
then every change as it is committed. With -o json each event is one JSON
line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.watch(cmd.Context())
		},
	}
}

func (g *globals) watch(ctx context.Context) error {
	base := strings.TrimRight(g.api, "/")
	if !strings.HasPrefix(base, "http") {
		return fmt.Errorf("--api %q: want a URL like http://127.0.0.1:7480", g.api)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch", nil)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	if err := g.authorize(req); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("mapsrv api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb mapsrv.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return fmt.Errorf("mapsrv api: watch: %s (%s, HTTP %d)", eb.Error, eb.Code, resp.StatusCode)
		}
		return fmt.Errorf("mapsrv api: watch: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if g.json() {
			fmt.Fprintf(g.stdout, "%s\n", line)
			continue
		}
		var ev watchEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("watch: decode event: %w", err)
		}
		fmt.Fprintln(g.stdout, formatEvent(ev))
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("watch: %w", err)
	}
	if ctx.Err() == nil {
		return errors.New("watch: mapsrv closed the stream")
	}
	return nil
}

func formatEvent(ev watchEvent) string {
	switch {
	case ev.Task != nil:
		t := ev.Task
		return fmt.Sprintf("%-8d %-14s %s/%s %s/%s sir=%s locator=%s nve=%s state=%s version=%d",
			ev.Revision, ev.Type, t.Tenant, t.Name, t.Domain, t.Identifier, t.SIR, t.Locator, t.NVE, t.State, t.Version)
	case ev.NVE != nil:
		var locs []string
		for _, l := range ev.NVE.Locators {
			locs = append(locs, l.String())
		}
		return fmt.Sprintf("%-8d %-14s %s locators=%s underlay=%s", ev.Revision, ev.Type, ev.NVE.Name, strings.Join(locs, ","), ev.NVE.Underlay)
	case ev.Domain != nil:
		return fmt.Sprintf("%-8d %-14s %s sir=%s csum=%s", ev.Revision, ev.Type, ev.Domain.Name, ev.Domain.SIR, ev.Domain.Csum)
	}
	return fmt.Sprintf("%-8d %s", ev.Revision, ev.Type)
}
