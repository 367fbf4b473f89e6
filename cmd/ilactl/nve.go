package main

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/spf13/cobra"
)

func newNVECmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nve",
		Short: "Add, list and show NVEs (hosts tasks attach to)",
	}
	cmd.AddCommand(newNVEAddCmd(g), newNVEListCmd(g), newNVEGetCmd(g), newNVEStatusCmd(g))
	cmd.AddCommand(newNVEBGPCmds(g)...)
	return cmd
}

func newNVEAddCmd(g *globals) *cobra.Command {
	var locs []string
	var underlay, regAddr string
	cmd := &cobra.Command{
		Use:   "add NAME --locator [DOMAIN=]LOC... --underlay ADDR [--reg-addr HOST:PORT]",
		Short: "Add an NVE or replace its record",
		Example: `  ilactl nve add nve1 --locator 2001:db8:ff:1 --underlay fd00::1 --reg-addr [fd00::1]:7482
  ilactl nve add nve2 --locator prod=2001:db8:ff:2 --locator dev=2001:db8:fe:2 --underlay fd00::2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := mapsrv.NVERecord{NVE: ila.NVE{Name: args[0]}}
			for _, s := range locs {
				dom, ls, pinned := strings.Cut(s, "=")
				if !pinned {
					ls, dom = dom, ""
				}
				l, err := ila.ParseLocator(ls)
				if err != nil {
					return fmt.Errorf("--locator: %w", err)
				}
				n.Locators = append(n.Locators, l)
				if pinned {
					if n.LocatorDomains == nil {
						n.LocatorDomains = map[string]string{}
					}
					n.LocatorDomains[l.String()] = dom
				}
			}
			var err error
			if n.Underlay, err = netip.ParseAddr(underlay); err != nil {
				return fmt.Errorf("--underlay %q: not an IP address", underlay)
			}
			if regAddr != "" {
				if n.RegAddr, err = netip.ParseAddrPort(regAddr); err != nil {
					return fmt.Errorf("--reg-addr %q: want ADDR:PORT like [fd00::1]:7482", regAddr)
				}
			}
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			out, err := c.AddNVE(cmd.Context(), n)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(out)
			}
			return g.printNVEs([]mapsrv.NVERecord{out})
		},
	}
	cmd.Flags().StringArrayVar(&locs, "locator", nil, "locator of the NVE, optionally pinned to a domain (DOMAIN=LOC); repeatable (required)")
	cmd.Flags().StringVar(&underlay, "underlay", "", "underlay (fabric, VTEP) address of the NVE (required)")
	cmd.Flags().StringVar(&regAddr, "reg-addr", "", "registration listener of the NVE's ilad, for move notifications")
	_ = cmd.MarkFlagRequired("locator")
	_ = cmd.MarkFlagRequired("underlay")
	return cmd
}

func newNVEListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the NVEs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			ns, err := c.NVEs(cmd.Context())
			if err != nil {
				return err
			}
			return g.printNVEs(ns)
		},
	}
}

func newNVEGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show an NVE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			n, err := c.NVE(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(n)
			}
			return g.printNVEs([]mapsrv.NVERecord{n})
		},
	}
}

func (g *globals) printNVEs(ns []mapsrv.NVERecord) error {
	if g.json() {
		if ns == nil {
			ns = []mapsrv.NVERecord{}
		}
		return g.printJSON(ns)
	}
	rows := make([][]string, 0, len(ns))
	for _, n := range ns {
		var locs []string
		for _, l := range n.Locators {
			if d, ok := n.LocatorDomains[l.String()]; ok {
				locs = append(locs, d+"="+l.String())
			} else {
				locs = append(locs, l.String())
			}
		}
		sort.Strings(locs)
		reg := "-"
		if n.RegAddr.IsValid() {
			reg = n.RegAddr.String()
		}
		rows = append(rows, append([]string{n.Name, strings.Join(locs, ","), n.Underlay.String(), reg, orDash(n.Status)}, livenessColumns(n.Liveness)...))
	}
	return g.printTable([]string{"NAME", "LOCATORS", "UNDERLAY", "REG-ADDR", "STATUS", "STATE", "EPOCH", "LAST-HEARD", "SINCE"}, rows)
}
