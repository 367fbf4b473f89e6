package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ilamesh/ilamesh/internal/qmp"
	"github.com/ilamesh/ilamesh/locator"
)

// qmpHypervisor tells the agent when a QEMU guest runs, over the VM's QMP
// socket (a second monitor given to ilad, e.g. -qmp unix:PATH,server=on,
// wait=off: QEMU serves one client per monitor).
type qmpHypervisor struct{}

var _ locator.Hypervisor = qmpHypervisor{}

// WaitRunning implements locator.Hypervisor: it returns on the guest's
// RESUME event, or at once if query-status says it runs.
func (qmpHypervisor) WaitRunning(ctx context.Context, sock string) (time.Time, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resumed := make(chan time.Time, 1)
	m, err := qmp.Dial(dctx, sock, func(e qmp.Event) {
		if e.Name == "RESUME" {
			select {
			case resumed <- e.Time:
			default:
			}
		}
	})
	if err != nil {
		return time.Time{}, err
	}
	defer m.Close()
	st, err := m.Status(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if st.Running {
		return time.Now(), nil
	}
	select {
	case at := <-resumed:
		return at, nil
	case <-m.Done():
		return time.Time{}, fmt.Errorf("qmp %s: QEMU went away before the guest resumed", sock)
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

var _ locator.RunStateWatcher = qmpHypervisor{}

// WatchRunState implements locator.RunStateWatcher: QEMU's STOP and
// RESUME events, from the connection (within 5 s) until ctx ends or QEMU
// goes away.
func (qmpHypervisor) WatchRunState(ctx context.Context, sock string, fn func(running bool, at time.Time)) (<-chan struct{}, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := qmp.Dial(dctx, sock, func(e qmp.Event) {
		switch e.Name {
		case "STOP":
			fn(false, e.Time)
		case "RESUME":
			fn(true, e.Time)
		}
	})
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer m.Close()
		select {
		case <-m.Done():
		case <-ctx.Done():
		}
	}()
	return done, nil
}

// Announce implements locator.Hypervisor.
func (qmpHypervisor) Announce(ctx context.Context, sock string) error {
	m, err := qmp.Dial(ctx, sock, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.AnnounceSelf(ctx)
}
