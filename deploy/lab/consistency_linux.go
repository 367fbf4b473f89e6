//go:build linux

package lab

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ilamesh/ilamesh/ila"
	"github.com/ilamesh/ilamesh/locator"
	"github.com/ilamesh/ilamesh/mapsrv"
)

// Consistency is whether every NVE agrees with the store, as its agent
// reports through its local API, and whether every task reaches every
// other one (the datapaths forward as the store says).
//
// Until `ilactl where --all` (issue 18's consistency view, which reads
// each datapath's entry for each task) is there, this is what the lab can
// see: each agent's local tasks against the store's tasks on that NVE,
// the number of tasks the agent holds from the store, and pings between
// every pair of tasks. CheckConsistency is the one place to swap for it.
type Consistency struct {
	Checked time.Time `json:"checked"`
	// Settled is how long it took to become consistent (or the time
	// given up after).
	Settled    Duration  `json:"settled"`
	StoreTasks int       `json:"store_tasks"`
	NVEs       []NVEView `json:"nves"`
	// Unreachable lists "src -> dst" pairs of tasks without an answer.
	Unreachable []string `json:"unreachable,omitempty"`
	Problems    []string `json:"problems,omitempty"`
	OK          bool     `json:"ok"`
}

// NVEView is one NVE's agent against the store.
type NVEView struct {
	NVE string `json:"nve"`
	// Local are the agent's active local tasks, Store the store's
	// active tasks on this NVE.
	Local []string `json:"local"`
	Store []string `json:"store"`
	// StoreTasks is how many tasks the agent holds from the store (its
	// watch cache), Synced whether its watch is synced, Revision the
	// store revision it has applied.
	StoreTasks int    `json:"store_tasks"`
	Synced     bool   `json:"synced"`
	Revision   int64  `json:"revision"`
	Error      string `json:"error,omitempty"`
}

// CheckConsistency checks until the lab is consistent or settle has
// passed, and returns the last check.
func (l *Lab) CheckConsistency(ctx context.Context, settle time.Duration) (*Consistency, error) {
	start := time.Now()
	for {
		c, err := l.consistency(ctx)
		if err != nil {
			return nil, err
		}
		c.Settled = Duration(time.Since(start))
		if c.OK || time.Since(start) > settle || ctx.Err() != nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return c, nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (l *Lab) consistency(ctx context.Context) (*Consistency, error) {
	api, err := l.api()
	if err != nil {
		return nil, err
	}
	recs, err := api.Tasks(ctx)
	if err != nil {
		return nil, fmt.Errorf("consistency: tasks in the store: %w", err)
	}
	c := &Consistency{Checked: time.Now(), StoreTasks: len(recs)}
	onNVE := map[string][]string{}
	for _, r := range recs {
		if r.State == ila.StateActive {
			onNVE[r.NVE] = append(onNVE[r.NVE], r.Name)
		} else {
			c.Problems = append(c.Problems, fmt.Sprintf("task %s is %s in the store (on %s)", r.Name, r.State, r.NVE))
		}
	}
	// Every lab task is in the store.
	for _, t := range l.topo.Tasks {
		if !slices.ContainsFunc(recs, func(r mapsrv.TaskRecord) bool { return r.Name == t.Name && r.Tenant == t.Tenant }) {
			c.Problems = append(c.Problems, fmt.Sprintf("task %s is not in the store", t.Name))
		}
	}
	for _, n := range l.topo.NVEs {
		v := NVEView{NVE: n.Name, Store: onNVE[n.Name]}
		slices.Sort(v.Store)
		if n.Failed {
			v.Error = "failed (ilalab fail)"
			c.NVEs = append(c.NVEs, v)
			continue
		}
		cl, err := locator.NewClient(l.iladSock(n.Name))
		if err == nil {
			var ts []locator.TaskStatus
			ts, err = cl.Tasks(ctx)
			for _, s := range ts {
				if s.State == locator.StateActive && !s.Standby {
					v.Local = append(v.Local, s.Name)
				}
			}
			slices.Sort(v.Local)
			if err == nil {
				var st locator.Stats
				st, err = cl.Stats(ctx)
				v.StoreTasks, v.Synced, v.Revision = st.StoreTasks, st.Synced, st.Revision
			}
		}
		if err != nil {
			v.Error = err.Error()
			c.Problems = append(c.Problems, fmt.Sprintf("%s: %v", n.Name, err))
		} else {
			if !slices.Equal(v.Local, v.Store) {
				c.Problems = append(c.Problems, fmt.Sprintf("%s: local tasks %v, the store's on %s %v", n.Name, v.Local, n.Name, v.Store))
			}
			if !v.Synced || v.StoreTasks != len(recs) {
				c.Problems = append(c.Problems, fmt.Sprintf("%s: holds %d tasks of the store's %d (synced %v)", n.Name, v.StoreTasks, len(recs), v.Synced))
			}
		}
		c.NVEs = append(c.NVEs, v)
	}
	if len(c.Problems) == 0 {
		c.Unreachable = l.unreachablePairs(ctx)
		for _, u := range c.Unreachable {
			c.Problems = append(c.Problems, "no answer "+u)
		}
	}
	c.OK = len(c.Problems) == 0
	return c, nil
}

// unreachablePairs pings every IPv6 container task from every other (3
// pings each, all in parallel) and lists the pairs without an answer.
func (l *Lab) unreachablePairs(ctx context.Context) []string {
	var ts []*Task
	for i := range l.topo.Tasks {
		t := &l.topo.Tasks[i]
		if t.VM == nil && !t.IPv4.IsValid() {
			ts = append(ts, t)
		}
	}
	type res struct {
		pair string
		ok   bool
	}
	ch := make(chan res)
	n := 0
	for _, a := range ts {
		for _, b := range ts {
			if a == b || a.Tenant != b.Tenant {
				continue
			}
			n++
			go func() {
				st, err := l.Ping(ctx, a.Name, b.SIR, 20*time.Millisecond, 3, 300*time.Millisecond)
				ch <- res{a.Name + " -> " + b.Name, err == nil && st.Received > 0}
			}()
		}
	}
	var out []string
	for range n {
		if r := <-ch; !r.ok {
			out = append(out, r.pair)
		}
	}
	slices.Sort(out)
	return out
}

// Text writes the check in plain words.
func (c *Consistency) Text() string {
	var b strings.Builder
	if c.OK {
		fmt.Fprintf(&b, "consistent after %v: every NVE's local tasks are the store's, every agent holds all %d tasks, every task answers every other\n", time.Duration(c.Settled).Round(time.Millisecond), c.StoreTasks)
		return b.String()
	}
	fmt.Fprintf(&b, "NOT consistent after %v:\n", time.Duration(c.Settled).Round(time.Millisecond))
	for _, p := range c.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}
