package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/ilamesh/ilamesh/deploy/lab"
)

// downAll is `ilalab down --all`: a flag on down rather than a command of
// its own, because it is what one reaches for after `ilalab down` (an
// interrupted run, a killed test), and it removes the same things down
// does, for every lab and test that is gone instead of one lab.
func downAll(fs *flag.FlagSet, stdout io.Writer) error {
	var bad []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "name" || f.Name == "state-dir" {
			bad = append(bad, "--"+f.Name)
		}
	})
	if len(bad) > 0 {
		return fmt.Errorf("down --all: takes no %s (it looks at every recorded lab)", strings.Join(bad, " or "))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("down --all: unexpected argument %q", fs.Arg(0))
	}
	if err := needRoot(); err != nil {
		return err
	}
	left, err := lab.DownAll("", nil)
	removed := 0
	for _, l := range left {
		what := string(l.Kind) + " " + l.Name
		if l.StateDir != "" {
			what += " (state " + l.StateDir + ")"
		}
		if l.Kept != "" {
			fmt.Fprintf(stdout, "kept %s: %s\n", what, l.Kept)
			continue
		}
		removed++
		fmt.Fprintf(stdout, "removed %s, left by pid %d (gone)", what, l.PID)
		if l.Kind == "lab" {
			fmt.Fprintf(stdout, ": %s", strings.Join(l.Removed, ", "))
		}
		fmt.Fprintln(stdout)
	}
	if removed == 0 && err == nil {
		fmt.Fprintln(stdout, "removed nothing: no leftovers of dead runs")
	}
	if err != nil {
		return errors.Join(errors.New("down --all: some leftovers remain"), err)
	}
	return nil
}
