package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/spf13/cobra"
)

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
	c, err := g.mapsrvClient()
	if err != nil {
		return err
	}
	// An event that cannot be printed ends the watch with that error.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var perr error
	err = c.Watch(wctx, func(ev ila.Event) {
		if perr != nil {
			return
		}
		if g.json() {
			var b []byte
			if b, perr = json.Marshal(ev); perr == nil {
				_, perr = fmt.Fprintf(g.stdout, "%s\n", b)
			}
		} else {
			_, perr = fmt.Fprintln(g.stdout, formatEvent(ev))
		}
		if perr != nil {
			cancel()
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("watch: %w", err)
	case perr != nil:
		return fmt.Errorf("watch: print event: %w", perr)
	}
	return nil
}

func formatEvent(ev ila.Event) string {
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
