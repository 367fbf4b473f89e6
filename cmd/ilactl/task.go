package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/spf13/cobra"
)

func newTaskCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Register, move, inspect and deregister tasks (VMs, containers)",
	}
	cmd.AddCommand(newTaskRegisterCmd(g), newTaskMoveCmd(g), newTaskGetCmd(g), newTaskListCmd(g),
		newTaskDeregisterCmd(g), newTaskClearCmd(g))
	return cmd
}

func newTaskRegisterCmd(g *globals) *cobra.Command {
	var (
		b                            mapsrv.RegisterBody
		ipv4, mac, loc, lifeTm, mode string
		sirs                         []string
	)
	cmd := &cobra.Command{
		Use:   "register NAME --tenant T --nve NVE (--sir ADDR | --ipv4 A --vni N) [--mac MAC] [--lifetime DUR]",
		Short: "Register a task at an NVE (a claim of a task active elsewhere is a move)",
		Example: `  ilactl task register web1 --tenant blue --nve nve1 --sir 2001:db8::1:0:0:10
  ilactl task register db1 --tenant green --nve nve2 --ipv4 10.0.0.5 --vni 42 --mac 02:00:00:00:00:05`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b.Name = args[0]
			var err error
			if len(sirs) > 1 {
				return fmt.Errorf("--sir given %d times: a task has one SIR address; register each further address as a task of its own", len(sirs))
			}
			sir := ""
			if len(sirs) == 1 {
				sir = sirs[0]
			}
			if sir != "" {
				if b.SIR, err = parseAddr6(sir); err != nil {
					return fmt.Errorf("--sir: %w", err)
				}
			}
			if ipv4 != "" {
				if b.IPv4, err = netip.ParseAddr(ipv4); err != nil || !b.IPv4.Unmap().Is4() {
					return fmt.Errorf("--ipv4 %q: not an IPv4 address", ipv4)
				}
			}
			if sir == "" && ipv4 == "" {
				return errors.New("give --sir ADDR, or --ipv4 A with --vni N")
			}
			if mac != "" {
				if b.MAC, err = ila.ParseMAC(mac); err != nil {
					return fmt.Errorf("--mac: %w", err)
				}
			}
			if loc != "" {
				if b.Locator, err = ila.ParseLocator(loc); err != nil {
					return fmt.Errorf("--locator: %w", err)
				}
			}
			if lifeTm != "" {
				d, err := time.ParseDuration(lifeTm)
				if err != nil || d < 0 {
					return fmt.Errorf("--lifetime %q: want a duration like 120s or 1h", lifeTm)
				}
				b.Lifetime = ila.Duration(d)
			}
			if b.Mode, err = ila.ParseMoveMode(mode); err != nil {
				return fmt.Errorf("--mode: %w", err)
			}
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			rec, err := c.Register(cmd.Context(), b)
			if err != nil {
				return err
			}
			return g.printTask(rec)
		},
	}
	f := cmd.Flags()
	f.StringVar(&b.Tenant, "tenant", "default", "tenant")
	f.StringVar(&b.NVE, "nve", "", "NVE the task runs on (required)")
	f.StringArrayVar(&sirs, "sir", nil, "SIR address of the task (one per task)")
	f.StringVar(&ipv4, "ipv4", "", "IPv4 address of an IPv4 tenant task (with --vni)")
	f.Uint32Var(&b.VNI, "vni", 0, "virtual network of an IPv4 tenant")
	f.StringVar(&mac, "mac", "", "MAC address of the task")
	f.StringVar(&lifeTm, "lifetime", "", "lifetime (default: does not expire)")
	f.StringVar(&b.Domain, "domain", "", "ILA domain (default: the one whose prefix holds --sir)")
	f.StringVar(&loc, "locator", "", "locator of the NVE to use (default: its locator for the domain)")
	f.StringVar(&mode, "mode", "", "move mode if the task is active on another NVE: hot, warm or cold")
	_ = cmd.MarkFlagRequired("nve")
	return cmd
}

func newTaskMoveCmd(g *globals) *cobra.Command {
	var tenant, mode string
	var b mapsrv.MoveBody
	cmd := &cobra.Command{
		Use:     "move NAME --tenant T --to NVE [--mode hot|warm|cold]",
		Short:   "Move a task to another NVE",
		Example: `  ilactl task move web1 --tenant blue --to nve2 --mode hot`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if b.Mode, err = ila.ParseMoveMode(mode); err != nil {
				return fmt.Errorf("--mode: %w", err)
			}
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			rec, err := c.Move(cmd.Context(), tenant, args[0], b)
			if err != nil {
				return err
			}
			return g.printTask(rec)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "default", "tenant")
	cmd.Flags().StringVar(&b.To, "to", "", "destination NVE (required)")
	cmd.Flags().StringVar(&mode, "mode", "hot", "move mode: hot, warm or cold")
	cmd.Flags().BoolVar(&b.Check, "check", false, "only ask whether mapsrv would accept the move now (flap damping, the destination); nothing changes. Ask before changing any link")
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.RegisterFlagCompletionFunc("mode", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"hot", "warm", "cold"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func newTaskGetCmd(g *globals) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "get NAME --tenant T",
		Short: "Show a task",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			rec, err := c.Task(cmd.Context(), tenant, args[0])
			if err != nil {
				return err
			}
			return g.printTask(rec)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "default", "tenant")
	return cmd
}

func newTaskListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every task",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			recs, err := c.Tasks(cmd.Context())
			if err != nil {
				return err
			}
			return g.printTasks(recs)
		},
	}
}

func newTaskDeregisterCmd(g *globals) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "deregister NAME --tenant T",
		Short: "Remove a task and its mapping",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			if err := c.Deregister(cmd.Context(), tenant, args[0]); err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(map[string]string{"deregistered": tenant + "/" + args[0]})
			}
			fmt.Fprintf(g.stdout, "deregistered %s/%s\n", tenant, args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "default", "tenant")
	return cmd
}

func newTaskClearCmd(g *globals) *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "clear-duplicate NAME --tenant T",
		Short: "Clear the duplicate mark flap damping put on a task",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			rec, err := c.ClearDuplicate(cmd.Context(), tenant, args[0])
			if err != nil {
				return err
			}
			return g.printTask(rec)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "default", "tenant")
	return cmd
}

// printTask prints one task as a JSON object or a table row.
func (g *globals) printTask(rec mapsrv.TaskRecord) error {
	if g.json() {
		return g.printJSON(rec)
	}
	return g.printTasks([]mapsrv.TaskRecord{rec})
}

// printTasks prints tasks as JSON (a list) or a table.
func (g *globals) printTasks(recs []mapsrv.TaskRecord) error {
	if g.json() {
		if recs == nil {
			recs = []mapsrv.TaskRecord{}
		}
		return g.printJSON(recs)
	}
	rows := make([][]string, 0, len(recs))
	for _, r := range recs {
		exp := "never"
		if !r.Expiry.IsZero() {
			exp = r.Expiry.UTC().Format(time.RFC3339)
		}
		var prev []string
		for _, p := range r.Previous {
			prev = append(prev, fmt.Sprintf("%s@%s until %s", p.NVE, p.Locator, p.Until.UTC().Format("15:04:05")))
		}
		state := string(r.State)
		if r.PendingNVE != "" {
			state += " -> " + r.PendingNVE
		}
		if e := r.Expect; e != nil {
			state += fmt.Sprintf(" (expected at %s until %s)", e.NVE, e.Until.UTC().Format("15:04:05"))
		}
		rows = append(rows, []string{r.Tenant, r.Name, r.Domain, r.Identifier.String(), r.SIR.String(), r.Locator.String(),
			r.NVE, state, strconv.FormatInt(r.Version, 10), exp, orDash(strings.Join(prev, ", "))})
	}
	return g.printTable([]string{"TENANT", "NAME", "DOMAIN", "IDENTIFIER", "SIR", "LOCATOR", "NVE", "STATE", "VERSION", "EXPIRES", "PREVIOUS"}, rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
