//go:build linux

package lab

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// Processes the lab runs, for Stop/Start/Pause.
const (
	ProcMapsrv    = procMapsrv
	ProcDNSBridge = procDNS
	ProcRouter    = procRouter
)

// ProcIlad is the process name of NVE nve's ilad.
func ProcIlad(nve string) string { return procIlad(nve) }

// Stop stops one of the lab's daemons (SIGTERM, then SIGKILL after grace).
func (l *Lab) Stop(name string, grace time.Duration) error {
	if _, ok := l.procs[name]; !ok {
		if p, ok := readPIDs(l.dir)[name]; ok {
			l.procs[name] = p
		} else {
			return fmt.Errorf("process %s: not running in this lab", name)
		}
	}
	return l.stop(name, grace)
}

// Kill kills one of the lab's daemons with SIGKILL (a crash).
func (l *Lab) Kill(name string) error {
	p, ok := l.procs[name]
	if !ok {
		return fmt.Errorf("process %s: not running in this lab", name)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	return l.stop(name, time.Second)
}

// Pause freezes (SIGSTOP) or, with resume, thaws (SIGCONT) a daemon: a
// frozen mapsrv is an etcd that accepts connections and never answers.
func (l *Lab) Pause(name string, resume bool) error {
	p, ok := l.procs[name]
	if !ok {
		return fmt.Errorf("process %s: not running in this lab", name)
	}
	sig := syscall.SIGSTOP
	if resume {
		sig = syscall.SIGCONT
	}
	if err := syscall.Kill(p.PID, sig); err != nil {
		return fmt.Errorf("signal %s: %w", name, err)
	}
	return nil
}

// StartMapsrv starts mapsrv again after Stop.
func (l *Lab) StartMapsrv(ctx context.Context) error {
	if err := l.startMapsrv(ctx); err != nil {
		return err
	}
	return l.save()
}

// StartIlad starts the ilad of an NVE again after Stop.
func (l *Lab) StartIlad(ctx context.Context, nve string) error {
	n, err := l.topo.NVEByName(nve)
	if err != nil {
		return err
	}
	if err := l.startIlad(ctx, n); err != nil {
		return err
	}
	return l.save()
}

// Running reports whether a daemon of the lab runs.
func (l *Lab) Running(name string) bool {
	p, ok := l.procs[name]
	return ok && !p.exited()
}

// MappedTask is what mapsrv says about a task.
type MappedTask struct {
	Name    string `json:"name"`
	Tenant  string `json:"tenant"`
	NVE     string `json:"nve"`
	Locator string `json:"locator"`
	State   string `json:"state"`
	Version int64  `json:"version"`
	// Updated is mapsrv's time of the last change (the commit of a move).
	Updated time.Time `json:"updated"`
}

// Mapped asks mapsrv's API where a task is.
func (l *Lab) Mapped(ctx context.Context, taskName string) (MappedTask, error) {
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return MappedTask{}, err
	}
	c, err := l.api()
	if err != nil {
		return MappedTask{}, err
	}
	rec, err := c.Task(ctx, task.Tenant, task.Name)
	if err != nil {
		return MappedTask{}, fmt.Errorf("get task %s: %w", taskName, err)
	}
	return MappedTask{Name: rec.Name, Tenant: rec.Tenant, NVE: rec.NVE, Locator: rec.Locator.String(),
		State: string(rec.State), Version: int64(rec.Version), Updated: rec.Updated}, nil
}

// AllowTenants stores a policy (mapsrv's API) that lets the tasks of
// tenants a and b reach each other.
func (l *Lab) AllowTenants(ctx context.Context, a, b string) error {
	c, err := l.api()
	if err != nil {
		return err
	}
	if _, err := c.AllowTenants(ctx, a, b); err != nil {
		return fmt.Errorf("allow %s<->%s: %w", a, b, err)
	}
	return nil
}

// DisallowTenants removes the policy between tenants a and b.
func (l *Lab) DisallowTenants(ctx context.Context, a, b string) error {
	c, err := l.api()
	if err != nil {
		return err
	}
	if err := c.DisallowTenants(ctx, a, b); err != nil {
		return fmt.Errorf("disallow %s<->%s: %w", a, b, err)
	}
	return nil
}
