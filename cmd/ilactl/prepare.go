package main

import (
	"fmt"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"

	"github.com/spf13/cobra"
)

// newPrepareCmd prepares a task at the destination of a live migration.
func newPrepareCmd(g *globals) *cobra.Command { return newAttachOrPrepareCmd(g, true) }

func prepareHelp(cmd *cobra.Command) {
	cmd.Use = "prepare NAME --iface IF --sir ADDR [--tenant T] [--mac M] [--qmp SOCKET]"
	cmd.Short = "Prepare a task on an NVE ahead of its arrival (live migration destination)"
	cmd.Long = `prepare tells the ilad of an NVE that a task is about to arrive on the
interface IF (the tap of an incoming QEMU): ilad prepares the port, the
datapath, local delivery, the ND emulator and the IPv4 hooks, and does not
register the task. It commits (registers the task here, which moves its
mapping) on whichever comes first: the task's first announce frame on the
port (QEMU's RARP, a gratuitous ARP, an unsolicited NA or a packet from its
address), "ilactl commit", or QEMU reporting the guest running (--qmp).
"ilactl abort" drops a prepared task without touching its mapping.`
	cmd.Example = `  ilactl prepare web --node nve2 --iface tap-web --sir 3333:0:0:1::1001 --tenant t1 --mac 52:54:00:00:10:01`
}

func newCommitCmd(g *globals) *cobra.Command {
	var f iladFlags
	cmd := &cobra.Command{
		Use:     "commit NAME",
		Short:   "Commit a prepared task (register it here; its mapping moves)",
		Example: `  ilactl commit web --node nve2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			st, err := c.Commit(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printTask(g, st)
		},
	}
	f.add(cmd)
	return cmd
}

func newAbortCmd(g *globals) *cobra.Command {
	var f iladFlags
	cmd := &cobra.Command{
		Use:     "abort NAME",
		Short:   "Drop a prepared task (failed migration); its mapping is not touched",
		Example: `  ilactl abort web --node nve2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.Abort(cmd.Context(), args[0]); err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(map[string]string{"aborted": args[0]})
			}
			fmt.Fprintf(g.stdout, "aborted %s\n", args[0])
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

// newHandoverCmd arms the early redirect at the source of a live
// migration.
func newHandoverCmd(g *globals) *cobra.Command {
	var f iladFlags
	var to string
	var h locator.HandoverSpec
	cmd := &cobra.Command{
		Use:   "handover NAME --to LOCATOR [--qmp SOCKET | --now]",
		Short: "At the source of a live migration: redirect the task's packets to its destination from the guest's stop on",
		Long: `handover tells the ilad of the NVE a task is leaving where it goes (the
destination NVE's locator, where the task is prepared). When the guest stops
here (QEMU's STOP on the monitor socket --qmp, by default the one the task
was attached with) or at once with --now, the packets still arriving here
for the task are redirected to the destination, whose prepared port holds
them until the guest runs there, instead of being delivered to the stopped
guest. The move's commit then takes over; if the guest runs here again (a
failed migration), or nothing commits within 30 s, local delivery comes
back. The mapping is not touched. Run it after "ilactl prepare" at the
destination and before QEMU's migrate.`,
		Example: `  ilactl handover web --node nve1 --to fd00:1c:0:2 --qmp /run/qemu/web-ilad.qmp`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			loc, err := ila.ParseLocator(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			h.Locator = loc
			c, err := f.client()
			if err != nil {
				return err
			}
			st, err := c.Handover(cmd.Context(), args[0], h)
			if err != nil {
				return err
			}
			return printTask(g, st)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&to, "to", "", "locator of the destination NVE (for the task's domain)")
	cmd.Flags().StringVar(&h.QMP, "qmp", "", "QEMU monitor socket of the VM on this host (default: the task's own)")
	cmd.Flags().BoolVar(&h.Now, "now", false, "redirect at once (the guest has stopped)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// printTask prints one task's status as JSON or a table row.
func printTask(g *globals, st locator.TaskStatus) error {
	if g.json() {
		return g.printJSON(st)
	}
	return printTasks(g, []locator.TaskStatus{st})
}
