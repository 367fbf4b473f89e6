//go:build linux

package main

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/locator"
)

// TestMonitorStreamsDatapathEvents: a real ilad streams its datapath's
// events over the local API while someone monitors: a task pinging an
// address nobody has (a miss), and pinging from an address not bound to
// its port (a source validation refusal). Pings that hit report nothing.
func TestMonitorStreamsDatapathEvents(t *testing.T) {
	l := newLab(t, 2, nil)
	a := l.addTask(l.nves[0], "a1", 0x1001)
	b := l.addTask(l.nves[1], "b1", 0x1002)
	l.waitMapping(b, l.nves[1])

	ctx, cancel := context.WithCancel(t.Context())
	var (
		mu     sync.Mutex
		events []locator.MonitorEvent
	)
	done := make(chan error, 1)
	go func() {
		done <- l.client(l.nves[0]).Monitor(ctx, func(ev locator.MonitorEvent) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("monitor: %v", err)
		}
	}()
	ping := func(args ...string) {
		_ = exec.Command("ip", append([]string{"netns", "exec", a.ns.Name, "ping", "-c1", "-W1"}, args...)...).Run()
	}
	find := func(reason string) *locator.MonitorEvent {
		mu.Lock()
		defer mu.Unlock()
		for i := range events {
			if events[i].Reason == reason {
				return &events[i]
			}
		}
		return nil
	}
	wait := func(reason string) locator.MonitorEvent {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if ev := find(reason); ev != nil {
				return *ev
			}
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %s event; got %+v", reason, events)
		return locator.MonitorEvent{}
	}

	// The stream is open once an event arrives; ping until one does
	// (the subscription may not be in place for the first packet).
	missing := labSIR.Addr(0x9999)
	for deadline := time.Now().Add(10 * time.Second); find("pass_miss") == nil && time.Now().Before(deadline); {
		ping(missing.String())
	}
	ev := wait("pass_miss")
	if ev.Type != "miss" || ev.Dst != missing || ev.Src != a.sir || ev.Iface != a.port || ev.Node != "nve1" {
		t.Errorf("miss event %+v", ev)
	}
	if find("translated") != nil || find("local_delivered") != nil {
		t.Errorf("a hit was reported")
	}
	ping(b.sir.String()) // a hit: nothing

	// A source not bound to the port.
	spoof := labSIR.Addr(0x7777)
	if out, err := exec.Command("ip", "netns", "exec", a.ns.Name, "ip", "addr", "add", spoof.String()+"/128", "dev", "eth0", "nodad").CombinedOutput(); err != nil {
		t.Fatalf("add address: %v: %s", err, out)
	}
	ping("-I", spoof.String(), b.sir.String())
	ev = wait("drop_spoofed_source")
	if ev.Type != "drop" || ev.Src != spoof || ev.Dst != b.sir || ev.Len == 0 {
		t.Errorf("refusal event %+v", ev)
	}
	mu.Lock()
	for _, e := range events {
		if e.Type != "drop" && e.Type != "miss" {
			t.Errorf("unexpected event %+v", e)
		}
	}
	mu.Unlock()
}
