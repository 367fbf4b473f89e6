package locator

import (
	"sync"
	"time"
)

// Move convergence (docs/etcd-layout.md "NVE status"; metric
// ila_agent_move_convergence_seconds): for every move this node applies
// while its watch is synced (a task record whose locator changed), the
// time from the record's commit stamp (its Updated field, written by
// mapsrv in the move's transaction) to the end of this node's datapath
// write. The two clocks are different hosts': the figure includes their
// offset (a negative difference counts as 0).

// ConvergenceBuckets are the histogram's upper bounds, in seconds.
var ConvergenceBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Histogram is a snapshot of a histogram: Counts[i] moves took at most
// ConvergenceBuckets[i] (cumulative), Count in all, Sum their total in
// seconds.
type Histogram struct {
	Counts []uint64
	Count  uint64
	Sum    float64
}

type convergence struct {
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	count  uint64
	sum    float64
}

func (c *convergence) observe(d time.Duration) {
	s := max(d.Seconds(), 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = make([]uint64, len(ConvergenceBuckets)+1)
	}
	i := 0
	for i < len(ConvergenceBuckets) && s > ConvergenceBuckets[i] {
		i++
	}
	c.counts[i]++
	c.count++
	c.sum += s
}

// MoveConvergence returns the move convergence histogram.
func (a *Agent) MoveConvergence() Histogram {
	c := &a.conv
	c.mu.Lock()
	defer c.mu.Unlock()
	h := Histogram{Counts: make([]uint64, len(ConvergenceBuckets)), Count: c.count, Sum: c.sum}
	var run uint64
	for i := range ConvergenceBuckets {
		if c.counts != nil {
			run += c.counts[i]
		}
		h.Counts[i] = run
	}
	return h
}
