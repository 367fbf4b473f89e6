//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// cmdDemo: up (3 NVEs), traffic, a hot move under traffic, DNS before and
// after, a report (text, report.json, timeline.svg), down.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("demo", stderr)
	var c common
	cfg := upConfig(fs, &c)
	out := fs.String("out", ".", "directory for report.json and timeline.svg")
	keep := fs.Bool("keep", false, "leave the lab up after the demo")
	before := fs.Duration("before", 1500*time.Millisecond, "traffic time before the move")
	after := fs.Duration("after", 1500*time.Millisecond, "traffic time after the move")
	workload := fs.String("workload", "", "vm: live-migrate a QEMU guest (adds one VM task) instead of moving a container task")
	via := fs.String("via", lab.ViaAuto, "how the hot move carries the task's link: auto (dual for IPv6 tasks, else carry), carry (the NVE end of its veth moves; loses the packets that arrive while the device is between namespaces) or dual (make-before-break with a second veth: lossless)")
	scenario := fs.String("scenario", "move", "move (a hot move under traffic) or failover (the NVE of a task with a hot standby dies under a 10 ms ping, then recovers; docs/FAILOVER.md)")
	cycles := fs.Int("cycles", 0, "failover: instead of one failover under traffic, N fail/recover cycles checked for a split brain and a steal-back (failover-cycles.json; docs/FAILOVER.md)")
	settle := fs.Duration("settle", time.Second, "failover --cycles: how long each cycle watches the mapping after the failed NVE recovered")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	if *scenario != "move" && *scenario != "failover" {
		return fmt.Errorf("demo: scenario %q: want move or failover", *scenario)
	}
	if *cycles < 0 || *cycles > 0 && *scenario != "failover" {
		return fmt.Errorf("demo: --cycles %d: want a positive count with --scenario failover", *cycles)
	}
	if err := needRoot(); err != nil {
		return err
	}
	if cfg.NVEs < 3 {
		return fmt.Errorf("demo: needs at least 3 NVEs")
	}
	switch *workload {
	case "":
	case lab.WorkloadVM:
		cfg.VMTasks = max(cfg.VMTasks, 1)
	default:
		return fmt.Errorf("demo: workload %q: want vm", *workload)
	}
	outDir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	cfg.StateDir, cfg.Name, cfg.Progress = c.stateDir, c.name, progress(stderr, c.quiet)
	l, err := lab.Up(ctx, *cfg)
	if err != nil {
		endProgress(stderr)
		if l != nil {
			l.Close()
		}
		if derr := lab.Down(cfg.StateDir, cfg.Name, nil); derr != nil {
			fmt.Fprintln(stderr, "ilalab: down:", derr)
		}
		return fmt.Errorf("demo: up: %w", err)
	}
	defer func() {
		if *keep {
			endProgress(stderr)
			fmt.Fprintf(stderr, "lab left up (state %s); remove it with: ilalab down --state-dir %s\n", cfg.StateDir, cfg.StateDir)
			l.Close()
			return
		}
		cfg.Progress("down")
		if err := l.Down(); err != nil {
			fmt.Fprintln(stderr, "ilalab: down:", err)
		}
		endProgress(stderr)
	}()
	if *scenario == "failover" {
		if *workload != "" && *workload != "container" {
			return fmt.Errorf("demo: --scenario failover runs with the default workload, not %q", *workload)
		}
		if *cycles > 0 {
			return failoverCycles(ctx, l, *cycles, *settle, outDir, stdout, stderr)
		}
		return failoverDemo(ctx, l, *before, *after, outDir, stdout, stderr)
	}
	rep, err := l.RunDemo(ctx, lab.DemoConfig{Before: *before, After: *after, Out: outDir, Via: *via, Workload: *workload})
	endProgress(stderr)
	if rep != nil && len(rep.Flows) > 0 {
		rep.Text(stdout)
		fmt.Fprintf(stdout, "\nreport: %s\ntimeline: %s\n", filepath.Join(outDir, "report.json"), filepath.Join(outDir, "timeline.svg"))
	}
	if err == nil && rep != nil && len(rep.Problems) > 0 {
		err = fmt.Errorf("demo: %d problem(s), see the report above", len(rep.Problems))
	}
	return err
}
