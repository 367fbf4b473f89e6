package regproto

import (
	"fmt"
	"sync"
	"time"
)

// DefaultSkew is the default half-width of the timestamp window.
const DefaultSkew = 30 * time.Second

// DefaultMaxAhead is how far, by default, a sequence number may be above
// the receiver's clock read as Unix nanoseconds (senders seed their
// counters from their clocks: see Client).
const DefaultMaxAhead = 2 * DefaultSkew

// WindowSize is how many sequence numbers below the highest one seen a
// ReplayWindow still accepts (each once), so that requests sent
// concurrently or reordered by the network are not refused.
const WindowSize = 1024

// ReplayWindow refuses replayed messages, per key id: a message is
// refused when its timestamp is more than Skew away from the local clock,
// when its sequence number is WindowSize or more below the highest one
// accepted for the key, when its sequence number was already accepted, or
// when its sequence number is more than MaxAhead above the local clock in
// Unix nanoseconds (one accepted message with a huge sequence number would
// otherwise lock its sender out for good).
// It is the anti-replay window of RFC 4303 section 3.4.3 with a timestamp
// check in front. Call Check only for authenticated messages: the state
// grows with the number of key ids. The zero value is ready to use and it
// is safe for concurrent use.
type ReplayWindow struct {
	// Skew is the largest accepted difference between a message timestamp
	// and the local clock, either way. Zero means DefaultSkew.
	Skew time.Duration
	// MaxAhead bounds sequence numbers: at most the local clock in Unix
	// nanoseconds plus MaxAhead. Zero means DefaultMaxAhead.
	MaxAhead time.Duration
	// Now returns the local clock. Nil means time.Now.
	Now func() time.Time

	mu   sync.Mutex
	keys map[uint32]*replayState
}

type replayState struct {
	top  uint64                  // highest sequence number accepted
	bits [WindowSize / 64]uint64 // bit seq%WindowSize: seq accepted, for seq in (top-WindowSize, top]
}

func (s *replayState) test(seq uint64) bool {
	i := seq % WindowSize
	return s.bits[i/64]&(1<<(i%64)) != 0
}

func (s *replayState) set(seq uint64) {
	i := seq % WindowSize
	s.bits[i/64] |= 1 << (i % 64)
}

func (s *replayState) clear(seq uint64) {
	i := seq % WindowSize
	s.bits[i/64] &^= 1 << (i % 64)
}

// Check accepts (and records) or refuses the message with the given key
// id, sequence number and timestamp. Refusals wrap ErrReplay.
func (w *ReplayWindow) Check(keyID uint32, seq uint64, ts time.Time) error {
	skew := w.Skew
	if skew <= 0 {
		skew = DefaultSkew
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	t := now()
	if ts.IsZero() || ts.Before(t.Add(-skew)) || ts.After(t.Add(skew)) {
		return fmt.Errorf("key id %d: timestamp %s is more than %v from the local clock %s: %w",
			keyID, ts.UTC().Format(time.RFC3339Nano), skew, t.UTC().Format(time.RFC3339Nano), ErrReplay)
	}
	if seq == 0 {
		return fmt.Errorf("key id %d: sequence number 0: %w", keyID, ErrReplay)
	}
	ahead := w.MaxAhead
	if ahead <= 0 {
		ahead = DefaultMaxAhead
	}
	if limit := uint64(t.Add(ahead).UnixNano()); seq > limit {
		return fmt.Errorf("key id %d: sequence number %d is more than %v ahead of the local clock (%d): %w", keyID, seq, ahead, limit, ErrReplay)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.keys == nil {
		w.keys = map[uint32]*replayState{}
	}
	s := w.keys[keyID]
	if s == nil {
		s = &replayState{}
		w.keys[keyID] = s
	}
	switch {
	case seq > s.top:
		if seq-s.top >= WindowSize {
			s.bits = [WindowSize / 64]uint64{}
		} else {
			for q := s.top + 1; q < seq; q++ {
				s.clear(q)
			}
		}
		s.top = seq
		s.set(seq)
		return nil
	case s.top-seq >= WindowSize:
		return fmt.Errorf("key id %d: sequence number %d is %d or more below the highest seen %d: %w", keyID, seq, WindowSize, s.top, ErrReplay)
	case s.test(seq):
		return fmt.Errorf("key id %d: sequence number %d already seen: %w", keyID, seq, ErrReplay)
	}
	s.set(seq)
	return nil
}

// Restore refuses, for each key id in floors, every sequence number up to
// and including its floor (what a previous run of the receiver may have
// accepted: see SeqStore). A key whose state is already higher keeps it.
func (w *ReplayWindow) Restore(floors map[uint32]uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.keys == nil {
		w.keys = map[uint32]*replayState{}
	}
	for k, f := range floors {
		if s := w.keys[k]; s != nil && s.top >= f {
			continue
		}
		s := &replayState{top: f}
		for i := range s.bits {
			s.bits[i] = ^uint64(0)
		}
		w.keys[k] = s
	}
}
