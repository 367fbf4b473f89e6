package testutil

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

type runFunc func() int

func (f runFunc) Run() int { return f() }

// leakyWorker blocks until stop is closed: a goroutine a test forgot.
func leakyWorker(stop chan struct{}) { <-stop }

func TestVerifyNoLeaks(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	tests := []struct {
		name string
		run  func() int
		want int
		out  string // in the report
	}{
		{"no goroutines", func() int { return 0 }, 0, ""},
		{"failed tests pass their code through", func() int { return 3 }, 3, ""},
		{"goroutine ends within the grace", func() int {
			go func() { time.Sleep(50 * time.Millisecond) }()
			return 0
		}, 0, ""},
		{"leaked goroutine", func() int {
			go leakyWorker(stop)
			return 0
		}, 1, "testutil.leakyWorker"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := runNoLeaks(runFunc(tc.run), &out, 500*time.Millisecond); got != tc.want {
				t.Errorf("code %d, want %d; report:\n%s", got, tc.want, out.String())
			}
			if tc.out == "" && out.Len() > 0 || !strings.Contains(out.String(), tc.out) {
				t.Errorf("report %q, want it to name %q", out.String(), tc.out)
			}
		})
	}
	// A goroutine running before the tests started is not theirs.
	go leakyWorker(stop)
	time.Sleep(10 * time.Millisecond)
	var out bytes.Buffer
	if got := runNoLeaks(runFunc(func() int { return 0 }), &out, 100*time.Millisecond); got != 0 {
		t.Errorf("goroutine started before the run reported: %d\n%s", got, out.String())
	}
}
