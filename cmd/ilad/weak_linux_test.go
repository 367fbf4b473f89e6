//go:build linux

package main

import (
	"context"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/ila"
)

// TestMoveWhileAnNVEIsDown: b moves from nve2 to nve1 while nve3's ilad is
// down (its pinned datapath keeps forwarding, with b's old mapping). c, on
// nve3, keeps sending to b's old locator: nve2 must redirect it to b's new
// place for as long as the store maps b elsewhere, not only for its
// in-flight time (issue 18, weakness 1). nve2 runs in pull mode and drops
// what misses: it must keep b's mapping once b has left, not wait for a
// stale packet to miss.
func TestMoveWhileAnNVEIsDown(t *testing.T) {
	l := newLab(t, 3, map[int][]string{2: {"-mode", "pull", "-miss-policy", "drop"}})
	n1, n2, n3 := l.nves[0], l.nves[1], l.nves[2]
	a := l.addTask(n1, "a", 0x2001)
	b := l.addTask(n2, "b", 0x2002)
	c := l.addTask(n3, "c", 0x2003)
	for _, tk := range []*labTask{a, b, c} {
		l.waitMapping(tk, tk.nve)
	}
	if err := ping(t, c, b.sir, 2); err != nil {
		t.Fatal(err)
	}
	l.stop(n3)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	udpEcho(t, ctx, b, 6100)
	l.addLink(b, n1, "vb1")
	moved := make(chan error, 1)
	// 10 ms apart for 7.5 s: the move at 0.5 s, the in-flight time (5 s)
	// ends at about 5.5 s.
	lost := flow(t, c, b.sir, 6100, 750, 10*time.Millisecond, func(i int) {
		if i == 50 {
			go func() { moved <- l.switchOver(b, n1, "vb1") }()
		}
	})
	if err := <-moved; err != nil {
		t.Fatal(err)
	}
	if len(lost) != 0 {
		t.Errorf("lost %d of 750 round trips from the NVE whose ilad is down: %v", len(lost), lost)
	}
	rec, err := l.svc.TaskByID(t.Context(), "prod", ila.IdentifierOf(b.sir))
	if err != nil || rec.Locator != n1.loc {
		t.Errorf("b in mapsrv: locator %v, %v; want %v", rec.Locator, err, n1.loc)
	}
}
