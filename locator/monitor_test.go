package locator_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilamesh/ilamesh/locator"
)

// fakeEvents is a datapath's event source (unit test of the fan-out; the
// real datapath is in cmd/ilad's monitor test).
type fakeEvents struct {
	mu   sync.Mutex
	on   bool
	sets []bool
	ch   chan locator.MonitorEvent
	lost uint64
}

func (f *fakeEvents) SetMonitor(on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.on = on
	f.sets = append(f.sets, on)
	return nil
}

func (f *fakeEvents) ReadEvent(ctx context.Context) (locator.MonitorEvent, error) {
	select {
	case ev := <-f.ch:
		return ev, nil
	case <-ctx.Done():
		return locator.MonitorEvent{}, ctx.Err()
	}
}

func (f *fakeEvents) MonitorLost() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lost, nil
}

func (f *fakeEvents) state() (bool, []bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.on, append([]bool(nil), f.sets...)
}

// TestMonitorFanOut: two subscribers over the local API get every event;
// the datapath reports only while someone listens.
func TestMonitorFanOut(t *testing.T) {
	src := &fakeEvents{ch: make(chan locator.MonitorEvent)}
	m := locator.NewMonitor(src, "nve-a")
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	c, err := locator.NewClient(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	got := make([]chan locator.MonitorEvent, 2)
	for i := range got {
		got[i] = make(chan locator.MonitorEvent, 10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Monitor(ctx, func(ev locator.MonitorEvent) { got[i] <- ev }); err != nil {
				t.Errorf("monitor %d: %v", i, err)
			}
		}()
	}
	// Both subscribed once the datapath is on and one event reaches both.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if on, _ := src.state(); on {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("monitor never turned on")
		}
	}
	time.Sleep(100 * time.Millisecond) // the second subscription
	src.ch <- locator.MonitorEvent{Type: "drop", Reason: "drop_tenant"}
	for i := range got {
		select {
		case ev := <-got[i]:
			if ev.Reason != "drop_tenant" || ev.Node != "nve-a" {
				t.Errorf("subscriber %d: %+v", i, ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("subscriber %d: no event", i)
		}
	}
	cancel()
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		on, sets := src.state()
		if !on {
			if len(sets) != 2 {
				t.Errorf("SetMonitor calls %v, want on once and off once", sets)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("monitor still on after the last subscriber left")
		}
	}
	// A fresh subscriber starts it again.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel2()
	if err := m.Subscribe(ctx2, func(locator.MonitorEvent) {}); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("subscribe again: %v", err)
	}
	if _, sets := src.state(); len(sets) != 4 {
		t.Errorf("SetMonitor calls %v, want on, off, on, off", sets)
	}
}
