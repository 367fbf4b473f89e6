package testutil

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// LeakGrace is how long VerifyNoLeaks waits for goroutines to end after
// the tests passed before it calls them leaked.
const LeakGrace = 5 * time.Second

// VerifyNoLeaks runs the tests of m and exits the test binary: with m's
// code, or 1 when the tests passed but goroutines started while they ran
// are still running LeakGrace later. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
func VerifyNoLeaks(m *testing.M) {
	os.Exit(runNoLeaks(m, os.Stderr, LeakGrace))
}

// runNoLeaks is VerifyNoLeaks without the exit: m is anything with Run.
func runNoLeaks(m interface{ Run() int }, w io.Writer, grace time.Duration) int {
	before := map[string]bool{}
	for _, g := range goroutines() {
		before[g.id] = true
	}
	code := m.Run()
	if code != 0 {
		return code
	}
	leaks := leaked(before, grace)
	if len(leaks) == 0 {
		return code
	}
	fmt.Fprintf(w, "testutil: %d goroutine(s) still running %s after the tests:\n\n%s\n", len(leaks), grace, strings.Join(leaks, "\n\n"))
	return 1
}

// leaked waits up to grace for the goroutines not in before (and not
// ignorable) to end, and returns the stacks of those still running.
func leaked(before map[string]bool, grace time.Duration) []string {
	deadline := time.Now().Add(grace)
	for {
		var leaks []string
		for _, g := range goroutines()[1:] { // [0] is this goroutine
			if !before[g.id] && !ignorable(g.stack) {
				leaks = append(leaks, g.stack)
			}
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ignoredFuncs are goroutines of the runtime and the standard library that
// outlive any test by design.
var ignoredFuncs = []string{
	"os/signal.signal_recv", // signal.Notify's loop
	"os/signal.loop",
	"runtime.ensureSigM",
	"runtime/trace.Start",
	"testing.(*F).Fuzz",
	"testing.runFuzzing",
}

func ignorable(stack string) bool {
	for _, f := range ignoredFuncs {
		if strings.Contains(stack, "\n"+f+"(") {
			return true
		}
	}
	return false
}

type goroutine struct{ id, stack string }

// goroutines returns every goroutine's id and stack, the caller's first.
func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []goroutine
	for _, s := range strings.Split(string(buf), "\n\n") {
		// "goroutine 7 [chan receive]:\n..."
		head, _, _ := strings.Cut(s, " [")
		id, ok := strings.CutPrefix(head, "goroutine ")
		if !ok {
			continue
		}
		gs = append(gs, goroutine{id: id, stack: s})
	}
	return gs
}
