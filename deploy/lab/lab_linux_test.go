//go:build linux

package lab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/internal/netns"
)

func privileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

// upPlain builds an underlay-only lab (no ILA components) and removes it at
// the end of the test.
func upPlain(t *testing.T, nves int) *Lab {
	t.Helper()
	privileged(t)
	clearStale(t)
	name := netns.Unique("lb")
	dir := t.TempDir() + "/state"
	l, err := Up(t.Context(), Config{Name: name, StateDir: dir, NVEs: nves, UnderlayOnly: true})
	t.Cleanup(func() {
		if l != nil {
			if err := l.Down(); err != nil {
				t.Errorf("Down: %v", err)
			}
		} else if err := Down(dir, name, nil); err != nil {
			t.Errorf("Down: %v", err)
		}
		for _, n := range mustList(t) {
			if strings.HasPrefix(n, name+"-") {
				t.Errorf("namespace %s left behind", n)
			}
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("state dir left behind: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return l
}

func mustList(t *testing.T) []string {
	names, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestIntegrationPlainLabMoveUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a lab")
	}
	l := upPlain(t, 3)
	topo := l.Topology()
	if got := len(topo.Tasks); got != 3 {
		t.Fatalf("tasks = %d, want 3", got)
	}
	dst, _ := topo.TaskByName("t3")

	// Warm up neighbour caches; then a short ping must get everything back.
	for _, src := range []string{"t1", "t2"} {
		if err := l.WaitReachable(t.Context(), src, dst.SIR, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	st, err := l.Ping(t.Context(), "t1", dst.SIR, 10*time.Millisecond, 20, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 20 || st.Received != 20 {
		t.Fatalf("warm-up ping: sent %d received %d, want 20/20", st.Sent, st.Received)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	type res struct {
		st  *FlowStats
		err error
	}
	pc, tc := make(chan res, 1), make(chan res, 1)
	go func() {
		s, err := l.Ping(ctx, "t1", dst.SIR, 10*time.Millisecond, 0, 300*time.Millisecond)
		pc <- res{s, err}
	}()
	go func() { s, err := l.Stream(ctx, "t2", "t3", 5*time.Millisecond); tc <- res{s, err} }()
	time.Sleep(600 * time.Millisecond)
	mr, err := l.Move(t.Context(), "t3", "nve2", MoveHot)
	if err != nil {
		t.Fatalf("Move: %v", err)
	}
	t.Logf("move took %v", mr.Done.Sub(mr.Start))
	p, s := <-pc, <-tc
	if p.err != nil || s.err != nil {
		t.Fatalf("ping %v, stream %v", p.err, s.err)
	}
	t.Logf("ping: sent %d received %d lost %d longest gap %v", p.st.Sent, p.st.Received, p.st.Lost, p.st.LongestGap)
	t.Logf("tcp: sent %d received %d gap %v err %q", s.st.Sent, s.st.Received, s.st.LongestGap, s.st.Error)
	if p.st.Sent < 100 {
		t.Errorf("ping sent %d, want >= 100", p.st.Sent)
	}
	// The plain lab reroutes after the link moved (the task has no carrier
	// while the kernel moves the device: 15-60 ms on a loaded machine), so
	// a few pings may be lost; at most a 200 ms outage, and the TCP stream
	// must survive intact.
	if p.st.Received < p.st.Sent-20 {
		t.Errorf("ping lost %d of %d", p.st.Lost, p.st.Sent)
	}
	if s.st.Error != "" || s.st.Received != s.st.Sent || s.st.Reordered != 0 {
		t.Errorf("tcp stream: sent %d received %d reordered %d err %q; want all, in order, no error", s.st.Sent, s.st.Received, s.st.Reordered, s.st.Error)
	}
	if got, _ := l.Topology().TaskByName("t3"); got.NVE != "nve2" {
		t.Errorf("t3 on %s after move, want nve2", got.NVE)
	}
}

func TestIntegrationDownAfterCrash(t *testing.T) {
	privileged(t)
	name := netns.Unique("lc")
	dir := t.TempDir() + "/state"
	l, err := Up(t.Context(), Config{Name: name, StateDir: dir, NVEs: 2, UnderlayOnly: true})
	if err != nil {
		Down(dir, name, nil)
		t.Fatalf("Up: %v", err)
	}
	l.Close() // "crash": forget the Lab value, keep everything it made
	if _, err := Up(t.Context(), Config{Name: name, StateDir: dir, NVEs: 2, UnderlayOnly: true}); err == nil {
		t.Errorf("second Up on the same state dir: no error")
	}
	for i := range 2 {
		if err := Down(dir, "", nil); err != nil {
			t.Fatalf("Down #%d: %v", i, err)
		}
	}
	for _, n := range mustList(t) {
		if strings.HasPrefix(n, name+"-") {
			t.Errorf("namespace %s left behind", n)
		}
	}
}
