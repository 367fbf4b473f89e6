//go:build linux

package lab

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ilamesh/ilamesh/internal/owner"
)

// Leftover is what DownAll found of one recorded lab, namespace or bpffs
// mount.
type Leftover struct {
	Kind     owner.Kind `json:"kind"`
	Name     string     `json:"name"`
	StateDir string     `json:"state_dir,omitempty"`
	PID      int        `json:"pid"` // the creator
	// Removed lists what was removed ("namespace lb1-fabric", "pins
	// /sys/fs/bpf/lb1", ...); empty if it was kept.
	Removed []string `json:"removed,omitempty"`
	// Kept says why it stays ("" if removed).
	Kept string `json:"kept,omitempty"`
}

// DownAll removes what dead runs left, as recorded in ownerDir
// [owner.DefaultDir] (see internal/owner): every lab whose builder has
// exited and none of whose daemons runs (as Down would: namespaces
// <name>-*, the host link, pins under /sys/fs/bpf/<name>, the state dir),
// and every namespace and bpffs mount made by a test process that has
// died. What a live process made or uses is kept and reported, with the
// reason. A lab without daemons (--underlay-only) counts as in use only
// while the process that built it runs. Objects without a record (made by
// older builds, or by anything else) are not touched.
func DownAll(ownerDir string, progress func(string)) ([]Leftover, error) {
	if progress == nil {
		progress = func(string) {}
	}
	g := owner.Registry{Dir: ownerDir}
	var out []Leftover
	var errs []error
	recs, err := g.List()
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range recs {
		if r.Kind != owner.Lab {
			continue
		}
		lo := Leftover{Kind: r.Kind, Name: r.Name, StateDir: r.StateDir, PID: r.PID}
		if why := labInUse(r); why != "" {
			lo.Kept = why
			out = append(out, lo)
			continue
		}
		err := Down(r.StateDir, r.Name, func(s string) {
			progress(s)
			if what, ok := strings.CutPrefix(s, "removing "); ok {
				if what == r.StateDir {
					what = "state dir " + what
				}
				lo.Removed = append(lo.Removed, what)
			}
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", r.Name, err))
			lo.Kept = "down failed: " + err.Error()
			out = append(out, lo)
			continue
		}
		if err := g.Release(owner.Lab, r.Name); err != nil {
			errs = append(errs, err)
		}
		if len(lo.Removed) > 0 {
			out = append(out, lo)
		}
	}
	swept, err := g.Sweep(owner.Netns, owner.BPFFS)
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range swept {
		lo := Leftover{Kind: s.Kind, Name: s.Name, PID: s.PID}
		switch s.Outcome {
		case owner.Kept:
			lo.Kept = fmt.Sprintf("pid %d, which made it, runs", s.PID)
		case owner.Removed:
			lo.Removed = []string{string(s.Kind) + " " + s.Name}
			progress("removed " + string(s.Kind) + " " + s.Name)
		default:
			continue
		}
		out = append(out, lo)
	}
	return out, errors.Join(errs...)
}

// labInUse says why a recorded lab is in use ("" if it is not): the
// process that built it runs, or one of its daemons does.
func labInUse(r owner.Record) string {
	if r.CreatorAlive() {
		return fmt.Sprintf("pid %d, which built it, runs", r.PID)
	}
	procs := readPIDs(r.StateDir)
	names := make([]string, 0, len(procs))
	for k := range procs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if p := procs[k]; alive(p.PID, p.Exe) {
			return fmt.Sprintf("%s runs (pid %d)", k, p.PID)
		}
	}
	return ""
}

// releaseOwner removes the record of the lab name if it names stateDir
// (a lab of the same name elsewhere keeps its own).
func releaseOwner(g owner.Registry, name, stateDir string) error {
	r, err := g.Get(owner.Lab, name)
	if err != nil {
		return nil // none, or not one of ours
	}
	if abs, err := filepath.Abs(stateDir); err != nil || r.StateDir != abs {
		return nil
	}
	return g.Release(owner.Lab, name)
}
