package locator

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// InFlightLister is implemented by datapaths that can list their in-flight
// entries, so that a restarted agent expires those it inherits.
type InFlightLister interface {
	InFlights(fn func(m ila.Mapping, until time.Time) bool) error
}

// LocalLister is implemented by datapaths that can list local entries, so
// that a restarted agent removes those of tasks no longer attached.
type LocalLister interface {
	Locals(fn func(Local) bool) error
}

func (a *Agent) adoptInFlight() {
	il, ok := a.cfg.Datapath.(InFlightLister)
	if !ok {
		return
	}
	type e struct {
		m     ila.Mapping
		until time.Time
	}
	var all []e
	if err := il.InFlights(func(m ila.Mapping, until time.Time) bool {
		all = append(all, e{m, until})
		return true
	}); err != nil {
		a.log.Warn("list in-flight entries", "err", err)
	}
	for _, x := range all {
		k := key{x.m.SIR, x.m.Identifier}
		f := &inflight{m: x.m, until: x.until}
		f.timer = time.AfterFunc(x.until.Sub(a.cfg.Now()), func() { a.expire(k, f) })
		a.inflight[k] = f
	}
}

// pruneLocals removes local entries inherited from a previous run whose
// task is no longer attached.
func (a *Agent) pruneLocals() {
	ll, ok := a.cfg.Datapath.(LocalLister)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var stale []key
	if err := ll.Locals(func(l Local) bool {
		k := key{l.SIR, l.Identifier}
		if a.localByKey[k] == nil {
			stale = append(stale, k)
		}
		return true
	}); err != nil {
		a.log.Warn("list local entries", "err", err)
		return
	}
	for _, k := range stale {
		a.log.Info("removing local entry of a task no longer attached", "sir", k.sir.Addr(k.id))
		a.dpErr("delete local", a.cfg.Datapath.DeleteLocal(k.sir, k.id), "sir", k.sir.Addr(k.id))
	}
}

// loadState reads the tasks attached through the API by a previous run.
func (a *Agent) loadState() []TaskSpec {
	if a.cfg.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(a.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		a.log.Error("read state file", "path", a.cfg.StateFile, "err", err)
		return nil
	}
	var specs []TaskSpec
	if err := json.Unmarshal(b, &specs); err != nil {
		a.log.Error("parse state file", "path", a.cfg.StateFile, "err", err)
		return nil
	}
	return specs
}

// saveState records the API-attached tasks; a.mu is held.
func (a *Agent) saveState() {
	if a.cfg.StateFile == "" {
		return
	}
	specs := []TaskSpec{}
	for _, lt := range a.locals {
		if !lt.static {
			specs = append(specs, lt.spec)
		}
	}
	slices.SortFunc(specs, func(x, y TaskSpec) int {
		if x.Name < y.Name {
			return -1
		}
		if x.Name > y.Name {
			return 1
		}
		return 0
	})
	b, _ := json.MarshalIndent(specs, "", "  ")
	tmp := a.cfg.StateFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(a.cfg.StateFile), 0o755); err == nil {
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, a.cfg.StateFile)
		}
		if err != nil {
			a.log.Error("write state file", "path", a.cfg.StateFile, "err", err)
		}
	}
}
