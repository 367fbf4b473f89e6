package dnsbridge

import (
	"net/netip"
	"sync"
	"time"
)

// maxBuckets bounds the limiter's memory: past it, idle buckets are
// dropped, and if none is idle the table starts over.
const maxBuckets = 100_000

// limiter is a token bucket per client address.
type limiter struct {
	mu    sync.Mutex
	rate  float64 // tokens per second
	burst float64
	m     map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), m: make(map[netip.Addr]*bucket)}
}

// allow takes a token from a's bucket at time now.
func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[a]
	if b == nil {
		if len(l.m) >= maxBuckets {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.m[a] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops the buckets that have refilled completely.
func (l *limiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, b := range l.m {
		if now.Sub(b.last) >= full {
			delete(l.m, a)
		}
	}
	if len(l.m) >= maxBuckets {
		clear(l.m)
	}
}
