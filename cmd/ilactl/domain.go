package main

import (
	"fmt"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/spf13/cobra"
)

func newDomainCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "domain",
		Short: "Add and list ILA domains (SIR prefix, checksum mode)",
	}
	cmd.AddCommand(newDomainAddCmd(g), newDomainListCmd(g))
	return cmd
}

func newDomainAddCmd(g *globals) *cobra.Command {
	var sir, format string
	var csum *csumFlag
	cmd := &cobra.Command{
		Use:     "add NAME --sir-prefix PREFIX [--csum MODE] [--format typed|iid]",
		Short:   "Add an ILA domain",
		Example: `  ilactl domain add prod --sir-prefix 2001:db8:1::/64 --csum neutral-map`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := ila.ParseSIRPrefix(sir)
			if err != nil {
				return fmt.Errorf("--sir-prefix: %w", err)
			}
			var f ila.Format
			if err := f.UnmarshalText([]byte(format)); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			d := ila.Domain{Name: args[0], SIR: p, Csum: csum.m, Format: f}
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			out, err := c.AddDomain(cmd.Context(), d)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(out)
			}
			return g.printDomains([]ila.Domain{out})
		},
	}
	cmd.Flags().StringVar(&sir, "sir-prefix", "", "SIR prefix (/64) of the domain (required)")
	cmd.Flags().StringVar(&format, "format", "typed", "identifier format: typed or iid")
	csum = addCsumFlag(cmd)
	_ = cmd.MarkFlagRequired("sir-prefix")
	return cmd
}

func newDomainListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the ILA domains",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			ds, err := c.Domains(cmd.Context())
			if err != nil {
				return err
			}
			return g.printDomains(ds)
		},
	}
}

func (g *globals) printDomains(ds []ila.Domain) error {
	if g.json() {
		if ds == nil {
			ds = []ila.Domain{}
		}
		return g.printJSON(ds)
	}
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, []string{d.Name, d.SIR.String(), d.Csum.String(), d.Format.String()})
	}
	return g.printTable([]string{"NAME", "SIR-PREFIX", "CSUM", "FORMAT"}, rows)
}
