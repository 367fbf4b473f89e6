package mapsrv

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// enqueue queues notifications of previous NVEs, dropping them (counted)
// when the queue is full.
func (s *Service) enqueue(ctx context.Context, ns []Notification, t ila.Task) {
	if s.cfg.Notifier == nil || len(ns) == 0 {
		return
	}
	for _, n := range ns {
		rec, _, err := s.getNVE(ctx, n.NVE)
		if err != nil || !rec.RegAddr.IsValid() {
			continue
		}
		n.To, n.Task = rec.RegAddr, t
		select {
		case s.notify <- n:
		default:
			s.c.notifyDropped.Add(1)
		}
	}
}

// Run runs the lifetime sweeper and the notification sender until ctx is
// cancelled. It returns nil on cancellation.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case n := <-s.notify:
				nctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := s.cfg.Notifier.Notify(nctx, n)
				cancel()
				if err != nil {
					s.c.notifyFailed.Add(1)
					s.log.Warn("notify previous nve", "nve", n.NVE, "addr", n.To, "identifier", n.Task.Identifier, "locator", n.Task.Locator, "err", err)
				} else {
					s.c.notifySent.Add(1)
				}
			}
		}
	}()
	if s.cfg.Liveness.enabled() {
		wg.Add(1)
		go func() { defer wg.Done(); s.livenessLoop(ctx) }()
	}
	var due *dueSet
	var feedDown atomic.Bool
	if s.cfg.Events != nil {
		due = &dueSet{suspend: s.cfg.SuspendTimeout}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.cfg.Events(ctx, due.event)
			if ctx.Err() == nil {
				feedDown.Store(true)
				s.log.Warn("sweeper event feed ended; sweeping by full lists", "err", err)
			}
		}()
	}
	defer wg.Wait()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	lastFull := time.Now()
	s.up.reset(s.cfg.Now())
	stall := newStallGuard(s.cfg.SweepInterval)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if stall.tick() {
				s.up.reset(s.cfg.Now())
				s.log.Warn("sweeper stalled; expiries wait one more lifetime")
			}
			var err error
			if due != nil && !feedDown.Load() && time.Since(lastFull) < s.cfg.FullSweepInterval {
				err = s.sweepDue(ctx, due)
			} else {
				_, err = s.Sweep(ctx)
				lastFull = time.Now()
			}
			if err != nil && ctx.Err() == nil {
				s.log.Warn("lifetime sweep", "err", err)
			}
		}
	}
}
