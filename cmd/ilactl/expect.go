package main

import (
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/mapsrv"
	"github.com/spf13/cobra"
)

// newExpectCmd is `ilactl expect`: the orchestrator's announcement of a
// move, made before a live migration (mapsrv POST
// /v1/tasks/{tenant}/{name}/expect, admin token). Until the task moves or
// the TTL passes, the destination's claim of the task from its prepared
// port is justified (docs/registration.md section 7.4).
func newExpectCmd(g *globals) *cobra.Command {
	var tenant string
	var ttl time.Duration
	var cancel bool
	var b mapsrv.ExpectBody
	cmd := &cobra.Command{
		Use:   "expect NAME --nve NVE [--ttl 1m] [--tenant T] | expect NAME --cancel",
		Short: "Announce a move of a task to an NVE before a live migration (mapsrv; admin token)",
		Long: `Tell mapsrv that the task is about to move to NVE (a live migration, a
KubeVirt target pod): until the task moves or the TTL passes, NVE's claim of
the task from its prepared port (ilactl prepare, ila-cni ILA_PREPARE, the
libvirt hook) is accepted. Without it mapsrv refuses that claim (reason 15):
a prepared port is the NVE's own word, and one NVE's key must not take
another NVE's task. Ask again to extend the TTL; --cancel drops it.`,
		Example: `  ilactl expect vm1 --nve nve2 --ttl 2m
  ilactl expect vm1 --nve nve2 -o json
  ilactl expect vm1 --cancel`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cancel == (b.NVE != "") {
				return fmt.Errorf("give --nve (the destination) or --cancel")
			}
			if ttl < 0 {
				return fmt.Errorf("--ttl %v: must not be negative", ttl)
			}
			c, err := g.mapsrvClient()
			if err != nil {
				return err
			}
			if cancel {
				if err := c.Unexpect(cmd.Context(), tenant, args[0]); err != nil {
					return err
				}
				rec, err := c.Task(cmd.Context(), tenant, args[0])
				if err != nil {
					return err
				}
				return g.printTask(rec)
			}
			b.TTL = ila.Duration(ttl)
			rec, err := c.Expect(cmd.Context(), tenant, args[0], b)
			if err != nil {
				return err
			}
			return g.printTask(rec)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "default", "tenant")
	cmd.Flags().StringVar(&b.NVE, "nve", "", "the NVE the task moves to")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the expectation lasts (0: mapsrv's default, 1m; at most mapsrv --max-expect-ttl, 10m)")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "drop the task's expectation (the migration was called off)")
	return cmd
}
