//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Move modes.
const (
	MoveHot  = "hot"
	MoveWarm = "warm"
	MoveCold = "cold"
)

// MoveResult times the steps of a move (wall clock).
type MoveResult struct {
	Task      string    `json:"task"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Mode      string    `json:"mode"`
	Start     time.Time `json:"start"`
	LinkMoved time.Time `json:"link_moved"`
	Committed time.Time `json:"committed"` // mapsrv's commit time (task record "updated")
	Attached  time.Time `json:"attached,omitzero"`
	Done      time.Time `json:"done"`
}

// Move moves a task to another NVE.
//
// hot: the NVE end of the task's veth is carried to the new NVE's namespace
// and brought up there (the task's own stack, addresses and sockets carry
// on, as a live-migrated VM's would), then the move is committed to the
// mapping service. cold: the task's link goes down first (the task is
// suspended), the move is committed as cold, the link is carried over and
// comes back up. warm behaves as cold in the lab (there is no state to
// mirror beyond what the task keeps).
func (l *Lab) Move(ctx context.Context, taskName, toName, mode string) (*MoveResult, error) {
	if mode == "" {
		mode = MoveHot
	}
	switch mode {
	case MoveHot, MoveWarm, MoveCold:
	default:
		return nil, fmt.Errorf("move mode %q: want hot, warm or cold", mode)
	}
	task, err := l.topo.TaskByName(taskName)
	if err != nil {
		return nil, err
	}
	to, err := l.topo.NVEByName(toName)
	if err != nil {
		return nil, err
	}
	from, err := l.topo.NVEByName(task.NVE)
	if err != nil {
		return nil, err
	}
	if from.Name == to.Name {
		return nil, fmt.Errorf("move %s: already on %s", taskName, toName)
	}
	r := &MoveResult{Task: taskName, From: from.Name, To: to.Name, Mode: mode, Start: time.Now()}
	cold := mode != MoveHot
	if cold {
		if err := l.suspend(ctx, task, from); err != nil {
			return r, err
		}
	}
	switch {
	case l.cfg.UnderlayOnly:
		if err := l.moveLink(task, from, to); err != nil {
			return r, err
		}
		r.LinkMoved = time.Now()
		if err := l.plainMove(task, to); err != nil {
			return r, err
		}
		r.Committed = time.Now()
	case mode == MoveHot:
		// The commit (mapsrv, then every NVE by its watch, the old one
		// turning its entry into an in-flight redirect) runs while the link
		// is carried over; the new NVE's ilad attaches the port as soon as
		// it arrives, which installs local delivery and registers the task
		// there (a re-registration of the committed move).
		errc := make(chan error, 1)
		go func() {
			at, err := l.apiMove(ctx, task, to, mode)
			r.Committed = at
			errc <- err
		}()
		lerr := l.moveLink(task, from, to)
		r.LinkMoved = time.Now()
		cerr := <-errc
		if err := errors.Join(lerr, cerr); err != nil {
			return r, err
		}
		if err := l.attachTask(ctx, task, to.Name); err != nil {
			return r, err
		}
		r.Attached = time.Now()
	default:
		// Cold/warm: mapsrv suspends the task, the link comes over, the
		// task registers at its destination, which resumes it.
		at, err := l.apiMove(ctx, task, to, mode)
		r.Committed = at
		if err != nil {
			return r, err
		}
		if err := l.moveLink(task, from, to); err != nil {
			return r, err
		}
		r.LinkMoved = time.Now()
		if err := l.attachTask(ctx, task, to.Name); err != nil {
			return r, err
		}
		r.Attached = time.Now()
	}
	task.NVE = to.Name
	if task.IPv4.IsValid() && !l.cfg.UnderlayOnly {
		// A migrated VM announces itself with a gratuitous ARP.
		if err := l.SendGARP(task.Name); err != nil {
			return r, err
		}
	}
	if err := l.save(); err != nil {
		return r, err
	}
	r.Done = time.Now()
	return r, nil
}

// suspend takes the task's link down at its NVE (cold move).
func (l *Lab) suspend(ctx context.Context, task *Task, from *NVE) error {
	nn, err := l.node(from.Netns)
	if err != nil {
		return err
	}
	link, err := nn.link(task.Ifname)
	if err != nil {
		return err
	}
	if err := nn.h.LinkSetDown(link); err != nil {
		return fmt.Errorf("suspend %s on %s: %w", task.Name, from.Name, err)
	}
	return nil
}
