package main

import (
	"fmt"

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
			if g.json() {
				return g.printJSON(st)
			}
			return printTasks(g, []locator.TaskStatus{st})
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
