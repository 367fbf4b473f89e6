//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// cmdFailover runs `ilalab standby TASK --on NVE`, `ilalab fail WHAT` and
// `ilalab recover WHAT` (docs/FAILOVER.md).
func cmdFailover(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flags(cmd, stderr)
	var c common
	c.register(fs)
	on := fs.String("on", "", "standby: the NVE holding the standby (e.g. nve3)")
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if target == "" && fs.NArg() > 0 {
		target = fs.Arg(0)
	}
	usage := map[string]string{
		"standby": "ilalab standby TASK --on NVE",
		"fail":    "ilalab fail NVE|mapsrv|router|routerN",
		"recover": "ilalab recover NVE|mapsrv|router|routerN",
	}[cmd]
	if target == "" || (cmd == "standby") != (*on != "") {
		return errors.New(cmd + ": usage: " + usage)
	}
	if err := needRoot(); err != nil {
		return err
	}
	l, err := lab.Load(c.stateDir, progress(stderr, c.quiet))
	if err != nil {
		return err
	}
	defer l.Close()
	defer endProgress(stderr)
	switch cmd {
	case "standby":
		if err := l.Standby(ctx, target, *on); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s has a hot standby on %s\n", target, *on)
	case "fail":
		if err := l.Fail(ctx, target); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s failed\n", target)
	case "recover":
		if err := l.Recover(ctx, target); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s recovered\n", target)
	}
	return nil
}

// failoverDemo runs `ilalab demo --scenario failover` on a lab that is up.
func failoverDemo(ctx context.Context, l *lab.Lab, before, after time.Duration, outDir string, stdout, stderr io.Writer) error {
	rep, err := l.RunFailoverDemo(ctx, before, after, outDir)
	endProgress(stderr)
	if rep != nil && len(rep.Flows) > 0 {
		rep.Text(stdout)
		fmt.Fprintf(stdout, "\nreport: %s\n", filepath.Join(outDir, "failover-report.json"))
	}
	if err == nil && rep != nil && len(rep.Problems) > 0 {
		err = fmt.Errorf("demo: %d problem(s), see the report above", len(rep.Problems))
	}
	return err
}

// failoverCycles runs `ilalab demo --scenario failover --cycles N`.
func failoverCycles(ctx context.Context, l *lab.Lab, n int, settle time.Duration, outDir string, stdout, stderr io.Writer) error {
	rep, err := l.RunFailoverCycles(ctx, lab.CyclesConfig{Cycles: n, Settle: settle})
	endProgress(stderr)
	if rep == nil {
		return err
	}
	rep.Text(stdout)
	path := filepath.Join(outDir, "failover-cycles.json")
	if werr := lab.WriteReport(path, rep); werr != nil {
		return errors.Join(err, werr)
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", path)
	if err == nil && len(rep.Problems) > 0 {
		err = fmt.Errorf("demo: %d problem(s), see the report above", len(rep.Problems))
	}
	return err
}
