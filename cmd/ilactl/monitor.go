package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ilamesh/ilamesh/locator"
	"github.com/spf13/cobra"
)

func newMonitorCmd(g *globals) *cobra.Command {
	var (
		f     iladFlags
		types []string
	)
	cmd := &cobra.Command{
		Use:   "monitor [--node NVE | --ilad ADDR]",
		Short: "Print an NVE's (or ILA router's) datapath events as they happen: drops with their reason, misses, redirects",
		Long: `monitor streams the events of one node's eBPF datapath through its ilad's
local API, like cilium monitor: packets dropped (with the counter that
counted them: drop_spoofed_source and drop_spoofed_ipv4 are source
validation refusals, drop_tenant a tenant policy, drop_unknown an
identifier neither here nor in flight, ...), lookup misses that went on
(pass_miss), and re-translations (inflight_forwarded after a move,
stale_redirected for a sender with an old mapping). Packets that hit are
never reported. The datapath reports only while someone monitors, at most
2000 events per CPU per second; what is over is reported as "lost".
Runs until interrupted.`,
		Example: `  ilactl monitor --node nve1
  ilactl monitor --ilad /run/ilalab/ilad-nve1.sock -o json --type drop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			want := map[string]bool{}
			for _, t := range types {
				for _, x := range strings.Split(t, ",") {
					switch x {
					case "drop", "miss", "redirect", "lost":
						want[x] = true
					default:
						return fmt.Errorf("--type %q: want drop, miss, redirect or lost", x)
					}
				}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.stdout)
			var werr error
			err = c.Monitor(cmd.Context(), func(ev locator.MonitorEvent) {
				if werr != nil || len(want) > 0 && !want[ev.Type] {
					return
				}
				if g.json() {
					werr = enc.Encode(ev)
					return
				}
				_, werr = fmt.Fprintln(g.stdout, monitorLine(ev))
			})
			if werr != nil {
				return werr
			}
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().StringSliceVar(&types, "type", nil, "only these event types (drop, miss, redirect, lost; repeatable or comma-separated)")
	return cmd
}

// monitorLine is an event as one line of text.
func monitorLine(ev locator.MonitorEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %-8s", ev.Time.Format("15:04:05.000000"), ev.Node, ev.Type)
	if ev.Type == "lost" {
		fmt.Fprintf(&b, " %d events not reported", ev.Lost)
		return b.String()
	}
	fmt.Fprintf(&b, " %s", ev.Reason)
	switch {
	case ev.Iface != "":
		fmt.Fprintf(&b, " on %s", ev.Iface)
	case ev.Ifindex != 0:
		fmt.Fprintf(&b, " on ifindex %d", ev.Ifindex)
	}
	src, dst := "?", "?"
	if ev.Src.IsValid() {
		src = ev.Src.String()
	}
	if ev.Dst.IsValid() {
		dst = ev.Dst.String()
	}
	fmt.Fprintf(&b, " %s -> %s", src, dst)
	if ev.Locator != 0 {
		fmt.Fprintf(&b, " to locator %s", ev.Locator)
	}
	fmt.Fprintf(&b, " len %d", ev.Len)
	return b.String()
}
