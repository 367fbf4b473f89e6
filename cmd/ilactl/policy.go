package main

import (
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/spf13/cobra"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Let tenants reach each other (tenants are isolated by default)",
		Long: `Tasks of one tenant reach each other; tasks of different tenants only
when a policy names the pair (both directions). See docs/TENANTS.md.`,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:     "allow TENANT TENANT",
			Short:   "Let the tasks of two tenants reach each other",
			Example: `  ilactl policy allow blue red`,
			Args:    cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.mapsrvClient()
				if err != nil {
					return err
				}
				p, err := c.AllowTenants(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				return g.printPolicies([]ila.Policy{p})
			},
		},
		&cobra.Command{
			Use:   "deny TENANT TENANT",
			Short: "Remove the policy between two tenants: they are isolated again",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.mapsrvClient()
				if err != nil {
					return err
				}
				return c.DisallowTenants(cmd.Context(), args[0], args[1])
			},
		},
		&cobra.Command{
			Use:   "list",
			Short: "List the tenant policies",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.mapsrvClient()
				if err != nil {
					return err
				}
				ps, err := c.Policies(cmd.Context())
				if err != nil {
					return err
				}
				return g.printPolicies(ps)
			},
		},
	)
	return cmd
}

func (g *globals) printPolicies(ps []ila.Policy) error {
	if g.json() {
		if ps == nil {
			ps = []ila.Policy{}
		}
		return g.printJSON(ps)
	}
	rows := make([][]string, 0, len(ps))
	for _, p := range ps {
		rows = append(rows, []string{p.Tenants[0], p.Tenants[1], p.Created.Format(time.RFC3339)})
	}
	return g.printTable([]string{"TENANT", "TENANT", "CREATED"}, rows)
}
