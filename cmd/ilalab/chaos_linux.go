//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// cmdChaos runs `ilalab chaos SCENARIO|--all` against the lab
// (docs/RELIABILITY.md).
func cmdChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("chaos", stderr)
	var c common
	c.register(fs)
	var cfg lab.ChaosConfig
	all := fs.Bool("all", false, "run every scenario, one after another: "+strings.Join(lab.ChaosScenarios, ", "))
	fs.BoolVar(&cfg.Move, "move", false, "move a task (the third NVE's, to the first NVE) during the fault")
	fs.DurationVar(&cfg.Fault, "fault", 0, "how long the fault lasts (default 2s; link-flap-1s 1s, link-flap-5s and reg-loss 5s)")
	fs.IntVar(&cfg.Moves, "moves", 1000, "moves scenario: number of moves (the lab needs `ilalab up --flap-moves` at least this)")
	fs.DurationVar(&cfg.Settle, "settle", 0, "how long the lab may take to become consistent afterwards (default 15s)")
	runs := fs.Int("runs", 1, "run each scenario this many times")
	out := fs.String("o", "text", "output: text or json")
	var scenario string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if scenario == "" && fs.NArg() > 0 {
		scenario = fs.Arg(0)
	}
	if (scenario == "") == !*all {
		return errors.New("chaos: usage: ilalab chaos SCENARIO|--all [--move] [--runs N] (scenarios: " + strings.Join(lab.ChaosScenarios, ", ") + ")")
	}
	if *out != "text" && *out != "json" {
		return fmt.Errorf("chaos: -o %q: want text or json", *out)
	}
	if *runs < 1 {
		return fmt.Errorf("chaos: --runs %d: want at least 1", *runs)
	}
	if err := needRoot(); err != nil {
		return err
	}
	l, err := lab.Load(c.stateDir, progress(stderr, c.quiet))
	if err != nil {
		return err
	}
	defer l.Close()
	scenarios := []string{scenario}
	if *all {
		scenarios = lab.ChaosScenarios
	}
	var results []*lab.ChaosResult
	failed := 0
	for _, s := range scenarios {
		if *all && s == lab.ChaosEtcdLeader && l.Topology().Etcd.Members <= 1 {
			fmt.Fprintf(stderr, "ilalab: chaos %s skipped: the lab runs mapsrv's embedded etcd (ilalab up --etcd-members 3)\n", s)
			continue
		}
		if *all && (s == lab.ChaosKillReplica || s == lab.ChaosCutReplica) && len(l.Topology().Mapsrv.Replicas) < 2 {
			fmt.Fprintf(stderr, "ilalab: chaos %s skipped: the lab runs one mapsrv (ilalab up --mapsrv-replicas 2)\n", s)
			continue
		}
		for range *runs {
			cfg.Scenario = s
			r, err := l.Chaos(ctx, cfg)
			endProgress(stderr)
			if err != nil {
				return err
			}
			results = append(results, r)
			if r.Verdict != "PASS" {
				failed++
			}
			if *out == "text" {
				r.Text(stdout)
			}
		}
	}
	if *out == "json" {
		if err := printJSON(stdout, results); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("chaos: %d of %d runs failed", failed, len(results))
	}
	return nil
}
