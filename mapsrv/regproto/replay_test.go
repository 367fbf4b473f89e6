package regproto

import (
	"errors"
	"sync"
	"testing"
	"time"
)

func TestReplayWindow(t *testing.T) {
	now := testTime
	w := &ReplayWindow{Now: func() time.Time { return now }}
	const base = 1_000_000
	type step struct {
		key    uint32
		seq    uint64
		ts     time.Duration // offset from now
		accept bool
	}
	steps := []step{
		{1, base, 0, true},
		{1, base, 0, false},                  // same seq
		{1, base - 1, 0, true},               // reordered, inside the window
		{1, base - 1, 0, false},              // seen
		{1, base + 5, 0, true},               // gap
		{1, base + 3, 0, true},               // fills the gap
		{1, base + 3, 0, false},              //
		{2, base, 0, true},                   // another key has its own window
		{1, base + 5 - WindowSize, 0, false}, // exactly WindowSize below the top
		{1, base + 6 - WindowSize, 0, true},  // the oldest still in the window
		{1, base + 6 - WindowSize, 0, false},
		{1, base + 10, DefaultSkew, true},      // at the edge of the skew
		{1, base + 11, -DefaultSkew, true},     //
		{1, base + 12, DefaultSkew + 1, false}, // beyond
		{1, base + 13, -DefaultSkew - 1, false},
		{1, base + 12, 0, true},                // a refused timestamp did not consume the seq
		{1, base + 10 + 3*WindowSize, 0, true}, // a jump clears the window
		{1, base + 12, 0, false},
		{1, base + 9 + 3*WindowSize, 0, true},
		{3, 0, 0, false}, // seq 0 is never valid
	}
	for i, s := range steps {
		err := w.Check(s.key, s.seq, now.Add(s.ts))
		if s.accept && err != nil {
			t.Errorf("step %d (key %d seq %d ts %+v): refused: %v", i, s.key, s.seq, s.ts, err)
		}
		if !s.accept && !errors.Is(err, ErrReplay) {
			t.Errorf("step %d (key %d seq %d ts %+v): error %v, want ErrReplay", i, s.key, s.seq, s.ts, err)
		}
	}
	if err := w.Check(9, base, time.Time{}); !errors.Is(err, ErrReplay) {
		t.Errorf("zero timestamp: error %v, want ErrReplay", err)
	}
	short := &ReplayWindow{Skew: time.Second, Now: func() time.Time { return now }}
	if err := short.Check(1, 1, now.Add(2*time.Second)); !errors.Is(err, ErrReplay) {
		t.Errorf("custom skew: error %v, want ErrReplay", err)
	}
}

// TestReplayWindowSlidingExact checks the window against a reference set
// over a long pseudo-random walk of sequence numbers.
func TestReplayWindowSlidingExact(t *testing.T) {
	w := &ReplayWindow{}
	seen := map[uint64]bool{}
	var top uint64
	x := uint64(12345)
	for i := 0; i < 20000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		seq := 5000 + (uint64(i)*3)/2 + x>>54 - 512 // drifts upward, jitters by +-512 and sometimes more
		if x>>60 == 0 {
			seq -= 1500
		}
		want := seq > top || (top-seq < WindowSize && !seen[seq])
		err := w.Check(1, seq, time.Now())
		if got := err == nil; got != want {
			t.Fatalf("step %d seq %d top %d: accepted %v, want %v (%v)", i, seq, top, got, want, err)
		}
		if err == nil {
			seen[seq] = true
			top = max(top, seq)
		}
	}
}

func TestReplayWindowConcurrent(t *testing.T) {
	w := &ReplayWindow{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := uint64(1); s <= 500; s++ {
				if w.Check(1, s, time.Now()) == nil {
					mu.Lock()
					accepted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if accepted != 500 {
		t.Errorf("%d sequence numbers accepted across 4 goroutines sending 1..500, want each exactly once (500)", accepted)
	}
}
