//go:build linux

package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/locator"
)

// moveCarry is a hot move that carries the NVE end of the task's only
// veth to the destination (the literal model of a VM's NIC arriving there)
// through the prepare/commit path of a live migration: the kernel moves
// the device; the destination's ilad prepares the port that arrived (local
// delivery, no registration); the source's ilad redirects whatever still
// arrives for the task there (a handover, at once: the task's link has
// left); the task announces itself as QEMU does after a migration (an
// unsolicited NA, a gratuitous ARP for an IPv4 task), and that first frame
// commits it at the destination, which moves the mapping. What is lost is
// what arrives while the device is between namespaces and the prepare.
// The lab, as the orchestrator, first tells mapsrv to expect the task at
// the destination (expectMove): that is what justifies the commit's claim.
func (l *Lab) moveCarry(ctx context.Context, task *Task, from, to *NVE, r *MoveResult) (err error) {
	toc, err := locator.NewClient(l.iladSock(to.Name))
	if err != nil {
		return err
	}
	fromc, err := locator.NewClient(l.iladSock(from.Name))
	if err != nil {
		return err
	}
	drop, err := l.expectMove(ctx, task, to, time.Minute)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			drop()
		}
	}()
	if err := l.moveLink(task, from, to); err != nil {
		return err
	}
	r.LinkMoved = time.Now()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := toc.Prepare(pctx, task.spec()); err != nil {
		return fmt.Errorf("prepare %s on %s: %w", task.Name, to.Name, err)
	}
	if _, err := fromc.Handover(pctx, task.Name, locator.HandoverSpec{Locator: to.Locator, Now: true}); err != nil {
		l.progress("handover of %s at %s (the commit will redirect): %v", task.Name, from.Name, err)
	}
	if task.IPv4.IsValid() {
		err = l.SendGARP(task.Name)
	} else {
		err = l.SendND(task.Name, task.SIR, true)
	}
	if err != nil {
		return fmt.Errorf("announce %s on %s: %w", task.Name, to.Name, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := toc.Task(ctx, task.Name)
		if err == nil && st.State == locator.StateActive && st.Registered {
			r.Attached, r.Committed = st.CommittedAt, st.RegisteredAt
			if mt, err := l.Mapped(ctx, task.Name); err == nil && mt.NVE == to.Name && !mt.Updated.IsZero() {
				r.Committed = mt.Updated
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not committed at %s 5s after its announce: state %q, error %q, %v", task.Name, to.Name, st.State, st.Error, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
